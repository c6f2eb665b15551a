//! Property tests (proptest) of id_token reading: any text never panics, errors stay
//! short, and the claims decide exactly as the rules say. `PROPTEST_CASES` scales them;
//! `cargo xtask fuzz id-token` runs them for longer.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use mailroom_model::Provider;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{MAX_QUOTED_CLAIM, identity_from_id_token};
use crate::app::{AppRegistration, EndpointOverrides};

const CLIENT: &str = "client-123";
const NOW: u64 = 1_800_000_000;
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

fn app(provider: Provider) -> AppRegistration {
    AppRegistration {
        provider,
        client_id: CLIENT.to_owned(),
        client_secret: None,
        tenant: None,
        cloud: Default::default(),
        overrides: EndpointOverrides::default(),
        app_credential: None,
    }
}

fn jwt(payload: &[u8], padded: bool) -> String {
    let encode = |bytes: &[u8]| {
        if padded {
            URL_SAFE.encode(bytes)
        } else {
            URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    format!(
        "{}.{}.{}",
        encode(br#"{"alg":"RS256"}"#),
        encode(payload),
        encode(b"sig")
    )
}

/// The longest error an id_token can cause: the prose plus two quoted claims.
const MAX_ERROR: usize = 200 + 2 * MAX_QUOTED_CLAIM;

#[derive(Debug, Clone)]
struct Claims {
    aud: Option<Value>,
    aud_ok: bool,
    exp: Option<i64>,
    iss: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    sub: Option<String>,
    email_verified: Option<Value>,
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        prop_oneof![
            Just((Some(json!(CLIENT)), true)),
            Just((Some(json!(["other", CLIENT])), true)),
            Just((Some(json!("other")), false)),
            Just((Some(json!([])), false)),
            Just((None, false)),
        ],
        proptest::option::of(prop_oneof![
            (NOW as i64 - 10)..(NOW as i64 + 10),
            any::<i64>(),
        ]),
        proptest::option::of(prop_oneof![
            Just(GOOGLE_ISSUER.to_owned()),
            Just("accounts.google.com".to_owned()),
            any::<String>(),
            ".{300,400}",
        ]),
        proptest::option::of(prop_oneof![
            "[a-z]{1,8}@[a-z]{1,8}\\.example",
            "[+0-9]{1,12}",
            any::<String>()
        ]),
        proptest::option::of(prop_oneof![
            "[a-z]{1,8}@[a-z]{1,8}\\.example",
            any::<String>()
        ]),
        proptest::option::of(prop_oneof!["[0-9]{1,21}", Just(String::new())]),
        proptest::option::of(prop_oneof![
            Just(json!(true)),
            Just(json!("true")),
            Just(json!(false)),
            Just(json!("yes")),
            Just(json!(1)),
        ]),
    )
        .prop_map(
            |((aud, aud_ok), exp, iss, preferred_username, email, sub, email_verified)| Claims {
                aud,
                aud_ok,
                exp,
                iss,
                preferred_username,
                email,
                sub,
                email_verified,
            },
        )
}

proptest! {
    /// Any text as an id_token: no panic, and an error of bounded length.
    #[test]
    fn any_text_is_refused_or_read(text in prop_oneof![any::<String>(), "[A-Za-z0-9_.=-]{0,200}"]) {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        for provider in [Provider::Google, Provider::Microsoft] {
            if let Err(error) = identity_from_id_token(&app(provider), &text, now) {
                prop_assert!(error.to_string().len() <= MAX_ERROR);
            }
        }
    }

    /// Any bytes as the payload (padded or not): no panic, and an error of bounded length.
    #[test]
    fn any_payload_is_refused_or_read(
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<String>().prop_map(String::into_bytes),
        ],
        padded in any::<bool>(),
        now in any::<u64>(),
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(now % 10_000_000_000);
        if let Err(error) = identity_from_id_token(&app(Provider::Microsoft), &jwt(&payload, padded), now) {
            prop_assert!(error.to_string().len() <= MAX_ERROR);
        }
    }

    /// Near-valid claims: the token is accepted exactly when the audience names this app,
    /// `exp` is after now, `iss` is Google's, `sub` names the person and `email` is
    /// verified; the address is `email` (a `preferred_username` Google never sends is not
    /// believed). Refusals stay short.
    #[test]
    fn claims_decide(claims in claims(), padded in any::<bool>()) {
        let mut payload = serde_json::Map::new();
        for (name, value) in [
            ("aud", claims.aud.clone()),
            ("exp", claims.exp.map(Value::from)),
            ("iss", claims.iss.clone().map(Value::from)),
            ("preferred_username", claims.preferred_username.clone().map(Value::from)),
            ("email", claims.email.clone().map(Value::from)),
            ("sub", claims.sub.clone().map(Value::from)),
            ("email_verified", claims.email_verified.clone()),
        ] {
            if let Some(value) = value {
                payload.insert(name.to_owned(), value);
            }
        }
        let token = jwt(Value::Object(payload).to_string().as_bytes(), padded);
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        let result = identity_from_id_token(&app(Provider::Google), &token, now);
        // Google: the address is `email`, and only when `email_verified` is true (a
        // boolean, or the string "true"); the person is `sub`.
        let address = claims.email.clone();
        let verified = matches!(
            claims.email_verified.as_ref(),
            Some(Value::Bool(true))
        ) || claims.email_verified.as_ref() == Some(&json!("true"));
        let accepted = claims.aud_ok
            && claims.exp.is_some_and(|exp| exp > NOW as i64)
            && claims.iss.as_deref().is_some_and(|iss| iss == GOOGLE_ISSUER || iss == "accounts.google.com")
            && address.is_some()
            && verified
            && claims.sub.as_deref().is_some_and(|sub| !sub.is_empty());
        match result {
            Ok(identity) => {
                prop_assert!(accepted);
                prop_assert_eq!(Some(identity.address.clone()), address);
                prop_assert_eq!(identity.key(), format!("sub:{}", claims.sub.clone().unwrap_or_default()));
            }
            Err(error) => {
                prop_assert!(!accepted, "refused: {}", error);
                prop_assert!(error.to_string().len() <= MAX_ERROR, "{}", error.to_string().len());
            }
        }
    }
}
