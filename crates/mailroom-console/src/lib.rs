//! mailroom's administration console: the screens of the product it reproduces (the
//! company account, "SMTP Setup", sign-in, health, the outbox) as server-rendered pages,
//! built only on the [`mailroom`] facade.
//!
//! The console holds the keys to every mailbox, so it is closed by default:
//! - it listens on loopback ([`DEFAULT_LISTEN`]); any other address needs TLS;
//! - a person gets in through a one-time login URL ([`Console::login_url`]) that becomes a
//!   session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` with TLS); sessions end
//!   after [`ConsoleOptions::session_lifetime`] or [`ConsoleOptions::idle_timeout`];
//! - every state-changing request is a `POST` carrying the session's CSRF token;
//! - the `Host` header must name the address the console listens on (a DNS-rebinding
//!   page cannot talk to it);
//! - pages carry a `Content-Security-Policy` that allows only the console's own script
//!   file (the fax format's live preview) and nothing inline, and `X-Frame-Options:
//!   DENY`; no page renders a secret.
//!
//! ```no_run
//! # async fn run(mailroom: mailroom::Mailroom) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mailroom_console::{Console, ConsoleOptions};
//!
//! let console = Console::new(Arc::new(mailroom), ConsoleOptions::default())?;
//! let listener = tokio::net::TcpListener::bind(console.listen_address()).await?;
//! let console = console.bound_to(listener.local_addr()?)?;
//! println!("open {}", console.login_url());
//! console.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod draft;
mod forms;
mod health;
mod pages;
mod password;
mod routes;
mod security;
mod send;
mod signin;
mod tls;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailroom::{Clock, Mailroom, SystemClock};
use tokio::net::TcpListener;
use url::Url;

pub use password::{MIN_PASSWORD_LENGTH, set_password};
pub use security::{LOGIN_TOKEN_LIFETIME, MAX_FAILED_LOGINS};

/// Where the console listens unless told otherwise: loopback, port 8470 (8025 is
/// Mailpit's).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8470);

/// The console's name for the session cookie.
pub const SESSION_COOKIE: &str = "mailroom_console";

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listen address other than loopback without TLS.
    #[error(
        "the console would listen on {0} without TLS: an address other than loopback carries the session cookie and every page over the network; serve it with a certificate and its key (TLS), or listen on loopback (127.0.0.1)"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// An admin password that cannot be used.
    #[error("{0}")]
    WeakPassword(String),
    /// The database refused.
    #[error("{0}")]
    Mailroom(Box<mailroom::Error>),
    /// The listener could not be served.
    #[error("the console stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// How the console is set up; [`ConsoleOptions::default`] listens on [`DEFAULT_LISTEN`].
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The address to listen on (port 0: any free port; see [`Console::bound_to`]).
    pub listen: SocketAddr,
    /// The TLS configuration (certificate and key) when the console is served over TLS:
    /// the cookie is then `Secure`, and the login URL `https`. Required off loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Other names the console answers to (its DNS name behind TLS): the `Host` header
    /// must be the listen address, `localhost` on loopback, or one of these, with the
    /// port.
    pub host_names: Vec<String>,
    /// How long a session lasts from its login.
    pub session_lifetime: Duration,
    /// How long a session lasts without a request.
    pub idle_timeout: Duration,
    /// The clock sessions and login tokens are judged by.
    pub clock: Arc<dyn Clock>,
    /// How many rows a list shows per page (the outbox).
    pub page_size: u64,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            tls: None,
            host_names: Vec::new(),
            session_lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
            page_size: 50,
        }
    }
}

/// The console: a router over one [`Mailroom`].
#[derive(Debug, Clone)]
pub struct Console {
    state: Arc<routes::State>,
}

impl Console {
    /// A console for `mailroom`. Refuses an address other than loopback without TLS.
    pub fn new(mailroom: Arc<Mailroom>, options: ConsoleOptions) -> Result<Self, Error> {
        if !options.listen.ip().is_loopback() && options.tls.is_none() {
            return Err(Error::PlaintextOffLoopback(options.listen));
        }
        let security = security::Security::new(&options);
        Ok(Self {
            state: Arc::new(routes::State {
                mailroom,
                options,
                security,
                sign_ins: signin::SignIns::default(),
            }),
        })
    }

    /// The address it was told to listen on.
    pub fn listen_address(&self) -> SocketAddr {
        self.state.options.listen
    }

    /// The same console for the address its listener got (after binding port 0): the
    /// `Host` check and the login URL use it.
    pub fn bound_to(self, address: SocketAddr) -> Result<Self, Error> {
        let mut options = self.state.options.clone();
        options.listen = address;
        Self::new(Arc::clone(&self.state.mailroom), options)
    }

    /// The console's own address, as a browser reaches it (`http://127.0.0.1:8470`).
    pub fn origin(&self) -> Url {
        self.state.origin()
    }

    /// A new one-time login URL: opening it starts a session in that browser. It works
    /// once, within [`LOGIN_TOKEN_LIFETIME`]; print it only where the administrator
    /// reads it (the terminal that started the console).
    pub fn login_url(&self) -> Url {
        let token = self.state.security.issue_login_token();
        let mut url = self.origin();
        url.set_path("/login");
        url.query_pairs_mut().append_pair("token", &token);
        url
    }

    /// The console's routes, with every security rule applied.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.state))
    }

    /// Serves `listener` until `shutdown` completes: over TLS when the options carry a
    /// TLS configuration, else plain HTTP (loopback only, as [`Console::new`] checks).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        match self.state.options.tls.clone() {
            None => {
                axum::serve(listener, self.router())
                    .with_graceful_shutdown(shutdown)
                    .await?;
            }
            Some(config) => tls::serve(listener, config, self.router(), shutdown).await,
        }
        Ok(())
    }
}

// The README's example is compiled as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
