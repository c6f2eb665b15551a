//! The signed-in identity, read from the id_token of a token response.
//!
//! The id_token arrives straight from the token endpoint over TLS (RFC 6749 §10.4 / OpenID
//! Connect Core §3.1.3.7: a token obtained directly from the token endpoint need not have
//! its signature checked), so mailroom checks its claims (`aud`, `exp`, `iss`) but not its
//! signature. An id_token from anywhere else must never be trusted this way.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;

use crate::app::AppRegistration;
use crate::{Error, Result};

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The signed-in address, for people to read: Microsoft's `preferred_username` when it
    /// is an address, else `email`; Google's verified `email`. Never what decides who the
    /// person is: Microsoft documents that `preferred_username` can change and may be a
    /// phone number (entra-docs, `docs/identity-platform/id-token-claims-reference.md`).
    pub address: String,
    /// Microsoft's tenant id (`tid`), when present.
    pub tenant_id: Option<String>,
    /// The subject (`oid` for Microsoft, `sub` otherwise).
    pub subject: Option<String>,
}

impl Identity {
    /// The key a sign-in is stored under: the provider's stable identity of the person —
    /// `oid:{tid}:{oid}` for Microsoft ("the `oid` and `tid` claims together identify a
    /// user", id-token-claims-reference), `sub:{sub}` for Google ("an identifier for the
    /// user, unique among all Google accounts and never reused", Google's OpenID Connect
    /// page). An identity without a subject (an import) is keyed by its lower-cased
    /// address, as sign-ins were before identities were kept.
    pub fn key(&self) -> String {
        match (&self.tenant_id, &self.subject) {
            (Some(tenant), Some(subject)) => format!("oid:{tenant}:{subject}"),
            (None, Some(subject)) => format!("sub:{subject}"),
            (_, None) => self.address.trim().to_lowercase(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    preferred_username: Option<String>,
    email: Option<String>,
    tid: Option<String>,
    oid: Option<String>,
    sub: Option<String>,
    /// Google's: whether Google verified `email` (a boolean; some libraries have seen the
    /// string `"true"`).
    email_verified: Option<serde_json::Value>,
}

/// The most bytes of a claim quoted in an error: the token is the provider's (or a proxy's)
/// and its claims may be of any length.
pub(crate) const MAX_QUOTED_CLAIM: usize = 256;

/// `claim` cut to at most [`MAX_QUOTED_CLAIM`] bytes on a character boundary.
fn quoted(claim: &str) -> &str {
    let mut end = claim.len().min(MAX_QUOTED_CLAIM);
    while !claim.is_char_boundary(end) {
        end -= 1;
    }
    &claim[..end]
}

/// Reads and checks the identity in `id_token` for `app`, at time `now`.
pub fn identity_from_id_token(
    app: &AppRegistration,
    id_token: &str,
    now: SystemTime,
) -> Result<Identity> {
    let invalid = |problem: &str| Error::InvalidIdToken(problem.to_owned());
    let mut parts = id_token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err(invalid("it is not a JWT (three dot-separated parts)")),
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid("its payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("its payload is not a JSON object of claims"))?;

    let audience_ok = match &claims.aud {
        Some(Audience::One(aud)) => aud == &app.client_id,
        Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == &app.client_id),
        None => false,
    };
    if !audience_ok {
        return Err(Error::InvalidIdToken(format!(
            "its audience is not this app's client id `{}`",
            app.client_id
        )));
    }
    let now_seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match claims.exp {
        Some(exp) if exp > now_seconds => {}
        Some(_) => return Err(invalid("it has expired (check this computer's clock)")),
        None => return Err(invalid("it has no expiry (`exp`)")),
    }
    let expected = app.expected_issuers(claims.tid.as_deref());
    match &claims.iss {
        Some(iss) if expected.iter().any(|e| e == iss) => {}
        Some(iss) => {
            // Both come from the token (the expected one through `tid`): quoted cut short.
            let expected: Vec<&str> = expected.iter().map(|e| quoted(e)).collect();
            return Err(Error::InvalidIdToken(format!(
                "its issuer `{}` is not the expected `{}`",
                quoted(iss),
                expected.join("` or `")
            )));
        }
        None => return Err(invalid("it has no issuer (`iss`)")),
    }
    let address = match app.provider {
        // Google's id_token has no `preferred_username`; its `email` counts only when
        // `email_verified` is true (Google's OpenID Connect page: "email_verified: True if
        // the user's e-mail address has been verified; otherwise false").
        mailroom_model::Provider::Google => {
            let email = claims.email.ok_or_else(|| {
                invalid("it names no address (`email`); the sign-in must include the email scope")
            })?;
            let verified = matches!(
                &claims.email_verified,
                Some(serde_json::Value::Bool(true))
            ) || matches!(&claims.email_verified, Some(serde_json::Value::String(text)) if text == "true");
            if !verified {
                return Err(Error::AddressNotVerified {
                    address: quoted(&email).to_owned(),
                });
            }
            email
        }
        _ => claims
            .preferred_username
            .filter(|name| name.contains('@'))
            .or(claims.email)
            .ok_or_else(|| invalid("it names no address (`preferred_username` or `email`); the sign-in must include the email and profile scopes"))?,
    };
    let (tenant_id, subject) = match app.provider {
        mailroom_model::Provider::Google => (
            None,
            Some(claims.sub.filter(|sub| !sub.is_empty()).ok_or_else(|| {
                invalid("it names no subject (`sub`), the person's stable identity")
            })?),
        ),
        _ => match (
            claims.tid.filter(|t| !t.is_empty()),
            claims.oid.filter(|o| !o.is_empty()),
        ) {
            (Some(tid), Some(oid)) => (Some(tid), Some(oid)),
            _ => {
                return Err(invalid(
                    "it lacks `oid` or `tid`, which together identify the person; the sign-in must include the profile scope",
                ));
            }
        },
    };
    Ok(Identity {
        address,
        tenant_id,
        subject,
    })
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::EndpointOverrides;
    use mailroom_model::Provider;
    use std::time::Duration;

    fn app(provider: Provider) -> AppRegistration {
        AppRegistration {
            provider,
            client_id: "client-123".to_owned(),
            client_secret: None,
            tenant: None,
            cloud: Default::default(),
            overrides: EndpointOverrides::default(),
            app_credential: None,
        }
    }

    #[test]
    fn a_quoted_claim_is_cut_on_a_character_boundary_within_its_bound() {
        let short = "box@example.com";
        assert_eq!(quoted(short), short);
        let exact = "a".repeat(MAX_QUOTED_CLAIM);
        assert_eq!(quoted(&exact), exact);
        // A two-byte character across the bound is left out whole.
        let across = format!("{}\u{e9}tail", "a".repeat(MAX_QUOTED_CLAIM - 1));
        assert_eq!(quoted(&across), "a".repeat(MAX_QUOTED_CLAIM - 1));
    }

    fn jwt(claims: serde_json::Value) -> String {
        let encode = |value: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        format!(
            "{}.{}.{}",
            encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes()),
            encode(b"signature")
        )
    }

    const NOW: u64 = 1_800_000_000;

    #[track_caller]
    fn check(
        provider: Provider,
        claims: serde_json::Value,
        expected: std::result::Result<&str, &str>,
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        match (
            identity_from_id_token(&app(provider), &jwt(claims), now),
            expected,
        ) {
            (Ok(identity), Ok(address)) => assert_eq!(identity.address, address),
            (Err(error), Err(fragment)) => assert!(error.to_string().contains(fragment), "{error}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn identity_keys_name_the_person_not_the_address() {
        let microsoft = Identity {
            address: "Alice@Contoso.example".to_owned(),
            tenant_id: Some("t1".to_owned()),
            subject: Some("o1".to_owned()),
        };
        assert_eq!(microsoft.key(), "oid:t1:o1");
        let renamed = Identity {
            address: "alice.smith@contoso.example".to_owned(),
            ..microsoft.clone()
        };
        assert_eq!(renamed.key(), microsoft.key());
        let google = Identity {
            address: "a@example.com".to_owned(),
            tenant_id: None,
            subject: Some("1234".to_owned()),
        };
        assert_eq!(google.key(), "sub:1234");
        let imported = Identity {
            address: " A@Example.com ".to_owned(),
            tenant_id: None,
            subject: None,
        };
        assert_eq!(imported.key(), "a@example.com");
    }

    #[test]
    fn id_token_claims_are_checked() {
        use serde_json::json;
        const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
        let exp = NOW + 3600;
        let ms_iss = "https://login.microsoftonline.com/72f988bf-0000-0000-0000-000000000000/v2.0";
        let tid = "72f988bf-0000-0000-0000-000000000000";
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": exp, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "sa@contoso.example"}),
            Ok("sa@contoso.example"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": exp, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "+15550100", "email": "sa@contoso.example"}),
            Ok("sa@contoso.example"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "other", "exp": exp, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "a@b.example"}),
            Err("audience"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": NOW - 1, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "a@b.example"}),
            Err("expired"),
        );
        // Valid up to, not at, its expiry second.
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": NOW, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "a@b.example"}),
            Err("expired"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": NOW + 1, "iss": ms_iss, "tid": tid, "oid": OID, "preferred_username": "a@b.example"}),
            Ok("a@b.example"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": exp, "iss": "https://evil.example/v2.0", "tid": tid, "oid": OID, "preferred_username": "a@b.example"}),
            Err("issuer"),
        );
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": exp, "iss": ms_iss, "tid": "other-tenant", "oid": OID, "preferred_username": "a@b.example"}),
            Err("issuer"),
        );
        check(
            Provider::Google,
            json!({"aud": ["client-123"], "exp": exp, "iss": "https://accounts.google.com", "sub": "1234", "email": "ar@example.com", "email_verified": true}),
            Ok("ar@example.com"),
        );
        check(
            Provider::Google,
            json!({"aud": "client-123", "exp": exp, "iss": "accounts.google.com", "sub": "1234", "email": "ar@example.com", "email_verified": "true"}),
            Ok("ar@example.com"),
        );
        check(
            Provider::Google,
            json!({"aud": "client-123", "exp": exp, "iss": "https://accounts.google.com", "sub": "1234"}),
            Err("names no address"),
        );
        // Google: an address Google has not verified is not the person's (Google's OpenID
        // Connect page, `email_verified`); a missing claim counts as unverified.
        check(
            Provider::Google,
            json!({"aud": "client-123", "exp": exp, "iss": "https://accounts.google.com", "sub": "1234", "email": "ar@example.com", "email_verified": false}),
            Err("has not verified the address ar@example.com"),
        );
        check(
            Provider::Google,
            json!({"aud": "client-123", "exp": exp, "iss": "https://accounts.google.com", "sub": "1234", "email": "ar@example.com"}),
            Err("has not verified the address ar@example.com"),
        );
        check(
            Provider::Google,
            json!({"aud": "client-123", "exp": exp, "iss": "https://accounts.google.com", "email": "ar@example.com", "email_verified": true}),
            Err("names no subject"),
        );
        // Microsoft: `oid` + `tid` identify the person (id-token-claims-reference); without
        // `oid` the sign-in has no stable identity.
        check(
            Provider::Microsoft,
            json!({"aud": "client-123", "exp": exp, "iss": ms_iss, "tid": tid, "preferred_username": "sa@contoso.example"}),
            Err("lacks `oid` or `tid`"),
        );
        let error =
            identity_from_id_token(&app(Provider::Google), "not-a-jwt", UNIX_EPOCH).unwrap_err();
        assert!(error.to_string().contains("not a JWT"));
    }
}
