//! The core's consumer-group operations: heartbeat, pull through a lease, commit, leave,
//! and the admin views. The sans-IO [`GroupTable`](super::table::GroupTable) decides;
//! this file adds the clock, the store (queues, reads) and the catalog (offsets, settings).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quiver_proto::message::{RETRY_PREFIX, StoredMessage};
use quiver_proto::requests::group::{
    GroupCommit, GroupHeartbeat, GroupHeartbeatResponse, GroupInfo, GroupLeave, GroupPull,
    GroupQueue, GroupSettings as WireSettings, MemberInfo, OffsetCommit, QueueLease, StartFrom,
    Subscription as WireSubscription,
};

use super::assign::Strategy;
use super::table::{Beat, Fenced, Subscription, Use};
use crate::core::tags::TagExpr;
use crate::core::topics::blocking;
use crate::core::{Core, PullSpec};
use crate::store::catalog::{GroupSettings, OffsetRow};
use crate::store::{Refusal, StoreError};

/// Longest retry back-off step accepted (RocketMQ's largest delay level is 2 h; a named max
/// keeps timers bounded).
pub const BACKOFF_MS_MAX: u64 = 40 * 24 * 3600 * 1000;
/// Most deliveries after the first a group may ask for.
pub const MAX_RETRIES_MAX: u32 = 64;

/// What a group pull returned.
#[derive(Debug)]
pub struct GroupPulled {
    /// Matching messages.
    pub messages: Vec<StoredMessage>,
    /// Where the next pull starts.
    pub next_offset: u64,
    /// Smallest offset stored.
    pub min_offset: u64,
    /// One past the largest.
    pub max_offset: u64,
    /// Offsets the tag filter stepped over.
    pub filtered: u64,
}

impl GroupPulled {
    /// A read from `from`, with the offsets its tag filter stepped over.
    pub fn of(read: crate::core::Pulled, from: u64) -> Self {
        let filtered = read
            .next_offset
            .saturating_sub(from)
            .saturating_sub(read.messages.len() as u64);
        GroupPulled {
            messages: read.messages,
            next_offset: read.next_offset,
            min_offset: read.min_offset,
            max_offset: read.max_offset,
            filtered,
        }
    }
}

/// A request naming a lease: `(group, member, topic, queue, epoch)`.
pub(super) trait LeaseClaim {
    fn claim(&self) -> (&str, &str, &str, u32, u64);
}

impl LeaseClaim for GroupPull {
    fn claim(&self) -> (&str, &str, &str, u32, u64) {
        (
            &self.group,
            &self.member,
            &self.topic,
            self.queue_id,
            self.epoch,
        )
    }
}

impl LeaseClaim for quiver_proto::requests::group::GroupSendBack {
    fn claim(&self) -> (&str, &str, &str, u32, u64) {
        (
            &self.group,
            &self.member,
            &self.topic,
            self.queue_id,
            self.epoch,
        )
    }
}

fn fenced(err: Fenced) -> StoreError {
    StoreError::invalid(Refusal::GroupFenced, err.reason)
}

fn describe(sub: &Subscription) -> String {
    let parts: Vec<String> = sub.iter().map(|(t, e)| format!("{t} [{e}]")).collect();
    parts.join(", ")
}

/// The subscription as the table keeps it: topic → canonical expression, with the group's
/// retry topic (every message of it) added.
fn normalize(group: &str, subscriptions: &[WireSubscription]) -> Result<Subscription, StoreError> {
    if subscriptions.is_empty() {
        return Err(StoreError::invalid(
            Refusal::InvalidArgument,
            "a group member must subscribe to at least one topic",
        ));
    }
    let mut out = Subscription::new();
    for sub in subscriptions {
        if sub.topic.starts_with(RETRY_PREFIX) {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                format!(
                    "topic {}: members read their group's retry topic without subscribing to it",
                    sub.topic
                ),
            ));
        }
        let expr = TagExpr::parse(&sub.tags)
            .map_err(|err| StoreError::invalid(Refusal::InvalidArgument, err.to_string()))?;
        if out.insert(sub.topic.clone(), expr.to_string()).is_some() {
            return Err(StoreError::invalid(
                Refusal::InvalidArgument,
                format!(
                    "topic {} appears twice in the subscription: join its tags with `||`",
                    sub.topic
                ),
            ));
        }
    }
    out.insert(format!("{RETRY_PREFIX}{group}"), TagExpr::All.to_string());
    Ok(out)
}

/// Checks settings from `group update`.
pub fn check_settings(settings: &WireSettings) -> Result<GroupSettings, StoreError> {
    let refuse = |reason: String| Err(StoreError::invalid(Refusal::InvalidArgument, reason));
    if Strategy::parse(&settings.strategy).is_none() {
        return refuse(format!(
            "strategy {:?} is unknown: use `average` or `consistent_hash`",
            settings.strategy
        ));
    }
    if settings.max_retries > MAX_RETRIES_MAX {
        return refuse(format!(
            "max retries {} is over {MAX_RETRIES_MAX}",
            settings.max_retries
        ));
    }
    if settings.backoff_ms.is_empty() {
        return refuse("the back-off schedule needs at least one step".into());
    }
    if let Some(step) = settings.backoff_ms.iter().find(|ms| **ms > BACKOFF_MS_MAX) {
        return refuse(format!(
            "back-off step {step} ms is over the maximum delay of 40 days"
        ));
    }
    Ok(GroupSettings {
        max_retries: settings.max_retries,
        backoff_ms: settings.backoff_ms.clone(),
        strategy: settings.strategy.clone(),
    })
}

impl Core {
    /// A member's heartbeat: refreshes it, checks its subscription against the group's,
    /// and answers the leases it holds on this broker's queues. The group is created with
    /// default settings on its first heartbeat.
    pub async fn group_heartbeat(
        &self,
        req: &GroupHeartbeat,
    ) -> Result<GroupHeartbeatResponse, StoreError> {
        let subscription = normalize(&req.group, &req.subscriptions)?;
        let finishing: Vec<((String, u32), u64)> = req
            .finishing
            .iter()
            .map(|l| ((l.topic.clone(), l.queue_id), l.epoch))
            .collect();
        let catalog_store = self.store.clone();
        let group = req.group.clone();
        let settings = blocking(move || catalog_store.catalog().ensure_group(&group)).await?;
        let strategy = Strategy::parse(&settings.strategy).unwrap_or_default();
        let now = self.groups.now_ms();
        let mut table = self.groups.table();
        // Start positions of groups without live members are forgotten with them.
        table.expire(now);
        {
            let live = table.names();
            let mut starts = self.groups.starts();
            starts.retain(|group, _| live.contains(group));
            starts.insert(req.group.clone(), req.start);
        }
        let grant = table
            .heartbeat(
                now,
                &Beat {
                    group: &req.group,
                    member: &req.member,
                    client: &req.client,
                    subscription: &subscription,
                    strategy,
                    finishing: &finishing,
                },
                |topic| self.store.topic(topic).map_or(0, |meta| meta.queues),
            )
            .map_err(|conflict| {
                StoreError::invalid(
                    Refusal::SubscriptionConflict,
                    format!(
                        "group {}: member {} subscribes to {}, but the group's live members \
                         subscribe to {}; every member of a group must subscribe alike (use \
                         another group for another subscription)",
                        req.group,
                        req.member,
                        describe(&conflict.offered),
                        describe(&conflict.existing)
                    ),
                )
            })?;
        Ok(GroupHeartbeatResponse {
            leases: grant
                .leases
                .into_iter()
                .map(|((topic, queue_id), epoch)| QueueLease {
                    topic,
                    queue_id,
                    epoch,
                })
                .collect(),
            lease_ms: table.session_ms(),
            pending: grant.pending,
        })
    }

    /// Reads a leased queue with the group's tag filter; without an offset, from the
    /// group's committed offset (or its start position, committed as the first offset).
    pub async fn group_pull(
        &self,
        req: &GroupPull,
        wait: Duration,
    ) -> Result<GroupPulled, StoreError> {
        self.check_lease(req, Use::Read)?;
        let tags = self
            .groups
            .table()
            .subscription(&req.group)
            .and_then(|sub| sub.get(&req.topic).cloned())
            .unwrap_or_else(|| "*".into());
        let tags = TagExpr::parse(&tags)
            .map_err(|err| StoreError::invalid(Refusal::InvalidArgument, err.to_string()))?;
        let offset = match req.offset {
            Some(offset) => offset,
            None => {
                self.committed_or_start(&req.group, &req.topic, req.queue_id)
                    .await?
            }
        };
        let spec = PullSpec {
            topic: req.topic.clone(),
            queue_id: req.queue_id,
            offset,
            max_msgs: req.max_msgs,
            max_bytes: req.max_bytes,
            tags,
        };
        Ok(GroupPulled::of(self.pull(&spec, wait).await?, offset))
    }

    /// Checks that the member holds the lease `req` names, for `usage`.
    pub(super) fn check_lease(&self, req: &impl LeaseClaim, usage: Use) -> Result<(), StoreError> {
        let (group, member, topic, queue_id, epoch) = req.claim();
        self.groups
            .table()
            .check(
                self.groups.now_ms(),
                group,
                member,
                &(topic.to_owned(), queue_id),
                epoch,
                usage,
            )
            .map_err(fenced)
    }

    /// The group's committed offset of a queue; without one, where the group starts
    /// (committed at once, so a restart resumes there too). Never below the queue's start.
    async fn committed_or_start(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
    ) -> Result<u64, StoreError> {
        let meta = self.store.topic(topic)?;
        crate::store::check_queue(topic, &meta, queue_id)?;
        self.store.catch_up().await?;
        let range = self.store.queue_range(&meta, queue_id);
        let start_from = self.groups.starts().get(group).copied().unwrap_or_default();
        let start = match start_from {
            StartFrom::Last => range.max,
            StartFrom::First => range.min,
            StartFrom::Time(ms) => self.offset_at_time(topic, queue_id, ms).await?,
        };
        let store = self.store.clone();
        let group = group.to_owned();
        let committed = blocking(move || {
            store
                .catalog()
                .offset_or_start(&group, meta.id, queue_id, start)
        })
        .await?;
        Ok(committed.max(range.min))
    }

    /// Splits offsets into those whose lease the member holds (as rows to commit) and the
    /// reasons the others are fenced. An offset past its queue's end is bad input: an error.
    fn check_commits(
        &self,
        group: &str,
        member: &str,
        offsets: &[OffsetCommit],
    ) -> Result<(Vec<OffsetRow>, Vec<String>), StoreError> {
        let now = self.groups.now_ms();
        let table = self.groups.table();
        let mut rows = Vec::with_capacity(offsets.len());
        let mut refused = Vec::new();
        for commit in offsets {
            let queue = (commit.topic.clone(), commit.queue_id);
            if let Err(fenced) = table.check(now, group, member, &queue, commit.epoch, Use::Commit)
            {
                refused.push(fenced.reason);
                continue;
            }
            let meta = self.store.topic(&commit.topic)?;
            let range = self.store.queue_range(&meta, commit.queue_id);
            if commit.offset > range.max {
                return Err(StoreError::invalid(
                    Refusal::OffsetOutOfRange,
                    format!(
                        "offset {} of {} queue {} is past the queue's end {}",
                        commit.offset, commit.topic, commit.queue_id, range.max
                    ),
                ));
            }
            rows.push((meta.id, commit.queue_id, commit.offset));
        }
        Ok((rows, refused))
    }

    /// Commits the offsets whose lease the member holds, in one durable write; the others
    /// are refused with `group.fenced`, which names them (the rest are committed).
    async fn commit_checked(
        &self,
        group: &str,
        member: &str,
        offsets: &[OffsetCommit],
    ) -> Result<(), StoreError> {
        let (rows, refused) = self.check_commits(group, member, offsets)?;
        let committed = rows.len();
        let store = self.store.clone();
        let name = group.to_owned();
        blocking(move || store.catalog().commit_offsets(&name, &rows)).await?;
        if refused.is_empty() {
            return Ok(());
        }
        Err(fenced(Fenced {
            reason: format!(
                "{} of {} offsets refused ({committed} committed): {}",
                refused.len(),
                offsets.len(),
                refused.join("; ")
            ),
        }))
    }

    /// Commits offsets of leased queues; each offset stands alone under its own lease.
    pub async fn group_commit(&self, req: &GroupCommit) -> Result<(), StoreError> {
        let _serial = self.groups.commits.lock().await;
        self.commit_checked(&req.group, &req.member, &req.offsets)
            .await
    }

    /// A member leaves: its final offsets are committed (as by `group_commit`), then its
    /// leases end at once.
    pub async fn group_leave(&self, req: &GroupLeave) -> Result<(), StoreError> {
        let _serial = self.groups.commits.lock().await;
        let committed = self
            .commit_checked(&req.group, &req.member, &req.offsets)
            .await;
        self.groups.table().leave(&req.group, &req.member);
        committed
    }

    /// Every group this broker knows: with settings or live members.
    pub async fn group_list(&self) -> Result<Vec<String>, StoreError> {
        let store = self.store.clone();
        let mut names: BTreeSet<String> = blocking(move || store.catalog().groups())
            .await?
            .into_iter()
            .collect();
        names.extend(self.groups.table().names());
        Ok(names.into_iter().collect())
    }

    /// A group's members, subscription, settings and, per queue of this broker it reads
    /// or has offsets for: the queue's end, the committed offset, the lag and the lease.
    pub async fn group_describe(&self, group: &str) -> Result<GroupInfo, StoreError> {
        let store = self.store.clone();
        let name = group.to_owned();
        let (settings, offsets) = blocking(move || {
            let catalog = store.catalog();
            Ok((catalog.group(&name)?, catalog.offsets(&name)?))
        })
        .await?;
        let now = self.groups.now_ms();
        let (members, subscription, leases) = {
            let mut table = self.groups.table();
            table.expire(now);
            (
                table.members(group),
                table.subscription(group).unwrap_or_default(),
                table.leases(group),
            )
        };
        let Some(settings) =
            settings.or_else(|| (!members.is_empty()).then(GroupSettings::default))
        else {
            return Err(StoreError::invalid(
                Refusal::GroupNotFound,
                format!("group {group} not found: it is created by its members' first heartbeat"),
            ));
        };
        let mut committed: BTreeMap<(String, u32), u64> = BTreeMap::new();
        for (topic_id, queue_id, offset) in offsets {
            if let Some(topic) = self.store.catalog().name_of(topic_id) {
                committed.insert((topic.to_string(), queue_id), offset);
            }
        }
        let mut queues: BTreeSet<(String, u32)> = committed.keys().cloned().collect();
        queues.extend(leases.keys().cloned());
        for topic in subscription.keys() {
            if let Ok(meta) = self.store.topic(topic) {
                queues.extend((0..meta.queues).map(|q| (topic.clone(), q)));
            }
        }
        let mut rows = Vec::new();
        for (topic, queue_id) in queues {
            let Ok(meta) = self.store.topic(&topic) else {
                continue;
            };
            let range = self.store.queue_range(&meta, queue_id);
            let done = committed.get(&(topic.clone(), queue_id)).copied();
            let lease = leases.get(&(topic.clone(), queue_id));
            rows.push(GroupQueue {
                lag: range
                    .max
                    .saturating_sub(done.unwrap_or(range.min).max(range.min)),
                topic,
                queue_id,
                max_offset: range.max,
                committed: done,
                holder: lease.map(|l| l.holder.clone()),
                epoch: lease.map_or(0, |l| l.epoch),
            });
        }
        Ok(GroupInfo {
            group: group.to_owned(),
            subscriptions: subscription
                .into_iter()
                .map(|(topic, tags)| WireSubscription { topic, tags })
                .collect(),
            members: members
                .into_iter()
                .map(|(member, m)| MemberInfo {
                    member,
                    client: m.client,
                    idle_ms: now.saturating_sub(m.last_ms),
                })
                .collect(),
            queues: rows,
            settings: WireSettings {
                max_retries: settings.max_retries,
                backoff_ms: settings.backoff_ms,
                strategy: settings.strategy,
            },
        })
    }

    /// Changes a group's settings (creating it when new).
    pub async fn group_update(
        &self,
        group: &str,
        settings: &WireSettings,
    ) -> Result<(), StoreError> {
        let settings = check_settings(settings)?;
        let store = self.store.clone();
        let group = group.to_owned();
        blocking(move || store.catalog().set_group(&group, &settings)).await
    }

    /// Moves a group's committed offsets of `topic` on this broker, and ends the leases on
    /// its queues so members re-read from the new offsets (their next read or commit is
    /// fenced; their next heartbeat gets new leases).
    pub async fn group_reset_offset(
        &self,
        group: &str,
        topic: &str,
        to: StartFrom,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let meta = self.store.topic(topic)?;
        self.store.catch_up().await?;
        let mut rows = Vec::new();
        for queue_id in 0..meta.queues {
            let range = self.store.queue_range(&meta, queue_id);
            let offset = match to {
                StartFrom::Last => range.max,
                StartFrom::First => range.min,
                StartFrom::Time(ms) => self.offset_at_time(topic, queue_id, ms).await?,
            };
            rows.push((meta.id, queue_id, offset));
        }
        let _serial = self.groups.commits.lock().await;
        self.groups.table().revoke_topic(group, topic);
        let store = self.store.clone();
        let (name, committed) = (group.to_owned(), rows.clone());
        blocking(move || store.catalog().commit_offsets(&name, &committed)).await?;
        Ok(rows.into_iter().map(|(_, q, o)| (q, o)).collect())
    }
}
