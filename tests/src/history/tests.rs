use super::*;

const QUEUE: &str = "t@broker-a#0";

fn body(n: u64) -> Bytes {
    Bytes::from(format!("p0-{n}"))
}

fn id(n: u64) -> MessageId {
    MessageId(u128::from(n) + 1000)
}

/// Five acknowledged sends `p0-0..p0-4`, ordered under key `k`.
fn five_acked() -> History {
    let history = History::new();
    for n in 0..5 {
        history.invoke_ordered(&body(n), "k", n);
        history.ok(&body(n), id(n));
    }
    history
}

/// Reads `p0-n` at offset `offset` for each `(offset, n)`.
fn read(at: &[(u64, u64)]) -> Reads {
    let reads = Reads::new();
    for &(offset, n) in at {
        reads.record(&QUEUE, offset, id(n), body(n));
    }
    reads
}

const IN_ORDER: [(u64, u64); 5] = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)];

#[test]
fn a_good_history_passes() {
    let report = check(&five_acked(), &read(&IN_ORDER));
    report.assert_clean("good history");
    assert_eq!(
        (report.acked, report.read, report.duplicates.count),
        (5, 5, 0)
    );
    // Re-reading a position (a consumer pulling twice) is not a duplicate.
    let reads = read(&IN_ORDER);
    reads.record(&QUEUE, 2, id(2), body(2));
    check(&five_acked(), &reads).assert_clean("re-read");
}

#[test]
fn a_lost_middle_message_is_flagged() {
    let report = check(&five_acked(), &read(&[(0, 0), (1, 1), (3, 3), (4, 4)]));
    assert_eq!(report.lost.count, 1, "{report}");
    assert_eq!(report.lost.examples, vec![id(2).to_string()]);
    assert!(!report.is_clean());
}

#[test]
fn a_duplicate_is_reported_but_not_a_violation() {
    let report = check(
        &five_acked(),
        &read(&[(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 4)]),
    );
    assert_eq!(report.duplicates.count, 1, "{report}");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_reorder_of_an_ordered_key_is_flagged() {
    let report = check(
        &five_acked(),
        &read(&[(0, 0), (1, 2), (2, 1), (3, 3), (4, 4)]),
    );
    assert_eq!(report.order.count, 1, "{report}");
    assert!(report.order.examples[0].contains("send 2"), "{report}");
    // The same positions for unordered sends are fine.
    let unordered = History::new();
    for n in 0..5 {
        unordered.invoke(&body(n));
        unordered.ok(&body(n), id(n));
    }
    check(&unordered, &read(&[(0, 0), (1, 2), (2, 1), (3, 3), (4, 4)])).assert_clean("unordered");
}

#[test]
fn two_messages_at_one_offset_are_flagged() {
    let report = check(
        &five_acked(),
        &read(&[(0, 0), (1, 1), (2, 2), (2, 3), (4, 4)]),
    );
    assert_eq!(report.inconsistent_offsets.count, 1, "{report}");
    assert!(!report.is_clean());
}

#[test]
fn a_message_never_attempted_is_flagged() {
    let reads = read(&IN_ORDER);
    reads.record(&QUEUE, 5, id(99), Bytes::from_static(b"nobody sent this"));
    let report = check(&five_acked(), &reads);
    assert_eq!(report.unexpected.count, 1, "{report}");
    // Read under another id than the one acknowledged: also unexpected.
    let reads = read(&IN_ORDER[..4]);
    reads.record(&QUEUE, 4, id(42), body(4));
    assert_eq!(check(&five_acked(), &reads).unexpected.count, 1);
}

#[test]
fn failed_and_unreturned_sends_may_be_read_or_not() {
    let history = five_acked();
    history.invoke(&body(5));
    history.fail(&body(5));
    history.invoke(&body(6));
    let mut at = IN_ORDER.to_vec();
    at.push((5, 6));
    let report = check(&history, &read(&at));
    report.assert_clean("indeterminate sends");
    assert_eq!((report.recovered, history.failed()), (1, 1));
    check(&history, &read(&IN_ORDER)).assert_clean("indeterminate sends not read");
}
