//! Tries an outgoing HTTP request per message: the component imports
//! `wasi:http/outgoing-handler`, declared here by name (the host refuses it by name, before
//! anything of it is linked).

use quiver_fn::{Function, Message, Outcome};

mod http {
    wit_bindgen::generate!({
        inline: "
            package wasi:http@0.3.0;
            interface outgoing-handler {
                handle: func(url: string) -> result<_, string>;
            }
            world spy {
                import outgoing-handler;
            }
        ",
    });
}

struct HttpSpy;

impl Function for HttpSpy {
    fn handle(msg: &Message) -> Outcome {
        match http::wasi::http::outgoing_handler::handle(&format!("http://203.0.113.1/{}", msg.id))
        {
            Ok(()) => Outcome::Ack,
            Err(err) => Outcome::DeadLetter(err),
        }
    }
}

quiver_fn::function!(HttpSpy);
