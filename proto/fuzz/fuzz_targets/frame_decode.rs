//! Frame decoding never panics, and a decoded frame re-encodes to the bytes it came from.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use quiver_proto::Frame;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok((frame, used)) = Frame::decode(&bytes) {
        assert_eq!(frame.to_bytes(), bytes.slice(..used));
    }
});
