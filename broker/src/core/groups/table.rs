//! The groups this broker sees, as a sans-IO state machine: members and their
//! subscriptions, and a lease per queue of this broker. Time comes in as milliseconds from
//! the caller, so the tests drive it by hand.
//!
//! Rules:
//! - A member that has not heartbeaten for `session_ms` is gone; its leases end then too.
//! - Every member of a group has the same subscription; a heartbeat with another one is
//!   refused while a member with the old one is alive.
//! - A queue has at most one lease that has not ended. A member's heartbeat gives it the
//!   queues the assignment names for it that nobody else holds and renews those it holds.
//!   A queue it holds that the assignment moved is let go in two steps, so what the member
//!   handled is committed before anyone else reads the queue: the first heartbeat marks the
//!   lease *revoking* (left out of the answer, not renewed; the member stops reading it,
//!   and commits under it are still accepted); the member's first heartbeat that does not
//!   list it as still finishing ends it (or the lease ends with time). A queue
//!   still held by another member is granted on a later heartbeat: the answer says
//!   `pending`.
//! - Each grant takes a new epoch, above every epoch this broker gave before, across
//!   restarts (the caller supplies a generation that rises at every start). A read or commit
//!   must name the live lease's epoch: anything else is fenced.

use std::collections::BTreeMap;

use crate::core::groups::assign::{Strategy, assign};

/// Topic → canonical tag expression.
pub type Subscription = BTreeMap<String, String>;

/// A queue of this broker: topic and queue id.
pub type QueueRef = (String, u32);

/// One member's lease on a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The member holding it.
    pub holder: String,
    /// Fencing token: rises with every grant.
    pub epoch: u64,
    /// When it ends unless renewed (caller's clock, ms).
    pub expires_ms: u64,
    /// Moved elsewhere: its holder may still commit under it, not read; its next heartbeat
    /// ends it.
    pub revoking: bool,
}

/// What a lease is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A read: only a lease that is not being revoked.
    Read,
    /// An offset commit: a revoking lease still counts (the holder's last commit).
    Commit,
}

/// A member as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Last heartbeat (ms).
    pub last_ms: u64,
    /// Its subscription.
    pub subscription: Subscription,
    /// Free text the client sent (host, pid), for `group describe`.
    pub client: String,
}

/// A member's heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct Beat<'a> {
    /// Group name.
    pub group: &'a str,
    /// Member id.
    pub member: &'a str,
    /// What the client says of itself.
    pub client: &'a str,
    /// Its subscription.
    pub subscription: &'a Subscription,
    /// The group's assignment strategy.
    pub strategy: Strategy,
    /// Revoking leases the member is still finishing: kept (unrenewed) for now.
    pub finishing: &'a [(QueueRef, u64)],
}

/// What a heartbeat answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The queues the member holds now, with their epochs.
    pub leases: Vec<(QueueRef, u64)>,
    /// Some queue assigned to the member is still held by another member: heartbeat again
    /// soon.
    pub pending: bool,
}

/// Why a heartbeat was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// A live member's subscription.
    pub existing: Subscription,
    /// The one offered.
    pub offered: Subscription,
}

/// Why a read or commit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Fenced {
    /// What the broker saw.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Group {
    members: BTreeMap<String, Member>,
    leases: BTreeMap<QueueRef, Lease>,
}

/// Every group this broker sees.
#[derive(Debug)]
pub struct GroupTable {
    broker: String,
    session_ms: u64,
    generation: u32,
    counter: u32,
    groups: BTreeMap<String, Group>,
}

impl GroupTable {
    /// A table for the broker named `broker`, whose members and leases last `session_ms`
    /// past their last heartbeat, in the broker's start number `generation`.
    pub fn new(broker: &str, session_ms: u64, generation: u32) -> Self {
        GroupTable {
            broker: broker.to_owned(),
            session_ms,
            generation,
            counter: 0,
            groups: BTreeMap::new(),
        }
    }

    /// How long a lease lasts past a heartbeat.
    pub fn session_ms(&self) -> u64 {
        self.session_ms
    }

    /// A member's heartbeat. `queues(topic)` is how many queues of the topic this broker
    /// has (0 when it serves none).
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        beat: &Beat<'_>,
        queues: impl Fn(&str) -> u32,
    ) -> Result<Grant, Conflict> {
        let Beat {
            group,
            member,
            client,
            subscription,
            strategy,
            finishing,
        } = *beat;
        self.expire(now_ms);
        let state = self.groups.entry(group.to_owned()).or_default();
        if let Some(other) = state
            .members
            .iter()
            .find(|(id, m)| id.as_str() != member && m.subscription != *subscription)
        {
            return Err(Conflict {
                existing: other.1.subscription.clone(),
                offered: subscription.clone(),
            });
        }
        state.members.insert(
            member.to_owned(),
            Member {
                last_ms: now_ms,
                subscription: subscription.clone(),
                client: client.to_owned(),
            },
        );
        let ids: Vec<&str> = state.members.keys().map(String::as_str).collect();
        let mut target = Vec::new();
        let mut owner_elsewhere = BTreeMap::new();
        for topic in subscription.keys() {
            for (owner, qs) in assign(strategy, &self.broker, topic, queues(topic), &ids) {
                for q in qs {
                    let queue = (topic.clone(), q);
                    if owner == member {
                        target.push(queue);
                    } else {
                        owner_elsewhere.insert(queue, owner.clone());
                    }
                }
            }
        }
        // What the assignment moved elsewhere (or the subscription dropped): revoking at the
        // first heartbeat, ended at the first that does not say it is still finishing it.
        state.leases.retain(|queue, lease| {
            if lease.holder != member || target.contains(queue) {
                return true;
            }
            let keep = !lease.revoking
                || finishing
                    .iter()
                    .any(|(q, epoch)| q == queue && *epoch == lease.epoch);
            lease.revoking = true;
            keep
        });
        let mut grant = Grant {
            leases: Vec::new(),
            pending: false,
        };
        let expires_ms = now_ms + self.session_ms;
        for queue in target {
            match state.leases.get_mut(&queue) {
                Some(lease) if lease.holder == member => {
                    lease.expires_ms = expires_ms;
                    lease.revoking = false;
                    grant.leases.push((queue, lease.epoch));
                }
                Some(_) => grant.pending = true,
                None => {
                    self.counter += 1;
                    let epoch = u64::from(self.generation) << 32 | u64::from(self.counter);
                    state.leases.insert(
                        queue.clone(),
                        Lease {
                            holder: member.to_owned(),
                            epoch,
                            expires_ms,
                            revoking: false,
                        },
                    );
                    grant.leases.push((queue, epoch));
                }
            }
        }
        Ok(grant)
    }

    /// A member leaves: its leases end now.
    pub fn leave(&mut self, group: &str, member: &str) {
        if let Some(state) = self.groups.get_mut(group) {
            state.members.remove(member);
            state.leases.retain(|_, lease| lease.holder != member);
        }
    }

    /// Ends every lease of `group` on `topic`'s queues (its offsets were reset): holders are
    /// fenced, and their next heartbeat gets new leases with new epochs.
    pub fn revoke_topic(&mut self, group: &str, topic: &str) {
        if let Some(state) = self.groups.get_mut(group) {
            state.leases.retain(|(t, _), _| t != topic);
        }
    }

    /// Whether `member` holds the live lease of `queue` with `epoch`.
    pub fn check(
        &self,
        now_ms: u64,
        group: &str,
        member: &str,
        queue: &QueueRef,
        epoch: u64,
        purpose: Use,
    ) -> Result<(), Fenced> {
        let fenced = |reason: String| Err(Fenced { reason });
        let Some(lease) = self.groups.get(group).and_then(|g| g.leases.get(queue)) else {
            return fenced(format!(
                "member {member} of group {group} holds no lease on {} queue {}: heartbeat to get one",
                queue.0, queue.1
            ));
        };
        if lease.holder != member || lease.epoch != epoch {
            return fenced(format!(
                "lease epoch {epoch} on {} queue {} is stale: the queue moved (now epoch {}); \
                 this member must stop reading it",
                queue.0, queue.1, lease.epoch
            ));
        }
        if lease.revoking && purpose == Use::Read {
            return fenced(format!(
                "{} queue {} moved to another member: commit what was handled and stop reading it",
                queue.0, queue.1
            ));
        }
        if lease.expires_ms <= now_ms {
            return fenced(format!(
                "lease epoch {epoch} on {} queue {} ended {} ms ago (no heartbeat in time)",
                queue.0,
                queue.1,
                now_ms - lease.expires_ms
            ));
        }
        Ok(())
    }

    /// Drops members and leases past their time, and groups left with neither.
    pub fn expire(&mut self, now_ms: u64) {
        let session = self.session_ms;
        self.groups.retain(|_, state| {
            state.members.retain(|_, m| m.last_ms + session > now_ms);
            state.leases.retain(|_, lease| lease.expires_ms > now_ms);
            !state.members.is_empty() || !state.leases.is_empty()
        });
    }

    /// Names of the groups with live members or leases.
    pub fn names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// A group's live members.
    pub fn members(&self, group: &str) -> BTreeMap<String, Member> {
        self.groups
            .get(group)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    /// A group's leases.
    pub fn leases(&self, group: &str) -> BTreeMap<QueueRef, Lease> {
        self.groups
            .get(group)
            .map(|g| g.leases.clone())
            .unwrap_or_default()
    }

    /// The group's subscription (of any live member; they are all the same).
    pub fn subscription(&self, group: &str) -> Option<Subscription> {
        let state = self.groups.get(group)?;
        state
            .members
            .values()
            .next()
            .map(|m| m.subscription.clone())
    }
}
