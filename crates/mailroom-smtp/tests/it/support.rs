//! Settings, credentials and messages for the tests.

use bytes::Bytes;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mailroom_model::{
    Address, CredentialSecret, Credentials, Delivery, Envelope, MessageTransport, OutgoingMessage,
    Provider, Secret, ServerSettings, TlsStartup, TransportError,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};

use mailroom_testkit::scripted::ScriptedServer;
use mailroom_testkit::smtp::TestServer;

pub(crate) const USER: &str = "box@example.com";

/// Microsoft-like OAuth settings for the test server, TLS per `startup`.
pub(crate) fn oauth_settings(server: &TestServer, startup: TlsStartup) -> ServerSettings {
    let mut settings = ServerSettings::preset(Provider::Microsoft);
    settings.host = "127.0.0.1".to_owned();
    settings.port = server.port;
    settings.tls = true;
    settings.tls_startup = startup;
    settings.timeout_ms = 20_000;
    settings.smtp_user = USER.to_owned();
    settings
}

/// Password settings for the test server.
pub(crate) fn password_settings(
    server: &TestServer,
    login: &str,
    password: &str,
) -> ServerSettings {
    let mut settings = ServerSettings::preset(Provider::None);
    settings.host = "127.0.0.1".to_owned();
    settings.port = server.port;
    settings.tls_startup = TlsStartup::StartTls;
    settings.timeout_ms = 20_000;
    settings.smtp_user = login.to_owned();
    settings.password = Some(Secret::new(password));
    settings
}

pub(crate) fn transport(server: &TestServer, settings: ServerSettings) -> SmtpTransport {
    transport_with(server, settings, 4)
}

pub(crate) fn transport_with(
    server: &TestServer,
    settings: ServerSettings,
    pool_size: usize,
) -> SmtpTransport {
    SmtpTransport::new(config_for(server, settings, pool_size)).expect("build the transport")
}

/// A configuration trusting the server's test CA. The health-check threshold is an hour,
/// so no test depends on how fast it runs.
pub(crate) fn config_for(
    server: &TestServer,
    settings: ServerSettings,
    pool_size: usize,
) -> SmtpTransportConfig {
    let mut config = SmtpTransportConfig::new(settings)
        .with_extra_root_pem(server.trusted_ca_pem.clone())
        .with_pool_size(pool_size);
    config.health_check_after = std::time::Duration::from_secs(3600);
    config
}
pub(crate) fn token(token: &str, version: u64) -> Credentials {
    Credentials {
        user: USER.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(token)),
        version,
    }
}

pub(crate) fn password(login: &str, password: &str) -> Credentials {
    Credentials {
        user: login.to_owned(),
        secret: CredentialSecret::Password(Secret::new(password)),
        version: 1,
    }
}

pub(crate) fn address(text: &str) -> Address {
    text.parse().expect("a valid address")
}

/// A small ASCII message from `from` to `to`.
pub(crate) fn simple_message(from: &str, to: &str) -> OutgoingMessage {
    let message = lettre::Message::builder()
        .from(from.parse::<Mailbox>().expect("from"))
        .to(to.parse::<Mailbox>().expect("to"))
        .subject("hello")
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("a small test message\r\n"))
        .expect("build the message");
    outgoing(&message, from, &[to])
}

/// The bytes of a lettre message with an explicit envelope.
pub(crate) fn outgoing(
    message: &lettre::Message,
    from: &str,
    recipients: &[&str],
) -> OutgoingMessage {
    let envelope = Envelope::new(
        address(from),
        recipients
            .iter()
            .map(|recipient| address(recipient))
            .collect(),
    )
    .expect("an envelope");
    OutgoingMessage {
        envelope,
        bytes: Bytes::from(message.formatted()),
        message_id: None,
    }
}

/// The longest line SMTP allows (998 octets before CRLF), in an 8-bit part.
pub(crate) fn longest_line() -> String {
    "x".repeat(990) + "-longest"
}

/// A line far longer than SMTP allows; lettre encodes its part (quoted-printable).
pub(crate) fn overlong_line() -> String {
    "Größe ".repeat(400)
}

/// A message with a UTF-8 subject, an 8-bit body with the longest allowed line, a part
/// with an overlong line, a large binary attachment and a Bcc recipient.
pub(crate) fn rich_message() -> OutgoingMessage {
    let attachment: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Pre-encoded: lettre's builder keeps 8-bit lines to 76 characters, and the point
    // here is a line at SMTP's limit.
    let eight_bit = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
        lettre::message::Body::dangerous_pre_encoded(
            format!(
                "Grüße aus Köln — ✉\r\n{}\r\n.leading dot line\r\n",
                longest_line()
            )
            .into_bytes(),
            lettre::message::header::ContentTransferEncoding::EightBit,
        ),
    );
    let overlong = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(format!("{}\r\n", overlong_line()));
    let message = lettre::Message::builder()
        .from("Box <box@example.com>".parse::<Mailbox>().expect("from"))
        .to("to@example.com".parse::<Mailbox>().expect("to"))
        .bcc("hidden@example.com".parse::<Mailbox>().expect("bcc"))
        .subject("Grüße — ünïcödé subject ✓")
        .multipart(
            MultiPart::mixed()
                .singlepart(eight_bit)
                .singlepart(overlong)
                .singlepart(Attachment::new("data.bin".to_owned()).body(
                    attachment,
                    ContentType::parse("application/octet-stream").expect("type"),
                )),
        )
        .expect("build the message");
    outgoing(&message, USER, &["to@example.com", "hidden@example.com"])
}

pub(crate) async fn send(
    transport: &SmtpTransport,
    message: &OutgoingMessage,
    credentials: &Credentials,
) -> Result<Delivery, TransportError> {
    transport.send(message, credentials).await
}

/// Settings for a password-less relay on 127.0.0.1 without TLS (a scripted server),
/// sending as `user`.
pub(crate) fn relay_settings(port: u16, user: &str) -> ServerSettings {
    let mut settings = ServerSettings::preset(Provider::None);
    settings.host = "127.0.0.1".to_owned();
    settings.port = port;
    settings.tls = false;
    settings.timeout_ms = 5_000;
    settings.smtp_user = user.to_owned();
    settings
}

/// No secret, for a relay without AUTH: `user` at credential `version`.
pub(crate) fn no_credentials(user: &str, version: u64) -> Credentials {
    Credentials {
        user: user.to_owned(),
        secret: CredentialSecret::None,
        version,
    }
}

/// A relay on 127.0.0.1 without TLS or AUTH, offering `extensions` in its EHLO reply: it
/// delivers every message, and answers `QUIT` and tells `on_quit` the connection's number.
pub(crate) fn scripted_relay(
    extensions: &'static [&'static str],
    on_quit: impl Fn(usize) + Send + Sync + 'static,
) -> ScriptedServer {
    ScriptedServer::start(move |conn| {
        if !conn.open_plain(extensions) {
            return;
        }
        while let Some(line) = conn.read_line() {
            if line == "QUIT" {
                conn.send("221 2.0.0 Bye\r\n");
                on_quit(conn.number);
                return;
            }
            let reply = if line == "DATA" {
                conn.send("354 go ahead\r\n");
                if conn.read_data().is_none() {
                    return;
                }
                conn.delivered();
                "250 2.0.0 queued\r\n"
            } else {
                "250 ok\r\n"
            };
            if !conn.send(reply) {
                return;
            }
        }
    })
}
