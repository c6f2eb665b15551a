//! Property tests (proptest) of what an OAuth provider (or a proxy in its place) sends back:
//! error bodies, their classification and bounds, and the redaction of a failure's body.
//! `PROPTEST_CASES` scales them; `cargo xtask fuzz oauth-error` runs them for longer.

use proptest::prelude::*;
use serde_json::json;

use super::{
    MAX_DESCRIPTION, MAX_ERROR_CODE, OAuthFailure, ProviderErrorBody, classify_error_body, redact,
    request_secrets,
};

fn error_code() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("invalid_grant".to_owned()),
        Just("interaction_required".to_owned()),
        Just("login_required".to_owned()),
        Just("consent_required".to_owned()),
        Just("temporarily_unavailable".to_owned()),
        Just("server_error".to_owned()),
        Just("invalid_client".to_owned()),
        any::<String>(),
        ".{100,200}",
    ]
}

/// A token endpoint's error body, near-valid: RFC 6749 fields and Microsoft's extras, each
/// there or not, sometimes of the wrong type.
fn error_body() -> impl Strategy<Value = Vec<u8>> {
    (
        error_code(),
        proptest::option::of(prop_oneof![any::<String>(), ".{0,40}\n.{0,40}", ".{500,700}"]),
        proptest::collection::vec(
            prop_oneof![Just(65001u64), Just(50076), Just(50079), Just(70043), Just(50158), any::<u64>()],
            0..3,
        ),
        proptest::option::of(prop_oneof![
            Just("consent_required".to_owned()),
            Just("basic_action".to_owned()),
            "[a-z_]{0,12}",
        ]),
        0u8..4,
    )
        .prop_map(|(error, description, codes, suberror, shape)| {
            let body = match shape {
                0 => json!({"error": error, "error_description": description, "error_codes": codes, "suberror": suberror}),
                1 => json!({"error": error}),
                2 => json!({"error": error, "error_codes": "65001", "error_description": 5}),
                _ => json!({"error": [error], "error_description": description}),
            };
            body.to_string().into_bytes()
        })
}

proptest! {
    /// Any body that parses as a provider error classifies without a panic, by its `error`
    /// code, into a failure whose words stay within their bounds; anything else fails to
    /// parse without a panic.
    #[test]
    fn error_bodies_classify_within_bounds(
        body in prop_oneof![error_body(), proptest::collection::vec(any::<u8>(), 0..300)],
    ) {
        let Ok(parsed) = serde_json::from_slice::<ProviderErrorBody>(&body) else {
            return Ok(());
        };
        let shown = parsed.to_string();
        prop_assert!(shown.len() <= MAX_ERROR_CODE + 2 + MAX_DESCRIPTION, "{}", shown.len());
        prop_assert!(!shown.contains('\n'));
        let failure = classify_error_body(&parsed);
        match (&failure, parsed.error.as_str()) {
            (OAuthFailure::Revoked(_) | OAuthFailure::ConsentRequired(_) | OAuthFailure::InteractionRequired(_), "invalid_grant") => {}
            (_, "invalid_grant") => prop_assert!(false, "invalid_grant became {:?}", failure),
            (OAuthFailure::Transient(_), "temporarily_unavailable" | "server_error") => {}
            (_, "temporarily_unavailable" | "server_error") => prop_assert!(false, "{:?}", failure),
            (OAuthFailure::ConsentRequired(_), "consent_required") => {}
            (_, "consent_required") => prop_assert!(false, "{:?}", failure),
            _ => {}
        }
        match &failure {
            OAuthFailure::Provider { error, description } => {
                prop_assert!(error.len() <= MAX_ERROR_CODE);
                prop_assert!(parsed.error.starts_with(error.as_str()));
                prop_assert!(description.as_ref().is_none_or(|d| d.len() <= MAX_DESCRIPTION && !d.contains('\n')));
            }
            OAuthFailure::Revoked(detail)
            | OAuthFailure::InteractionRequired(detail)
            | OAuthFailure::ConsentRequired(detail)
            | OAuthFailure::Transient(detail) => prop_assert_eq!(detail, &shown),
            OAuthFailure::Malformed(_) => prop_assert!(false, "a parsed body is not malformed"),
        }
    }

    /// Whatever the request carried and whatever the answer's body is (bytes, not always
    /// UTF-8), redaction never panics and no secret of the request is left outside the
    /// `[redacted]` marks; with no secret the body is untouched.
    #[test]
    fn redaction_of_any_body(
        secrets in proptest::collection::vec("[A-Za-z0-9+/=._~ -]{4,24}", 0..4),
        other in "[a-z_]{1,10}",
        filler in proptest::collection::vec(any::<u8>(), 0..200),
        positions in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let names = ["refresh_token", "code", "client_secret", "device_code"];
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair(&other, "not-a-secret");
        for (index, secret) in secrets.iter().enumerate() {
            form.append_pair(names[index % names.len()], secret);
        }
        let form = form.finish();
        let found = request_secrets(form.as_bytes());
        for secret in &secrets {
            prop_assert!(found.contains(secret));
        }
        // The body: the filler with the secrets (as sent or form-encoded) and the whole
        // form dropped in at arbitrary places.
        let mut body = filler.clone();
        for (index, position) in positions.iter().enumerate() {
            let insert: Vec<u8> = match secrets.get(index) {
                Some(secret) if index % 2 == 0 => secret.clone().into_bytes(),
                Some(secret) => url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>().into_bytes(),
                None => form.clone().into_bytes(),
            };
            let at = position.index(body.len() + 1);
            body.splice(at..at, insert);
        }
        let redacted = redact(&body, &found);
        let redacted = String::from_utf8_lossy(&redacted);
        let outside = redacted.replace("[redacted]", "\u{0}");
        for secret in &found {
            prop_assert!(!outside.contains(secret.as_str()), "{:?} left in {:?}", secret, outside);
        }
        prop_assert_eq!(redact(&filler, &[]), filler);
    }
}
