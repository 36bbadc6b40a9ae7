//! Typed errors. Every message names the inode, key or height that was wrong.

use crate::{keys::Height, Ino};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a store or working-set operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name or inode that should exist does not (`ENOENT`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is already taken (`EEXIST`).
    #[error("already exists: entry {name:?} in directory inode {dir}")]
    Exists { dir: Ino, name: String },
    /// A directory was required (`ENOTDIR`).
    #[error("not a directory: {0}")]
    NotDir(String),
    /// A non-directory was required (`EISDIR`).
    #[error("is a directory: {0}")]
    IsDir(String),
    /// The directory still has entries (`ENOTEMPTY`).
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    /// The operation is not allowed on this kind of inode (`EPERM`).
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// An argument is invalid for this operation (`EINVAL`).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A name component is longer than [`crate::NAME_MAX`] (`ENAMETOOLONG`).
    #[error("name too long: {len} bytes (max {max})")]
    NameTooLong { len: usize, max: usize },
    /// The file would exceed the size limit (`EFBIG`).
    #[error("file inode {ino} would grow to {size} bytes, limit is {max}")]
    FileTooBig { ino: Ino, size: u64, max: u64 },
    /// A quota would be exceeded (`ENOSPC`).
    #[error("no space: {0}")]
    NoSpace(String),
    /// Stored data failed its integrity check; never returned as content (`EIO`).
    #[error("corrupt data: {what} at height {height}")]
    Corrupt { what: String, height: Height },
    /// The height is outside the retained window.
    #[error("height {height} is not readable: retained heights are {oldest}..={latest}")]
    HeightNotRetained {
        height: Height,
        oldest: Height,
        latest: Height,
    },
    /// Commits must be at consecutive heights.
    #[error("commit at height {got} refused: the next height is {expected}")]
    HeightOutOfOrder { expected: Height, got: Height },
    /// Another working set committed after this one was opened.
    #[error("working set based on height {base} is stale: latest committed height is {latest}")]
    StaleWorkingSet { base: Height, latest: Height },
    /// The savepoint is unknown (already released or rolled past).
    #[error("unknown savepoint {0}")]
    UnknownSavepoint(u64),
    /// RocksDB failed.
    #[error("rocksdb {context}: {source}")]
    Db {
        context: String,
        source: rocksdb::Error,
    },
    /// `StoreOptions::node_cache_depth` is deeper than the cache supports.
    #[error("node_cache_depth {depth} refused: at most {max} nibbles")]
    CacheDepthTooLarge { depth: usize, max: usize },
    /// The Merkle tree failed (missing or undecodable node).
    #[error("merkle tree at height {height}: {message}")]
    Tree { height: Height, message: String },
}

impl Error {
    /// Whether this is a failure of the host (storage, corruption, misuse of the
    /// store's API) rather than an answer about the data asked for.
    ///
    /// The split decides what a validator does with it: an answer (`NotFound`,
    /// `Invalid`, a quota) is the same on every validator and becomes a result
    /// code or errno; a host failure may differ between validators, so it must
    /// stop the node before anything computed from it is committed.
    pub fn is_host_failure(&self) -> bool {
        match self {
            Error::NotFound(_)
            | Error::Exists { .. }
            | Error::NotDir(_)
            | Error::IsDir(_)
            | Error::NotEmpty(_)
            | Error::NotPermitted(_)
            | Error::Invalid(_)
            | Error::NameTooLong { .. }
            | Error::FileTooBig { .. }
            | Error::NoSpace(_) => false,
            Error::Corrupt { .. }
            | Error::HeightNotRetained { .. }
            | Error::HeightOutOfOrder { .. }
            | Error::StaleWorkingSet { .. }
            | Error::UnknownSavepoint(_)
            | Error::Db { .. }
            | Error::CacheDepthTooLarge { .. }
            | Error::Tree { .. } => true,
        }
    }

    /// Wraps a RocksDB error with what was being done.
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(rocksdb::Error) -> Error {
        let context = context.into();
        move |source| Error::Db { context, source }
    }
}
