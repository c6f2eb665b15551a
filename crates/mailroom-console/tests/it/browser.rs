//! The console in a real browser: headless Chromium driven over WebDriver (fantoccini and
//! Debian's `chromedriver`), against the console on loopback and the sandbox's look-alike
//! providers. Each screen it checks is saved as a PNG under `target/console-screenshots/`.
//!
//! Chromium and chromedriver are required: `cargo xtask ci` installs them when missing
//! (`apt-get install chromium chromium-driver`); without them this test fails and says so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use mailroom::model::AccountId;
use mailroom::{AccountRef, OutboxStatus, SignInState};
use mailroom_testkit::{Backend, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::Harness;

/// A program the browser test needs: `variable` names it, else `name` on the `PATH`.
fn program(variable: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "the console's browser test needs {name} (set {variable}, or install it: `apt-get install chromium chromium-driver`; `cargo xtask ci` does)"
            )
        })
}

/// Headless Chromium under a chromedriver of its own.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let chromium = program("MAILROOM_TEST_CHROMIUM", "chromium");
        let chromedriver = program("MAILROOM_TEST_CHROMEDRIVER", "chromedriver");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", chromedriver.display()));
        // chromedriver says on stdout when it listens.
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        let started = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("started successfully") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(started, Ok(true), "chromedriver did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-proxy-server",
                    "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            _driver: driver,
            _profile: profile,
            shots,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|error| panic!("no {selector}: {error}"))
    }

    async fn button(&self, label: &str) -> fantoccini::elements::Element {
        let xpath =
            format!("//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']");
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|error| panic!("no button {label}: {error}"))
    }

    /// Clicks a button or link that loads another page, and returns once the browser has
    /// left this one (WebDriver's click does not wait for a form's navigation; the next
    /// command would find the old page's elements). Polls the browser the way
    /// fantoccini's own waits do, for at most 30 s.
    async fn click_to_leave(&self, label: &str) {
        let old = self.css("html").await;
        self.button(label).await.click().await.unwrap();
        self.wait_until_gone(&old, &format!("clicking {label}"))
            .await;
    }

    /// Waits until `old` (the previous page's root) is gone.
    async fn wait_until_gone(&self, old: &fantoccini::elements::Element, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match old.tag_name().await {
                // The old page's element is gone: "stale", or, from some chromedriver
                // versions while the new document loads, an inspector error saying so.
                Err(fantoccini::error::CmdError::Standard(error))
                    if error.error == fantoccini::error::ErrorStatus::StaleElementReference
                        || error.message.contains("does not belong to the document") =>
                {
                    return;
                }
                Err(error) => panic!("after {what}: {error}"),
                Ok(_) => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not load another page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element `selector` (which a script updates) shows `text`; returns
    /// all it shows. Polls the browser for at most 30 s, as fantoccini's own waits do.
    async fn wait_for_text(&self, selector: &str, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await {
                if let Ok(shown) = element.text().await {
                    if shown.contains(text) {
                        return shown;
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{selector} never showed {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses Enter in the field `name` and returns once the browser has left the page
    /// (as a form's implicit submission does).
    async fn press_enter(&self, name: &str) {
        let old = self.css("html").await;
        self.css(&format!("[name='{name}']"))
            .await
            .send_keys("\u{E007}")
            .await
            .unwrap();
        self.wait_until_gone(&old, &format!("Enter in {name}"))
            .await;
    }

    async fn fill(&self, name: &str, value: &str) {
        let field = self.css(&format!("[name='{name}']")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn choose(&self, name: &str, value: &str) {
        self.css(&format!("select[name='{name}']"))
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap()
    }

    async fn page(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Saves the screen as `NAME.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// Approves the sandbox's consent page as `address`.
async fn approve_as(browser: &Browser, address: &str) {
    assert!(
        browser.page().await.contains("Approve"),
        "the sandbox's consent page"
    );
    browser.fill("address", address).await;
    browser.click_to_leave("Approve").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_configures_signs_in_sends_and_manages_the_outbox_in_chromium() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let harness = Harness::with_sandbox(&db).await;
    let sandbox = harness.sandbox.as_ref().unwrap();
    let endpoints = sandbox.endpoints().clone();
    let base = harness.base.clone();
    let browser = Browser::start().await;

    // Log in with the one-time URL.
    browser.goto(harness.console.login_url().as_str()).await;
    assert_eq!(browser.path().await, "/accounts");
    assert!(
        browser
            .page()
            .await
            .contains("No account is configured yet")
    );

    // The company account: Google fills its preset; what Google ignores is marked.
    browser.goto(&format!("{base}/accounts/company")).await;
    browser.choose("provider", "google").await;
    browser.fill("smtp_user", "sales@example.com").await;
    browser.click_to_leave("Save").await;
    let host = browser.css("input[name='host']").await;
    assert_eq!(
        host.prop("value").await.unwrap().as_deref(),
        Some("gmail.googleapis.com")
    );
    assert!(!host.is_enabled().await.unwrap(), "Google's host is fixed");
    let page = browser.page().await;
    assert_eq!(page.matches("(ignored)").count(), 3, "{page}");
    assert!(page.contains("Google preset was filled in"));
    browser.shot("company-account").await;

    // The fax format's live preview follows the typing (the console's script asks the
    // console); the Preview button is not needed.
    browser.fill("fax_format", "{0}@fax.example.com").await;
    let preview = browser
        .wait_for_text("#fax-preview", "@fax.example.com")
        .await;
    assert_eq!(preview, "+15550102000@fax.example.com");
    browser.fill("fax_format", "fax@{1}").await;
    browser.wait_for_text("#fax-preview .error", "{1}").await;
    browser.shot("fax-live-preview").await;
    browser.fill("fax_format", "").await;
    browser.wait_for_text("#fax-preview", "faxing is off").await;

    // Enter in a field saves the form (its default button is Save, not Preview).
    browser.fill("smtp_user", "orders@example.com").await;
    browser.press_enter("smtp_user").await;
    browser.wait_for_text("main", "Saved.").await;
    let company = harness.accounts().company().await.unwrap().unwrap();
    assert_eq!(company.server.smtp_user, "orders@example.com");

    // A Microsoft user account bound to SystemUser / User_Name / sa, on the sandbox's
    // SMTP server.
    browser.goto(&format!("{base}/accounts/new")).await;
    browser.fill("smtp_user", "jo@contoso.example").await;
    browser.fill("host", &endpoints.smtp_host).await;
    browser
        .fill("port", &endpoints.smtp_starttls_port.to_string())
        .await;
    browser.choose("tls_startup", "starttls").await;
    browser.fill("business_object", "SystemUser").await;
    browser.fill("column_name", "User_Name").await;
    browser.fill("column_value", "sa").await;
    browser.click_to_leave("Add").await;
    let jo = harness.accounts().user_accounts().await.unwrap()[0].id;
    assert_eq!(browser.path().await, format!("/accounts/{jo}"));
    assert_eq!(browser.text(".token-state").await, "not signed in");

    // Sign In: the Email Sign In choice, the sandbox's consent page, back to the form.
    browser.click_to_leave("Sign In").await;
    assert!(browser.page().await.contains("Email Sign In"));
    browser.shot("email-sign-in").await;
    browser.click_to_leave("Sign in with Microsoft").await;
    browser.shot("consent").await;
    approve_as(&browser, "jo@contoso.example").await;
    assert_eq!(browser.path().await, format!("/accounts/{jo}"));
    assert_eq!(browser.text(".signed-in").await, "jo@contoso.example");
    assert!(
        browser
            .page()
            .await
            .contains("Signed in as jo@contoso.example.")
    );
    browser.shot("signed-in").await;

    // Someone else's sign-in for another account is refused, and the page says why.
    let kim = harness.microsoft_user("kim@contoso.example", "kim").await;
    browser
        .goto(&format!("{base}/accounts/{kim}/sign-in"))
        .await;
    browser.click_to_leave("Sign in with Microsoft").await;
    approve_as(&browser, "mallory@contoso.example").await;
    let alert = browser.text("[role='alert']").await;
    assert!(alert.contains("mallory@contoso.example"), "{alert}");
    assert_eq!(browser.text(".token-state").await, "not signed in");
    browser.shot("sign-in-refused").await;

    // Sign In before the account exists: the Add form is filled from the sign-in, and
    // Add stores the account with it.
    browser.goto(&format!("{base}/accounts/new")).await;
    browser.fill("host", &endpoints.smtp_host).await;
    browser.fill("business_object", "SystemUser").await;
    browser.fill("column_name", "User_Name").await;
    browser.fill("column_value", "lee").await;
    browser.click_to_leave("Sign In").await;
    assert_eq!(browser.path().await, "/accounts/new/sign-in");
    browser.click_to_leave("Sign in with Microsoft").await;
    approve_as(&browser, "lee@contoso.example").await;
    assert_eq!(browser.path().await, "/accounts/new");
    let user = browser.css("input[name='smtp_user']").await;
    assert_eq!(
        user.prop("value").await.unwrap().as_deref(),
        Some("lee@contoso.example")
    );
    let host = browser.css("input[name='host']").await;
    assert_eq!(
        host.prop("value").await.unwrap().as_deref(),
        Some(endpoints.smtp_host.as_str()),
        "the form as it was typed"
    );
    browser.shot("add-signed-in").await;
    browser.click_to_leave("Add").await;
    let lee = harness.accounts().user_accounts().await.unwrap()[2].id;
    assert_eq!(browser.path().await, format!("/accounts/{lee}"));
    assert_eq!(browser.text(".signed-in").await, "lee@contoso.example");

    // SMTP Setup: the accounts, jo signed in.
    browser.goto(&format!("{base}/accounts")).await;
    let row = browser.text(&format!("tr[data-account='{jo}']")).await;
    assert!(
        row.contains("SystemUser") && row.contains("jo@contoso.example"),
        "{row}"
    );
    browser.shot("smtp-setup").await;

    // Send a test message as the host application would for system user sa.
    browser.goto(&format!("{base}/send")).await;
    browser
        .css("input[name='mode'][value='resolve']")
        .await
        .click()
        .await
        .unwrap();
    browser.choose("feature", mailroom::SALES_DOCUMENT).await;
    browser.fill("system_user", "sa").await;
    browser.fill("to", "buyer@example.com").await;
    browser.click_to_leave("Send").await;
    let receipt = browser.text("#receipt").await;
    assert!(receipt.contains(&format!("account {jo}")), "{receipt}");
    assert!(receipt.contains("SystemUser"), "why: {receipt}");
    browser.shot("send-test").await;
    let sent = sandbox.mailbox().messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].authenticated_as, "jo@contoso.example");
    assert_eq!(sent[0].recipients, vec!["buyer@example.com".to_owned()]);

    // The outbox: two queued; retry one, cancel the other.
    let first = harness.queue(1).await;
    let second = harness.queue(2).await;
    browser.goto(&format!("{base}/outbox")).await;
    assert!(
        browser
            .page()
            .await
            .contains(&format!("data-message=\"{first}\""))
    );
    browser.shot("outbox").await;
    browser.goto(&format!("{base}/outbox/{first}")).await;
    browser.click_to_leave("Retry").await;
    assert_eq!(browser.text("dd.status").await, "queued");
    browser.goto(&format!("{base}/outbox/{second}")).await;
    browser.click_to_leave("Cancel").await;
    assert_eq!(browser.text("dd.status").await, "cancelled");
    browser.shot("outbox-message").await;
    let outbox = harness.mailroom.outbox();
    assert_eq!(
        outbox.get(first).await.unwrap().status,
        OutboxStatus::Queued
    );
    assert_eq!(
        outbox.get(second).await.unwrap().status,
        OutboxStatus::Cancelled
    );

    // Health, then Sign Out.
    browser.goto(&format!("{base}/health")).await;
    assert!(browser.page().await.contains("Refresh now"));
    browser.shot("health").await;
    browser.goto(&format!("{base}/accounts/{jo}")).await;
    browser.click_to_leave("Sign Out").await;
    assert!(browser.page().await.contains("Signed out"));
    let account = harness
        .accounts()
        .account(AccountRef::User(jo as AccountId))
        .await
        .unwrap();
    let tokens = mailroom::stored_tokens(harness.mailroom.database(), &harness.key)
        .await
        .unwrap();
    assert_eq!(
        mailroom::sign_in_state(&account, &tokens),
        SignInState::NotSignedIn
    );

    browser.close().await;
    db.finish().await;
}
