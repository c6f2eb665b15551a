//! The authority: sign-in with mailroom's own PKCE flow, the PKCE and redirect URI checks
//! with the providers' error bodies, refresh with and without rotation, device polling,
//! revocation, failure injection, the consent page.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailroom_model::{Provider, Secret};
use mailroom_sandbox::{Style, TokenCheck, microsoft_error_body};
use mailroom_tokens::{
    OAuthHttp,
    interactive::{
        SignInOptions, revoke_at_provider, sign_in_with_browser, sign_in_with_device_code,
    },
};
use serde_json::json;

use crate::support::*;

fn options(expected: &str) -> SignInOptions {
    SignInOptions {
        expected_address: Some(expected.to_owned()),
        timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

#[tokio::test]
async fn mailroom_signs_in_through_the_microsoft_style_loopback_flow() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, Provider::Microsoft);
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("the sign-in succeeds");
    assert_eq!(signed_in.identity.address, MICROSOFT_USER);
    assert_eq!(
        signed_in.identity.tenant_id.as_deref(),
        Some(sandbox.endpoints().tenant_id.as_str())
    );
    assert!(signed_in.has_refresh_token());
    let stats = sandbox.authority().stats();
    assert_eq!((stats.codes_issued, stats.codes_redeemed), (1, 1));
}

#[tokio::test]
async fn mailroom_signs_in_through_the_google_style_loopback_flow() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, Provider::Google);
    for _ in 0..2 {
        // mailroom asks for prompt=consent, so a second sign-in gets a refresh token too.
        let signed_in = sign_in_with_browser(
            &OAuthHttp::new(),
            &app,
            &options(GOOGLE_USER),
            SystemTime::now,
            play_browser,
        )
        .await
        .expect("the sign-in succeeds");
        assert_eq!(signed_in.identity.address, GOOGLE_USER);
        assert!(signed_in.has_refresh_token());
    }
}

#[tokio::test]
async fn without_a_login_hint_the_default_address_signs_in() {
    let sandbox =
        sandbox_with(|config| config.default_address = Some("x@example.com".into())).await;
    let app = app(&sandbox, Provider::Microsoft);
    // The login hint wins over the default address, so hint nobody: sign in as the default.
    let address = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &SignInOptions {
            expected_address: None,
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
        SystemTime::now,
        play_browser,
    )
    .await
    .map(|signed_in| signed_in.identity.address);
    assert_eq!(address.unwrap(), "x@example.com");
}

#[tokio::test]
async fn a_wrong_verifier_is_refused_with_the_providers_body_and_burns_the_code() {
    let sandbox = sandbox().await;
    let code = code(
        &sandbox,
        Provider::Microsoft,
        MICROSOFT_USER,
        MICROSOFT_SCOPE,
    )
    .await;
    let wrong = "x".repeat(43);
    let form = |verifier: &'static str| {
        vec![
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
            ("client_id", MICROSOFT_CLIENT),
            ("code_verifier", verifier),
        ]
    };
    let first = [
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
        ("client_id", MICROSOFT_CLIENT),
        ("code_verifier", wrong.as_str()),
        ("code", code.as_str()),
    ];
    let (status, body) = token_call(&sandbox, Provider::Microsoft, &first).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"], json!([501481]));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.\r\nTrace ID: "),
        "{body}"
    );
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
    // The right verifier no longer helps: the code was used.
    let mut second = form(VERIFIER);
    second.push(("code", &code));
    let (status, body) = token_call(&sandbox, Provider::Microsoft, &second).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_codes"], json!([54005]));

    let google_code =
        crate::support::code(&sandbox, Provider::Google, GOOGLE_USER, GOOGLE_SCOPE).await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Google,
        &[
            ("grant_type", "authorization_code"),
            ("code", &google_code),
            ("redirect_uri", REDIRECT),
            ("client_id", GOOGLE_CLIENT),
            ("client_secret", GOOGLE_SECRET),
            ("code_verifier", &"y".repeat(43)),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid code verifier."})
        )
    );
}

#[tokio::test]
async fn a_different_redirect_uri_is_refused() {
    let sandbox = sandbox().await;
    let code = code(&sandbox, Provider::Google, GOOGLE_USER, GOOGLE_SCOPE).await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Google,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:10/callback"),
            ("client_id", GOOGLE_CLIENT),
            ("client_secret", GOOGLE_SECRET),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
        )
    );
    let code = crate::support::code(
        &sandbox,
        Provider::Microsoft,
        MICROSOFT_USER,
        MICROSOFT_SCOPE,
    )
    .await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:10/callback"),
            ("client_id", MICROSOFT_CLIENT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"], json!([9002313]));
}

#[tokio::test]
async fn authorize_refuses_a_non_loopback_redirect_and_requires_s256() {
    let sandbox = sandbox().await;
    let authorize = sandbox.endpoints().microsoft.authorize.clone();
    let response = http()
        .get(authorize.clone())
        .query(&[
            ("response_type", "code"),
            ("client_id", MICROSOFT_CLIENT),
            ("redirect_uri", "https://evil.example/callback"),
            ("scope", MICROSOFT_SCOPE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        400,
        "never redirected to an unchecked URI"
    );
    assert!(response.text().await.unwrap().contains("AADSTS50011"));

    let response = http()
        .get(authorize)
        .query(&[
            ("response_type", "code"),
            ("client_id", MICROSOFT_CLIENT),
            ("redirect_uri", REDIRECT),
            ("scope", MICROSOFT_SCOPE),
            ("state", "s"),
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
            ("login_hint", MICROSOFT_USER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        "http://127.0.0.1:9/callback?error=invalid_request&error_description=The+sandbox+requires+code_challenge_method%3DS256.&state=s"
    );
}

#[tokio::test]
async fn microsoft_rotates_refresh_tokens_and_google_does_not() {
    let sandbox = sandbox().await;
    let first = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", MICROSOFT_CLIENT),
            ("scope", MICROSOFT_SCOPE),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let rotated = second["refresh_token"]
        .as_str()
        .expect("a new refresh token");
    assert_ne!(rotated, refresh);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["scope"], "https://outlook.office.com/SMTP.Send");
    // The old refresh token is not revoked by its use.
    let (status, _) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", MICROSOFT_CLIENT),
        ],
    )
    .await;
    assert_eq!(status, 200);

    let first = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, answer) = token_call(
            &sandbox,
            Provider::Google,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", GOOGLE_CLIENT),
                ("client_secret", GOOGLE_SECRET),
            ],
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.get("refresh_token").is_none(), "{answer}");
        assert!(answer["access_token"].is_string());
    }
    let stats = sandbox.authority().stats();
    assert_eq!((stats.refreshes, stats.refresh_tokens_rotated), (4, 2));
}

#[tokio::test]
async fn revoked_refresh_tokens_are_refused_in_each_providers_words() {
    let sandbox = sandbox().await;
    let microsoft = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let google = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
    assert_eq!(
        sandbox
            .authority()
            .revoke_refresh_tokens_of("SA@contoso.example"),
        1
    );
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                microsoft["refresh_token"].as_str().unwrap(),
            ),
            ("client_id", MICROSOFT_CLIENT),
        ],
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    assert_eq!(body["error_codes"], json!([50173]));
    // Access tokens stay valid until they expire.
    assert!(matches!(
        sandbox
            .authority()
            .check_access_token(microsoft["access_token"].as_str().unwrap()),
        TokenCheck::Valid(_)
    ));

    // Google's revocation endpoint, as mailroom's sign-out calls it.
    let app = app(&sandbox, Provider::Google);
    let answer = revoke_at_provider(
        &OAuthHttp::new(),
        &app,
        &Secret::new(google["refresh_token"].as_str().unwrap()),
    )
    .await
    .expect("google has a revocation endpoint");
    assert!(answer.is_ok(), "{answer:?}");
    let (status, body) = token_call(
        &sandbox,
        Provider::Google,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", google["refresh_token"].as_str().unwrap()),
            ("client_id", GOOGLE_CLIENT),
            ("client_secret", GOOGLE_SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        )
    );
    // Revoking a refresh token revokes the grant's access tokens too (Google).
    assert!(matches!(
        sandbox
            .authority()
            .check_access_token(google["access_token"].as_str().unwrap()),
        TokenCheck::Revoked(_)
    ));
    let again = revoke_at_provider(&OAuthHttp::new(), &app, &Secret::new("never-issued"))
        .await
        .unwrap();
    assert!(again.is_err());
}

#[tokio::test]
async fn an_injected_failure_answers_the_next_token_call_only() {
    let sandbox = sandbox().await;
    let first = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let body = microsoft_error_body(
        "invalid_grant",
        50076,
        "Due to a configuration change made by your administrator, you must use multi-factor authentication.",
    );
    sandbox.authority().fail_next_token_call(400, body.clone());
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ("client_id", MICROSOFT_CLIENT),
    ];
    assert_eq!(
        token_call(&sandbox, Provider::Microsoft, &form).await,
        (400, body)
    );
    let (status, _) = token_call(&sandbox, Provider::Microsoft, &form).await;
    assert_eq!(status, 200);
    assert_eq!(sandbox.authority().stats().injected_failures, 1);
}

#[tokio::test]
async fn a_zero_lifetime_issues_tokens_that_are_expired_at_once() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::ZERO);
    let answer = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    assert_eq!(answer["expires_in"], 0);
    assert!(matches!(
        sandbox
            .authority()
            .check_access_token(answer["access_token"].as_str().unwrap()),
        TokenCheck::Expired(info) if info.style == Style::Microsoft
    ));
}

#[tokio::test]
async fn mailroom_polls_a_device_code_until_it_is_approved() {
    let sandbox = sandbox_with(|config| config.auto_approve = false).await;
    let app = app(&sandbox, Provider::Microsoft);
    let user_code = Arc::new(Mutex::new(String::new()));
    let sleeps = Arc::new(Mutex::new(0u32));
    let authority = sandbox.authority().clone();
    let signed_in = sign_in_with_device_code(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER),
        SystemTime::now,
        |prompt| {
            assert!(prompt.verification_uri.ends_with("/microsoft/devicelogin"));
            assert!(
                prompt
                    .message
                    .as_deref()
                    .unwrap()
                    .contains(&prompt.user_code)
            );
            *user_code.lock().unwrap() = prompt.user_code.clone();
        },
        |_| {
            // mailroom polls, then waits: approve during the first wait, so the first poll
            // sees authorization_pending and the second gets the tokens.
            let mut sleeps = sleeps.lock().unwrap();
            *sleeps += 1;
            if *sleeps == 1 {
                assert!(authority.approve_device_code(&user_code.lock().unwrap(), MICROSOFT_USER));
            }
            std::future::ready(())
        },
    )
    .await
    .expect("the device sign-in succeeds");
    assert_eq!(signed_in.identity.address, MICROSOFT_USER);
    assert!(signed_in.has_refresh_token());
    assert_eq!(sandbox.authority().stats().device_polls, 2);
}

#[tokio::test]
async fn a_declined_device_code_ends_the_sign_in() {
    let sandbox = sandbox_with(|config| config.auto_approve = false).await;
    let app = app(&sandbox, Provider::Microsoft);
    let user_code = Arc::new(Mutex::new(String::new()));
    let authority = sandbox.authority().clone();
    let error = sign_in_with_device_code(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER),
        SystemTime::now,
        |prompt| *user_code.lock().unwrap() = prompt.user_code.clone(),
        |_| {
            authority.decline_device_code(&user_code.lock().unwrap());
            std::future::ready(())
        },
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("declined"), "{error}");
}

#[tokio::test]
async fn google_refuses_gmail_scopes_in_the_device_flow() {
    let sandbox = sandbox().await;
    let response = http()
        .post(sandbox.endpoints().google.device.clone())
        .form(&[("client_id", GOOGLE_CLIENT), ("scope", GOOGLE_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "invalid_scope", "error_description": "Invalid device flow scope: https://www.googleapis.com/auth/gmail.send"})
    );
    let response = http()
        .post(sandbox.endpoints().google.device.clone())
        .form(&[("client_id", GOOGLE_CLIENT), ("scope", "openid email")])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["verification_url"]
            .as_str()
            .unwrap()
            .ends_with("/google/device")
    );
    assert!(body.get("verification_uri").is_none());
}

#[tokio::test]
async fn client_credentials_need_a_secret_and_a_default_scope() {
    let sandbox = sandbox().await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MICROSOFT_CLIENT),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MICROSOFT_CLIENT),
            ("client_secret", "s3cret"),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert!(matches!(
        sandbox.authority().check_access_token(body["access_token"].as_str().unwrap()),
        TokenCheck::Valid(info) if info.address.is_none()
    ));
}

#[tokio::test]
async fn the_consent_page_names_the_account_and_approves_with_a_post() {
    let sandbox = sandbox_with(|config| config.auto_approve = false).await;
    let authorize = sandbox.endpoints().microsoft.authorize.clone();
    let params = [
        ("response_type", "code"),
        ("client_id", MICROSOFT_CLIENT),
        ("redirect_uri", REDIRECT),
        ("scope", MICROSOFT_SCOPE),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("login_hint", MICROSOFT_USER),
    ];
    let page = http()
        .get(authorize.clone())
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("value=\"{MICROSOFT_USER}\"")),
        "{html}"
    );
    assert!(html.contains(">Approve</button>"));

    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("address", MICROSOFT_USER));
    form.push(("decision", "approve"));
    let response = http()
        .post(authorize.clone())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:9/callback?code="),
        "{location}"
    );
    assert!(location.ends_with("&state=s1"), "{location}");

    form.pop();
    form.push(("decision", "deny"));
    let response = http().post(authorize).form(&form).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.contains("error=access_denied"), "{location}");
}

#[tokio::test]
async fn smtp_send_as_app_is_not_a_delegated_scope() {
    let sandbox = sandbox().await;
    let response = http()
        .get(sandbox.endpoints().microsoft.authorize.clone())
        .query(&[
            ("response_type", "code"),
            ("client_id", MICROSOFT_CLIENT),
            ("redirect_uri", REDIRECT),
            (
                "scope",
                "https://outlook.office.com/SMTP.SendAsApp offline_access",
            ),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("login_hint", MICROSOFT_USER),
        ])
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.contains("error=invalid_scope"), "{location}");
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused_and_rotation_restarts_the_lifetime() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_refresh_token_lifetime(Some(Duration::ZERO));
    let expired = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", expired["refresh_token"].as_str().unwrap()),
            ("client_id", MICROSOFT_CLIENT),
        ],
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    assert_eq!(body["error_codes"], json!([700082]));

    sandbox
        .authority()
        .set_refresh_token_lifetime(Some(Duration::from_secs(3600)));
    let fresh = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
    let (status, _) = token_call(
        &sandbox,
        Provider::Google,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
            ("client_id", GOOGLE_CLIENT),
            ("client_secret", GOOGLE_SECRET),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sandbox.authority().stats().refreshes_refused, 1);
}

#[tokio::test]
async fn the_admin_api_reaches_the_same_hooks() {
    let sandbox = sandbox().await;
    let admin = |path: &str| sandbox.endpoints().http.join(path).unwrap();
    let first = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;

    let queued: serde_json::Value = http()
        .post(admin("_sandbox/fail-next-token-call"))
        .json(&json!({"status": 503, "body": {"error": "temporarily_unavailable"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued, json!({"queued": true}));
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ("client_id", MICROSOFT_CLIENT),
    ];
    assert_eq!(
        token_call(&sandbox, Provider::Microsoft, &refresh).await,
        (503, json!({"error": "temporarily_unavailable"}))
    );

    let revoked: serde_json::Value = http()
        .post(admin("_sandbox/revoke"))
        .form(&[("address", MICROSOFT_USER)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revoked, json!({"revoked": 1}));
    let (status, _) = token_call(&sandbox, Provider::Microsoft, &refresh).await;
    assert_eq!(status, 400);

    let set = http()
        .post(admin("_sandbox/access-token-lifetime"))
        .form(&[("seconds", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let answer = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    assert_eq!(answer["expires_in"], 0);

    let stats: serde_json::Value = http()
        .get(admin("_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["injected_failures"], 1);
    let messages: serde_json::Value = http()
        .get(admin("_sandbox/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(messages, json!([]));
}

#[tokio::test]
async fn auto_approve_without_a_known_address_explains_the_default_address() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, Provider::Microsoft);
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &SignInOptions {
            expected_address: None,
            timeout: Duration::from_secs(20),
            ..Default::default()
        },
        SystemTime::now,
        play_browser,
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("login_required"), "{text}");
    assert!(text.contains("--default-address"), "{text}");
    assert!(!text.contains("approve the request"), "{text}");
}

/// A refresh token grant of the Microsoft-style authority: (status, body).
async fn refresh_for(
    sandbox: &mailroom_sandbox::Sandbox,
    refresh: &str,
    scope: &str,
) -> (u16, serde_json::Value) {
    token_call(
        sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", MICROSOFT_CLIENT),
            ("scope", scope),
        ],
    )
    .await
}

fn granted_scopes(
    sandbox: &mailroom_sandbox::Sandbox,
    access_token: &serde_json::Value,
) -> Vec<String> {
    match sandbox
        .authority()
        .check_access_token(access_token.as_str().unwrap())
    {
        TokenCheck::Valid(info) => info.scopes,
        other => panic!("{other:?}"),
    }
}

/// As Entra (MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-auth-code-flow.md`,
/// `reference-error-codes.md`): the authorize request's scopes are the consent and may span
/// resources; each code redemption and refresh names one resource (`AADSTS28000`) and gets
/// a token for those scopes; a refresh may ask another consented resource's scopes.
#[tokio::test]
async fn one_consent_for_two_resources_and_a_token_per_resource() {
    let sandbox = sandbox().await;
    let consent = "https://outlook.office.com/SMTP.Send https://graph.microsoft.com/Mail.Send offline_access openid profile email";
    let code = code(&sandbox, Provider::Microsoft, MICROSOFT_USER, consent).await;
    let redeem = |code: String, scope: &'static str| {
        let sandbox = &sandbox;
        async move {
            token_call(
                sandbox,
                Provider::Microsoft,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_id", MICROSOFT_CLIENT),
                    ("scope", scope),
                ],
            )
            .await
        }
    };
    // Both resources in one redemption: AADSTS28000, and the code is spent.
    let (status, body) = redeem(code, consent).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(body["error_codes"], json!([28000]));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS28000: Provided value for the input parameter scope is not valid because it contains more than one resource."),
        "{body}"
    );

    let code = crate::support::code(&sandbox, Provider::Microsoft, MICROSOFT_USER, consent).await;
    let (status, outlook) = redeem(
        code,
        "https://outlook.office.com/SMTP.Send offline_access openid profile email",
    )
    .await;
    assert_eq!(status, 200, "{outlook}");
    assert_eq!(outlook["scope"], "https://outlook.office.com/SMTP.Send");
    assert!(outlook["id_token"].is_string());
    let refresh = outlook["refresh_token"].as_str().unwrap().to_owned();

    // A refresh for the other consented resource: its token, and a rotated refresh token.
    let (status, graph) = refresh_for(
        &sandbox,
        &refresh,
        "https://graph.microsoft.com/Mail.Send offline_access openid profile email",
    )
    .await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["scope"], "https://graph.microsoft.com/Mail.Send");
    assert!(
        granted_scopes(&sandbox, &graph["access_token"])
            .contains(&"https://graph.microsoft.com/Mail.Send".to_owned())
    );
    assert!(
        !granted_scopes(&sandbox, &graph["access_token"])
            .contains(&"https://outlook.office.com/SMTP.Send".to_owned())
    );
    assert_ne!(graph["refresh_token"].as_str().unwrap(), refresh);
    // Spanning both in a refresh: AADSTS28000 again.
    let (status, body) = refresh_for(&sandbox, &refresh, consent).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_codes"], json!([28000]));
    // No scope at all: the consent as before.
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", MICROSOFT_CLIENT),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A refresh for scopes the person never consented to is Entra's `invalid_grant`
/// `AADSTS65001` with suberror `consent_required`; an administrator's consent
/// ([`mailroom_sandbox::Authority::consent_scopes`]) lets it through.
#[tokio::test]
async fn a_refresh_outside_the_consent_needs_consent() {
    let sandbox = sandbox().await;
    let first = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let graph = "https://graph.microsoft.com/Mail.Send offline_access openid profile email";
    let (status, body) = refresh_for(&sandbox, &refresh, graph).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"], json!([65001]));
    assert_eq!(body["suberror"], "consent_required");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS65001: The user or administrator has not consented"),
        "{body}"
    );
    assert_eq!(sandbox.authority().stats().refreshes_refused, 1);

    // The bare form is Graph's too, and compared without case.
    sandbox
        .authority()
        .consent_scopes(MICROSOFT_USER, &["mail.send"]);
    let (status, body) = refresh_for(&sandbox, &refresh, graph).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "https://graph.microsoft.com/Mail.Send");
    // Consent for Mail.Send is not consent for Mail.Send.Shared.
    let (status, body) = refresh_for(
        &sandbox,
        &refresh,
        "https://graph.microsoft.com/Mail.Send.Shared offline_access",
    )
    .await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([65001])));
}

/// Entra keeps a person's consent per client, and it only grows: a refresh token is bound
/// to the person and the client, not to a resource or a sign-in (MicrosoftDocs/entra-docs
/// `docs/identity-platform/refresh-tokens.md`). After a second sign-in that asked Graph
/// only, its refresh token still gets an Outlook token (consented in the first), and the
/// first sign-in's refresh token now gets a Graph token. Another person's consent is not
/// theirs.
#[tokio::test]
async fn a_persons_consent_grows_over_their_sign_ins() {
    let sandbox = sandbox().await;
    let outlook = MICROSOFT_SCOPE;
    let graph = "https://graph.microsoft.com/Mail.Send offline_access openid profile email";
    let other = "buyer@contoso.example";
    let first = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let first_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let other_refresh = tokens(&sandbox, Provider::Microsoft, other).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Before the Graph sign-in: outside the consent.
    let (status, body) = refresh_for(&sandbox, &first_refresh, graph).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([65001])));

    let second = tokens_with_scope(&sandbox, Provider::Microsoft, MICROSOFT_USER, graph).await;
    assert_eq!(second["scope"], "https://graph.microsoft.com/Mail.Send");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh_for(&sandbox, &second_refresh, outlook).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "https://outlook.office.com/SMTP.Send");
    let (status, body) = refresh_for(&sandbox, &first_refresh, graph).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "https://graph.microsoft.com/Mail.Send");

    // Not consented by this person, and not Mail.ReadWrite by anyone.
    let (status, body) = refresh_for(&sandbox, &other_refresh, graph).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([65001])));
    let (status, body) = refresh_for(
        &sandbox,
        &second_refresh,
        "https://graph.microsoft.com/Mail.ReadWrite offline_access",
    )
    .await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([65001])));
}
