//! `group.*` bodies: consumer-group membership, queue leases, reads and offsets (4xx).
//!
//! A member heartbeats every broker that serves its topics; each broker assigns its own
//! queues among the members it sees and grants each a lease with an epoch. Reads and
//! commits name the epoch; a stale one is refused with `group.fenced`.

use serde::{Deserialize, Serialize};

use crate::decode::encoded_bytes_min;
use crate::message::StoredMessage;
use crate::requests::msg::PULL_MSGS_MAX;

/// Most topics one group subscribes to.
pub const SUBSCRIPTIONS_MAX: usize = 64;
/// Most leases one heartbeat answer or offsets one commit carries (topics × queues).
pub const GROUP_QUEUES_MAX: usize = 1 << 16;
/// Most members or groups one listing carries.
pub const GROUP_LIST_MAX: usize = 1 << 16;
/// Most steps of a retry back-off schedule.
pub const BACKOFF_STEPS_MAX: usize = 32;

/// One topic of a group's subscription.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subscription {
    /// Topic name.
    pub topic: String,
    /// Tag expression: `*`, `A`, `A || B`.
    pub tags: String,
}

/// Where a group without a committed offset starts reading a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartFrom {
    /// After the newest message (only what is sent from now on).
    #[default]
    Last,
    /// At the oldest message still stored.
    First,
    /// At the first message stored at or after this time (ms since the Unix epoch).
    Time(u64),
}

/// `group.heartbeat`: a member says it is alive, with its subscription; the answer is the
/// leases it holds on this broker's queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeartbeat {
    /// Group name.
    pub group: String,
    /// Member id, unique per running consumer (e.g. a random UUID).
    pub member: String,
    /// Free text shown by `group describe` (host, pid).
    pub client: String,
    /// The group's subscription: every member must send the same.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, SUBSCRIPTIONS_MAX>")]
    pub subscriptions: Vec<Subscription>,
    /// Where to start a queue the group has no offset for.
    pub start: StartFrom,
    /// Queues moved away from this member whose messages it is still handling: their
    /// revoking leases stay (unrenewed) until it lets go, so what it finishes is committed
    /// before another member reads them.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub finishing: Vec<QueueLease>,
}

/// A lease on one queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLease {
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Fencing token: reads and commits name it.
    pub epoch: u64,
}

/// Answer to `group.heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeartbeatResponse {
    /// Every lease the member holds on this broker now; queues it held before and are not
    /// here are no longer its own.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub leases: Vec<QueueLease>,
    /// How long the leases last from when the heartbeat was sent, unless renewed.
    pub lease_ms: u64,
    /// Queues assigned to the member are still held by another: heartbeat again soon.
    pub pending: bool,
}

/// `group.pull`: read a leased queue, filtered by the group's tag expression for the topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPull {
    /// Group name.
    pub group: String,
    /// Member id.
    pub member: String,
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// The lease's epoch.
    pub epoch: u64,
    /// Offset to read from; `None`: the group's committed offset (or its start position).
    pub offset: Option<u64>,
    /// At most this many messages.
    pub max_msgs: u32,
    /// At most about this many body bytes.
    pub max_bytes: u32,
    /// Long-poll: wait up to this long for a matching message.
    pub wait_ms: u32,
}

/// Answer to `group.pull`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPullResponse {
    /// Matching messages, in offset order.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, { PULL_MSGS_MAX as usize }>")]
    pub messages: Vec<StoredMessage>,
    /// Where the next pull starts (past filtered messages too).
    pub next_offset: u64,
    /// Smallest offset still stored.
    pub min_offset: u64,
    /// One past the largest offset stored.
    pub max_offset: u64,
    /// Messages the tag filter skipped in this read (never read from the log).
    pub filtered: u64,
}

/// One queue's offset to commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// The lease's epoch.
    pub epoch: u64,
    /// The next offset to read (everything before it is done).
    pub offset: u64,
}

/// `group.commit`: offsets of leased queues. Each stands under its own lease: those under a
/// stale or ended one are refused with `group.fenced`, which names them; the others are
/// committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCommit {
    /// Group name.
    pub group: String,
    /// Member id.
    pub member: String,
    /// Offsets.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub offsets: Vec<OffsetCommit>,
}

/// `group.leave`: commit, then give every lease back at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeave {
    /// Group name.
    pub group: String,
    /// Member id.
    pub member: String,
    /// Final offsets (committed first, under the same rules as `group.commit`).
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub offsets: Vec<OffsetCommit>,
}

/// `group.list` (empty request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {}

/// Answer to `group.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListResponse {
    /// Group names known to this broker (with offsets or live members).
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_LIST_MAX>")]
    pub groups: Vec<String>,
}

/// `group.describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescribe {
    /// Group name.
    pub group: String,
}

/// A live member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member id.
    pub member: String,
    /// What the client said of itself.
    pub client: String,
    /// Milliseconds since its last heartbeat.
    pub idle_ms: u64,
}

/// One queue of a group on this broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupQueue {
    /// Topic name.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// One past the newest message.
    pub max_offset: u64,
    /// The group's committed offset.
    pub committed: Option<u64>,
    /// Messages not yet committed (`max_offset - committed`).
    pub lag: u64,
    /// The member holding the lease.
    pub holder: Option<String>,
    /// The lease's epoch (0 without one).
    pub epoch: u64,
}

/// A group's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Deliveries after the first before a message goes to the dead-letter topic.
    pub max_retries: u32,
    /// Wait before each retry, in ms (the last step repeats).
    #[serde(deserialize_with = "crate::decode::seq::<_, _, BACKOFF_STEPS_MAX>")]
    pub backoff_ms: Vec<u64>,
    /// Queue assignment: `average` or `consistent_hash`.
    pub strategy: String,
}

impl Default for GroupSettings {
    /// RocketMQ's: 16 retries after 10 s, 30 s, 1 m, 2 m, … 10 m, 20 m, 30 m, 1 h, 2 h;
    /// average assignment.
    fn default() -> Self {
        let minutes = [1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 60, 120];
        let mut backoff_ms = vec![10_000, 30_000];
        backoff_ms.extend(minutes.iter().map(|m| m * 60_000));
        GroupSettings {
            max_retries: 16,
            backoff_ms,
            strategy: "average".into(),
        }
    }
}

/// Answer to `group.describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group name.
    pub group: String,
    /// The live members' subscription (empty without members).
    #[serde(deserialize_with = "crate::decode::seq::<_, _, SUBSCRIPTIONS_MAX>")]
    pub subscriptions: Vec<Subscription>,
    /// Live members.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_LIST_MAX>")]
    pub members: Vec<MemberInfo>,
    /// Queues of this broker the group reads or has offsets for.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub queues: Vec<GroupQueue>,
    /// Settings.
    pub settings: GroupSettings,
}

/// `group.update` (admin): change a group's settings (the group is created if new).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUpdate {
    /// Group name.
    pub group: String,
    /// New settings.
    pub settings: GroupSettings,
}

/// `group.reset_offset` (admin): move a group's committed offsets of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResetOffset {
    /// Group name.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Where to.
    pub to: StartFrom,
}

/// Answer to `group.reset_offset`: the new offset of each queue of this broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResetOffsetResponse {
    /// `(queue, offset)`.
    #[serde(deserialize_with = "crate::decode::seq::<_, _, GROUP_QUEUES_MAX>")]
    pub queues: Vec<(u32, u64)>,
}

/// `group.send_back`: a member failed a message of a queue it holds. The broker stores the
/// message (same id, body, tag, keys and properties) in the group's retry topic, due after
/// the group's back-off for its retry count, or in the group's dead-letter topic once it
/// has been retried `max_retries` times. The member then counts the message done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSendBack {
    /// Group name.
    pub group: String,
    /// Member id.
    pub member: String,
    /// Topic of the failed message (a subscribed topic or the group's retry topic).
    pub topic: String,
    /// Its queue.
    pub queue_id: u32,
    /// The member's lease on the queue.
    pub epoch: u64,
    /// The message's offset.
    pub offset: u64,
    /// Wait before the retry instead of the group's back-off step (ms).
    pub delay_ms: Option<u64>,
}

/// Answer to `group.send_back`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSendBackResponse {
    /// Where the message went: the group's retry or dead-letter topic.
    pub topic: String,
    /// How many times the group has failed it now.
    pub reconsume: u32,
    /// When it is delivered again (ms since the Unix epoch; 0 for a dead letter).
    pub deliver_at_ms: u64,
}

/// `group.dlq_resend` (admin): gives dead letters of a group back to it: each is stored in
/// the group's retry topic, due now, its retry count starting again from 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqResend {
    /// Group name.
    pub group: String,
    /// One dead letter by id; `None`: every dead letter not resent before (the broker
    /// keeps how far it has resent as the group's offset of its dead-letter topic).
    pub msg_id: Option<crate::message::MessageId>,
}

/// Answer to `group.dlq_resend`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqResendResponse {
    /// Dead letters resent by this broker.
    pub resent: u64,
}

encoded_bytes_min! {
    // topic, tags.
    Subscription = 2;
    // topic, queue_id, epoch.
    QueueLease = 3;
    // topic, queue_id, epoch, offset.
    OffsetCommit = 4;
    // member, client, idle_ms.
    MemberInfo = 3;
    // topic, queue_id, max_offset, committed, lag, holder, epoch.
    GroupQueue = 7;
    (u32, u64) = 2;
    u64 = 1;
}
