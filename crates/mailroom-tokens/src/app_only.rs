//! App-only token requests: Microsoft's client credentials grant (a client secret or a
//! certificate's signed assertion) and Google's JWT bearer grant for a service account
//! with domain-wide delegation. App tokens have no refresh token and no user.
//!
//! - Microsoft: MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-client-creds-grant-flow.md`
//!   — `POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, form `client_id`,
//!   `scope` (one resource's `/.default`), `grant_type=client_credentials`, and either
//!   `client_secret` or `client_assertion_type` + `client_assertion`
//!   (`certificate-credentials.md`). A tenant is required: `organizations` and `common`
//!   name no directory whose app permissions apply.
//! - Google: developers.google.com/identity/protocols/oauth2/service-account —
//!   `POST {token_uri}` form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//!   `assertion`. Both answer `{"access_token","expires_in","token_type":"Bearer"}`.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailroom_model::{Provider, Secret};
use oauth2::AsyncHttpClient;
use serde::Deserialize;

pub use crate::jwt::{AppCertificate, CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT, ServiceAccountKey};
use crate::oauth::{HttpError, OAuthHttp, ProviderErrorBody};
use crate::{Error, Result};

/// The Microsoft Graph resource of app-only tokens (application permission `Mail.Send`).
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The Exchange Online resource of app-only SMTP tokens (`SMTP.SendAsApp`; XOAUTH2 with
/// `user=` the mailbox).
pub const OUTLOOK_DEFAULT_SCOPE: &str = "https://outlook.office365.com/.default";
/// The scope a service account's delegated token asks for a mailbox.
pub const GMAIL_SEND_SCOPE: &str = "https://www.googleapis.com/auth/gmail.send";

/// What an app-only token is for: one resource of the app, or one Google mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppResource {
    /// Microsoft Graph (`sendMail` with the application permission `Mail.Send`).
    Graph,
    /// Exchange Online SMTP (`SMTP.SendAsApp`).
    Outlook,
    /// Gmail for one mailbox, through the service account's domain-wide delegation.
    Gmail {
        /// The mailbox the token acts as (the assertion's `sub`).
        mailbox: String,
    },
}

impl AppResource {
    /// The scope the token request asks.
    pub fn scope(&self) -> &'static str {
        match self {
            AppResource::Graph => GRAPH_DEFAULT_SCOPE,
            AppResource::Outlook => OUTLOOK_DEFAULT_SCOPE,
            AppResource::Gmail { .. } => GMAIL_SEND_SCOPE,
        }
    }

    /// What an app-only account with `provider`, token `resource` and `mailbox` (its SMTP
    /// user) asks for: a Google token acting as the mailbox, Microsoft Graph's on the Graph
    /// route, else Exchange Online's. The one place the choice is made.
    pub fn of(provider: Provider, resource: crate::Resource, mailbox: &str) -> Self {
        match provider {
            Provider::Google => AppResource::Gmail {
                mailbox: mailbox.trim().to_owned(),
            },
            _ if resource.is_graph() => AppResource::Graph,
            _ => AppResource::Outlook,
        }
    }

    /// [`AppResource::of`] an account's server settings.
    pub fn of_server(server: &mailroom_model::ServerSettings) -> Self {
        Self::of(
            server.provider,
            crate::Resource::of_server(server),
            &server.smtp_user,
        )
    }

    /// The key of its cached token: `graph`, `outlook` or `gmail:{mailbox}` (lower case);
    /// the cached row's identity key ends with `:{key}`.
    pub fn key(&self) -> String {
        match self {
            AppResource::Graph => "graph".to_owned(),
            AppResource::Outlook => "outlook".to_owned(),
            AppResource::Gmail { mailbox } => format!("gmail:{}", mailbox.to_lowercase()),
        }
    }
}

/// How a Microsoft app proves itself in a client credentials request.
pub enum ClientCredential<'a> {
    /// A client secret (`client_secret`).
    Secret(&'a Secret),
    /// A certificate: a PS256 client assertion signed with its private key.
    Certificate(&'a AppCertificate),
}

impl fmt::Debug for ClientCredential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientCredential::Certificate(certificate) => {
                f.debug_tuple("Certificate").field(certificate).finish()
            }
        }
    }
}

/// An app-only access token. `Debug` shows no token.
#[derive(Clone)]
pub struct AppToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Its lifetime as the provider stated it.
    pub expires_in: Duration,
}

impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a provider refused an app's own credentials, each with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppCredentialProblem {
    /// `AADSTS700016`: no app with this client id in the tenant.
    AppNotInTenant,
    /// `AADSTS7000215`: the client secret is not one of the app's.
    InvalidSecret,
    /// `AADSTS7000222`: the client secret expired.
    ExpiredSecret,
    /// `AADSTS700027`: the assertion's signature does not verify, or its certificate is
    /// not registered with the app.
    CertificateRejected,
    /// Google `unauthorized_client`: the service account's client id is not authorized
    /// for the scope in the Workspace domain-wide delegation.
    DelegationNotConfigured,
    /// Google `invalid_grant`: a bad signature, an unknown or deleted key, or a clock off
    /// by more than the assertion allows.
    AssertionRejected,
}

impl fmt::Display for AppCredentialProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppCredentialProblem::AppNotInTenant => {
                "no app with this client id exists in the tenant; check the client id and the tenant, and that an administrator of that tenant consented to the app"
            }
            AppCredentialProblem::InvalidSecret => {
                "the client secret is not valid for this app (give the secret's value, not its id); create a new secret under the app registration's certificates and secrets and set it again"
            }
            AppCredentialProblem::ExpiredSecret => {
                "the client secret has expired; create a new secret under the app registration's certificates and secrets and set it again"
            }
            AppCredentialProblem::CertificateRejected => {
                "the app does not accept the certificate's assertion (the certificate is not uploaded to the app registration, has expired, or its private key does not match); upload the certificate to the app registration or set the app's certificate again"
            }
            AppCredentialProblem::DelegationNotConfigured => {
                "the service account may not act for mailboxes with this scope; in the Google Workspace admin console's domain-wide delegation, authorize the service account's client id for https://www.googleapis.com/auth/gmail.send"
            }
            AppCredentialProblem::AssertionRejected => {
                "Google refused the service account's signed assertion (the key was deleted or disabled, or this machine's clock is wrong); check the clock, or create a new key and set it again"
            }
        })
    }
}

fn has_code(body: &ProviderErrorBody, code: u64) -> bool {
    body.error_codes.contains(&code)
}

/// The problem a provider's documented error body names, if it is one of the app's
/// credentials.
fn credential_problem(
    provider: Provider,
    body: &ProviderErrorBody,
) -> Option<AppCredentialProblem> {
    let description = body.error_description.as_deref().unwrap_or_default();
    let named = |code: u64| has_code(body, code) || description.contains(&format!("AADSTS{code}:"));
    match provider {
        Provider::Google => match body.error.as_str() {
            "unauthorized_client" => Some(AppCredentialProblem::DelegationNotConfigured),
            "invalid_grant" => Some(AppCredentialProblem::AssertionRejected),
            _ => None,
        },
        _ if named(700016) => Some(AppCredentialProblem::AppNotInTenant),
        _ if named(7000215) => Some(AppCredentialProblem::InvalidSecret),
        _ if named(7000222) => Some(AppCredentialProblem::ExpiredSecret),
        _ if named(700027) => Some(AppCredentialProblem::CertificateRejected),
        _ => None,
    }
}

/// A token endpoint's success answer for app-only grants.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// How long an app token without `expires_in` is taken to live (Entra's and Google's
/// app tokens last an hour; assuming less only renews sooner).
const DEFAULT_APP_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Posts `form` to `token_url` through [`OAuthHttp`] (https or loopback only, a bounded
/// answer, the request's secrets stripped from a failure's body) and reads the token.
async fn post_for_token(
    http: &OAuthHttp,
    provider: Provider,
    client: &str,
    token_url: &url::Url,
    form: &[(&str, &str)],
) -> Result<AppToken> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(token_url.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body.into_bytes())
        .map_err(|error| Error::MalformedResponse(format!("cannot build the request: {error}")))?;
    let response = http.call(request).await.map_err(|error| match error {
        HttpError::Network { .. } | HttpError::ServerStatus { .. } => Error::Transient {
            message: format!("the token endpoint: {error}"),
        },
        HttpError::NotOAuthError { .. } => {
            Error::MalformedResponse(format!("the token endpoint: {error}"))
        }
        HttpError::Request(problem) => Error::Provider {
            error: problem,
            description: None,
        },
    })?;
    if response.status().is_success() {
        // The answer holds the token: say only where parsing failed.
        let answer: TokenAnswer = serde_json::from_slice(response.body()).map_err(|error| {
            Error::MalformedResponse(format!(
                "a {}-byte token answer did not parse (line {}, column {})",
                response.body().len(),
                error.line(),
                error.column()
            ))
        })?;
        return Ok(AppToken {
            access_token: Secret::new(answer.access_token),
            expires_in: answer
                .expires_in
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_APP_TOKEN_LIFETIME),
        });
    }
    let body: ProviderErrorBody = serde_json::from_slice(response.body()).map_err(|_| {
        Error::MalformedResponse(format!(
            "the token endpoint answered HTTP {} without an OAuth error",
            response.status().as_u16()
        ))
    })?;
    if let Some(problem) = credential_problem(provider, &body) {
        return Err(Error::AppCredentialRejected {
            provider,
            client: client.to_owned(),
            problem,
            detail: body.to_string(),
        });
    }
    Err(match crate::oauth::classify_error_body(&body) {
        crate::oauth::OAuthFailure::Transient(message) => Error::Transient { message },
        _ => Error::Provider {
            error: body
                .error
                .chars()
                .take(crate::oauth::MAX_ERROR_CODE)
                .collect(),
            description: body
                .error_description
                .as_deref()
                .and_then(|text| text.lines().next())
                .map(|line| line.chars().take(crate::oauth::MAX_DESCRIPTION).collect()),
        },
    })
}

/// Microsoft's client credentials grant: a token of the app itself for `scope` (one
/// resource's `/.default`), from `token_url` (the tenant's endpoint).
pub async fn client_credentials(
    http: &OAuthHttp,
    token_url: &url::Url,
    client_id: &str,
    scope: &str,
    credential: ClientCredential<'_>,
    now: DateTime<Utc>,
) -> Result<AppToken> {
    // Client credentials need the app's own directory: `organizations` and `common` name
    // none whose application permissions apply (the client credentials page: "the
    // directory tenant that you plan to operate against").
    let segments: Vec<&str> = token_url.path_segments().into_iter().flatten().collect();
    let tenant = segments
        .iter()
        .position(|segment| *segment == "oauth2")
        .and_then(|at| at.checked_sub(1))
        .map(|at| segments[at]);
    if let Some(tenant @ ("organizations" | "common" | "consumers")) = tenant {
        return Err(Error::TenantRequired {
            detail: format!("app-only tokens cannot be requested at the `{tenant}` endpoint"),
        });
    }
    let mut form = vec![
        ("client_id", client_id),
        ("scope", scope),
        ("grant_type", "client_credentials"),
    ];
    let assertion;
    match credential {
        ClientCredential::Secret(secret) => form.push(("client_secret", secret.expose())),
        ClientCredential::Certificate(certificate) => {
            assertion = certificate
                .client_assertion(client_id, token_url.as_str(), now)
                .map_err(Error::MalformedResponse)?;
            form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
            form.push(("client_assertion", assertion.expose()));
        }
    }
    post_for_token(http, Provider::Microsoft, client_id, token_url, &form).await
}

/// Google's JWT bearer grant: a token acting as `mailbox` with `gmail.send`, from
/// `token_url` (the key file's `token_uri` unless overridden; it is also the `aud`).
pub async fn service_account_token(
    http: &OAuthHttp,
    key: &ServiceAccountKey,
    token_url: &url::Url,
    mailbox: &str,
    now: DateTime<Utc>,
) -> Result<AppToken> {
    let assertion = key
        .assertion(mailbox, GMAIL_SEND_SCOPE, token_url.as_str(), now)
        .map_err(Error::MalformedResponse)?;
    let form = [
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", assertion.expose()),
    ];
    post_for_token(http, Provider::Google, key.client_email(), token_url, &form).await
}

#[cfg(test)]
mod tests;
