//! The device authorization grant: device and user codes, approval or refusal on the device
//! page (or by a test hook), and the polling answers of the token endpoint.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::json;

use super::issue::issue;
use super::{
    Authority, DeviceGrant, DeviceStatus, JsonReply, Presented, RefreshGrant, Style, error_reply,
    google_error_body, random_token, split_scopes,
};

impl Authority {
    /// Answers a device authorization request.
    /// `tenant`: the tenant in a Microsoft-style endpoint's path.
    pub(crate) fn device_authorization(
        &self,
        style: Style,
        tenant: Option<&str>,
        form: &HashMap<String, String>,
    ) -> JsonReply {
        let Some(client_id) = form.get("client_id").filter(|id| !id.is_empty()).cloned() else {
            return error_reply(
                style,
                (
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_id'.",
                ),
                (400, "invalid_client", "The OAuth client was not found."),
            );
        };
        if let Err(refusal) =
            self.check_registration(style, &client_id, &Presented::token(tenant, form, None))
        {
            return refusal.json();
        }
        let scopes = split_scopes(form.get("scope"));
        if style == Style::Google {
            if let Some(bad) = scopes.iter().find(|scope| {
                !matches!(scope.as_str(), "openid" | "email" | "profile")
                    && !scope.starts_with("https://www.googleapis.com/auth/userinfo.")
            }) {
                return JsonReply {
                    status: 400,
                    body: google_error_body(
                        "invalid_scope",
                        &format!("Invalid device flow scope: {bad}"),
                    ),
                };
            }
        }
        let device_code = random_token(48);
        let user_code = match style {
            Style::Microsoft => random_user_code(9),
            Style::Google => {
                let code = random_user_code(9);
                format!("{}-{}-{}", &code[0..3], &code[3..6], &code[6..9])
            }
        };
        let mut state = self.lock();
        let expires_in = state.device_code_lifetime.as_secs();
        let interval = state.device_poll_interval_secs;
        let expires_at = SystemTime::now() + state.device_code_lifetime;
        let status = match (&state.default_address, state.auto_approve) {
            (Some(address), true) => DeviceStatus::Approved(address.clone()),
            _ => DeviceStatus::Pending,
        };
        state.devices.insert(
            device_code.clone(),
            DeviceGrant {
                style,
                client_id,
                user_code: user_code.clone(),
                scopes,
                status,
                expires_at,
            },
        );
        match style {
            Style::Microsoft => JsonReply::ok(json!({
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": state.microsoft_verification,
                "expires_in": expires_in,
                "interval": interval,
                "message": format!("To sign in, use a web browser to open the page {} and enter the code {} to authenticate.", state.microsoft_verification, user_code),
            })),
            Style::Google => JsonReply::ok(json!({
                "device_code": device_code,
                "user_code": user_code,
                "expires_in": expires_in,
                "interval": interval,
                "verification_url": state.google_verification,
            })),
        }
    }

    pub(super) fn redeem_device_code(
        &self,
        style: Style,
        client_id: &str,
        form: &HashMap<String, String>,
    ) -> JsonReply {
        let device_code = form.get("device_code").cloned().unwrap_or_default();
        let mut state = self.lock();
        state.stats.device_polls += 1;
        let Some(device) = state
            .devices
            .get(&device_code)
            .filter(|device| device.style == style && device.client_id == client_id)
            .cloned()
        else {
            return error_reply(
                style,
                (
                    "bad_verification_code",
                    70018,
                    "The provided value for the input parameter 'device_code' is not valid.",
                ),
                (400, "invalid_grant", "Malformed auth code."),
            );
        };
        if device.expires_at <= SystemTime::now() {
            return error_reply(
                style,
                ("expired_token", 70019, "Verification code expired."),
                (400, "expired_token", "Expired"),
            );
        }
        match device.status {
            DeviceStatus::Pending => error_reply(
                style,
                (
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                ),
                (428, "authorization_pending", "Precondition Required"),
            ),
            DeviceStatus::Declined => error_reply(
                style,
                (
                    "authorization_declined",
                    70000,
                    "The user declined the sign-in request.",
                ),
                (403, "access_denied", "Forbidden"),
            ),
            DeviceStatus::Redeemed => error_reply(
                style,
                (
                    "invalid_grant",
                    54005,
                    "The device code was already redeemed.",
                ),
                (400, "invalid_grant", "Bad Request"),
            ),
            DeviceStatus::Approved(address) => {
                if let Some(device) = state.devices.get_mut(&device_code) {
                    device.status = DeviceStatus::Redeemed;
                }
                if style == Style::Microsoft {
                    // Approving is consenting: Entra keeps it for the person and the client.
                    state.record_microsoft_consent(client_id, &address, &device.scopes);
                }
                let grant_id = state.next_grant;
                state.next_grant += 1;
                let refresh_expiry = state.refresh_expiry();
                let offline =
                    device.scopes.iter().any(|s| s == "offline_access") || style == Style::Google;
                let refresh_token = offline.then(|| {
                    let token = random_token(48);
                    state.refresh_tokens.insert(
                        token.clone(),
                        RefreshGrant {
                            style,
                            client_id: client_id.to_owned(),
                            address: address.clone(),
                            scopes: device.scopes.clone(),
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
                    Some(&address),
                    &device.scopes,
                    Some(grant_id),
                    refresh_token,
                    None,
                )
            }
        }
    }
}

pub(super) fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn random_user_code(length: usize) -> String {
    // No 0/O or 1/I, which people mistype.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..length)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_compare_without_dashes_or_case() {
        assert_eq!(normalize_user_code("abc-DEF-ghj"), "ABCDEFGHJ");
        let code = random_user_code(9);
        assert_eq!(code.len(), 9);
    }
}
