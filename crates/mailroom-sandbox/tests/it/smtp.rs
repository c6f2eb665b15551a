//! The SMTP server: mailroom's SMTP transport over STARTTLS and implicit TLS with XOAUTH2,
//! PLAIN and LOGIN, the stored `.eml` bytes, and pinned raw transcripts of the line
//! protocol (the 334 challenge, sequencing, STARTTLS without pipelined leftovers, DATA).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailroom_model::{
    CredentialSecret, Credentials, MessageTransport, Provider, Secret, ServerSettings, TlsStartup,
};
use mailroom_sandbox::{ReceivedBy, Sandbox};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig, xoauth2_initial_response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::*;

fn settings(
    sandbox: &Sandbox,
    provider: Provider,
    startup: TlsStartup,
    user: &str,
) -> ServerSettings {
    let mut settings = ServerSettings::preset(provider);
    settings.host = "127.0.0.1".to_owned();
    settings.port = match startup {
        TlsStartup::Implicit => sandbox.endpoints().smtp_implicit_tls_port,
        _ => sandbox.endpoints().smtp_starttls_port,
    };
    settings.tls = true;
    settings.tls_startup = startup;
    settings.timeout_ms = 20_000;
    settings.smtp_user = user.to_owned();
    settings
}

fn transport(sandbox: &Sandbox, settings: ServerSettings) -> SmtpTransport {
    SmtpTransport::new(
        SmtpTransportConfig::new(settings)
            .with_extra_root_pem(sandbox.ca_pem().as_bytes().to_vec()),
    )
    .expect("the transport builds")
}

fn bearer(user: &str, token: &str) -> Credentials {
    Credentials {
        user: user.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(token)),
        version: 1,
    }
}

#[tokio::test]
async fn mailroom_sends_over_starttls_with_xoauth2_and_the_eml_holds_the_bytes() {
    let sandbox = sandbox().await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let transport = transport(
        &sandbox,
        settings(
            &sandbox,
            Provider::Microsoft,
            TlsStartup::StartTls,
            MICROSOFT_USER,
        ),
    );
    let message = message(MICROSOFT_USER, "buyer@example.com", binary(300_000));
    let delivery = transport
        .send(
            &message,
            &bearer(MICROSOFT_USER, tokens["access_token"].as_str().unwrap()),
        )
        .await
        .expect("the message is accepted");
    assert!(delivery.reply.contains("2.6.0"), "{}", delivery.reply);

    let stored = sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    assert_eq!(std::fs::read(&stored.path).unwrap(), message.bytes.to_vec());
    assert_eq!(stored.received_by, ReceivedBy::SmtpStartTls);
    assert_eq!(stored.authenticated_as, MICROSOFT_USER);
    assert_eq!(stored.envelope_from.as_deref(), Some(MICROSOFT_USER));
    assert_eq!(stored.recipients, vec!["buyer@example.com".to_owned()]);
    assert!(stored.path.starts_with(sandbox.dir().join("mail")));
    let message_id = stored.message_id.clone().expect("lettre adds a Message-ID");
    assert_eq!(
        sandbox
            .mailbox()
            .find_by_message_id(&format!("<{message_id}>")),
        Some(stored.clone())
    );
}

#[tokio::test]
async fn mailroom_sends_over_implicit_tls() {
    let sandbox = sandbox().await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let transport = transport(
        &sandbox,
        settings(
            &sandbox,
            Provider::Microsoft,
            TlsStartup::Implicit,
            MICROSOFT_USER,
        ),
    );
    let message = message(MICROSOFT_USER, "buyer@example.com", binary(1000));
    transport
        .send(
            &message,
            &bearer(MICROSOFT_USER, tokens["access_token"].as_str().unwrap()),
        )
        .await
        .expect("the message is accepted");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::SmtpImplicitTls);
    assert_eq!(std::fs::read(&stored.path).unwrap(), message.bytes.to_vec());
}

#[tokio::test]
async fn an_expired_token_is_an_authentication_rejection_for_mailroom() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::ZERO);
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let transport = transport(
        &sandbox,
        settings(
            &sandbox,
            Provider::Microsoft,
            TlsStartup::StartTls,
            MICROSOFT_USER,
        ),
    );
    let error = transport
        .send(
            &message(MICROSOFT_USER, "buyer@example.com", Vec::new()),
            &bearer(MICROSOFT_USER, tokens["access_token"].as_str().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(error.is_auth_rejected(), "{error}");
    assert!(sandbox.mailbox().messages().is_empty());
}

#[tokio::test]
async fn an_app_only_token_sends_as_a_mailbox_it_has_full_access_on() {
    let sandbox = sandbox().await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MICROSOFT_CLIENT),
            ("client_secret", "s3cret"),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let shared = "shared@contoso.example";
    let transport = transport(
        &sandbox,
        settings(&sandbox, Provider::Microsoft, TlsStartup::StartTls, shared),
    );
    let credentials = bearer(shared, body["access_token"].as_str().unwrap());
    let message = message(shared, "buyer@example.com", Vec::new());
    // Without FullAccess for the app's service principal: refused at AUTH.
    let error = transport.send(&message, &credentials).await.unwrap_err();
    assert!(error.is_auth_rejected(), "{error}");
    sandbox
        .authority()
        .grant_app_smtp_mailbox(MICROSOFT_CLIENT, shared);
    transport
        .send(&message, &credentials)
        .await
        .expect("an app-only token sends for a mailbox it has FullAccess on");
    assert_eq!(sandbox.mailbox().messages()[0].authenticated_as, shared);
}

#[tokio::test]
async fn password_accounts_authenticate_and_wrong_passwords_are_refused() {
    let sandbox = sandbox_with(|config| {
        config.password_accounts = vec![("relay".to_owned(), "correct horse".to_owned())];
    })
    .await;
    let mut settings = settings(&sandbox, Provider::None, TlsStartup::StartTls, "relay");
    settings.password = Some(Secret::new("correct horse"));
    let transport = transport(&sandbox, settings.clone());
    let password = |text: &str| Credentials {
        user: "relay".to_owned(),
        secret: CredentialSecret::Password(Secret::new(text)),
        version: 1,
    };
    let message = message("anyone@example.net", "buyer@example.com", Vec::new());
    transport
        .send(&message, &password("correct horse"))
        .await
        .expect("the password is accepted");
    assert_eq!(sandbox.mailbox().messages()[0].authenticated_as, "relay");

    settings.password = Some(Secret::new("wrong"));
    let error = self::transport(&sandbox, settings)
        .send(&message, &password("wrong"))
        .await
        .unwrap_err();
    assert!(error.is_auth_rejected(), "{error}");
}

// ---- Raw protocol ---------------------------------------------------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw SMTP client for transcripts.
pub(crate) struct Raw {
    reader: BufReader<Box<dyn Stream>>,
}

fn connector(sandbox: &Sandbox) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(sandbox.ca_pem().as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

impl Raw {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Self {
            reader: BufReader::new(Box::new(stream)),
        }
    }

    pub(crate) async fn connect_implicit(sandbox: &Sandbox) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", sandbox.endpoints().smtp_implicit_tls_port))
            .await
            .unwrap();
        let tls = connector(sandbox)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
            .await
            .unwrap();
        Self {
            reader: BufReader::new(Box::new(tls)),
        }
    }

    /// One reply, all its lines.
    pub(crate) async fn reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).await.unwrap() > 0,
                "closed after {text:?}"
            );
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return text;
            }
        }
    }

    pub(crate) async fn send(&mut self, bytes: &str) {
        self.reader.write_all(bytes.as_bytes()).await.unwrap();
        self.reader.flush().await.unwrap();
    }

    pub(crate) async fn command(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Sends `STARTTLS` (plus `extra`, pipelined in the same write), then shakes hands.
    async fn starttls(mut self, sandbox: &Sandbox, extra: &str) -> Self {
        self.send(&format!("STARTTLS\r\n{extra}")).await;
        assert_eq!(self.reply().await, "220 2.0.0 SMTP server ready\r\n");
        let stream = self.reader.into_inner();
        let tls = connector(sandbox)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
            .await
            .unwrap();
        Self {
            reader: BufReader::new(Box::new(tls)),
        }
    }
}

/// Sends each line and checks the reply.
async fn check(raw: &mut Raw, exchange: &[(&str, &str)]) {
    for (line, expected) in exchange {
        let reply = raw.command(line).await;
        assert_eq!(reply, *expected, "after {line:?}");
    }
}

const EHLO_AFTER_TLS: &str = "250-smtp.sandbox.mailroom.localhost Hello [127.0.0.1]\r\n250-SIZE 36700160\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH XOAUTH2 OAUTHBEARER PLAIN LOGIN\r\n";

#[tokio::test]
async fn the_line_protocol_before_and_after_starttls() {
    let sandbox = sandbox().await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let token = tokens["access_token"].as_str().unwrap();
    let mut raw = Raw::connect(sandbox.endpoints().smtp_starttls_port).await;
    assert_eq!(
        raw.reply().await,
        "220 smtp.sandbox.mailroom.localhost mailroom sandbox ESMTP service ready\r\n"
    );
    check(
        &mut raw,
        &[
            ("MAIL FROM:<sa@contoso.example>", "503 5.5.1 Send EHLO first\r\n"),
            (
                "EHLO client.example",
                "250-smtp.sandbox.mailroom.localhost Hello [127.0.0.1]\r\n250-SIZE 36700160\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n",
            ),
            ("AUTH PLAIN AHJlbGF5AHB3", "530 5.7.0 Must issue a STARTTLS command first\r\n"),
            (
                "MAIL FROM:<sa@contoso.example>",
                "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM\r\n",
            ),
            ("FOO", "500 5.3.3 Unrecognized command\r\n"),
        ],
    )
    .await;
    // A command pipelined behind STARTTLS in plaintext is dropped, never answered.
    let mut raw = raw.starttls(&sandbox, "NOOP\r\n").await;
    let xoauth2 = STANDARD.encode(xoauth2_initial_response(MICROSOFT_USER, token));
    check(
        &mut raw,
        &[
            ("EHLO client.example", EHLO_AFTER_TLS),
            ("STARTTLS", "503 5.5.1 TLS is already active\r\n"),
            (
                "AUTH CRAM-MD5",
                "504 5.7.4 Unrecognized authentication type\r\n",
            ),
            (
                &format!("AUTH XOAUTH2 {xoauth2}"),
                "235 2.7.0 Authentication successful\r\n",
            ),
            (
                &format!("AUTH XOAUTH2 {xoauth2}"),
                "503 5.5.1 Already authenticated\r\n",
            ),
            ("DATA", "503 5.5.1 Bad sequence of commands: MAIL first\r\n"),
            (
                "MAIL FROM:<boss@contoso.example>",
                "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n",
            ),
            (
                "MAIL FROM:<sa@contoso.example> SIZE=99999999999",
                "552 5.3.4 Message size exceeds fixed maximum message size\r\n",
            ),
            (
                "MAIL FROM:<SA@contoso.example> SIZE=100 BODY=8BITMIME",
                "250 2.1.0 Sender OK\r\n",
            ),
            ("DATA", "503 5.5.1 Bad sequence of commands: RCPT first\r\n"),
            ("RCPT TO:<nobody>", "501 5.1.3 Invalid address\r\n"),
            ("RCPT TO:<buyer@example.com>", "250 2.1.5 Recipient OK\r\n"),
            ("DATA", "354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
        ],
    )
    .await;
    raw.send("Message-ID: <m1@client.example>\r\nSubject: dots\r\n\r\n..leading dot\r\n.\r\n")
        .await;
    assert_eq!(
        raw.reply().await,
        "250 2.6.0 <m1@client.example> [Sequence=1] Queued mail for delivery\r\n"
    );
    check(
        &mut raw,
        &[
            ("RSET", "250 2.0.0 Resetting\r\n"),
            ("NOOP", "250 2.0.0 OK\r\n"),
            ("VRFY sa", "252 2.1.5 Cannot VRFY user\r\n"),
            ("QUIT", "221 2.0.0 Service closing transmission channel\r\n"),
        ],
    )
    .await;
    let stored = sandbox
        .mailbox()
        .find_by_message_id("m1@client.example")
        .unwrap();
    assert_eq!(
        std::fs::read(&stored.path).unwrap(),
        b"Message-ID: <m1@client.example>\r\nSubject: dots\r\n\r\n.leading dot\r\n"
    );
}

fn challenge(reply: &str) -> serde_json::Value {
    let encoded = reply
        .strip_prefix("334 ")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("not a 334 challenge: {reply:?}"));
    serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap()
}

/// Exchange answers a token it refuses over XOAUTH2 with `535 5.7.3 Authentication
/// unsuccessful [...]` at once, without Google's `334` JSON challenge.
#[tokio::test]
async fn a_rejected_microsoft_token_gets_535_at_once_like_exchange() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::ZERO);
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let expired = tokens["access_token"].as_str().unwrap();
    let mut raw = Raw::connect_implicit(&sandbox).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;

    let line = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(MICROSOFT_USER, expired))
    );
    check(
        &mut raw,
        &[
            (
                line.as_str(),
                "535 5.7.3 Authentication unsuccessful [the access token has expired]\r\n",
            ),
            // The exchange is over: the next line is a command again.
            ("NOOP", "250 2.0.0 OK\r\n"),
            (
                "AUTH XOAUTH2 bm90IHhvYXV0aDI=",
                "501 5.5.124 Invalid XOAUTH2 auth data\r\n",
            ),
        ],
    )
    .await;

    // After a prompt without an initial response, the same.
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::from_secs(3600));
    let other =
        crate::support::tokens(&sandbox, Provider::Microsoft, "other@contoso.example").await;
    let answer = STANDARD.encode(xoauth2_initial_response(
        MICROSOFT_USER,
        other["access_token"].as_str().unwrap(),
    ));
    check(
        &mut raw,
        &[
            ("AUTH XOAUTH2", "334 \r\n"),
            (
                answer.as_str(),
                "535 5.7.3 Authentication unsuccessful [the token was issued for another mailbox]\r\n",
            ),
        ],
    )
    .await;

    // A token it never issued, on the smtp.office365.com:587 look-alike (STARTTLS).
    let mut raw = Raw::connect(sandbox.endpoints().smtp_starttls_port).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;
    let mut raw = raw.starttls(&sandbox, "").await;
    raw.command("EHLO client.example").await;
    let line = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(MICROSOFT_USER, "never-issued"))
    );
    check(
        &mut raw,
        &[(
            line.as_str(),
            "535 5.7.3 Authentication unsuccessful [the access token is not known]\r\n",
        )],
    )
    .await;
}

/// Google's SMTP (and RFC 7628's OAUTHBEARER) send the base64 JSON challenge first; the
/// client's answer gets the `535`.
#[tokio::test]
async fn a_rejected_google_token_gets_the_json_challenge_then_535() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::ZERO);
    let tokens = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
    let expired = tokens["access_token"].as_str().unwrap();
    let mut raw = Raw::connect_implicit(&sandbox).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;

    let reply = raw
        .command(&format!(
            "AUTH XOAUTH2 {}",
            STANDARD.encode(xoauth2_initial_response(GOOGLE_USER, expired))
        ))
        .await;
    assert_eq!(
        challenge(&reply),
        json!({"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"})
    );
    check(
        &mut raw,
        &[(
            "",
            "535 5.7.3 Authentication unsuccessful [the access token has expired]\r\n",
        )],
    )
    .await;

    // OAUTHBEARER (RFC 7628): the client answers the challenge with a single 0x01.
    let initial = STANDARD.encode(format!(
        "n,a={MICROSOFT_USER},\x01host=127.0.0.1\x01port=465\x01auth=Bearer never-issued\x01\x01"
    ));
    let reply = raw.command(&format!("AUTH OAUTHBEARER {initial}")).await;
    assert_eq!(challenge(&reply)["status"], "invalid_token");
    check(
        &mut raw,
        &[(
            "AQ==",
            "535 5.7.3 Authentication unsuccessful [the access token is not known]\r\n",
        )],
    )
    .await;

    // A token it never issued, on the smtp.gmail.com:465 look-alike, after a prompt.
    check(&mut raw, &[("AUTH XOAUTH2", "334 \r\n")]).await;
    let reply = raw
        .command(&STANDARD.encode(xoauth2_initial_response(GOOGLE_USER, "never-issued")))
        .await;
    assert_eq!(challenge(&reply)["status"], "401");
    check(
        &mut raw,
        &[(
            "",
            "535 5.7.3 Authentication unsuccessful [the access token is not known]\r\n",
        )],
    )
    .await;
}

/// Exchange Online lets three connections of one mailbox send at once; a fourth gets `432
/// 4.3.2` ("Changes in message store and throttling for concurrent connections",
/// MicrosoftDocs/SupportArticles-docs
/// `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`; the reply as
/// Exchange sends it, with the aka.ms link and its host).
#[tokio::test]
async fn a_fourth_session_of_a_microsoft_mailbox_gets_432_4_3_2() {
    let sandbox = sandbox().await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let token = tokens["access_token"].as_str().unwrap();
    let auth = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(MICROSOFT_USER, token))
    );
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect_implicit(&sandbox).await;
        raw.reply().await;
        raw.command("EHLO client.example").await;
        check(
            &mut raw,
            &[(auth.as_str(), "235 2.7.0 Authentication successful\r\n")],
        )
        .await;
        sessions.push(raw);
    }
    let mut fourth = Raw::connect_implicit(&sandbox).await;
    fourth.reply().await;
    fourth.command("EHLO client.example").await;
    check(
        &mut fourth,
        &[
            (
                auth.as_str(),
                "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=smtp.sandbox.mailroom.localhost]\r\n",
            ),
            // Not authenticated.
            (
                &format!("MAIL FROM:<{MICROSOFT_USER}>"),
                "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM\r\n",
            ),
        ],
    )
    .await;
    // Another mailbox has its own three.
    let other =
        crate::support::tokens(&sandbox, Provider::Microsoft, "other@contoso.example").await;
    let other_auth = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(
            "other@contoso.example",
            other["access_token"].as_str().unwrap()
        ))
    );
    let mut raw = Raw::connect_implicit(&sandbox).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;
    check(
        &mut raw,
        &[(
            other_auth.as_str(),
            "235 2.7.0 Authentication successful\r\n",
        )],
    )
    .await;

    // A session that ends gives its place back (once QUIT is read).
    let mut first = sessions.remove(0);
    check(
        &mut first,
        &[("QUIT", "221 2.0.0 Service closing transmission channel\r\n")],
    )
    .await;
    let mut again = Raw::connect_implicit(&sandbox).await;
    again.reply().await;
    again.command("EHLO client.example").await;
    let reply = again.command(&auth).await;
    assert_eq!(reply, "235 2.7.0 Authentication successful\r\n");
}

/// mailroom's SMTP transport against the limit: a pool of four (one more than Exchange
/// allows) loses its fourth connection to `432 4.3.2` and sends every message on the
/// other three, none failed; the default Microsoft pool (three) never meets the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailroom_sends_everything_within_three_connections_per_mailbox() {
    let sandbox = sandbox().await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let credentials = bearer(MICROSOFT_USER, tokens["access_token"].as_str().unwrap());
    let settings = settings(
        &sandbox,
        Provider::Microsoft,
        TlsStartup::StartTls,
        MICROSOFT_USER,
    );
    assert_eq!(
        SmtpTransportConfig::new(settings.clone()).pool_size,
        3,
        "Microsoft's default pool"
    );
    let four = SmtpTransport::new(
        SmtpTransportConfig::new(settings)
            .with_extra_root_pem(sandbox.ca_pem().as_bytes().to_vec())
            .with_pool_size(4),
    )
    .unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for number in 0..8 {
        let transport = four.clone();
        let credentials = credentials.clone();
        sends.spawn(async move {
            let message = message(
                MICROSOFT_USER,
                &format!("buyer{number}@example.com"),
                Vec::new(),
            );
            transport.send(&message, &credentials).await
        });
    }
    while let Some(result) = sends.join_next().await {
        let delivery = result.unwrap().expect("sent, not failed on 432 4.3.2");
        assert!(delivery.reply.starts_with("250"), "{}", delivery.reply);
    }
    assert_eq!(sandbox.mailbox().messages().len(), 8);
}

#[tokio::test]
async fn login_and_plain_exchanges() {
    let sandbox = sandbox().await;
    sandbox.add_password_account("relay", "pw");
    let mut raw = Raw::connect(sandbox.endpoints().smtp_starttls_port).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;
    let mut raw = raw.starttls(&sandbox, "").await;
    raw.command("EHLO client.example").await;
    let b64 = |text: &str| STANDARD.encode(text);
    check(
        &mut raw,
        &[
            ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
            (&b64("relay"), "334 UGFzc3dvcmQ6\r\n"),
            (&b64("wrong"), "535 5.7.3 Authentication unsuccessful\r\n"),
            ("AUTH PLAIN", "334 \r\n"),
            ("*", "501 5.7.0 Authentication cancelled\r\n"),
            (
                "AUTH PLAIN !!!",
                "501 5.5.2 Cannot decode the base64 response\r\n",
            ),
            (
                &format!("AUTH PLAIN {}", b64("\0relay\0pw")),
                "235 2.7.0 Authentication successful\r\n",
            ),
            // A password login may send as anyone.
            (
                "MAIL FROM:<boss@contoso.example>",
                "250 2.1.0 Sender OK\r\n",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn auth_lines_of_64_kib_and_more_are_read_whole() {
    // Microsoft access tokens exceed 4,096 characters; the line takes them whole.
    let sandbox = sandbox().await;
    let mut raw = Raw::connect_implicit(&sandbox).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;
    let long_token = "t".repeat(64 * 1024);
    let line = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(MICROSOFT_USER, &long_token))
    );
    assert!(line.len() > 64 * 1024);
    let reply = raw.command(&line).await;
    assert_eq!(challenge(&reply)["status"], "401");
    check(
        &mut raw,
        &[
            (
                "",
                "535 5.7.3 Authentication unsuccessful [the access token is not known]\r\n",
            ),
            ("NOOP", "250 2.0.0 OK\r\n"),
        ],
    )
    .await;
}

/// Exchange Online's recipient rate limit (10,000 recipients in any 24 hours; here 3): past
/// it a message gets `554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException`
/// ("Changes in message store and throttling for concurrent connections",
/// MicrosoftDocs/SupportArticles-docs
/// `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`), which mailroom
/// takes as a paused mailbox, not as a refused message.
#[tokio::test]
async fn past_the_daily_recipient_limit_the_mailbox_is_paused() {
    let sandbox = sandbox_with(|config| config.smtp_daily_recipient_limit = 3).await;
    let tokens = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let credentials = bearer(MICROSOFT_USER, tokens["access_token"].as_str().unwrap());
    let transport = transport(
        &sandbox,
        settings(
            &sandbox,
            Provider::Microsoft,
            TlsStartup::StartTls,
            MICROSOFT_USER,
        ),
    );
    for number in 0..3 {
        let message = message(
            MICROSOFT_USER,
            &format!("buyer{number}@example.com"),
            Vec::new(),
        );
        transport
            .send(&message, &credentials)
            .await
            .expect("within the quota");
    }

    let error = transport
        .send(
            &message(MICROSOFT_USER, "buyer3@example.com", Vec::new()),
            &credentials,
        )
        .await
        .expect_err("past the quota");

    assert!(error.is_mailbox_paused(), "{error}");
    assert_eq!(
        error.server_reply(),
        Some("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException")
    );
    assert_eq!(error.retry_after(), Some(mailroom_smtp::MAILBOX_PAUSE));
    assert_eq!(sandbox.mailbox().messages().len(), 3);
}
