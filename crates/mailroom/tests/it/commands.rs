//! The facade calls behind issue 10's commands, on both backends: the dry run, an
//! account's From address, removing an account that queued messages use, the subject
//! and size of queued messages without their bytes, purging and retention.

use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, AccountRef, Agent, AgentOptions, Error, KeyRing, Mailroom, MailroomOptions,
    MessageDraft, OutboxStatus, Provider, SendRequest, TransportKind,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Binding, Secret, ServerSettingsChange};
use mailroom_testkit::{TestDatabase, on_both_backends};
use sea_orm::{ConnectionTrait, Statement};

on_both_backends!(
    a_dry_run_resolves_and_builds_with_the_from_address_and_sends_nothing,
    removing_an_account_with_queued_messages_is_refused_or_re_resolves_them,
    purge_deletes_only_old_finished_messages_and_the_agent_applies_retention,
);

async fn setup(db: &TestDatabase) -> (Mailroom, KeyRing) {
    let key = KeyRing::generate();
    let mailroom = Mailroom::with_connection(db.db.clone(), MailroomOptions::new(key.clone()))
        .await
        .unwrap();
    // A password company account whose login is not an address (port 9: nothing listens).
    let company = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("127.0.0.1".to_owned()),
        port: Some(9),
        smtp_user: Some("relay".to_owned()),
        password: Some(Secret::new("pw")),
        ..Default::default()
    };
    Accounts::new(&db.db, &key)
        .set_company(&company, None)
        .await
        .unwrap();
    (mailroom, key)
}

fn draft(subject: &str) -> MessageDraft {
    MessageDraft {
        to: vec!["buyer@example.com".to_owned()],
        bcc: vec!["archive@example.com".to_owned()],
        subject: subject.to_owned(),
        text: Some("Body".to_owned()),
        ..MessageDraft::default()
    }
}

async fn a_dry_run_resolves_and_builds_with_the_from_address_and_sends_nothing(db: &TestDatabase) {
    let (mailroom, key) = setup(db).await;
    let request = SendRequest::new(AUTOMATION_AGENT, draft("Statement"));
    // Without a From address, the login `relay` cannot be the sender.
    let error = mailroom.prepare_preview(&request).await.unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");

    let accounts = Accounts::new(&db.db, &key);
    let stored = accounts
        .set_from_address(AccountRef::Company, Some(" office@example.com "))
        .await
        .unwrap();
    assert_eq!(stored.from_address(), Some("office@example.com"));
    assert_eq!(
        accounts
            .company()
            .await
            .unwrap()
            .unwrap()
            .from_address
            .as_deref(),
        Some("office@example.com")
    );
    assert!(
        accounts
            .set_from_address(AccountRef::Company, Some("not an address"))
            .await
            .is_err()
    );
    mailroom.forget_cached();
    let preview = mailroom.prepare_preview(&request).await.unwrap();
    assert_eq!(preview.account, AccountRef::Company);
    assert_eq!(preview.address, "office@example.com");
    assert_eq!(preview.sender, "office@example.com");
    assert_eq!(
        preview.recipients,
        ["buyer@example.com", "archive@example.com"]
    );
    assert_eq!(preview.transport, TransportKind::Smtp);
    assert!(preview.size > 100, "{preview:?}");
    // Nothing was queued or sent.
    assert!(mailroom.outbox().list(None, 10).await.unwrap().is_empty());

    // A queued message comes from the From address too, and shows its subject.
    let id = mailroom.queue(request).await.unwrap();
    let queued = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(queued.sender, "office@example.com");
    assert_eq!(queued.subject.as_deref(), Some("Statement"));
    let bytes = mailroom.outbox().bytes(id).await.unwrap();
    assert_eq!(queued.size, bytes.len());
    assert!(String::from_utf8_lossy(&bytes).contains("From: office@example.com"));

    // Cleared, the SMTP user is the sender again.
    accounts
        .set_from_address(AccountRef::Company, None)
        .await
        .unwrap();
    assert_eq!(
        accounts.company().await.unwrap().unwrap().from_address,
        None
    );
}

async fn removing_an_account_with_queued_messages_is_refused_or_re_resolves_them(
    db: &TestDatabase,
) {
    let (mailroom, key) = setup(db).await;
    let accounts = Accounts::new(&db.db, &key);
    accounts
        .set_from_address(AccountRef::Company, Some("office@example.com"))
        .await
        .unwrap();
    let own = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("127.0.0.1".to_owned()),
        port: Some(9),
        smtp_user: Some("sa@example.com".to_owned()),
        ..Default::default()
    };
    let sa = accounts
        .add_user_account(&own, Some(Binding::system_user("sa").unwrap()))
        .await
        .unwrap()
        .account
        .id;
    let mut request = SendRequest::new(mailroom::SALES_DOCUMENT, draft("Order 7"));
    request.system_user = Some("sa".to_owned());
    let id = mailroom.queue(request).await.unwrap();
    let queued = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(queued.account, AccountRef::User(sa));
    // What the request said is kept with it: a later re-resolution asks the same.
    assert_eq!(
        (queued.feature.as_str(), queued.system_user.as_deref()),
        (mailroom::SALES_DOCUMENT, Some("sa"))
    );

    let error = mailroom.remove_account(sa, false).await.unwrap_err();
    match &error {
        Error::AccountInUse { account, messages } => {
            assert_eq!(*account, sa);
            assert_eq!(messages, &[(id, Some("Order 7".to_owned()))]);
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("Order 7"), "{error}");
    assert!(matches!(
        error.remedy(),
        Some(mailroom::Remedy::RemoveAccountForce { .. })
    ));
    // Nothing changed.
    assert!(accounts.user_account(sa).await.is_ok());

    let removed = mailroom.remove_account(sa, true).await.unwrap();
    assert_eq!(removed.re_resolved.len(), 1);
    assert_eq!(removed.re_resolved[0].account, AccountRef::Company);
    assert!(accounts.user_account(sa).await.is_err());
    let moved = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(moved.account, AccountRef::Company);
    assert_eq!(moved.sender, "office@example.com");
    assert_eq!(moved.status, OutboxStatus::Queued);
}

async fn execute(db: &TestDatabase, sql: &str) {
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap();
}

async fn purge_deletes_only_old_finished_messages_and_the_agent_applies_retention(
    db: &TestDatabase,
) {
    let (mailroom, key) = setup(db).await;
    let mailroom = std::sync::Arc::new(mailroom);
    Accounts::new(&db.db, &key)
        .set_from_address(AccountRef::Company, Some("office@example.com"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            mailroom
                .queue(SendRequest::new(AUTOMATION_AGENT, draft(&format!("M{n}"))))
                .await
                .unwrap(),
        );
    }
    // 0: sent 40 days ago, 1: cancelled 40 days ago, 2: failed 40 days ago,
    // 3: sent an hour ago, 4: queued 40 days ago.
    let old = "'2000-01-01 00:00:00+00:00'";
    let fresh = chrono::Utc::now() - chrono::Duration::hours(1);
    let fresh = format!("'{}'", fresh.format("%Y-%m-%d %H:%M:%S+00:00"));
    for (id, status, at) in [
        (ids[0], "sent", old),
        (ids[1], "cancelled", old),
        (ids[2], "failed", old),
        (ids[3], "sent", fresh.as_str()),
        (ids[4], "queued", old),
    ] {
        execute(
            db,
            &format!(
                "UPDATE outbox_message SET status = '{status}', updated_at = {at}, next_attempt_at = '2999-01-01 00:00:00+00:00' WHERE id = {id}"
            ),
        )
        .await;
    }
    let outbox = mailroom.outbox();
    // Unfinished statuses are refused.
    assert!(matches!(
        outbox
            .purge(&[OutboxStatus::Queued], chrono::Utc::now(), None)
            .await,
        Err(Error::NotPurgeable { .. })
    ));
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    assert_eq!(
        outbox
            .purge(&[OutboxStatus::Failed], day_ago, None)
            .await
            .unwrap(),
        1
    );
    assert!(outbox.get(ids[2]).await.is_err());

    // The agent applies the retention setting: sent and cancelled older than 30 days.
    let agent = Agent::new(
        mailroom.clone(),
        AgentOptions {
            once: true,
            poll_interval: Duration::from_millis(10),
            ..AgentOptions::default()
        },
    );
    let summary = agent.run(std::future::pending()).await.unwrap();
    assert_eq!(summary.purged, 2, "{summary:?}");
    let left: Vec<i64> = outbox
        .list(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, [ids[4], ids[3]]);
}

/// The size limit is exact and counts the `Bcc` header that the Graph and Gmail APIs are
/// sent: on the Graph route without large attachments, a message of exactly what one
/// request carries is taken and one byte more is refused, and a message that fits only
/// without its `Bcc` header is refused with its size counting the header.
#[tokio::test]
async fn the_size_limit_is_exact_and_counts_the_bcc_header() {
    let db = TestDatabase::new(mailroom_testkit::Backend::Sqlite).await;
    let key = KeyRing::generate();
    let mut options = MailroomOptions::new(key.clone());
    options.resolution_cache_ttl = Duration::ZERO;
    let mailroom = Mailroom::with_connection(db.db.clone(), options)
        .await
        .unwrap();
    Accounts::new(&db.db, &key)
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::Microsoft),
                route: Some(mailroom_model::Route::Graph),
                smtp_user: Some("sa@contoso.example".to_owned()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    // A text of `lines` lines of 60 characters and a last line of `tail` (at most 61):
    // plain ASCII in short lines is sent as is, so each character is one byte.
    let request = |lines: usize, tail: usize, bcc: bool| {
        let text = format!("{}\r\n", "x".repeat(60)).repeat(lines) + &"y".repeat(tail);
        let mut request = SendRequest::new(
            AUTOMATION_AGENT,
            MessageDraft {
                to: vec!["buyer@example.com".to_owned()],
                bcc: if bcc {
                    vec!["archive@example.com".to_owned()]
                } else {
                    Vec::new()
                },
                subject: "Statement".to_owned(),
                text: Some(text),
                ..MessageDraft::default()
            },
        );
        request.account = Some(AccountRef::Company);
        request
    };
    let size = |lines, tail| {
        let mailroom = &mailroom;
        async move {
            mailroom
                .prepare_preview(&request(lines, tail, false))
                .await
                .unwrap()
                .size as u64
        }
    };
    let limit = mailroom::GRAPH_ONE_REQUEST;
    let fixed = size(1, 0).await - 62;
    assert_eq!(size(1, 1).await, fixed + 63, "one byte per character");
    let lines = ((limit - fixed) / 62) as usize;
    let tail = ((limit - fixed) % 62) as usize;
    assert_eq!(size(lines, tail).await, limit, "exactly the limit is taken");

    let refused = |lines, tail, bcc| {
        let mailroom = &mailroom;
        async move {
            match mailroom.prepare_preview(&request(lines, tail, bcc)).await {
                Err(Error::NeedsLargeAttachments { size, limit, .. }) => (size, limit),
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(refused(lines, tail + 1, false).await, (limit + 1, limit));
    let (with_bcc, _) = refused(lines, tail, true).await;
    assert!(with_bcc > limit, "{with_bcc}");
    db.finish().await;
}
