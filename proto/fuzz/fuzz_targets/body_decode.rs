//! Every request and response body decoder rejects bad bytes without panicking, and what
//! decodes re-encodes to a value that decodes to itself.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quiver_proto::requests::{admin, msg, route, topic};
use quiver_proto::{decode_body, encode_body};

fn check<T>(data: &[u8])
where
    T: serde::Serialize + for<'a> serde::Deserialize<'a> + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode_body::<T>(data) {
        let again: T = decode_body(&encode_body(&value)).expect("re-encoded value decodes");
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<msg::SendRequest>(data);
    check::<msg::SendResponse>(data);
    check::<msg::PullRequest>(data);
    check::<msg::PullResponse>(data);
    check::<msg::QueryIdRequest>(data);
    check::<msg::QueryKeyRequest>(data);
    check::<msg::QueryResponse>(data);
    check::<msg::QueueOffsetsResponse>(data);
    check::<topic::TopicCreate>(data);
    check::<topic::TopicDescription>(data);
    check::<topic::TopicListing>(data);
    check::<route::TopicRoute>(data);
    check::<admin::BrokerStats>(data);
    if let Ok(send) = msg::decode_send_request(&Bytes::copy_from_slice(data)) {
        assert_eq!(decode_body::<msg::SendRequest>(data).expect("owned decode agrees"), send);
    }
});
