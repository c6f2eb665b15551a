//! The Graph route end to end (issue "Microsoft Graph transport: keep sending when SMTP
//! AUTH is off"): a Microsoft account on `route graph` signs in for Graph's permissions and
//! sends through the sandbox's Graph look-alike, which holds tokens to Graph's documented
//! rules (microsoft-graph-docs `user-sendmail.md` "Permissions": delegated `Mail.Send`,
//! `Mail.ReadWrite` for drafts; Entra's one resource per token request and consent);
//! a sign-in that never granted `Mail.Send` asks for it; a message above one Graph request
//! needs the large attachments option; and Exchange's `535 5.7.139` for SMTP AUTH switched
//! off offers the Graph route (aiosmtpd, scripted).

use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, AccountRef, Attachment, Mailroom, MailroomOptions, MessageDraft, Provider,
    Remedy, SendRequest, TransportKind,
};
use mailroom_accounts::{Accounts, BindingChange};
use mailroom_model::{Route, ServerSettingsChange};
use mailroom_sandbox::{ReceivedBy, Sandbox, SandboxConfig};
use mailroom_testkit::tls_front::TlsFront;
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::registration::{AppChange, Apps, EndpointOverrides};

use crate::support::{SA, World};

const ADDRESS: &str = "sa@contoso.example";

struct GraphWorld {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    db: TestDatabase,
    key: mailroom_crypto::KeyRing,
}

impl GraphWorld {
    async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SandboxConfig::new(dir.path().join("sandbox"));
        config.auto_approve = true;
        let sandbox = Sandbox::start(config).await.unwrap();
        let world = Self {
            _dir: dir,
            db: TestDatabase::new(backend).await,
            key: mailroom_crypto::KeyRing::generate(),
            sandbox,
        };
        Apps::new(&world.db.db, &world.key)
            .set(
                Provider::Microsoft,
                AppChange {
                    client_id: Some("mailroom-test-client".to_owned()),
                    tenant: Some(world.sandbox.endpoints().tenant_id.clone()),
                    overrides: mailroom_testkit::sandbox::endpoint_overrides(
                        &world.sandbox,
                        Provider::Microsoft,
                    ),
                    ..AppChange::default()
                },
            )
            .await
            .unwrap();
        world
    }

    async fn mailroom(&self) -> Mailroom {
        let mut options = MailroomOptions::new(self.key.clone());
        options.extra_root_pem = Some(self.sandbox.ca_pem().as_bytes().to_vec());
        options.retry = crate::support::quick_retry();
        Mailroom::with_connection(self.db.db.clone(), options)
            .await
            .unwrap()
    }

    async fn add_account(&self, change: ServerSettingsChange) -> i64 {
        Accounts::new(&self.db.db, &self.key)
            .add_user_account(&change, None)
            .await
            .unwrap()
            .account
            .id
    }

    async fn edit(&self, id: i64, change: ServerSettingsChange) {
        Accounts::new(&self.db.db, &self.key)
            .edit_user_account(id, &change, BindingChange::Keep)
            .await
            .unwrap();
    }

    /// The facade's browser sign-in for `account`, this test playing the browser (the
    /// sandbox approves at once); returns the authorize URL it opened.
    async fn sign_in(&self, mailroom: &Mailroom, account: AccountRef) -> url::Url {
        let session = mailroom
            .begin_sign_in(
                account,
                mailroom::SignInMode::Browser,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        let mailroom::SignInStep::OpenUrl(url) = session.step().clone() else {
            panic!("a browser sign-in opens an address");
        };
        let browser = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap();
        let opened = url.clone();
        let visit = tokio::spawn(async move { browser.get(url).send().await.unwrap().status() });
        let address = session.finish(mailroom).await.unwrap();
        assert_eq!(address, ADDRESS);
        assert!(visit.await.unwrap().is_success());
        opened
    }
}

fn graph_account(large_attachments: bool) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        smtp_user: Some(ADDRESS.to_owned()),
        route: Some(Route::Graph),
        large_attachments: Some(large_attachments),
        ..ServerSettingsChange::default()
    }
}

fn request(account: i64, subject: &str, attachment: Option<Vec<u8>>) -> SendRequest<'static> {
    let mut request = SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            to: vec!["buyer@example.com".to_owned()],
            bcc: vec!["audit@contoso.example".to_owned()],
            subject: subject.to_owned(),
            text: Some("Your order is confirmed.".to_owned()),
            attachments: attachment
                .map(|bytes| vec![Attachment::new("ledger.bin", bytes)])
                .unwrap_or_default(),
            ..MessageDraft::default()
        },
    );
    request.account = Some(AccountRef::User(account));
    request
}

fn scope_of(url: &url::Url) -> String {
    url.query_pairs()
        .find(|(name, _)| name == "scope")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// 5 MiB of bytes that do not compress: over Graph's 4 MB request once base64-encoded.
fn large_attachment() -> Vec<u8> {
    (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn graph_route_sends_through_graph(backend: Backend) {
    let world = GraphWorld::new(backend).await;
    let id = world.add_account(graph_account(true)).await;
    let mailroom = world.mailroom().await;

    // The sign-in asks Graph's permissions only: one resource per request.
    let opened = world.sign_in(&mailroom, AccountRef::User(id)).await;
    let scope = scope_of(&opened);
    assert!(
        scope.contains("https://graph.microsoft.com/Mail.Send")
            && scope.contains("https://graph.microsoft.com/Mail.ReadWrite"),
        "{scope}"
    );
    assert!(!scope.contains("SMTP.Send"), "{scope}");

    let receipt = mailroom
        .send(request(id, "Order 1001", None))
        .await
        .unwrap();
    assert_eq!(receipt.transport, TransportKind::GraphApi);
    assert_eq!(receipt.account_user, ADDRESS);
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].received_by, ReceivedBy::GraphMime);
    assert_eq!(stored[0].authenticated_as, ADDRESS);
    // Graph answers 202 without a message id: the receipt keeps its request-id.
    assert_eq!(
        receipt.provider_message_id, stored[0].graph_request_id,
        "the receipt names Graph's request-id"
    );
    assert!(receipt.provider_message_id.is_some());
    // The Bcc header is put back for Graph, which reads recipients from the headers.
    assert!(
        stored[0]
            .recipients
            .iter()
            .any(|r| r == "audit@contoso.example"),
        "{:?}",
        stored[0].recipients
    );

    // Over one request: a draft, the attachment through an upload session, then send.
    let ledger = large_attachment();
    let receipt = mailroom
        .send(request(id, "Ledger", Some(ledger.clone())))
        .await
        .unwrap();
    assert_eq!(receipt.transport, TransportKind::GraphApi);
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].received_by, ReceivedBy::GraphDraft);
    let eml = std::fs::read(&stored[1].path).unwrap();
    assert!(
        eml.len() > ledger.len(),
        "the .eml holds the whole attachment"
    );

    // Without the large attachments option, such a message is refused before any request.
    world
        .edit(
            id,
            ServerSettingsChange {
                large_attachments: Some(false),
                ..ServerSettingsChange::default()
            },
        )
        .await;
    mailroom.forget_cached();
    let error = mailroom
        .send(request(id, "Ledger again", Some(ledger)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, mailroom::Error::NeedsLargeAttachments { limit, .. } if limit == mailroom::GRAPH_ONE_REQUEST),
        "{error:?}"
    );
    assert!(error.to_string().contains("Mail.ReadWrite"), "{error}");
    assert_eq!(world.sandbox.mailbox().messages().len(), 2);
}

#[tokio::test]
async fn graph_route_sends_through_graph_on_sqlite() {
    graph_route_sends_through_graph(Backend::Sqlite).await;
}

#[tokio::test]
async fn graph_route_sends_through_graph_on_postgres() {
    graph_route_sends_through_graph(Backend::Postgres).await;
}

/// An account signed in on the SMTP route (Outlook's SMTP.Send only) and then switched to
/// Graph: the refresh for Graph's scopes is refused as never consented, and the send
/// fails asking to sign in again to grant Mail.Send; nothing reaches Graph. After that
/// sign-in the same account sends.
#[tokio::test]
async fn a_sign_in_that_never_granted_mail_send_asks_for_it() {
    let world = GraphWorld::new(Backend::Sqlite).await;
    let endpoints = world.sandbox.endpoints().clone();
    let id = world
        .add_account(ServerSettingsChange {
            provider: Some(Provider::Microsoft),
            smtp_user: Some(ADDRESS.to_owned()),
            host: Some(endpoints.smtp_host.clone()),
            port: Some(endpoints.smtp_starttls_port),
            tls_startup: Some(mailroom_model::TlsStartup::StartTls),
            ..ServerSettingsChange::default()
        })
        .await;
    let mailroom = world.mailroom().await;
    let opened = world.sign_in(&mailroom, AccountRef::User(id)).await;
    assert!(scope_of(&opened).contains("https://outlook.office.com/SMTP.Send"));
    assert!(!scope_of(&opened).contains("graph.microsoft.com"));

    world
        .edit(
            id,
            ServerSettingsChange {
                route: Some(Route::Graph),
                ..ServerSettingsChange::default()
            },
        )
        .await;
    mailroom.forget_cached();
    let error = mailroom
        .send(request(id, "Order 1002", None))
        .await
        .unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    assert!(error.to_string().contains("Mail.Send"), "{error}");
    match error.remedy() {
        Some(Remedy::GrantScope { scope, .. }) => assert!(scope.contains("Mail.Send"), "{scope}"),
        other => panic!("the remedy is {other:?}"),
    }
    assert!(world.sandbox.mailbox().messages().is_empty());

    let opened = world.sign_in(&mailroom, AccountRef::User(id)).await;
    assert!(scope_of(&opened).contains("https://graph.microsoft.com/Mail.Send"));
    let receipt = mailroom
        .send(request(id, "Order 1002", None))
        .await
        .unwrap();
    assert_eq!(receipt.transport, TransportKind::GraphApi);
    assert_eq!(world.sandbox.mailbox().messages().len(), 1);
}

/// Exchange's answer when SMTP AUTH is off for the mailbox or tenant
/// (SupportArticles-docs `smtp-submission-improvements.md`): the send fails at once as an
/// account configuration problem whose remedy names both ways out, enabling SMTP AUTH or
/// the Graph route.
#[tokio::test]
async fn smtp_auth_disabled_offers_the_graph_route() {
    let disabled = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.";
    let mut server = World::tokens(&[(SA, "at-valid")]);
    server.scripted = serde_json::json!({ "AUTH": { "at-valid": disabled } });
    let world = World::new(Backend::Sqlite, server).await;
    world.register_app(Provider::Microsoft).await;
    let user = world.user_microsoft(SA, "sa").await;
    world
        .store_token(Provider::Microsoft, SA, "at-valid", false)
        .await;
    let mailroom = world.mailroom().await;
    let error = mailroom
        .send(request(user, "Order 1003", None))
        .await
        .unwrap_err();
    let transport = error.transport_error().expect("a transport error");
    assert_eq!(
        transport.kind(),
        mailroom_model::TransportErrorKind::AccountConfiguration
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::EnableSmtpAuthOrUseGraph {
            account: Some(AccountRef::User(user)),
            mailbox: Some(SA.to_owned()),
        })
    );
    assert!(world.smtp.messages().is_empty());

    // The doctor sees it too, when asked to authenticate (it QUITs; nothing is sent).
    let report = mailroom
        .doctor(mailroom::DoctorOptions {
            account: Some(AccountRef::User(user)),
            authenticate: true,
            ..mailroom::DoctorOptions::default()
        })
        .await;
    let check = report
        .checks
        .iter()
        .find(|check| check.name == format!("account {user} sign-in to the server"))
        .unwrap_or_else(|| panic!("no authentication check: {:?}", report.checks));
    assert_eq!(check.status, mailroom::CheckStatus::Problem, "{check:?}");
    assert!(check.detail.contains("5.7.139"), "{check:?}");
    assert_eq!(
        check.remedy,
        Some(Remedy::EnableSmtpAuthOrUseGraph {
            account: Some(AccountRef::User(user)),
            mailbox: Some(SA.to_owned()),
        })
    );
    assert!(world.smtp.messages().is_empty());
    world.finish().await;
}

/// The doctor of a Graph-route account checks Graph (not an SMTP server) and its token.
#[tokio::test]
async fn the_doctor_checks_graph_for_a_graph_route_account() {
    let world = GraphWorld::new(Backend::Sqlite).await;
    let id = world.add_account(graph_account(false)).await;
    let mailroom = world.mailroom().await;
    world.sign_in(&mailroom, AccountRef::User(id)).await;
    let report = mailroom
        .doctor(mailroom::DoctorOptions {
            account: Some(AccountRef::User(id)),
            refresh: true,
            authenticate: true,
            ..mailroom::DoctorOptions::default()
        })
        .await;
    let server = report
        .checks
        .iter()
        .find(|check| check.name == format!("account {id} server"))
        .expect("a server check");
    assert_eq!(server.status, mailroom::CheckStatus::Ok, "{server:?}");
    assert!(
        server
            .detail
            .starts_with("route graph: Microsoft Graph at "),
        "{server:?}"
    );
    let token = report
        .checks
        .iter()
        .find(|check| check.name == format!("account {id} token"))
        .expect("a token check");
    assert_eq!(token.status, mailroom::CheckStatus::Ok, "{token:?}");
    assert!(report.all_ok(), "{:?}", report.checks);
    assert!(
        !report
            .checks
            .iter()
            .any(|check| check.name.contains("sign-in to the server")),
        "no SMTP authentication for a Graph-route account"
    );
}

/// The doctor's server check of user account `id`, checking that account only.
async fn server_check(mailroom: &Mailroom, id: i64) -> mailroom::DoctorCheck {
    mailroom
        .doctor(mailroom::DoctorOptions {
            account: Some(AccountRef::User(id)),
            ..mailroom::DoctorOptions::default()
        })
        .await
        .checks
        .into_iter()
        .find(|check| check.name == format!("account {id} server"))
        .expect("a server check")
}

/// A host behind a TLS-inspecting proxy gives that proxy's CA as the extra root
/// certificate: Graph's requests, and the doctor's Graph check, trust it. Graph here is
/// the sandbox behind an HTTPS front with its own CA; a facade without that CA gets a
/// certificate error and sends nothing.
#[tokio::test]
async fn graph_trusts_the_extra_root_certificate_and_no_other() {
    let world = GraphWorld::new(Backend::Sqlite).await;
    let http = world.sandbox.endpoints().http.clone();
    let front = TlsFront::start(
        format!("127.0.0.1:{}", http.port().expect("a port"))
            .parse()
            .unwrap(),
    )
    .await;
    Apps::new(&world.db.db, &world.key)
        .set(
            Provider::Microsoft,
            AppChange {
                overrides: EndpointOverrides {
                    graph_api_url: Some(url::Url::parse(&front.url()).unwrap()),
                    ..EndpointOverrides::default()
                },
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    let id = world.add_account(graph_account(false)).await;
    let mut options = MailroomOptions::new(world.key.clone());
    options.retry = crate::support::quick_retry();
    // The sandbox's CA (for its sign-in pages) and the front's, in one PEM bundle.
    options.extra_root_pem =
        Some(format!("{}{}", world.sandbox.ca_pem(), front.ca_pem).into_bytes());
    let trusting = Mailroom::with_connection(world.db.db.clone(), options.clone())
        .await
        .unwrap();
    world.sign_in(&trusting, AccountRef::User(id)).await;

    let receipt = trusting
        .send(request(id, "Order 1001", None))
        .await
        .unwrap();
    assert_eq!(receipt.transport, TransportKind::GraphApi);
    assert_eq!(world.sandbox.mailbox().messages().len(), 1);
    let server = server_check(&trusting, id).await;
    assert_eq!(server.status, mailroom::CheckStatus::Ok, "{server:?}");
    assert!(server.detail.contains("answers over https"), "{server:?}");

    options.extra_root_pem = Some(world.sandbox.ca_pem().as_bytes().to_vec());
    let distrusting = Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    let error = distrusting
        .send(request(id, "Order 1002", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, mailroom::Error::Transport { error, .. } if error.kind() == mailroom_model::TransportErrorKind::Tls),
        "{error:?}"
    );
    assert_eq!(world.sandbox.mailbox().messages().len(), 1, "nothing sent");
    let server = server_check(&distrusting, id).await;
    assert_eq!(server.status, mailroom::CheckStatus::Problem, "{server:?}");
}
