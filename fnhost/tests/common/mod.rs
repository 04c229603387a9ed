//! What the host's tests share: the guests `cargo xtask guests` built, a message, a config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use quiver_fnhost::Message;

/// The component `name` (`target/wasm-guests/wasm32-wasip2/release/<name>.wasm`).
pub fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; build the test guests with `cargo xtask guests`",
            path.display()
        )
    })
}

/// A message of `orders` queue 1 tagged `paid`, keyed `k<offset>`.
pub fn message(offset: u64, body: &str) -> Message {
    Message {
        topic: "orders".into(),
        queue: 1,
        offset,
        id: format!("{offset:032x}"),
        tag: Some("paid".into()),
        keys: vec![format!("k{offset}")],
        properties: vec![],
        body: body.as_bytes().to_vec(),
        born_ms: 1,
        reconsume: 0,
    }
}

/// `--config` settings.
pub fn config(pairs: &[(&str, &str)]) -> Arc<BTreeMap<String, String>> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
