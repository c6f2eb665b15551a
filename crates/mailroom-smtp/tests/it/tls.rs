//! TLS: implicit TLS, certificates from an untrusted CA, and the timeout and dropped
//! connections before TLS.

use mailroom_model::{TlsStartup, TransportErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{USER, oauth_settings, send, simple_message, token, transport};
use mailroom_testkit::smtp::{ServerOptions, ServerTls, TestServer};

fn server(tls: ServerTls, untrusted_certificate: bool) -> TestServer {
    TestServer::start(ServerOptions {
        tls,
        untrusted_certificate,
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        ..ServerOptions::default()
    })
}

#[tokio::test]
async fn implicit_tls_from_the_first_byte() {
    let server = server(ServerTls::Implicit, false);
    let transport = transport(&server, oauth_settings(&server, TlsStartup::Implicit));
    send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect("sent");
    let auths = server.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["tls"], true);
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    for (tls, startup) in [
        (ServerTls::StartTls, TlsStartup::StartTls),
        (ServerTls::Implicit, TlsStartup::Implicit),
    ] {
        let server = server(tls, true);
        let transport = transport(&server, oauth_settings(&server, startup));
        let error = send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("good-token", 1),
        )
        .await
        .expect_err("refused");
        assert_eq!(error.kind(), TransportErrorKind::Tls, "{startup}: {error}");
        assert!(
            error
                .remediation()
                .unwrap_or_default()
                .contains("MAILROOM_CA_FILE")
        );
        assert!(server.events().is_empty(), "{:?}", server.events());
    }
}

#[tokio::test]
async fn the_test_ca_is_not_trusted_without_the_extra_root() {
    let server = server(ServerTls::StartTls, false);
    let config =
        mailroom_smtp::SmtpTransportConfig::new(oauth_settings(&server, TlsStartup::StartTls));
    let transport = mailroom_smtp::SmtpTransport::new(config).expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::Tls, "{error}");
}

#[tokio::test]
async fn the_timeout_bounds_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        // Hold the socket open without a greeting until the client gives up.
        let mut buffer = [0u8; 16];
        let _ = socket.read(&mut buffer).await;
    });
    let fake = TestServerAddress(port);
    let mut settings = oauth_settings_for(fake);
    settings.timeout_ms = 300;
    let transport =
        mailroom_smtp::SmtpTransport::new(mailroom_smtp::SmtpTransportConfig::new(settings))
            .expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("t", 1),
    )
    .await
    .expect_err("timed out");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(
        error.message(),
        "the smtp server did not answer within 300 ms during the greeting and EHLO"
    );
    silent.abort();
}

#[tokio::test]
async fn a_dropped_connection_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let _ = socket.shutdown().await;
    });
    let transport = mailroom_smtp::SmtpTransport::new(mailroom_smtp::SmtpTransportConfig::new(
        oauth_settings_for(TestServerAddress(port)),
    ))
    .expect("transport");
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("t", 1),
    )
    .await
    .expect_err("dropped");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert!(error.is_transient());
    closer.await.expect("closer");
}

struct TestServerAddress(u16);

fn oauth_settings_for(address: TestServerAddress) -> mailroom_model::ServerSettings {
    let mut settings = mailroom_model::ServerSettings::preset(mailroom_model::Provider::Microsoft);
    settings.host = "127.0.0.1".to_owned();
    settings.port = address.0;
    settings.tls_startup = TlsStartup::StartTls;
    settings.smtp_user = USER.to_owned();
    settings
}
