//! Misbehaves on request (see Cargo.toml).

use quiver_fn::{Function, Level, Message, MessageExt, Outcome};

struct Misbehave;

/// Messages `count` saw in this instance.
static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Function for Misbehave {
    fn handle(msg: &Message) -> Outcome {
        let body = msg.text().unwrap_or_default();
        match body {
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "boom" => panic!("boom at offset {}", msg.offset),
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "chatty" => {
                println!("printed {}", msg.id);
                quiver_fn::log(Level::Warn, &format!("logged {}", msg.id));
                Outcome::Ack
            }
            "recurse" => {
                recurse(std::hint::black_box(1));
                Outcome::Ack
            }
            "unreachable" => std::process::abort(),
            "flood" => {
                // A million emits: the host refuses all past the per-message limit.
                let mut refused = 0u32;
                for _ in 0..1_000_000 {
                    if quiver_fn::emit("flooded", None, &[], b"x").is_err() {
                        refused += 1;
                    }
                }
                quiver_fn::log(Level::Info, &format!("{refused} emits refused"));
                Outcome::DeadLetter(format!("{refused} emits refused"))
            }
            "big-emit" => match quiver_fn::emit("big", None, &[], &vec![0u8; 2 << 20]) {
                Ok(()) => Outcome::Ack,
                Err(reason) => Outcome::DeadLetter(reason),
            },
            "read-file" => match std::fs::read("/etc/passwd") {
                Ok(bytes) => {
                    Outcome::DeadLetter(format!("read {} bytes of /etc/passwd", bytes.len()))
                }
                Err(err) => {
                    quiver_fn::log(Level::Info, &format!("no file: {err}"));
                    Outcome::Ack
                }
            },
            "count" => {
                // Calls an instance served: more than one when the host keeps instances.
                let seen = SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                quiver_fn::log(Level::Info, &format!("count {seen}"));
                Outcome::Ack
            }
            "grow" => {
                // 8 MiB, freed again: the memory stays grown.
                let big = std::hint::black_box(vec![1u8; 8 << 20]);
                drop(big);
                Outcome::Ack
            }
            "sleep" => {
                // Blocks in a host call (a clock), not in wasm: no epoch check runs meanwhile.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Outcome::Ack
            }
            "leak" => {
                // 100,000 host resources (stdout streams), never dropped.
                for _ in 0..100_000 {
                    std::mem::forget(wasi::cli::stdout::get_stdout());
                }
                Outcome::Ack
            }
            "fat" => {
                // Four 1 MiB emits.
                for _ in 0..4 {
                    if let Err(reason) = quiver_fn::emit("fat", None, &[], &vec![7u8; 1 << 20]) {
                        return Outcome::DeadLetter(reason);
                    }
                }
                Outcome::Ack
            }
            "retry" => Outcome::Retry(Some(250)),
            "dead" => Outcome::DeadLetter("asked to".into()),
            other => match other.strip_prefix("emit:") {
                Some(topic) => match quiver_fn::emit(topic, msg.tag.as_deref(), &msg.keys, b"copy")
                {
                    Ok(()) => Outcome::Ack,
                    Err(reason) => Outcome::DeadLetter(reason),
                },
                None => {
                    let greeting = quiver_fn::config("greeting").unwrap_or_default();
                    if !greeting.is_empty() {
                        quiver_fn::log(Level::Info, &greeting);
                    }
                    Outcome::Ack
                }
            },
        }
    }
}

/// Recursion without end (each frame keeps a buffer alive, so it is not optimised away).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[63]
}

quiver_fn::function!(Misbehave);
