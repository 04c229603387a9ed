use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::{ErrorCode, WireError};

fn check_err(bytes: &[u8], expect: impl Fn(&WireError) -> bool) {
    let err = Frame::decode_exact(&Bytes::copy_from_slice(bytes)).unwrap_err();
    assert!(expect(&err), "unexpected error {err:?}");
}

#[test]
fn request_and_response_round_trip() {
    let request = Frame::request(200, 7, false, Bytes::from_static(b"hello"));
    let decoded = Frame::decode_exact(&request.to_bytes()).unwrap();
    assert_eq!(decoded, request);
    assert!(!decoded.header.is_response());
    let response = Frame::response(&request.header, ErrorCode::TopicNotFound, Bytes::new());
    let decoded = Frame::decode_exact(&response.to_bytes()).unwrap();
    assert!(decoded.header.is_response());
    assert_eq!(decoded.header.request_id, 7);
    assert_eq!(decoded.header.status, ErrorCode::TopicNotFound as u16);
}

#[test]
fn truncated_frames_are_incomplete() {
    let bytes = Frame::request(100, 1, true, Bytes::from_static(b"abcdef")).to_bytes();
    for cut in 0..bytes.len() {
        check_err(&bytes[..cut], |e| matches!(e, WireError::Incomplete { .. }));
    }
}

#[test]
fn oversized_length_is_refused_before_allocation() {
    let mut bytes = Frame::request(100, 1, false, Bytes::new())
        .to_bytes()
        .to_vec();
    bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    check_err(
        &bytes,
        |e| matches!(e, WireError::TooLarge { len, .. } if *len == u64::from(u32::MAX)),
    );
    assert_eq!(
        FrameHeader::decode(&bytes).unwrap_err().code(),
        ErrorCode::FrameTooLarge
    );
}

#[test]
fn bad_magic_version_flags_and_trailing_bytes() {
    let good = Frame::request(100, 1, false, Bytes::new())
        .to_bytes()
        .to_vec();
    let mut bad = good.clone();
    bad[0] = b'X';
    check_err(&bad, |e| matches!(e, WireError::BadMagic { .. }));
    let mut bad = good.clone();
    bad[2] = 9;
    check_err(&bad, |e| {
        matches!(e, WireError::UnsupportedVersion { version: 9, .. })
    });
    let mut bad = good.clone();
    bad[3] = 0x80;
    check_err(&bad, |e| {
        matches!(e, WireError::UnknownFlags { flags: 0x80 })
    });
    let mut bad = good;
    bad.push(0);
    check_err(&bad, |e| matches!(e, WireError::TrailingBytes { extra: 1 }));
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Frame::decode(&Bytes::from(bytes));
    }

    #[test]
    fn frames_round_trip(code in any::<u16>(), id in any::<u64>(), oneway in any::<bool>(),
                         body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let frame = Frame::request(code, id, oneway, Bytes::from(body));
        prop_assert_eq!(Frame::decode_exact(&frame.to_bytes()).unwrap(), frame);
    }
}
