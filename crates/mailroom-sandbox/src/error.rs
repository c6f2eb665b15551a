//! The sandbox's error: why it could not start.

use std::path::PathBuf;

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A port could not be bound.
    #[error(
        "cannot listen on 127.0.0.1:{port}; choose another port base or leave it out for free ports"
    )]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write {}; check that the sandbox directory is writable", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The CA or the server certificate could not be made.
    #[error("cannot create the sandbox's certificates: {0}")]
    Certificate(String),
    /// The port base leaves no room for three ports.
    #[error("the port base {0} is too high: the sandbox needs it and the two ports after it")]
    PortBase(u16),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
