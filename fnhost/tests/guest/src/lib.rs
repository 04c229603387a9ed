//! Misbehaves on request (see Cargo.toml).

use quiver_fn::{Function, Level, Message, MessageExt, Outcome};

struct Misbehave;

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

quiver_fn::function!(Misbehave);
