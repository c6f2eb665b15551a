//! Microsoft identity platform contract: refresh with rotation, the documented error
//! bodies, and the device code flow.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::Provider;
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    Error, OAuthHttp, SignInReason,
    interactive::{SignInOptions, sign_in_with_device_code},
    storage::{TokenKey, TokenStatus, TokenStore},
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    self, CLIENT_ID, form, microsoft_id_token, microsoft_token_body, signed_in, store_expired,
    target,
};

const ADDRESS: &str = "sa@contoso.example";

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token_and_the_next_refresh_uses_the_new_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=rt-original"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-1",
                "rt-rotated-1",
                None,
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=rt-rotated-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-2",
                "rt-rotated-2",
                None,
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = support::expired_sign_in(
        &db,
        &server,
        Provider::Microsoft,
        ADDRESS,
        "at-0",
        "rt-original",
    )
    .await;
    let broker = support::broker(&db, &key);

    let first = broker
        .access_token(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    assert_eq!(first.secret.expose(), "at-1");
    assert_eq!(first.version, 2);
    let refresh = form(&server.received_requests().await.unwrap()[0]);
    assert_eq!(refresh["grant_type"], "refresh_token");
    assert_eq!(refresh["client_id"], CLIENT_ID);
    assert_eq!(
        refresh["scope"],
        "https://outlook.office.com/SMTP.Send offline_access openid profile email"
    );

    let stored = TokenStore::new(&db.db, &key)
        .load(&TokenKey::new(
            Provider::Microsoft,
            "organizations",
            ADDRESS,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-rotated-1");
    assert!(stored.expires_at > chrono::Utc::now() + chrono::Duration::minutes(55));

    let second = broker
        .force_refresh(&target(Provider::Microsoft, ADDRESS))
        .await
        .unwrap();
    assert_eq!(second.secret.expose(), "at-2");
    assert_eq!(second.version, 3);
    db.finish().await;
}

/// What a refresh failure must become.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Sign-in required, token marked revoked.
    Revoked,
    /// Sign-in required (MFA), token kept.
    MultiFactor,
    /// Sign-in required after admin consent, token kept.
    Consent,
    /// Permanent provider error, token kept.
    Provider,
    /// Transient, retried, token kept.
    Transient,
    /// Malformed answer, token kept.
    Malformed,
}

#[tokio::test]
async fn documented_error_bodies_map_to_their_outcome() {
    let cases: Vec<(&str, u16, ResponseTemplate, Expect, &str)> = vec![
        ("expired@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.", Some("bad_token"))), Expect::Revoked, "AADSTS70008"),
        ("inactive@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("invalid_grant", 700082, "The refresh token has expired due to inactivity. The token was issued on 2026-08-01T08:10:22.000Z and was inactive for 90.00:00:00.", None)), Expect::Revoked, "AADSTS700082"),
        ("revoked@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("invalid_grant", 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.", None)), Expect::Revoked, "AADSTS50173"),
        ("mfa@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("invalid_grant", 50076, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'https://outlook.office.com'.", Some("basic_action"))), Expect::MultiFactor, "AADSTS50076"),
        ("enroll@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("interaction_required", 50079, "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access 'https://outlook.office.com'.", None)), Expect::MultiFactor, "AADSTS50079"),
        ("consent@contoso.example", 400, ResponseTemplate::new(400).set_body_json(support::ms_error("invalid_grant", 65001, "The user or administrator has not consented to use the application with ID '11111111-2222-3333-4444-555555555555' named 'mailroom'. Send an interactive authorization request for this user and resource.", Some("consent_required"))), Expect::Consent, "AADSTS65001"),
        ("client@contoso.example", 401, ResponseTemplate::new(401).set_body_json(support::ms_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.", None)), Expect::Provider, "invalid_client"),
        ("down@contoso.example", 500, ResponseTemplate::new(500).set_body_string("upstream unavailable"), Expect::Transient, "HTTP 500"),
        ("proxy@contoso.example", 400, ResponseTemplate::new(400).set_body_string("<html><body>Bad Request</body></html>"), Expect::Malformed, "not an OAuth error"),
        ("garbled@contoso.example", 200, ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer", "expires_in": "soon"})), Expect::Malformed, "did not parse"),
    ];
    let server = MockServer::start().await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let broker = support::broker(&db, &key);
    let store = TokenStore::new(&db.db, &key);
    for (address, _, response, expect, fragment) in cases {
        let refresh_token = format!("rt-{address}");
        let attempts = if expect == Expect::Transient { 3 } else { 1 };
        let mock = Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(form_encoded(&refresh_token)))
            .respond_with(response)
            .expect(attempts)
            .named(address)
            .mount_as_scoped(&server)
            .await;
        store_expired(
            &db,
            &key,
            &signed_in(Provider::Microsoft, address, "at-old", Some(&refresh_token)),
        )
        .await;
        let error = broker
            .access_token(&target(Provider::Microsoft, address))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(fragment),
            "{address}: `{text}` lacks `{fragment}`"
        );
        let stored = store
            .load(&TokenKey::new(
                Provider::Microsoft,
                "organizations",
                address,
            ))
            .await
            .unwrap()
            .unwrap();
        let revoked = matches!(stored.status, TokenStatus::Revoked { .. });
        assert_eq!(
            revoked,
            expect == Expect::Revoked,
            "{address}: revoked = {revoked}"
        );
        assert_eq!(
            stored.refresh_token.unwrap().expose(),
            refresh_token,
            "{address}: the refresh token is kept"
        );
        match expect {
            Expect::Revoked => assert!(
                matches!(
                    &error,
                    Error::SignInRequired {
                        reason: SignInReason::Revoked { .. },
                        ..
                    }
                ),
                "{address}: {error:?}"
            ),
            Expect::MultiFactor => {
                assert!(
                    matches!(
                        &error,
                        Error::SignInRequired {
                            reason: SignInReason::MultiFactorRequired { .. },
                            ..
                        }
                    ),
                    "{address}: {error:?}"
                );
                assert!(text.contains("multi-factor"), "{text}");
            }
            Expect::Consent => {
                assert!(
                    matches!(
                        &error,
                        Error::SignInRequired {
                            reason: SignInReason::ConsentMissing { .. },
                            ..
                        }
                    ),
                    "{address}: {error:?}"
                );
                assert!(
                    text.contains("administrator must first grant the app consent"),
                    "{text}"
                );
            }
            Expect::Provider => assert!(
                matches!(&error, Error::Provider { .. }),
                "{address}: {error:?}"
            ),
            Expect::Transient => assert!(error.is_transient(), "{address}: {error:?}"),
            Expect::Malformed => assert!(
                matches!(&error, Error::MalformedResponse(_)),
                "{address}: {error:?}"
            ),
        }
        if matches!(
            expect,
            Expect::Revoked | Expect::MultiFactor | Expect::Consent
        ) {
            assert!(
                text.starts_with(&format!(
                    "Failed to obtain an access token for {address} (microsoft): "
                )),
                "{text}"
            );
            assert!(
                text.ends_with("an administrator must sign in for account 4"),
                "{text}"
            );
        }
        drop(mock);
    }
    // A revoked token is not refreshed again: the next request fails at once.
    let error = broker
        .access_token(&target(Provider::Microsoft, "expired@contoso.example"))
        .await
        .unwrap_err();
    assert!(error.needs_sign_in());
    db.finish().await;
}

fn form_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn device_start() -> Value {
    json!({
        "user_code": "FABCD1234",
        "device_code": "DAQABAAEAAAD--DLA3VO7QrddgJg7WevrQvEQVbZEui-device-code",
        "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 900,
        "interval": 5,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FABCD1234 to authenticate."
    })
}

async fn device_case(
    polls: Vec<ResponseTemplate>,
) -> (
    Result<mailroom_tokens::interactive::SignedIn, Error>,
    Vec<Duration>,
    Vec<mailroom_tokens::interactive::DevicePrompt>,
    MockServer,
) {
    device_case_with(
        polls,
        SignInOptions {
            expected_address: Some(ADDRESS.to_owned()),
            ..SignInOptions::default()
        },
    )
    .await
}

async fn device_case_with(
    polls: Vec<ResponseTemplate>,
    options: SignInOptions,
) -> (
    Result<mailroom_tokens::interactive::SignedIn, Error>,
    Vec<Duration>,
    Vec<mailroom_tokens::interactive::DevicePrompt>,
    MockServer,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/devicecode"))
        .and(body_string_contains(
            "client_id=11111111-2222-3333-4444-555555555555",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(device_start()))
        .expect(1)
        .mount(&server)
        .await;
    for (priority, response) in polls.into_iter().enumerate() {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
            ))
            .and(body_string_contains(
                "device_code=DAQABAAEAAAD--DLA3VO7QrddgJg7WevrQvEQVbZEui-device-code",
            ))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(priority as u8 + 1)
            .mount(&server)
            .await;
    }
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let sleeps = Arc::new(Mutex::new(Vec::new()));
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let recorded = sleeps.clone();
    let shown = prompts.clone();
    let result = sign_in_with_device_code(
        &OAuthHttp::new(),
        &app,
        &options,
        SystemTime::now,
        move |prompt| shown.lock().unwrap().push(prompt.clone()),
        move |duration| {
            recorded.lock().unwrap().push(duration);
            async {}
        },
    )
    .await;
    db.finish().await;
    let sleeps = sleeps.lock().unwrap().clone();
    let prompts = prompts.lock().unwrap().clone();
    (result, sleeps, prompts, server)
}

fn device_error(error: &str, code: u64, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(support::ms_error(error, code, description, None))
}

#[tokio::test]
async fn the_device_flow_polls_at_the_interval_and_slows_down_for_good() {
    let (result, sleeps, prompts, _server) = device_case(vec![
        device_error(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is still pending. Continue polling.",
        ),
        device_error(
            "slow_down",
            70016,
            "OAuth 2.0 device flow error. Slow down.",
        ),
        device_error(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is still pending. Continue polling.",
        ),
        ResponseTemplate::new(200).set_body_json(microsoft_token_body(
            "at-device",
            "rt-device",
            Some(&microsoft_id_token(ADDRESS)),
        )),
    ])
    .await;
    let signed_in = result.unwrap();
    assert_eq!(signed_in.identity.address, ADDRESS);
    assert_eq!(
        sleeps,
        [
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::from_secs(10)
        ]
    );
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].user_code, "FABCD1234");
    assert_eq!(
        prompts[0].verification_uri,
        "https://microsoft.com/devicelogin"
    );
    assert!(
        prompts[0]
            .message
            .as_deref()
            .unwrap()
            .contains("enter the code FABCD1234")
    );
}

#[tokio::test]
async fn an_expired_device_code_ends_the_sign_in() {
    let (result, _, _, _server) = device_case(vec![
        device_error(
            "authorization_pending",
            70016,
            "Authorization is still pending.",
        ),
        device_error("expired_token", 70019, "Verification code expired."),
    ])
    .await;
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("the device code expired")
    );
}

#[tokio::test]
async fn a_declined_device_sign_in_ends_the_sign_in() {
    for kind in ["authorization_declined", "access_denied"] {
        let (result, _, _, _server) = device_case(vec![device_error(
            kind,
            70000,
            "The user declined the request.",
        )])
        .await;
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("declined on the verification page"),
            "{kind}"
        );
    }
    // Entra's other device flow errors (`bad_verification_code`: the device code was not
    // recognized) are not a refusal by the person: the provider's words are reported.
    let (result, _, _, _server) = device_case(vec![device_error(
        "bad_verification_code",
        70019,
        "The device_code sent to the /token endpoint wasn't recognized.",
    )])
    .await;
    let error = result.unwrap_err().to_string();
    assert!(!error.contains("declined"), "{error}");
    assert!(error.contains("bad_verification_code"), "{error}");
}

/// Entra's id token reference (MicrosoftDocs/entra-docs,
/// `docs/identity-platform/id-token-claims-reference.md`): `preferred_username` "is
/// mutable and might change over time" and may be a phone number, so it is never who
/// signed in; "the `oid` and `tid` claims together identify a user". Exchange's OAuth page
/// for SMTP: a shared mailbox is signed in by a user with rights on it. Here a delegate
/// whose `preferred_username` is a phone number signs in (device flow) for the shared
/// mailbox orders@: accepted, stored under oid + tid, with the address from `email`; for
/// an account not marked shared, refused.
#[tokio::test]
async fn a_delegate_with_a_phone_number_as_username_signs_in_for_a_shared_mailbox() {
    let delegate_token = || {
        let id_token = crate::support::jwt(json!({
            "aud": CLIENT_ID,
            "iss": format!("https://login.microsoftonline.com/{}/v2.0", crate::support::TENANT_ID),
            "iat": 1_700_000_000u64,
            "exp": 4_000_000_000u64,
            "name": "Alice",
            "oid": "11111111-aaaa-bbbb-cccc-222222222222",
            "preferred_username": "+1 555 0100",
            "email": "alice@contoso.example",
            "tid": crate::support::TENANT_ID,
            "ver": "2.0"
        }));
        ResponseTemplate::new(200).set_body_json(microsoft_token_body(
            "at-alice",
            "rt-alice",
            Some(&id_token),
        ))
    };
    let shared = SignInOptions {
        expected_address: Some("orders@contoso.example".to_owned()),
        shared_mailbox: true,
        ..SignInOptions::default()
    };
    let (result, _, _, _) = device_case_with(vec![delegate_token()], shared).await;
    let signed_in = result.expect("a delegate's sign-in for a shared mailbox");
    assert_eq!(signed_in.identity.address, "alice@contoso.example");
    assert_eq!(
        signed_in.token_key().identity_key,
        format!(
            "oid:{}:11111111-aaaa-bbbb-cccc-222222222222",
            crate::support::TENANT_ID
        )
    );
    let not_shared = SignInOptions {
        expected_address: Some("orders@contoso.example".to_owned()),
        ..SignInOptions::default()
    };
    let (result, _, _, _) = device_case_with(vec![delegate_token()], not_shared).await;
    assert!(
        matches!(&result, Err(Error::IdentityMismatch { signed_in, expected })
            if signed_in == "alice@contoso.example" && expected == "orders@contoso.example"),
        "{:?}",
        result.map(|s| s.identity)
    );
}
