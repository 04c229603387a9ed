use super::*;

#[test]
fn names_follow_the_rules() {
    assert!(Name::new("orders.v1_A-b").is_ok());
    for bad in ["", "%RETRY%g", "a b", "a/b", "..", "é", &"x".repeat(128)] {
        assert!(Name::new(bad).is_err(), "{bad:?} accepted");
    }
    assert!(Name::new(&"x".repeat(127)).is_ok());
}

#[test]
fn readable_names_add_exactly_the_retry_and_dead_letter_topics() {
    let group = Name::new("billing").unwrap();
    for name in [Name::retry_topic(&group), Name::dlq_topic(&group)] {
        assert_eq!(Name::readable(name.as_str()).unwrap(), name);
        assert!(Name::new(name.as_str()).is_err(), "{name} sendable");
    }
    assert_eq!(Name::retry_topic(&group).as_str(), "%RETRY%billing");
    assert!(Name::retry_topic(&group).is_retry());
    assert!(!Name::dlq_topic(&group).is_retry());
    assert_eq!(Name::readable("orders").unwrap().as_str(), "orders");
    for bad in [
        "%SCHEDULE%",
        "%RETRY%",
        "%DLQ%",
        "%RETRY%%DLQ%g",
        "%RETRY%a b",
        "%retry%g",
        "%X%g",
        &format!("%DLQ%{}", "x".repeat(123)),
    ] {
        assert!(Name::readable(bad).is_err(), "{bad:?} accepted");
    }
    assert!(Name::readable(&format!("%DLQ%{}", "x".repeat(122))).is_ok());
}

#[test]
fn stored_messages_tell_their_retry_count_and_origin() {
    let mut msg = StoredMessage {
        topic: "%RETRY%g".into(),
        queue_id: 0,
        offset: 0,
        msg_id: MessageId(1),
        tag: None,
        keys: vec![],
        properties: vec![],
        body: bytes::Bytes::new(),
        born_ms: 0,
        stored_ms: 0,
        log_pos: 0,
        body_crc: 0,
    };
    assert_eq!((msg.reconsume_times(), msg.origin_topic()), (0, "%RETRY%g"));
    msg.properties = vec![
        (PROP_RECONSUME.into(), "3".into()),
        (PROP_ORIGIN_TOPIC.into(), "orders".into()),
    ];
    assert_eq!((msg.reconsume_times(), msg.origin_topic()), (3, "orders"));
}

#[test]
fn message_ids_print_as_32_hex_digits_and_parse_back() {
    let id = MessageId(0x0190_f3c2_a1b2_7c3d_8e4f_5a6b_7c8d_9e0f);
    let text = id.to_string();
    assert_eq!(text, "0190f3c2a1b27c3d8e4f5a6b7c8d9e0f");
    assert_eq!(text.parse::<MessageId>().unwrap(), id);
    assert!("xyz".parse::<MessageId>().is_err());
    assert_eq!(id.v7_timestamp_ms(), 0x0190_f3c2_a1b2);
}

proptest::proptest! {
    #[test]
    fn every_message_id_prints_as_32_hex_digits_and_parses_back(id in proptest::prelude::any::<u128>()) {
        let text = MessageId(id).to_string();
        proptest::prop_assert_eq!(&text, &format!("{id:032x}"));
        proptest::prop_assert_eq!(text.parse::<MessageId>(), Ok(MessageId(id)));
    }
}

#[test]
fn validate_names_the_limit() {
    let mut msg = SendMessage::new(None, bytes::Bytes::from(vec![0; 10]), 0);
    assert!(msg.validate(10).is_ok());
    assert!(msg.validate(9).unwrap_err().contains("maximum is 9"));
    msg.tag = Some("a|b".into());
    assert!(msg.validate(10).is_err());
    msg.tag = None;
    msg.keys = vec![String::new()];
    assert!(msg.validate(10).is_err());
}

#[test]
fn tag_hash_is_frozen() {
    assert_eq!(tag_hash(None), 0);
    assert_ne!(tag_hash(Some("a")), 0);
    assert_eq!(tag_hash(Some("paid")), tag_hash(Some("paid")));
}

#[test]
fn reserved_property_names_are_refused() {
    let mut msg = SendMessage::new(None, Bytes::from_static(b"x"), 1);
    msg.properties = vec![("%RECONSUME".into(), "3".into())];
    assert!(
        msg.validate(10).is_ok(),
        "the broker's own records may carry them"
    );
    let err = msg.validate_from_producer(10).unwrap_err();
    assert!(err.contains("reserved"), "{err}");
    msg.properties = vec![("ok%".into(), "3".into())];
    assert!(msg.validate_from_producer(10).is_ok());
    msg.properties = vec![(PROP_DELIVER_AT.into(), "soon".into())];
    assert!(msg.validate_from_producer(10).is_err());
    msg.properties = vec![(PROP_DELIVER_AT.into(), "1700000000000".into())];
    assert!(msg.validate_from_producer(10).is_ok());
}
