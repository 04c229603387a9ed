//! End-to-end tests: real `quiver` processes on loopback, QUIC + TLS, one at a time.

mod admin;
mod auto_batch;
mod bad_input;
mod cli;
mod cluster;
mod crash;
mod data_safety;
mod delays;
mod fn_sandbox;
mod functions;
mod groups;
mod limits;
mod long_poll;
mod member;
mod query;
mod recovery;
mod retries;
mod security;
mod send_modes;
mod shutdown;
mod tidy;

use std::collections::BTreeMap;
use std::time::Duration;

use quiver_client::{Admin, Client, MessageQueue, PullConsumer, StoredMessage};
use quiver_tests::harness::{Server, Spec};
use tempfile::TempDir;

/// A started standalone with a topic, and an admin client.
pub struct Setup {
    pub dir: TempDir,
    pub server: Server,
    pub client: Client,
}

pub async fn setup(spec: Spec, topic: &str, queues: u32) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&spec, &dir.path().join("data")).expect("server starts");
    let client = server.client(true);
    Admin::new(client.clone())
        .create_topic(topic, queues)
        .await
        .expect("topic created");
    Setup {
        dir,
        server,
        client,
    }
}

/// Every message of every queue on every broker serving `topic`, by queue.
pub async fn read_all(client: &Client, topic: &str) -> BTreeMap<MessageQueue, Vec<StoredMessage>> {
    let consumer = PullConsumer::new(client.clone());
    let mut all = BTreeMap::new();
    for queue in consumer.offsets(topic).await.expect("offsets") {
        let mut msgs = Vec::new();
        let mut offset = queue.min_offset;
        while offset < queue.max_offset {
            let response = consumer
                .pull(&queue.queue, offset, 1000, Duration::ZERO)
                .await
                .expect("pull");
            assert!(
                !response.messages.is_empty(),
                "queue {} empty at {offset}",
                queue.queue
            );
            for msg in &response.messages {
                assert!(msg.checksum_ok(), "body checksum of {}", msg.msg_id);
            }
            offset = response.next_offset;
            msgs.extend(response.messages);
        }
        all.insert(queue.queue, msgs);
    }
    all
}
