//! Validates and enriches JSON: a message whose body is a JSON object with every field named
//! in `required` (config, comma-separated; default `id`) is re-emitted to `to` (config;
//! default `valid`) with the fields of `add` (config, `key=value` pairs separated by `;`)
//! and a `_source` object (topic, queue, offset) added, keyed by its `id` field when it has
//! one. Anything else is dead-lettered with the reason, so bad input never reaches `to`.

use quiver_fn::{Function, Level, Message, MessageExt, Outcome};
use serde_json::{Map, Value, json};

struct Enricher;

fn check(msg: &Message) -> Result<Map<String, Value>, String> {
    let value: Value = msg.json().map_err(|err| format!("not JSON: {err}"))?;
    let Value::Object(object) = value else {
        return Err(format!("not a JSON object: {value}"));
    };
    let required = quiver_fn::config("required").unwrap_or_else(|| "id".into());
    for field in required.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if object.get(field).is_none_or(Value::is_null) {
            return Err(format!("missing required field {field:?}"));
        }
    }
    Ok(object)
}

impl Function for Enricher {
    fn handle(msg: &Message) -> Outcome {
        let mut object = match check(msg) {
            Ok(object) => object,
            Err(reason) => {
                quiver_fn::log(Level::Warn, &format!("{}: {reason}", msg.id));
                return Outcome::DeadLetter(reason);
            }
        };
        for pair in quiver_fn::config("add").unwrap_or_default().split(';') {
            if let Some((key, value)) = pair.split_once('=') {
                object.insert(
                    key.trim().to_owned(),
                    Value::String(value.trim().to_owned()),
                );
            }
        }
        object.insert(
            "_source".into(),
            json!({"topic": msg.topic, "queue": msg.queue, "offset": msg.offset}),
        );
        let key = match object.get("id") {
            Some(Value::String(id)) => vec![id.clone()],
            Some(other) => vec![other.to_string()],
            None => msg.keys.clone(),
        };
        let to = quiver_fn::config("to").unwrap_or_else(|| "valid".into());
        let body = Value::Object(object).to_string();
        match quiver_fn::emit(&to, msg.tag.as_deref(), &key, body.as_bytes()) {
            Ok(()) => Outcome::Ack,
            Err(reason) => Outcome::DeadLetter(format!("cannot emit to {to}: {reason}")),
        }
    }
}

quiver_fn::function!(Enricher);
