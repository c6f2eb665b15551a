//! The crypto crate's error: what went wrong with the key or a sealed value.

use std::io;
use std::path::PathBuf;

/// What went wrong with the key or a sealed value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `MAILROOM_KEY` (or another key text) is not 32 bytes in base64 or hex.
    #[error(
        "the encryption key is not 32 bytes in base64 or hex; generate one with `openssl rand -base64 32` or unset MAILROOM_KEY to use the key file"
    )]
    MalformedKey,
    /// The key file could not be read or created.
    #[error("cannot use the key file {}; check the path and its permissions", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file is readable by other users.
    #[error(
        "the key file {path} is readable by other users; run `chmod 600 {path}`",
        path = path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not hold a key.
    #[error("the key file {path} does not hold a key; restore it from a backup", path = path.display())]
    KeyFileContents {
        /// The key file.
        path: PathBuf,
    },
    /// A sealed value could not be opened: it was altered or moved to another row, or it
    /// was sealed (in the first format, which names no key) with a key this host lacks.
    #[error(
        "a stored secret cannot be decrypted: it was altered or moved, or it was sealed with a key this host does not have"
    )]
    CannotOpen,
    /// This host's key ring lacks the key a value, or the database, is sealed with.
    #[error(
        "this host lacks key {id} (fingerprint), which the database's secrets are sealed with (this host has {}); copy that key from a host that has it — the key file or MAILROOM_KEY of the host where the rotation was prepared — into this host's key file or MAILROOM_KEY, beside the keys already there",
        have.join(", ")
    )]
    MissingKey {
        /// The fingerprint of the key needed.
        id: String,
        /// The fingerprints of the keys this host has.
        have: Vec<String>,
    },
    /// A key rotation was asked to commit, but none was prepared.
    #[error("no key rotation is prepared for this database; prepare one first")]
    NoRotationPrepared,
    /// The database failed while reading or writing which key it is sealed with.
    #[error("the database failed while checking its encryption key")]
    Database(#[source] Box<sea_orm::DbErr>),
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Database(Box::new(error))
    }
}

impl Error {
    /// The fingerprint of a key this host lacks, when that is the problem: the key to
    /// copy here.
    pub fn missing_key(&self) -> Option<&str> {
        match self {
            Error::MissingKey { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
