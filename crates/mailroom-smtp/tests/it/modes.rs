//! TLS startup against the wrong kind of port: implicit TLS against a port that greets in
//! plain SMTP, STARTTLS against a port that expects TLS at once; and `probe`.

use mailroom_model::{Remedy, ServerSettings, TlsStartup, TransportErrorKind};
use mailroom_smtp::{ProbeTls, SmtpTransport, SmtpTransportConfig, probe};
use mailroom_testkit::certificates::TestCertificates;
use mailroom_testkit::smtp::{ServerOptions, ServerTls, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{USER, oauth_settings, send, simple_message, token};

const PLAIN_FIRST_HINT: &str =
    "this port speaks plain SMTP first: use STARTTLS (tls startup starttls)";
const TLS_AT_ONCE_HINT: &str =
    "this port expects TLS at once (implicit TLS): use tls startup implicit/port 465";

fn settings_for(port: u16, startup: TlsStartup) -> ServerSettings {
    let mut settings = ServerSettings::preset(mailroom_model::Provider::Microsoft);
    settings.host = "127.0.0.1".to_owned();
    settings.port = port;
    settings.tls = true;
    settings.tls_startup = startup;
    settings.timeout_ms = 20_000;
    settings.smtp_user = USER.to_owned();
    settings
}

/// A server that greets in plain SMTP on every connection, then reads until the client
/// goes away.
async fn plain_greeter() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(b"220 plain.example ESMTP ready\r\n").await;
                let mut buffer = [0u8; 1024];
                while matches!(socket.read(&mut buffer).await, Ok(1..)) {}
            });
        }
    });
    port
}

/// An implicit-TLS server (rustls, the test CA's certificate): says nothing until the
/// client's TLS hello, then greets over TLS. Returns the port and the CA to trust.
async fn implicit_tls_server() -> (u16, String) {
    let certificates = TestCertificates::generate("mailroom modes test CA");
    let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let _ = stream.write_all(b"220 tls.example ESMTP ready\r\n").await;
                let mut buffer = [0u8; 1024];
                while matches!(stream.read(&mut buffer).await, Ok(1..)) {}
            });
        }
    });
    (port, certificates.ca_pem)
}

/// A server that sends a TLS handshake record's first bytes at once.
async fn tls_record_sender() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket
                    .write_all(&[0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
                    .await;
                let mut buffer = [0u8; 1024];
                while matches!(socket.read(&mut buffer).await, Ok(1..)) {}
            });
        }
    });
    port
}

#[track_caller]
fn assert_hint(error: &mailroom_model::TransportError, hint: &str) {
    assert_eq!(
        error.kind(),
        TransportErrorKind::AccountConfiguration,
        "{error}"
    );
    assert!(
        error.remediation().unwrap_or_default().contains(hint),
        "{:?} lacks {hint:?}",
        error.remediation()
    );
    assert_eq!(
        error.remedy(),
        Some(&Remedy::EditAccount { account: None }),
        "{error}"
    );
}

#[tokio::test]
async fn implicit_tls_against_a_plain_smtp_port_says_use_starttls() {
    let port = plain_greeter().await;
    let transport = SmtpTransport::new(SmtpTransportConfig::new(settings_for(
        port,
        TlsStartup::Implicit,
    )))
    .expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("t", 1),
    )
    .await
    .expect_err("refused");
    assert_hint(&error, PLAIN_FIRST_HINT);
    assert!(error.message().contains("plain SMTP greeting"), "{error}");
}

#[tokio::test]
async fn starttls_against_an_implicit_tls_port_says_use_implicit_tls() {
    let (port, ca) = implicit_tls_server().await;
    let config = SmtpTransportConfig::new(settings_for(port, TlsStartup::StartTls))
        .with_extra_root_pem(ca.into_bytes());
    let transport = SmtpTransport::new(config).expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("t", 1),
    )
    .await
    .expect_err("refused");
    assert_hint(&error, TLS_AT_ONCE_HINT);
    // Not the greeting timeout: the silence was recognised as a TLS port.
    assert!(!error.message().contains("did not answer"), "{error}");
}

#[tokio::test]
async fn a_tls_record_where_a_greeting_belongs_says_use_implicit_tls() {
    let port = tls_record_sender().await;
    let transport = SmtpTransport::new(SmtpTransportConfig::new(settings_for(
        port,
        TlsStartup::StartTls,
    )))
    .expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("t", 1),
    )
    .await
    .expect_err("refused");
    assert_hint(&error, TLS_AT_ONCE_HINT);
}

#[tokio::test]
async fn probe_reports_tls_and_mechanisms_and_never_authenticates() {
    let server = TestServer::start(ServerOptions {
        tls: ServerTls::StartTls,
        mechanisms: vec!["XOAUTH2", "PLAIN"],
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        ..ServerOptions::default()
    });
    let settings = oauth_settings(&server, TlsStartup::StartTls);
    let found = probe(&settings, Some(server.trusted_ca_pem.as_bytes()))
        .await
        .expect("probed");
    assert_eq!(found.tls, ProbeTls::StartTls);
    assert!(found.offers_oauth(), "{found:?}");
    assert!(
        found.auth_mechanisms.contains(&"XOAUTH2".to_owned()),
        "{found:?}"
    );
    assert!(
        !found.auth_mechanisms.contains(&"OAUTHBEARER".to_owned()),
        "{found:?}"
    );
    assert!(server.events_of("auth").is_empty(), "{:?}", server.events());
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn probe_of_implicit_tls_against_a_plain_port_gives_the_hint() {
    let port = plain_greeter().await;
    let error = probe(&settings_for(port, TlsStartup::Implicit), None)
        .await
        .expect_err("refused");
    let mailroom_smtp::ProbeError::Connection(error) = error else {
        panic!("not a connection error: {error}");
    };
    assert_hint(&error, PLAIN_FIRST_HINT);
}
