use bytes::Bytes;
use proptest::prelude::*;
use quiver_proto::{MessageId, SendMessage};

use super::*;

fn sample() -> (SendMessage, Placement) {
    let mut msg = SendMessage::new(Some(MessageId(42)), Bytes::from_static(b"payload"), 7);
    msg.tag = Some("paid".into());
    msg.keys = vec!["order-1".into(), "user-9".into()];
    msg.properties = vec![("trace".into(), "abc".into())];
    let at = Placement {
        topic_id: 3,
        queue_id: 5,
        offset: 99,
        stored_ms: 1000,
        msg_id: MessageId(42),
        batch_end: true,
    };
    (msg, at)
}

#[test]
fn record_round_trips() {
    let (msg, at) = sample();
    let mut buf = Vec::new();
    encode(&msg, &at, &mut buf);
    assert_eq!(buf.len(), encoded_len(&msg));
    let (record, len) = decode(&Bytes::from(buf)).unwrap();
    assert_eq!(len, encoded_len(&msg));
    assert_eq!(record.keys, msg.keys);
    assert_eq!(record.properties, msg.properties);
    assert_eq!(record.tag.as_deref(), Some("paid"));
    assert_eq!(record.body, msg.body);
    assert_eq!(
        (record.topic_id, record.queue_id, record.offset),
        (3, 5, 99)
    );
    assert!(record.is_batch_end());
}

#[test]
fn every_flipped_bit_and_every_cut_is_detected() {
    let (msg, at) = sample();
    let mut buf = Vec::new();
    encode(&msg, &at, &mut buf);
    for cut in 0..buf.len() {
        assert!(decode(&Bytes::copy_from_slice(&buf[..cut])).is_err());
    }
    for byte in 0..buf.len() {
        let mut bad = buf.clone();
        bad[byte] ^= 0x10;
        assert!(
            decode(&Bytes::from(bad)).is_err(),
            "flip at {byte} undetected"
        );
    }
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&Bytes::from(bytes));
    }
}
