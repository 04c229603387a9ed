//! Decoding `n` bytes allocates at most `ALLOC_PER_INPUT_BYTE_MAX × n + ALLOC_SLACK_BYTES`,
//! whatever the bytes declare: many tiny elements (empty keys, empty properties, empty
//! messages, zero ids), counts that lie about what follows, and random bytes, up to 64 KiB.
//!
//! A counting global allocator measures each decode's peak of live bytes on its own thread
//! (the test harness runs tests on several threads); it is its own test binary so no other
//! test runs under it.
#![allow(unsafe_code)] // the counting allocator is the only unsafe code, and only in this test

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::prelude::*;
use quiver_proto::decode::DECODED_BYTES_PER_BYTE_MAX;
use quiver_proto::requests::msg::{
    PullResponse, QueryResponse, QueueOffsetsResponse, SendRequest, SendResponse,
    decode_send_request,
};
use quiver_proto::requests::route::{BrokerRegistration, ClusterListing, TopicRoute};
use quiver_proto::requests::topic::{TopicDescription, TopicListing};
use quiver_proto::{WireError, decode_body};

/// Bytes a decoder may allocate per byte of input: the bound the decoders promise.
const ALLOC_PER_INPUT_BYTE_MAX: usize = DECODED_BYTES_PER_BYTE_MAX;
/// Constant allocations of a decode whatever its input (an error message, the shared header
/// of a sliced body).
const ALLOC_SLACK_BYTES: usize = 1024;
/// Largest input.
const INPUT_BYTES_MAX: usize = 64 << 10;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + bytes);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call forwards to the system allocator with the same arguments; the counters
// are const-initialised thread-locals without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a move: old and new block are both live for a moment.
        grew(new_size);
        shrank(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes live during `decode`, above what was live before it (the decoded value counts:
/// it is what the decode allocated).
fn peak_of<T>(decode: impl FnOnce() -> T) -> usize {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let value = decode();
    let peak = PEAK.with(Cell::get) - before;
    drop(value);
    peak
}

type Decoder = fn(&Bytes) -> bool;

/// Every decoder of a body with a sequence in it; `true` when it decoded.
const DECODERS: &[(&str, Decoder)] = &[
    ("decode_send_request", |b| decode_send_request(b).is_ok()),
    ("SendRequest", |b| decode_body::<SendRequest>(b).is_ok()),
    ("SendResponse", |b| decode_body::<SendResponse>(b).is_ok()),
    ("PullResponse", |b| decode_body::<PullResponse>(b).is_ok()),
    ("QueryResponse", |b| decode_body::<QueryResponse>(b).is_ok()),
    ("QueueOffsetsResponse", |b| {
        decode_body::<QueueOffsetsResponse>(b).is_ok()
    }),
    ("TopicDescription", |b| {
        decode_body::<TopicDescription>(b).is_ok()
    }),
    ("TopicListing", |b| decode_body::<TopicListing>(b).is_ok()),
    ("TopicRoute", |b| decode_body::<TopicRoute>(b).is_ok()),
    ("BrokerRegistration", |b| {
        decode_body::<BrokerRegistration>(b).is_ok()
    }),
    ("ClusterListing", |b| {
        decode_body::<ClusterListing>(b).is_ok()
    }),
];

/// Runs every decoder on `input` and checks each one's peak against the bound.
fn check_bound(input: &[u8]) -> Result<(), TestCaseError> {
    let input = Bytes::copy_from_slice(input);
    let bound = ALLOC_PER_INPUT_BYTE_MAX * input.len() + ALLOC_SLACK_BYTES;
    for (name, decode) in DECODERS {
        let peak = peak_of(|| decode(&input));
        prop_assert!(
            peak <= bound,
            "{name} allocated {peak} bytes decoding {} bytes ({:.1} per byte): the bound is {bound}",
            input.len(),
            peak as f64 / input.len().max(1) as f64,
        );
    }
    Ok(())
}

/// A LEB128 varint, as postcard writes every integer and length.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The start of a send batch: topic "t", queue 0, `n_msgs` messages.
fn batch_head(n_msgs: u64) -> Vec<u8> {
    let mut out = vec![1, b't', 0];
    varint(&mut out, n_msgs);
    out
}

/// A message with no id or tag, `n_keys` empty keys, `n_properties` empty properties and an
/// empty body (7 bytes when both counts are 0).
fn tiny_message(out: &mut Vec<u8>, n_keys: u64, n_properties: u64) {
    out.extend_from_slice(&[0, 0]);
    varint(out, n_keys);
    out.extend(std::iter::repeat_n(0, n_keys as usize));
    varint(out, n_properties);
    out.extend(std::iter::repeat_n(0, 2 * n_properties as usize));
    out.extend_from_slice(&[0, 0, 0]);
}

/// Ways to spend up to 64 KiB on many tiny elements; `declared_extra` makes the outer count
/// lie (more elements declared than follow).
fn amplifying_input() -> impl Strategy<Value = Vec<u8>> {
    let budget = INPUT_BYTES_MAX - 16;
    prop_oneof![
        // Many empty messages.
        (0..budget / 7, 0..64u64).prop_map(|(n, extra)| {
            let mut out = batch_head(n as u64 + extra);
            (0..n).for_each(|_| tiny_message(&mut out, 0, 0));
            out
        }),
        // One message of many empty keys.
        (0..budget, 0..64u64).prop_map(|(n, extra)| {
            let mut out = batch_head(1);
            tiny_message(&mut out, n as u64, 0);
            out.truncate(out.len() - (extra as usize).min(out.len()));
            out
        }),
        // One message of many empty properties.
        (0..budget / 2).prop_map(|n| {
            let mut out = batch_head(1);
            tiny_message(&mut out, 0, n as u64);
            out
        }),
        // Messages of 32 empty keys under a count that promises as many 7-byte messages as
        // the bytes allow: the reservation and the keys must not spend the same bytes.
        (1..budget / 39).prop_map(lying_keyed_batch),
        // Messages at the per-message limits, all empty.
        (0..budget / (7 + 32 + 128)).prop_map(|n| {
            let mut out = batch_head(n as u64);
            (0..n).for_each(|_| tiny_message(&mut out, 32, 64));
            out
        }),
        // A sequence of zero-valued elements of any type: `count` then zeros, or a lying count.
        (0..budget, any::<u32>(), 0..8usize).prop_map(|(n, lie, lead)| {
            let mut out = vec![0; lead];
            varint(&mut out, u64::from(lie).max(n as u64));
            out.extend(std::iter::repeat_n(0, n));
            out
        }),
        // Random bytes.
        proptest::collection::vec(any::<u8>(), 0..INPUT_BYTES_MAX),
    ]
}

/// `n_msgs` messages of 32 empty keys, declared as `7 × n_msgs + 32 × n_msgs` / 7 messages.
fn lying_keyed_batch(n_msgs: usize) -> Vec<u8> {
    let mut out = batch_head((n_msgs * 39 / 7) as u64);
    (0..n_msgs).for_each(|_| tiny_message(&mut out, 32, 0));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoding_allocates_at_most_k_per_input_byte(input in amplifying_input()) {
        check_bound(&input)?;
    }
}

/// The cases the issue names, at their worst size for a 64 KiB input, checked every run (the
/// property test finds them by chance).
#[test]
fn worst_cases_stay_within_the_bound() {
    let budget = INPUT_BYTES_MAX - 16;
    let mut empty_messages = batch_head((budget / 7) as u64);
    (0..budget / 7).for_each(|_| tiny_message(&mut empty_messages, 0, 0));
    let mut empty_keys = batch_head(1);
    tiny_message(&mut empty_keys, (budget - 8) as u64, 0);
    let mut empty_properties = batch_head(1);
    tiny_message(&mut empty_properties, 0, (budget / 2 - 8) as u64);
    // A send answer of the most ids a batch has, each a 1-byte zero (16 bytes in memory).
    let mut zero_ids = vec![0, 0];
    varint(&mut zero_ids, 10_000);
    zero_ids.extend(std::iter::repeat_n(0, 10_000));
    let lying = lying_keyed_batch(budget / 39);
    for input in [
        empty_messages,
        empty_keys,
        empty_properties,
        zero_ids,
        lying,
    ] {
        check_bound(&input).unwrap();
    }
}

/// The limits refuse with a named error, not just any failure.
#[test]
fn over_limit_counts_are_refused_by_name() {
    let mut keys = batch_head(1);
    tiny_message(&mut keys, 33, 0);
    let err = decode_send_request(&Bytes::from(keys.clone())).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::OverLimit {
                len: 33,
                max: 32,
                ..
            }
        ),
        "{err}"
    );
    let err = decode_body::<SendRequest>(&keys).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::OverLimit {
                len: 33,
                max: 32,
                ..
            }
        ),
        "{err}"
    );
}
