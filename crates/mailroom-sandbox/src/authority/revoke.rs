//! Revocation (Google's endpoint): an access or refresh token revokes its whole grant.

use serde_json::json;

use super::{Authority, JsonReply, google_error_body};

impl Authority {
    /// Google's revocation endpoint: an access or refresh token revokes its whole grant.
    pub(crate) fn revoke(&self, token: &str) -> JsonReply {
        let mut state = self.lock();
        let grant = state
            .refresh_tokens
            .get(token)
            .map(|grant| Some(grant.grant))
            .or_else(|| state.access_tokens.get(token).map(|grant| grant.grant));
        let Some(grant) = grant else {
            return JsonReply {
                status: 400,
                body: google_error_body("invalid_token", "Token expired or revoked"),
            };
        };
        match grant {
            Some(grant) => {
                for refresh in state.refresh_tokens.values_mut() {
                    if refresh.grant == grant {
                        refresh.revoked = true;
                    }
                }
                for access in state.access_tokens.values_mut() {
                    if access.grant == Some(grant) {
                        access.revoked = true;
                    }
                }
            }
            None => {
                if let Some(access) = state.access_tokens.get_mut(token) {
                    access.revoked = true;
                }
            }
        }
        state.stats.revocations += 1;
        JsonReply::ok(json!({}))
    }
}
