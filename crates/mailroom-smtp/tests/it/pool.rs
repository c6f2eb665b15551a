//! Pooling: connections authenticate once and are reused; the pool size bounds
//! connections; a new credential version gets new connections with the new token.

use std::sync::Arc;
use std::time::Duration;

use mailroom_model::{Credentials, TlsStartup};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_testkit::scripted::ScriptedServer;
use tokio::task::JoinSet;

use crate::support::{
    USER, no_credentials, oauth_settings, relay_settings, scripted_relay, send, simple_message,
    token, transport_with,
};
use mailroom_testkit::smtp::{ServerOptions, TestServer};

fn server() -> TestServer {
    TestServer::start(ServerOptions {
        tokens: vec![
            (USER.to_owned(), "token-one".to_owned()),
            (USER.to_owned(), "token-two".to_owned()),
        ],
        ..ServerOptions::default()
    })
}

fn connections_of(server: &TestServer, kind: &str) -> std::collections::BTreeSet<u64> {
    server
        .events_of(kind)
        .iter()
        .map(|event| event["connection"].as_u64().expect("connection id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_messages_over_a_pool_of_two_authenticate_at_most_twice() {
    let server = server();
    let transport = Arc::new(transport_with(
        &server,
        oauth_settings(&server, TlsStartup::StartTls),
        2,
    ));
    let mut sends = JoinSet::new();
    for number in 0..50 {
        let transport = Arc::clone(&transport);
        sends.spawn(async move {
            let message = simple_message(USER, &format!("to{number}@example.com"));
            send(&transport, &message, &token("token-one", 1)).await
        });
    }
    while let Some(result) = sends.join_next().await {
        result.expect("task").expect("sent");
    }
    let auths = server.events_of("auth");
    assert!(
        !auths.is_empty() && auths.len() <= 2,
        "{} AUTH commands",
        auths.len()
    );
    assert_eq!(server.messages().len(), 50);
    assert!(connections_of(&server, "message").len() <= 2);
}

#[tokio::test]
async fn sequential_messages_reuse_one_connection() {
    let server = server();
    let transport = transport_with(&server, oauth_settings(&server, TlsStartup::StartTls), 4);
    for _ in 0..10 {
        send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("token-one", 1),
        )
        .await
        .expect("sent");
    }
    assert_eq!(server.events_of("auth").len(), 1);
    assert_eq!(connections_of(&server, "message").len(), 1);
    // Used a moment ago each time: reused without a NOOP round trip.
    assert!(server.events_of("noop").is_empty());
}

#[tokio::test]
async fn a_connection_idle_past_the_threshold_is_checked_with_noop() {
    let server = server();
    let mut config =
        crate::support::config_for(&server, oauth_settings(&server, TlsStartup::StartTls), 1);
    config.health_check_after = std::time::Duration::ZERO;
    let transport = mailroom_smtp::SmtpTransport::new(config).expect("transport");
    for _ in 0..3 {
        send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("token-one", 1),
        )
        .await
        .expect("sent");
    }
    assert_eq!(server.events_of("noop").len(), 2);
    assert_eq!(server.events_of("auth").len(), 1);
}

#[tokio::test]
async fn a_new_credential_version_authenticates_new_connections_with_the_new_token() {
    let server = server();
    let transport = transport_with(&server, oauth_settings(&server, TlsStartup::StartTls), 2);
    for _ in 0..3 {
        send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("token-one", 1),
        )
        .await
        .expect("sent with the first token");
    }
    for _ in 0..3 {
        send(
            &transport,
            &simple_message(USER, "to@example.com"),
            &token("token-two", 2),
        )
        .await
        .expect("sent with the refreshed token");
    }
    let auths: Vec<String> = server
        .events_of("auth")
        .iter()
        .map(|event| event["initial"].as_str().expect("initial").to_owned())
        .collect();
    assert_eq!(
        auths,
        vec![
            "user=box@example.com\u{1}auth=Bearer token-one\u{1}\u{1}".to_owned(),
            "user=box@example.com\u{1}auth=Bearer token-two\u{1}\u{1}".to_owned(),
        ]
    );
    let messages = server.events_of("message");
    let first = messages[0]["connection"].as_u64();
    let last = messages[5]["connection"].as_u64();
    assert_ne!(
        first, last,
        "the refreshed token must not reuse the old connection"
    );
    assert_eq!(connections_of(&server, "message").len(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_without_failing_the_send() {
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), "token-one".to_owned())],
        close_after: vec!["hangup@example.com".to_owned()],
        ..ServerOptions::default()
    });
    let transport = transport_with(&server, oauth_settings(&server, TlsStartup::StartTls), 1);
    send(
        &transport,
        &simple_message(USER, "hangup@example.com"),
        &token("token-one", 1),
    )
    .await
    .expect("the first message is accepted before the server hangs up");
    // The pooled connection is dead now; it was used a moment ago, so it is reused
    // without a NOOP, fails at MAIL FROM, and the send goes over a new connection.
    send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &token("token-one", 1),
    )
    .await
    .expect("sent over a new connection");
    assert_eq!(server.messages().len(), 2);
    assert_eq!(server.events_of("auth").len(), 2);
    assert_eq!(connections_of(&server, "message").len(), 2);
}

/// A relay that reports on `quits` the number of each connection the client closed with
/// `QUIT`.
fn quit_reporting_relay(quits: std::sync::mpsc::Sender<usize>) -> ScriptedServer {
    let quits = std::sync::Mutex::new(quits);
    scripted_relay(&[], move |number| {
        let _ = quits.lock().unwrap().send(number);
    })
}

fn relay_config(server: &ScriptedServer) -> SmtpTransportConfig {
    SmtpTransportConfig::new(relay_settings(server.port, USER))
}

fn anonymous(version: u64) -> Credentials {
    no_credentials(USER, version)
}

/// The number of the next connection the client closes with `QUIT`, waited for (without
/// blocking the runtime that sends it) for at most ten seconds.
async fn next_quit(quits: std::sync::mpsc::Receiver<usize>) -> Option<usize> {
    tokio::task::spawn_blocking(move || quits.recv_timeout(Duration::from_secs(10)).ok())
        .await
        .expect("the waiting task")
}

#[tokio::test]
async fn a_retired_pool_closes_its_idle_connection_with_quit() {
    let (quits, quit_seen) = std::sync::mpsc::channel();
    let server = quit_reporting_relay(quits);
    let transport = SmtpTransport::new(relay_config(&server)).expect("a transport");
    let message = simple_message(USER, "to@example.com");
    send(&transport, &message, &anonymous(1))
        .await
        .expect("sent with the first version");
    // A new credential version retires the first pool: its idle connection is closed at
    // once, not left for the idle timeout (a minute by default).
    send(&transport, &message, &anonymous(2))
        .await
        .expect("sent with the second version");
    assert_eq!(next_quit(quit_seen).await, Some(1));
    assert_eq!(server.deliveries(), 2);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_connection_idle_past_the_idle_timeout_is_closed_with_quit() {
    let (quits, quit_seen) = std::sync::mpsc::channel();
    let server = quit_reporting_relay(quits);
    let mut config = relay_config(&server);
    config.idle_timeout = Duration::from_millis(200);
    let transport = SmtpTransport::new(config).expect("a transport");
    send(
        &transport,
        &simple_message(USER, "to@example.com"),
        &anonymous(1),
    )
    .await
    .expect("sent");
    // Nothing else is sent: the pool's own reaper closes the idle connection.
    assert_eq!(next_quit(quit_seen).await, Some(1));
    assert_eq!(server.connections(), 1);
}
