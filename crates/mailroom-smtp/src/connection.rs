//! One SMTP connection: connect with `TCP_NODELAY`, start TLS as the account's settings
//! say, authenticate once, then send messages. Every step is bounded by the account's
//! timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials as LettreCredentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use mailroom_model::validate::is_loopback_host;
use mailroom_model::{
    CredentialSecret, Credentials, OutgoingMessage, Provider, Remedy, ServerSettings,
    TransportErrorKind,
};
use tokio::net::TcpStream;

use crate::reply::{Failure, Reply, Stage};
use crate::sasl::{OAuthMechanism, choose_oauth_mechanism, decode_challenge};
use crate::tls::{TlsMaterial, TlsPlan, is_tls_record_start};

/// What every connection of a transport shares.
#[derive(Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) server: ServerSettings,
    pub(crate) tls: TlsMaterial,
    pub(crate) hello: ClientId,
    pub(crate) timeout: Duration,
}

impl ConnectionSettings {
    async fn bounded<T, E>(
        &self,
        stage: Stage,
        future: impl Future<Output = Result<T, E>>,
        on_error: impl FnOnce(Stage, E) -> Failure,
    ) -> Result<T, Failure> {
        self.bounded_lazy(|| stage, future, on_error).await
    }

    /// [`Self::bounded`] with a stage that is built only on failure (a recipient's
    /// address would otherwise be copied for every message).
    async fn bounded_lazy<T, E>(
        &self,
        stage: impl FnOnce() -> Stage,
        future: impl Future<Output = Result<T, E>>,
        on_error: impl FnOnce(Stage, E) -> Failure,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(on_error(stage(), error)),
            Err(_) => Err(Failure::Timeout {
                stage: stage(),
                timeout_ms: self.server.timeout_ms,
            }),
        }
    }
}

/// An open, authenticated connection.
pub(crate) struct SmtpConnection {
    inner: AsyncSmtpConnection,
}

impl std::fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("server", &self.inner.server_info().name())
            .finish_non_exhaustive()
    }
}

/// Refuses credentials that do not belong to the account's provider, so a token is never
/// sent as a PLAIN password and a password never to an OAuth account's server.
pub(crate) fn check_credentials(
    provider: Provider,
    credentials: &Credentials,
) -> Result<(), Failure> {
    let mismatch = |message: String, remediation: &str, remedy| Failure::Unsupported {
        kind: TransportErrorKind::AccountConfiguration,
        message,
        remediation: remediation.to_owned(),
        remedy: Some(remedy),
    };
    let sign_in = Remedy::SignIn {
        account: None,
        browser_only: false,
    };
    match (&credentials.secret, provider.uses_oauth()) {
        (CredentialSecret::Password(_), true) => Err(mismatch(
            format!("a {provider} account authenticates with an access token, not a password"),
            "sign in for the account instead",
            sign_in.clone(),
        )),
        (CredentialSecret::AccessToken(_), false) => Err(mismatch(
            "a password account (provider none) authenticates with PLAIN or LOGIN, not an access token".to_owned(),
            "set the account's password, or change its provider",
            Remedy::EditAccount { account: None },
        )),
        (CredentialSecret::None, true) => Err(mismatch(
            format!("a {provider} account needs an access token to send"),
            "sign in for the account first",
            sign_in,
        )),
        _ => Ok(()),
    }
}

/// How long a plain connection waits for the greeting before it checks, on a second
/// connection, whether the port expects TLS at once (an implicit-TLS server says nothing
/// until the client's TLS hello). A quarter of the timeout, at most two seconds.
fn greeting_probe_after(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(2))
}

fn plain_smtp_first(server: &ServerSettings) -> Failure {
    Failure::Unsupported {
        kind: TransportErrorKind::AccountConfiguration,
        message: format!(
            "the smtp server {}:{} sent a plain SMTP greeting where a TLS handshake was expected",
            server.host, server.port
        ),
        remediation: "this port speaks plain SMTP first: use STARTTLS (tls startup starttls), usually on port 587".to_owned(),
        remedy: Some(Remedy::EditAccount { account: None }),
    }
}

fn tls_at_once(server: &ServerSettings) -> Failure {
    Failure::Unsupported {
        kind: TransportErrorKind::AccountConfiguration,
        message: format!(
            "the smtp server {}:{} expects TLS at once and sends no plain SMTP greeting",
            server.host, server.port
        ),
        remediation: "this port expects TLS at once (implicit TLS): use tls startup implicit/port 465, or a port that offers STARTTLS (587)".to_owned(),
        remedy: Some(Remedy::EditAccount { account: None }),
    }
}

/// A connection after TLS and EHLO, before authentication.
pub(crate) struct Greeted {
    pub(crate) inner: AsyncSmtpConnection,
    pub(crate) encrypted: bool,
    pub(crate) peer: SocketAddr,
}

/// Connects, starts TLS as the settings say and says EHLO; authenticates nothing.
pub(crate) async fn connect(settings: &ConnectionSettings) -> Result<Greeted, Failure> {
    let server = &settings.server;
    let tcp = open_socket(settings).await?;
    let peer = tcp
        .peer_addr()
        .map_err(|error| Failure::io(Stage::Connect, error))?;

    let plan = TlsPlan::for_settings(server);
    if plan == TlsPlan::Implicit {
        let stream = match tokio::time::timeout(
            settings.timeout,
            settings.tls.connect_implicit(tcp),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) if error.speaks_plain_smtp() => return Err(plain_smtp_first(server)),
            Ok(Err(error)) => return Err(Failure::io(Stage::Connect, error.source)),
            Err(_) => {
                return Err(Failure::Timeout {
                    stage: Stage::Connect,
                    timeout_ms: server.timeout_ms,
                });
            }
        };
        let inner = settings
            .bounded(
                Stage::Greeting,
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &settings.hello),
                Failure::from_lettre,
            )
            .await?;
        return Ok(Greeted {
            inner,
            encrypted: true,
            peer,
        });
    }

    wait_for_plain_greeting(settings, &tcp).await?;
    let mut inner = settings
        .bounded(
            Stage::Greeting,
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &settings.hello),
            Failure::from_lettre,
        )
        .await?;
    if inner.can_starttls() {
        settings
            .bounded(
                Stage::StartTls,
                inner.starttls(settings.tls.starttls_parameters(), &settings.hello),
                Failure::from_lettre,
            )
            .await?;
        Ok(Greeted {
            inner,
            encrypted: true,
            peer,
        })
    } else if plan == TlsPlan::StartTlsRequired {
        Err(Failure::Insecure {
            reason: format!(
                "the smtp server {}:{} does not offer STARTTLS, which the account requires",
                server.host, server.port
            ),
            remediation: "check the host and port (587 usually offers STARTTLS, 465 uses implicit TLS: set the startup method to implicit)".to_owned(),
        })
    } else {
        Ok(Greeted {
            inner,
            encrypted: false,
            peer,
        })
    }
}

async fn open_socket(settings: &ConnectionSettings) -> Result<TcpStream, Failure> {
    let server = &settings.server;
    let tcp = settings
        .bounded(
            Stage::Connect,
            TcpStream::connect((server.host.as_str(), server.port)),
            Failure::io,
        )
        .await?;
    // Without it every message waits for the server's delayed ACK (Nagle).
    tcp.set_nodelay(true)
        .map_err(|error| Failure::io(Stage::Connect, error))?;
    Ok(tcp)
}

/// Before lettre reads the greeting: a first byte that starts a TLS record means the port
/// expects implicit TLS; silence for a while means it may, which a second connection
/// checks with a TLS hello (bounded by the same short wait). Anything else is left to
/// the greeting's own read and timeout.
async fn wait_for_plain_greeting(
    settings: &ConnectionSettings,
    tcp: &TcpStream,
) -> Result<(), Failure> {
    let wait = greeting_probe_after(settings.timeout);
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, tcp.peek(&mut first)).await {
        Ok(Ok(1..)) if is_tls_record_start(&first) => Err(tls_at_once(&settings.server)),
        Ok(_) => Ok(()),
        Err(_) => {
            if port_speaks_tls(settings, wait).await {
                Err(tls_at_once(&settings.server))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether the server answers a TLS hello on a new connection with a TLS record, within
/// `wait`.
async fn port_speaks_tls(settings: &ConnectionSettings, wait: Duration) -> bool {
    let server = &settings.server;
    let attempt = async {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .ok()?;
        tcp.set_nodelay(true).ok()?;
        Some(match settings.tls.connect_implicit(tcp).await {
            Ok(_) => true,
            Err(error) => error.speaks_tls(),
        })
    };
    matches!(tokio::time::timeout(wait, attempt).await, Ok(Some(true)))
}

impl SmtpConnection {
    /// Connects, starts TLS and authenticates with `credentials`.
    pub(crate) async fn open(
        settings: &ConnectionSettings,
        credentials: &Credentials,
    ) -> Result<Self, Failure> {
        check_credentials(settings.server.provider, credentials)?;
        let server = &settings.server;
        let Greeted {
            inner,
            encrypted,
            peer,
        } = connect(settings).await?;

        let mut connection = Self { inner };
        connection
            .authenticate(settings, credentials, encrypted, peer)
            .await?;
        tracing::debug!(
            host = %server.host,
            port = server.port,
            tls = encrypted,
            "smtp connection opened and authenticated"
        );
        Ok(connection)
    }

    async fn authenticate(
        &mut self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
        encrypted: bool,
        peer: SocketAddr,
    ) -> Result<(), Failure> {
        match &credentials.secret {
            CredentialSecret::None => Ok(()),
            CredentialSecret::Password(password) => {
                let lettre_credentials =
                    LettreCredentials::new(credentials.user.clone(), password.expose().to_owned());
                if !self
                    .inner
                    .server_info()
                    .supports_auth_mechanism(Mechanism::Plain)
                    && !self
                        .inner
                        .server_info()
                        .supports_auth_mechanism(Mechanism::Login)
                {
                    return Err(Failure::Unsupported {
                        kind: TransportErrorKind::AccountConfiguration,
                        message: "the smtp server offers neither PLAIN nor LOGIN authentication".to_owned(),
                        remediation: "check the host and port; some servers offer authentication only after STARTTLS (enable TLS)".to_owned(),
                        remedy: Some(Remedy::EditAccount { account: None }),
                    });
                }
                settings
                    .bounded(
                        Stage::Authenticate,
                        self.inner
                            .auth(&[Mechanism::Plain, Mechanism::Login], &lettre_credentials),
                        Failure::from_lettre,
                    )
                    .await?;
                Ok(())
            }
            CredentialSecret::AccessToken(token) => {
                let server = &settings.server;
                let loopback_allowed = server.allow_plaintext_loopback
                    && is_loopback_host(&server.host)
                    && peer.ip().is_loopback();
                if !encrypted && !loopback_allowed {
                    return Err(Failure::Insecure {
                        reason: format!(
                            "refusing to send an access token to {}:{} without tls: the server offers no STARTTLS",
                            server.host, server.port
                        ),
                        remediation: "enable TLS for the account (STARTTLS on 587, implicit TLS on 465) or use a server that offers it".to_owned(),
                    });
                }
                let mechanism = self.oauth_mechanism(settings).await?;
                self.oauth_exchange(settings, mechanism, &credentials.user, token.expose())
                    .await
            }
        }
    }

    /// XOAUTH2 when lettre saw it in the EHLO reply; otherwise lettre dropped the keywords
    /// it does not know, so ask again and read the `AUTH` line for OAUTHBEARER.
    async fn oauth_mechanism(
        &mut self,
        settings: &ConnectionSettings,
    ) -> Result<OAuthMechanism, Failure> {
        if self
            .inner
            .server_info()
            .supports_auth_mechanism(Mechanism::Xoauth2)
        {
            return Ok(OAuthMechanism::Xoauth2);
        }
        let ehlo = settings
            .bounded(
                Stage::Greeting,
                self.inner.command(Ehlo::new(settings.hello.clone())),
                Failure::from_lettre,
            )
            .await?;
        choose_oauth_mechanism(ehlo.message()).ok_or_else(|| Failure::Unsupported {
            kind: TransportErrorKind::AccountConfiguration,
            message: "the smtp server offers neither XOAUTH2 nor OAUTHBEARER, and mailroom never sends an access token with a weaker mechanism".to_owned(),
            remediation: "check the host and port of the account (Microsoft 365: smtp.office365.com, 587), and that SMTP AUTH is enabled for the mailbox".to_owned(),
            remedy: Some(Remedy::EditAccount { account: None }),
        })
    }

    /// The OAuth exchange through `command`, because lettre's `auth` cannot answer the
    /// error challenge: initial response; on `334` decode the challenge, answer it as the
    /// mechanism requires and report the final reply.
    async fn oauth_exchange(
        &mut self,
        settings: &ConnectionSettings,
        mechanism: OAuthMechanism,
        user: &str,
        token: &str,
    ) -> Result<(), Failure> {
        let server = &settings.server;
        let command = mechanism.command(user, token, &server.host, server.port);
        let response = settings
            .bounded(
                Stage::Authenticate,
                self.inner.command(command),
                Failure::from_lettre,
            )
            .await?;
        if !response.has_code(334) {
            return Ok(());
        }
        let challenge = decode_challenge(&response.message().collect::<Vec<_>>().join(" "));
        let answer = settings
            .bounded(
                Stage::Authenticate,
                self.inner.command(mechanism.challenge_answer()),
                |stage, error| match Reply::from_lettre_error(&error) {
                    Some(reply) => Failure::TokenChallenge {
                        mechanism: mechanism.name(),
                        challenge: challenge.clone(),
                        reply,
                    },
                    None => Failure::from_lettre(stage, error),
                },
            )
            .await?;
        // A server that accepts after its own error challenge is broken; do not use it.
        Err(Failure::TokenChallenge {
            mechanism: mechanism.name(),
            challenge,
            reply: Reply::from_response(&answer),
        })
    }

    /// Checks a connection that sat idle with `NOOP`.
    pub(crate) async fn is_healthy(&mut self, settings: &ConnectionSettings) -> bool {
        !self.inner.has_broken()
            && matches!(
                tokio::time::timeout(settings.timeout, self.inner.test_connected()).await,
                Ok(true)
            )
    }

    /// Sends one message: `MAIL FROM`, one `RCPT TO` per envelope recipient (Bcc
    /// included), `DATA`, the bytes unchanged (lettre only dot-stuffs). Returns the
    /// server's final reply.
    pub(crate) async fn send(
        &mut self,
        settings: &ConnectionSettings,
        message: &OutgoingMessage,
    ) -> Result<Reply, Failure> {
        let envelope = &message.envelope;
        let mut parameters = Vec::new();
        let is_ascii = |address: &mailroom_model::Address| AsRef::<str>::as_ref(address).is_ascii();
        let non_ascii_address =
            !is_ascii(envelope.sender()) || !envelope.recipients().iter().all(is_ascii);
        if non_ascii_address {
            if !self
                .inner
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Failure::Unsupported {
                    kind: TransportErrorKind::MessageRejected,
                    message: "an address of the message is not ASCII and the smtp server does not support SMTPUTF8".to_owned(),
                    remediation: "use ASCII addresses (punycode for the domain) or a server that supports SMTPUTF8".to_owned(),
                    remedy: None,
                });
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.bytes.is_ascii() {
            if !self
                .inner
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                return Err(Failure::Unsupported {
                    kind: TransportErrorKind::MessageRejected,
                    message: "the message has 8-bit content and the smtp server does not support 8BITMIME".to_owned(),
                    remediation: "encode the message as 7-bit (quoted-printable or base64) or use a server that supports 8BITMIME".to_owned(),
                    remedy: None,
                });
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }

        settings
            .bounded(
                Stage::MailFrom,
                self.inner
                    .command(Mail::new(Some(envelope.sender().clone()), parameters)),
                Failure::from_lettre,
            )
            .await?;
        for recipient in envelope.recipients() {
            settings
                .bounded_lazy(
                    || Stage::RcptTo(recipient.to_string()),
                    self.inner.command(Rcpt::new(recipient.clone(), Vec::new())),
                    Failure::from_lettre,
                )
                .await?;
        }
        settings
            .bounded(Stage::Data, self.inner.command(Data), Failure::from_lettre)
            .await?;
        // lettre ends the data with `CRLF . CRLF`; a message that already ends with CRLF
        // would get an extra empty line, so hand it over without its last CRLF. The server
        // then stores exactly these bytes (SMTP requires the final CRLF, so a message
        // without one gets it).
        let bytes = message.bytes.as_ref();
        let body = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let response = settings
            .bounded(
                Stage::Message,
                self.inner.message(body),
                Failure::from_lettre,
            )
            .await?;
        Ok(Reply::from_response(&response))
    }

    /// Says goodbye politely; used for connections the pool no longer wants.
    pub(crate) async fn quit(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.inner.quit()).await;
    }
}
