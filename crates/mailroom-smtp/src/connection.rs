//! One SMTP session, driven here on our own socket (see `wire.rs` for the bytes and their
//! bounds): connect with `TCP_NODELAY`, start TLS as the account's settings say,
//! authenticate once, then send messages (pipelined when the server offers PIPELINING).
//! Every step is bounded by the account's timeout, except the final reply after the
//! message data, which has its own (RFC 5321 4.5.3.2.6: ten minutes by default).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailroom_model::validate::is_loopback_host;
use mailroom_model::{
    CredentialSecret, Credentials, OutgoingMessage, Provider, Remedy, ServerSettings,
    TransportErrorKind,
};
use smtp_proto::{EXT_8BIT_MIME, EXT_PIPELINING, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse};
use tokio::net::TcpStream;

use crate::reply::{Failure, Reply, Stage};
use crate::sasl::{
    AuthLine, OAuthMechanism, choose_oauth_mechanism, decode_challenge, offered_mechanisms,
};
use crate::tls::{TlsMaterial, TlsPlan, is_tls_record_start};
use crate::wire::{DataError, RawReply, Stream, Wire, WireError};

/// What every connection of a transport shares.
#[derive(Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) server: ServerSettings,
    pub(crate) tls: TlsMaterial,
    /// The name sent in `EHLO`.
    pub(crate) hello: String,
    /// Bounds every step but the final reply.
    pub(crate) timeout: Duration,
    /// Bounds the wait for the reply to the message data's final `.`.
    pub(crate) final_reply_timeout: Duration,
}

impl ConnectionSettings {
    /// `host:port`, for messages.
    pub(crate) fn label(&self) -> String {
        format!("{}:{}", self.server.host, self.server.port)
    }

    async fn bounded<T>(
        &self,
        stage: Stage,
        future: impl Future<Output = Result<T, WireError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::from_wire(stage, &self.label(), error)),
            Err(_) => Err(Failure::Timeout {
                stage,
                timeout_ms: self.server.timeout_ms,
            }),
        }
    }
}

/// What the server said to `EHLO`.
#[derive(Debug, Clone)]
pub(crate) struct Capabilities {
    /// The name the server gave.
    pub(crate) name: String,
    /// The extension lines (the first, the greeting, included).
    pub(crate) lines: Vec<String>,
    /// `smtp_proto`'s `EXT_*` bits.
    extensions: u32,
}

impl Capabilities {
    fn parse(reply: &RawReply, stage: Stage, server: &str) -> Result<Self, Failure> {
        let parsed =
            EhloResponse::parse(&mut reply.raw.iter()).map_err(|error| Failure::Protocol {
                stage,
                server: server.to_owned(),
                problem: format!("its EHLO reply cannot be read ({error})"),
            })?;
        Ok(Self {
            name: parsed.hostname,
            lines: reply.lines.clone(),
            extensions: parsed.capabilities,
        })
    }

    fn has(&self, extension: u32) -> bool {
        self.extensions & extension != 0
    }

    /// The `AUTH` mechanisms, upper-cased, in the server's order.
    pub(crate) fn auth_mechanisms(&self) -> Vec<String> {
        offered_mechanisms(self.lines.iter().map(String::as_str))
    }

    pub(crate) fn pipelining(&self) -> bool {
        self.has(EXT_PIPELINING)
    }
}

/// An open, authenticated connection.
pub(crate) struct SmtpConnection {
    wire: Wire,
    capabilities: Capabilities,
    /// A step failed half-way: the connection must not be reused.
    broken: bool,
}

impl std::fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("server", &self.capabilities.name)
            .field("tls", &self.wire.is_tls())
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
    pub(crate) wire: Wire,
    pub(crate) capabilities: Capabilities,
    pub(crate) encrypted: bool,
    pub(crate) peer: SocketAddr,
}

/// Reads the greeting and says EHLO.
async fn greet(settings: &ConnectionSettings, wire: &mut Wire) -> Result<Capabilities, Failure> {
    let greeting = settings.bounded(Stage::Greeting, wire.read_reply()).await?;
    if greeting.reply.code != 220 {
        return Err(Failure::Reply {
            stage: Stage::Greeting,
            reply: greeting.reply,
        });
    }
    ehlo(settings, wire).await
}

async fn ehlo(settings: &ConnectionSettings, wire: &mut Wire) -> Result<Capabilities, Failure> {
    let command = format!("EHLO {}\r\n", settings.hello);
    let reply = settings
        .bounded(Stage::Greeting, async {
            wire.send(command.as_bytes()).await?;
            wire.read_reply().await
        })
        .await?;
    if reply.reply.code != 250 {
        return Err(Failure::Reply {
            stage: Stage::Greeting,
            reply: reply.reply,
        });
    }
    Capabilities::parse(&reply, Stage::Greeting, &settings.label())
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
        let mut wire = Wire::new(Stream::Tls(Box::new(stream)));
        let capabilities = greet(settings, &mut wire).await?;
        return Ok(Greeted {
            wire,
            capabilities,
            encrypted: true,
            peer,
        });
    }

    wait_for_plain_greeting(settings, &tcp).await?;
    let mut wire = Wire::new(Stream::Plain(tcp));
    let capabilities = greet(settings, &mut wire).await?;
    if capabilities.has(EXT_START_TLS) {
        let reply = settings
            .bounded(Stage::StartTls, async {
                wire.send(b"STARTTLS\r\n").await?;
                wire.read_reply().await
            })
            .await?;
        if reply.reply.code != 220 {
            return Err(Failure::Reply {
                stage: Stage::StartTls,
                reply: reply.reply,
            });
        }
        settings
            .bounded(Stage::StartTls, wire.upgrade(&settings.tls))
            .await?;
        let capabilities = ehlo(settings, &mut wire).await?;
        Ok(Greeted {
            wire,
            capabilities,
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
            wire,
            capabilities,
            encrypted: false,
            peer,
        })
    }
}

async fn open_socket(settings: &ConnectionSettings) -> Result<TcpStream, Failure> {
    let server = &settings.server;
    let tcp = match tokio::time::timeout(
        settings.timeout,
        TcpStream::connect((server.host.as_str(), server.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(Failure::io(Stage::Connect, error)),
        Err(_) => {
            return Err(Failure::Timeout {
                stage: Stage::Connect,
                timeout_ms: server.timeout_ms,
            });
        }
    };
    // Without it every message waits for the server's delayed ACK (Nagle).
    tcp.set_nodelay(true)
        .map_err(|error| Failure::io(Stage::Connect, error))?;
    Ok(tcp)
}

/// Before the greeting is read: a first byte that starts a TLS record means the port
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

/// Whether a password may be sent on a connection: an encrypted one, or in plaintext only
/// to this machine (a loopback host name that connected to a loopback address) or where
/// the account explicitly allows it.
pub(crate) fn password_may_be_sent(
    encrypted: bool,
    server: &ServerSettings,
    peer: SocketAddr,
) -> bool {
    encrypted
        || server.allow_plaintext_password
        || (is_loopback_host(&server.host) && peer.ip().is_loopback())
}

/// One command and its reply, within the timeout.
async fn exchange(
    settings: &ConnectionSettings,
    wire: &mut Wire,
    stage: Stage,
    command: &[u8],
) -> Result<Reply, Failure> {
    let reply = settings
        .bounded(stage, async {
            wire.send(command).await?;
            wire.read_reply().await
        })
        .await?;
    Ok(reply.reply)
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
            wire,
            capabilities,
            encrypted,
            peer,
        } = connect(settings).await?;

        let mut connection = Self {
            wire,
            capabilities,
            broken: false,
        };
        connection
            .authenticate(settings, credentials, encrypted, peer)
            .await?;
        tracing::debug!(
            host = %server.host,
            port = server.port,
            tls = encrypted,
            pipelining = connection.capabilities.pipelining(),
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
        let server = &settings.server;
        match &credentials.secret {
            CredentialSecret::None => Ok(()),
            CredentialSecret::Password(password) => {
                let offered = self.capabilities.auth_mechanisms();
                let plain = offered.iter().any(|mechanism| mechanism == "PLAIN");
                let login = offered.iter().any(|mechanism| mechanism == "LOGIN");
                if !plain && !login {
                    return Err(Failure::Unsupported {
                        kind: TransportErrorKind::AccountConfiguration,
                        message: "the smtp server offers neither PLAIN nor LOGIN authentication".to_owned(),
                        remediation: "check the host and port; some servers offer authentication only after STARTTLS (enable TLS)".to_owned(),
                        remedy: Some(Remedy::EditAccount { account: None }),
                    });
                }
                if !password_may_be_sent(encrypted, server, peer) {
                    return Err(Failure::Insecure {
                        reason: format!(
                            "refusing to send the password of {} to {}:{} without tls: the connection is not encrypted (the server offers no STARTTLS, or TLS is off for the account)",
                            credentials.user, server.host, server.port
                        ),
                        remediation: "enable TLS for the account (STARTTLS on 587, implicit TLS on 465) or use a server that offers it; mailroom sends a password in plaintext only to a loopback host, or where the account explicitly allows it (--allow-plaintext-password, which anyone on the network path can then read)".to_owned(),
                    });
                }
                let stage = Stage::Authenticate;
                let reply = if plain {
                    let response = format!("\0{}\0{}", credentials.user, password.expose());
                    let line = AuthLine::new(format!("AUTH PLAIN {}", STANDARD.encode(response)));
                    self.exchange(settings, stage, line.to_string().as_bytes())
                        .await?
                } else {
                    let first = self
                        .exchange(settings, stage.clone(), b"AUTH LOGIN\r\n")
                        .await?;
                    if first.code != 334 {
                        return Err(Failure::Reply {
                            stage,
                            reply: first,
                        });
                    }
                    let user = AuthLine::new(STANDARD.encode(&credentials.user));
                    let second = self
                        .exchange(settings, stage.clone(), user.to_string().as_bytes())
                        .await?;
                    if second.code != 334 {
                        return Err(Failure::Reply {
                            stage,
                            reply: second,
                        });
                    }
                    let secret = AuthLine::new(STANDARD.encode(password.expose()));
                    self.exchange(settings, stage.clone(), secret.to_string().as_bytes())
                        .await?
                };
                if reply.code == 235 {
                    Ok(())
                } else {
                    Err(Failure::Reply {
                        stage: Stage::Authenticate,
                        reply,
                    })
                }
            }
            CredentialSecret::AccessToken(token) => {
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
                let mechanism = self.oauth_mechanism()?;
                self.oauth_exchange(settings, mechanism, &credentials.user, token.expose())
                    .await
            }
        }
    }

    async fn exchange(
        &mut self,
        settings: &ConnectionSettings,
        stage: Stage,
        command: &[u8],
    ) -> Result<Reply, Failure> {
        exchange(settings, &mut self.wire, stage, command).await
    }

    /// XOAUTH2 when the server offers it, else OAUTHBEARER.
    fn oauth_mechanism(&self) -> Result<OAuthMechanism, Failure> {
        choose_oauth_mechanism(self.capabilities.lines.iter().map(String::as_str)).ok_or_else(|| Failure::Unsupported {
            kind: TransportErrorKind::AccountConfiguration,
            message: "the smtp server offers neither XOAUTH2 nor OAUTHBEARER, and mailroom never sends an access token with a weaker mechanism".to_owned(),
            remediation: "check the host and port of the account (Microsoft 365: smtp.office365.com, 587), and that SMTP AUTH is enabled for the mailbox".to_owned(),
            remedy: Some(Remedy::EditAccount { account: None }),
        })
    }

    /// The OAuth exchange: initial response; on `334` decode the challenge, answer it as
    /// the mechanism requires and report the final reply.
    async fn oauth_exchange(
        &mut self,
        settings: &ConnectionSettings,
        mechanism: OAuthMechanism,
        user: &str,
        token: &str,
    ) -> Result<(), Failure> {
        let server = &settings.server;
        let command = mechanism.command(user, token, &server.host, server.port);
        let response = self
            .exchange(
                settings,
                Stage::Authenticate,
                command.to_string().as_bytes(),
            )
            .await?;
        match response.code {
            235 => return Ok(()),
            334 => {}
            _ => {
                return Err(Failure::Reply {
                    stage: Stage::Authenticate,
                    reply: response,
                });
            }
        }
        let challenge = decode_challenge(&response.text);
        let answer = self
            .exchange(
                settings,
                Stage::Authenticate,
                mechanism.challenge_answer().to_string().as_bytes(),
            )
            .await?;
        // A server that accepts after its own error challenge is broken; do not use it.
        Err(Failure::TokenChallenge {
            mechanism: mechanism.name(),
            challenge,
            reply: answer,
        })
    }

    /// Checks a connection that sat idle with `NOOP`.
    pub(crate) async fn is_healthy(&mut self, settings: &ConnectionSettings) -> bool {
        if self.broken {
            return false;
        }
        matches!(
            self.exchange(settings, Stage::MailFrom, b"NOOP\r\n").await,
            Ok(reply) if reply.code == 250
        )
    }

    /// Sends one message: `MAIL FROM`, one `RCPT TO` per envelope recipient (Bcc
    /// included), `DATA` — in one write when the server offers PIPELINING (RFC 2920) —
    /// then the bytes unchanged but dot-stuffed. Returns the server's final reply.
    ///
    /// A refused recipient refuses the whole message (no partial delivery): the body is
    /// not sent, and the connection is closed (after a pipelined `DATA` the server waits
    /// for data that never comes, and discards the transaction when the connection drops).
    pub(crate) async fn send(
        &mut self,
        settings: &ConnectionSettings,
        message: &OutgoingMessage,
    ) -> Result<Reply, Failure> {
        let envelope = &message.envelope;
        let mut mail = format!("MAIL FROM:<{}>", envelope.sender());
        let is_ascii = |address: &mailroom_model::Address| AsRef::<str>::as_ref(address).is_ascii();
        let non_ascii_address =
            !is_ascii(envelope.sender()) || !envelope.recipients().iter().all(is_ascii);
        if non_ascii_address {
            if !self.capabilities.has(EXT_SMTP_UTF8) {
                return Err(Failure::Unsupported {
                    kind: TransportErrorKind::MessageRejected,
                    message: "an address of the message is not ASCII and the smtp server does not support SMTPUTF8".to_owned(),
                    remediation: "use ASCII addresses (punycode for the domain) or a server that supports SMTPUTF8".to_owned(),
                    remedy: None,
                });
            }
            mail.push_str(" SMTPUTF8");
        }
        if !message.bytes.is_ascii() {
            if !self.capabilities.has(EXT_8BIT_MIME) {
                return Err(Failure::Unsupported {
                    kind: TransportErrorKind::MessageRejected,
                    message: "the message has 8-bit content and the smtp server does not support 8BITMIME".to_owned(),
                    remediation: "encode the message as 7-bit (quoted-printable or base64) or use a server that supports 8BITMIME".to_owned(),
                    remedy: None,
                });
            }
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str("\r\n");
        let recipients = envelope.recipients();

        // Until the final reply says otherwise, the connection is mid-transaction.
        self.broken = true;
        let (mail_reply, rcpt_replies, data_reply) = if self.capabilities.pipelining() {
            self.pipelined(settings, &mail, recipients).await?
        } else {
            self.one_by_one(settings, &mail, recipients).await?
        };
        if mail_reply.code / 100 != 2 {
            return Err(Failure::Reply {
                stage: Stage::MailFrom,
                reply: mail_reply,
            });
        }
        let rejected: Vec<(String, Reply)> = recipients
            .iter()
            .zip(rcpt_replies)
            .filter(|(_, reply)| reply.code / 100 != 2)
            .map(|(recipient, reply)| (recipient.to_string(), reply))
            .collect();
        if !rejected.is_empty() {
            return Err(Failure::Recipients {
                rejected,
                total: recipients.len(),
            });
        }
        let data_reply = data_reply
            .ok_or_else(|| Failure::io(Stage::Data, std::io::Error::other("no reply to DATA")))?;
        if data_reply.code != 354 {
            return Err(Failure::Reply {
                stage: Stage::Data,
                reply: data_reply,
            });
        }

        match self
            .wire
            .send_data(message.bytes.as_ref(), settings.timeout)
            .await
        {
            Ok(()) => {}
            Err(DataError::Timeout) => {
                return Err(Failure::Timeout {
                    stage: Stage::Message,
                    timeout_ms: settings.server.timeout_ms,
                });
            }
            Err(DataError::Wire(error)) => {
                return Err(Failure::from_wire(Stage::Message, &settings.label(), error));
            }
        }

        // The whole message is with the server: from here a failure leaves its fate unknown.
        let unknown = |reason: String| Failure::DeliveryUnknown {
            server: settings.label(),
            reason,
        };
        let reply = match tokio::time::timeout(settings.final_reply_timeout, self.wire.read_reply())
            .await
        {
            Ok(Ok(reply)) => reply.reply,
            Ok(Err(WireError::Closed)) => {
                return Err(unknown(
                    "closed the connection before its final reply".to_owned(),
                ));
            }
            Ok(Err(WireError::Io(error))) => {
                return Err(unknown(format!(
                    "the connection failed before its final reply ({error})"
                )));
            }
            Ok(Err(WireError::Protocol(problem))) => {
                return Err(unknown(format!(
                    "its final reply broke the protocol ({problem})"
                )));
            }
            Err(_) => {
                return Err(unknown(format!(
                    "gave no final reply within {} ms",
                    settings.final_reply_timeout.as_millis()
                )));
            }
        };
        if reply.code / 100 == 2 {
            self.broken = false;
            Ok(reply)
        } else {
            Err(Failure::Reply {
                stage: Stage::Message,
                reply,
            })
        }
    }

    /// MAIL, every RCPT and DATA in one write; the replies read in order.
    async fn pipelined(
        &mut self,
        settings: &ConnectionSettings,
        mail: &str,
        recipients: &[mailroom_model::Address],
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), Failure> {
        let mut batch = Vec::with_capacity(mail.len() + recipients.len() * 64 + 6);
        batch.extend_from_slice(mail.as_bytes());
        for recipient in recipients {
            batch.extend_from_slice(format!("RCPT TO:<{recipient}>\r\n").as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
        let wire = &mut self.wire;
        settings.bounded(Stage::MailFrom, wire.send(&batch)).await?;
        let mail_reply = settings
            .bounded(Stage::MailFrom, wire.read_reply())
            .await?
            .reply;
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            match settings
                .bounded(Stage::RcptTo(recipient.to_string()), wire.read_reply())
                .await
            {
                Ok(reply) => rcpt_replies.push(reply.reply),
                // A refused sender explains the rest (the server may have hung up).
                Err(_) if mail_reply.code / 100 != 2 => {
                    return Ok((mail_reply, Vec::new(), None));
                }
                Err(failure) => return Err(failure),
            }
        }
        let data_reply = match settings.bounded(Stage::Data, wire.read_reply()).await {
            Ok(reply) => reply.reply,
            Err(_) if mail_reply.code / 100 != 2 => return Ok((mail_reply, rcpt_replies, None)),
            Err(failure) => return Err(failure),
        };
        Ok((mail_reply, rcpt_replies, Some(data_reply)))
    }

    /// MAIL, every RCPT (all of them, so each refusal is reported) and, when all were
    /// accepted, DATA, each waiting for its reply.
    async fn one_by_one(
        &mut self,
        settings: &ConnectionSettings,
        mail: &str,
        recipients: &[mailroom_model::Address],
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), Failure> {
        let mail_reply = self
            .exchange(settings, Stage::MailFrom, mail.as_bytes())
            .await?;
        if mail_reply.code / 100 != 2 {
            return Ok((mail_reply, Vec::new(), None));
        }
        let mut rcpt_replies = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let command = format!("RCPT TO:<{recipient}>\r\n");
            let reply = self
                .exchange(
                    settings,
                    Stage::RcptTo(recipient.to_string()),
                    command.as_bytes(),
                )
                .await?;
            rcpt_replies.push(reply);
        }
        if rcpt_replies.iter().any(|reply| reply.code / 100 != 2) {
            return Ok((mail_reply, rcpt_replies, None));
        }
        let data_reply = self.exchange(settings, Stage::Data, b"DATA\r\n").await?;
        Ok((mail_reply, rcpt_replies, Some(data_reply)))
    }

    /// Says goodbye politely; used for connections the pool no longer wants.
    pub(crate) async fn quit(self, timeout: Duration) {
        quit(self.wire, timeout).await;
    }
}

/// `QUIT`, bounded by `timeout`; the answer does not matter.
pub(crate) async fn quit(mut wire: Wire, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        wire.send(b"QUIT\r\n").await?;
        wire.read_reply().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capabilities(raw: &str) -> Capabilities {
        let mut reader = crate::wire::ReplyReader::new();
        let spare = reader.spare();
        spare[..raw.len()].copy_from_slice(raw.as_bytes());
        reader.filled(raw.len());
        let crate::wire::Fed::Reply(reply) = reader.feed().expect("a reply") else {
            panic!("incomplete");
        };
        Capabilities::parse(&reply, Stage::Greeting, "test:25").expect("capabilities")
    }

    #[test]
    fn real_ehlo_replies_are_understood() {
        // Exchange Online after STARTTLS.
        let exchange = capabilities(concat!(
            "250-SN4PR0201CA0068.outlook.office365.com Hello [192.0.2.1]\r\n",
            "250-SIZE 157286400\r\n",
            "250-PIPELINING\r\n",
            "250-DSN\r\n",
            "250-ENHANCEDSTATUSCODES\r\n",
            "250-AUTH LOGIN XOAUTH2\r\n",
            "250-8BITMIME\r\n",
            "250-BINARYMIME\r\n",
            "250-CHUNKING\r\n",
            "250 SMTPUTF8\r\n",
        ));
        assert_eq!(exchange.name, "SN4PR0201CA0068.outlook.office365.com");
        assert!(exchange.pipelining());
        assert!(exchange.has(EXT_8BIT_MIME) && exchange.has(EXT_SMTP_UTF8));
        assert!(!exchange.has(EXT_START_TLS));
        assert_eq!(exchange.auth_mechanisms(), ["LOGIN", "XOAUTH2"]);
        // Exchange before STARTTLS, with an unknown extension.
        let plain = capabilities(concat!(
            "250-SN4PR0201CA0068.outlook.office365.com Hello [192.0.2.1]\r\n",
            "250-SIZE 157286400\r\n",
            "250-PIPELINING\r\n",
            "250-X-ANONYMOUSTLS\r\n",
            "250-STARTTLS\r\n",
            "250 SMTPUTF8\r\n",
        ));
        assert!(plain.has(EXT_START_TLS) && plain.pipelining());
        assert!(plain.auth_mechanisms().is_empty());
        // Gmail's submission server, and a server with nothing to offer.
        let gmail = capabilities(concat!(
            "250-smtp.gmail.com at your service, [192.0.2.1]\r\n",
            "250-SIZE 35882577\r\n",
            "250-8BITMIME\r\n",
            "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n",
            "250-ENHANCEDSTATUSCODES\r\n",
            "250-PIPELINING\r\n",
            "250-CHUNKING\r\n",
            "250 SMTPUTF8\r\n",
        ));
        assert!(gmail.pipelining());
        assert!(gmail.auth_mechanisms().contains(&"OAUTHBEARER".to_owned()));
        let bare = capabilities("250 relay.example\r\n");
        assert_eq!(bare.name, "relay.example");
        assert!(!bare.pipelining() && !bare.has(EXT_START_TLS));
    }

    fn server(host: &str, opt_in: bool) -> ServerSettings {
        let mut settings = ServerSettings::preset(Provider::None);
        settings.host = host.to_owned();
        settings.allow_plaintext_password = opt_in;
        settings
    }

    #[test]
    fn a_password_goes_encrypted_anywhere_in_plaintext_only_to_loopback_or_with_the_opt_in() {
        let loopback: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:25".parse().unwrap();
        let allowed = |host: &str, opt_in: bool, peer: SocketAddr| {
            password_may_be_sent(false, &server(host, opt_in), peer)
        };
        // Encrypted, it goes anywhere.
        assert!(password_may_be_sent(
            true,
            &server("smtp.example.com", false),
            remote
        ));
        assert!(allowed("127.0.0.1", false, loopback));
        assert!(allowed("localhost", false, loopback));
        assert!(allowed("[::1]", false, "[::1]:25".parse().unwrap()));
        assert!(!allowed("smtp.example.com", false, remote));
        assert!(!allowed("smtp.example.com", false, loopback));
        // A name that claims loopback but reached another address.
        assert!(!allowed("localhost", false, remote));
        // The account's explicit opt-in.
        assert!(allowed("smtp.example.com", true, remote));
    }

    /// A token goes only to an OAuth provider's server and a password only to a password
    /// server; an OAuth account without a token is refused too, all before connecting.
    #[test]
    fn credentials_must_match_the_providers_kind() {
        use mailroom_model::{CredentialSecret, Credentials, Secret};
        let with = |secret: CredentialSecret| Credentials {
            user: "box@example.com".to_owned(),
            secret,
            version: 1,
        };
        let password = || with(CredentialSecret::Password(Secret::new("pw")));
        let token = || with(CredentialSecret::AccessToken(Secret::new("token")));
        let none = || with(CredentialSecret::None);
        let refusal = |provider: Provider, credentials: Credentials| match check_credentials(
            provider,
            &credentials,
        ) {
            Ok(()) => None,
            Err(failure) => Some(failure.into_transport_error("box@example.com")),
        };
        for provider in [Provider::Microsoft, Provider::Google] {
            assert!(refusal(provider, token()).is_none(), "{provider}");
            for (credentials, words) in [
                (password(), "not a password"),
                (none(), "needs an access token"),
            ] {
                let error = refusal(provider, credentials).expect("refused");
                assert_eq!(error.kind(), TransportErrorKind::AccountConfiguration);
                assert!(error.message().contains(words), "{error}");
                assert!(
                    matches!(error.remedy(), Some(Remedy::SignIn { .. })),
                    "{error}"
                );
            }
        }
        assert!(refusal(Provider::None, password()).is_none());
        assert!(
            refusal(Provider::None, none()).is_none(),
            "a relay without AUTH"
        );
        let error = refusal(Provider::None, token()).expect("refused");
        assert!(error.message().contains("not an access token"), "{error}");
        assert!(
            matches!(error.remedy(), Some(Remedy::EditAccount { .. })),
            "{error}"
        );
    }

    #[test]
    fn the_greeting_is_waited_for_a_quarter_of_the_timeout_at_most_two_seconds() {
        assert_eq!(
            greeting_probe_after(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        assert_eq!(
            greeting_probe_after(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            greeting_probe_after(Duration::from_secs(20)),
            Duration::from_secs(2)
        );
    }
}
