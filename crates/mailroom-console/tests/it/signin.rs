//! Sign In and Sign Out through the console against the sandbox's look-alike Microsoft:
//! the browser flow with the redirect coming back to the console's own port (the client
//! plays the browser: consent page, Approve, redirect), the refusal of someone else's
//! sign-in, the device code shown on a page, and the binding of a sign-in to its session.

use mailroom::{AccountRef, SignInState};
use mailroom_testkit::{TestDatabase, on_both_backends};
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::support::{Harness, PASSWORD, form_fields, with};

/// The consent page's form: where it posts and its hidden fields.
fn consent_form(page: &str) -> (String, Vec<(String, String)>) {
    let unescape = |text: &str| {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    let form_at = page.find("<form").expect("the consent page has a form");
    let form_tag = &page[form_at..form_at + page[form_at..].find('>').unwrap()];
    let action = attribute(form_tag, "action").expect("the form's action");
    let mut fields = Vec::new();
    let mut rest = &page[form_at..];
    while let Some(at) = rest.find("<input type=\"hidden\"") {
        let tag = &rest[at..at + rest[at..].find('>').unwrap()];
        fields.push((
            attribute(tag, "name").unwrap(),
            attribute(tag, "value").unwrap(),
        ));
        rest = &rest[at + tag.len()..];
    }
    (action, fields)
}

impl Harness {
    /// Sign In with Microsoft in the browser, approving as `address` on the sandbox's
    /// consent page; returns the redirect back to the console (not followed yet).
    async fn approve_browser_sign_in(&self, cookie: &str, account: i64, address: &str) -> String {
        let path = format!("/accounts/{account}/sign-in");
        let csrf = self.csrf(cookie, &path).await;
        self.approve_sign_in_at(cookie, &path, &csrf, address).await
    }

    /// A choice page's Microsoft button (`mode`: `browser` or `device`), posted to `path`;
    /// the console answers with a redirect (to the provider, or to the device code page).
    async fn choose_microsoft(
        &self,
        cookie: &str,
        path: &str,
        csrf: &str,
        mode: &str,
    ) -> reqwest::Response {
        let start = self
            .post(
                cookie,
                path,
                &[("csrf", csrf), ("provider", "microsoft"), ("mode", mode)],
            )
            .await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        start
    }

    /// Chooses Sign in with Microsoft with a POST to `path` (a choice page's buttons) and
    /// approves as `address`; returns the redirect back to the console.
    async fn approve_sign_in_at(
        &self,
        cookie: &str,
        path: &str,
        csrf: &str,
        address: &str,
    ) -> String {
        let start = self.choose_microsoft(cookie, path, csrf, "browser").await;
        let authorize = url::Url::parse(start.headers()[LOCATION].to_str().unwrap()).unwrap();
        let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
        let port = self.console.listen_address().port();
        assert_eq!(
            query["redirect_uri"],
            format!("http://localhost:{port}/"),
            "the registered loopback URI on the console's own port"
        );
        assert_eq!(query["code_challenge_method"], "S256");
        assert!(!query.contains_key("code_verifier"));

        let consent = self.http.get(authorize.clone()).send().await.unwrap();
        assert_eq!(consent.status(), StatusCode::OK);
        let (action, mut fields) = consent_form(&consent.text().await.unwrap());
        fields.push(("address".to_owned(), address.to_owned()));
        fields.push(("decision".to_owned(), "approve".to_owned()));
        let approve = authorize.join(&action).unwrap();
        let redirected = self.http.post(approve).form(&fields).send().await.unwrap();
        assert_eq!(redirected.status(), StatusCode::FOUND);
        let back = redirected.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(
            back.starts_with(&format!("http://localhost:{port}/?")),
            "{back}"
        );
        back
    }

    /// Follows the provider's redirect as a browser would on a cross-site navigation:
    /// without the `SameSite=Strict` cookie.
    async fn follow_callback(&self, back: &str) -> reqwest::Response {
        self.http.get(back).send().await.unwrap()
    }

    async fn sign_in_state(&self, account: i64) -> SignInState {
        let account = self
            .accounts()
            .account(AccountRef::User(account))
            .await
            .unwrap();
        let tokens = mailroom::stored_tokens(self.mailroom.database(), &self.key)
            .await
            .unwrap();
        mailroom::sign_in_state(&account, &tokens)
    }
}

async fn signing_in_in_the_browser_comes_back_to_the_console_and_stores_the_token(
    db: &TestDatabase,
) {
    let harness = Harness::with_sandbox(db).await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;

    let (status, choice) = harness
        .get(&cookie, &format!("/accounts/{jo}/sign-in"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(choice.contains("<h1>Email Sign In</h1>"), "{choice}");
    assert!(choice.contains("Sign in with Microsoft"), "{choice}");
    assert!(
        choice.contains("disabled type=\"submit\"") || choice.contains("type=\"submit\" disabled"),
        "Google's button is off for a Microsoft account: {choice}"
    );

    let back = harness
        .approve_browser_sign_in(&cookie, jo, "jo@contoso.example")
        .await;
    let done = harness.follow_callback(&back).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let origin = harness.console.origin();
    assert_eq!(
        done.headers()[LOCATION].to_str().unwrap(),
        format!("{origin}accounts/{jo}"),
        "back on the console's own address, where the session cookie is"
    );
    assert_eq!(harness.sign_in_state(jo).await, SignInState::SignedIn);

    let (_, page) = harness.get(&cookie, &format!("/accounts/{jo}")).await;
    assert!(page.contains("Signed in as jo@contoso.example."), "{page}");
    assert!(
        page.contains("<strong class=\"signed-in\">jo@contoso.example</strong>"),
        "{page}"
    );
    assert!(page.contains("Sign Out"), "{page}");
    // The notice is shown once.
    let (_, again) = harness.get(&cookie, &format!("/accounts/{jo}")).await;
    assert!(
        !again.contains("Signed in as jo@contoso.example."),
        "{again}"
    );

    // The same redirect a second time: the sign-in is over.
    let replay = harness.follow_callback(&back).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // Sign Out deletes the token.
    let csrf = harness.csrf(&cookie, &format!("/accounts/{jo}")).await;
    let out = harness
        .post(
            &cookie,
            &format!("/accounts/{jo}/sign-out"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(harness.sign_in_state(jo).await, SignInState::NotSignedIn);
    let (_, page) = harness.get(&cookie, &format!("/accounts/{jo}")).await;
    assert!(page.contains("Signed out"), "{page}");
    assert!(!page.contains("Sign Out"), "{page}");
}

/// The page from its alert on.
fn alert(page: &str) -> &str {
    page.find("role=\"alert\"")
        .map(|at| &page[at..])
        .unwrap_or_else(|| panic!("an alert: {page}"))
}

/// The Add form with a binding and an SMTP user, as posted by its Sign In button: the
/// form is kept as the session's draft and the choice is shown.
async fn sign_in_from_the_add_form(harness: &Harness, cookie: &str, smtp_user: &str) -> String {
    let (_, page) = harness.get(cookie, "/accounts/new").await;
    let fields = with(
        &form_fields(&page, "account-form"),
        &[
            ("provider", "none"),
            ("previous_provider", "none"),
            ("host", "smtp.example.com"),
            ("port", "2525"),
            ("password", PASSWORD),
            ("smtp_user", smtp_user),
            ("business_object", "SystemUser"),
            ("column_name", "User_Name"),
            ("column_value", "sa"),
            ("action", "sign-in"),
        ],
    );
    let csrf = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.clone())
        .unwrap();
    let kept = harness
        .submit(cookie, "/accounts/new/sign-in", &fields)
        .await;
    assert_eq!(kept.status(), StatusCode::SEE_OTHER);
    assert_eq!(kept.headers()[LOCATION], "/accounts/new/sign-in");
    csrf
}

async fn signing_in_before_the_account_exists_fills_the_add_form_and_add_keeps_the_sign_in(
    db: &TestDatabase,
) {
    let harness = Harness::with_sandbox(db).await;
    let cookie = harness.login().await;
    let csrf = sign_in_from_the_add_form(&harness, &cookie, "").await;
    let (status, choice) = harness.get(&cookie, "/accounts/new/sign-in").await;
    assert_eq!(status, StatusCode::OK);
    assert!(choice.contains("<h1>Email Sign In</h1>"), "{choice}");
    assert!(choice.contains("Sign in with Google"), "{choice}");
    assert!(
        !choice.contains(" disabled"),
        "on loopback every provider's buttons are live for a new account: {choice}"
    );

    let back = harness
        .approve_sign_in_at(
            &cookie,
            "/accounts/new/sign-in/start",
            &csrf,
            "kim@contoso.example",
        )
        .await;
    let done = harness.follow_callback(&back).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[LOCATION].to_str().unwrap(),
        format!("{}accounts/new", harness.console.origin())
    );
    assert!(
        harness.accounts().user_accounts().await.unwrap().is_empty(),
        "nothing is stored before Add"
    );
    assert!(
        mailroom::stored_tokens(harness.mailroom.database(), &harness.key)
            .await
            .unwrap()
            .is_empty()
    );

    // The form is filled from the sign-in: the SMTP user and Microsoft's preset; the
    // binding typed before stays; the password typed before is gone.
    let (_, page) = harness.get(&cookie, "/accounts/new").await;
    assert!(
        page.contains("Signed in as kim@contoso.example. Review"),
        "{page}"
    );
    assert!(
        page.contains("<strong class=\"signed-in\">kim@contoso.example</strong>"),
        "{page}"
    );
    let fields = form_fields(&page, "account-form");
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("a field {name}: {fields:?}"))
    };
    assert_eq!(field("smtp_user"), "kim@contoso.example");
    assert_eq!(field("provider"), "microsoft");
    assert_eq!(field("host"), "smtp.office365.com");
    assert_eq!(field("port"), "587");
    assert_eq!(field("column_value"), "sa");
    assert!(page.contains("readonly"), "the signed-in SMTP user: {page}");

    // Another session does not see this draft.
    let other = harness.login().await;
    let (_, theirs) = harness.get(&other, "/accounts/new").await;
    assert!(!theirs.contains("kim@contoso.example"), "{theirs}");
    // A form from before the sign-in (an older tab: no draft id) is added without it,
    // and the draft keeps its sign-in.
    let (_, older) = harness.get(&other, "/accounts/new").await;
    let older = with(
        &form_fields(&older, "account-form"),
        &[
            ("csrf", csrf.as_str()),
            ("smtp_user", "bob@contoso.example"),
            ("business_object", "SystemUser"),
            ("column_name", "User_Name"),
            ("column_value", "bob"),
        ],
    );
    let bob = harness.submit(&cookie, "/accounts/new", &older).await;
    assert_eq!(bob.status(), StatusCode::SEE_OTHER);
    let users = harness.accounts().user_accounts().await.unwrap();
    assert_eq!(users[0].server.smtp_user, "bob@contoso.example");
    assert_eq!(
        harness.sign_in_state(users[0].id).await,
        SignInState::NotSignedIn
    );
    harness
        .accounts()
        .remove_user_account(users[0].id)
        .await
        .unwrap();

    // Add stores the account and its sign-in together.
    let added = harness
        .submit(
            &cookie,
            "/accounts/new",
            &with(&fields, &[("action", "save")]),
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let users = harness.accounts().user_accounts().await.unwrap();
    assert_eq!(users.len(), 1);
    let kim = &users[0];
    assert_eq!(kim.server.smtp_user, "kim@contoso.example");
    assert!(
        kim.server.password.is_none(),
        "the password typed before the sign-in was not kept"
    );
    assert_eq!(kim.server.provider, mailroom::Provider::Microsoft);
    assert_eq!(
        kim.binding.as_ref().map(|b| b.column_value.as_str()),
        Some("sa")
    );
    assert_eq!(
        added.headers()[LOCATION].to_str().unwrap(),
        format!("/accounts/{}", kim.id)
    );
    assert_eq!(harness.sign_in_state(kim.id).await, SignInState::SignedIn);
    // The draft is gone: the Add form is empty again.
    let (_, page) = harness.get(&cookie, "/accounts/new").await;
    assert!(!page.contains("kim@contoso.example"), "{page}");
}

async fn a_refused_sign_in_before_the_account_exists_stores_nothing_and_says_why(
    db: &TestDatabase,
) {
    let harness = Harness::with_sandbox(db).await;
    let cookie = harness.login().await;
    let csrf = sign_in_from_the_add_form(&harness, &cookie, "jo@contoso.example").await;
    let back = harness
        .approve_sign_in_at(
            &cookie,
            "/accounts/new/sign-in/start",
            &csrf,
            "mallory@contoso.example",
        )
        .await;
    assert_eq!(
        harness.follow_callback(&back).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = harness.get(&cookie, "/accounts/new").await;
    let alert = alert(&page);
    assert!(alert.contains("mallory@contoso.example"), "{alert}");
    assert!(alert.contains("jo@contoso.example"), "{alert}");
    // The form is kept as it was (with the chosen provider's preset), holding no sign-in.
    let fields = form_fields(&page, "account-form");
    assert!(fields.contains(&("smtp_user".to_owned(), "jo@contoso.example".to_owned())));
    assert!(fields.contains(&("host".to_owned(), "smtp.office365.com".to_owned())));
    assert!(!page.contains("Discard the sign-in"), "{page}");
    assert!(harness.accounts().user_accounts().await.unwrap().is_empty());
    assert!(
        mailroom::stored_tokens(harness.mailroom.database(), &harness.key)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn someone_elses_sign_in_is_refused_and_the_page_says_why(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;

    let back = harness
        .approve_browser_sign_in(&cookie, jo, "mallory@contoso.example")
        .await;
    let done = harness.follow_callback(&back).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(harness.sign_in_state(jo).await, SignInState::NotSignedIn);
    let (_, page) = harness.get(&cookie, &format!("/accounts/{jo}")).await;
    let alert = alert(&page);
    assert!(alert.contains("mallory@contoso.example"), "{alert}");
    assert!(alert.contains("jo@contoso.example"), "{alert}");
}

async fn a_sign_in_is_bound_to_the_session_that_started_it(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;
    let back = harness
        .approve_browser_sign_in(&cookie, jo, "jo@contoso.example")
        .await;
    // The session ends (Log out) before the redirect arrives: its sign-ins under way
    // end with it, and the redirect stores nothing.
    let csrf = harness.csrf(&cookie, "/accounts").await;
    harness.click(&cookie, &csrf, "/logout").await;
    let done = harness.follow_callback(&back).await;
    assert_eq!(done.status(), StatusCode::BAD_REQUEST);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("not one the console is waiting for")
    );
    assert_eq!(harness.sign_in_state(jo).await, SignInState::NotSignedIn);

    // A made-up state is not a sign-in.
    let port = harness.console.listen_address().port();
    let forged = harness
        .follow_callback(&format!(
            "http://localhost:{port}/?code=stolen&state=made-up"
        ))
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    // On another path (a redirect URI registered with one) too: no login, no sign-in.
    let forged = harness
        .follow_callback(&format!(
            "http://localhost:{port}/mailroom?code=stolen&state=made-up"
        ))
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
}

impl Harness {
    /// Chooses Sign in with Microsoft using a code with a POST to `path`, approves the
    /// code the page shows as `address`, and follows the page until the sign-in ends;
    /// returns where it led.
    async fn approve_device_sign_in_at(
        &self,
        cookie: &str,
        path: &str,
        csrf: &str,
        address: &str,
    ) -> String {
        let start = self.choose_microsoft(cookie, path, csrf, "device").await;
        let device = start.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(device.ends_with("/device"), "{device}");
        let (status, page) = self.get(cookie, &device).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("http-equiv=\"refresh\""), "{page}");
        let marker = "<code class=\"device-code\">";
        let at = page
            .find(marker)
            .unwrap_or_else(|| panic!("a code: {page}"))
            + marker.len();
        let code = &page[at..at + page[at..].find('<').unwrap()];
        let authority = self.sandbox.as_ref().unwrap().authority();
        assert!(authority.approve_device_code(code, address));

        // Each visit holds up to two seconds for the outcome; the sandbox is polled every
        // second, so a few visits see it.
        for _ in 0..15 {
            let response = self
                .http
                .get(format!("{}{device}", self.base))
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::SEE_OTHER {
                return response.headers()[LOCATION].to_str().unwrap().to_owned();
            }
            assert_eq!(response.status(), StatusCode::OK);
        }
        panic!("the device code page did not end");
    }
}

async fn a_device_code_is_shown_on_the_page_until_the_sign_in_ends(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;
    let path = format!("/accounts/{jo}/sign-in");
    let csrf = harness.csrf(&cookie, &path).await;
    let ended = harness
        .approve_device_sign_in_at(&cookie, &path, &csrf, "jo@contoso.example")
        .await;
    assert_eq!(ended, format!("/accounts/{jo}"));
    assert_eq!(harness.sign_in_state(jo).await, SignInState::SignedIn);
    let (_, page) = harness.get(&cookie, &format!("/accounts/{jo}")).await;
    assert!(page.contains("Signed in as jo@contoso.example."), "{page}");
}

async fn a_device_code_signs_in_before_the_account_exists(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let cookie = harness.login().await;
    let csrf = sign_in_from_the_add_form(&harness, &cookie, "").await;
    let ended = harness
        .approve_device_sign_in_at(
            &cookie,
            "/accounts/new/sign-in/start",
            &csrf,
            "lee@contoso.example",
        )
        .await;
    assert_eq!(ended, "/accounts/new");
    assert!(harness.accounts().user_accounts().await.unwrap().is_empty());
    let (_, page) = harness.get(&cookie, "/accounts/new").await;
    assert!(
        page.contains("Signed in as lee@contoso.example. Review"),
        "{page}"
    );

    // Discard drops the sign-in and the address it filled; the rest of the form stays,
    // as posted (an edit made after the sign-in came back included).
    let fields = form_fields(&page, "account-form");
    let discarded = harness
        .submit(
            &cookie,
            "/accounts/new/discard",
            &with(&fields, &[("column_value", "sa2")]),
        )
        .await;
    assert_eq!(discarded.status(), StatusCode::SEE_OTHER);
    let (_, page) = harness.get(&cookie, "/accounts/new").await;
    assert!(!page.contains("lee@contoso.example"), "{page}");
    let fields = form_fields(&page, "account-form");
    assert!(fields.contains(&("column_value".to_owned(), "sa2".to_owned())));

    // Added without a sign-in now: the account exists, nobody signed in.
    let added = harness
        .submit(
            &cookie,
            "/accounts/new",
            &with(&fields, &[("action", "save")]),
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let users = harness.accounts().user_accounts().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        harness.sign_in_state(users[0].id).await,
        SignInState::NotSignedIn
    );
}

async fn a_sign_in_with_another_provider_or_for_a_password_account_is_refused(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    harness.company_with_password().await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;
    let path = format!("/accounts/{jo}/sign-in");
    let csrf = harness.csrf(&cookie, &path).await;
    let response = harness
        .post(
            &cookie,
            &path,
            &[("csrf", &csrf), ("provider", "google"), ("mode", "browser")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("microsoft provider")
    );

    let response = harness
        .post(
            &cookie,
            "/accounts/company/sign-in",
            &[("csrf", &csrf), ("provider", "none"), ("mode", "browser")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("password"), "{page}");
}

async fn health_refreshes_a_token_and_offers_a_sign_in_where_one_is_needed(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let kim = harness.microsoft_user("kim@contoso.example", "kim").await;
    let cookie = harness.login().await;
    let back = harness
        .approve_browser_sign_in(&cookie, jo, "jo@contoso.example")
        .await;
    harness.follow_callback(&back).await;
    let before = mailroom::stored_tokens(harness.mailroom.database(), &harness.key)
        .await
        .unwrap()[0]
        .version;

    let (status, page) = harness.get(&cookie, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let row = |page: &str, id: i64| {
        let start = page.find(&format!("data-account=\"{id}\"")).unwrap();
        page[start..start + page[start..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row(&page, jo).contains("Refresh now"), "{page}");
    assert!(row(&page, kim).contains("Sign in again"), "{page}");
    assert!(!row(&page, kim).contains("Refresh now"), "{page}");

    let csrf = harness.csrf(&cookie, "/health").await;
    let refreshed = harness
        .click(&cookie, &csrf, &format!("/accounts/{jo}/refresh"))
        .await;
    assert_eq!(refreshed.status(), StatusCode::SEE_OTHER);
    let (_, page) = harness.get(&cookie, "/health").await;
    assert!(
        page.contains("Refreshed the token of jo@contoso.example"),
        "{page}"
    );
    let after = mailroom::stored_tokens(harness.mailroom.database(), &harness.key)
        .await
        .unwrap()[0]
        .version;
    assert!(
        after > before,
        "a new token was stored: {before} -> {after}"
    );

    // Kim has no token: the refresh fails and offers the sign-in.
    harness
        .click(&cookie, &csrf, &format!("/accounts/{kim}/refresh"))
        .await;
    let (_, page) = harness.get(&cookie, "/health").await;
    let alert = &page[page.find("role=\"alert\"").unwrap()..];
    assert!(
        alert.contains(&format!("/accounts/{kim}/sign-in")),
        "{alert}"
    );

    // The checks of one account, on demand.
    let checked = harness
        .click(&cookie, &csrf, &format!("/accounts/{jo}/check"))
        .await;
    assert_eq!(checked.status(), StatusCode::OK);
    let page = checked.text().await.unwrap();
    assert!(page.contains("<table id=\"checks\">"), "{page}");
    assert!(page.contains("database"), "{page}");
}

async fn a_test_send_that_needs_a_sign_in_offers_the_accounts_sign_in(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let kim = harness.microsoft_user("kim@contoso.example", "kim").await;
    let cookie = harness.login().await;
    let (status, form) = harness.get(&cookie, "/send").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(mailroom::SALES_DOCUMENT), "{form}");
    let csrf = harness.csrf(&cookie, "/send").await;
    let kim_text = kim.to_string();
    let response = harness
        .post(
            &cookie,
            "/send",
            &[
                ("csrf", csrf.as_str()),
                ("mode", "account"),
                ("account", kim_text.as_str()),
                ("to", "buyer@example.com"),
                ("subject", "Test"),
                ("body", "Hello"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    let alert = &page[page.find("role=\"alert\"").expect("an alert")..];
    assert!(
        alert.contains("Failed to obtain an access token"),
        "{alert}"
    );
    assert!(
        alert.contains(&format!("/accounts/{kim}/sign-in")),
        "{alert}"
    );
    assert!(!page.contains("id=\"receipt\""), "{page}");
    assert!(
        harness
            .sandbox
            .as_ref()
            .unwrap()
            .mailbox()
            .messages()
            .is_empty()
    );
}

async fn app_registrations_are_edited_with_the_secret_write_only(db: &TestDatabase) {
    let harness = Harness::with_sandbox(db).await;
    let cookie = harness.login().await;
    let (status, page) = harness.get(&cookie, "/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("mailroom-console-test"),
        "the client ids: {page}"
    );
    assert!(
        !page.contains("google-client-secret"),
        "a secret is never shown"
    );
    assert!(page.contains("(set: leave empty to keep)"), "{page}");
    let apps = || async {
        mailroom::tokens::registration::Apps::new(harness.mailroom.database(), &harness.key)
            .list()
            .await
            .unwrap()
    };
    let csrf = harness.csrf(&cookie, "/settings").await;

    // Google: a new client id, the secret left empty: kept.
    let saved = harness
        .post(
            &cookie,
            "/settings/apps/google",
            &[
                ("csrf", csrf.as_str()),
                ("client_id", "new-google-client"),
                ("client_secret", ""),
                ("redirect_uri", "http://127.0.0.1"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let google = apps()
        .await
        .into_iter()
        .find(|a| a.provider == mailroom::Provider::Google)
        .unwrap();
    assert_eq!(google.client_id, "new-google-client");
    assert_eq!(
        google.client_secret.unwrap().expose(),
        "google-client-secret"
    );

    // Microsoft: a redirect URI that is not loopback is refused, nothing changes.
    let refused = harness
        .post(
            &cookie,
            "/settings/apps/microsoft",
            &[
                ("csrf", csrf.as_str()),
                ("client_id", "other"),
                ("tenant", "contoso.example"),
                ("redirect_uri", "https://login.example/cb"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::OK);
    let page = refused.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");
    let microsoft = apps()
        .await
        .into_iter()
        .find(|a| a.provider == mailroom::Provider::Microsoft)
        .unwrap();
    assert_eq!(microsoft.client_id, "mailroom-console-test");
    let saved = harness
        .post(
            &cookie,
            "/settings/apps/microsoft",
            &[
                ("csrf", csrf.as_str()),
                ("client_id", "other"),
                ("tenant", "contoso.example"),
                ("redirect_uri", "http://localhost/mailroom"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let microsoft = apps()
        .await
        .into_iter()
        .find(|a| a.provider == mailroom::Provider::Microsoft)
        .unwrap();
    assert_eq!(microsoft.client_id, "other");
    assert_eq!(microsoft.tenant(), "contoso.example");
    assert_eq!(
        microsoft.redirect_uri_to_register(),
        "http://localhost/mailroom"
    );
}

on_both_backends!(
    signing_in_in_the_browser_comes_back_to_the_console_and_stores_the_token,
    signing_in_before_the_account_exists_fills_the_add_form_and_add_keeps_the_sign_in,
    a_refused_sign_in_before_the_account_exists_stores_nothing_and_says_why,
    someone_elses_sign_in_is_refused_and_the_page_says_why,
    a_sign_in_is_bound_to_the_session_that_started_it,
    a_device_code_is_shown_on_the_page_until_the_sign_in_ends,
    a_device_code_signs_in_before_the_account_exists,
    a_sign_in_with_another_provider_or_for_a_password_account_is_refused,
    health_refreshes_a_token_and_offers_a_sign_in_where_one_is_needed,
    a_test_send_that_needs_a_sign_in_offers_the_accounts_sign_in,
    app_registrations_are_edited_with_the_secret_write_only,
);
