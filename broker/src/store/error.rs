//! Store errors, each mapped to a stable wire code.

use quiver_proto::ErrorCode;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A request argument is wrong; the message says how to fix it.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: ErrorCode,
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
    /// An earlier write or sync failed, so the store refuses writes until restarted.
    #[error(
        "the store refused the write: an earlier commit-log write failed ({0}); restart the broker after fixing the disk"
    )]
    Fenced(String),
    /// The store is shutting down.
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// An argument error.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Invalid { code, .. } => *code,
            StoreError::Io(_)
            | StoreError::Db(_)
            | StoreError::Corrupt { .. }
            | StoreError::Fenced(_) => ErrorCode::StoreError,
            StoreError::Closed => ErrorCode::ShuttingDown,
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
