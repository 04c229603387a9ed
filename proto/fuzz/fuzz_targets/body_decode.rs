//! Every request and response body decoder rejects bad bytes without panicking, what decodes
//! re-encodes to a value that decodes to itself, and no decode of `n` bytes has more than
//! `DECODED_BYTES_PER_BYTE_MAX × n + ALLOC_SLACK_BYTES` live at once (a counting allocator;
//! run with `-max_len=65536` so inputs of many tiny elements are tried, seeds in
//! `seeds/body_decode`).
#![no_main]
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quiver_proto::requests::{admin, msg, route, topic};
use quiver_proto::decode::DECODED_BYTES_PER_BYTE_MAX;
use quiver_proto::{decode_body, encode_body};

/// Constant allocations of a decode whatever its input (an error message, a shared header).
const ALLOC_SLACK_BYTES: usize = 1024;

/// Counts live bytes (libFuzzer runs one input at a time on one thread with `-jobs=1`).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Decodes with `decode` and asserts its peak of live bytes (the decoded value included).
fn bounded<R>(name: &str, data: &[u8], decode: impl FnOnce() -> R) -> R {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = decode();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let bound = DECODED_BYTES_PER_BYTE_MAX * data.len() + ALLOC_SLACK_BYTES;
    assert!(
        peak <= bound,
        "{name} allocated {peak} bytes for {} input bytes (bound {bound})",
        data.len()
    );
    value
}

fn check<T>(data: &[u8])
where
    T: serde::Serialize + for<'a> serde::Deserialize<'a> + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = bounded(std::any::type_name::<T>(), data, || decode_body::<T>(data)) {
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
    check::<route::BrokerRegistration>(data);
    check::<route::ClusterListing>(data);
    let body = Bytes::copy_from_slice(data);
    if let Ok(send) = bounded("decode_send_request", data, || msg::decode_send_request(&body)) {
        assert_eq!(decode_body::<msg::SendRequest>(data).expect("owned decode agrees"), send);
    }
});
