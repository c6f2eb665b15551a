//! Issuing tokens: opaque access and refresh tokens, and unsigned JWT-shaped id_tokens with
//! each provider's claims.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    AccessGrant, JsonReply, OPENID_SCOPES, State, Style, TokenInfo, random_token, unix_seconds,
    uuid_text,
};

/// A stable, address-derived id (Microsoft's `oid`, Google's numeric `sub`).
fn subject_of(address: &str) -> [u8; 32] {
    Sha256::digest(address.to_lowercase().as_bytes()).into()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn issue(
    state: &mut State,
    style: Style,
    client_id: &str,
    address: Option<&str>,
    scopes: &[String],
    grant: Option<u64>,
    refresh_token: Option<String>,
    nonce: Option<&str>,
) -> JsonReply {
    let now = SystemTime::now();
    let lifetime = state.access_token_lifetime;
    let access_token = random_token(48);
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            info: TokenInfo {
                style,
                client_id: client_id.to_owned(),
                address: address.map(str::to_owned),
                scopes: scopes.to_vec(),
                roles: Vec::new(),
            },
            grant,
            expires_at: now + lifetime,
            revoked: false,
        },
    );
    let id_token = match address {
        Some(address) if scopes.iter().any(|s| s == "openid") => {
            Some(id_token(state, style, client_id, address, nonce, now))
        }
        _ => None,
    };
    let mut body = match style {
        Style::Microsoft => {
            // Microsoft names the resource's scopes only.
            let resource_scopes: Vec<&str> = scopes
                .iter()
                .map(String::as_str)
                .filter(|scope| !OPENID_SCOPES.contains(scope))
                .collect();
            json!({
                "token_type": "Bearer",
                "scope": resource_scopes.join(" "),
                "expires_in": lifetime.as_secs(),
                "ext_expires_in": lifetime.as_secs(),
                "access_token": access_token,
            })
        }
        Style::Google => json!({
            "access_token": access_token,
            "expires_in": lifetime.as_secs(),
            "scope": scopes.join(" "),
            "token_type": "Bearer",
        }),
    };
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    JsonReply::ok(body)
}

/// An unsigned, JWT-shaped id_token (see the crate docs for why that is enough here).
fn id_token(
    state: &State,
    style: Style,
    client_id: &str,
    address: &str,
    nonce: Option<&str>,
    now: SystemTime,
) -> String {
    let iat = unix_seconds(now);
    // An id_token lives an hour, whatever the access token's lifetime.
    let exp = iat + 3600;
    let subject = subject_of(address);
    let username = state
        .usernames
        .get(&address.to_lowercase())
        .cloned()
        .unwrap_or_else(|| address.to_owned());
    let mut claims = match style {
        Style::Microsoft => json!({
            "aud": client_id,
            "iss": state.microsoft_issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "name": address.split('@').next().unwrap_or(address),
            "oid": uuid_text(&subject),
            "preferred_username": username,
            "email": address,
            "sub": URL_SAFE_NO_PAD.encode(&subject[..16]),
            "tid": state.tenant_id,
            "ver": "2.0",
        }),
        Style::Google => json!({
            "iss": state.google_issuer,
            "azp": client_id,
            "aud": client_id,
            "sub": u64::from_be_bytes(subject[..8].try_into().expect("8 bytes")).to_string(),
            "email": address,
            "email_verified": true,
            "iat": iat,
            "exp": exp,
        }),
    };
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    let header = json!({"alg": "none", "typ": "JWT", "kid": "mailroom-sandbox"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode("mailroom-sandbox-unsigned")
    )
}
