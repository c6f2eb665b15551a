//! The console over HTTP, on SQLite and PostgreSQL: the login, the security rules every
//! request passes, and the pages' reads and changes through the facade.

use std::sync::Arc;

use mailroom::{EncryptionKey, Mailroom, MailroomOptions};
use mailroom_console::{Console, ConsoleOptions, Error};
use mailroom_testkit::{TestDatabase, on_both_backends};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HOST, LOCATION, SET_COOKIE};

use crate::support::{ACCESS_TOKEN, Harness, PASSWORD, REFRESH_TOKEN};

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
        assert!(!policy.contains("script-src"), "{path}: no script at all");
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
        "/outbox".to_owned(),
        format!("/outbox/{id}"),
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
        company_page.contains("(set)"),
        "the password is said to be set"
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

    let (status, page) = harness.get(&cookie, "/outbox?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("not an outbox status"), "{page}");
}

on_both_backends!(
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
