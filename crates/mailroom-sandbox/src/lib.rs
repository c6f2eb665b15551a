//! Offline look-alikes of the providers mailroom talks to, on 127.0.0.1: an OAuth
//! authority with Microsoft-style and Google-style endpoints, an SMTP submission server
//! (STARTTLS and implicit TLS), the Gmail API's `users.messages.send` and Microsoft Graph's
//! mail sending.
//!
//! Each behaves as the real one does for the requests mailroom makes (the shapes are those
//! of the project's `provider-facts.md` and Google's discovery document), so the whole flow
//! — sign-in with PKCE, refresh, device code, revocation, sending — runs with no network
//! and no app registration:
//!
//! - [`Authority`]: authorize (a consent page naming the account with an Approve button,
//!   or [`SandboxConfig::auto_approve`] for scripts), token (authorization code with PKCE
//!   S256 and the redirect URI checked; refresh with rotation for the Microsoft style and
//!   without for the Google style; client credentials for the Microsoft style, with a
//!   registered secret or a certificate's client assertion; Google's JWT bearer grant for a
//!   service account), device
//!   code with polling, and revocation (Google style; Microsoft has no revocation
//!   endpoint). Access and refresh tokens are opaque random strings kept in memory.
//!   id_tokens are JWT-shaped with `aud`, `iss`, `exp`, `tid` (Microsoft style) and
//!   `preferred_username` / `email`; **they are not signed** (`alg` is `none` and the
//!   signature part is a fixed placeholder), which mailroom accepts because it takes an
//!   id_token only straight from the token endpoint. Test hooks:
//!   [`Authority::revoke_refresh_tokens_of`], [`Authority::revoke_access_tokens_of`],
//!   [`Authority::fail_next_token_call`], [`Authority::set_access_token_lifetime`],
//!   [`Authority::set_refresh_token_lifetime`],
//!   [`Authority::approve_device_code`].
//! - App-only credentials ready for tests: [`Sandbox::app_only_credentials`] registers a
//!   client secret and a test-only certificate for a Microsoft-style app and a service
//!   account, and returns them with its key file. Which mailboxes an app may use is
//!   Exchange's decision: Graph's application permissions reach any mailbox unless
//!   [`Authority::restrict_app_graph_mailboxes`] gives the app a management scope (RBAC for
//!   Applications; `403 ErrorAccessDenied` outside it); SMTP takes an app's token only for
//!   mailboxes its service principal has FullAccess on
//!   ([`Authority::grant_app_smtp_mailbox`]; `535 5.7.3` otherwise). App tokens carry their
//!   application permissions as [`TokenInfo::roles`].
//! - SMTP: a small tokio server written for the sandbox (no SMTP server library offers
//!   XOAUTH2 with the `334` error challenge): EHLO, STARTTLS, AUTH XOAUTH2 / OAUTHBEARER
//!   validated against the authority's tokens (an app's token for a mailbox with
//!   FullAccess, sending as it), PLAIN / LOGIN for password accounts,
//!   MAIL / RCPT / DATA with dot-unstuffing and a size limit, RSET, NOOP, QUIT, with
//!   Microsoft 365's replies (`535 5.7.3`, `530 5.7.57`, `550 5.7.60`, ...).
//! - Gmail: media, resumable and JSON `raw` sends, tokens validated, Google's error JSON.
//! - Microsoft Graph (base URL [`Endpoints::graph_api`]): `sendMail` (base64 MIME or
//!   JSON), drafts, attachments, upload sessions (pre-authenticated URL, chunks of at most
//!   4 MiB in order), `send`; tokens checked (`Mail.Send`, `Mail.ReadWrite` for drafts,
//!   `.Shared` for a mailbox other than the user's, `/me` or a mailbox the user may send
//!   as), Graph's error JSON, `request-id` headers.
//!   Test hooks on [`GraphControl`] ([`Sandbox::graph`]): a 429 with `Retry-After`, a 503,
//!   a dropped upload chunk.
//!
//! Every accepted message is written as an `.eml` file under `<dir>/mail/` and listed by
//! [`Mailbox::messages`]. The TLS certificate comes from a CA generated at start, written
//! to `<dir>/ca.pem`. Every listener binds 127.0.0.1 only.
//!
//! The sandbox is a test and demonstration tool: no product crate depends on it, and it
//! prints nothing.
//!
//! ```
//! use mailroom_sandbox::{Sandbox, SandboxConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut config = SandboxConfig::new(dir.path());
//! config.auto_approve = true;
//! config
//!     .password_accounts
//!     .push(("relay@example.net".to_owned(), "correct horse".to_owned()));
//! let sandbox = Sandbox::start(config).await?;
//!
//! // Point the code under test here: OAuth endpoints, SMTP ports, the Gmail API, the CA.
//! let endpoints = sandbox.endpoints();
//! assert_eq!(endpoints.smtp_host, "127.0.0.1");
//! assert_eq!(endpoints.microsoft.token.host_str(), Some("127.0.0.1"));
//! assert_eq!(endpoints.gmail_api.scheme(), "http");
//! assert_eq!(endpoints.graph_api.host_str(), Some("127.0.0.1"));
//! assert!(endpoints.ca_file.exists());
//! assert!(sandbox.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(sandbox.mailbox().messages().is_empty());
//!
//! sandbox.stop();
//! # Ok(())
//! # }
//! ```

mod admin;
mod app_credentials;
mod authority;
mod error;
mod gmail;
mod graph;
mod http;
mod mailbox;
mod smtp;
mod tls;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

pub use app_credentials::{
    AppOnlyCredentials, SANDBOX_SERVICE_ACCOUNT, SANDBOX_SERVICE_ACCOUNT_CLIENT_ID,
};
pub use authority::{
    Audience, Authority, AuthorityStats, ClientRegistration, Style, TokenCheck, TokenInfo,
    google_error_body, microsoft_error_body,
};
pub use error::{Error, Result};
pub use graph::{
    GRAPH_MAX_ATTACHMENT_SIZE, GRAPH_MAX_CHUNK, GRAPH_MIN_UPLOAD_SIZE, GRAPH_REQUEST_LIMIT,
    GraphControl,
};
pub use mailbox::{Mailbox, ReceivedBy, StoredMessage};

/// The sandbox's Microsoft-style tenant id (`tid` in id_tokens) unless configured.
pub const DEFAULT_TENANT_ID: &str = "5a4db0c5-0000-4000-8000-00000000dead";

/// The largest message the SMTP server and the Gmail endpoint accept (Gmail's `maxSize`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 36_700_160;

/// How a sandbox starts.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Where `ca.pem` and the `mail/` folder of `.eml` files go (created if missing).
    pub dir: PathBuf,
    /// `Some(n)`: HTTP on `n`, SMTP with STARTTLS on `n + 1`, SMTP with implicit TLS on
    /// `n + 2`. `None`: ports the system chooses.
    pub port_base: Option<u16>,
    /// Authorize requests are approved at once (a 302 back to the redirect URI) as the
    /// `login_hint`, else [`SandboxConfig::default_address`]; device codes are approved as
    /// the default address. Off: a consent page with an Approve button.
    pub auto_approve: bool,
    /// Who signs in when a request names no one.
    pub default_address: Option<String>,
    /// The lifetime of access tokens (`expires_in`).
    pub access_token_lifetime: Duration,
    /// The lifetime of refresh tokens (`None`: they last as long as the sandbox runs).
    /// Microsoft-style rotation gives each new refresh token the full lifetime again.
    pub refresh_token_lifetime: Option<Duration>,
    /// How long a device code may be polled.
    pub device_code_lifetime: Duration,
    /// The polling interval a device authorization response announces, in seconds.
    pub device_poll_interval_secs: u64,
    /// The Microsoft-style tenant id.
    pub tenant_id: String,
    /// App registrations held to the provider's rules (redirect URIs, tenant, secret);
    /// other client ids are served without them. More with
    /// [`Authority::register_client`].
    pub clients: Vec<ClientRegistration>,
    /// Password SMTP accounts (login, password) accepted with PLAIN and LOGIN.
    pub password_accounts: Vec<(String, String)>,
    /// The largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Exchange Online's recipient rate limit for Microsoft-style SMTP sessions: recipients
    /// per mailbox in any 24 hours (10,000); past it a message gets `554 5.2.0
    /// STOREDRV.Submission.Exception:SubmissionQuotaExceededException`.
    pub smtp_daily_recipient_limit: usize,
}

impl SandboxConfig {
    /// The defaults: random ports, the consent page, one-hour access tokens.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            port_base: None,
            auto_approve: false,
            default_address: None,
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: None,
            device_code_lifetime: Duration::from_secs(900),
            device_poll_interval_secs: 5,
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            clients: Vec::new(),
            password_accounts: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            smtp_daily_recipient_limit: 10_000,
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("dir", &self.dir)
            .field("port_base", &self.port_base)
            .field("auto_approve", &self.auto_approve)
            .field("default_address", &self.default_address)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("refresh_token_lifetime", &self.refresh_token_lifetime)
            .field("device_code_lifetime", &self.device_code_lifetime)
            .field("device_poll_interval_secs", &self.device_poll_interval_secs)
            .field("tenant_id", &self.tenant_id)
            .field("clients", &self.clients)
            .field(
                "password_accounts",
                &self
                    .password_accounts
                    .iter()
                    .map(|(login, _)| login.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("max_message_size", &self.max_message_size)
            .field(
                "smtp_daily_recipient_limit",
                &self.smtp_daily_recipient_limit,
            )
            .finish()
    }
}

/// One provider style's OAuth endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEndpoints {
    /// The authorization endpoint.
    pub authorize: Url,
    /// The token endpoint.
    pub token: Url,
    /// The device authorization endpoint.
    pub device: Url,
    /// The page where a device code is entered.
    pub device_verification: Url,
    /// The revocation endpoint (Google style only, as with the real providers).
    pub revoke: Option<Url>,
    /// The id_token issuer; Microsoft style has `{tid}` where the tenant id goes, which is
    /// what mailroom's `--issuer` expects.
    pub issuer: String,
}

/// Where the sandbox listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The HTTP server (authority, Gmail API, Graph, admin API under `/_sandbox/`).
    pub http: Url,
    /// Microsoft-style endpoints (the sandbox's tenant id in the paths, as a
    /// single-tenant app uses them).
    pub microsoft: OAuthEndpoints,
    /// Google-style endpoints.
    pub google: OAuthEndpoints,
    /// The Gmail API base URL (mailroom's `--gmail-api-url`).
    pub gmail_api: Url,
    /// The Microsoft Graph base URL (`mailroom_graph::GraphConfig::base_url`; requests go
    /// to `{graph_api}v1.0/...`).
    pub graph_api: Url,
    /// The SMTP host (always `127.0.0.1`).
    pub smtp_host: String,
    /// SMTP with STARTTLS (like smtp.office365.com:587).
    pub smtp_starttls_port: u16,
    /// SMTP with implicit TLS (like smtp.gmail.com:465).
    pub smtp_implicit_tls_port: u16,
    /// The CA certificate (PEM) that signed the SMTP server's certificate.
    pub ca_file: PathBuf,
    /// The Microsoft-style tenant id.
    pub tenant_id: String,
}

/// A running sandbox. Dropping it stops every server.
pub struct Sandbox {
    endpoints: Endpoints,
    authority: Authority,
    mailbox: Mailbox,
    graph: GraphControl,
    passwords: smtp::PasswordAccounts,
    ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

async fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| Error::Bind { port, source })
}

fn url(text: &str) -> Url {
    Url::parse(text).expect("sandbox URLs are well-formed")
}

impl Sandbox {
    /// Creates the directory and the CA, binds the three listeners and starts serving.
    pub async fn start(config: SandboxConfig) -> Result<Self> {
        let [http_port, starttls_port, implicit_port] = match config.port_base {
            None => [0, 0, 0],
            Some(base) => {
                let last = base.checked_add(2).ok_or(Error::PortBase(base))?;
                [base, base + 1, last]
            }
        };
        std::fs::create_dir_all(&config.dir).map_err(|source| Error::Write {
            path: config.dir.clone(),
            source,
        })?;
        let certificates = tls::SandboxCertificates::generate()?;
        let ca_file = config.dir.join("ca.pem");
        std::fs::write(&ca_file, &certificates.ca_pem).map_err(|source| Error::Write {
            path: ca_file.clone(),
            source,
        })?;
        let mailbox = Mailbox::create(config.dir.join("mail"))?;

        let http_listener = bind(http_port).await?;
        let starttls_listener = bind(starttls_port).await?;
        let implicit_listener = bind(implicit_port).await?;
        let port_of = |listener: &TcpListener| {
            listener
                .local_addr()
                .map(|address| address.port())
                .map_err(|source| Error::Bind { port: 0, source })
        };
        let http_base = format!("http://127.0.0.1:{}", port_of(&http_listener)?);
        let endpoints = Endpoints {
            http: url(&format!("{http_base}/")),
            microsoft: OAuthEndpoints {
                authorize: url(&format!(
                    "{http_base}/microsoft/{}/oauth2/v2.0/authorize",
                    config.tenant_id
                )),
                token: url(&format!(
                    "{http_base}/microsoft/{}/oauth2/v2.0/token",
                    config.tenant_id
                )),
                device: url(&format!(
                    "{http_base}/microsoft/{}/oauth2/v2.0/devicecode",
                    config.tenant_id
                )),
                device_verification: url(&format!("{http_base}/microsoft/devicelogin")),
                revoke: None,
                issuer: format!("{http_base}/microsoft/{{tid}}/v2.0"),
            },
            google: OAuthEndpoints {
                authorize: url(&format!("{http_base}/google/o/oauth2/v2/auth")),
                token: url(&format!("{http_base}/google/token")),
                device: url(&format!("{http_base}/google/device/code")),
                device_verification: url(&format!("{http_base}/google/device")),
                revoke: Some(url(&format!("{http_base}/google/revoke"))),
                issuer: format!("{http_base}/google"),
            },
            gmail_api: url(&format!("{http_base}/")),
            graph_api: url(&format!("{http_base}/")),
            smtp_host: "127.0.0.1".to_owned(),
            smtp_starttls_port: port_of(&starttls_listener)?,
            smtp_implicit_tls_port: port_of(&implicit_listener)?,
            ca_file,
            tenant_id: config.tenant_id.clone(),
        };

        let authority = Authority::new(&config, &http_base, &endpoints);
        let passwords = smtp::PasswordAccounts::new(&config.password_accounts);
        let smtp_shared = Arc::new(smtp::Shared {
            authority: authority.clone(),
            mailbox: mailbox.clone(),
            passwords: passwords.clone(),
            acceptor: tokio_rustls::TlsAcceptor::from(certificates.server_config.clone()),
            max_message_size: config.max_message_size,
            sessions: smtp::MailboxSessions::default(),
            recipients: smtp::RecipientLedger::new(config.smtp_daily_recipient_limit),
        });
        let state = http::AppState::new(
            authority.clone(),
            mailbox.clone(),
            http_base.clone(),
            config.max_message_size,
        );
        let graph = state.graph.clone();
        let router =
            http::router(state).into_make_service_with_connect_info::<http::ConnectionSwitch>();
        let tasks = vec![
            tokio::spawn(async move {
                if let Err(error) = axum::serve(http::SandboxListener(http_listener), router).await
                {
                    tracing::error!(%error, "the sandbox's HTTP server stopped");
                }
            }),
            tokio::spawn(smtp::serve(
                starttls_listener,
                smtp_shared.clone(),
                smtp::TlsMode::StartTls,
            )),
            tokio::spawn(smtp::serve(
                implicit_listener,
                smtp_shared,
                smtp::TlsMode::Implicit,
            )),
        ];
        tracing::info!(http = %http_base, "sandbox started");
        Ok(Self {
            endpoints,
            authority,
            mailbox,
            graph,
            passwords,
            ca_pem: certificates.ca_pem,
            tasks,
        })
    }

    /// Where everything listens, and the CA file.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The OAuth authority, with its test hooks.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The messages received so far.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The Microsoft Graph look-alike's test hooks (throttling, unavailability, dropped
    /// upload chunks).
    pub fn graph(&self) -> &GraphControl {
        &self.graph
    }

    /// The CA certificate (PEM) to trust for the SMTP server.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory holding `ca.pem` and `mail/`.
    pub fn dir(&self) -> &Path {
        self.endpoints
            .ca_file
            .parent()
            .expect("the CA file is inside the sandbox directory")
    }

    /// Accepts `login` / `password` with SMTP PLAIN and LOGIN from now on.
    pub fn add_password_account(&self, login: &str, password: &str) {
        self.passwords.add(login, password);
    }

    /// Stops every server (also done on drop).
    pub fn stop(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
