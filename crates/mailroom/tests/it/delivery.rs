//! An unknown outcome (`DeliveryUnknown`) against scripted SMTP servers: `send` does not
//! send again at once, the outbox tries once more after its delay and never again, and a
//! drop before the whole message was written is still retried at once.

use std::sync::Arc;
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, Agent, AgentOptions, Attachment, DELIVERY_UNKNOWN_MARK, Error, Mailroom,
    MessageDraft, OutboxStatus, Provider, SendRequest, TransportErrorKind,
};
use mailroom_accounts::Accounts;
use mailroom_model::ServerSettingsChange;
use mailroom_testkit::Backend;
use mailroom_testkit::scripted::{Conn, ScriptedServer};
use mailroom_testkit::smtp::ServerOptions;

use crate::support::World;

/// The company account: a password-less relay without TLS on the scripted server.
async fn company_on(world: &World, port: u16) {
    let change = ServerSettingsChange {
        port: Some(port),
        tls: Some(false),
        timeout_ms: Some(5_000),
        ..world.smtp_change(Provider::None, "relay@example.com")
    };
    Accounts::new(&world.db.db, &world.key)
        .set_company(&change, None)
        .await
        .unwrap();
}

async fn mailroom_with(world: &World, final_reply: Duration, unknown_delay: Duration) -> Mailroom {
    let mut options = world.options();
    options.smtp_final_reply_timeout = final_reply;
    options.retry.outbox_delivery_unknown_delay = unknown_delay;
    Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .expect("open the facade")
}

fn request(attachment: Option<Vec<u8>>) -> SendRequest<'static> {
    SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            from: Some("orders@example.com".to_owned()),
            to: vec!["customer@example.com".to_owned()],
            subject: "Invoice 42".to_owned(),
            text: Some("Your invoice.\r\n".to_owned()),
            attachments: attachment
                .map(|bytes| vec![Attachment::new("invoice.bin", bytes)])
                .unwrap_or_default(),
            ..MessageDraft::default()
        },
    )
}

/// Answers one transaction; the final reply comes after `delay`.
fn transaction(conn: &mut Conn, delay: Duration) {
    if !conn.open_plain(&["PIPELINING", "8BITMIME"]) {
        return;
    }
    for _ in 0..3 {
        conn.read_line();
    }
    conn.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
    if conn.read_data().is_none() {
        return;
    }
    conn.delivered();
    std::thread::sleep(delay);
    conn.send("250 2.0.0 queued\r\n");
    conn.read_to_end(1024);
}

#[tokio::test]
async fn a_final_reply_after_its_timeout_is_delivery_unknown_and_not_sent_again() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let server = ScriptedServer::start(|conn| transaction(conn, Duration::from_secs(3)));
    company_on(&world, server.port).await;
    let mailroom = mailroom_with(&world, Duration::from_secs(1), Duration::ZERO).await;

    let error = mailroom.send(request(None)).await.expect_err("unknown");
    assert!(error.is_delivery_unknown(), "{error}");
    assert!(!error.is_transient());
    match &error {
        Error::Transport { attempts, error } => {
            assert_eq!(*attempts, 1);
            assert_eq!(error.kind(), TransportErrorKind::DeliveryUnknown);
        }
        other => panic!("{other:?}"),
    }
    // One message reached the server, and there was no second connection.
    assert_eq!(server.deliveries(), 1);
    assert_eq!(server.connections(), 1);
    world.finish().await;
}

#[tokio::test]
async fn a_drop_before_the_whole_message_was_written_is_retried_at_once() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let server = ScriptedServer::start(|conn| {
        if conn.number > 1 {
            return transaction(conn, Duration::ZERO);
        }
        // The first connection hangs up right after the go-ahead, long before the 8 MiB
        // attachment can be written.
        if !conn.open_plain(&["PIPELINING", "8BITMIME"]) {
            return;
        }
        for _ in 0..3 {
            conn.read_line();
        }
        conn.send("250 ok\r\n250 ok\r\n354 go ahead\r\n");
    });
    company_on(&world, server.port).await;
    let mailroom = mailroom_with(&world, Duration::from_secs(5), Duration::ZERO).await;

    let attachment: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let receipt = mailroom
        .send(request(Some(attachment)))
        .await
        .expect("sent");
    assert_eq!(receipt.attempts, 2);
    assert_eq!(server.connections(), 2);
    assert_eq!(server.deliveries(), 1);
    world.finish().await;
}

#[tokio::test]
async fn the_outbox_tries_an_unknown_delivery_once_more_and_never_again() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let server = ScriptedServer::start(|conn| transaction(conn, Duration::from_secs(3)));
    company_on(&world, server.port).await;
    let mailroom = Arc::new(mailroom_with(&world, Duration::from_secs(1), Duration::ZERO).await);
    let id = mailroom.queue(request(None)).await.unwrap();
    let message_id = mailroom.outbox().get(id).await.unwrap().message_id;
    let options = AgentOptions {
        concurrency: 1,
        once: true,
        poll_interval: Duration::from_millis(20),
        ..AgentOptions::default()
    };

    // The first claim: unknown, so once more after the (here zero) delay.
    Agent::new(mailroom.clone(), options.clone())
        .run(std::future::pending())
        .await
        .unwrap();
    let first = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(first.status, OutboxStatus::Queued);
    let last_error = first.last_error.unwrap_or_default();
    assert!(
        last_error.starts_with(DELIVERY_UNKNOWN_MARK),
        "{last_error}"
    );
    assert!(
        last_error.contains(&format!(
            "a duplicate with the same Message-ID {message_id} is possible"
        )),
        "{last_error}"
    );

    // The second: unknown again, so failed; later runs send nothing.
    for _ in 0..2 {
        Agent::new(mailroom.clone(), options.clone())
            .run(std::future::pending())
            .await
            .unwrap();
    }
    let second = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(second.status, OutboxStatus::Failed);
    assert_eq!(second.attempts, 2);
    let last_error = second.last_error.unwrap_or_default();
    assert!(last_error.contains("unknown twice"), "{last_error}");
    assert_eq!(server.deliveries(), 2);
    assert_eq!(server.connections(), 2);
    world.finish().await;
}
