use bytes::Bytes;
use quiver_proto::{MessageId, StoredMessage};

use super::*;

fn queue() -> MessageQueue {
    MessageQueue {
        topic: "t".into(),
        broker_name: "b".into(),
        queue_id: 0,
    }
}

fn send_answer(first_offset: u64, n_ids: usize) -> SendResponse {
    SendResponse {
        queue_id: 0,
        first_offset,
        msg_ids: (0..n_ids as u128).map(MessageId).collect(),
    }
}

#[test]
fn send_results_number_the_batch_and_refuse_offsets_past_u64() {
    let results = send_results(queue(), &send_answer(7, 3), 3).unwrap();
    let offsets: Vec<u64> = results.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [7, 8, 9]);
    // The last message may sit at the largest offset, not one past it.
    let at_end = send_results(queue(), &send_answer(u64::MAX - 1, 2), 2).unwrap();
    assert_eq!(at_end[1].offset, u64::MAX);
    let err = send_results(queue(), &send_answer(u64::MAX, 2), 2).unwrap_err();
    assert!(err.to_string().contains("past the largest offset"), "{err}");
    let err = send_results(queue(), &send_answer(0, 1), 2).unwrap_err();
    assert!(
        err.to_string()
            .contains("acknowledged 1 messages for a batch of 2"),
        "{err}"
    );
}

fn stored(offset: u64) -> StoredMessage {
    StoredMessage {
        topic: "t".into(),
        queue_id: 0,
        offset,
        msg_id: MessageId(u128::from(offset)),
        tag: None,
        keys: Vec::new(),
        properties: Vec::new(),
        body: Bytes::new(),
        born_ms: 0,
        stored_ms: 0,
        log_pos: 0,
        body_crc: 0,
    }
}

fn pull_answer(offsets: &[u64], next_offset: u64, min: u64, max: u64) -> PullResponse {
    PullResponse {
        messages: offsets.iter().map(|o| stored(*o)).collect(),
        next_offset,
        min_offset: min,
        max_offset: max,
    }
}

fn check(offset: u64, answer: PullResponse, expect: Result<(), &str>) {
    match (check_pull(&queue(), offset, 4, &answer), expect) {
        (Ok(()), Ok(())) => {}
        (Err(err), Err(want)) => assert!(err.to_string().contains(want), "{err}"),
        (got, want) => panic!("{answer:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn pull_answers_must_advance_in_order_within_their_range() {
    check(5, pull_answer(&[5, 6, 7], 8, 0, 8), Ok(()));
    check(5, pull_answer(&[], 5, 0, 5), Ok(()));
    // Retention moved the start: the broker answers from the queue's minimum.
    check(2, pull_answer(&[10, 11], 12, 10, 12), Ok(()));
    check(
        5,
        pull_answer(&[5, 6], 6, 0, 8),
        Err("does not pass the last"),
    );
    check(
        5,
        pull_answer(&[u64::MAX], u64::MAX, 0, u64::MAX),
        Err("does not pass the last"),
    );
    check(5, pull_answer(&[6, 5], 7, 0, 8), Err("out of order"));
    check(5, pull_answer(&[4], 5, 0, 8), Err("out of order"));
    check(
        5,
        pull_answer(&[5, 6, 7, 8, 9], 10, 0, 10),
        Err("5 messages answered for at most 4"),
    );
    check(5, pull_answer(&[], 5, 9, 3), Err("reversed"));
}
