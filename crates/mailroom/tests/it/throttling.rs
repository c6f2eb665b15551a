//! A mailbox the provider paused (Exchange Online's recipient quota, "sender throttled"),
//! against a scripted SMTP server with the documented replies: `send` fails at once without
//! retrying, and the agent holds the message until the pause is over without using up its
//! attempts, then sends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, Agent, AgentOptions, Error, MessageDraft, OutboxStatus, Provider,
    SendRequest, TransportErrorKind,
};
use mailroom_accounts::Accounts;
use mailroom_model::ServerSettingsChange;
use mailroom_testkit::Backend;
use mailroom_testkit::scripted::{Conn, ScriptedServer};
use mailroom_testkit::smtp::ServerOptions;

use crate::support::World;

/// Exchange Online's answer once a mailbox has sent to 10,000 recipients in 24 hours
/// ("Changes in message store and throttling for concurrent connections",
/// MicrosoftDocs/SupportArticles-docs
/// `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`).
const QUOTA: &str = "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException\r\n";

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

fn request() -> SendRequest<'static> {
    SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            from: Some("orders@example.com".to_owned()),
            to: vec!["customer@example.com".to_owned()],
            subject: "Invoice 42".to_owned(),
            text: Some("Your invoice.\r\n".to_owned()),
            ..MessageDraft::default()
        },
    )
}

/// One transaction per connection: the quota reply after the data while `paused`, else
/// the message is taken.
fn server(paused: Arc<AtomicBool>) -> ScriptedServer {
    ScriptedServer::start(move |conn: &mut Conn| {
        if !conn.open_plain(&["PIPELINING"]) {
            return;
        }
        for _ in 0..3 {
            conn.read_line();
        }
        conn.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
        if conn.read_data().is_none() {
            return;
        }
        if paused.load(Ordering::Acquire) {
            conn.send(QUOTA);
        } else {
            conn.delivered();
            conn.send("250 2.0.0 queued\r\n");
        }
        conn.read_to_end(1024);
    })
}

#[tokio::test]
async fn a_send_to_a_paused_mailbox_fails_at_once_and_says_when_to_try_again() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let server = server(Arc::new(AtomicBool::new(true)));
    company_on(&world, server.port).await;
    let mailroom = world.mailroom().await;

    let error = mailroom.send(request()).await.expect_err("paused");

    assert!(error.is_mailbox_paused(), "{error}");
    assert!(
        !error.is_transient(),
        "not retried within the send: {error}"
    );
    assert_eq!(error.retry_after(), Some(mailroom_smtp::MAILBOX_PAUSE));
    match &error {
        Error::Transport { attempts, error } => {
            assert_eq!(*attempts, 1);
            assert_eq!(error.kind(), TransportErrorKind::MailboxThrottled);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("10,000 recipients"), "{error}");
    assert_eq!(server.connections(), 1);
    world.finish().await;
}

#[tokio::test]
async fn the_agent_holds_a_message_of_a_paused_mailbox_without_using_its_attempts() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let paused = Arc::new(AtomicBool::new(true));
    let server = server(paused.clone());
    company_on(&world, server.port).await;
    // The pause runs on the outbox's clock: the test moves it instead of waiting an hour.
    let clock = Arc::new(mailroom::ManualClock::new(std::time::SystemTime::now()));
    let mut mailroom_options = world.options();
    mailroom_options.clock = clock.clone();
    mailroom_options.outbox_clock = mailroom::OutboxClock::given(clock.clone());
    let mailroom = Arc::new(
        mailroom::Mailroom::with_connection(world.db.db.clone(), mailroom_options)
            .await
            .unwrap(),
    );
    let id = mailroom.queue(request()).await.unwrap();
    let options = AgentOptions {
        concurrency: 1,
        once: true,
        poll_interval: Duration::from_millis(20),
        ..AgentOptions::default()
    };
    let max_attempts = mailroom.options().retry.outbox_max_attempts;

    // More pauses than the outbox has attempts: held each time, never failed.
    for _ in 0..=max_attempts {
        let before = mailroom.outbox().clock().now_utc();
        Agent::new(mailroom.clone(), options.clone())
            .run(std::future::pending())
            .await
            .unwrap();
        let held = mailroom.outbox().get(id).await.unwrap();
        assert_eq!(held.status, OutboxStatus::Held);
        assert_eq!(held.attempts, 0, "a hold is not an attempt");
        let wait = held.next_attempt_at - before;
        assert!(
            wait >= chrono::Duration::minutes(59) && wait <= chrono::Duration::minutes(61),
            "held for the pause, an hour: {wait}"
        );
        let reason = held.last_error.unwrap_or_default();
        assert!(reason.contains("sending quota"), "{reason}");
        assert!(reason.contains("paused until"), "{reason}");
        // The whole mailbox waits: a message queued now is not sent before the hour.
        let summary = Agent::new(mailroom.clone(), options.clone())
            .run(std::future::pending())
            .await
            .unwrap();
        assert_eq!(
            summary.sent + summary.held,
            0,
            "nothing claimed while paused"
        );
        clock.advance(Duration::from_secs(61 * 60));
    }

    paused.store(false, Ordering::Release);
    Agent::new(mailroom.clone(), options.clone())
        .run(std::future::pending())
        .await
        .unwrap();
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(server.deliveries(), 1);
    world.finish().await;
}
