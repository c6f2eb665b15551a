//! The console over HTTP, on SQLite and PostgreSQL: the login, the security rules every
//! request passes, and the pages' reads and changes through the facade.

use std::sync::Arc;

use mailroom::{EncryptionKey, Mailroom, MailroomOptions};
use mailroom_console::{Console, ConsoleOptions, Error};
use mailroom_testkit::{TestDatabase, on_both_backends};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HOST, LOCATION, SET_COOKIE};

use crate::support::{ACCESS_TOKEN, Harness, PASSWORD, REFRESH_TOKEN, form_fields, with};

async fn a_login_url_opens_one_session_once(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    let url = harness.console.login_url();
    let first = harness.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.headers()[LOCATION], "/accounts");
    let cookie = first.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let (status, body) = harness.get(&cookie, "/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<h1>SMTP Setup</h1>"), "{body}");

    let again = harness.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(again.headers().get(SET_COOKIE).is_none());
    assert!(again.text().await.unwrap().contains("used already"));

    // Logging out ends the session.
    let csrf = harness.csrf(&cookie, "/accounts").await;
    let out = harness.post(&cookie, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (status, _) = harness.get(&cookie, "/accounts").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

async fn without_a_session_pages_redirect_to_the_login_and_changes_are_refused(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    for path in ["/accounts", "/outbox", "/settings", "/accounts/company"] {
        let (status, _) = harness.get("", path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        let (status, _) = harness
            .get(
                "mailroom_console=0000000000000000000000000000000000000000000000000000000000000000",
                path,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "{path} with a made-up session"
        );
    }
    let response = harness
        .post("", "/settings", &[("can_sign_in_when_sending", "1")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A `state` parameter makes a request a sign-in's redirect, never a way past the
    // login: one that names no sign-in under way is refused, on any path.
    for path in [
        "/?state=made-up",
        "/outbox?state=made-up",
        "/accounts?code=x&state=y",
    ] {
        let (status, body) = harness.get("", path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body.contains("not one the console is waiting for"),
            "{path}: {body}"
        );
    }
    let (status, body) = harness.get("", "/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("login link"), "{body}");
}

async fn a_post_without_the_sessions_csrf_token_changes_nothing(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    let cookie = harness.login().await;
    let before = harness.accounts().settings().await.unwrap();
    assert!(before.can_sign_in_when_sending);

    // No token, another session's token, a truncated one: 403, nothing changed.
    let other = harness.login().await;
    let others_csrf = harness.csrf(&other, "/settings").await;
    let csrf = harness.csrf(&cookie, "/settings").await;
    assert_ne!(csrf, others_csrf, "each session has its own token");
    for form in [
        vec![],
        vec![("csrf", others_csrf.as_str())],
        vec![("csrf", &csrf[..63])],
    ] {
        let response = harness.post(&cookie, "/settings", &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert!(response.text().await.unwrap().contains("CSRF"));
        assert!(
            harness
                .accounts()
                .settings()
                .await
                .unwrap()
                .can_sign_in_when_sending
        );
    }

    // With it (and the box unticked): changed.
    let response = harness.post(&cookie, "/settings", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        !harness
            .accounts()
            .settings()
            .await
            .unwrap()
            .can_sign_in_when_sending
    );
    let (_, page) = harness.get(&cookie, "/settings").await;
    assert!(!page.contains("checked"), "{page}");
}

async fn a_request_for_another_host_is_misdirected(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    let cookie = harness.login().await;
    let port = harness.console.listen_address().port();
    for host in [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let response = harness
            .http
            .get(format!("{}/accounts", harness.base))
            .header(COOKIE, &cookie)
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    // A loopback redirect URI names localhost: the console answers to it.
    let response = harness
        .http
        .get(format!("{}/login", harness.base))
        .header(HOST, format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn every_response_carries_the_security_headers(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    let cookie = harness.login().await;
    for (cookie, path) in [
        ("", "/login"),
        ("", "/accounts"),
        (cookie.as_str(), "/accounts"),
        (cookie.as_str(), "/no-such-page"),
        (cookie.as_str(), "/console.css"),
        ("", "/console.js"),
    ] {
        let response = harness
            .http
            .get(format!("{}{path}", harness.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
        assert!(
            policy.contains("script-src 'self';") && !policy.contains("unsafe-inline"),
            "{path}: the console's own script file only, nothing inline: {policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
}

async fn the_smtp_setup_list_shows_each_account_and_no_secret(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    harness.company_with_password().await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let kim = harness.microsoft_user("kim@contoso.example", "kim").await;
    harness.store_token("jo@contoso.example").await;
    let cookie = harness.login().await;

    let (status, list) = harness.get(&cookie, "/accounts").await;
    assert_eq!(status, StatusCode::OK);
    for label in [
        "Email Server ID",
        "OAuth Service Provider",
        "Business Object",
        "Column Name",
        "Column Value",
        "Signed in as",
    ] {
        assert!(list.contains(label), "{label}");
    }
    let row = |id: &str| {
        let start = list
            .find(&format!("data-account=\"{id}\""))
            .unwrap_or_else(|| panic!("a row for {id}"));
        let end = list[start..].find("</tr>").unwrap() + start;
        list[start..end].to_owned()
    };
    let company = row("company");
    assert!(company.contains("smtp.example.com"), "{company}");
    assert!(company.contains(">password<"), "{company}");
    let jo_row = row(&jo.to_string());
    assert!(
        jo_row.contains("<td>SystemUser</td><td>User_Name</td><td>sa</td>"),
        "{jo_row}"
    );
    assert!(jo_row.contains(">jo@contoso.example<"), "{jo_row}");
    assert!(jo_row.contains("valid until"), "{jo_row}");
    let kim_row = row(&kim.to_string());
    assert!(kim_row.contains("not signed in"), "{kim_row}");

    // Every page a person can reach, scanned for the stored secrets.
    let id = harness.queue(1).await;
    for path in [
        "/accounts".to_owned(),
        "/accounts/company".to_owned(),
        format!("/accounts/{jo}"),
        format!("/accounts/{kim}"),
        format!("/accounts/{jo}/sign-in"),
        "/accounts/new".to_owned(),
        "/outbox".to_owned(),
        format!("/outbox/{id}"),
        "/health".to_owned(),
        "/send".to_owned(),
        "/settings".to_owned(),
    ] {
        let (status, page) = harness.get(&cookie, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        for secret in [PASSWORD, ACCESS_TOKEN, REFRESH_TOKEN] {
            assert!(!page.contains(secret), "{path} shows a secret");
        }
    }
    let (_, company_page) = harness.get(&cookie, "/accounts/company").await;
    assert!(
        company_page.contains("(set: leave empty to keep)"),
        "the password is said to be set: {company_page}"
    );
}

async fn removing_an_account_takes_a_post_with_the_token(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    harness.company_with_password().await;
    let jo = harness.microsoft_user("jo@contoso.example", "sa").await;
    let cookie = harness.login().await;
    let csrf = harness.csrf(&cookie, "/accounts").await;

    let (status, _) = harness
        .get(&cookie, &format!("/accounts/{jo}/remove"))
        .await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "a GET never removes"
    );
    assert_eq!(harness.accounts().user_accounts().await.unwrap().len(), 1);

    let response = harness
        .click(&cookie, &csrf, &format!("/accounts/{jo}/remove"))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(harness.accounts().user_accounts().await.unwrap().is_empty());

    // Removing it again says what is wrong.
    let response = harness
        .click(&cookie, &csrf, &format!("/accounts/{jo}/remove"))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");
}

async fn the_outbox_pages_by_id_and_retries_and_cancels(db: &TestDatabase) {
    let harness = Harness::start_with(db, 3).await;
    harness.company_with_password().await;
    let mut ids = Vec::new();
    for number in 0..7 {
        ids.push(harness.queue(number).await);
    }
    let cookie = harness.login().await;

    // Newest first, three a page, each page's "Older" link continuing below its last id.
    let mut seen = Vec::new();
    let mut path = "/outbox".to_owned();
    loop {
        let (status, page) = harness.get(&cookie, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("queued (7)"), "{page}");
        let mut rest = page.as_str();
        while let Some(at) = rest.find("data-message=\"") {
            rest = &rest[at + "data-message=\"".len()..];
            let end = rest.find('"').unwrap();
            seen.push(rest[..end].parse::<i64>().unwrap());
        }
        match page.find("rel=\"next\" href=\"") {
            Some(at) => {
                let rest = &page[at + "rel=\"next\" href=\"".len()..];
                path = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
            }
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Cancel one, retry it (refused: cancelled), and filter by status.
    let csrf = harness.csrf(&cookie, "/outbox").await;
    let cancelled = ids[0];
    let response = harness
        .click(&cookie, &csrf, &format!("/outbox/{cancelled}/cancel"))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, detail) = harness.get(&cookie, &format!("/outbox/{cancelled}")).await;
    assert!(
        detail.contains("<dd class=\"status\">cancelled</dd>"),
        "{detail}"
    );
    assert!(
        !detail.contains("/retry"),
        "a cancelled message offers no retry"
    );
    let response = harness
        .click(&cookie, &csrf, &format!("/outbox/{cancelled}/retry"))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, page) = harness.get(&cookie, "/outbox?status=cancelled").await;
    assert!(
        page.contains(&format!("data-message=\"{cancelled}\"")),
        "{page}"
    );
    assert_eq!(page.matches("data-message=").count(), 1, "{page}");

    let retried = ids[1];
    let response = harness
        .click(&cookie, &csrf, &format!("/outbox/{retried}/retry"))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let message = harness.mailroom.outbox().get(retried).await.unwrap();
    assert_eq!(message.status, mailroom::OutboxStatus::Queued);

    // The detail shows the stored headers, never the body.
    let (_, detail) = harness.get(&cookie, &format!("/outbox/{retried}")).await;
    assert!(detail.contains("Subject: Statement 1"), "{detail}");
    assert!(!detail.contains("Body 1"), "{detail}");

    // A held message offers its account's Sign In, in the list and on its page.
    let held = ids[2];
    use sea_orm::ConnectionTrait;
    harness
        .mailroom
        .database()
        .execute_unprepared(&format!(
            "UPDATE outbox_message SET status = 'held' WHERE id = {held}"
        ))
        .await
        .unwrap();
    let (_, page) = harness.get(&cookie, "/outbox?status=held").await;
    assert!(page.contains("/accounts/company/sign-in"), "{page}");
    let (_, detail) = harness.get(&cookie, &format!("/outbox/{held}")).await;
    assert!(detail.contains("/accounts/company/sign-in"), "{detail}");

    let (status, page) = harness.get(&cookie, "/outbox?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("not an outbox status"), "{page}");
}

async fn an_admin_password_logs_in_and_wrong_ones_are_limited(db: &TestDatabase) {
    let clock = Arc::new(mailroom::ManualClock::new(std::time::SystemTime::now()));
    let harness = Harness::with_clock(db, Arc::clone(&clock)).await;
    let (_, page) = harness.get("", "/login").await;
    assert!(
        !page.contains("name=\"password\""),
        "no password set: {page}"
    );

    let short = mailroom_console::set_password(&harness.mailroom, Some("too short")).await;
    assert!(short.unwrap_err().to_string().contains("at least 12"));
    mailroom_console::set_password(&harness.mailroom, Some("correct horse battery"))
        .await
        .unwrap();
    let stored = harness
        .accounts()
        .console_password_hash()
        .await
        .unwrap()
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse battery"));
    let (_, page) = harness.get("", "/login").await;
    assert!(page.contains("name=\"password\""), "{page}");

    let try_password = |password: &'static str| {
        let harness = &harness;
        async move {
            harness
                .http
                .post(format!("{}/login", harness.base))
                .form(&[("password", password)])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = try_password("correct horse batterY").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let right = try_password("correct horse battery").await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (status, _) = harness.get(&cookie, "/accounts").await;
    assert_eq!(status, StatusCode::OK);

    // Five wrong in a minute: even the right one waits until the minute has passed.
    for _ in 1..mailroom_console::MAX_FAILED_LOGINS {
        assert_eq!(try_password("guess").await.status(), StatusCode::FORBIDDEN);
    }
    let limited = try_password("correct horse battery").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().get(SET_COOKIE).is_none());
    clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        try_password("correct horse battery").await.status(),
        StatusCode::SEE_OTHER
    );

    // Removed: the login link is the only way in again.
    mailroom_console::set_password(&harness.mailroom, None)
        .await
        .unwrap();
    assert_eq!(
        try_password("correct horse battery").await.status(),
        StatusCode::FORBIDDEN
    );
}

on_both_backends!(
    an_admin_password_logs_in_and_wrong_ones_are_limited,
    a_login_url_opens_one_session_once,
    without_a_session_pages_redirect_to_the_login_and_changes_are_refused,
    a_post_without_the_sessions_csrf_token_changes_nothing,
    a_request_for_another_host_is_misdirected,
    every_response_carries_the_security_headers,
    the_smtp_setup_list_shows_each_account_and_no_secret,
    removing_an_account_takes_a_post_with_the_token,
    the_outbox_pages_by_id_and_retries_and_cancels,
);

#[tokio::test]
async fn an_address_off_loopback_without_tls_is_refused() {
    let db = TestDatabase::new(mailroom_testkit::Backend::Sqlite).await;
    let mailroom = Arc::new(
        Mailroom::with_connection(
            db.db.clone(),
            MailroomOptions::new(EncryptionKey::generate()),
        )
        .await
        .unwrap(),
    );
    let options = ConsoleOptions {
        listen: "0.0.0.0:8470".parse().unwrap(),
        ..ConsoleOptions::default()
    };
    let error = Console::new(mailroom, options).unwrap_err();
    assert!(matches!(error, Error::PlaintextOffLoopback(_)));
    assert!(error.to_string().contains("certificate"), "{error}");
    db.finish().await;
}

async fn the_company_form_fills_a_providers_preset_and_marks_what_it_ignores(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    harness.company_with_password().await;
    let cookie = harness.login().await;
    let (_, page) = harness.get(&cookie, "/accounts/company").await;
    assert!(page.contains("<h1>Sales Email Confirmation</h1>"), "{page}");
    for label in [
        "Email Server hostname or IP address",
        "SMTP User",
        "SMTP Password",
        "SMTP OAuth Service Provider",
        "SMTP Port",
        "Enable SMTP over SSL or TLS",
        "SSL or TLS Startup Method",
        "Email To Fax Format String",
        "SMTP Timeout",
    ] {
        assert!(page.contains(label), "{label}");
    }
    assert!(
        !page.contains("(ignored)"),
        "a password server uses every field"
    );

    // Choosing Google fills its preset, whatever the old fields said.
    let fields = form_fields(&page, "account-form");
    let response = harness
        .submit(
            &cookie,
            "/accounts/company",
            &with(&fields, &[("provider", "google")]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let company = harness.accounts().company().await.unwrap().unwrap();
    assert_eq!(company.server.provider, mailroom::Provider::Google);
    assert_eq!(company.server.host, "gmail.googleapis.com");
    assert_eq!(company.server.port, 443);
    assert!(
        company.server.password.is_none(),
        "OAuth accounts keep no password"
    );
    let (_, page) = harness.get(&cookie, "/accounts/company").await;
    assert!(page.contains("Google preset was filled in"), "{page}");
    assert_eq!(
        page.matches("(ignored)").count(),
        3,
        "TLS, startup, timeout: {page}"
    );
    assert!(page.contains("name=\"tls_startup\" disabled"), "{page}");

    // Saving the Google form again posts no ignored field and changes nothing else.
    let fields = form_fields(&page, "account-form");
    assert!(
        !fields
            .iter()
            .any(|(name, _)| name == "timeout_ms" || name == "tls")
    );
    let response = harness.submit(&cookie, "/accounts/company", &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let again = harness.accounts().company().await.unwrap().unwrap();
    assert_eq!(again.server, company.server);
}

async fn the_fax_format_is_previewed_and_a_bad_one_is_refused_without_saving(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    harness.company_with_password().await;
    let cookie = harness.login().await;
    let (_, page) = harness.get(&cookie, "/accounts/company").await;
    let fields = form_fields(&page, "account-form");

    let preview = harness
        .submit(
            &cookie,
            "/accounts/company",
            &with(
                &fields,
                &[
                    ("fax_format", "{0}@fax.example.com"),
                    ("fax_sample", "+1 (555) 010-2000"),
                    ("action", "preview"),
                ],
            ),
        )
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let page = preview.text().await.unwrap();
    assert!(page.contains("+15550102000@fax.example.com"), "{page}");
    let company = harness.accounts().company().await.unwrap().unwrap();
    assert!(company.fax_format.is_none(), "a preview saves nothing");

    // The live preview's answers: the address, what is wrong, or that faxing is off.
    for (query, status, answer) in [
        (
            "format=%7B0%7D%40fax.example.com&sample=%2B1+555+010+3000",
            StatusCode::OK,
            "+15550103000@fax.example.com",
        ),
        (
            "format=fax%40%7B1%7D&sample=1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "{1}",
        ),
        ("format=&sample=1", StatusCode::OK, "faxing is off"),
    ] {
        let (got, text) = harness.get(&cookie, &format!("/fax-preview?{query}")).await;
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(answer), "{query}: {text}");
    }
    let (status, _) = harness.get("", "/fax-preview?format=x").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "behind the login");
    let company = harness.accounts().company().await.unwrap().unwrap();
    assert!(
        company.fax_format.is_none(),
        "the live preview saves nothing"
    );

    let bad = harness
        .submit(
            &cookie,
            "/accounts/company",
            &with(&fields, &[("fax_format", "fax@{1}"), ("action", "save")]),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::OK);
    let page = bad.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(
        page.contains("value=\"fax@{1}\""),
        "the typed value stays: {page}"
    );
    assert!(
        harness
            .accounts()
            .company()
            .await
            .unwrap()
            .unwrap()
            .fax_format
            .is_none()
    );

    let saved = harness
        .submit(
            &cookie,
            "/accounts/company",
            &with(
                &fields,
                &[("fax_format", "{0}@fax.example.com"), ("action", "save")],
            ),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let company = harness.accounts().company().await.unwrap().unwrap();
    assert_eq!(company.fax_format.unwrap().as_str(), "{0}@fax.example.com");
    assert_eq!(company.server.password.unwrap().expose(), PASSWORD, "kept");
}

async fn adding_a_bound_account_and_refusing_a_taken_binding(db: &TestDatabase) {
    let harness = Harness::start(db).await;
    harness.company_with_password().await;
    let cookie = harness.login().await;
    let (status, page) = harness.get(&cookie, "/accounts/new").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Add account</h1>"), "{page}");
    let fields = with(
        &form_fields(&page, "account-form"),
        &[
            ("smtp_user", "jo@contoso.example"),
            ("business_object", "SystemUser"),
            ("column_name", "User_Name"),
            ("column_value", "sa"),
        ],
    );
    let added = harness.submit(&cookie, "/accounts/new", &fields).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let accounts = harness.accounts().user_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    let jo = &accounts[0];
    assert_eq!(jo.server.provider, mailroom::Provider::Microsoft);
    assert_eq!(jo.server.host, "smtp.office365.com");
    assert_eq!(
        jo.binding,
        Some(mailroom::model::Binding::new("SystemUser", "User_Name", "sa").unwrap())
    );
    assert_eq!(
        added.headers()[LOCATION].to_str().unwrap(),
        format!("/accounts/{}", jo.id)
    );

    // The same binding again: refused, the form kept, nothing added.
    let again = harness
        .submit(
            &cookie,
            "/accounts/new",
            &with(&fields, &[("smtp_user", "kim@contoso.example")]),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let page = again.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("kim@contoso.example"), "{page}");
    assert_eq!(harness.accounts().user_accounts().await.unwrap().len(), 1);

    // A port that is not a number names the field.
    let bad = harness
        .submit(
            &cookie,
            "/accounts/new",
            &with(&fields, &[("port", "58x7"), ("column_value", "kim")]),
        )
        .await;
    let page = bad.text().await.unwrap();
    assert!(page.contains("port"), "{page}");
    assert_eq!(harness.accounts().user_accounts().await.unwrap().len(), 1);
}

mod forms {
    use super::*;

    on_both_backends!(
        the_company_form_fills_a_providers_preset_and_marks_what_it_ignores,
        the_fax_format_is_previewed_and_a_bad_one_is_refused_without_saving,
        adding_a_bound_account_and_refusing_a_taken_binding,
    );
}

/// A rustls server configuration with the test CA's certificate for 127.0.0.1.
fn test_tls() -> (
    Arc<rustls::ServerConfig>,
    mailroom_testkit::certificates::TestCertificates,
) {
    let certificates =
        mailroom_testkit::certificates::TestCertificates::generate("mailroom console test CA");
    (certificates.server_config(), certificates)
}

#[tokio::test]
async fn over_tls_the_cookie_is_secure_and_plain_http_gets_nothing() {
    let db = TestDatabase::new(mailroom_testkit::Backend::Sqlite).await;
    let mailroom = Arc::new(
        Mailroom::with_connection(
            db.db.clone(),
            MailroomOptions::new(EncryptionKey::generate()),
        )
        .await
        .unwrap(),
    );
    let (config, certificates) = test_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = Console::new(
        Arc::clone(&mailroom),
        ConsoleOptions {
            listen: listener.local_addr().unwrap(),
            tls: Some(config.clone()),
            ..ConsoleOptions::default()
        },
    )
    .unwrap();
    let login = console.login_url();
    assert_eq!(login.scheme(), "https");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(console.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certificates.ca_pem.as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(login.as_str()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let plain = reqwest::Client::new()
        .get(login.as_str().replacen("https", "http", 1))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP on the TLS port is not served"
    );

    // Off loopback, TLS is what allows it.
    let off_loopback = Console::new(
        mailroom,
        ConsoleOptions {
            listen: "0.0.0.0:8470".parse().unwrap(),
            tls: Some(config),
            ..ConsoleOptions::default()
        },
    );
    assert!(off_loopback.is_ok());
    drop(stop);
    db.finish().await;
}
