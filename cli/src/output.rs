//! Human tables and JSON for command output.

use comfy_table::Table;
use quiver_proto::StoredMessage;
use serde_json::{Value, json};

/// A table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

/// A message as JSON: the body as text when it is UTF-8, else as hex.
pub fn message_json(msg: &StoredMessage) -> Value {
    let mut value = json!({
        "topic": msg.topic,
        "queue_id": msg.queue_id,
        "offset": msg.offset,
        "msg_id": msg.msg_id.to_string(),
        "tag": msg.tag,
        "keys": msg.keys,
        "properties": msg.properties.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "born_ms": msg.born_ms,
        "stored_ms": msg.stored_ms,
        "size": msg.body.len(),
    });
    match std::str::from_utf8(&msg.body) {
        Ok(text) => value["body"] = json!(text),
        Err(_) => value["body_hex"] = json!(hex(&msg.body)),
    }
    value
}

/// Messages as a table.
pub fn messages_table(messages: &[StoredMessage]) -> String {
    let rows = messages
        .iter()
        .map(|m| {
            vec![
                m.queue_id.to_string(),
                m.offset.to_string(),
                m.msg_id.to_string(),
                m.tag.clone().unwrap_or_default(),
                m.keys.join(","),
                preview(&m.body),
            ]
        })
        .collect();
    table(&["queue", "offset", "msg id", "tag", "keys", "body"], rows)
}

pub fn preview(body: &[u8]) -> String {
    const PREVIEW_CHARS: usize = 60;
    match std::str::from_utf8(body) {
        Ok(text) if text.chars().count() > PREVIEW_CHARS => {
            format!(
                "{}… ({} bytes)",
                text.chars().take(PREVIEW_CHARS).collect::<String>(),
                body.len()
            )
        }
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes binary>", body.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A time (ms since the Unix epoch) in RFC 3339 with milliseconds.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// A group's queue as table cells: topic, queue, broker offset, committed, lag.
pub fn queue_cells(q: &quiver_proto::requests::group::GroupQueue) -> Vec<String> {
    vec![
        q.topic.clone(),
        q.queue_id.to_string(),
        q.max_offset.to_string(),
        q.committed.map_or("-".into(), |c| c.to_string()),
        q.lag.to_string(),
    ]
}
