//! Store errors: the store's own types. Remoting maps each to a stable wire code.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A request argument is wrong; the message says how to fix it.
    #[error("{message}")]
    Invalid {
        /// What was refused.
        code: Refusal,
        /// What to fix.
        message: String,
    },
    /// Log I/O failed.
    #[error("commit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Index or metadata database failed.
    #[error("index database: {0}")]
    Db(#[from] redb::Error),
    /// A log record failed its checksum or did not decode when read back.
    #[error("corrupt record at log position {pos}: {reason}")]
    Corrupt {
        /// Log position.
        pos: u64,
        /// What was wrong.
        reason: String,
    },
    /// A sealed part of the log is corrupt at start-up: the store does not open, and no file
    /// was changed.
    #[error(
        "log segment {file} is corrupt at byte {file_pos} (log position {pos}): {reason}. The broker does not start on corrupt data and changed no file; run `quiver-broker repair --data-dir {data_dir}` to see what a repair would move to quarantine"
    )]
    CorruptLog {
        /// Segment file name.
        file: String,
        /// Byte in the file.
        file_pos: u64,
        /// Log position.
        pos: u64,
        /// What failed.
        reason: String,
        /// The data directory, for the repair command.
        data_dir: String,
    },
    /// The write or sync of this send failed: it may or may not be stored. The store is
    /// fenced from then on.
    #[error(
        "the send may or may not be stored: the commit-log write or sync failed ({0}); query the message id to find out, and restart the broker after fixing the disk"
    )]
    OutcomeUnknown(String),
    /// An earlier log or index failure fenced the store: it refuses sends until restarted.
    /// The refused send was not stored.
    #[error(
        "the store is fenced and refused the request (nothing was stored): {0}; restart the broker after fixing the disk"
    )]
    Fenced(String),
    /// The store is shutting down.
    #[error("the store is shutting down")]
    Closed,
}

/// Why the store refused a request whose arguments are wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A malformed argument.
    InvalidArgument,
    /// The batch has too many messages or bytes.
    BatchTooLarge,
    /// A message body is over the limit.
    MessageTooLarge,
    /// A body does not match its checksum.
    ChecksumMismatch,
    /// No such topic.
    TopicNotFound,
    /// The topic exists already.
    TopicExists,
    /// No such queue in the topic.
    QueueOutOfRange,
    /// The offset was removed by retention.
    OffsetRemoved,
    /// The offset is past the queue's end.
    OffsetOutOfRange,
    /// No such message.
    MessageNotFound,
    /// The message was removed by retention.
    MessageRemoved,
    /// A group member's subscription differs from the live members'.
    SubscriptionConflict,
    /// A read or commit under a lease the member no longer holds.
    GroupFenced,
    /// No such group.
    GroupNotFound,
    /// No such function.
    FunctionNotFound,
    /// A module the broker cannot run.
    InvalidModule,
    /// A module over the size limit.
    ModuleTooLarge,
    /// A module not uploaded.
    ModuleMissing,
}

impl StoreError {
    /// An argument error.
    pub fn invalid(code: Refusal, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// What was refused, for an argument error.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            StoreError::Invalid { code, .. } => Some(*code),
            _ => None,
        }
    }
}

macro_rules! from_redb {
    ($($ty:ident),*) => {
        $(impl From<redb::$ty> for StoreError {
            fn from(err: redb::$ty) -> Self {
                StoreError::Db(err.into())
            }
        })*
    };
}

from_redb!(
    DatabaseError,
    TransactionError,
    TableError,
    StorageError,
    CommitError,
    SetDurabilityError
);
