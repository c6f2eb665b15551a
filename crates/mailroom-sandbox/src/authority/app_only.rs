//! App-only grants: Microsoft's client credentials with a client secret or a certificate's
//! client assertion (MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-client-creds-grant-flow.md`,
//! `certificate-credentials.md`), and Google's JWT bearer grant for a service account
//! (developers.google.com/identity/protocols/oauth2/service-account). An assertion's
//! signature is verified against the registered certificate, with its `aud`, `exp` and
//! (Microsoft) `x5t#S256`. App tokens carry no user (Google's act for the mailbox `sub`).

use std::collections::HashMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    AccessGrant, Authority, GRAPH_APP_SCOPE, JsonReply, MICROSOFT_APP_SCOPE, Style, TokenInfo,
    error_reply, google_error_body, random_token, unix_seconds,
};

/// The `grant_type` of Google's JWT bearer grant.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Graph's application permission to send mail as any mailbox (within the app's
/// management scope, when it has one).
pub(crate) const GRAPH_MAIL_SEND_ROLE: &str = "Mail.Send";
/// Graph's application permission to create drafts and add attachments in any mailbox.
pub(crate) const GRAPH_MAIL_READ_WRITE_ROLE: &str = "Mail.ReadWrite";
/// Exchange Online's application permission for SMTP AUTH with an app's token.
pub(crate) const SMTP_SEND_AS_APP_ROLE: &str = "SMTP.SendAsApp";

/// The application permissions an app-only token for `scopes` (one resource's
/// `/.default`) carries: what the administrator consented to for the app, which the
/// sandbox takes to be mail sending for each resource — Graph's `Mail.Send` and
/// `Mail.ReadWrite` (drafts and large attachments), Exchange Online's `SMTP.SendAsApp`.
pub(crate) fn application_roles(scopes: &[String]) -> Vec<String> {
    let mut roles = Vec::new();
    for scope in scopes {
        if scope.eq_ignore_ascii_case(GRAPH_APP_SCOPE) {
            roles.extend([GRAPH_MAIL_SEND_ROLE, GRAPH_MAIL_READ_WRITE_ROLE].map(str::to_owned));
        } else if scope.eq_ignore_ascii_case(MICROSOFT_APP_SCOPE) {
            roles.push(SMTP_SEND_AS_APP_ROLE.to_owned());
        }
    }
    roles
}

/// A Microsoft-style app's own credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppCredentials {
    secrets: Vec<String>,
    certificates: Vec<Vec<u8>>,
}

/// A checked JWT: its header and claims.
struct Jwt {
    header: Value,
    claims: Value,
}

/// Decodes `jwt` and verifies its signature with `certificate`'s key (`PS256` or `RS256`).
fn verify_jwt(jwt: &str, certificate: &[u8]) -> Result<Jwt, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("the assertion is not a JWT".to_owned());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "the assertion is not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "the assertion is not JSON".to_owned())
    };
    let decoded_header = decode(header)?;
    let algorithm = match decoded_header["alg"].as_str() {
        Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err("the assertion's alg is not PS256 or RS256".to_owned()),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "the signature is not base64url".to_owned())?;
    let der = CertificateDer::from(certificate);
    let end_entity = webpki::EndEntityCert::try_from(&der)
        .map_err(|error| format!("the registered certificate is unreadable: {error}"))?;
    end_entity
        .verify_signature(
            algorithm,
            format!("{header}.{claims}").as_bytes(),
            &signature,
        )
        .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(Jwt {
        header: decoded_header,
        claims: decode(claims)?,
    })
}

fn thumbprint(certificate: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(certificate))
}

/// The time claims of an assertion: not expired, and `nbf`/`iat` not in the future (five
/// minutes of clock skew allowed).
fn check_times(claims: &Value) -> Result<(), String> {
    let now = unix_seconds(SystemTime::now());
    let exp = claims["exp"].as_u64().ok_or("the assertion has no exp")?;
    if exp <= now {
        return Err("the assertion has expired".to_owned());
    }
    for name in ["nbf", "iat"] {
        if claims[name].as_u64().is_some_and(|at| at > now + 300) {
            return Err(format!("the assertion's {name} is in the future"));
        }
    }
    Ok(())
}

impl Authority {
    /// Registers a client secret of the app `client_id` for client credentials.
    pub fn register_app_secret(&self, client_id: &str, secret: &str) {
        self.lock()
            .app_credentials
            .entry(client_id.to_owned())
            .or_default()
            .secrets
            .push(secret.to_owned());
    }

    /// Registers a certificate (DER) of the app `client_id` for client assertions.
    pub fn register_app_certificate(&self, client_id: &str, certificate_der: &[u8]) {
        self.lock()
            .app_credentials
            .entry(client_id.to_owned())
            .or_default()
            .certificates
            .push(certificate_der.to_vec());
    }

    /// Registers a Google service account (its address) with the certificate (DER) of its
    /// key, allowed domain-wide delegation of `gmail.send`.
    pub fn register_service_account(&self, client_email: &str, certificate_der: &[u8]) {
        self.lock()
            .service_accounts
            .insert(client_email.to_lowercase(), certificate_der.to_vec());
    }

    /// Puts the app `client_id` under RBAC for Applications with a management scope of
    /// `mailboxes`: Graph's application permissions then reach only these mailboxes, and
    /// any other is `403 ErrorAccessDenied` (Exchange Online's "Role Based Access Control
    /// for Applications", learn.microsoft.com/exchange/permissions-exo/application-rbac).
    /// Called again, the scope grows. An app never restricted is unscoped: its `Mail.Send`
    /// reaches every mailbox of the tenant, as an application permission does without RBAC.
    pub fn restrict_app_graph_mailboxes(&self, client_id: &str, mailboxes: &[&str]) {
        self.lock()
            .app_graph_mailboxes
            .entry(client_id.to_owned())
            .or_default()
            .extend(
                mailboxes
                    .iter()
                    .map(|mailbox| mailbox.trim().to_lowercase()),
            );
    }

    /// Whether Graph lets the app `client_id` use `mailbox` with its application
    /// permissions: unscoped, or the mailbox is in its management scope.
    pub fn app_may_use_graph_mailbox(&self, client_id: &str, mailbox: &str) -> bool {
        self.lock()
            .app_graph_mailboxes
            .get(client_id)
            .is_none_or(|scope| scope.contains(&mailbox.trim().to_lowercase()))
    }

    /// Gives the app `client_id`'s Exchange service principal FullAccess on `mailbox`
    /// (`New-ServicePrincipal`, then `Add-MailboxPermission -AccessRights FullAccess`):
    /// its `SMTP.SendAsApp` token then authenticates with XOAUTH2 `user=` the mailbox
    /// (Exchange's "Authenticate an IMAP, POP or SMTP connection using OAuth").
    pub fn grant_app_smtp_mailbox(&self, client_id: &str, mailbox: &str) {
        self.lock()
            .app_smtp_mailboxes
            .insert((client_id.to_owned(), mailbox.trim().to_lowercase()));
    }

    /// Whether the app `client_id` has FullAccess on `mailbox` for SMTP.
    pub fn app_may_use_smtp_mailbox(&self, client_id: &str, mailbox: &str) -> bool {
        self.lock()
            .app_smtp_mailboxes
            .contains(&(client_id.to_owned(), mailbox.trim().to_lowercase()))
    }

    /// Microsoft's client credentials for an app with app-only credentials registered;
    /// `None` for any other app (the older checks apply).
    pub(super) fn app_client_credentials(
        &self,
        style: Style,
        tenant: Option<&str>,
        client_id: &str,
        form: &HashMap<String, String>,
    ) -> Option<JsonReply> {
        if style != Style::Microsoft {
            return None;
        }
        let credentials = self.lock().app_credentials.get(client_id).cloned()?;
        let refuse = |code: u32, text: &str| {
            Some(error_reply(
                style,
                ("invalid_client", code, text),
                (401, "invalid_client", text),
            ))
        };
        if matches!(tenant, Some("organizations" | "common") | None) {
            return Some(error_reply(
                style,
                (
                    "invalid_request",
                    90009,
                    "Application is requesting a token for itself. This scenario is supported only if resource is specified using the GUID based App Identifier.",
                ),
                (400, "invalid_request", "tenant"),
            ));
        }
        if let Some(secret) = form.get("client_secret") {
            if !credentials.secrets.contains(secret) {
                return refuse(
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
                );
            }
        } else if let Some(assertion) = form.get("client_assertion") {
            if form.get("client_assertion_type").map(String::as_str) != Some(CLIENT_ASSERTION_TYPE)
            {
                return refuse(
                    700027,
                    "Client assertion contains an invalid client_assertion_type.",
                );
            }
            if let Err(problem) = self.check_client_assertion(
                &credentials,
                tenant.unwrap_or_default(),
                client_id,
                assertion,
            ) {
                return refuse(
                    700027,
                    &format!("Client assertion failed signature validation. ({problem})"),
                );
            }
        } else {
            return refuse(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        let scopes: Vec<String> = form
            .get("scope")
            .map(|scope| scope.split(' ').map(str::to_owned).collect())
            .unwrap_or_default();
        if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
            return Some(error_reply(
                style,
                (
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                ),
                (400, "invalid_scope", "Bad Request"),
            ));
        }
        let mut state = self.lock();
        state.stats.client_credentials += 1;
        Some(app_token(&mut state, style, client_id, None, scopes))
    }

    fn check_client_assertion(
        &self,
        credentials: &AppCredentials,
        tenant: &str,
        client_id: &str,
        assertion: &str,
    ) -> Result<(), String> {
        let (jwt, certificate) = credentials
            .certificates
            .iter()
            .find_map(|certificate| {
                verify_jwt(assertion, certificate)
                    .ok()
                    .map(|jwt| (jwt, certificate))
            })
            .ok_or("no certificate registered with the app verifies the signature")?;
        if jwt.header["alg"] != "PS256" && jwt.header["alg"] != "RS256" {
            return Err("the alg is neither PS256 nor RS256".to_owned());
        }
        if jwt.header["x5t#S256"].as_str() != Some(thumbprint(certificate).as_str()) {
            return Err("x5t#S256 is not the certificate's thumbprint".to_owned());
        }
        let claims = &jwt.claims;
        let audience_path = format!("/{tenant}/oauth2/v2.0/token");
        if !claims["aud"]
            .as_str()
            .is_some_and(|aud| aud.ends_with(&audience_path))
        {
            return Err("aud is not the tenant's token endpoint".to_owned());
        }
        if claims["iss"] != client_id || claims["sub"] != client_id {
            return Err("iss and sub must be the client id".to_owned());
        }
        if claims["jti"].as_str().is_none_or(str::is_empty) {
            return Err("jti is missing".to_owned());
        }
        check_times(claims)
    }

    /// Google's JWT bearer grant for a registered service account.
    pub(super) fn jwt_bearer(&self, style: Style, form: &HashMap<String, String>) -> JsonReply {
        let refuse = |error: &str, description: &str| JsonReply {
            status: 400,
            body: google_error_body(error, description),
        };
        if style != Style::Google {
            return refuse("unsupported_grant_type", "the JWT bearer grant is Google's");
        }
        let Some(assertion) = form.get("assertion") else {
            return refuse("invalid_request", "Missing required parameter: assertion");
        };
        // The issuer names the key to verify with; the claims are trusted only after.
        let issuer = assertion
            .split('.')
            .nth(1)
            .and_then(|claims| URL_SAFE_NO_PAD.decode(claims).ok())
            .and_then(|claims| serde_json::from_slice::<Value>(&claims).ok())
            .and_then(|claims| claims["iss"].as_str().map(str::to_lowercase));
        let certificate =
            issuer.and_then(|issuer| self.lock().service_accounts.get(&issuer).cloned());
        let Some(certificate) = certificate else {
            return refuse("invalid_grant", "Invalid grant: account not found");
        };
        let jwt = match verify_jwt(assertion, &certificate) {
            Ok(jwt) if jwt.header["alg"] == "RS256" => jwt,
            _ => return refuse("invalid_grant", "Invalid JWT Signature."),
        };
        let claims = &jwt.claims;
        if !claims["aud"]
            .as_str()
            .is_some_and(|aud| aud.ends_with("/token"))
        {
            return refuse("invalid_grant", "Invalid JWT: aud is not the token URI.");
        }
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            return refuse("invalid_grant", "Invalid JWT: iat and exp are required.");
        };
        if exp > iat + 3600 || check_times(claims).is_err() {
            return refuse(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            );
        }
        let scopes: Vec<String> = claims["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect();
        if scopes != ["https://www.googleapis.com/auth/gmail.send"] {
            return refuse(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            );
        }
        let Some(subject) = claims["sub"].as_str().filter(|sub| sub.contains('@')) else {
            return refuse(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            );
        };
        let client = claims["iss"].as_str().unwrap_or_default().to_owned();
        let mut state = self.lock();
        app_token(&mut state, style, &client, Some(subject), scopes)
    }
}

/// Issues an app-only access token (no refresh token, no id_token).
fn app_token(
    state: &mut super::State,
    style: Style,
    client_id: &str,
    address: Option<&str>,
    scopes: Vec<String>,
) -> JsonReply {
    let lifetime = state.access_token_lifetime;
    let access_token = random_token(48);
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            info: TokenInfo {
                style,
                client_id: client_id.to_owned(),
                address: address.map(str::to_owned),
                roles: match style {
                    Style::Microsoft => application_roles(&scopes),
                    Style::Google => Vec::new(),
                },
                scopes,
            },
            grant: None,
            expires_at: SystemTime::now() + lifetime,
            revoked: false,
        },
    );
    JsonReply::ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "access_token": access_token,
    }))
}
