//! The authorize endpoint: checks the request (client, loopback redirect URI, PKCE
//! challenge, scopes of one resource), shows the consent page or approves at once, and
//! redirects back with a one-use code or the provider's error.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{
    Authority, AuthorizeOutcome, CODE_LIFETIME, CodeGrant, ConsentPage, Decision, Presented, Style,
    random_token, split_scopes,
};

fn is_loopback_redirect(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    url.scheme() == "http" && loopback && url.fragment().is_none()
}

fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(redirect_uri).expect("checked to be a URL");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
    }
    url.to_string()
}

impl Authority {
    /// `tenant`: the tenant in a Microsoft-style endpoint's path.
    pub(crate) fn authorize(
        &self,
        style: Style,
        tenant: Option<&str>,
        params: &HashMap<String, String>,
        decision: Decision,
    ) -> AuthorizeOutcome {
        let Some(client_id) = params.get("client_id").filter(|id| !id.is_empty()) else {
            return AuthorizeOutcome::ErrorPage {
                status: 400,
                message: match style {
                    Style::Microsoft => "AADSTS900144: The request body must contain the following parameter: 'client_id'.".to_owned(),
                    Style::Google => "Error 400: invalid_request. Missing required parameter: client_id".to_owned(),
                },
            };
        };
        let redirect_uri = params.get("redirect_uri").cloned().unwrap_or_default();
        if !is_loopback_redirect(&redirect_uri) {
            return AuthorizeOutcome::ErrorPage {
                status: 400,
                message: match style {
                    Style::Microsoft => format!(
                        "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. The sandbox accepts loopback redirect URIs (http://127.0.0.1:PORT/...)."
                    ),
                    Style::Google => format!(
                        "Error 400: redirect_uri_mismatch. The redirect URI '{redirect_uri}' is not allowed; the sandbox accepts loopback redirect URIs (http://127.0.0.1:PORT/...)."
                    ),
                },
            };
        }
        // The app registration's rules (Entra shows these in the browser and does not
        // redirect: the redirect URI itself may be the problem).
        if let Err(refusal) = self.check_registration(
            style,
            client_id,
            &Presented {
                tenant,
                redirect_uri: Some(&redirect_uri),
                client_secret: None,
                authorize: true,
            },
        ) {
            return refusal.page();
        }
        let state_param = params.get("state").cloned();
        let fail = |error: &str, description: &str| {
            let mut pairs = vec![("error", error), ("error_description", description)];
            if let Some(state) = state_param.as_deref() {
                pairs.push(("state", state));
            }
            AuthorizeOutcome::Redirect(redirect_with(&redirect_uri, &pairs))
        };
        if params.get("response_type").map(String::as_str) != Some("code") {
            return fail(
                "unsupported_response_type",
                "The sandbox supports response_type=code only.",
            );
        }
        let scopes = split_scopes(params.get("scope"));
        if scopes.is_empty() {
            return fail("invalid_request", "Missing required parameter: scope");
        }
        if style == Style::Microsoft {
            if let Some(bad) = scopes
                .iter()
                .find(|scope| scope.ends_with("SMTP.SendAsApp") || scope.ends_with("/.default"))
            {
                return fail(
                    "invalid_scope",
                    &format!(
                        "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {bad} is not a delegated permission."
                    ),
                );
            }
        }
        let Some(code_challenge) = params.get("code_challenge").filter(|c| !c.is_empty()) else {
            return fail(
                "invalid_request",
                "The sandbox requires PKCE: code_challenge is missing.",
            );
        };
        if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return fail(
                "invalid_request",
                "The sandbox requires code_challenge_method=S256.",
            );
        }
        let (auto_approve, default_address) = {
            let state = self.lock();
            (state.auto_approve, state.default_address.clone())
        };
        let hinted = params
            .get("login_hint")
            .filter(|hint| !hint.trim().is_empty())
            .cloned()
            .or(default_address);
        let address = match decision {
            Decision::Deny => {
                return fail("access_denied", "The user denied the request.");
            }
            Decision::Approve(address) => address,
            Decision::Ask if auto_approve => match hinted {
                Some(address) => address,
                None => {
                    return fail(
                        "login_required",
                        "The sandbox approves sign-ins automatically only as a known address, and this one named no one (no login_hint) while the sandbox has no default address. Give the account's SMTP user before signing in, or start the sandbox with a default address (--default-address ADDRESS).",
                    );
                }
            },
            Decision::Ask => {
                let mut hidden: Vec<(String, String)> = params
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                hidden.sort();
                return AuthorizeOutcome::Consent(ConsentPage {
                    style,
                    client_id: client_id.clone(),
                    scopes,
                    address: hinted,
                    params: hidden,
                });
            }
        };
        let address = address.trim().to_owned();
        if !address.contains('@') {
            return fail(
                "invalid_request",
                "The address to sign in as is not an email address.",
            );
        }
        let issue_refresh_token = match style {
            Style::Microsoft => scopes.iter().any(|s| s == "offline_access"),
            Style::Google => {
                let offline = params.get("access_type").map(String::as_str) == Some("offline");
                let consent = params
                    .get("prompt")
                    .is_some_and(|prompt| prompt.split_whitespace().any(|p| p == "consent"));
                let mut state = self.lock();
                let first = state
                    .google_consents
                    .insert((client_id.clone(), address.to_lowercase()));
                offline && (first || consent)
            }
        };
        let code = random_token(32);
        let mut state = self.lock();
        if style == Style::Microsoft {
            // Approving is consenting: Entra keeps it for the person and the client.
            state.record_microsoft_consent(client_id, &address, &scopes);
        }
        state.codes.insert(
            code.clone(),
            CodeGrant {
                style,
                client_id: client_id.clone(),
                redirect_uri: redirect_uri.clone(),
                code_challenge: code_challenge.clone(),
                scopes: scopes.clone(),
                address,
                nonce: params.get("nonce").cloned(),
                issue_refresh_token,
                expires_at: SystemTime::now() + CODE_LIFETIME,
            },
        );
        state.stats.codes_issued += 1;
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state_value) = state_param.as_deref() {
            pairs.push(("state", state_value));
        }
        let scope_text = scopes.join(" ");
        if style == Style::Google {
            pairs.push(("scope", &scope_text));
        }
        AuthorizeOutcome::Redirect(redirect_with(&redirect_uri, &pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_redirects_are_accepted() {
        for (uri, expected) in [
            ("http://127.0.0.1:4711/callback", true),
            ("http://localhost:80/", true),
            ("http://[::1]:9/cb", true),
            ("https://127.0.0.1/cb", false),
            ("http://evil.example/cb", false),
            ("http://127.0.0.1:1/cb#frag", false),
            ("not a url", false),
        ] {
            assert_eq!(is_loopback_redirect(uri), expected, "{uri}");
        }
    }
}
