//! Bad input: the exact error code, the connection stays usable, nothing stored changes.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use quiver_client::{ErrorCode, Message, Producer};
use quiver_net::RpcClient;
use quiver_proto::requests::msg::{
    PullRequest, QueryIdRequest, QueueOffsets, QueueOffsetsRequest, QueueOffsetsResponse,
    SendRequest,
};
use quiver_proto::requests::topic::TopicCreate;
use quiver_proto::{Frame, MessageId, RequestCode, SendMessage, decode_body, encode_body};
use quiver_tests::harness::{Spec, serial};

use crate::setup;

const TIMEOUT: Duration = Duration::from_secs(10);

fn send_body(topic: &str, queue_id: u32, messages: Vec<SendMessage>) -> Bytes {
    Bytes::from(encode_body(&SendRequest {
        topic: topic.into(),
        queue_id,
        messages,
    }))
}

fn msg(size: usize) -> SendMessage {
    SendMessage::new(None, Bytes::from(vec![7u8; size]), 1)
}

/// The offsets of every queue of `good`, asked on `conn` itself.
async fn offsets_on(conn: &RpcClient) -> Vec<QueueOffsets> {
    let body = Bytes::from(encode_body(&QueueOffsetsRequest {
        topic: "good".into(),
    }));
    let answer = conn
        .call(RequestCode::QueueOffsets, body, TIMEOUT)
        .await
        .expect("a good request on the same connection succeeds");
    decode_body::<QueueOffsetsResponse>(&answer).unwrap().queues
}

/// One request expected to fail with `code`; then a good request on the same connection,
/// which also shows that no queue's offsets moved.
async fn check(
    conn: &RpcClient,
    before: &[QueueOffsets],
    request: RequestCode,
    body: Bytes,
    code: ErrorCode,
) {
    let err = conn.call(request, body, TIMEOUT).await.unwrap_err();
    assert_eq!(err.code(), Some(code), "{request}: {err}");
    assert!(
        err.to_string().len() > 20,
        "{request}: the message says what to fix: {err}"
    );
    assert_eq!(
        offsets_on(conn).await,
        before,
        "{request} changed stored data"
    );
}

/// A raw frame expected to get an error response with `code`; the same checks follow.
async fn check_raw(conn: &RpcClient, before: &[QueueOffsets], bytes: Bytes, code: ErrorCode) {
    let answer = conn.call_raw(bytes, TIMEOUT).await.expect("an answer");
    let frame = Frame::decode_exact(&answer).expect("a frame");
    assert_eq!(ErrorCode::from_u16(frame.header.status), Some(code));
    assert_eq!(
        offsets_on(conn).await,
        before,
        "a raw frame changed stored data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stable_codes_and_change_nothing() {
    let _serial = serial();
    let s = setup(Spec::standalone(&[]), "good", 2).await;
    Producer::new(s.client.clone())
        .send("good", Message::new("seed"))
        .await
        .unwrap();
    let conn = s.client.connection(&s.server.addr).unwrap();
    let before = offsets_on(&conn).await;

    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("bad name", 0, vec![msg(1)]),
        ErrorCode::InvalidName,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("%RETRY%g", 0, vec![msg(1)]),
        ErrorCode::InvalidName,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body(&"x".repeat(128), 0, vec![msg(1)]),
        ErrorCode::InvalidName,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("missing", 0, vec![msg(1)]),
        ErrorCode::TopicNotFound,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 2, vec![msg(1)]),
        ErrorCode::QueueOutOfRange,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 0, vec![msg((4 << 20) + 1)]),
        ErrorCode::MessageTooLarge,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 0, (0..5).map(|_| msg(4 << 20)).collect()),
        ErrorCode::BatchTooLarge,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 0, vec![]),
        ErrorCode::InvalidArgument,
    )
    .await;
    let mut corrupt = msg(10);
    corrupt.body_crc ^= 0xff;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 0, vec![corrupt]),
        ErrorCode::ChecksumMismatch,
    )
    .await;
    let mut bad_tag = msg(1);
    bad_tag.tag = Some("a|b".into());
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        send_body("good", 0, vec![bad_tag]),
        ErrorCode::InvalidArgument,
    )
    .await;
    let pull = |queue_id, offset| {
        Bytes::from(encode_body(&PullRequest {
            topic: "good".into(),
            queue_id,
            offset,
            max_msgs: 1,
            max_bytes: 1,
            wait_ms: 0,
        }))
    };
    check(
        &conn,
        &before,
        RequestCode::MsgPull,
        pull(0, 1_000_000),
        ErrorCode::OffsetOutOfRange,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgPull,
        pull(9, 0),
        ErrorCode::QueueOutOfRange,
    )
    .await;
    let query = Bytes::from(encode_body(&QueryIdRequest {
        topic: "good".into(),
        msg_id: MessageId(12345),
    }));
    check(
        &conn,
        &before,
        RequestCode::MsgQueryId,
        query,
        ErrorCode::MessageNotFound,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::MsgSend,
        Bytes::from_static(&[0xff, 0xff, 0xff]),
        ErrorCode::BadFrame,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::TopicCreate,
        Bytes::from(encode_body(&TopicCreate {
            topic: "good".into(),
            queues: 2,
        })),
        ErrorCode::TopicExists,
    )
    .await;
    check(
        &conn,
        &before,
        RequestCode::TopicCreate,
        Bytes::from(encode_body(&TopicCreate {
            topic: "zero".into(),
            queues: 0,
        })),
        ErrorCode::InvalidArgument,
    )
    .await;

    // Raw frames: garbage, wrong version, unknown code, a declared length over the maximum,
    // a body shorter than declared.
    check_raw(
        &conn,
        &before,
        Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ErrorCode::BadFrame,
    )
    .await;
    let frame = |version: u8, code: u16, declared: u32, body: &[u8]| {
        let mut out = BytesMut::new();
        out.put_slice(b"QV");
        out.put_u8(version);
        out.put_u8(0);
        out.put_u16_le(code);
        out.put_u16_le(0);
        out.put_u64_le(1);
        out.put_u32_le(declared);
        out.put_slice(body);
        out.freeze()
    };
    check_raw(
        &conn,
        &before,
        frame(9, 103, 0, &[]),
        ErrorCode::UnsupportedVersion,
    )
    .await;
    check_raw(
        &conn,
        &before,
        frame(1, 4242, 0, &[]),
        ErrorCode::UnknownRequest,
    )
    .await;
    check_raw(
        &conn,
        &before,
        frame(1, 200, u32::MAX, &[]),
        ErrorCode::FrameTooLarge,
    )
    .await;
    check_raw(
        &conn,
        &before,
        frame(1, 200, 60 << 20, &[]),
        ErrorCode::FrameTooLarge,
    )
    .await;
    check_raw(
        &conn,
        &before,
        frame(1, 200, 100, b"short"),
        ErrorCode::BadFrame,
    )
    .await;

    // The connection still takes writes after all of that.
    let good = send_body(
        "good",
        1,
        vec![SendMessage::new(None, Bytes::from_static(b"ok"), 1)],
    );
    conn.call(RequestCode::MsgSend, good, TIMEOUT)
        .await
        .expect("a good send on the same connection");
    let after = offsets_on(&conn).await;
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1].max_offset, before[1].max_offset + 1);
}
