//! One Microsoft sign-in, an access token per resource (Outlook SMTP and Microsoft Graph):
//! each authorize request, code exchange and refresh names one resource's scopes (Entra
//! refuses more, `AADSTS28000`; MicrosoftDocs/entra-docs
//! `docs/identity-platform/v2-oauth2-auth-code-flow.md`, "Refresh the access token": a
//! refresh may ask another resource's scopes and rotates the refresh token), one refresh
//! token per identity, versions per resource, consent missing → "sign in again to grant
//! Mail.Send", key rotation, and the national clouds' endpoints.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use mailroom_crypto::{EncryptionKey, KeyRing};
use mailroom_model::{AccountRef, Provider, Remedy};
use mailroom_testkit::{Backend, TestDatabase, on_both_backends};
use mailroom_tokens::{
    Error, OAuthHttp, Resource, SignInReason, TokenTarget,
    interactive::{SignInOptions, sign_in_with_browser},
    registration::{AppChange, Apps, EndpointOverrides, MicrosoftCloud, parse_endpoint_url},
    storage::{TokenKey, TokenStore},
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    self, approve, browser, form, microsoft_id_token, microsoft_token_body, signed_in, target,
};

const ADDRESS: &str = "sa@contoso.example";
const OUTLOOK_SCOPES: &str =
    "https://outlook.office.com/SMTP.Send offline_access openid profile email";
const GRAPH_SCOPES: &str =
    "https://graph.microsoft.com/Mail.Send offline_access openid profile email";
const GRAPH: Resource = Resource::Graph {
    shared: false,
    read_write: false,
};

fn graph_target() -> TokenTarget {
    target(Provider::Microsoft, ADDRESS).with_resource(GRAPH)
}

fn mail_target() -> TokenTarget {
    target(Provider::Microsoft, ADDRESS)
}

fn token_key() -> TokenKey {
    TokenKey::new(Provider::Microsoft, "organizations", ADDRESS)
}

/// A Microsoft token endpoint that answers each refresh with the scopes' resource's token
/// and a rotated refresh token: `at-graph-N` / `at-outlook-N`, `rt-N`.
fn rotating_endpoint(count: Arc<AtomicUsize>) -> impl Fn(&Request) -> ResponseTemplate {
    move |request: &Request| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let fields = form(request);
        let graph = fields["scope"].contains("graph.microsoft.com");
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "scope": if graph { "https://graph.microsoft.com/Mail.Send" } else { "https://outlook.office.com/SMTP.Send" },
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": format!("at-{}-{n}", if graph { "graph" } else { "outlook" }),
            "refresh_token": format!("rt-{n}"),
        }))
    }
}

/// The token requests' (refresh token, scope), in order.
async fn refreshes(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let fields = form(request);
            (fields["refresh_token"].clone(), fields["scope"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_graph_sign_in_asks_graph_scopes_only_and_an_smtp_one_what_it_asked_before() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .expect(2)
        .mount(&server)
        .await;
    let mut graph_body =
        microsoft_token_body("at-graph", "rt-graph", Some(&microsoft_id_token(ADDRESS)));
    graph_body["scope"] = json!("https://graph.microsoft.com/Mail.Send");
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |request: &Request| {
            if form(request)["scope"].contains("graph") {
                ResponseTemplate::new(200).set_body_json(graph_body.clone())
            } else {
                ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                    "at-outlook",
                    "rt-outlook",
                    Some(&microsoft_id_token(ADDRESS)),
                ))
            }
        })
        .expect(2)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let options = |resource| SignInOptions {
        expected_address: Some(ADDRESS.to_owned()),
        timeout: Duration::from_secs(20),
        resource,
        ..Default::default()
    };
    let smtp = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(Resource::Mail),
        SystemTime::now,
        browser(),
    )
    .await
    .unwrap();
    assert_eq!(smtp.resource, Resource::Mail);
    let graph = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(GRAPH),
        SystemTime::now,
        browser(),
    )
    .await
    .unwrap();
    assert_eq!(graph.resource, GRAPH);

    let requests = server.received_requests().await.unwrap();
    let authorize = |index: usize| -> HashMap<String, String> {
        requests[index].url.query_pairs().into_owned().collect()
    };
    let exchanges: Vec<_> = requests
        .iter()
        .filter(|request| request.url.path() == "/token")
        .map(form)
        .collect();
    let authorizations: Vec<_> = (0..requests.len())
        .filter(|index| requests[*index].url.path() == "/authorize")
        .map(authorize)
        .collect();
    assert_eq!(authorizations[0]["scope"], OUTLOOK_SCOPES);
    assert_eq!(exchanges[0]["scope"], OUTLOOK_SCOPES);
    assert_eq!(authorizations[1]["scope"], GRAPH_SCOPES);
    assert_eq!(exchanges[1]["scope"], GRAPH_SCOPES);

    // The Graph sign-in's token is the row's own, labelled as Graph's.
    let stored = TokenStore::new(&db.db, &key)
        .save_sign_in(&graph, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(stored.access_resource, "graph");
    assert_eq!(
        stored.access_for(GRAPH).unwrap().access_token.expose(),
        "at-graph"
    );
    assert!(stored.access_for(Resource::Mail).is_none());
    db.finish().await;
}

/// One sign-in, two resources: an access token each, one refresh token rotated by
/// whichever refreshes; each token's version is its own, so a rejected Graph token is
/// refreshed even after an Outlook refresh moved the row (and the other way round).
async fn one_identity_two_resources_and_versions_per_resource(db: &TestDatabase) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(rotating_endpoint(count.clone()))
        .mount(&server)
        .await;
    let key =
        support::expired_sign_in(db, &server, Provider::Microsoft, ADDRESS, "at-0", "rt-0").await;
    let broker = support::broker(db, &key);

    let outlook = broker.access_token(&mail_target()).await.unwrap();
    assert_eq!(
        (outlook.secret.expose(), outlook.version),
        ("at-outlook-1", 2)
    );
    let graph = broker.access_token(&graph_target()).await.unwrap();
    assert_eq!((graph.secret.expose(), graph.version), ("at-graph-2", 3));
    assert_eq!(graph.resource, GRAPH);
    // Both valid now: no request, whichever is asked.
    assert_eq!(
        broker
            .access_token(&mail_target())
            .await
            .unwrap()
            .secret
            .expose(),
        "at-outlook-1"
    );
    let fresh_broker = support::broker(db, &key);
    let from_database = fresh_broker.access_token(&mail_target()).await.unwrap();
    assert_eq!(
        (from_database.secret.expose(), from_database.version),
        ("at-outlook-1", 2)
    );
    assert_eq!(
        fresh_broker
            .access_token(&graph_target())
            .await
            .unwrap()
            .version,
        3
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);

    let stored = TokenStore::new(&db.db, &key)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.as_ref().unwrap().expose(), "rt-2");
    assert_eq!(stored.version, 3);
    assert_eq!(stored.access_for(Resource::Mail).unwrap().version, 2);
    assert_eq!(stored.access_for(GRAPH).unwrap().version, 3);
    let summary = &TokenStore::new(&db.db, &key).list().await.unwrap()[0];
    assert_eq!(summary.access_resources, ["mail", "graph"]);
    assert!(!format!("{summary:?}").contains("at-"));

    // An Outlook refresh moves the row to 4; the Graph token stays at 3, so a rejection
    // of version 3 still refreshes Graph.
    let outlook = broker.force_refresh(&mail_target()).await.unwrap();
    assert_eq!(
        (outlook.secret.expose(), outlook.version),
        ("at-outlook-3", 4)
    );
    let graph = broker.refresh_rejected(&graph_target(), 3).await.unwrap();
    assert_eq!((graph.secret.expose(), graph.version), ("at-graph-4", 5));
    // And the other way round: Outlook's token is at 4 although the row is at 5.
    let outlook = broker.refresh_rejected(&mail_target(), 4).await.unwrap();
    assert_eq!(
        (outlook.secret.expose(), outlook.version),
        ("at-outlook-5", 6)
    );
    // A rejection of an older version is answered with the newer token, no refresh.
    let again = broker.refresh_rejected(&graph_target(), 3).await.unwrap();
    assert_eq!(again.secret.expose(), "at-graph-4");

    // Each refresh named one resource and used the refresh token the one before returned.
    assert_eq!(
        refreshes(&server).await,
        [
            ("rt-0", OUTLOOK_SCOPES),
            ("rt-1", GRAPH_SCOPES),
            ("rt-2", OUTLOOK_SCOPES),
            ("rt-3", GRAPH_SCOPES),
            ("rt-4", OUTLOOK_SCOPES),
        ]
        .map(|(token, scope)| (token.to_owned(), scope.to_owned()))
    );
    let stored = TokenStore::new(&db.db, &key)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-5");
    drop(server);
}

/// A row stored before resources (no `access_resource`, no `access_version`) gives its
/// Outlook token as before, at the row's version, and gains a Graph token beside it.
async fn a_row_from_before_resources_still_gives_its_outlook_token(db: &TestDatabase) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(rotating_endpoint(count.clone()))
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    support::register(db, &key, Provider::Microsoft, support::app(&server, false)).await;
    support::store_valid(
        db,
        &key,
        &signed_in(Provider::Microsoft, ADDRESS, "at-old", Some("rt-old")),
    )
    .await;
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_token SET access_resource = NULL, access_version = NULL, version = 7"
                .to_owned(),
        ))
        .await
        .unwrap();
    let broker = support::broker(db, &key);
    let outlook = broker.access_token(&mail_target()).await.unwrap();
    assert_eq!((outlook.secret.expose(), outlook.version), ("at-old", 7));
    assert_eq!(count.load(Ordering::SeqCst), 0);

    let graph = broker.access_token(&graph_target()).await.unwrap();
    assert_eq!((graph.secret.expose(), graph.version), ("at-graph-1", 8));
    let stored = TokenStore::new(&db.db, &key)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_resource, "mail");
    let mail = stored.access_for(Resource::Mail).unwrap();
    assert_eq!((mail.access_token.expose(), mail.version), ("at-old", 7));
    assert_eq!(
        support::broker(db, &key)
            .access_token(&mail_target())
            .await
            .unwrap()
            .version,
        7
    );
    drop(server);
}

/// A Graph refresh the grant does not cover: Entra's `AADSTS65001` (consent required) or
/// a token without `Mail.Send` → sign in again to grant Mail.Send; the Outlook token and
/// the row are kept.
async fn consent_missing_names_the_permission_to_grant(db: &TestDatabase) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS65001: The user or administrator has not consented to use the application with ID '11111111-2222-3333-4444-555555555555' named 'mailroom'. Send an interactive authorization request for this user and resource.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333",
            "error_codes": [65001],
            "suberror": "consent_required"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    support::register(db, &key, Provider::Microsoft, support::app(&server, false)).await;
    support::store_valid(
        db,
        &key,
        &signed_in(Provider::Microsoft, ADDRESS, "at-outlook", Some("rt")),
    )
    .await;
    let broker = support::broker(db, &key);
    let error = broker.access_token(&graph_target()).await.unwrap_err();
    check_grant_mail_send(&error);
    // The sign-in is not revoked: the SMTP route keeps sending.
    assert_eq!(
        broker
            .access_token(&mail_target())
            .await
            .unwrap()
            .secret
            .expose(),
        "at-outlook"
    );
    drop(server);

    // A token whose `scope` lacks Mail.Send: the same, and nothing stored.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "scope": "https://graph.microsoft.com/User.Read",
            "expires_in": 3599,
            "access_token": "at-user-read",
            "refresh_token": "rt-2"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let change = AppChange {
        overrides: support::app(&server, false).overrides,
        ..AppChange::default()
    };
    Apps::new(&db.db, &key)
        .set(Provider::Microsoft, change)
        .await
        .unwrap();
    let broker = support::broker(db, &key);
    let error = broker.access_token(&graph_target()).await.unwrap_err();
    check_grant_mail_send(&error);
    let stored = TokenStore::new(&db.db, &key)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.access_for(GRAPH).is_none());
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt");
    drop(server);
}

#[track_caller]
fn check_grant_mail_send(error: &Error) {
    let Error::SignInRequired { reason, .. } = error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(reason, SignInReason::PermissionNotGranted { permission, .. } if permission == "Mail.Send"),
        "{reason:?}"
    );
    assert!(
        error
            .to_string()
            .contains("sign in again to grant Mail.Send"),
        "{error}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::GrantScope {
            account: Some(AccountRef::User(4)),
            scope: "Mail.Send".to_owned()
        })
    );
    assert!(error.needs_sign_in());
}

/// A key rotation re-seals the rows and every resource's access token.
async fn key_rotation_reseals_every_resources_token(db: &TestDatabase) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(rotating_endpoint(Arc::new(AtomicUsize::new(0))))
        .mount(&server)
        .await;
    let old = KeyRing::generate();
    support::register(db, &old, Provider::Microsoft, support::app(&server, false)).await;
    TokenStore::new(&db.db, &old)
        .save_sign_in(
            &signed_in(Provider::Microsoft, ADDRESS, "at-outlook", Some("rt")),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    support::broker(db, &old)
        .access_token(&graph_target())
        .await
        .unwrap();
    let next = EncryptionKey::generate();
    assert_eq!(
        TokenStore::new(&db.db, &old).reseal(&next).await.unwrap(),
        1
    );
    let only_new = KeyRing::new([next]).unwrap();
    let stored = TokenStore::new(&db.db, &only_new)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_token.expose(), "at-outlook");
    let graph = stored.access_for(GRAPH).unwrap();
    assert_eq!(graph.access_token.expose(), "at-graph-1");
    // The tokens did not change: their versions stay, the row's moves.
    assert_eq!((stored.version, graph.version), (3, 2));
    assert_eq!(stored.access_for(Resource::Mail).unwrap().version, 1);
    // Forgetting every secret leaves no access token behind.
    assert_eq!(
        TokenStore::new(&db.db, &only_new)
            .forget_all()
            .await
            .unwrap(),
        1
    );
    let left = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM oauth_access_token".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.try_get::<i64>("", "n").unwrap(), 0);
    drop(server);
}

/// Two brokers on one database (two processes) and many tasks each ask for an expired
/// Graph token: one refresh in all, and everyone gets its token.
async fn two_processes_refresh_the_graph_token_once(db: &TestDatabase) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    let endpoint = rotating_endpoint(count.clone());
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |request: &Request| {
            // Keep the refresh in flight while the others pile up behind it.
            endpoint(request).set_delay(Duration::from_millis(300))
        })
        .expect(1)
        .mount(&server)
        .await;
    let key =
        support::expired_sign_in(db, &server, Provider::Microsoft, ADDRESS, "at-0", "rt-0").await;
    let brokers = [
        Arc::new(support::broker(db, &key)),
        Arc::new(support::broker(db, &key)),
    ];
    let mut tasks = Vec::new();
    for index in 0..40 {
        let broker = brokers[index % 2].clone();
        tasks.push(tokio::spawn(async move {
            broker.access_token(&graph_target()).await
        }));
    }
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!((token.secret.expose(), token.version), ("at-graph-1", 2));
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let stored = TokenStore::new(&db.db, &key)
        .load(&token_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-1");
    drop(server);
}

/// Against the sandbox's Entra look-alike (which refuses a token request spanning two
/// resources and a refresh outside the consent, as Entra does): an SMTP-route sign-in
/// consents to Outlook only, so the Graph route asks to sign in again to grant Mail.Send;
/// once Mail.Send is consented (an administrator's consent), the same sign-in's refresh
/// token gets a Graph token beside the Outlook one; a Graph-route sign-in asks Graph only.
async fn against_the_sandbox_one_sign_in_serves_both_routes(db: &TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = mailroom_sandbox::SandboxConfig::new(dir.path().join("sandbox"));
    config.auto_approve = true;
    let sandbox = mailroom_sandbox::Sandbox::start(config).await.unwrap();
    let endpoints = sandbox.endpoints();
    let key = KeyRing::generate();
    let change = AppChange {
        client_id: Some(support::CLIENT_ID.to_owned()),
        tenant: Some(endpoints.tenant_id.clone()),
        overrides: EndpointOverrides {
            authorize_url: Some(endpoints.microsoft.authorize.clone()),
            token_url: Some(endpoints.microsoft.token.clone()),
            device_url: Some(endpoints.microsoft.device.clone()),
            issuer: Some(endpoints.microsoft.issuer.clone()),
            graph_api_url: Some(endpoints.graph_api.clone()),
            ..EndpointOverrides::default()
        },
        ..AppChange::default()
    };
    let app = Apps::new(&db.db, &key)
        .set(Provider::Microsoft, change)
        .await
        .unwrap();
    let sign_in = |resource| {
        let app = app.clone();
        async move {
            let options = SignInOptions {
                expected_address: Some(ADDRESS.to_owned()),
                timeout: Duration::from_secs(20),
                resource,
                ..Default::default()
            };
            sign_in_with_browser(
                &OAuthHttp::new(),
                &app,
                &options,
                SystemTime::now,
                browser(),
            )
            .await
            .unwrap()
        }
    };
    let stored = TokenStore::new(&db.db, &key)
        .save_sign_in(&sign_in(Resource::Mail).await, chrono::Utc::now())
        .await
        .unwrap();
    let identity = Some(stored.key.identity_key.clone());
    let mail = TokenTarget {
        token_identity: identity.clone(),
        ..mail_target()
    };
    let graph = mail.clone().with_resource(GRAPH);
    let broker = support::broker(db, &key);
    let outlook = broker.access_token(&mail).await.unwrap();
    let error = broker.access_token(&graph).await.unwrap_err();
    check_grant_mail_send(&error);
    assert!(error.to_string().contains("AADSTS65001"), "{error}");

    sandbox
        .authority()
        .consent_scopes(ADDRESS, &["https://graph.microsoft.com/Mail.Send"]);
    let graph_token = broker.access_token(&graph).await.unwrap();
    let mailroom_sandbox::TokenCheck::Valid(info) = sandbox
        .authority()
        .check_access_token(graph_token.secret.expose())
    else {
        panic!("the sandbox did not issue the Graph token");
    };
    assert!(info.has_any_scope(&["https://graph.microsoft.com/Mail.Send"]));
    assert!(!info.has_any_scope(&["https://outlook.office.com/SMTP.Send"]));
    assert!(graph_token.version > outlook.version);
    // The Outlook token is untouched, and both are stored under the one sign-in.
    assert_eq!(
        broker.access_token(&mail).await.unwrap().secret.expose(),
        outlook.secret.expose()
    );
    let summary = &TokenStore::new(&db.db, &key).list().await.unwrap()[0];
    assert_eq!(summary.access_resources, ["mail", "graph"]);
    let stats = sandbox.authority().stats();
    assert_eq!((stats.refreshes, stats.refreshes_refused), (1, 1));

    // A Graph-route sign-in: its own token is Graph's, with the Graph scope only.
    let signed_in = sign_in(GRAPH).await;
    let stored = TokenStore::new(&db.db, &key)
        .save_sign_in(&signed_in, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(stored.access_resource, "graph");
    assert_eq!(stored.scopes, "https://graph.microsoft.com/Mail.Send");
    drop(sandbox);
}

on_both_backends!(
    against_the_sandbox_one_sign_in_serves_both_routes,
    one_identity_two_resources_and_versions_per_resource,
    a_row_from_before_resources_still_gives_its_outlook_token,
    consent_missing_names_the_permission_to_grant,
    key_rotation_reseals_every_resources_token,
    two_processes_refresh_the_graph_token_once,
);

/// `--cloud` sets the login host of the default endpoints and the issuer, and the Graph
/// URL and scope host (MicrosoftDocs/entra-docs
/// `docs/identity-platform/authentication-national-cloud.md`; microsoft-graph-docs
/// `concepts/deployments.md`); overrides still win; Google has no cloud.
async fn each_cloud_has_its_login_and_graph_hosts(db: &TestDatabase) {
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    let set = |cloud: Option<MicrosoftCloud>| AppChange {
        client_id: Some("00000000-0000-4000-8000-000000000001".to_owned()),
        tenant: Some("contoso.onmicrosoft.us".to_owned()),
        cloud,
        ..AppChange::default()
    };
    let app = apps.set(Provider::Microsoft, set(None)).await.unwrap();
    assert_eq!(app.cloud, MicrosoftCloud::Global);
    assert_eq!(app.graph_api_url().as_str(), "https://graph.microsoft.com/");
    for (cloud, login, graph) in [
        (
            MicrosoftCloud::UsGov,
            "login.microsoftonline.us",
            "https://graph.microsoft.us",
        ),
        (
            MicrosoftCloud::UsGovDod,
            "login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
        ),
        (
            MicrosoftCloud::China,
            "login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
        (
            MicrosoftCloud::Global,
            "login.microsoftonline.com",
            "https://graph.microsoft.com",
        ),
    ] {
        apps.set(Provider::Microsoft, set(Some(cloud)))
            .await
            .unwrap();
        // Read back: the cloud is stored and its seal opens.
        let app = apps.require(Provider::Microsoft).await.unwrap();
        assert_eq!(app.cloud, cloud);
        let endpoints = app.endpoints();
        let base = format!("https://{login}/contoso.onmicrosoft.us/oauth2/v2.0");
        assert_eq!(endpoints.authorize.as_str(), format!("{base}/authorize"));
        assert_eq!(endpoints.token.as_str(), format!("{base}/token"));
        assert_eq!(
            endpoints.device.unwrap().as_str(),
            format!("{base}/devicecode")
        );
        assert_eq!(
            app.expected_issuers(Some("tid-1")),
            [format!("https://{login}/tid-1/v2.0")]
        );
        assert_eq!(app.graph_api_url().as_str(), format!("{graph}/"));
        assert_eq!(
            GRAPH.scopes(&app)[0],
            format!("{graph}/Mail.Send"),
            "{cloud}"
        );
        assert_eq!(Resource::Mail.scopes(&app).join(" "), OUTLOOK_SCOPES);
    }
    // Overrides win over the cloud; the Graph scopes keep the cloud's host.
    let change = AppChange {
        cloud: Some(MicrosoftCloud::UsGov),
        overrides: EndpointOverrides {
            token_url: Some(
                parse_endpoint_url("token url", "https://login.example/token").unwrap(),
            ),
            graph_api_url: Some(
                parse_endpoint_url("graph api url", "http://127.0.0.1:9/").unwrap(),
            ),
            ..EndpointOverrides::default()
        },
        ..AppChange::default()
    };
    let app = apps.set(Provider::Microsoft, change).await.unwrap();
    assert_eq!(
        app.endpoints().token.as_str(),
        "https://login.example/token"
    );
    assert_eq!(
        app.endpoints().authorize.as_str(),
        "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/authorize"
    );
    assert_eq!(app.graph_api_url().as_str(), "http://127.0.0.1:9/");
    assert_eq!(
        GRAPH.scopes(&app)[0],
        "https://graph.microsoft.us/Mail.Send"
    );
    assert_eq!(
        apps.require(Provider::Microsoft)
            .await
            .unwrap()
            .graph_api_url(),
        app.graph_api_url()
    );
    // Back to the real endpoints: the Graph override goes, the cloud stays.
    let app = apps
        .set(
            Provider::Microsoft,
            AppChange {
                reset_endpoints: true,
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(app.graph_api_url().as_str(), "https://graph.microsoft.us/");

    // The cloud is part of the settings seal: changed in the database, nothing is sent.
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_app SET cloud = 'china' WHERE provider = 'microsoft'".to_owned(),
        ))
        .await
        .unwrap();
    assert!(matches!(
        apps.require(Provider::Microsoft).await,
        Err(Error::SettingsAltered { .. })
    ));

    // Google: refused, with what to do.
    let google = AppChange {
        client_id: Some("1234.apps.googleusercontent.com".to_owned()),
        cloud: Some(MicrosoftCloud::UsGov),
        ..AppChange::default()
    };
    let error = apps.set(Provider::Google, google).await.unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "invalid cloud: applies to Microsoft only (Google has one cloud); leave --cloud out for Google"
    );
    let google = AppChange {
        client_id: Some("1234.apps.googleusercontent.com".to_owned()),
        overrides: EndpointOverrides {
            graph_api_url: Some(
                parse_endpoint_url("graph api url", "https://graph.example").unwrap(),
            ),
            ..EndpointOverrides::default()
        },
        ..AppChange::default()
    };
    let error = apps.set(Provider::Google, google).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid graph api url: applies to Microsoft only"),
        "{error}"
    );
    assert!(apps.get(Provider::Google).await.unwrap().is_none());
    assert_eq!(
        "usgov-dod".parse::<MicrosoftCloud>().unwrap(),
        MicrosoftCloud::UsGovDod
    );
    assert!(
        "germany"
            .parse::<MicrosoftCloud>()
            .unwrap_err()
            .to_string()
            .contains("use global, usgov (GCC High), usgov-dod (DoD) or china")
    );
}

mod clouds {
    use super::*;
    on_both_backends!(each_cloud_has_its_login_and_graph_hosts);
}
