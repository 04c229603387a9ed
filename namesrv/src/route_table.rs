//! The route table: brokers by name, and for each topic the queues each broker serves.

use std::collections::BTreeMap;

use quiver_proto::requests::route::{BrokerAddr, QueueRoute, TopicRoute};

/// Brokers and their topics. `BTreeMap`s keep answers in a stable order.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    brokers: BTreeMap<String, String>,
    topics: BTreeMap<String, BTreeMap<String, QueueRoute>>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or moves a broker.
    pub fn upsert_broker(&mut self, broker_name: &str, addr: &str) {
        self.brokers.insert(broker_name.to_owned(), addr.to_owned());
    }

    /// Replaces a broker's whole topic table (what a registration or heartbeat carries).
    pub fn set_broker_topics(&mut self, broker_name: &str, topics: &[(String, u32)]) {
        for queues in self.topics.values_mut() {
            queues.remove(broker_name);
        }
        for (topic, queues) in topics {
            self.set_topic(broker_name, topic, *queues);
        }
        self.topics.retain(|_, queues| !queues.is_empty());
    }

    /// Sets one topic's queue count on one broker.
    pub fn set_topic(&mut self, broker_name: &str, topic: &str, queues: u32) {
        self.topics.entry(topic.to_owned()).or_default().insert(
            broker_name.to_owned(),
            QueueRoute {
                broker_name: broker_name.to_owned(),
                queues,
                writable: true,
            },
        );
    }

    /// Removes one topic from one broker.
    pub fn remove_topic(&mut self, broker_name: &str, topic: &str) {
        if let Some(queues) = self.topics.get_mut(topic) {
            queues.remove(broker_name);
            if queues.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Removes a broker and its queues.
    pub fn remove_broker(&mut self, broker_name: &str) {
        self.brokers.remove(broker_name);
        self.set_broker_topics(broker_name, &[]);
    }

    /// The route of a topic, or `None` when no broker serves it.
    pub fn route(&self, topic: &str) -> Option<TopicRoute> {
        let queues = self.topics.get(topic)?;
        let brokers = queues
            .keys()
            .filter_map(|name| {
                self.brokers.get(name).map(|addr| BrokerAddr {
                    broker_name: name.clone(),
                    addr: addr.clone(),
                })
            })
            .collect::<Vec<_>>();
        let queues = queues
            .values()
            .filter(|route| self.brokers.contains_key(&route.broker_name))
            .cloned()
            .collect::<Vec<_>>();
        (!queues.is_empty()).then(|| TopicRoute {
            topic: topic.to_owned(),
            brokers,
            queues,
        })
    }
}

#[cfg(test)]
mod tests;
