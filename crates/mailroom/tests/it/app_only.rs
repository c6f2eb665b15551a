//! App-only accounts end to end (issue "Unattended sending without a person's sign-in"):
//! no one signs in; the facade sends with the app's own credential through the sandbox's
//! look-alikes, which hold app tokens to Exchange's and Google's rules — Graph's
//! application `Mail.Send` within the app's management scope (RBAC for Applications),
//! SMTP's `SMTP.SendAsApp` with `FullAccess` on the mailbox (XOAUTH2 `user=` the mailbox),
//! Google's service account acting as the mailbox. A mailbox the app may not use fails
//! with the Exchange administrator's remedy, and the agent holds such messages.

use std::sync::Arc;
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, AccountRef, Agent, AgentOptions, Mailroom, MailroomOptions, MessageDraft,
    OutboxStatus, Provider, Remedy, SendRequest, TransportKind,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Auth, Route, Secret, ServerSettingsChange, TlsStartup};
use mailroom_sandbox::{AppOnlyCredentials, ReceivedBy, Sandbox, SandboxConfig};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::app_only::{AppCertificate, ServiceAccountKey};
use mailroom_tokens::registration::{AppChange, AppCredential, Apps};

const CLIENT_ID: &str = "mailroom-app-only-client";
const INVOICES: &str = "invoices@contoso.example";
const OTHER: &str = "payroll@contoso.example";

struct AppWorld {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    db: TestDatabase,
    key: mailroom_crypto::KeyRing,
    credentials: AppOnlyCredentials,
}

impl AppWorld {
    async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxConfig::new(dir.path().join("sandbox")))
            .await
            .unwrap();
        let credentials = sandbox.app_only_credentials(CLIENT_ID);
        Self {
            _dir: dir,
            db: TestDatabase::new(backend).await,
            key: mailroom_crypto::KeyRing::generate(),
            sandbox,
            credentials,
        }
    }

    async fn set_app(&self, provider: Provider, credential: AppCredential) {
        Apps::new(&self.db.db, &self.key)
            .set(
                provider,
                AppChange {
                    client_id: Some(match provider {
                        Provider::Google => "sandbox-service-account".to_owned(),
                        _ => CLIENT_ID.to_owned(),
                    }),
                    tenant: (provider == Provider::Microsoft)
                        .then(|| self.sandbox.endpoints().tenant_id.clone()),
                    overrides: mailroom_testkit::sandbox::endpoint_overrides(
                        &self.sandbox,
                        provider,
                    ),
                    app_credential: Some(Some(credential)),
                    ..AppChange::default()
                },
            )
            .await
            .unwrap();
    }

    fn certificate(&self) -> AppCredential {
        AppCredential::Certificate(Arc::new(
            AppCertificate::from_pem(&self.credentials.certificate_pem).unwrap(),
        ))
    }

    fn secret(&self) -> AppCredential {
        AppCredential::ClientSecret(Secret::new(self.credentials.client_secret.clone()))
    }

    fn service_account(&self) -> AppCredential {
        AppCredential::ServiceAccount(Arc::new(
            ServiceAccountKey::from_json(&self.credentials.service_account_json).unwrap(),
        ))
    }

    async fn mailroom(&self) -> Arc<Mailroom> {
        let mut options = MailroomOptions::new(self.key.clone());
        options.extra_root_pem = Some(self.sandbox.ca_pem().as_bytes().to_vec());
        options.retry = crate::support::quick_retry();
        Arc::new(
            Mailroom::with_connection(self.db.db.clone(), options)
                .await
                .unwrap(),
        )
    }

    async fn add_account(&self, change: ServerSettingsChange) -> i64 {
        Accounts::new(&self.db.db, &self.key)
            .add_user_account(&change, None)
            .await
            .unwrap()
            .account
            .id
    }

    fn smtp_account(&self, mailbox: &str) -> ServerSettingsChange {
        let endpoints = self.sandbox.endpoints();
        ServerSettingsChange {
            provider: Some(Provider::Microsoft),
            smtp_user: Some(mailbox.to_owned()),
            host: Some(endpoints.smtp_host.clone()),
            port: Some(endpoints.smtp_starttls_port),
            tls_startup: Some(TlsStartup::StartTls),
            auth: Some(Auth::AppOnly),
            ..ServerSettingsChange::default()
        }
    }

    fn client_credentials(&self) -> u64 {
        self.sandbox.authority().stats().client_credentials
    }
}

fn graph_account(mailbox: &str) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        smtp_user: Some(mailbox.to_owned()),
        route: Some(Route::Graph),
        auth: Some(Auth::AppOnly),
        ..ServerSettingsChange::default()
    }
}

/// One pass of the automation agent (which never prompts) over the outbox.
async fn agent_once(mailroom: &Arc<Mailroom>) {
    Agent::new(
        mailroom.clone(),
        AgentOptions {
            concurrency: 1,
            once: true,
            poll_interval: Duration::from_millis(20),
            ..AgentOptions::default()
        },
    )
    .run(std::future::pending())
    .await
    .unwrap();
}

/// Queues a message for `account` and runs the agent once: its final status.
async fn through_the_agent(mailroom: &Arc<Mailroom>, account: i64, subject: &str) -> OutboxStatus {
    let queued = mailroom.queue(request(account, subject)).await.unwrap();
    agent_once(mailroom).await;
    mailroom.outbox().get(queued).await.unwrap().status
}

fn request(account: i64, subject: &str) -> SendRequest<'static> {
    let mut request = SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            to: vec!["buyer@example.com".to_owned()],
            subject: subject.to_owned(),
            text: Some("Your invoice is attached.".to_owned()),
            ..MessageDraft::default()
        },
    );
    request.account = Some(AccountRef::User(account));
    request
}

/// The Graph route with a certificate: sent as the mailbox with one token request for
/// every send (the token is the app's, cached); after the app's scope is narrowed to
/// another mailbox, Graph's 403 fails the send with the RBAC remedy naming the app and
/// the mailbox — no sign-in is offered — and the agent holds the queued message.
async fn graph_app_only_sends_and_names_the_scope_remedy(backend: Backend) {
    let world = AppWorld::new(backend).await;
    world
        .set_app(Provider::Microsoft, world.certificate())
        .await;
    let id = world.add_account(graph_account(INVOICES)).await;
    let mailroom = world.mailroom().await;
    for subject in ["Invoice 1", "Invoice 2"] {
        let receipt = mailroom.send(request(id, subject)).await.unwrap();
        assert_eq!(receipt.transport, TransportKind::GraphApi);
        assert_eq!(receipt.account_user, INVOICES);
    }
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].received_by, ReceivedBy::GraphMime);
    assert_eq!(stored[0].authenticated_as, INVOICES);
    assert_eq!(
        world.client_credentials(),
        1,
        "one app token for both sends"
    );
    // The lists show the app's token as the app-only account's.
    let owned = mailroom::owned_tokens(&world.db.db, &world.key)
        .await
        .unwrap();
    assert_eq!(owned.len(), 1, "{owned:?}");
    assert_eq!(owned[0].accounts, vec![AccountRef::User(id)]);
    assert_eq!(
        world.sandbox.authority().stats().codes_issued,
        0,
        "no sign-in"
    );
    assert_eq!(
        through_the_agent(&mailroom, id, "Invoice 2b").await,
        OutboxStatus::Sent
    );
    assert_eq!(world.sandbox.mailbox().messages().len(), 3);
    assert_eq!(
        world.client_credentials(),
        1,
        "one app token for every send"
    );

    world
        .sandbox
        .authority()
        .restrict_app_graph_mailboxes(CLIENT_ID, &[OTHER]);
    let error = mailroom.send(request(id, "Invoice 3")).await.unwrap_err();
    assert_eq!(
        error.remedy(),
        Some(Remedy::GrantAppMailboxAccess {
            client_id: Some(CLIENT_ID.to_owned()),
            mailbox: Some(INVOICES.to_owned()),
            route: Route::Graph,
        }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("Application Mail.Send"),
        "{error}"
    );
    assert_eq!(world.sandbox.mailbox().messages().len(), 3);
    assert_eq!(
        through_the_agent(&mailroom, id, "Invoice 4").await,
        OutboxStatus::Held
    );
    world.db.finish().await;
}

#[tokio::test]
async fn graph_app_only_on_sqlite() {
    graph_app_only_sends_and_names_the_scope_remedy(Backend::Sqlite).await;
}

#[tokio::test]
async fn graph_app_only_on_postgres() {
    graph_app_only_sends_and_names_the_scope_remedy(Backend::Postgres).await;
}

/// The SMTP route with a client secret: XOAUTH2 `user=` the mailbox with the app's
/// Exchange Online token, accepted where the app has FullAccess; another mailbox gets
/// `535 5.7.3` even after a fresh token, and the remedy is the service principal's
/// FullAccess.
#[tokio::test]
async fn smtp_app_only_sends_as_a_mailbox_with_full_access() {
    let world = AppWorld::new(Backend::Sqlite).await;
    world.set_app(Provider::Microsoft, world.secret()).await;
    world
        .sandbox
        .authority()
        .grant_app_smtp_mailbox(CLIENT_ID, INVOICES);
    let invoices = world.add_account(world.smtp_account(INVOICES)).await;
    let payroll = world.add_account(world.smtp_account(OTHER)).await;
    let mailroom = world.mailroom().await;

    let receipt = mailroom.send(request(invoices, "Invoice 1")).await.unwrap();
    assert_eq!(receipt.transport, TransportKind::Smtp);
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].received_by, ReceivedBy::SmtpStartTls);
    assert_eq!(stored[0].authenticated_as, INVOICES);
    assert_eq!(
        through_the_agent(&mailroom, invoices, "Invoice 2").await,
        OutboxStatus::Sent
    );

    let error = mailroom
        .send(request(payroll, "Payslip"))
        .await
        .unwrap_err();
    assert_eq!(
        error.remedy(),
        Some(Remedy::GrantAppMailboxAccess {
            client_id: Some(CLIENT_ID.to_owned()),
            mailbox: Some(OTHER.to_owned()),
            route: Route::Smtp,
        }),
        "{error:?}"
    );
    assert!(error.to_string().contains("5.7.3"), "{error}");
    assert!(error.to_string().contains("FullAccess"), "{error}");
    // The first token, then one fresh token for the refused mailbox's retry.
    assert_eq!(world.client_credentials(), 2);
    assert_eq!(world.sandbox.mailbox().messages().len(), 2);
    world.db.finish().await;
}

/// A Google service account with domain-wide delegation: a token acting as each mailbox,
/// sent through the Gmail API as that mailbox.
#[tokio::test]
async fn a_service_account_sends_through_gmail_as_the_mailbox() {
    let world = AppWorld::new(Backend::Sqlite).await;
    world
        .set_app(Provider::Google, world.service_account())
        .await;
    let id = world
        .add_account(ServerSettingsChange {
            provider: Some(Provider::Google),
            smtp_user: Some("ann@example.com".to_owned()),
            auth: Some(Auth::AppOnly),
            ..ServerSettingsChange::default()
        })
        .await;
    let mailroom = world.mailroom().await;
    let receipt = mailroom.send(request(id, "Statement")).await.unwrap();
    assert_eq!(receipt.transport, TransportKind::GmailApi);
    assert_eq!(
        through_the_agent(&mailroom, id, "Statement 2").await,
        OutboxStatus::Sent
    );
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|message| message.authenticated_as == "ann@example.com")
    );
    world.db.finish().await;
}

/// A refused app credential (a secret the app does not have) holds the agent's message
/// with the provider's reason and the remedy to set the credential again; it is not
/// failed, and no sign-in is asked.
#[tokio::test]
async fn a_refused_credential_holds_the_message() {
    let world = AppWorld::new(Backend::Sqlite).await;
    world
        .set_app(
            Provider::Microsoft,
            AppCredential::ClientSecret(Secret::new("not-the-apps-secret")),
        )
        .await;
    let id = world.add_account(graph_account(INVOICES)).await;
    let mailroom = world.mailroom().await;
    let error = mailroom.send(request(id, "Invoice 1")).await.unwrap_err();
    assert!(error.needs_app_credential(), "{error:?}");
    assert!(!error.needs_sign_in());
    assert_eq!(
        error.remedy(),
        Some(Remedy::SetAppCredential {
            provider: Provider::Microsoft
        })
    );
    let queued = mailroom.queue(request(id, "Invoice 2")).await.unwrap();
    agent_once(&mailroom).await;
    let held = mailroom.outbox().get(queued).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held, "{held:?}");
    assert!(
        held.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("own credentials were refused"),
        "{held:?}"
    );
    assert!(world.sandbox.mailbox().messages().is_empty());
    world.db.finish().await;
}

/// The doctor shows the app's certificate with its expiry: ok while more than 30 days
/// remain, a warning (with the remedy to set a new one) within 30 days, a problem once
/// expired. The test certificate expires 2126-11-08 04:28:20 UTC; the clock is moved.
#[tokio::test]
async fn the_doctor_warns_thirty_days_before_the_certificate_expires() {
    use chrono::TimeZone;
    let world = AppWorld::new(Backend::Sqlite).await;
    world
        .set_app(Provider::Microsoft, world.certificate())
        .await;
    world.add_account(graph_account(INVOICES)).await;
    let expiry = chrono::Utc
        .with_ymd_and_hms(2126, 11, 8, 4, 28, 20)
        .unwrap();
    for (before_expiry, expected) in [
        (chrono::Duration::days(31), mailroom::CheckStatus::Ok),
        (chrono::Duration::days(29), mailroom::CheckStatus::Warning),
        (
            chrono::Duration::seconds(-1),
            mailroom::CheckStatus::Problem,
        ),
    ] {
        let clock = Arc::new(mailroom_model::ManualClock::new(
            (expiry - before_expiry).into(),
        ));
        let mut options = MailroomOptions::new(world.key.clone());
        options.clock = clock;
        let mailroom = Mailroom::with_connection(world.db.db.clone(), options)
            .await
            .unwrap();
        let report = mailroom.doctor(mailroom::DoctorOptions::default()).await;
        let app = report
            .checks
            .iter()
            .find(|check| check.name == "app microsoft")
            .unwrap();
        assert_eq!(app.status, expected, "{app:?}");
        assert!(
            app.detail.contains("app-only: certificate x5t#S256"),
            "{app:?}"
        );
        match expected {
            mailroom::CheckStatus::Ok => assert_eq!(app.remedy, None),
            _ => assert_eq!(
                app.remedy,
                Some(Remedy::SetAppCredential {
                    provider: Provider::Microsoft
                })
            ),
        }
        if expected == mailroom::CheckStatus::Warning {
            assert!(app.detail.contains("expires in 29 day(s)"), "{app:?}");
            assert!(report.all_ok(), "a warning does not fail the doctor");
        }
    }
    world.db.finish().await;
}

/// An app-only Graph account's outages and throttling are the provider's, not a mailbox
/// the app may not use: one `503` is tried again within the agent's send, which delivers;
/// an outage that lasts ends the send after the retry policy's four attempts; a `429`
/// stays a throttling (the agent pauses the mailbox and holds the message). None of them
/// gets the Exchange administrator's mailbox-access remedy.
#[tokio::test]
async fn outages_and_throttling_of_an_app_only_account_are_not_a_refused_mailbox() {
    let world = AppWorld::new(Backend::Sqlite).await;
    world
        .set_app(Provider::Microsoft, world.certificate())
        .await;
    let id = world.add_account(graph_account(INVOICES)).await;
    let mailroom = world.mailroom().await;
    let graph = world.sandbox.graph();
    let not_refused = |error: &mailroom::Error| {
        !matches!(error.remedy(), Some(Remedy::GrantAppMailboxAccess { .. }))
            && !error.needs_sign_in()
    };

    graph.fail_next_call_unavailable();
    assert_eq!(
        through_the_agent(&mailroom, id, "Invoice 1").await,
        OutboxStatus::Sent
    );
    assert_eq!(world.sandbox.mailbox().messages().len(), 1);

    for _ in 0..4 {
        graph.fail_next_call_unavailable();
    }
    let error = mailroom.send(request(id, "Invoice 2")).await.unwrap_err();
    assert!(
        matches!(error, mailroom::Error::Transport { attempts: 4, .. }),
        "{error:?}"
    );
    assert!(error.is_transient() && not_refused(&error), "{error:?}");

    // Its 30 s are longer than a send waits (quick_retry's 50 ms): given back at once.
    graph.throttle_next_call(30);
    let error = mailroom.send(request(id, "Invoice 3")).await.unwrap_err();
    assert!(error.is_throttled() && not_refused(&error), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));

    graph.throttle_next_call(30);
    let queued = mailroom.queue(request(id, "Invoice 4")).await.unwrap();
    agent_once(&mailroom).await;
    let held = mailroom.outbox().get(queued).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held, "{held:?}");
    let reason = held.last_error.unwrap_or_default();
    assert!(
        reason.contains(&format!("sending from {INVOICES} paused until")),
        "{reason}"
    );
    assert!(!reason.contains("Application Mail.Send"), "{reason}");
    assert_eq!(world.sandbox.mailbox().messages().len(), 1);
    world.db.finish().await;
}
