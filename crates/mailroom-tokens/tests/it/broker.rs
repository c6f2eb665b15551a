//! The broker: cached tokens, the refresh storm, revoked and missing tokens, the sign-in
//! policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::{ManualClock, MockSignInPrompt, Provider, SystemClock};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{BrokerConfig, OAuthHttp, SignInPolicy, TokenBroker, storage::TokenStore};
use sea_orm::{ConnectionTrait, Statement};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, microsoft_token_body, signed_in, target};

const ADDRESS: &str = "sa@contoso.example";

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
    let key = support::expired_sign_in(
        &db,
        &server,
        Provider::Microsoft,
        ADDRESS,
        "at-expired",
        "rt-before",
    )
    .await;
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
    TokenStore::new(&db.db, &key)
        .save_sign_in(
            &signed_in(Provider::Microsoft, ADDRESS, "at-valid", Some("rt")),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let broker = support::broker(&db, &key);
    let first = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    assert_eq!(first.secret.expose(), "at-valid");
    // With the row gone, only the in-memory cache can answer.
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "DELETE FROM oauth_token".to_owned(),
        ))
        .await
        .unwrap();
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
    TokenStore::new(&db.db, &key)
        .save_sign_in(
            &signed_in(Provider::Microsoft, ADDRESS, "at-rejected", Some("rt-1")),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
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
    let key = support::expired_sign_in(
        &db,
        &server,
        Provider::Microsoft,
        ADDRESS,
        "at-expired",
        "rt",
    )
    .await;
    let other = TokenBroker::new(
        db.db.clone(),
        key.clone(),
        OAuthHttp::new(),
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
    let waiting = TokenBroker::new(
        db.db.clone(),
        key.clone(),
        OAuthHttp::new(),
        clock.clone(),
        config,
    );
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
