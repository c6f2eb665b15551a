//! Ready-made app-only credentials for tests and `sandbox serve`: a client secret and a
//! certificate for a Microsoft-style app, and a Google-style service account key file,
//! each registered with the sandbox's authority. The certificate and key are the public,
//! test-only pair of `src/data/` (see its README): never a credential anywhere else.

use std::fmt;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::Sandbox;

/// The test-only certificate (self-signed, PEM) of the app-only credentials.
const TEST_CERTIFICATE_PEM: &str = include_str!("data/app-only-test-cert.pem");
/// Its RSA key (PKCS#8, PEM). Public: see `src/data/README.md`.
const TEST_KEY_PEM: &str = include_str!("data/app-only-test-key.pem");

/// The service account of [`Sandbox::app_only_credentials`].
pub const SANDBOX_SERVICE_ACCOUNT: &str =
    "mailroom-sandbox@mailroom-sandbox.iam.gserviceaccount.com";
/// Its numeric client id (what domain-wide delegation names in the Admin console).
pub const SANDBOX_SERVICE_ACCOUNT_CLIENT_ID: &str = "104845167370285932042";
const SANDBOX_SERVICE_ACCOUNT_KEY_ID: &str = "5a4db0c5sandbox0test0only0key0id00000000";

/// App-only credentials the sandbox accepts, from [`Sandbox::app_only_credentials`].
///
/// `Debug` leaves out the secret and the private keys.
#[derive(Clone, PartialEq, Eq)]
pub struct AppOnlyCredentials {
    /// The Microsoft-style app they were registered for.
    pub client_id: String,
    /// A client secret of the app.
    pub client_secret: String,
    /// The app's certificate and its private key, in PEM (the certificate first).
    pub certificate_pem: String,
    /// A Google-style service account key file (JSON): `type` `service_account`,
    /// `client_email`, `client_id`, `private_key_id`, `private_key` (PEM) and `token_uri`
    /// the sandbox's Google-style token endpoint.
    pub service_account_json: String,
    /// The service account's address ([`SANDBOX_SERVICE_ACCOUNT`]).
    pub service_account: String,
}

impl fmt::Debug for AppOnlyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppOnlyCredentials")
            .field("client_id", &self.client_id)
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

fn test_certificate_der() -> Vec<u8> {
    CertificateDer::from_pem_slice(TEST_CERTIFICATE_PEM.as_bytes())
        .expect("the sandbox's test certificate is PEM")
        .as_ref()
        .to_vec()
}

impl Sandbox {
    /// Registers app-only credentials and returns them: a new client secret and the
    /// test-only certificate for the Microsoft-style app `microsoft_client_id` (client
    /// credentials with a secret or a certificate's assertion), and a service account
    /// with domain-wide delegation of `gmail.send` (its token acts for any mailbox named
    /// as `sub`). Which mailboxes the app may use is set apart:
    /// [`crate::Authority::restrict_app_graph_mailboxes`] (Graph; unscoped until then) and
    /// [`crate::Authority::grant_app_smtp_mailbox`] (SMTP; none until then).
    pub fn app_only_credentials(&self, microsoft_client_id: &str) -> AppOnlyCredentials {
        let client_secret = format!("sbx~{:032x}", rand::random::<u128>());
        let certificate = test_certificate_der();
        let authority = self.authority();
        authority.register_app_secret(microsoft_client_id, &client_secret);
        authority.register_app_certificate(microsoft_client_id, &certificate);
        authority.register_service_account(SANDBOX_SERVICE_ACCOUNT, &certificate);
        let service_account_json = json!({
            "type": "service_account",
            "project_id": "mailroom-sandbox",
            "private_key_id": SANDBOX_SERVICE_ACCOUNT_KEY_ID,
            "private_key": TEST_KEY_PEM,
            "client_email": SANDBOX_SERVICE_ACCOUNT,
            "client_id": SANDBOX_SERVICE_ACCOUNT_CLIENT_ID,
            "auth_uri": self.endpoints().google.authorize.as_str(),
            "token_uri": self.endpoints().google.token.as_str(),
        });
        AppOnlyCredentials {
            client_id: microsoft_client_id.to_owned(),
            client_secret,
            certificate_pem: format!("{TEST_CERTIFICATE_PEM}{TEST_KEY_PEM}"),
            service_account_json: serde_json::to_string_pretty(&service_account_json)
                .expect("a JSON value serializes"),
            service_account: SANDBOX_SERVICE_ACCOUNT.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_certificate_and_key_are_pem() {
        assert!(!test_certificate_der().is_empty());
        assert!(TEST_CERTIFICATE_PEM.ends_with('\n'));
        assert!(TEST_KEY_PEM.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
