//! `Mailroom::doctor` against aiosmtpd and wiremock: every check ok, a refresh that works
//! and one that fails, an OAuth account on a server without XOAUTH2, the wrong TLS startup
//! and the Gmail API host. Never sends mail, never authenticates, never shows a token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::TimeZone;
use mailroom::{AccountRef, CheckStatus, DoctorOptions, DoctorReport, Mailroom, Provider, Remedy};
use mailroom_accounts::Accounts;
use mailroom_model::ManualClock;
use mailroom_model::{ServerSettingsChange, TlsStartup};
use mailroom_testkit::Backend;
use mailroom_testkit::smtp::ServerOptions;
use mailroom_tokens::storage::TokenStore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{SA, World, microsoft_invalid_grant, microsoft_token_body, signed_in};

#[track_caller]
fn check<'a>(report: &'a DoctorReport, name: &str) -> &'a mailroom::DoctorCheck {
    report
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#?}"))
}

async fn microsoft_world(smtp: ServerOptions) -> World {
    let world = World::new(Backend::Sqlite, smtp).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
}

#[tokio::test]
async fn every_check_is_ok_for_a_signed_in_microsoft_account() {
    let world = microsoft_world(World::tokens(&[(SA, "at-secret-1")])).await;
    world
        .store_token(Provider::Microsoft, SA, "at-secret-1", false)
        .await;
    let mailroom = world.mailroom().await;
    let report = mailroom.doctor(DoctorOptions::default()).await;
    assert!(report.all_ok(), "{report:#?}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "database",
            "key",
            "root certificate",
            "app microsoft",
            "company account settings",
            "company account token",
            "company account server",
            "company account authentication",
        ]
    );
    // The newest migration, whatever it is called: the database is up to date.
    let newest = mailroom_migrations::schema_version(mailroom.database())
        .await
        .unwrap()
        .unwrap();
    assert!(check(&report, "database").detail.contains(&newest));
    assert!(
        check(&report, "company account token")
            .detail
            .contains("a refresh token is stored")
    );
    let server = check(&report, "company account server");
    // Connected where the settings say: the address is not repeated as the peer.
    assert!(
        server
            .detail
            .starts_with(&format!("127.0.0.1:{}: ", world.smtp.port)),
        "{server:?}"
    );
    assert!(server.detail.contains("STARTTLS"), "{server:?}");
    assert!(server.detail.contains("XOAUTH2"), "{server:?}");
    assert!(
        world.smtp.events_of("auth").is_empty(),
        "doctor authenticated"
    );
    assert!(world.smtp.messages().is_empty(), "doctor sent mail");
    let shown = format!("{report:?}{}", serde_json::to_string(&report).unwrap());
    assert!(!shown.contains("at-secret-1") && !shown.contains("refresh-token-before"));
    world.finish().await;
}

#[tokio::test]
async fn refresh_proves_the_refresh_works() {
    let world = microsoft_world(World::tokens(&[(SA, "at-fresh")])).await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body("at-fresh", "rt-2")),
        )
        .expect(1)
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    let without = mailroom.doctor(DoctorOptions::default()).await;
    let token = check(&without, "company account token");
    assert_eq!(token.status, CheckStatus::Ok, "{token:?}");
    assert!(token.detail.contains("expired"), "{token:?}");

    let report = mailroom
        .doctor(DoctorOptions {
            account: Some(AccountRef::Company),
            refresh: true,
            ..DoctorOptions::default()
        })
        .await;
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Ok, "{token:?}");
    assert!(
        token.detail.starts_with("refreshed for sa@contoso.example"),
        "{token:?}"
    );
    assert!(!format!("{report:?}").contains("at-fresh"));
    world.finish().await;
}

#[tokio::test]
async fn a_refused_refresh_is_a_problem_fixed_by_a_sign_in() {
    let world = microsoft_world(World::tokens(&[(SA, "at-never")])).await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(microsoft_invalid_grant()))
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    let report = mailroom
        .doctor(DoctorOptions {
            refresh: true,
            ..DoctorOptions::default()
        })
        .await;
    assert!(!report.all_ok());
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Problem, "{token:?}");
    assert!(token.detail.starts_with("the refresh failed"), "{token:?}");
    assert!(
        matches!(
            token.remedy,
            Some(Remedy::SignIn {
                account: Some(AccountRef::Company),
                ..
            })
        ),
        "{token:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn an_oauth_account_on_a_server_without_xoauth2_cannot_work() {
    let world = microsoft_world(ServerOptions {
        mechanisms: vec!["PLAIN", "LOGIN"],
        ..World::tokens(&[(SA, "at-1")])
    })
    .await;
    world
        .store_token(Provider::Microsoft, SA, "at-1", false)
        .await;
    let mailroom = world.mailroom().await;
    let report = mailroom.doctor(DoctorOptions::default()).await;
    assert!(!report.all_ok());
    let auth = check(&report, "company account authentication");
    assert_eq!(auth.status, CheckStatus::Problem, "{auth:?}");
    assert!(
        auth.detail.contains("neither XOAUTH2 nor OAUTHBEARER"),
        "{auth:?}"
    );
    assert_eq!(
        auth.remedy,
        Some(Remedy::EditAccount {
            account: Some(AccountRef::Company)
        })
    );
    world.finish().await;
}

#[tokio::test]
async fn implicit_tls_against_a_starttls_port_shows_the_hint() {
    let world = microsoft_world(World::tokens(&[(SA, "at-1")])).await;
    world
        .store_token(Provider::Microsoft, SA, "at-1", false)
        .await;
    Accounts::new(&world.db.db, &world.key)
        .set_company(
            &ServerSettingsChange {
                tls_startup: Some(TlsStartup::Implicit),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap();
    let mailroom = world.mailroom().await;
    let report = mailroom.doctor(DoctorOptions::default()).await;
    let server = check(&report, "company account server");
    assert_eq!(server.status, CheckStatus::Problem, "{server:?}");
    assert!(
        server
            .detail
            .contains("this port speaks plain SMTP first: use STARTTLS (tls startup starttls)"),
        "{server:?}"
    );
    assert_eq!(
        server.remedy,
        Some(Remedy::EditAccount {
            account: Some(AccountRef::Company)
        })
    );
    world.finish().await;
}

#[tokio::test]
async fn a_google_account_checks_the_gmail_api_host_and_a_missing_token() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    world.register_app(Provider::Google).await;
    world.company_google("office@example.com").await;
    let mailroom = world.mailroom().await;
    let report = mailroom.doctor(DoctorOptions::default()).await;
    let server = check(&report, "company account server");
    assert_eq!(server.status, CheckStatus::Ok, "{server:?}");
    assert!(server.detail.contains("answers over http"), "{server:?}");
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Problem, "{token:?}");
    assert!(token.detail.contains("no token stored"), "{token:?}");
    assert!(!report.all_ok());
    world.finish().await;
}

#[tokio::test]
async fn an_app_only_account_has_no_sign_in_to_check() {
    let world = microsoft_world(ServerOptions::default()).await;
    Accounts::new(&world.db.db, &world.key)
        .set_company(
            &ServerSettingsChange {
                auth: Some(mailroom_model::Auth::AppOnly),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap();
    let mailroom = world.mailroom().await;
    let report = mailroom.doctor(DoctorOptions::default()).await;
    // No sign-in is offered: the app's credential is what is missing.
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Problem, "{token:?}");
    assert_eq!(
        token.detail,
        "app-only: the account sends with the microsoft app's own credentials, but the app has none"
    );
    assert_eq!(
        token.remedy,
        Some(Remedy::SetAppCredential {
            provider: Provider::Microsoft
        })
    );
    assert_eq!(
        check(&report, "company account server").status,
        CheckStatus::Ok
    );
    world.finish().await;
}

/// A password account's SMTP user is often a login name (`relay`), not an address: it
/// works, but gives messages no default From, so every send must name one. An address,
/// or no user at all (a relay without AUTH), is fine; OAuth users are addresses already.
#[tokio::test]
async fn a_password_account_whose_user_is_no_address_must_name_its_from() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    let accounts = Accounts::new(&world.db.db, &world.key);
    let mailroom = world.mailroom().await;
    let company = DoctorOptions {
        account: Some(AccountRef::Company),
        ..DoctorOptions::default()
    };
    let mut seen = Vec::new();
    for user in ["relay", "relay@example.com", ""] {
        accounts
            .set_company(&world.smtp_change(Provider::None, user), None)
            .await
            .unwrap();
        let report = mailroom.doctor(company.clone()).await;
        let settings = check(&report, "company account settings").clone();
        if user == "relay" {
            assert!(
                settings
                    .detail
                    .starts_with("the SMTP user `relay` is not an email address"),
                "{settings:?}"
            );
        }
        seen.push((user, settings.status, settings.remedy));
    }
    let edit = Some(Remedy::EditAccount {
        account: Some(AccountRef::Company),
    });
    assert_eq!(
        seen,
        [
            ("relay", CheckStatus::Problem, edit),
            ("relay@example.com", CheckStatus::Ok, None),
            ("", CheckStatus::Ok, None),
        ]
    );
    world.finish().await;
}

/// An access token is good until its expiry and not at it: the doctor judges by the
/// facade's clock, which stands a second before the expiry, then at it.
#[tokio::test]
async fn an_access_token_is_expired_at_its_expiry() {
    let world = microsoft_world(World::tokens(&[(SA, "at-1")])).await;
    let saved_at = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
    // No refresh token: once expired, only a sign-in helps.
    let stored = TokenStore::new(&world.db.db, &world.key)
        .save_sign_in(&signed_in(Provider::Microsoft, SA, "at-1", None), saved_at)
        .await
        .unwrap();
    assert_eq!(stored.expires_at, saved_at + chrono::Duration::hours(1));
    let clock = Arc::new(ManualClock::new(
        SystemTime::from(stored.expires_at) - Duration::from_secs(1),
    ));
    let mut options = world.options();
    options.clock = clock.clone();
    let mailroom = Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    let company = DoctorOptions {
        account: Some(AccountRef::Company),
        ..DoctorOptions::default()
    };

    let report = mailroom.doctor(company.clone()).await;
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Ok, "{token:?}");
    assert!(
        token
            .detail
            .contains("the access token expires 2026-12-03 11:00 UTC (in 0 min); no refresh token"),
        "{token:?}"
    );

    clock.advance(Duration::from_secs(1));
    let report = mailroom.doctor(company).await;
    let token = check(&report, "company account token");
    assert_eq!(token.status, CheckStatus::Problem, "{token:?}");
    assert_eq!(
        token.detail,
        format!(
            "the access token for {SA} expired 2026-12-03 11:00 UTC (0 min ago) and no refresh token is stored"
        )
    );
    assert!(
        matches!(token.remedy, Some(Remedy::SignIn { .. })),
        "{token:?}"
    );
    world.finish().await;
}
