//! Authentication: the exact XOAUTH2 and OAUTHBEARER initial responses, the error
//! challenge, PLAIN and LOGIN, and the refusals (no TLS, no OAuth mechanism).

use mailroom_model::{TlsStartup, TransportErrorKind};

use crate::support::{
    USER, oauth_settings, password, password_settings, send, simple_message, token, transport,
};
use mailroom_testkit::smtp::{ServerOptions, ServerTls, TestServer};

fn oauth_server(tls: ServerTls, mechanisms: Vec<&'static str>) -> TestServer {
    TestServer::start(ServerOptions {
        tls,
        mechanisms,
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        ..ServerOptions::default()
    })
}

#[tokio::test]
async fn xoauth2_sends_the_documented_initial_response_over_starttls() {
    let server = oauth_server(
        ServerTls::StartTls,
        vec!["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"],
    );
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let delivery = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect("sent");
    assert!(
        delivery.reply.starts_with("250 2.0.0 OK queued as "),
        "{}",
        delivery.reply
    );

    let auths = server.events_of("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0]["mechanism"], "XOAUTH2");
    assert_eq!(
        auths[0]["initial"],
        "user=box@example.com\u{1}auth=Bearer good-token\u{1}\u{1}"
    );
    assert_eq!(auths[0]["tls"], true);
}

#[tokio::test]
async fn oauthbearer_is_used_where_only_it_is_offered() {
    let server = oauth_server(ServerTls::StartTls, vec!["PLAIN", "OAUTHBEARER"]);
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect("sent");
    let auths = server.events_of("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0]["mechanism"], "OAUTHBEARER");
    assert_eq!(
        auths[0]["initial"],
        format!(
            "n,a=box@example.com,\u{1}host=127.0.0.1\u{1}port={}\u{1}auth=Bearer good-token\u{1}\u{1}",
            server.port
        )
    );
}

#[track_caller]
fn check_rejected_token(error: &mailroom_model::TransportError, mechanism: &str) {
    assert_eq!(error.kind(), TransportErrorKind::AuthenticationRejected);
    assert!(error.is_auth_rejected());
    assert_eq!(
        error.server_reply(),
        Some("535 5.7.8 Username and Password not accepted (token rejected)")
    );
    assert_eq!(
        error.message(),
        format!(
            "the smtp server rejected the access token for box@example.com ({mechanism}); it said: {}",
            r#"{"status": "invalid_token", "schemes": "Bearer", "scope": "https://outlook.office.com/SMTP.Send"}"#
        )
    );
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("wrong-token"), "the token leaked: {text}");
    }
}

#[tokio::test]
async fn a_wrong_token_gets_the_xoauth2_challenge_answered_with_an_empty_line() {
    let server = oauth_server(ServerTls::StartTls, vec!["XOAUTH2"]);
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("wrong-token", 1),
    )
    .await
    .expect_err("rejected");
    check_rejected_token(&error, "XOAUTH2");
    let answers = server.events_of("challenge_answer");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["answer"], "");
    assert!(server.events_of("message").is_empty());
}

#[tokio::test]
async fn a_wrong_token_gets_the_oauthbearer_challenge_answered_with_0x01() {
    let server = oauth_server(ServerTls::StartTls, vec!["OAUTHBEARER"]);
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("wrong-token", 1),
    )
    .await
    .expect_err("rejected");
    check_rejected_token(&error, "OAUTHBEARER");
    let answers = server.events_of("challenge_answer");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["answer"], "\u{1}");
}

#[tokio::test]
async fn an_oauth_account_refuses_a_server_without_starttls() {
    let server = oauth_server(ServerTls::None, vec!["XOAUTH2", "PLAIN"]);
    for settings in [
        oauth_settings(&server, TlsStartup::StartTls),
        oauth_settings(&server, TlsStartup::Auto),
        {
            // TLS disabled in the settings: plaintext is still not good enough for a token.
            let mut settings = oauth_settings(&server, TlsStartup::Auto);
            settings.tls = false;
            settings
        },
    ] {
        let transport = transport(&server, settings);
        let error = send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("good-token", 1),
        )
        .await
        .expect_err("refused");
        assert_eq!(error.kind(), TransportErrorKind::Insecure, "{error}");
    }
    assert!(
        server.events_of("auth").is_empty(),
        "a token was sent: {:?}",
        server.events()
    );
}

#[tokio::test]
async fn a_loopback_test_server_may_take_a_token_in_plaintext_when_allowed() {
    let server = oauth_server(ServerTls::None, vec!["XOAUTH2"]);
    let mut settings = oauth_settings(&server, TlsStartup::Auto);
    settings.tls = false;
    settings.allow_plaintext_loopback = true;
    let transport = transport(&server, settings);
    send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect("sent");
    let auths = server.events_of("auth");
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["tls"], false);
}

#[tokio::test]
async fn a_token_is_never_sent_with_plain_or_login() {
    let server = oauth_server(ServerTls::StartTls, vec!["PLAIN", "LOGIN"]);
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let error = send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect_err("refused");
    assert_eq!(
        error.kind(),
        TransportErrorKind::AccountConfiguration,
        "{error}"
    );
    assert!(
        error.message().contains("neither XOAUTH2 nor OAUTHBEARER"),
        "{error}"
    );
    assert!(server.events_of("auth").is_empty());
}

#[track_caller]
fn check_password_auth(server: &TestServer, mechanism: &str, tls: bool) {
    let auths = server.events_of("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0]["mechanism"], mechanism);
    assert_eq!(auths[0]["login"], "alice");
    assert_eq!(auths[0]["password"], "s3cret pässword");
    assert_eq!(auths[0]["accepted"], true);
    assert_eq!(auths[0]["tls"], tls);
}

fn password_server(tls: ServerTls, mechanisms: Vec<&'static str>) -> TestServer {
    TestServer::start(ServerOptions {
        tls,
        mechanisms,
        passwords: vec![("alice".to_owned(), "s3cret pässword".to_owned())],
        ..ServerOptions::default()
    })
}

#[tokio::test]
async fn a_password_account_uses_plain() {
    let server = password_server(ServerTls::StartTls, vec!["PLAIN", "LOGIN", "XOAUTH2"]);
    let transport = transport(
        &server,
        password_settings(&server, "alice", "s3cret pässword"),
    );
    send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &password("alice", "s3cret pässword"),
    )
    .await
    .expect("sent");
    check_password_auth(&server, "PLAIN", true);
}

#[tokio::test]
async fn a_password_account_uses_login_where_only_it_is_offered() {
    let server = password_server(ServerTls::StartTls, vec!["LOGIN"]);
    let transport = transport(
        &server,
        password_settings(&server, "alice", "s3cret pässword"),
    );
    send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &password("alice", "s3cret pässword"),
    )
    .await
    .expect("sent");
    check_password_auth(&server, "LOGIN", true);
}

#[tokio::test]
async fn a_password_account_may_authenticate_in_plaintext_when_tls_is_off() {
    let server = password_server(ServerTls::None, vec!["PLAIN"]);
    let mut settings = password_settings(&server, "alice", "s3cret pässword");
    settings.tls = false;
    let transport = transport(&server, settings);
    send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &password("alice", "s3cret pässword"),
    )
    .await
    .expect("sent");
    check_password_auth(&server, "PLAIN", false);
}

#[tokio::test]
async fn tls_off_still_uses_starttls_when_offered() {
    let server = password_server(ServerTls::StartTls, vec!["PLAIN"]);
    let mut settings = password_settings(&server, "alice", "s3cret pässword");
    settings.tls = false;
    let transport = transport(&server, settings);
    send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &password("alice", "s3cret pässword"),
    )
    .await
    .expect("sent");
    check_password_auth(&server, "PLAIN", true);
}

#[tokio::test]
async fn a_wrong_password_is_rejected_without_leaking_it() {
    let server = password_server(ServerTls::StartTls, vec!["PLAIN"]);
    let transport = transport(&server, password_settings(&server, "alice", "wrong-pass"));
    let error = send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &password("alice", "wrong-pass"),
    )
    .await
    .expect_err("rejected");
    assert_eq!(error.kind(), TransportErrorKind::AuthenticationRejected);
    assert_eq!(
        error.server_reply(),
        Some("535 5.7.8 Authentication credentials invalid")
    );
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("wrong-pass"), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn a_token_for_a_password_account_is_refused_before_connecting() {
    let server = password_server(ServerTls::StartTls, vec!["PLAIN"]);
    let transport = transport(
        &server,
        password_settings(&server, "alice", "s3cret pässword"),
    );
    let error = send(
        &transport,
        &simple_message("alice@example.com", "to@example.com"),
        &token("good-token", 1),
    )
    .await
    .expect_err("refused");
    assert_eq!(
        error.kind(),
        TransportErrorKind::AccountConfiguration,
        "{error}"
    );
    assert!(server.events().is_empty());
}
