//! The world of an end-to-end test: a fresh database, the aiosmtpd test server, a
//! wiremock server for the identity provider's token endpoint and the Gmail API, app
//! registrations pointing at it, accounts and stored tokens.

#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use mailroom::{KeyRing, Mailroom, MailroomOptions, Provider, RetryPolicy};
use mailroom_accounts::Accounts;
use mailroom_model::{Binding, FaxFormat, ServerSettingsChange, TlsStartup};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    BrokerConfig,
    interactive::{Identity, SignedIn},
    registration::{AppChange, Apps, EndpointOverrides, parse_endpoint_url},
    storage::TokenStore,
};
use serde_json::{Value, json};
use wiremock::MockServer;

use mailroom_testkit::smtp::{ServerOptions, TestServer};

pub(crate) const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const SA: &str = "sa@contoso.example";
pub(crate) const ORDERS: &str = "orders@example.com";

pub(crate) struct World {
    pub(crate) db: TestDatabase,
    pub(crate) key: KeyRing,
    pub(crate) smtp: TestServer,
    pub(crate) http: MockServer,
}

/// A retry policy that waits a millisecond, not seconds.
pub(crate) fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
        outbox_base_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    }
}

/// Microsoft's documented successful token response.
pub(crate) fn microsoft_token_body(access: &str, refresh: &str) -> Value {
    json!({
        "token_type": "Bearer",
        "scope": "https://outlook.office.com/SMTP.Send",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
        "refresh_token": refresh
    })
}

/// Microsoft's documented answer for a revoked refresh token.
pub(crate) fn microsoft_invalid_grant() -> Value {
    json!({
        "error": "invalid_grant",
        "error_description": "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
        "error_codes": [70008],
        "timestamp": "2026-12-01 08:00:00Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd"
    })
}

/// Gmail's answer to `users.messages.send`.
pub(crate) fn gmail_sent(id: &str) -> Value {
    json!({ "id": id, "threadId": id, "labelIds": ["SENT"] })
}

/// A completed sign-in for `address` (known by address: no `oid`) whose access token
/// lasts an hour.
pub(crate) fn signed_in(
    provider: Provider,
    address: &str,
    access: &str,
    refresh: Option<&str>,
) -> SignedIn {
    SignedIn::from_tokens(
        Identity {
            address: address.to_owned(),
            tenant_id: None,
            subject: None,
        },
        provider,
        if provider == Provider::Microsoft {
            mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT
        } else {
            ""
        },
        access.into(),
        refresh.map(Into::into),
        Duration::from_secs(3600),
        Vec::new(),
    )
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("db", &self.db)
            .field("smtp_port", &self.smtp.port)
            .finish_non_exhaustive()
    }
}

impl World {
    pub(crate) async fn new(backend: Backend, smtp: ServerOptions) -> Self {
        Self {
            db: TestDatabase::new(backend).await,
            key: KeyRing::generate(),
            smtp: TestServer::start(smtp),
            http: MockServer::start().await,
        }
    }

    /// A server accepting these (user, token) pairs over STARTTLS.
    pub(crate) fn tokens(tokens: &[(&str, &str)]) -> ServerOptions {
        ServerOptions {
            tokens: tokens
                .iter()
                .map(|(user, token)| ((*user).to_owned(), (*token).to_owned()))
                .collect(),
            ..ServerOptions::default()
        }
    }

    pub(crate) fn options(&self) -> MailroomOptions {
        let mut options = MailroomOptions::new(self.key.clone());
        options.extra_root_pem = Some(self.smtp.trusted_ca_pem.clone().into_bytes());
        options.retry = quick_retry();
        options.broker = BrokerConfig {
            transient_backoff: Duration::from_millis(1),
            ..BrokerConfig::default()
        };
        options
    }

    pub(crate) async fn mailroom(&self) -> Mailroom {
        Mailroom::with_connection(self.db.db.clone(), self.options())
            .await
            .expect("open the facade")
    }

    fn url(&self, path: &str) -> Option<url::Url> {
        Some(parse_endpoint_url("url", &format!("{}{path}", self.http.uri())).unwrap())
    }

    /// Registers the provider's app with every endpoint on the wiremock server.
    pub(crate) async fn register_app(&self, provider: Provider) {
        let change = AppChange {
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: None,
            tenant: (provider == Provider::Microsoft).then(|| "organizations".to_owned()),
            overrides: EndpointOverrides {
                authorize_url: self.url("/authorize"),
                token_url: self.url("/token"),
                device_url: self.url("/devicecode"),
                revoke_url: self.url("/revoke"),
                issuer: None,
                gmail_api_url: if provider == Provider::Google {
                    self.url("")
                } else {
                    None
                },
                graph_api_url: None,
                redirect_uri: None,
            },
            reset_endpoints: false,
            reset_redirect_uri: false,
            cloud: None,
            app_credential: None,
        };
        Apps::new(&self.db.db, &self.key)
            .set(provider, change)
            .await
            .expect("register the app");
    }

    /// Stores a sign-in for `address`; `expired` makes its access token an hour stale.
    pub(crate) async fn store_token(
        &self,
        provider: Provider,
        address: &str,
        access: &str,
        expired: bool,
    ) {
        let saved_at = if expired {
            Utc::now() - chrono::Duration::hours(2)
        } else {
            Utc::now()
        };
        TokenStore::new(&self.db.db, &self.key)
            .save_sign_in(
                &signed_in(provider, address, access, Some("refresh-token-before")),
                saved_at,
            )
            .await
            .expect("store the token");
    }

    /// Runs one SQL statement on the test database (SQLite's `?` placeholders), as an
    /// operator or another version would change a row.
    pub(crate) async fn execute(&self, sql: &str, values: Vec<sea_orm::Value>) {
        use sea_orm::ConnectionTrait;
        let db = &self.db.db;
        db.execute(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .expect("the statement runs");
    }

    /// Settings for the SMTP test server.
    pub(crate) fn smtp_change(&self, provider: Provider, user: &str) -> ServerSettingsChange {
        ServerSettingsChange {
            provider: Some(provider),
            host: Some("127.0.0.1".to_owned()),
            port: Some(self.smtp.port),
            tls: Some(true),
            tls_startup: Some(TlsStartup::StartTls),
            timeout_ms: Some(20_000),
            smtp_user: Some(user.to_owned()),
            ..ServerSettingsChange::default()
        }
    }

    pub(crate) async fn company_google(&self, address: &str) {
        let change = ServerSettingsChange {
            provider: Some(Provider::Google),
            smtp_user: Some(address.to_owned()),
            ..ServerSettingsChange::default()
        };
        Accounts::new(&self.db.db, &self.key)
            .set_company(
                &change,
                Some(Some(FaxFormat::parse("{0}@fax.example.com").unwrap())),
            )
            .await
            .expect("set the company account");
    }

    pub(crate) async fn company_smtp(&self, provider: Provider, user: &str) {
        let change = self.smtp_change(provider, user);
        Accounts::new(&self.db.db, &self.key)
            .set_company(
                &change,
                Some(Some(FaxFormat::parse("{0}@fax.example.com").unwrap())),
            )
            .await
            .expect("set the company account");
    }

    /// A Microsoft user account on the SMTP test server, bound to `system_user`.
    pub(crate) async fn user_microsoft(&self, address: &str, system_user: &str) -> i64 {
        Accounts::new(&self.db.db, &self.key)
            .add_user_account(
                &self.smtp_change(Provider::Microsoft, address),
                Some(Binding::system_user(system_user).unwrap()),
            )
            .await
            .expect("add the user account")
            .account
            .id
    }

    pub(crate) async fn forbid_sign_in_when_sending(&self) {
        Accounts::new(&self.db.db, &self.key)
            .set_can_sign_in_when_sending(false)
            .await
            .unwrap();
    }

    /// Message-IDs of the messages the SMTP server stored.
    pub(crate) fn delivered_message_ids(&self) -> Vec<String> {
        self.smtp
            .messages()
            .iter()
            .map(|(_, bytes)| message_id_of(bytes))
            .collect()
    }

    pub(crate) async fn finish(self) {
        drop(self.http);
        self.db.finish().await;
    }
}

/// The Message-ID header of raw message bytes.
pub(crate) fn message_id_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            line.strip_prefix("Message-ID: ")
                .or_else(|| line.strip_prefix("Message-Id: "))
        })
        .unwrap_or_else(|| panic!("no Message-ID in {text}"))
        .trim()
        .to_owned()
}

/// The header part of a message, for assertions.
pub(crate) fn headers_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.find("\r\n\r\n") {
        Some(end) => text[..end].to_owned(),
        None => text.into_owned(),
    }
}
