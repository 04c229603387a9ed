use bytes::Bytes;
use quiver_proto::{MessageId, SendMessage};

use super::*;
use crate::store::index::dispatcher::IndexEntry;
use crate::store::log::scan_bytes;

fn msg(body: &str, tag: Option<&str>, id: Option<u128>) -> SendMessage {
    let mut msg = SendMessage::new(id.map(MessageId), Bytes::from(body.to_owned()), 7);
    msg.tag = tag.map(str::to_owned);
    msg.keys = vec![format!("k-{body}")];
    msg
}

#[test]
fn offsets_are_consecutive_per_queue_and_continue_from_recovery() {
    let mut assembler = Assembler::new([((1, 0), 40)].into_iter().collect());
    let (mut out, mut entries) = (Vec::new(), Vec::new());
    let a = assembler.place(
        (1, 0),
        &[msg("a", None, None), msg("b", None, None)],
        5,
        (&mut out, 1000),
        &mut entries,
    );
    let b = assembler.place(
        (1, 1),
        &[msg("c", None, None)],
        5,
        (&mut out, 1000),
        &mut entries,
    );
    let c = assembler.place(
        (1, 0),
        &[msg("d", None, Some(9))],
        5,
        (&mut out, 1000),
        &mut entries,
    );
    assert_eq!(
        (a.first_offset, b.first_offset, c.first_offset),
        (40, 0, 42)
    );
    assert_eq!(c.msg_ids, vec![MessageId(9)], "the producer's id is kept");
    assert_ne!(a.msg_ids[0], a.msg_ids[1], "assigned ids are unique");
    let offsets: Vec<_> = entries.iter().map(|e| (e.queue_id, e.offset)).collect();
    assert_eq!(offsets, vec![(0, 40), (0, 41), (1, 0), (0, 42)]);
}

#[test]
fn the_index_entries_are_what_the_records_decode_to() {
    let mut assembler = Assembler::default();
    let (mut out, mut entries) = (Vec::new(), Vec::new());
    assembler.place(
        (3, 2),
        &[msg("x", Some("paid"), None), msg("yy", None, None)],
        77,
        (&mut out, 4096),
        &mut entries,
    );
    assembler.place(
        (3, 0),
        &[msg("z", Some("t"), None)],
        78,
        (&mut out, 4096),
        &mut entries,
    );
    // The one function from a record to its entries gives the same entries: dispatch,
    // replay and replicas agree with the writer.
    let mut decoded = Vec::new();
    let mut batch_ends = Vec::new();
    scan_bytes(&Bytes::from(out), |offset, record, len| {
        batch_ends.push(record.is_batch_end());
        decoded.push(IndexEntry::of_record(4096 + offset, &record, len));
    })
    .unwrap();
    assert_eq!(format!("{decoded:?}"), format!("{entries:?}"));
    assert_eq!(
        batch_ends,
        vec![false, true, true],
        "the last record of each send ends its batch"
    );
}

#[test]
fn assigned_ids_are_uuid_v7_with_the_broker_time_and_never_repeat() {
    let mut assembler = Assembler::default();
    let (mut out, mut entries) = (Vec::new(), Vec::new());
    let batch: Vec<_> = (0..3000).map(|i| msg(&i.to_string(), None, None)).collect();
    let appended = assembler.place(
        (1, 0),
        &batch,
        1_796_000_000_123,
        (&mut out, 0),
        &mut entries,
    );
    let mut seen = std::collections::HashSet::new();
    for id in &appended.msg_ids {
        let uuid = uuid::Uuid::from_u128(id.0);
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.v7_timestamp_ms(), 1_796_000_000_123);
        assert!(seen.insert(*id), "id {id} repeated");
    }
    // Ids sort in the order they were given.
    assert!(appended.msg_ids.windows(2).all(|pair| pair[0] < pair[1]));
    // Another writer (another broker, or after a restart) draws another nonce.
    let mut other = Assembler::default();
    let again = other.place(
        (1, 0),
        &batch[..1],
        1_796_000_000_123,
        (&mut out, 0),
        &mut entries,
    );
    assert_ne!(again.msg_ids[0], appended.msg_ids[0]);
}
