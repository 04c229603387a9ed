//! Routes messages: a message whose tag is in `tags` (config, `||`-separated; default
//! `paid`) is re-emitted to the topic `to` (config; default `routed`) with its tag, keys and
//! body; the others are acked untouched. A body that asks to (`{"route": "<topic>"}`) goes
//! to that topic instead.

use quiver_fn::{Function, Level, Message, MessageExt, Outcome};

struct Router;

impl Function for Router {
    fn handle(msg: &Message) -> Outcome {
        let tags = quiver_fn::config("tags").unwrap_or_else(|| "paid".into());
        let to = quiver_fn::config("to").unwrap_or_else(|| "routed".into());
        let override_to = msg
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v.get("route").and_then(|r| r.as_str().map(str::to_owned)));
        let matches = msg
            .tag
            .as_deref()
            .is_some_and(|tag| tags.split("||").any(|t| t.trim() == tag));
        let Some(topic) = override_to.or(matches.then_some(to)) else {
            return Outcome::Ack;
        };
        match quiver_fn::emit(&topic, msg.tag.as_deref(), &msg.keys, &msg.body) {
            Ok(()) => {
                quiver_fn::log(Level::Debug, &format!("{} -> {topic}", msg.id));
                Outcome::Ack
            }
            Err(reason) => Outcome::DeadLetter(format!("cannot route to {topic}: {reason}")),
        }
    }
}

quiver_fn::function!(Router);
