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
    /// A sealed value could not be opened: the key differs from the one that sealed it,
    /// or the value was moved or damaged.
    #[error(
        "a stored secret cannot be decrypted: the encryption key is not the one this database was created with, or the value was altered; use the original key (MAILROOM_KEY or the key file)"
    )]
    CannotOpen,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
