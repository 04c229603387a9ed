use bytes::Bytes;
use proptest::prelude::*;

use super::admin::*;
use super::function::*;
use super::group::*;
use super::msg::*;
use super::route::*;
use super::topic::*;
use crate::{
    ErrorCode, MessageId, RequestCode, SendMessage, StoredMessage, decode_body, encode_body,
};

fn round_trip<T>(value: &T)
where
    T: serde::Serialize + for<'a> serde::Deserialize<'a> + PartialEq + std::fmt::Debug,
{
    let bytes = encode_body(value);
    let back: T = decode_body(&bytes).expect("round trip decodes");
    assert_eq!(&back, value);
    for cut in 0..bytes.len() {
        assert!(decode_body::<T>(&bytes[..cut]).is_err() || cut == bytes.len());
    }
}

fn tags_of(text: &str) -> String {
    format!("{text}!")
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.%-]{0,20}"
}

prop_compose! {
    fn send_message()(id in proptest::option::of(any::<u128>()), tag in proptest::option::of(text()),
                      keys in proptest::collection::vec(text(), 0..4),
                      props in proptest::collection::vec((text(), text()), 0..3),
                      body in proptest::collection::vec(any::<u8>(), 0..128),
                      born in any::<u64>()) -> SendMessage {
        let mut msg = SendMessage::new(id.map(MessageId), Bytes::from(body), born);
        msg.tag = tag;
        msg.keys = keys;
        msg.properties = props;
        msg
    }
}

prop_compose! {
    fn stored_message()(msg in send_message(), topic in text(), queue_id in any::<u32>(),
                        offset in any::<u64>(), stored in any::<u64>(), pos in any::<u64>()) -> StoredMessage {
        StoredMessage {
            topic, queue_id, offset, msg_id: msg.msg_id.unwrap_or(MessageId(1)), tag: msg.tag,
            keys: msg.keys, properties: msg.properties, body: msg.body, born_ms: msg.born_ms,
            stored_ms: stored, log_pos: pos, body_crc: msg.body_crc,
        }
    }
}

proptest! {
    #[test]
    fn topic_bodies(topic in text(), queues in any::<u32>(), created in any::<u64>()) {
        round_trip(&TopicCreate { topic: topic.clone(), queues });
        round_trip(&TopicUpdate { topic: topic.clone(), queues });
        round_trip(&TopicDelete { topic: topic.clone() });
        round_trip(&TopicDescribe { topic: topic.clone() });
        round_trip(&TopicList {});
        let info = TopicInfo { topic: topic.clone(), queues, created_ms: created };
        round_trip(&TopicListing { topics: vec![info.clone()] });
        round_trip(&TopicDescription { info, queues: vec![QueueOffsets { queue_id: 1, min_offset: 2, max_offset: 3 }] });
        round_trip(&TopicDeleted { topic });
    }

    #[test]
    fn msg_bodies(topic in text(), queue_id in any::<u32>(), msgs in proptest::collection::vec(send_message(), 0..4),
                  stored in proptest::collection::vec(stored_message(), 0..3), offset in any::<u64>(),
                  id in any::<u128>(), key in text(), begin in proptest::option::of(any::<u64>())) {
        let send = SendRequest { topic: topic.clone(), queue_id, messages: msgs };
        round_trip(&send);
        let bytes = bytes::Bytes::from(encode_body(&send));
        prop_assert_eq!(decode_send_request(&bytes).unwrap(), send.clone());
        for cut in 0..bytes.len() {
            prop_assert!(decode_send_request(&bytes.slice(..cut)).is_err());
        }
        round_trip(&SendResponse { queue_id, first_offset: offset, msg_ids: vec![MessageId(id)] });
        round_trip(&PullRequest { topic: topic.clone(), queue_id, offset, max_msgs: 3, max_bytes: 9, wait_ms: 1 });
        round_trip(&PullResponse { messages: stored.clone(), next_offset: offset, min_offset: 0, max_offset: offset });
        round_trip(&QueryIdRequest { topic: topic.clone(), msg_id: MessageId(id) });
        round_trip(&QueryKeyRequest { topic: topic.clone(), key, begin_ms: begin, end_ms: None, max_msgs: 5 });
        round_trip(&QueryResponse { messages: stored });
        round_trip(&QueueOffsetsRequest { topic });
        round_trip(&QueueOffsetsResponse { queues: vec![QueueOffsets { queue_id, min_offset: 0, max_offset: offset }] });
    }

    #[test]
    fn route_and_admin_bodies(topic in text(), addr in text(), queues in any::<u32>(), n in any::<u64>()) {
        round_trip(&RouteGet { topic: topic.clone() });
        round_trip(&TopicRoute {
            topic,
            brokers: vec![BrokerAddr { broker_name: "b".into(), addr }],
            queues: vec![QueueRoute { broker_name: "b".into(), queues, writable: true }],
        });
        round_trip(&StatsRequest {});
        round_trip(&ReadStats { records_read: n, bytes_read: n, slots_scanned: n });
        round_trip(&BrokerStats { flush_mode: "sync".into(), msgs_appended: n, appends: n, fsyncs: n,
            bytes_written: n, log_start: 0, log_end: n, dispatched_upto: n, healthy: n % 2 == 0,
            unhealthy_reason: "disk".into(), retention_errors: n });
    }

    #[test]
    fn group_bodies_round_trip(group in text(), member in text(), topic in text(), tags in text(),
                               n in any::<u64>(), q in any::<u32>(), opt in proptest::option::of(any::<u64>()),
                               flag in any::<bool>()) {
        let sub = Subscription { topic: topic.clone(), tags };
        let start = match n % 3 { 0 => StartFrom::Last, 1 => StartFrom::First, _ => StartFrom::Time(n) };
        round_trip(&GroupHeartbeat { group: group.clone(), member: member.clone(), client: topic.clone(),
            subscriptions: vec![sub.clone(), sub.clone()], start,
            finishing: vec![QueueLease { topic: topic.clone(), queue_id: q, epoch: n }] });
        round_trip(&GroupHeartbeatResponse { leases: vec![QueueLease { topic: topic.clone(), queue_id: q, epoch: n }],
            lease_ms: n, pending: flag });
        round_trip(&GroupPull { group: group.clone(), member: member.clone(), topic: topic.clone(), queue_id: q,
            epoch: n, offset: opt, max_msgs: q, max_bytes: q, wait_ms: q });
        round_trip(&GroupPullResponse { messages: vec![], next_offset: n, min_offset: n, max_offset: n, filtered: n });
        let commit = OffsetCommit { topic: topic.clone(), queue_id: q, epoch: n, offset: n };
        round_trip(&GroupCommit { group: group.clone(), member: member.clone(), offsets: vec![commit.clone()] });
        round_trip(&GroupLeave { group: group.clone(), member: member.clone(), offsets: vec![commit] });
        let settings = GroupSettings { max_retries: q, backoff_ms: vec![n, 1], strategy: tags_of(&group) };
        round_trip(&GroupInfo { group: group.clone(), subscriptions: vec![sub],
            members: vec![MemberInfo { member: member.clone(), client: group.clone(), idle_ms: n }],
            queues: vec![GroupQueue { topic: topic.clone(), queue_id: q, max_offset: n, committed: opt, lag: n,
                holder: Some(member.clone()), epoch: n }],
            settings: settings.clone() });
        round_trip(&GroupUpdate { group: group.clone(), settings });
        round_trip(&GroupSendBack { group: group.clone(), member: member.clone(), topic: topic.clone(),
            queue_id: q, epoch: n, offset: n, delay_ms: opt });
        round_trip(&GroupSendBackResponse { topic: topic.clone(), reconsume: q, deliver_at_ms: n });
        round_trip(&DlqResend { group: group.clone(), msg_id: opt.map(|n| MessageId(u128::from(n))) });
        round_trip(&DlqResendResponse { resent: n });
        round_trip(&GroupResetOffset { group, topic, to: start });
        round_trip(&GroupResetOffsetResponse { queues: vec![(q, n)] });
        round_trip(&FilteredPullRequest { topic: tags_of("t"), queue_id: q, offset: n, max_msgs: q,
            max_bytes: q, wait_ms: q, tags: tags_of("a || b") });
        round_trip(&OffsetAtTimeRequest { topic: tags_of("t"), time_ms: n });
        round_trip(&OffsetAtTimeResponse { queues: vec![(q, n), (0, 0)] });
    }

    #[test]
    fn function_bodies_round_trip(name in text(), topic in text(), n in any::<u64>(), q in any::<u32>(),
                                  sha in any::<[u8; 32]>(), flag in any::<bool>()) {
        let limits = FnLimits { fuel_per_message: n, deadline_ms_per_message: n, memory_bytes: n,
            instances: q, emits_per_message: q, emit_bytes_max: q };
        let spec = FnSpec { topic: topic.clone(), tags: tags_of(&name), config: vec![(name.clone(), topic.clone())],
            max_retries: q, retry_delay_ms: n, batch_max: q, batch_wait_ms: q,
            start: StartFrom::Time(n), limits };
        round_trip(&FnUpload { sha256: sha, total: n, offset: n, chunk: Bytes::from(name.clone()) });
        round_trip(&FnUploadResponse { received: n, complete: flag });
        round_trip(&FnDeploy { name: name.clone(), sha256: sha, spec: spec.clone() });
        round_trip(&FnDeployResponse { version: q, compiled: flag });
        round_trip(&FnName { name: name.clone() });
        round_trip(&FnListResponse { functions: vec![FnSummary { name: name.clone(), version: q, sha256: sha,
            topic: topic.clone(), tags: name.clone(), state: topic.clone(), lag: n }] });
        round_trip(&FnInfo { name: name.clone(), version: q, sha256: sha, previous: Some((q, sha)), spec,
            state: topic.clone(), deployed_ms: n,
            queues: vec![GroupQueue { topic: topic.clone(), queue_id: q, max_offset: n, committed: None, lag: n,
                holder: None, epoch: n }],
            counters: FnCounters { handled: n, compiles: n, ..FnCounters::default() },
            handler_p50_us: n, handler_p99_us: n, last_error: Some(name.clone()) });
        round_trip(&FnLogs { name: name.clone(), after: n, max: q, wait_ms: q });
        round_trip(&FnLogsResponse { lines: vec![FnLogLine { seq: n, time_ms: n, level: name.clone(),
            text: topic.clone(), version: q }], dropped: n });
        round_trip(&FnReplay { sha256: sha, topic: topic.clone(), queue_id: Some(q), tags: name.clone(),
            from: ReplayFrom::Offset(n), limit: q, config: vec![] });
        round_trip(&FnReplayResponse { handled: n, acked: n, retried: n, dead_lettered: n, failed: n,
            filtered: n, emits_total: n,
            emits: vec![ReplayEmit { topic: topic.clone(), tag: Some(name.clone()), keys: vec![name.clone()],
                body: topic.clone(), body_len: n }],
            failures: vec![ReplayFailure { queue_id: q, offset: n, outcome: name }], logs: vec![] });
    }

    #[test]
    fn body_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_body::<SendRequest>(&bytes);
        let _ = decode_send_request(&bytes::Bytes::from(bytes.clone()));
        let _ = decode_body::<PullResponse>(&bytes);
        let _ = decode_body::<TopicRoute>(&bytes);
        let _ = decode_body::<GroupHeartbeat>(&bytes);
        let _ = decode_body::<GroupInfo>(&bytes);
        let _ = decode_body::<GroupCommit>(&bytes);
        let _ = decode_body::<FnUpload>(&bytes);
        let _ = decode_body::<FnDeploy>(&bytes);
        let _ = decode_body::<FnInfo>(&bytes);
        let _ = decode_body::<FnReplayResponse>(&bytes);
        let _ = decode_body::<FnLogsResponse>(&bytes);
    }
}

#[test]
fn codes_are_unique_and_named() {
    let mut seen = std::collections::HashSet::new();
    for code in RequestCode::ALL {
        assert!(seen.insert(*code as u16), "duplicate request code {code:?}");
        assert_eq!(RequestCode::from_u16(*code as u16), Some(*code));
        assert!(code.name().contains('.'));
    }
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        assert!(seen.insert(*code as u16), "duplicate error code {code:?}");
        assert_eq!(ErrorCode::from_u16(*code as u16), Some(*code));
    }
    assert_eq!(RequestCode::from_u16(65535), None);
}

#[test]
fn huge_declared_counts_fail_without_allocating() {
    // A varint count of u32::MAX messages followed by nothing: must error, not allocate.
    let mut bytes = encode_body(&"t".to_string());
    bytes.push(0);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_body::<SendRequest>(&bytes).is_err());
}

/// The send decoder refuses exactly what `SendMessage::validate` refuses for counts and
/// lengths: a message at every limit passes both, one over any limit fails both, with the
/// limit's code.
#[test]
fn decode_and_validate_enforce_the_same_limits() {
    use crate::message::{
        KEY_BYTES_MAX, KEYS_MAX, PROPERTIES_MAX, PROPERTY_BYTES_MAX, TAG_BYTES_MAX,
    };
    let at_limits = || {
        let mut msg = SendMessage::new(None, Bytes::from_static(b"x"), 1);
        msg.tag = Some("t".repeat(TAG_BYTES_MAX));
        msg.keys = (0..KEYS_MAX).map(|_| "k".repeat(KEY_BYTES_MAX)).collect();
        msg.properties = (0..PROPERTIES_MAX)
            .map(|_| {
                (
                    "n".repeat(PROPERTY_BYTES_MAX),
                    "v".repeat(PROPERTY_BYTES_MAX),
                )
            })
            .collect();
        msg
    };
    let decode = |msg: &SendMessage| {
        let body = Bytes::from(encode_body(&SendRequest {
            topic: "t".into(),
            queue_id: 0,
            messages: vec![msg.clone()],
        }));
        decode_send_request(&body).map(|mut request| request.messages.remove(0))
    };
    let good = at_limits();
    assert!(good.validate(1).is_ok());
    assert_eq!(decode(&good).unwrap(), good);
    type Grow = fn(&mut SendMessage);
    let over: [(&str, Grow); 6] = [
        ("tag", |m| m.tag.as_mut().unwrap().push('t')),
        ("keys", |m| m.keys.push("k".into())),
        ("key bytes", |m| m.keys[0].push('k')),
        ("properties", |m| {
            m.properties.push(("n".into(), "v".into()))
        }),
        ("property name", |m| m.properties[0].0.push('n')),
        ("property value", |m| m.properties[0].1.push('v')),
    ];
    for (what, grow) in over {
        let mut msg = at_limits();
        grow(&mut msg);
        assert!(
            msg.validate(1).is_err(),
            "validate accepted one over the {what} limit"
        );
        let err = decode(&msg).expect_err(what);
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{what}: {err}");
    }
    let batch = SendRequest {
        topic: "t".into(),
        queue_id: 0,
        messages: vec![SendMessage::new(None, Bytes::new(), 0); BATCH_LEN_MAX + 1],
    };
    let body = Bytes::from(encode_body(&batch));
    assert_eq!(
        decode_send_request(&body).unwrap_err().code(),
        ErrorCode::BatchTooLarge
    );
    assert_eq!(
        decode_body::<SendRequest>(&body).unwrap_err().code(),
        ErrorCode::BatchTooLarge
    );
}

/// A count that promises more elements than the remaining bytes can hold is refused before
/// anything is reserved, and the message says so.
#[test]
fn counts_beyond_the_remaining_bytes_are_refused() {
    let mut body = encode_body(&"t".to_string());
    body.push(0);
    body.push(100); // 100 messages, 7 bytes each at least, 10 bytes follow
    body.extend_from_slice(&[0; 10]);
    let err = decode_send_request(&Bytes::from(body.clone())).unwrap_err();
    assert!(err.to_string().contains("only 10 remain"), "{err}");
    let mut pull = vec![100]; // 100 stored messages, 12 bytes each at least
    pull.extend_from_slice(&[0; 50]);
    let err = decode_body::<PullResponse>(&pull).unwrap_err();
    assert!(err.to_string().contains("only 50 remain"), "{err}");
}
