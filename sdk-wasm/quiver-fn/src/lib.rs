//! Write a Quiver consumer function as a per-message handler.
//!
//! ```ignore
//! use quiver_fn::{Function, Message, Outcome};
//!
//! struct Router;
//!
//! impl Function for Router {
//!     fn handle(msg: &Message) -> Outcome {
//!         if msg.tag.as_deref() == Some("paid") {
//!             let _ = quiver_fn::emit("shipments", Some("new"), &[], &msg.body);
//!         }
//!         Outcome::Ack
//!     }
//! }
//!
//! quiver_fn::function!(Router);
//! ```
//!
//! The broker calls the component with a batch of one queue's messages; this crate loops
//! over it and calls [`Function::handle`] once per message, in offset order.

#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "function",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_function",
        default_bindings_module: "quiver_fn::bindings",
    });
}

pub use bindings::quiver::function::host::Level;
pub use bindings::quiver::function::types::{Message, Outcome};
#[doc(hidden)]
pub use bindings::{__export_function, Guest as __Guest};

/// A consumer function: what to do with one message.
pub trait Function {
    /// Handles one message: `Outcome::Ack` (done), `Outcome::Retry(delay_ms)` (try again
    /// later) or `Outcome::DeadLetter(reason)` (give up).
    fn handle(msg: &Message) -> Outcome;
}

/// Exports `$ty` (a [`Function`]) as the component's handler.
#[macro_export]
macro_rules! function {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __QuiverFunction;

        impl $crate::__Guest for __QuiverFunction {
            fn handle(batch: ::std::vec::Vec<$crate::Message>) -> ::std::vec::Vec<$crate::Outcome> {
                batch
                    .iter()
                    .map(<$ty as $crate::Function>::handle)
                    .collect()
            }
        }

        $crate::__export_function!(__QuiverFunction with_types_in $crate::bindings);
    };
}

/// Writes a line to the function's log (`quiver fn logs`).
pub fn log(level: Level, text: &str) {
    bindings::quiver::function::host::log(level, text);
}

/// Sends a message to `topic` once this call settles; dropped if the call traps. Errors
/// name what the broker refused (over the emit limits, a bad name).
pub fn emit(topic: &str, tag: Option<&str>, keys: &[String], body: &[u8]) -> Result<(), String> {
    bindings::quiver::function::host::emit(topic, tag, keys, body)
}

thread_local! {
    /// Settings already asked for: they are fixed for a deployment (an instance only ever
    /// serves calls with the same settings), so each key crosses into the host once per
    /// instance, not once per message.
    static CONFIG: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A deploy-time setting (`quiver fn deploy --config key=value`).
pub fn config(key: &str) -> Option<String> {
    if let Some(known) = CONFIG.with(|c| c.borrow().get(key).cloned()) {
        return known;
    }
    let value = bindings::quiver::function::host::config(key);
    CONFIG.with(|c| c.borrow_mut().insert(key.to_owned(), value.clone()));
    value
}

/// Typed views of a message.
pub trait MessageExt {
    /// The body as UTF-8 text.
    fn text(&self) -> Result<&str, std::str::Utf8Error>;
    /// The body as JSON.
    #[cfg(feature = "json")]
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error>;
    /// A property's value.
    fn property(&self, name: &str) -> Option<&str>;
}

impl MessageExt for Message {
    fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    #[cfg(feature = "json")]
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
