//! The request-code table: one code, one dotted name, one handler.
//!
//! Codes are grouped in families of 100 so later issues append without renumbering:
//! 1xx topics, 2xx messages, 3xx routes and brokers (name server), 4xx consumer groups and
//! offsets, 5xx functions, 6xx replication, 9xx broker administration.

/// Who may send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A client certificate (role `client` or `admin`) signed by the cluster CA; without
    /// one only when the server runs with `allow_anonymous = true`.
    Client,
    /// A client certificate with the admin role.
    Admin,
    /// A node (broker or name server) certificate; registrations also need the
    /// certificate's name to be the broker name registered.
    Node,
}

macro_rules! request_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $num:literal, $dotted:literal, $access:ident;)*) => {
        /// A known request code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        ///
        /// Exhaustive on purpose: a new code fails to compile until every server routes it.
        #[repr(u16)]
        pub enum RequestCode {
            $($(#[doc = $doc])* $name = $num,)*
        }

        impl RequestCode {
            /// Every code.
            pub const ALL: &[RequestCode] = &[$(RequestCode::$name,)*];

            /// Parses a raw code.
            pub fn from_u16(raw: u16) -> Option<Self> {
                match raw {
                    $($num => Some(RequestCode::$name),)*
                    _ => None,
                }
            }

            /// The dotted name, e.g. `msg.send`.
            pub fn name(self) -> &'static str {
                match self {
                    $(RequestCode::$name => $dotted,)*
                }
            }

            /// Who may send the request.
            pub fn access(self) -> Access {
                match self {
                    $(RequestCode::$name => Access::$access,)*
                }
            }
        }
    };
}

request_codes! {
    /// Create a topic.
    TopicCreate = 100, "topic.create", Admin;
    /// Change a topic's queue count.
    TopicUpdate = 101, "topic.update", Admin;
    /// Delete a topic and its queues.
    TopicDelete = 102, "topic.delete", Admin;
    /// List topics.
    TopicList = 103, "topic.list", Client;
    /// Describe one topic with its queues' offsets.
    TopicDescribe = 104, "topic.describe", Client;
    /// Send one message or a batch.
    MsgSend = 200, "msg.send", Client;
    /// Pull messages from a queue.
    MsgPull = 201, "msg.pull", Client;
    /// Look messages up by id.
    MsgQueryId = 202, "msg.query_id", Client;
    /// Look messages up by key.
    MsgQueryKey = 203, "msg.query_key", Client;
    /// Min and max offsets of a topic's queues.
    QueueOffsets = 204, "queue.offsets", Client;
    /// Pull with a tag expression applied on the broker.
    MsgPullFiltered = 205, "msg.pull_filtered", Client;
    /// Each queue's first offset stored at or after a time.
    QueueOffsetAtTime = 206, "queue.offset_at_time", Client;
    /// A topic's route: which broker serves which queues.
    RouteGet = 300, "route.get", Client;
    /// A broker announces itself and its topics to a name server.
    BrokerRegister = 301, "broker.register", Node;
    /// A broker's periodic re-announcement (same body as `broker.register`).
    BrokerHeartbeat = 302, "broker.heartbeat", Node;
    /// A broker leaves (graceful shutdown): its routes drop at once.
    BrokerUnregister = 303, "broker.unregister", Node;
    /// Every registered broker with its liveness.
    ClusterList = 304, "cluster.list", Client;
    /// A group member's heartbeat: its subscription in, its queue leases out.
    GroupHeartbeat = 400, "group.heartbeat", Client;
    /// Read a leased queue with the group's tag filter.
    GroupPull = 401, "group.pull", Client;
    /// Commit offsets of leased queues.
    GroupCommit = 402, "group.commit", Client;
    /// A member leaves: final offsets, then its leases end.
    GroupLeave = 403, "group.leave", Client;
    /// The groups a broker knows.
    GroupList = 404, "group.list", Client;
    /// A group's members, subscription, settings, offsets, lag and leases.
    GroupDescribe = 405, "group.describe", Client;
    /// Change a group's settings.
    GroupUpdate = 406, "group.update", Admin;
    /// Move a group's committed offsets of a topic.
    GroupResetOffset = 407, "group.reset_offset", Admin;
    /// Store a failed message in the group's retry (or dead-letter) topic.
    GroupSendBack = 408, "group.send_back", Client;
    /// Give a group's dead letters back to it through its retry topic.
    GroupDlqResend = 409, "group.dlq_resend", Admin;
    /// One chunk of a function's module.
    FnUpload = 500, "fn.upload", Admin;
    /// Run an uploaded module as a function (a new version of one deployed takes over).
    FnDeploy = 501, "fn.deploy", Admin;
    /// The functions a broker runs.
    FnList = 502, "fn.list", Client;
    /// A function's version, settings, offsets, lag, counters and handler times.
    FnDescribe = 503, "fn.describe", Client;
    /// A function's log lines (long-poll for more).
    FnLogs = 504, "fn.logs", Client;
    /// Stop a function and forget its versions (its group's offsets stay).
    FnUndeploy = 505, "fn.undeploy", Admin;
    /// Go back to a function's previous version.
    FnRollback = 506, "fn.rollback", Admin;
    /// Run an uploaded module over stored messages, writing nothing.
    FnReplay = 507, "fn.replay", Admin;
    /// Broker counters (appends, fsyncs, bytes).
    BrokerStats = 900, "broker.stats", Client;
    /// What reads cost the store: records and bytes read, index slots scanned.
    BrokerReadStats = 901, "broker.read_stats", Client;
}

impl std::fmt::Display for RequestCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
