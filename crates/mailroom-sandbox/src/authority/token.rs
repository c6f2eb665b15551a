//! The token endpoint: redeems codes (PKCE, redirect URI, one use), refresh tokens
//! (rotated in Microsoft's style) and client credentials, in each provider's error style.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::json;

use super::issue::issue;
use super::{
    AccessGrant, Authority, JsonReply, Presented, RefreshGrant, State, Style, TokenInfo, client_id,
    client_secret, consent_required, error_reply, google_error_body, microsoft_resource_of,
    microsoft_resources, more_than_one_resource, random_token, s256, split_scopes, valid_verifier,
};

/// A scope as Entra compares it: its resource and its permission, without case (`Mail.Send`
/// and `https://graph.microsoft.com/mail.send` are one).
fn scope_key(scope: &str) -> (Option<String>, String) {
    let permission = scope
        .rsplit('/')
        .next()
        .unwrap_or(scope)
        .to_ascii_lowercase();
    (microsoft_resource_of(scope), permission)
}

/// The scopes a Microsoft-style token request (a code redemption or a refresh) gets: the
/// ones it names, when they are one resource's and within the consent (`consent`: the
/// authorize request's scopes; `extra`: an administrator's; `earlier`: the person's for
/// this client in other sign-ins); none named, the consent as it was (the refresh of a
/// client that names no scope).
fn microsoft_requested_scopes(
    state: &State,
    client_id: &str,
    address: &str,
    form: &HashMap<String, String>,
    consent: &[String],
) -> Result<Vec<String>, JsonReply> {
    let requested = split_scopes(form.get("scope"));
    if requested.is_empty() {
        return Ok(consent.to_vec());
    }
    if microsoft_resources(&requested).len() > 1 {
        return Err(more_than_one_resource(&requested));
    }
    let extra = state
        .consented
        .get(&address.to_lowercase())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let earlier = state.microsoft_consent_of(client_id, address);
    let consented: Vec<_> = consent
        .iter()
        .chain(extra)
        .chain(earlier)
        .map(|s| scope_key(s))
        .collect();
    let outside = requested.iter().any(|scope| {
        let key = scope_key(scope);
        key.0.is_some() && !consented.contains(&key)
    });
    if outside {
        return Err(consent_required(client_id));
    }
    Ok(requested)
}

impl Authority {
    /// Answers a token endpoint call (`basic`: HTTP Basic client credentials, if sent).
    /// `tenant`: the tenant in a Microsoft-style endpoint's path.
    pub(crate) fn token(
        &self,
        style: Style,
        tenant: Option<&str>,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> JsonReply {
        {
            let mut state = self.lock();
            if let Some(failure) = state.failures.pop_front() {
                state.stats.injected_failures += 1;
                return failure;
            }
        }
        // Google's JWT bearer grant names no client: the assertion's issuer is the
        // service account.
        if form.get("grant_type").map(String::as_str) == Some(super::app_only::JWT_BEARER_GRANT) {
            return self.jwt_bearer(style, form);
        }
        let Some(client_id) = client_id(form, basic) else {
            return error_reply(
                style,
                (
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_id'.",
                ),
                (
                    400,
                    "invalid_request",
                    "Could not determine client ID from request.",
                ),
            );
        };
        // App-only credentials sit beside the public-client registration: a client
        // credentials request is checked against them, not against the public client.
        if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
            if let Some(reply) = self.app_client_credentials(style, tenant, &client_id, form) {
                return reply;
            }
        }
        if let Err(refusal) =
            self.check_registration(style, &client_id, &Presented::token(tenant, form, basic))
        {
            return refusal.json();
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(style, &client_id, form, basic),
            Some("refresh_token") => self.redeem_refresh_token(style, &client_id, form, basic),
            Some("client_credentials") => self.client_credentials(style, &client_id, form, basic),
            Some("urn:ietf:params:oauth:grant-type:device_code") => {
                self.redeem_device_code(style, &client_id, form)
            }
            Some(other) => error_reply(
                style,
                (
                    "unsupported_grant_type",
                    70003,
                    &format!("The app requested an unsupported grant type '{other}'."),
                ),
                (
                    400,
                    "unsupported_grant_type",
                    &format!("Invalid grant_type: {other}"),
                ),
            ),
            None => error_reply(
                style,
                (
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                ),
                (400, "unsupported_grant_type", "Invalid grant_type: "),
            ),
        }
    }

    fn missing_google_secret(
        style: Style,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> Option<JsonReply> {
        (style == Style::Google && client_secret(form, basic).is_none()).then(|| JsonReply {
            status: 400,
            body: google_error_body("invalid_request", "client_secret is missing."),
        })
    }

    fn redeem_code(
        &self,
        style: Style,
        client_id: &str,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> JsonReply {
        if let Some(reply) = Self::missing_google_secret(style, form, basic) {
            return reply;
        }
        let code = form.get("code").cloned().unwrap_or_default();
        let grant = {
            let mut state = self.lock();
            if state.redeemed_codes.contains(&code) {
                None
            } else {
                let grant = state.codes.remove(&code);
                if grant.is_some() {
                    // One attempt per code, successful or not.
                    state.redeemed_codes.insert(code.clone());
                }
                grant
            }
        };
        let Some(grant) = grant.filter(|grant| grant.style == style) else {
            return error_reply(
                style,
                (
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed or is not valid, please retry with a new valid code or use an existing refresh token.",
                ),
                (400, "invalid_grant", "Malformed auth code."),
            );
        };
        if grant.expires_at <= SystemTime::now() {
            return error_reply(
                style,
                (
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ),
                (400, "invalid_grant", "Bad Request"),
            );
        }
        if grant.client_id != client_id {
            return error_reply(
                style,
                (
                    "invalid_grant",
                    70000,
                    "The provided authorization code was issued to another client.",
                ),
                (400, "unauthorized_client", "Unauthorized"),
            );
        }
        if form.get("redirect_uri") != Some(&grant.redirect_uri) {
            return error_reply(
                style,
                (
                    "invalid_grant",
                    9002313,
                    "Invalid request. The redirect_uri does not match the redirect URI used to obtain the authorization code.",
                ),
                (400, "redirect_uri_mismatch", "Bad Request"),
            );
        }
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if verifier.is_empty() {
            return error_reply(
                style,
                (
                    "invalid_request",
                    9002325,
                    "Proof Key for Code Exchange is required: the request must contain 'code_verifier'.",
                ),
                (400, "invalid_grant", "Missing code verifier."),
            );
        }
        if !valid_verifier(&verifier) || s256(&verifier) != grant.code_challenge {
            return error_reply(
                style,
                (
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                ),
                (400, "invalid_grant", "Invalid code verifier."),
            );
        }
        let mut state = self.lock();
        let scopes = if style == Style::Microsoft {
            match microsoft_requested_scopes(&state, client_id, &grant.address, form, &grant.scopes)
            {
                Ok(scopes) => scopes,
                Err(reply) => return reply,
            }
        } else {
            grant.scopes.clone()
        };
        state.stats.codes_redeemed += 1;
        let grant_id = state.next_grant;
        state.next_grant += 1;
        let refresh_expiry = state.refresh_expiry();
        let refresh_token = grant.issue_refresh_token.then(|| {
            let token = random_token(48);
            state.refresh_tokens.insert(
                token.clone(),
                RefreshGrant {
                    style,
                    client_id: client_id.to_owned(),
                    address: grant.address.clone(),
                    scopes: grant.scopes.clone(),
                    grant: grant_id,
                    revoked: false,
                    expires_at: refresh_expiry,
                },
            );
            token
        });
        issue(
            &mut state,
            style,
            client_id,
            Some(&grant.address),
            &scopes,
            Some(grant_id),
            refresh_token,
            grant.nonce.as_deref(),
        )
    }

    fn redeem_refresh_token(
        &self,
        style: Style,
        client_id: &str,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> JsonReply {
        if let Some(reply) = Self::missing_google_secret(style, form, basic) {
            return reply;
        }
        let token = form.get("refresh_token").cloned().unwrap_or_default();
        let mut state = self.lock();
        let grant = state.refresh_tokens.get(&token).cloned();
        let refused = |state: &mut State, reply: JsonReply| {
            state.stats.refreshes_refused += 1;
            reply
        };
        let Some(grant) = grant.filter(|grant| grant.style == style) else {
            return refused(
                &mut state,
                error_reply(
                    style,
                    (
                        "invalid_grant",
                        9002313,
                        "Invalid request. Request is malformed or invalid: the refresh token is not known.",
                    ),
                    (400, "invalid_grant", "Bad Request"),
                ),
            );
        };
        if grant.revoked {
            return refused(
                &mut state,
                error_reply(
                    style,
                    (
                        "invalid_grant",
                        50173,
                        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                    ),
                    (400, "invalid_grant", "Token has been expired or revoked."),
                ),
            );
        }
        if grant
            .expires_at
            .is_some_and(|expires_at| expires_at <= SystemTime::now())
        {
            return refused(
                &mut state,
                error_reply(
                    style,
                    (
                        "invalid_grant",
                        700082,
                        "The refresh token has expired due to inactivity. The token was issued on a date and was inactive for the configured lifetime.",
                    ),
                    (400, "invalid_grant", "Token has been expired or revoked."),
                ),
            );
        }
        if grant.client_id != client_id {
            return refused(
                &mut state,
                error_reply(
                    style,
                    (
                        "invalid_grant",
                        700003,
                        "The refresh token was issued to another client.",
                    ),
                    (401, "unauthorized_client", "Unauthorized"),
                ),
            );
        }
        let scopes = if style == Style::Microsoft {
            match microsoft_requested_scopes(&state, client_id, &grant.address, form, &grant.scopes)
            {
                Ok(scopes) => scopes,
                Err(reply) => return refused(&mut state, reply),
            }
        } else {
            grant.scopes.clone()
        };
        state.stats.refreshes += 1;
        let rotated = match style {
            // Microsoft: a new refresh token every time; the old one is not revoked.
            // Its lifetime starts again (Microsoft's is sliding).
            Style::Microsoft => {
                let token = random_token(48);
                let rotated = RefreshGrant {
                    expires_at: state.refresh_expiry(),
                    ..grant.clone()
                };
                state.refresh_tokens.insert(token.clone(), rotated);
                state.stats.refresh_tokens_rotated += 1;
                Some(token)
            }
            // Google: the same refresh token stays; none comes back.
            Style::Google => None,
        };
        issue(
            &mut state,
            style,
            client_id,
            Some(&grant.address),
            &scopes,
            Some(grant.grant),
            rotated,
            None,
        )
    }

    fn client_credentials(
        &self,
        style: Style,
        client_id: &str,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> JsonReply {
        if style == Style::Google {
            return JsonReply {
                status: 400,
                body: google_error_body(
                    "unsupported_grant_type",
                    "Invalid grant_type: client_credentials",
                ),
            };
        }
        if client_secret(form, basic).is_none() {
            return error_reply(
                style,
                (
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ),
                (401, "invalid_client", "Unauthorized"),
            );
        }
        let scopes = split_scopes(form.get("scope"));
        if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
            return error_reply(
                style,
                (
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                ),
                (400, "invalid_scope", "Bad Request"),
            );
        }
        let mut state = self.lock();
        state.stats.client_credentials += 1;
        let lifetime = state.access_token_lifetime;
        let access_token = random_token(48);
        state.access_tokens.insert(
            access_token.clone(),
            AccessGrant {
                info: TokenInfo {
                    style,
                    client_id: client_id.to_owned(),
                    address: None,
                    roles: super::app_only::application_roles(&scopes),
                    scopes: scopes.clone(),
                },
                grant: None,
                expires_at: SystemTime::now() + lifetime,
                revoked: false,
            },
        );
        JsonReply::ok(json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": access_token,
        }))
    }
}
