//! The broker: cached tokens, the refresh storm, revoked and missing tokens, the sign-in
//! policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::{ManualClock, MockSignInPrompt, Provider, SystemClock};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::storage::{TokenKey, TokenStatus, TokenStore};
use mailroom_tokens::{BrokerConfig, SignInPolicy};
use sea_orm::{ConnectionTrait, Statement};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, microsoft_token_body, signed_in, target};

const ADDRESS: &str = "sa@contoso.example";

/// Registers Microsoft's app at `server` under a new key and stores an expired sign-in for
/// [`ADDRESS`] (access token `at-expired`) whose refresh token is `refresh`. Returns the key.
async fn expired_microsoft(db: &TestDatabase, server: &MockServer, refresh: &str) -> KeyRing {
    support::expired_sign_in(
        db,
        server,
        Provider::Microsoft,
        ADDRESS,
        "at-expired",
        refresh,
    )
    .await
}

async fn storm(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_token_body(
                    "at-after-storm",
                    "rt-after-storm",
                    None,
                ))
                // Keep the refresh in flight while the other callers pile up behind it.
                .set_delay(std::time::Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(backend).await;
    let key = expired_microsoft(&db, &server, "rt-before").await;
    let broker = Arc::new(support::broker(&db, &key));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            broker
                .access_token(&target(Provider::Microsoft, ADDRESS))
                .await
        }));
    }
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!(token.secret.expose(), "at-after-storm");
        assert_eq!(token.version, 2);
    }
    drop(server);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_refresh_once_on_sqlite() {
    storm(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_refresh_once_on_postgres() {
    storm(Backend::Postgres).await;
}

#[tokio::test]
async fn a_valid_token_needs_no_network_and_a_warm_one_no_database() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    support::store_valid(
        &db,
        &key,
        &signed_in(Provider::Microsoft, ADDRESS, "at-valid", Some("rt")),
    )
    .await;
    let broker = support::broker(&db, &key);
    let first = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    assert_eq!(first.secret.expose(), "at-valid");
    // With the row gone, only the in-memory cache can answer.
    support::delete_token_rows(&db).await;
    let second = broker
        .access_token(&target(Provider::Microsoft, "SA@Contoso.Example"))
        .await
        .unwrap();
    assert_eq!(second.secret.expose(), "at-valid");
    assert_eq!(second.version, first.version);
    db.finish().await;
}

#[tokio::test]
async fn a_missing_token_says_what_the_administrator_must_do() {
    let server = MockServer::start().await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let broker = support::broker(&db, &key);
    let error = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Failed to obtain an access token for sa@contoso.example (microsoft): no one has signed in for this address yet; an administrator must sign in for account 4"
    );
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::SignIn {
            account: Some(mailroom_model::AccountRef::User(4)),
            browser_only: false
        })
    );
    // Not allowed to sign in: the same error, the prompt untouched.
    let mut prompt = MockSignInPrompt::new();
    prompt.expect_sign_in().never();
    let policy = SignInPolicy {
        prompt: Some(&prompt),
        can_sign_in_when_sending: false,
    };
    let error = broker
        .access_token_or_sign_in(&target(Provider::Microsoft, ADDRESS), policy)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Failed to obtain an access token")
    );
    let error = broker
        .access_token_or_sign_in(&target(Provider::Microsoft, ADDRESS), SignInPolicy::NEVER)
        .await
        .unwrap_err();
    assert!(error.needs_sign_in());
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_caller_signs_in_and_continues() {
    let server = MockServer::start().await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let broker = support::broker(&db, &key);
    let mut prompt = MockSignInPrompt::new();
    let database = db.db.clone();
    let prompt_key = key.clone();
    prompt
        .expect_sign_in()
        .withf(|request| {
            request.address == ADDRESS && request.reason.contains("no one has signed in")
        })
        .times(1)
        .returning(move |_| {
            // What the CLI's prompt does after a browser sign-in: store the tokens.
            let database = database.clone();
            let key = prompt_key.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    TokenStore::new(&database, &key)
                        .save_sign_in(
                            &signed_in(Provider::Microsoft, ADDRESS, "at-prompted", Some("rt")),
                            chrono::Utc::now(),
                        )
                        .await
                        .unwrap();
                })
            });
            Ok(())
        });
    let policy = SignInPolicy {
        prompt: Some(&prompt),
        can_sign_in_when_sending: true,
    };
    let token = broker
        .access_token_or_sign_in(&target(Provider::Microsoft, ADDRESS), policy)
        .await
        .unwrap();
    assert_eq!(token.secret.expose(), "at-prompted");
    db.finish().await;
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_even_before_it_expires() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-replacement",
                "rt-2",
                None,
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    support::store_valid(
        &db,
        &key,
        &signed_in(Provider::Microsoft, ADDRESS, "at-rejected", Some("rt-1")),
    )
    .await;
    let broker = support::broker(&db, &key);
    let rejected = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    let replacement = broker
        .refresh_rejected(&target(Provider::Microsoft, ADDRESS), rejected.version)
        .await
        .unwrap();
    assert_eq!(replacement.secret.expose(), "at-replacement");
    assert!(replacement.version > rejected.version);
    // A second caller that saw the same rejected version gets the replacement, no refresh.
    let again = broker
        .refresh_rejected(&target(Provider::Microsoft, ADDRESS), rejected.version)
        .await
        .unwrap();
    assert_eq!(again.secret.expose(), "at-replacement");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_another_process_holds_too_long_is_given_up_as_transient() {
    // The other process's refresh hangs at the token endpoint, holding a ten-minute lease
    // (its lease setting is longer than this process's patience).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_token_body("at-late", "rt-late", None))
                .set_delay(std::time::Duration::from_secs(60)),
        )
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = expired_microsoft(&db, &server, "rt").await;
    let other = support::broker_with(
        &db,
        &key,
        Arc::new(SystemClock),
        BrokerConfig {
            lease: Duration::from_secs(600),
            ..support::test_config()
        },
    );
    let other = tokio::spawn(async move {
        other
            .access_token(&target(Provider::Microsoft, ADDRESS))
            .await
    });
    // Its request reaching the endpoint shows it holds the lease.
    let held = tokio::time::timeout(Duration::from_secs(10), async {
        while server.received_requests().await.unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(held.is_ok(), "the other process never asked for a token");

    // This process waits while its own clock passes its patience (and never asks itself).
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let config = support::test_config();
    let patience = config.effective_wait_for_other_refresh();
    assert!(patience < Duration::from_secs(600));
    let waiting = support::broker_with(&db, &key, clock.clone(), config);
    let mut waiting = tokio::spawn(async move {
        waiting
            .access_token(&target(Provider::Microsoft, ADDRESS))
            .await
    });
    let mut advanced = Duration::ZERO;
    let result = loop {
        assert!(
            advanced <= patience * 4,
            "still waiting after {advanced:?} of its clock"
        );
        if let Ok(joined) = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await {
            break joined.unwrap();
        }
        clock.advance(Duration::from_secs(10));
        advanced += Duration::from_secs(10);
    };
    let error = result.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("another process has been refreshing"),
        "{error}"
    );
    // It gave up only once its patience had passed, without a request of its own.
    assert!(advanced > patience, "gave up after {advanced:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    other.abort();
    db.finish().await;
}

/// A token endpoint that answers a refresh (with `at-ours` and the rotated `rt-ours`)
/// only once the test lets it, so the test can change the row while the refresh is in
/// flight. wiremock serves from its own thread, so holding the answer blocks no test.
struct HeldRefresh {
    arrived: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl wiremock::Respond for HeldRefresh {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let _ = self.arrived.lock().unwrap().send(());
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20));
        ResponseTemplate::new(200).set_body_json(microsoft_token_body("at-ours", "rt-ours", None))
    }
}

/// What happens to the row while this process's refresh is in flight.
enum MidRefresh {
    /// A key rotation re-seals it: the same tokens, a new version.
    Resealed,
    /// Another process (whose clock saw the lease lapse) refreshed it.
    RefreshedElsewhere,
    /// Another process found the refresh token refused and marked the row revoked.
    Revoked,
}

/// Refreshes the expired sign-in of `ADDRESS` while `change` happens to its row; returns
/// what the broker returned and the row afterwards.
async fn refresh_while(
    change: MidRefresh,
) -> (
    mailroom_tokens::Result<mailroom_tokens::AccessToken>,
    mailroom_tokens::storage::StoredToken,
) {
    let (arrived, arrival) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(HeldRefresh {
            arrived: std::sync::Mutex::new(arrived),
            release: std::sync::Mutex::new(released),
        })
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = expired_microsoft(&db, &server, "rt-before").await;
    let broker = support::broker(&db, &key);
    let refresh = tokio::spawn(async move {
        broker
            .access_token(&target(Provider::Microsoft, ADDRESS))
            .await
    });
    let asked = tokio::task::spawn_blocking(move || arrival.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        asked.is_ok(),
        "the refresh never reached the token endpoint"
    );
    let store = TokenStore::new(&db.db, &key);
    match change {
        MidRefresh::Resealed => {
            assert_eq!(store.reseal(key.primary()).await.unwrap(), 1);
        }
        MidRefresh::RefreshedElsewhere => {
            store
                .save_sign_in(
                    &signed_in(Provider::Microsoft, ADDRESS, "at-other", Some("rt-other")),
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
        }
        MidRefresh::Revoked => {
            db.db
                .execute(Statement::from_string(
                    db.db.get_database_backend(),
                    "UPDATE oauth_token SET status = 'revoked', version = version + 1".to_owned(),
                ))
                .await
                .unwrap();
        }
    }
    release.send(()).unwrap();
    let result = refresh.await.unwrap();
    let row = store
        .load(&TokenKey::new(
            Provider::Microsoft,
            "organizations",
            ADDRESS,
        ))
        .await
        .unwrap()
        .unwrap();
    db.finish().await;
    (result, row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_survives_a_reseal_in_flight_and_keeps_the_rotated_refresh_token() {
    let (result, row) = refresh_while(MidRefresh::Resealed).await;
    assert_eq!(result.unwrap().secret.expose(), "at-ours");
    // Microsoft's rotated refresh token is stored, not lost with the reseal.
    assert_eq!(row.refresh_token.unwrap().expose(), "rt-ours");
    assert_eq!(row.access_token.expose(), "at-ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_another_process_finished_first_gives_way_to_its_token() {
    let (result, row) = refresh_while(MidRefresh::RefreshedElsewhere).await;
    assert_eq!(result.unwrap().secret.expose(), "at-other");
    assert_eq!(row.refresh_token.unwrap().expose(), "rt-other");
    assert_eq!(row.access_token.expose(), "at-other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_row_was_revoked_meanwhile_asks_for_a_sign_in() {
    let (result, row) = refresh_while(MidRefresh::Revoked).await;
    let error = result.unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    assert!(
        matches!(row.status, TokenStatus::Revoked { .. }),
        "{:?}",
        row.status
    );
}

#[tokio::test]
async fn a_refused_refresh_token_forgets_its_own_cached_token_and_no_other() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(support::ms_error(
            "invalid_grant",
            70000,
            "The provided value for the 'refresh_token' is not valid.",
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    const OTHER: &str = "orders@contoso.example";
    for (address, access) in [(ADDRESS, "at-refused"), (OTHER, "at-other")] {
        support::store_valid(
            &db,
            &key,
            &signed_in(Provider::Microsoft, address, access, Some("rt")),
        )
        .await;
    }
    let broker = support::broker(&db, &key);
    let refused = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    broker
        .access_token(&target(Provider::Microsoft, OTHER))
        .await
        .unwrap();
    let error = broker
        .refresh_rejected(&target(Provider::Microsoft, ADDRESS), refused.version)
        .await
        .unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    // The row is marked revoked in a new version (a process that read the old one cannot
    // write over the revocation).
    let row = TokenStore::new(&db.db, &key)
        .load(&TokenKey::new(
            Provider::Microsoft,
            "organizations",
            ADDRESS,
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(row.status, TokenStatus::Revoked { .. }),
        "{:?}",
        row.status
    );
    assert_eq!(row.version, refused.version as i64 + 1);
    // With the rows gone, only the in-memory cache can answer: the other address's token
    // is still there, the refused one's is not.
    support::delete_token_rows(&db).await;
    let other = broker
        .access_token(&target(Provider::Microsoft, OTHER))
        .await
        .unwrap();
    assert_eq!(other.secret.expose(), "at-other");
    let error = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_releases_its_lease_for_the_next_process() {
    // The first process's refresh is refused with an error that is not a revocation; the
    // next process, whose clock never moves (it cannot wait out a lease), refreshes at once.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(support::ms_error(
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid.",
            None,
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_token_body("at-next", "rt-next", None)),
        )
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = expired_microsoft(&db, &server, "rt").await;
    let error = support::broker(&db, &key)
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_scope"), "{error}");
    let next = support::broker_with(
        &db,
        &key,
        Arc::new(ManualClock::new(SystemTime::now())),
        support::test_config(),
    );
    let token = tokio::time::timeout(
        Duration::from_secs(20),
        next.access_token(&target(Provider::Microsoft, ADDRESS)),
    )
    .await
    .expect("the next process waited for a lease nobody holds")
    .unwrap();
    assert_eq!(token.secret.expose(), "at-next");
    db.finish().await;
}

#[tokio::test]
async fn deleting_a_sign_in_returns_it_for_revocation_and_leaves_nothing() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::store_valid(
        &db,
        &key,
        &signed_in(Provider::Microsoft, ADDRESS, "at-gone", Some("rt-gone")),
    )
    .await;
    let store = TokenStore::new(&db.db, &key);
    let token_key = TokenKey::new(Provider::Microsoft, "organizations", ADDRESS);
    let deleted = store.delete(&token_key).await.unwrap().unwrap();
    assert_eq!(deleted.refresh_token.unwrap().expose(), "rt-gone");
    assert!(store.load(&token_key).await.unwrap().is_none());
    assert!(store.delete(&token_key).await.unwrap().is_none());
    db.finish().await;
}
