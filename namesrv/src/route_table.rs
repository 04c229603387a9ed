//! The route table: live brokers by name, and for each topic the queues each broker serves
//! or served (its layout).
//!
//! A broker that leaves (expiry, unregister) loses its address at once but keeps its place in
//! the layouts of its topics, so a route lists its queues without an address and not
//! writable. Ordered keys hash over the whole layout: a producer that starts while a broker
//! is down still finds every key's home (and fails the keys whose home is gone) instead of
//! spreading keys over the queues that happen to be live. A layout entry goes when the broker
//! comes back with a topic table without that topic, or when the name server restarts.

use std::collections::BTreeMap;

use quiver_proto::requests::route::{BrokerAddr, QueueRoute, TopicRoute};

/// Brokers and their topics. `BTreeMap`s keep answers in a stable order.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    // Live brokers only.
    brokers: BTreeMap<String, String>,
    // Every broker that has served each topic since it last said otherwise, live or not.
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

    /// Marks every queue of a broker writable or not (a broker that reports its store
    /// fenced takes no sends).
    pub fn set_broker_writable(&mut self, broker_name: &str, writable: bool) {
        for queues in self.topics.values_mut() {
            if let Some(route) = queues.get_mut(broker_name) {
                route.writable = writable;
            }
        }
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

    /// A broker left (expired or unregistered): its address goes, its queues stay in the
    /// layouts of its topics (see the module docs).
    pub fn remove_broker(&mut self, broker_name: &str) {
        self.brokers.remove(broker_name);
    }

    /// The route of a topic, or `None` when no live broker serves it. `brokers` lists the live
    /// brokers; `queues` the whole layout, a departed broker's queues not writable.
    pub fn route(&self, topic: &str) -> Option<TopicRoute> {
        let layout = self.topics.get(topic)?;
        let brokers = layout
            .keys()
            .filter_map(|name| {
                self.brokers.get(name).map(|addr| BrokerAddr {
                    broker_name: name.clone(),
                    addr: addr.clone(),
                })
            })
            .collect::<Vec<_>>();
        let queues = layout
            .values()
            .map(|route| QueueRoute {
                writable: route.writable && self.brokers.contains_key(&route.broker_name),
                ..route.clone()
            })
            .collect::<Vec<_>>();
        (!brokers.is_empty()).then(|| TopicRoute {
            topic: topic.to_owned(),
            brokers,
            queues,
        })
    }
}

#[cfg(test)]
mod tests;
