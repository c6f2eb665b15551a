//! The SMTP submission server, written for the sandbox: no SMTP server library offers
//! XOAUTH2 and OAUTHBEARER with the `334` error challenge, so this is a small tokio server
//! with a protocol state machine ([`Session`], no I/O) and a connection loop that reads
//! lines, runs STARTTLS and reads DATA. Commands are parsed by `smtp-proto`'s request
//! parser (the grammar is not written here); a whole line is read first (up to
//! [`MAX_COMMAND_LINE`], so AUTH lines with long Microsoft tokens fit) and handed to
//! `Request::parse` complete, so the parser's own line cap for lines that span reads does
//! not apply. The SASL payloads and DATA reading are unit-tested here; the line protocol is
//! pinned as raw transcripts in `tests/it/smtp.rs`.
//!
//! Commands: EHLO/HELO, STARTTLS, AUTH XOAUTH2 / OAUTHBEARER / PLAIN / LOGIN (only after
//! TLS), MAIL (with `SIZE=`), RCPT, DATA (dot-unstuffing, the end only at `CRLF.CRLF`,
//! a size limit), RSET, NOOP, QUIT, VRFY. The replies are Microsoft 365's where it has one.
//!
//! A delegated token authenticates only its own address (`user=` must be the signed-in
//! mailbox, or a mailbox the person may send as: [`crate::Authority::grant_send_as`]) and
//! may send only as it (`MAIL FROM`, else `550 5.7.60`). An app-only (client credentials)
//! token needs Exchange Online's audience and `SMTP.SendAsApp`, and authenticates `user=` a
//! mailbox only when the app's service principal has FullAccess on it
//! ([`crate::Authority::grant_app_smtp_mailbox`]); otherwise, and for a Graph token,
//! `535 5.7.3`. It then sends as that mailbox only, as a delegated token does. Password
//! logins may send as anyone.
//!
//! Exchange Online's rules for Microsoft-style tokens: a refused XOAUTH2 token gets a
//! direct `535 5.7.3 Authentication unsuccessful [...]`, no `334` challenge (Google's SMTP
//! sends the base64 JSON challenge first, and so does this server for Google-style tokens,
//! for OAUTHBEARER, and for a token it never issued on the implicit-TLS port, the
//! smtp.gmail.com:465 look-alike); and at most three sessions per mailbox are
//! authenticated at once: a fourth gets `432 4.3.2 Concurrent connections limit exceeded`
//! ("Changes in message store and throttling for concurrent connections",
//! learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements);
//! and a mailbox's recipients in any 24 hours are limited (10,000 unless configured),
//! past which a message gets `554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException`
//! after its data (same page).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::Request;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::Authority;
use crate::authority::{
    MICROSOFT_APP_SCOPE, MICROSOFT_SMTP_SCOPE, SMTP_SEND_AS_APP_ROLE, Style, TokenCheck,
};
use crate::mailbox::{Arrival, Mailbox, ReceivedBy};

/// The longest command line: RFC 4954 allows AUTH lines of 12288 octets, Microsoft access
/// tokens make XOAUTH2 lines of several KiB, and this takes 128 KiB.
const MAX_COMMAND_LINE: usize = 128 * 1024;
/// The most recipients of one message (Exchange Online's limit).
const MAX_RECIPIENTS: usize = 500;
/// How long the server waits for the client's next line.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const HOSTNAME: &str = "smtp.sandbox.mailroom.localhost";

/// Password accounts for PLAIN and LOGIN; shared with the [`crate::Sandbox`] handle.
#[derive(Clone, Default)]
pub(crate) struct PasswordAccounts {
    accounts: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for PasswordAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordAccounts").finish_non_exhaustive()
    }
}

impl PasswordAccounts {
    pub(crate) fn new(accounts: &[(String, String)]) -> Self {
        let this = Self::default();
        for (login, password) in accounts {
            this.add(login, password);
        }
        this
    }

    pub(crate) fn add(&self, login: &str, password: &str) {
        self.accounts
            .lock()
            .expect("password lock")
            .insert(login.to_owned(), password.to_owned());
    }

    fn check(&self, login: &str, password: &str) -> bool {
        self.accounts
            .lock()
            .expect("password lock")
            .get(login)
            .is_some_and(|known| known == password)
    }
}

/// Exchange Online's limit of sessions sending at once for one mailbox.
const CONNECTIONS_PER_MAILBOX: usize = 3;

/// Exchange Online's reply to one connection too many (the aka.ms link and the host are in
/// the replies Exchange sends today).
fn too_many_connections() -> String {
    format!(
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname={HOSTNAME}]"
    )
}

/// The sessions authenticated now, per mailbox (lowercased), for Exchange's limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailboxSessions {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl MailboxSessions {
    /// A place for one more session of `mailbox`, or `None` when it has its three.
    fn enter(&self, mailbox: &str) -> Option<SessionSlot> {
        let key = mailbox.to_ascii_lowercase();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(key.clone()).or_default();
        if *count >= CONNECTIONS_PER_MAILBOX {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            sessions: self.clone(),
            key,
        })
    }
}

/// One authenticated session of a mailbox; its place is given back when the connection
/// ends (the session is dropped).
#[derive(Debug)]
struct SessionSlot {
    sessions: MailboxSessions,
    key: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self
            .sessions
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// One mailbox's sends of the last 24 hours: when, and to how many recipients.
type RecentSends = std::collections::VecDeque<(std::time::Instant, usize)>;

/// Exchange Online's recipient rate limit: recipients per mailbox in a rolling 24 hours.
#[derive(Debug, Clone)]
pub(crate) struct RecipientLedger {
    limit: usize,
    sent: Arc<Mutex<HashMap<String, RecentSends>>>,
}

impl RecipientLedger {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            sent: Arc::default(),
        }
    }

    /// Counts `recipients` more for `mailbox`, or refuses them all when that would pass
    /// the limit within the last 24 hours.
    fn take(&self, mailbox: &str, recipients: usize) -> bool {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let now = std::time::Instant::now();
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = sent.entry(mailbox.to_ascii_lowercase()).or_default();
        while entries
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= DAY)
        {
            entries.pop_front();
        }
        let used: usize = entries.iter().map(|(_, count)| count).sum();
        if used.saturating_add(recipients) > self.limit {
            return false;
        }
        entries.push_back((now, recipients));
        true
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) authority: Authority,
    pub(crate) mailbox: Mailbox,
    pub(crate) passwords: PasswordAccounts,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) max_message_size: usize,
    /// Microsoft-style sessions per mailbox.
    pub(crate) sessions: MailboxSessions,
    /// Microsoft-style recipients per mailbox and day.
    pub(crate) recipients: RecipientLedger,
}

/// How TLS starts on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plaintext first, STARTTLS offered (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// Who authenticated, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Authenticated {
    /// A delegated token of this address (or of a person with rights on it), or an app's
    /// token for a mailbox it has FullAccess on: it may send only as the mailbox.
    Mailbox(String),
    /// A password login: it may send as anyone.
    Any(String),
}

impl Authenticated {
    fn name(&self) -> &str {
        match self {
            Authenticated::Mailbox(name) | Authenticated::Any(name) => name,
        }
    }
}

/// The SASL exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sasl {
    None,
    Xoauth2,
    OAuthBearer,
    Plain,
    LoginUser,
    LoginPassword {
        login: String,
    },
    /// The `334` error challenge was sent; the client's answer ends the exchange with 535.
    Failed {
        reason: String,
    },
}

/// What the connection loop must do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this reply (one or more CRLF-terminated lines).
    Reply(String),
    /// Send `220`, then run the TLS handshake, dropping anything the client pipelined.
    StartTls,
    /// Send `354`, then read the message.
    Data,
    /// Send this reply and close the connection.
    Close(String),
}

/// The protocol state of one connection, without I/O.
pub(crate) struct Session {
    shared: Arc<Shared>,
    mode: TlsMode,
    tls: bool,
    peer: String,
    greeted: bool,
    sasl: Sasl,
    authenticated: Option<Authenticated>,
    /// The mailbox's place among its three sessions (Microsoft style).
    slot: Option<SessionSlot>,
    mail_from: Option<String>,
    recipients: Vec<String>,
}

fn reply(text: &str) -> Step {
    Step::Reply(format!("{text}\r\n"))
}

/// The reply to a line `smtp-proto`'s request parser refused.
fn refusal(error: smtp_proto::Error) -> Step {
    use smtp_proto::Error;
    match error {
        Error::UnknownCommand => reply("500 5.3.3 Unrecognized command"),
        Error::InvalidSenderAddress => reply("501 5.1.7 Invalid sender address"),
        Error::InvalidRecipientAddress => reply("501 5.1.3 Invalid address"),
        Error::SyntaxError { syntax } if syntax.starts_with("AUTH") => {
            reply("504 5.7.4 Unrecognized authentication type")
        }
        Error::SyntaxError { syntax } => reply(&format!("501 5.5.4 Syntax: {syntax}")),
        Error::InvalidParameter { param } => reply(&format!("501 5.5.4 Invalid parameter {param}")),
        Error::UnsupportedParameter { param } => reply(&format!(
            "555 5.5.4 Unsupported parameter {}",
            param.escape_debug()
        )),
        Error::NeedsMoreData { .. } | Error::ResponseTooLong | Error::InvalidResponse { .. } => {
            reply("500 5.5.2 Syntax error")
        }
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    STANDARD.decode(text).ok()
}

/// `user=U\x01auth=Bearer T\x01\x01` -> (U, T).
pub(crate) fn parse_xoauth2(data: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let text = text.strip_suffix("\x01\x01")?;
    let mut user = None;
    let mut token = None;
    for part in text.split('\x01') {
        if let Some(value) = part.strip_prefix("user=") {
            user = Some(value.to_owned());
        } else if let Some(value) = part.strip_prefix("auth=") {
            let (scheme, value) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token = Some(value.trim().to_owned());
        } else {
            return None;
        }
    }
    Some((user?, token?))
}

/// `n,a=U,\x01host=H\x01port=P\x01auth=Bearer T\x01\x01` -> (U, T) (RFC 7628).
pub(crate) fn parse_oauthbearer(data: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let (gs2, rest) = text.split_once('\x01')?;
    let mut gs2_parts = gs2.split(',');
    if !matches!(gs2_parts.next(), Some("n" | "y")) {
        return None;
    }
    let user = gs2_parts
        .next()
        .and_then(|part| part.strip_prefix("a="))
        .map(|user| user.replace("=2C", ",").replace("=3D", "="));
    let rest = rest
        .strip_suffix("\x01\x01")
        .or_else(|| rest.strip_suffix('\x01'))?;
    let mut token = None;
    for pair in rest.split('\x01') {
        if let Some(value) = pair.strip_prefix("auth=") {
            let (scheme, value) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token = Some(value.trim().to_owned());
        }
    }
    Some((user?, token?))
}

/// `authzid\0authcid\0password` -> (authcid, password).
fn parse_plain(data: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.split('\0');
    let _authzid = parts.next()?;
    let login = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((login.to_owned(), password.to_owned()))
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, mode: TlsMode, peer: SocketAddr) -> Self {
        Self {
            shared,
            mode,
            tls: mode == TlsMode::Implicit,
            peer: peer.ip().to_string(),
            greeted: false,
            sasl: Sasl::None,
            authenticated: None,
            slot: None,
            mail_from: None,
            recipients: Vec::new(),
        }
    }

    pub(crate) fn greeting(&self) -> String {
        format!("220 {HOSTNAME} mailroom sandbox ESMTP service ready\r\n")
    }

    /// After the TLS handshake: the client starts over with EHLO (RFC 3207).
    pub(crate) fn tls_started(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.reset_transaction();
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }

    /// Handles one line (without its CRLF).
    pub(crate) fn line(&mut self, line: &str) -> Step {
        if self.sasl != Sasl::None {
            return self.sasl_response(line);
        }
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let request = match Request::parse(&mut bytes.iter()) {
            Ok(request) => request,
            Err(error) => return refusal(error),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(&host),
            Request::Helo { host } => {
                self.greeted = true;
                self.reset_transaction();
                reply(&format!("250 {HOSTNAME} Hello [{}] ({host})", self.peer))
            }
            Request::StartTls => {
                if self.tls {
                    reply("503 5.5.1 TLS is already active")
                } else {
                    Step::StartTls
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            Request::Mail { from } => self.mail(&from.address, from.size),
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => {
                if self.mail_from.is_none() {
                    reply("503 5.5.1 Bad sequence of commands: MAIL first")
                } else if self.recipients.is_empty() {
                    reply("503 5.5.1 Bad sequence of commands: RCPT first")
                } else {
                    Step::Data
                }
            }
            Request::Rset => {
                self.reset_transaction();
                reply("250 2.0.0 Resetting")
            }
            Request::Noop { .. } => reply("250 2.0.0 OK"),
            Request::Quit => {
                // The mailbox's place is free once QUIT is read, before the reply.
                self.slot = None;
                Step::Close("221 2.0.0 Service closing transmission channel\r\n".to_owned())
            }
            Request::Vrfy { .. } => reply("252 2.1.5 Cannot VRFY user"),
            Request::Bdat { .. } => {
                reply("502 5.5.1 BDAT is not implemented by the sandbox; use DATA")
            }
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => reply("502 5.5.1 Command not implemented by the sandbox"),
        }
    }

    fn ehlo(&mut self, _host: &str) -> Step {
        self.greeted = true;
        self.reset_transaction();
        let mut lines = vec![
            format!("{HOSTNAME} Hello [{}]", self.peer),
            format!("SIZE {}", self.shared.max_message_size),
            "PIPELINING".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
        ];
        if self.tls {
            lines.push("AUTH XOAUTH2 OAUTHBEARER PLAIN LOGIN".to_owned());
        } else if self.mode == TlsMode::StartTls {
            lines.push("STARTTLS".to_owned());
        }
        let last = lines.len() - 1;
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(index, line)| format!("250{}{line}\r\n", if index == last { ' ' } else { '-' }))
            .collect();
        Step::Reply(text)
    }

    fn auth(&mut self, mechanism: u64, initial: &str) -> Step {
        if !self.greeted {
            return reply("503 5.5.1 Send EHLO first");
        }
        if !self.tls {
            return reply("530 5.7.0 Must issue a STARTTLS command first");
        }
        if self.authenticated.is_some() {
            return reply("503 5.5.1 Already authenticated");
        }
        if self.mail_from.is_some() {
            return reply("503 5.5.1 AUTH is not allowed during a mail transaction");
        }
        let sasl = match mechanism {
            smtp_proto::AUTH_XOAUTH2 => Sasl::Xoauth2,
            smtp_proto::AUTH_OAUTHBEARER => Sasl::OAuthBearer,
            smtp_proto::AUTH_PLAIN => Sasl::Plain,
            smtp_proto::AUTH_LOGIN => Sasl::LoginUser,
            _ => return reply("504 5.7.4 Unrecognized authentication type"),
        };
        match Some(initial.trim()).filter(|initial| !initial.is_empty()) {
            Some(initial) => {
                self.sasl = sasl;
                self.sasl_response(initial)
            }
            None => {
                let prompt = match sasl {
                    Sasl::LoginUser => "334 VXNlcm5hbWU6",
                    _ => "334 ",
                };
                self.sasl = sasl;
                reply(prompt)
            }
        }
    }

    fn sasl_response(&mut self, line: &str) -> Step {
        let sasl = std::mem::replace(&mut self.sasl, Sasl::None);
        if line.trim() == "*" {
            return reply("501 5.7.0 Authentication cancelled");
        }
        if let Sasl::Failed { reason } = sasl {
            return reply(&format!("535 5.7.3 Authentication unsuccessful [{reason}]"));
        }
        let Some(data) = decode_base64(line) else {
            return reply("501 5.5.2 Cannot decode the base64 response");
        };
        match sasl {
            Sasl::Xoauth2 => match parse_xoauth2(&data) {
                Some((user, token)) => self.bearer(&user, &token, false),
                None => reply("501 5.5.124 Invalid XOAUTH2 auth data"),
            },
            Sasl::OAuthBearer => match parse_oauthbearer(&data) {
                Some((user, token)) => self.bearer(&user, &token, true),
                None => reply("501 5.5.2 Invalid OAUTHBEARER auth data"),
            },
            Sasl::Plain => match parse_plain(&data) {
                Some((login, password)) => self.password(&login, &password),
                None => reply("501 5.5.2 Invalid PLAIN auth data"),
            },
            Sasl::LoginUser => {
                let login = String::from_utf8_lossy(&data).into_owned();
                self.sasl = Sasl::LoginPassword { login };
                reply("334 UGFzc3dvcmQ6")
            }
            Sasl::LoginPassword { login } => {
                let password = String::from_utf8_lossy(&data).into_owned();
                self.password(&login, &password)
            }
            Sasl::None | Sasl::Failed { .. } => reply("503 5.5.1 Bad sequence of commands"),
        }
    }

    fn password(&mut self, login: &str, password: &str) -> Step {
        if self.shared.passwords.check(login, password) {
            self.authenticated = Some(Authenticated::Any(login.to_owned()));
            reply("235 2.7.0 Authentication successful")
        } else {
            reply("535 5.7.3 Authentication unsuccessful")
        }
    }

    /// Checks a bearer token. On failure Microsoft style (XOAUTH2 with a Microsoft token,
    /// or an unknown one on the STARTTLS port) answers `535 5.7.3` at once; otherwise the
    /// base64 JSON challenge goes first (the client answers with an empty line or `\x01`,
    /// then gets `535 5.7.3`).
    fn bearer(&mut self, user: &str, token: &str, oauthbearer: bool) -> Step {
        let check = self.shared.authority.check_access_token(token);
        let style = match &check {
            TokenCheck::Valid(info) | TokenCheck::Expired(info) | TokenCheck::Revoked(info) => {
                info.style
            }
            TokenCheck::Unknown => match self.mode {
                TlsMode::StartTls => Style::Microsoft,
                TlsMode::Implicit => Style::Google,
            },
        };
        let failure = match check {
            TokenCheck::Valid(info) => {
                let delegated =
                    info.has_any_scope(&[MICROSOFT_SMTP_SCOPE, "https://mail.google.com/"]);
                // An app's token for Exchange Online: `SMTP.SendAsApp`, Exchange Online's
                // `.default` audience (a Graph token is another resource's).
                let app_only = info.address.is_none()
                    && info.has_any_scope(&[MICROSOFT_APP_SCOPE])
                    && info.has_role(SMTP_SEND_AS_APP_ROLE);
                let authenticated = match &info.address {
                    // A shared mailbox: the person's token with the mailbox in `user=`
                    // (Exchange's "Authenticate an IMAP, POP or SMTP connection using
                    // OAuth"), when the person has rights on it.
                    Some(address)
                        if delegated && self.shared.authority.may_send_as(address, user) =>
                    {
                        Ok(Authenticated::Mailbox(user.to_owned()))
                    }
                    // An app's token authenticates as the mailbox in `user=` when its
                    // service principal has FullAccess on it (same page, "SMTP AUTH" for
                    // client credentials); it then sends as that mailbox only.
                    None if app_only
                        && self
                            .shared
                            .authority
                            .app_may_use_smtp_mailbox(&info.client_id, user) =>
                    {
                        Ok(Authenticated::Mailbox(user.to_owned()))
                    }
                    None if app_only => {
                        Err("the app's service principal has no FullAccess on the mailbox")
                    }
                    None => Err("the app-only token is not for Exchange Online (SMTP.SendAsApp)"),
                    Some(_) if delegated => Err("the token was issued for another mailbox"),
                    _ => Err("the token lacks the SMTP.Send scope"),
                };
                match authenticated {
                    Ok(authenticated) => return self.authenticate(authenticated, info.style),
                    Err(failure) => failure,
                }
            }
            TokenCheck::Expired(_) => "the access token has expired",
            TokenCheck::Revoked(_) => "the access token was revoked",
            TokenCheck::Unknown => "the access token is not known",
        };
        if style == Style::Microsoft && !oauthbearer {
            return reply(&format!(
                "535 5.7.3 Authentication unsuccessful [{failure}]"
            ));
        }
        let challenge = if oauthbearer {
            serde_json::json!({"status": "invalid_token", "schemes": "bearer", "scope": MICROSOFT_SMTP_SCOPE})
        } else {
            serde_json::json!({"status": "401", "schemes": "bearer", "scope": MICROSOFT_SMTP_SCOPE})
        };
        self.sasl = Sasl::Failed {
            reason: failure.to_owned(),
        };
        reply(&format!("334 {}", STANDARD.encode(challenge.to_string())))
    }

    /// Takes an accepted token's session, within Exchange's three per mailbox for the
    /// Microsoft style.
    fn authenticate(&mut self, authenticated: Authenticated, style: Style) -> Step {
        if style == Style::Microsoft {
            match self.shared.sessions.enter(authenticated.name()) {
                Some(slot) => self.slot = Some(slot),
                None => return reply(&too_many_connections()),
            }
        }
        self.authenticated = Some(authenticated);
        reply("235 2.7.0 Authentication successful")
    }

    fn mail(&mut self, address: &str, size: usize) -> Step {
        if !self.greeted {
            return reply("503 5.5.1 Send EHLO first");
        }
        let Some(authenticated) = &self.authenticated else {
            return reply(
                "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM",
            );
        };
        if self.mail_from.is_some() {
            return reply("503 5.5.1 Sender already specified");
        }
        // `SIZE=` (0 when not given).
        if size > self.shared.max_message_size {
            return reply("552 5.3.4 Message size exceeds fixed maximum message size");
        }
        if let Authenticated::Mailbox(mailbox) = authenticated {
            if !address.eq_ignore_ascii_case(mailbox) {
                return reply(
                    "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
                );
            }
        }
        self.mail_from = Some(address.to_owned());
        reply("250 2.1.0 Sender OK")
    }

    fn rcpt(&mut self, address: &str) -> Step {
        if self.mail_from.is_none() {
            return reply("503 5.5.1 Bad sequence of commands: MAIL first");
        }
        if !address.contains('@') {
            return reply("501 5.1.3 Invalid address");
        }
        if self.recipients.len() >= MAX_RECIPIENTS {
            return reply("452 4.5.3 Too many recipients");
        }
        self.recipients.push(address.to_owned());
        reply("250 2.1.5 Recipient OK")
    }

    /// After DATA: stores the message (or reports it too large) and ends the transaction.
    pub(crate) async fn data_received(&mut self, body: DataBody) -> String {
        let from = self.mail_from.take();
        let recipients = std::mem::take(&mut self.recipients);
        let bytes = match body {
            DataBody::TooLarge => {
                return "552 5.3.4 Message size exceeds fixed maximum message size\r\n".to_owned();
            }
            DataBody::Complete(bytes) => bytes,
        };
        // Exchange counts the recipients of a Microsoft-style session's mailbox; past the
        // day's limit the message is refused after its data.
        let microsoft_session = self.slot.is_some();
        if let Some(authenticated) = self.authenticated.as_ref().filter(|_| microsoft_session) {
            if !self
                .shared
                .recipients
                .take(authenticated.name(), recipients.len())
            {
                return "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException\r\n"
                    .to_owned();
            }
        }
        let arrival = Arrival {
            received_by: match self.mode {
                TlsMode::StartTls => ReceivedBy::SmtpStartTls,
                TlsMode::Implicit => ReceivedBy::SmtpImplicitTls,
            },
            authenticated_as: self
                .authenticated
                .as_ref()
                .map(|a| a.name().to_owned())
                .unwrap_or_default(),
            envelope_from: from,
            recipients,
            gmail_id: None,
            graph_request_id: None,
        };
        match self.shared.mailbox.store(arrival, &bytes).await {
            Ok(stored) => format!(
                "250 2.6.0 <{}> [Sequence={}] Queued mail for delivery\r\n",
                stored.message_id.as_deref().unwrap_or("no-message-id"),
                stored.sequence
            ),
            Err(error) => {
                tracing::error!(%error, "the sandbox cannot store a message");
                "451 4.3.0 The sandbox cannot store the message\r\n".to_owned()
            }
        }
    }
}

/// A message read after DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataBody {
    Complete(Vec<u8>),
    TooLarge,
}

/// Reads the message after `354`: lines until `CRLF.CRLF`, dot-unstuffed (RFC 5321
/// 4.5.2), stopping to keep bytes past `max` (the rest is still read, then refused).
pub(crate) async fn read_data<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<DataBody> {
    let mut body = Vec::new();
    let mut too_large = false;
    let mut piece = Vec::new();
    // A line starts after LF; the terminator counts only after CRLF.
    let mut at_line_start = true;
    let mut after_crlf = true;
    let mut ended_with_cr = false;
    loop {
        piece.clear();
        let read = (&mut *reader)
            .take(MAX_COMMAND_LINE as u64)
            .read_until(b'\n', &mut piece)
            .await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection during DATA",
            ));
        }
        if at_line_start && after_crlf && piece == b".\r\n" {
            break;
        }
        let content = if at_line_start && piece.first() == Some(&b'.') {
            &piece[1..]
        } else {
            &piece[..]
        };
        if !too_large {
            if body.len() + content.len() > max {
                too_large = true;
                body = Vec::new();
            } else {
                body.extend_from_slice(content);
            }
        }
        let ends_line = piece.last() == Some(&b'\n');
        // A CR at the end of one piece and the LF starting the next still make a CRLF.
        after_crlf = piece.ends_with(b"\r\n") || (piece == b"\n" && ended_with_cr);
        ended_with_cr = piece.last() == Some(&b'\r');
        at_line_start = ends_line;
    }
    Ok(if too_large {
        DataBody::TooLarge
    } else {
        DataBody::Complete(body)
    })
}

/// A command line without its line end; `None` when it was too long (the rest of the line
/// is read and dropped).
async fn read_command<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
) -> io::Result<Option<Option<String>>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_COMMAND_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        // Too long: skip to the end of the line.
        loop {
            let mut rest = Vec::new();
            let read = (&mut *reader)
                .take(MAX_COMMAND_LINE as u64)
                .read_until(b'\n', &mut rest)
                .await?;
            if read == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
        return Ok(Some(None));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Some(String::from_utf8_lossy(&line).into_owned())))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Accepts connections until the task is aborted; the connections are aborted with it
/// (they live in its `JoinSet`).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, mode: TlsMode) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            if let Err(error) = connection(stream, peer, shared, mode).await {
                tracing::debug!(%error, %peer, "an SMTP connection ended with an error");
            }
        });
    }
}

async fn with_timeout<T>(future: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(IDLE_TIMEOUT, future)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client was idle too long"))?
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mode: TlsMode,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let acceptor = shared.acceptor.clone();
    let stream: Box<dyn Stream> = match mode {
        TlsMode::StartTls => Box::new(stream),
        TlsMode::Implicit => Box::new(with_timeout(acceptor.accept(stream)).await?),
    };
    let mut reader = BufReader::new(stream);
    let mut session = Session::new(shared.clone(), mode, peer);
    reader.write_all(session.greeting().as_bytes()).await?;
    loop {
        let Some(line) = with_timeout(read_command(&mut reader)).await? else {
            return Ok(());
        };
        let step = match line {
            Some(line) => session.line(&line),
            None => Step::Reply("500 5.5.6 Line too long\r\n".to_owned()),
        };
        match step {
            Step::Reply(text) => reader.write_all(text.as_bytes()).await?,
            Step::Close(text) => {
                reader.write_all(text.as_bytes()).await?;
                reader.shutdown().await?;
                return Ok(());
            }
            Step::StartTls => {
                reader.write_all(b"220 2.0.0 SMTP server ready\r\n").await?;
                reader.flush().await?;
                // Whatever the client sent after STARTTLS, before the handshake, is
                // dropped with the buffer (no plaintext command injection).
                let plain = reader.into_inner();
                let tls = with_timeout(acceptor.accept(plain)).await?;
                reader = BufReader::new(Box::new(tls) as Box<dyn Stream>);
                session.tls_started();
            }
            Step::Data => {
                reader
                    .write_all(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n")
                    .await?;
                let body = with_timeout(read_data(&mut reader, shared.max_message_size)).await?;
                let answer = session.data_received(body).await;
                reader.write_all(answer.as_bytes()).await?;
            }
        }
        reader.flush().await?;
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_xoauth2(data: &str, expected: Option<(&str, &str)>) {
        assert_eq!(
            parse_xoauth2(data.as_bytes()),
            expected.map(|(u, t)| (u.to_owned(), t.to_owned()))
        );
    }

    #[test]
    fn xoauth2_initial_responses() {
        check_xoauth2("user=a@b\x01auth=Bearer tok\x01\x01", Some(("a@b", "tok")));
        check_xoauth2("user=a@b\x01auth=bearer tok\x01\x01", Some(("a@b", "tok")));
        check_xoauth2("user=a@b\x01auth=Bearer tok\x01", None);
        check_xoauth2("user=a@b\x01auth=Basic tok\x01\x01", None);
        check_xoauth2("auth=Bearer tok\x01\x01", None);
        check_xoauth2("user=a@b\x01\x01", None);
    }

    #[test]
    fn oauthbearer_initial_responses() {
        let parsed =
            parse_oauthbearer(b"n,a=a@b,\x01host=127.0.0.1\x01port=587\x01auth=Bearer tok\x01\x01");
        assert_eq!(parsed, Some(("a@b".to_owned(), "tok".to_owned())));
        assert_eq!(
            parse_oauthbearer(b"n,a=x=2Cy@b,\x01auth=Bearer t\x01\x01"),
            Some(("x,y@b".to_owned(), "t".to_owned()))
        );
        assert_eq!(
            parse_oauthbearer(b"p,a=a@b,\x01auth=Bearer t\x01\x01"),
            None
        );
        assert_eq!(parse_oauthbearer(b"n,,\x01auth=Bearer t\x01\x01"), None);
    }

    #[test]
    fn plain_responses() {
        assert_eq!(
            parse_plain(b"\0relay\0secret"),
            Some(("relay".to_owned(), "secret".to_owned()))
        );
        assert_eq!(
            parse_plain(b"admin\0relay\0secret"),
            Some(("relay".to_owned(), "secret".to_owned()))
        );
        assert_eq!(parse_plain(b"relay\0secret"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }

    #[test]
    fn parser_refusals_get_smtp_replies() {
        let refused =
            |line: &str| match Request::parse(&mut format!("{line}\r\n").as_bytes().iter()) {
                Ok(request) => panic!("{line}: parsed as {request:?}"),
                Err(error) => refusal(error),
            };
        assert_eq!(refused("FOO"), reply("500 5.3.3 Unrecognized command"));
        assert_eq!(
            refused("RCPT TO:<nobody>"),
            reply("501 5.1.3 Invalid address")
        );
        assert_eq!(refused("EHLO"), reply("501 5.5.4 Syntax: EHLO domain"));
    }

    #[test]
    fn a_64_kib_auth_line_parses_whole() {
        let initial = "A".repeat(64 * 1024);
        let line = format!("AUTH XOAUTH2 {initial}\r\n");
        match Request::parse(&mut line.as_bytes().iter()) {
            Ok(Request::Auth {
                mechanism,
                initial_response,
            }) => {
                assert_eq!(mechanism, smtp_proto::AUTH_XOAUTH2);
                assert_eq!(initial_response.len(), initial.len());
            }
            other => panic!("{other:?}"),
        }
    }

    async fn data(input: &[u8], max: usize) -> io::Result<DataBody> {
        let mut reader = BufReader::new(input);
        read_data(&mut reader, max).await
    }

    #[tokio::test]
    async fn data_is_dot_unstuffed_and_ends_only_at_crlf_dot_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..leading dot\r\n.\r\n", b".leading dot\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            // A bare LF before the dot does not end the message (no smuggling).
            (b"a\n.\r\nb\r\n.\r\n", b"a\n\r\nb\r\n"),
            // `.\n` is not the terminator either.
            (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n"),
            (b".\r\n", b""),
        ];
        for (input, expected) in cases {
            assert_eq!(
                data(input, 1000).await.unwrap(),
                DataBody::Complete(expected.to_vec()),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[tokio::test]
    async fn data_over_the_limit_is_read_to_the_end_and_refused() {
        let mut reader = BufReader::new(&b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n"[..]);
        assert_eq!(
            read_data(&mut reader, 15).await.unwrap(),
            DataBody::TooLarge
        );
        let mut rest = String::new();
        reader.read_line(&mut rest).await.unwrap();
        assert_eq!(rest, "NOOP\r\n");
        let error = data(b"a\r\nno end", 100).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn long_data_lines_are_kept_whole() {
        let line = vec![b'x'; MAX_COMMAND_LINE * 2 + 7];
        let mut input = line.clone();
        input.extend_from_slice(b"\r\n.\r\n");
        let mut expected = line;
        expected.extend_from_slice(b"\r\n");
        assert_eq!(
            data(&input, usize::MAX).await.unwrap(),
            DataBody::Complete(expected)
        );
    }

    #[tokio::test]
    async fn command_lines() {
        let long = format!("NOOP {}\r\nQUIT\r\n", "x".repeat(MAX_COMMAND_LINE * 2));
        let mut reader = BufReader::new(long.as_bytes());
        assert_eq!(read_command(&mut reader).await.unwrap(), Some(None));
        assert_eq!(
            read_command(&mut reader).await.unwrap(),
            Some(Some("QUIT".to_owned()))
        );
        assert_eq!(read_command(&mut reader).await.unwrap(), None);
        let mut reader = BufReader::new(&b"EHLO x\n"[..]);
        assert_eq!(
            read_command(&mut reader).await.unwrap(),
            Some(Some("EHLO x".to_owned()))
        );
    }
}
