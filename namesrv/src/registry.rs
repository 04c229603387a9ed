//! The name server's state machine, sans-IO: registrations, heartbeats, expiry and routes.
//! Time is passed in (`now_ms`), so tests drive it without clocks or sleeps.

use std::collections::BTreeMap;

use quiver_proto::requests::route::{BrokerInfo, BrokerRegistration, BrokerUnregister, TopicRoute};

use quiver_proto::requests::topic::{QUEUES_MAX, TOPICS_MAX};

use crate::RouteTable;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another live broker holds the name.
    #[error(
        "broker {broker_name} is registered at {held_by} (last heartbeat {age_ms} ms ago): give this broker another --broker-name, or stop the other one and wait {wait_ms} ms for it to expire"
    )]
    Conflict {
        /// The name.
        broker_name: String,
        /// The address that holds it.
        held_by: String,
        /// Age of its last heartbeat.
        age_ms: u64,
        /// Time until it expires.
        wait_ms: u64,
    },
    /// The registration breaks a limit; nothing of it was taken.
    #[error("registration of broker {broker_name} refused: {reason}")]
    Invalid {
        /// The broker.
        broker_name: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    registration: BrokerRegistration,
    last_seen_ms: u64,
}

/// Registered brokers and the routes they make.
#[derive(Debug)]
pub struct Registry {
    expiry_ms: u64,
    brokers: BTreeMap<String, Entry>,
    routes: RouteTable,
}

impl Registry {
    /// A registry that drops brokers silent for `expiry_ms`.
    pub fn new(expiry_ms: u64) -> Self {
        Registry {
            expiry_ms,
            brokers: BTreeMap::new(),
            routes: RouteTable::new(),
        }
    }

    /// The expiry.
    pub fn expiry_ms(&self) -> u64 {
        self.expiry_ms
    }

    /// A registration or heartbeat. Returns `true` when the broker is new (or came back).
    pub fn handle_register(
        &mut self,
        now_ms: u64,
        registration: BrokerRegistration,
    ) -> Result<bool, RegistryError> {
        self.poll_expired(now_ms);
        let name = registration.broker_name.clone();
        check_registration(&registration).map_err(|reason| RegistryError::Invalid {
            broker_name: name.clone(),
            reason,
        })?;
        let fresh = match self.brokers.get(&name) {
            Some(entry) if entry.registration.addr != registration.addr => {
                let age_ms = now_ms.saturating_sub(entry.last_seen_ms);
                return Err(RegistryError::Conflict {
                    broker_name: name,
                    held_by: entry.registration.addr.clone(),
                    age_ms,
                    wait_ms: self.expiry_ms.saturating_sub(age_ms),
                });
            }
            Some(_) => false,
            None => true,
        };
        self.routes.upsert_broker(&name, &registration.addr);
        let topics: Vec<(String, u32)> = registration
            .topics
            .iter()
            .map(|t| (t.topic.clone(), t.queues))
            .collect();
        self.routes.set_broker_topics(&name, &topics);
        // A broker whose store refuses sends keeps its layout but takes no sends.
        self.routes
            .set_broker_writable(&name, registration.unhealthy_reason.is_empty());
        self.brokers.insert(
            name,
            Entry {
                registration,
                last_seen_ms: now_ms,
            },
        );
        Ok(fresh)
    }

    /// A graceful leave: routes drop at once. Ignored when the address does not match (a
    /// stale process must not remove its successor). Returns whether a broker was removed.
    pub fn handle_unregister(&mut self, request: &BrokerUnregister) -> bool {
        let matches = self
            .brokers
            .get(&request.broker_name)
            .is_some_and(|entry| entry.registration.addr == request.addr);
        if matches {
            self.remove(&request.broker_name);
        }
        matches
    }

    /// Drops every broker whose last heartbeat is older than the expiry; returns their names.
    pub fn poll_expired(&mut self, now_ms: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .brokers
            .iter()
            .filter(|(_, entry)| now_ms.saturating_sub(entry.last_seen_ms) >= self.expiry_ms)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &expired {
            self.remove(name);
        }
        expired
    }

    /// When the next broker expires, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.brokers
            .values()
            .map(|entry| entry.last_seen_ms + self.expiry_ms)
            .min()
    }

    /// A topic's route among live brokers.
    pub fn route(&mut self, now_ms: u64, topic: &str) -> Option<TopicRoute> {
        self.poll_expired(now_ms);
        self.routes.route(topic)
    }

    /// Every live broker.
    pub fn list(&mut self, now_ms: u64) -> Vec<BrokerInfo> {
        self.poll_expired(now_ms);
        self.brokers
            .values()
            .map(|entry| {
                let reg = &entry.registration;
                BrokerInfo {
                    cluster: reg.cluster.clone(),
                    broker_name: reg.broker_name.clone(),
                    addr: reg.addr.clone(),
                    role: reg.role,
                    data_version: reg.data_version,
                    heartbeat_age_ms: now_ms.saturating_sub(entry.last_seen_ms),
                    topics: reg.topics.len() as u32,
                    queues: reg
                        .topics
                        .iter()
                        .fold(0u32, |sum, t| sum.saturating_add(t.queues)),
                    unhealthy_reason: reg.unhealthy_reason.clone(),
                }
            })
            .collect()
    }

    fn remove(&mut self, name: &str) {
        self.brokers.remove(name);
        self.routes.remove_broker(name);
    }
}

#[cfg(test)]
mod tests;

/// Limits a registration must keep before anything of it is taken: at most
/// [`TOPICS_MAX`] topics, each named by the naming rules, once, with 1 to [`QUEUES_MAX`]
/// queues.
fn check_registration(registration: &BrokerRegistration) -> Result<(), String> {
    if registration.topics.len() > TOPICS_MAX {
        return Err(format!(
            "{} topics: at most {TOPICS_MAX}",
            registration.topics.len()
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(registration.topics.len());
    for topic in &registration.topics {
        quiver_proto::Name::readable(&topic.topic).map_err(|err| format!("topic {err}"))?;
        if !(1..=QUEUES_MAX).contains(&topic.queues) {
            return Err(format!(
                "topic {} has {} queues: use 1 to {QUEUES_MAX}",
                topic.topic, topic.queues
            ));
        }
        if !seen.insert(topic.topic.as_str()) {
            return Err(format!("topic {} is listed twice", topic.topic));
        }
    }
    Ok(())
}
