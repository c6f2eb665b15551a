//! The JSON Web Tokens mailroom signs itself, for app-only credentials: Microsoft's
//! certificate client assertion (PS256) and Google's service-account assertion for the
//! JWT bearer grant (RS256), signed with `ring`.
//!
//! - Microsoft: MicrosoftDocs/entra-docs `docs/identity-platform/certificate-credentials.md`
//!   — header `alg` PS256 (recommended), `typ` JWT, `x5t#S256` the base64url SHA-256 of the
//!   DER certificate; claims `aud` the token endpoint, `iss` = `sub` = the client id, `jti`,
//!   `nbf`, `iat`, a short `exp`.
//! - Google: developers.google.com/identity/protocols/oauth2/service-account ("Preparing
//!   to make an authorized API call", HTTP/REST) — header `alg` RS256, `typ` JWT, `kid` the
//!   key file's `private_key_id`; claims `iss` the service account, `sub` the mailbox
//!   (domain-wide delegation), `scope`, `aud` the key file's `token_uri`, `iat`, `exp` at
//!   most an hour after `iat`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use mailroom_model::{Secret, ValidationError};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_json::json;

/// How long a client assertion is valid: it is used at once, for one token request.
pub(crate) const ASSERTION_LIFETIME_SECONDS: i64 = 10 * 60;

/// How long Google's JWT bearer assertion is valid (Google's maximum is one hour).
pub(crate) const GOOGLE_ASSERTION_LIFETIME_SECONDS: i64 = 60 * 60;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The `grant_type` of Google's JWT bearer grant (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn invalid(field: &'static str, problem: impl Into<String>, fix: &str) -> ValidationError {
    ValidationError::new(field, problem, fix)
}

/// An RSA key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
fn rsa_key_from_pem(pem: &[u8], field: &'static str) -> Result<RsaKeyPair, ValidationError> {
    let fix = "give an unencrypted RSA private key (2048 bits or more) in PEM, `BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`";
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| invalid(field, "no private key in the PEM text", fix))?;
    let parsed = match &key {
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        _ => return Err(invalid(field, "the private key is not an RSA key", fix)),
    };
    parsed.map_err(|error| invalid(field, format!("the private key is refused: {error}"), fix))
}

/// Signs `header.claims` (each JSON, base64url) with `key`: the compact JWS.
fn sign(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &RsaKeyPair,
    encoding: &'static dyn RsaEncoding,
) -> Result<Secret, String> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        encoding,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "the RSA signature failed".to_owned())?;
    Ok(Secret::new(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// A random `jti`: 16 bytes, base64url.
fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no random bytes for the assertion id".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A Microsoft app's certificate credential: the certificate (public, uploaded to the app
/// registration) and its RSA private key. `Debug` shows the thumbprint only.
pub struct AppCertificate {
    certificate_der: Vec<u8>,
    private_key_pem: Secret,
    key: RsaKeyPair,
    thumbprint_sha256: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCertificate")
            .field("x5t#S256", &self.thumbprint_sha256)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl AppCertificate {
    /// The certificate and its private key from PEM text (one file holding both, as
    /// Entra's guidance and most tools write them, or the two texts concatenated).
    pub fn from_pem(pem: &str) -> Result<Self, ValidationError> {
        let certificate = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            invalid(
                "certificate",
                "no certificate (`BEGIN CERTIFICATE`) in the PEM text",
                "give the certificate uploaded to the app registration and its private key, both in PEM",
            )
        })?;
        let key = rsa_key_from_pem(pem.as_bytes(), "certificate")?;
        let private_key_pem = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .ok()
            .and_then(|key| {
                let (label, der) = match &key {
                    PrivateKeyDer::Pkcs8(der) => ("PRIVATE KEY", der.secret_pkcs8_der()),
                    PrivateKeyDer::Pkcs1(der) => ("RSA PRIVATE KEY", der.secret_pkcs1_der()),
                    _ => return None,
                };
                Some(pem_text(label, der))
            })
            .unwrap_or_default();
        let (not_before, not_after) =
            crate::x509::validity(certificate.as_ref()).ok_or_else(|| {
                invalid(
                    "certificate",
                    "the certificate's validity dates cannot be read (not an X.509 certificate)",
                    "give the certificate uploaded to the app registration, in PEM",
                )
            })?;
        let thumbprint = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        Ok(Self {
            certificate_der: certificate.as_ref().to_vec(),
            private_key_pem: Secret::new(private_key_pem),
            key,
            thumbprint_sha256: URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
            not_before,
            not_after,
        })
    }

    /// When the certificate becomes valid.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// When the certificate expires: Entra refuses its assertions after that
    /// (`AADSTS700027`), so a new one must be uploaded and set before.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The certificate and its private key in PEM, as [`AppCertificate::from_pem`] reads
    /// them back (a secret: seal it before storing).
    pub fn to_pem(&self) -> Secret {
        Secret::new(format!(
            "{}{}",
            self.certificate_pem(),
            self.private_key_pem.expose()
        ))
    }

    /// The base64url SHA-256 thumbprint of the DER certificate (the `x5t#S256` header).
    pub fn thumbprint_sha256(&self) -> &str {
        &self.thumbprint_sha256
    }

    /// The certificate in PEM (public).
    pub fn certificate_pem(&self) -> String {
        pem_text("CERTIFICATE", &self.certificate_der)
    }

    /// The private key in PEM (a secret: seal it before storing).
    pub fn private_key_pem(&self) -> &Secret {
        &self.private_key_pem
    }

    /// The client assertion for a token request to `audience` (the token endpoint) by
    /// `client_id`, valid from `now` for [`ASSERTION_LIFETIME_SECONDS`].
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<Secret, String> {
        let now = now.timestamp();
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint_sha256});
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": random_id()?,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        });
        sign(&header, &claims, &self.key, &RSA_PSS_SHA256)
    }
}

fn pem_text(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The fields of a Google service account key file that mailroom uses.
#[derive(Deserialize)]
struct ServiceAccountFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    token_uri: String,
}

/// A Google service account key (the JSON key file). `Debug` shows the account only.
pub struct ServiceAccountKey {
    client_email: String,
    client_id: Option<String>,
    private_key_id: Option<String>,
    key_file: Secret,
    token_uri: url::Url,
    key: RsaKeyPair,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads a key file as the Google Cloud console downloads it.
    pub fn from_json(json: &str) -> Result<Self, ValidationError> {
        let fix = "give the JSON key file of a service account, as the Google Cloud console downloads it (Keys, Add key, JSON)";
        let file: ServiceAccountFile = serde_json::from_str(json).map_err(|error| {
            // serde's message may quote the file: only where it failed is said.
            invalid(
                "service account key",
                format!(
                    "the key file is not a service account key (line {}, column {})",
                    error.line(),
                    error.column()
                ),
                fix,
            )
        })?;
        if file.kind != "service_account" {
            return Err(invalid(
                "service account key",
                format!(
                    "the key file's type is `{}`, not `service_account`",
                    file.kind
                ),
                fix,
            ));
        }
        let token_uri = url::Url::parse(&file.token_uri).map_err(|_| {
            invalid(
                "service account key",
                "the key file's token_uri is not a URL",
                fix,
            )
        })?;
        let key = rsa_key_from_pem(file.private_key.as_bytes(), "service account key")?;
        Ok(Self {
            client_email: file.client_email,
            client_id: file.client_id,
            private_key_id: file.private_key_id,
            key_file: Secret::new(json),
            token_uri,
            key,
        })
    }

    /// The service account's address (the assertion's `iss`).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The service account's OAuth client id (the key file's `client_id`: the id a
    /// Workspace administrator authorizes for domain-wide delegation).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The key's id (the key file's `private_key_id`, the assertion's `kid`).
    pub fn private_key_id(&self) -> Option<&str> {
        self.private_key_id.as_deref()
    }

    /// The key file as it was read, which [`ServiceAccountKey::from_json`] reads back (a
    /// secret: seal it before storing).
    pub fn key_file(&self) -> &Secret {
        &self.key_file
    }

    /// Where tokens are requested (the key file's `token_uri`, the assertion's `aud`).
    pub fn token_uri(&self) -> &url::Url {
        &self.token_uri
    }

    /// The assertion for a token acting as `subject` (the mailbox) with `scope`, valid from
    /// `now` for an hour.
    pub fn assertion(
        &self,
        subject: &str,
        scope: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<Secret, String> {
        let now = now.timestamp();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "sub": subject,
            "scope": scope,
            "aud": audience,
            "iat": now,
            "exp": now + GOOGLE_ASSERTION_LIFETIME_SECONDS,
        });
        sign(&header, &claims, &self.key, &RSA_PKCS1_SHA256)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ring::signature::{
        RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey,
        VerificationAlgorithm,
    };

    use super::*;

    /// A test-only RSA key and self-signed certificate (tests/data; not a credential).
    pub(crate) const TEST_CERTIFICATE: &str = include_str!("../tests/data/app-only-test-cert.pem");
    pub(crate) const TEST_KEY: &str = include_str!("../tests/data/app-only-test-key.pem");
    /// The same key as PKCS#1 (`BEGIN RSA PRIVATE KEY`, the older form that some tools
    /// and older OpenSSL versions write).
    const TEST_KEY_PKCS1: &str = include_str!("../tests/data/app-only-test-key-pkcs1.pem");
    /// The test key's public key, PKCS#1 DER.
    pub(crate) const TEST_PUBLIC_KEY: &[u8] =
        include_bytes!("../tests/data/app-only-test-public-key.der");

    /// The header and claims of `jwt` after checking its signature with the test key.
    pub(crate) fn verified(
        jwt: &str,
        algorithm: &'static dyn VerificationAlgorithm,
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(algorithm, TEST_PUBLIC_KEY)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the test certificate's public key");
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        (decode(parts[0]), decode(parts[1]))
    }

    fn test_certificate() -> AppCertificate {
        AppCertificate::from_pem(&format!("{TEST_CERTIFICATE}{TEST_KEY}")).unwrap()
    }

    #[test]
    fn the_client_assertion_is_microsofts_ps256_jwt() {
        let certificate = test_certificate();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let token_url = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token";
        let jwt = certificate
            .client_assertion("client-1", token_url, now)
            .unwrap();
        let (header, claims) = verified(jwt.expose(), &RSA_PSS_2048_8192_SHA256);
        let der = CertificateDer::from_pem_slice(TEST_CERTIFICATE.as_bytes()).unwrap();
        let thumbprint =
            URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der.as_ref()));
        assert_eq!(
            header,
            json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumbprint})
        );
        assert_eq!(claims["aud"], token_url);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], 1_800_000_000);
        assert_eq!(claims["iat"], 1_800_000_000);
        assert_eq!(claims["exp"], 1_800_000_000 + ASSERTION_LIFETIME_SECONDS);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        // A PKCS#1 v1.5 verifier refuses it: the padding is PSS.
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, TEST_PUBLIC_KEY)
                .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
                .is_err()
        );
        // Each assertion has its own id.
        let again = certificate
            .client_assertion("client-1", token_url, now)
            .unwrap();
        assert_ne!(
            verified(again.expose(), &RSA_PSS_2048_8192_SHA256).1["jti"],
            claims["jti"]
        );
    }

    #[test]
    fn a_certificate_keeps_its_pem_and_hides_its_key() {
        let certificate = test_certificate();
        assert_eq!(
            certificate.certificate_pem().trim(),
            TEST_CERTIFICATE.trim()
        );
        let again = AppCertificate::from_pem(&format!(
            "{}{}",
            certificate.certificate_pem(),
            certificate.private_key_pem().expose()
        ))
        .unwrap();
        assert_eq!(again.thumbprint_sha256(), certificate.thumbprint_sha256());
        let debug = format!("{certificate:?}");
        assert!(debug.contains(certificate.thumbprint_sha256()));
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn a_pkcs1_key_signs_as_the_same_key_and_is_kept_as_pkcs1() {
        let certificate =
            AppCertificate::from_pem(&format!("{TEST_CERTIFICATE}{TEST_KEY_PKCS1}")).unwrap();
        assert_eq!(
            certificate.thumbprint_sha256(),
            test_certificate().thumbprint_sha256()
        );
        assert!(
            certificate
                .private_key_pem()
                .expose()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let jwt = certificate
            .client_assertion("client-1", "https://login.example/token", now)
            .unwrap();
        verified(jwt.expose(), &RSA_PSS_2048_8192_SHA256);

        let mut file: serde_json::Value = serde_json::from_str(&service_account_json()).unwrap();
        file["private_key"] = json!(TEST_KEY_PKCS1);
        let key = ServiceAccountKey::from_json(&file.to_string()).unwrap();
        let jwt = key
            .assertion("ann@example.com", "scope", key.token_uri().as_str(), now)
            .unwrap();
        verified(jwt.expose(), &RSA_PKCS1_2048_8192_SHA256);
    }

    #[test]
    fn a_certificate_without_its_key_or_key_without_certificate_is_refused() {
        let error = AppCertificate::from_pem(TEST_CERTIFICATE).unwrap_err();
        assert_eq!(error.problem, "no private key in the PEM text");
        let error = AppCertificate::from_pem(TEST_KEY).unwrap_err();
        assert!(error.problem.contains("no certificate"), "{error:?}");
    }

    pub(crate) fn service_account_json() -> String {
        json!({
            "type": "service_account",
            "project_id": "mailroom-test",
            "private_key_id": "key-1",
            "private_key": TEST_KEY,
            "client_email": "sender@mailroom-test.iam.gserviceaccount.com",
            "client_id": "1234",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    }

    #[test]
    fn the_service_account_assertion_is_googles_rs256_jwt() {
        let key = ServiceAccountKey::from_json(&service_account_json()).unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let jwt = key
            .assertion(
                "ann@example.com",
                "https://www.googleapis.com/auth/gmail.send",
                key.token_uri().as_str(),
                now,
            )
            .unwrap();
        let (header, claims) = verified(jwt.expose(), &RSA_PKCS1_2048_8192_SHA256);
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "kid": "key-1"})
        );
        assert_eq!(
            claims,
            json!({
                "iss": "sender@mailroom-test.iam.gserviceaccount.com",
                "sub": "ann@example.com",
                "scope": "https://www.googleapis.com/auth/gmail.send",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_800_000_000,
                "exp": 1_800_000_000 + 3600,
            })
        );
        assert_eq!(key.private_key_id(), Some("key-1"));
        assert_eq!(key.client_id(), Some("1234"));
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        for shown in [
            "sender@mailroom-test.iam.gserviceaccount.com",
            "key-1",
            "https://oauth2.googleapis.com/token",
        ] {
            assert!(debug.contains(shown), "{debug} lacks {shown}");
        }
    }

    #[test]
    fn a_key_file_of_another_kind_is_refused_without_quoting_it() {
        let mut file: serde_json::Value = serde_json::from_str(&service_account_json()).unwrap();
        file["type"] = json!("authorized_user");
        let error = ServiceAccountKey::from_json(&file.to_string()).unwrap_err();
        assert!(error.problem.contains("authorized_user"), "{error:?}");
        let error = ServiceAccountKey::from_json("{\"private_key\": \"secret-ish\"").unwrap_err();
        assert!(!error.problem.contains("secret-ish"), "{error:?}");
    }
}
