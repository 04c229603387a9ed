//! The request-code table: one code, one dotted name, one handler.
//!
//! Codes are grouped in families of 100 so later issues append without renumbering:
//! 1xx topics, 2xx messages, 3xx routes and brokers (name server), 4xx consumer groups and
//! offsets, 5xx functions, 6xx replication, 9xx broker administration.

macro_rules! request_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $num:literal, $dotted:literal, $admin:literal;)*) => {
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

            /// Whether the request needs a client certificate with the admin role.
            pub fn requires_admin(self) -> bool {
                match self {
                    $(RequestCode::$name => $admin,)*
                }
            }
        }
    };
}

request_codes! {
    /// Create a topic.
    TopicCreate = 100, "topic.create", true;
    /// Change a topic's queue count.
    TopicUpdate = 101, "topic.update", true;
    /// Delete a topic and its queues.
    TopicDelete = 102, "topic.delete", true;
    /// List topics.
    TopicList = 103, "topic.list", false;
    /// Describe one topic with its queues' offsets.
    TopicDescribe = 104, "topic.describe", false;
    /// Send one message or a batch.
    MsgSend = 200, "msg.send", false;
    /// Pull messages from a queue.
    MsgPull = 201, "msg.pull", false;
    /// Look messages up by id.
    MsgQueryId = 202, "msg.query_id", false;
    /// Look messages up by key.
    MsgQueryKey = 203, "msg.query_key", false;
    /// Min and max offsets of a topic's queues.
    QueueOffsets = 204, "queue.offsets", false;
    /// A topic's route: which broker serves which queues.
    RouteGet = 300, "route.get", false;
    /// Broker counters (appends, fsyncs, bytes).
    BrokerStats = 900, "broker.stats", false;
}

impl std::fmt::Display for RequestCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
