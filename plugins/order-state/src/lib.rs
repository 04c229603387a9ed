//! Tracks orders: each message is an event `{"order": "o-1", "event": "created" | "paid" |
//! "shipped" | "delivered" | "cancelled", "from": "<state>"?}`. The function keeps no
//! store: an order's state lives in the messages it emits to `to` (config; default
//! `order-state`), keyed by the order id, each carrying the whole state (`state`, `events`,
//! `last_offset`), so a reader takes the newest per key. Within a call it folds the events
//! of a batch in order; an event may name the state it expects (`from`) so a transition
//! across calls is checked too. An illegal transition (paid after shipped, anything after
//! delivered or cancelled) or a malformed event is dead-lettered with the reason.

use std::cell::RefCell;
use std::collections::HashMap;

use quiver_fn::{Function, Message, MessageExt, Outcome};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Event {
    order: String,
    event: String,
    from: Option<String>,
}

#[derive(Clone)]
struct State {
    state: String,
    events: u64,
}

thread_local! {
    /// Orders seen in this call (an instance lives for one call).
    static SEEN: RefCell<HashMap<String, State>> = RefCell::new(HashMap::new());
}

/// The state an event leads to from `current` (`None`: a new order).
fn next(current: Option<&str>, event: &str) -> Result<&'static str, String> {
    let next = match (current, event) {
        (None, "created") => "created",
        (Some("created"), "paid") => "paid",
        (Some("paid"), "shipped") => "shipped",
        (Some("shipped"), "delivered") => "delivered",
        (Some("created" | "paid"), "cancelled") => "cancelled",
        (current, event) => {
            return Err(format!(
                "illegal transition: {event} from {}",
                current.unwrap_or("nothing")
            ));
        }
    };
    Ok(next)
}

struct OrderState;

impl Function for OrderState {
    fn handle(msg: &Message) -> Outcome {
        let event: Event = match msg.json() {
            Ok(event) => event,
            Err(err) => return Outcome::DeadLetter(format!("not an order event: {err}")),
        };
        let known = SEEN.with(|seen| seen.borrow().get(&event.order).cloned());
        let current = known
            .as_ref()
            .map(|s| s.state.clone())
            .or(event.from.clone());
        let state = match next(current.as_deref(), &event.event) {
            Ok(state) => state,
            Err(reason) => return Outcome::DeadLetter(format!("order {}: {reason}", event.order)),
        };
        let events = known.map_or(1, |s| s.events + 1);
        SEEN.with(|seen| {
            seen.borrow_mut().insert(
                event.order.clone(),
                State {
                    state: state.into(),
                    events,
                },
            )
        });
        let to = quiver_fn::config("to").unwrap_or_else(|| "order-state".into());
        let body = json!({
            "order": event.order, "state": state, "events": events, "last_offset": msg.offset,
        })
        .to_string();
        match quiver_fn::emit(&to, Some(state), &[event.order], body.as_bytes()) {
            Ok(()) => Outcome::Ack,
            Err(reason) => Outcome::Retry(Some(1000)).with_log(&reason),
        }
    }
}

trait WithLog {
    fn with_log(self, text: &str) -> Self;
}

impl WithLog for Outcome {
    /// Logs why, then gives the outcome.
    fn with_log(self, text: &str) -> Self {
        quiver_fn::log(quiver_fn::Level::Warn, text);
        self
    }
}

quiver_fn::function!(OrderState);
