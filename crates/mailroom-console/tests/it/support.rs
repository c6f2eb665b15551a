//! The console served on loopback over a fresh database, and an HTTP client that plays
//! the browser (cookies by hand, redirects not followed).

use std::sync::Arc;
use std::time::Duration;

use mailroom::accounts::Accounts;
use mailroom::model::{Binding, Provider, Secret, ServerSettingsChange};
use mailroom::tokens::interactive::{Identity, SignedIn};
use mailroom::tokens::registration::{AppChange, Apps};
use mailroom::tokens::storage::TokenStore;
use mailroom::{
    AUTOMATION_AGENT, EncryptionKey, KeyRing, Mailroom, MailroomOptions, MessageDraft, SendRequest,
};
use mailroom_console::{Console, ConsoleOptions};
use mailroom_sandbox::{Sandbox, SandboxConfig};
use mailroom_testkit::TestDatabase;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use tokio::sync::oneshot;

/// Secrets the tests store; no page may show any of them.
pub(crate) const PASSWORD: &str = "pw-Hunter2-never-rendered";
pub(crate) const ACCESS_TOKEN: &str = "access-token-never-rendered";
pub(crate) const REFRESH_TOKEN: &str = "refresh-token-never-rendered";

pub(crate) struct Harness {
    pub(crate) console: Console,
    pub(crate) mailroom: Arc<Mailroom>,
    pub(crate) key: KeyRing,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// The look-alike providers, when the test signs in.
    pub(crate) sandbox: Option<Sandbox>,
    _stop: oneshot::Sender<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub(crate) async fn start(db: &TestDatabase) -> Self {
        Self::start_with(db, 50).await
    }

    pub(crate) async fn start_with(db: &TestDatabase, page_size: u64) -> Self {
        Self::start_full(db, page_size, false).await
    }

    /// With the sandbox's Microsoft and Google registered as the apps (a device code is
    /// polled every second).
    pub(crate) async fn with_sandbox(db: &TestDatabase) -> Self {
        Self::start_full(db, 50, true).await
    }

    /// With sessions and login attempts judged by `clock`.
    pub(crate) async fn with_clock(db: &TestDatabase, clock: Arc<mailroom::ManualClock>) -> Self {
        Self::start_full_with(db, 50, false, Some(clock)).await
    }

    async fn start_full(db: &TestDatabase, page_size: u64, sandbox: bool) -> Self {
        Self::start_full_with(db, page_size, sandbox, None).await
    }

    async fn start_full_with(
        db: &TestDatabase,
        page_size: u64,
        sandbox: bool,
        clock: Option<Arc<mailroom::ManualClock>>,
    ) -> Self {
        let key = KeyRing::from(EncryptionKey::generate());
        let (sandbox, dir) = if sandbox {
            let dir = tempfile::tempdir().unwrap();
            let mut config = SandboxConfig::new(dir.path().join("sandbox"));
            config.device_poll_interval_secs = 1;
            let sandbox = Sandbox::start(config).await.unwrap();
            for provider in [Provider::Microsoft, Provider::Google] {
                Apps::new(&db.db, &key)
                    .set(
                        provider,
                        AppChange {
                            client_id: Some("mailroom-console-test".to_owned()),
                            client_secret: (provider == Provider::Google)
                                .then(|| Some(Secret::from("google-client-secret"))),
                            tenant: (provider == Provider::Microsoft)
                                .then(|| sandbox.endpoints().tenant_id.clone()),
                            overrides: mailroom_testkit::sandbox::endpoint_overrides(
                                &sandbox, provider,
                            ),
                            ..AppChange::default()
                        },
                    )
                    .await
                    .unwrap();
            }
            (Some(sandbox), Some(dir))
        } else {
            (None, None)
        };
        let mut options = MailroomOptions::new(key.clone());
        options.extra_root_pem = sandbox.as_ref().map(|s| s.ca_pem().as_bytes().to_vec());
        let mailroom = Arc::new(
            Mailroom::with_connection(db.db.clone(), options)
                .await
                .expect("open the facade"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut options = ConsoleOptions {
            listen: listener.local_addr().unwrap(),
            page_size,
            ..ConsoleOptions::default()
        };
        if let Some(clock) = clock {
            options.clock = clock;
        }
        let console = Console::new(Arc::clone(&mailroom), options).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = console.clone();
        tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let base = console.origin().as_str().trim_end_matches('/').to_owned();
        Self {
            console,
            mailroom,
            key,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            sandbox,
            _stop: stop,
            _dir: dir,
        }
    }

    pub(crate) fn accounts(&self) -> Accounts<'_, sea_orm::DatabaseConnection> {
        Accounts::new(self.mailroom.database(), &self.key)
    }

    /// Logs in with a fresh login URL; returns the `Cookie` header value.
    pub(crate) async fn login(&self) -> String {
        let response = self
            .http
            .get(self.console.login_url().as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        cookie.split(';').next().unwrap().to_owned()
    }

    pub(crate) async fn get(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub(crate) async fn post(
        &self,
        cookie: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A button: a POST of nothing but the session's CSRF token.
    pub(crate) async fn click(&self, cookie: &str, csrf: &str, path: &str) -> reqwest::Response {
        self.post(cookie, path, &[("csrf", csrf)]).await
    }

    /// The CSRF token of the forms on `path`.
    pub(crate) async fn csrf(&self, cookie: &str, path: &str) -> String {
        let (status, body) = self.get(cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let start = body
            .find("name=\"csrf\" value=\"")
            .expect("a form with the CSRF field")
            + "name=\"csrf\" value=\"".len();
        body[start..start + 64].to_owned()
    }

    pub(crate) async fn company_with_password(&self) {
        let change = ServerSettingsChange {
            provider: Some(Provider::None),
            host: Some("smtp.example.com".to_owned()),
            port: Some(587),
            smtp_user: Some("sales@example.com".to_owned()),
            password: Some(Secret::from(PASSWORD)),
            ..ServerSettingsChange::default()
        };
        self.accounts().set_company(&change, None).await.unwrap();
    }

    pub(crate) async fn microsoft_user(&self, address: &str, system_user: &str) -> i64 {
        let change = ServerSettingsChange {
            provider: Some(Provider::Microsoft),
            smtp_user: Some(address.to_owned()),
            ..ServerSettingsChange::default()
        };
        self.accounts()
            .add_user_account(&change, Some(Binding::system_user(system_user).unwrap()))
            .await
            .unwrap()
            .account
            .id
    }

    pub(crate) async fn store_token(&self, address: &str) {
        let signed_in = SignedIn::from_tokens(
            Identity {
                address: address.to_owned(),
                tenant_id: None,
                subject: None,
            },
            Provider::Microsoft,
            mailroom::tokens::registration::DEFAULT_MICROSOFT_TENANT,
            ACCESS_TOKEN.into(),
            Some(REFRESH_TOKEN.into()),
            Duration::from_secs(3600),
            Vec::new(),
        );
        TokenStore::new(self.mailroom.database(), &self.key)
            .save_sign_in(&signed_in, chrono::Utc::now())
            .await
            .unwrap();
    }

    pub(crate) async fn queue(&self, number: usize) -> i64 {
        self.mailroom
            .queue(SendRequest::new(
                AUTOMATION_AGENT,
                MessageDraft {
                    to: vec![format!("customer{number}@example.com")],
                    subject: format!("Statement {number}"),
                    text: Some(format!("Body {number}\r\n")),
                    ..MessageDraft::default()
                },
            ))
            .await
            .unwrap()
    }
}

/// The form fields a page would post back unchanged: every enabled input and select
/// with its value (checked boxes only), as a browser submits them.
pub(crate) fn form_fields(page: &str, form_id: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("<form id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("a form {form_id}: {page}"));
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(
            tag[at..at + tag[at..].find('"')?]
                .replace("&amp;", "&")
                .replace("&quot;", "\""),
        )
    };
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(at) = rest.find('<') {
        rest = &rest[at..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        let disabled = tag.contains(" disabled");
        if tag.starts_with("<input") && !disabled {
            let name = attribute(tag, "name");
            let kind = attribute(tag, "type").unwrap_or_default();
            if let Some(name) = name {
                if kind != "checkbox" || tag.contains(" checked") {
                    fields.push((name, attribute(tag, "value").unwrap_or_default()));
                }
            }
        } else if tag.starts_with("<select") && !disabled {
            let name = attribute(tag, "name").unwrap();
            let options = &rest[..rest.find("</select>").unwrap()];
            let selected = options
                .split("<option")
                .find(|option| option.contains(" selected"))
                .and_then(|option| attribute(option, "value"))
                .unwrap_or_default();
            fields.push((name, selected));
        }
        rest = &rest[end..];
    }
    fields
}

pub(crate) fn with(fields: &[(String, String)], changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = fields
        .iter()
        .filter(|(name, _)| !changes.iter().any(|(changed, _)| changed == name))
        .cloned()
        .collect();
    fields.extend(changes.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    fields
}

impl Harness {
    pub(crate) async fn submit(
        &self,
        cookie: &str,
        path: &str,
        fields: &[(String, String)],
    ) -> reqwest::Response {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        self.post(cookie, path, &pairs).await
    }
}
