//! The benchmarks' function (see Cargo.toml).

use std::time::{SystemTime, UNIX_EPOCH};

use quiver_fn::{Function, Message, Outcome};

struct Bench;

fn needle(body: &[u8]) -> bool {
    const KEEP: &[u8] = br#""keep":true"#;
    body.windows(KEEP.len()).any(|w| w == KEEP)
}

/// `every` (config): stamp one message in this many (by offset; default 1).
fn stamp_every() -> u64 {
    quiver_fn::config("every")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1)
}

impl Function for Bench {
    fn handle(msg: &Message) -> Outcome {
        let mode = quiver_fn::config("mode").unwrap_or_default();
        let to = quiver_fn::config("to").unwrap_or_else(|| "bench-out".into());
        let emitted = match mode.as_str() {
            "stamp" if msg.offset % stamp_every() == 0 => {
                let now_us = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                let mut body = Vec::with_capacity(16 + msg.id.len());
                body.extend_from_slice(msg.body.get(..8).unwrap_or(&[0; 8]));
                body.extend_from_slice(&now_us.to_le_bytes());
                body.extend_from_slice(msg.id.as_bytes());
                quiver_fn::emit(&to, None, &[], &body)
            }
            "filter" if needle(&msg.body) => {
                quiver_fn::emit(&to, msg.tag.as_deref(), &msg.keys, &msg.body)
            }
            _ => Ok(()),
        };
        match emitted {
            Ok(()) => Outcome::Ack,
            Err(reason) => Outcome::DeadLetter(reason),
        }
    }
}

quiver_fn::function!(Bench);
