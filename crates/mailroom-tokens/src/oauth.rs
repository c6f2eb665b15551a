//! The OAuth 2.0 requests mailroom makes (code exchange, refresh, device authorization,
//! revocation), on the `oauth2` crate with an HTTP client that keeps the status codes the
//! retry policy needs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mailroom_model::{Provider, Secret};
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, ExtraDeviceAuthorizationFields, ExtraTokenFields, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::app::AppRegistration;

/// The longest a request to an identity provider may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for identity providers: no redirects, rustls, bounded time.
#[derive(Debug, Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
}

impl OAuthHttp {
    /// A client with mailroom's settings.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls builds");
        Self { client }
    }

    pub(crate) fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Default for OAuthHttp {
    fn default() -> Self {
        Self::new()
    }
}

/// What went wrong below the OAuth layer (the error type of [`OAuthHttp`] as an `oauth2`
/// HTTP client). Never carries a request or response body that
/// could hold a token.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {host}: {detail}")]
    Network { host: String, detail: String },
    #[error("it answered HTTP {status}")]
    ServerStatus { status: u16 },
    #[error("it answered HTTP {status} with a body that is not an OAuth error: {snippet}")]
    NotOAuthError { status: u16, snippet: String },
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// The largest answer read from an OAuth endpoint.
const MAX_ANSWER: usize = 256 * 1024;

/// Where a request carrying a secret may go: `https`, or `http` to a loopback host (a
/// test server). Checked on every request, whatever the stored registration says, so an
/// endpoint changed behind mailroom's back (by SQL) cannot draw a token out in clear.
fn check_destination(scheme: &str, host: &str) -> Result<(), String> {
    match scheme {
        "https" => Ok(()),
        "http" if mailroom_model::validate::is_loopback_host(host) => Ok(()),
        _ => Err(format!(
            "refusing to send a secret to {scheme}://{host}: only https (or http to this machine's loopback address) is allowed; check the app registration's endpoints"
        )),
    }
}

/// Reads a response's body, at most [`MAX_ANSWER`] bytes.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| error_chain(&error))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The form fields of an OAuth request that carry a secret.
const SECRET_FIELDS: [&str; 8] = [
    "refresh_token",
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    "device_code",
    "token",
    "assertion",
];

/// The secret values a form-encoded request body carries.
fn request_secrets(body: &[u8]) -> Vec<String> {
    url::form_urlencoded::parse(body)
        .filter(|(name, value)| SECRET_FIELDS.contains(&name.as_ref()) && value.len() >= 4)
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// `body` with every secret (as sent, and form-encoded as a page may echo it) replaced.
fn redact(body: &[u8], secrets: &[String]) -> Vec<u8> {
    if secrets.is_empty() {
        return body.to_vec();
    }
    let mut text = String::from_utf8_lossy(body).into_owned();
    for secret in secrets {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for form in [secret.as_str(), encoded.as_str()] {
            if !form.is_empty() {
                text = text.replace(form, "[redacted]");
            }
        }
    }
    text.into_bytes()
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let host = request.uri().host().unwrap_or_default().to_owned();
            check_destination(request.uri().scheme_str().unwrap_or_default(), &host)
                .map_err(HttpError::Request)?;
            let secrets = request_secrets(request.body());
            let request: reqwest::Request = request
                .try_into()
                .map_err(|error: reqwest::Error| HttpError::Request(error.to_string()))?;
            let response =
                self.client
                    .execute(request)
                    .await
                    .map_err(|error| HttpError::Network {
                        host: host.clone(),
                        detail: error_chain(&error),
                    })?;
            let status = response.status();
            let headers = response.headers().clone();
            // A token endpoint's answer is small: a hostile or broken one must not fill
            // the memory.
            let body = read_bounded(response)
                .await
                .map_err(|detail| HttpError::Network { host, detail })?;
            if status.is_server_error() {
                return Err(HttpError::ServerStatus {
                    status: status.as_u16(),
                });
            }
            // A failure's body may echo the request (an HTML page from a proxy, a debug
            // page): every secret the request carried is redacted before the body reaches
            // an error, a log or the database.
            let body = if status.is_success() {
                body
            } else {
                redact(&body, &secrets)
            };
            // An error body that is not JSON is reported with its first characters.
            if !status.is_success() && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                let text = String::from_utf8_lossy(&body);
                let snippet: String = text.chars().filter(|c| !c.is_control()).take(120).collect();
                return Err(HttpError::NotOAuthError {
                    status: status.as_u16(),
                    snippet,
                });
            }
            let mut builder = http::Response::builder().status(status);
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            builder
                .body(body.to_vec())
                .map_err(|error| HttpError::Request(error.to_string()))
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A token endpoint's error body: RFC 6749 fields plus Microsoft's extras.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct ProviderErrorBody {
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: Option<String>,
    #[serde(default)]
    pub(crate) error_codes: Vec<u64>,
    #[serde(default)]
    pub(crate) suberror: Option<String>,
    #[serde(default)]
    pub(crate) error_uri: Option<String>,
}

/// The most bytes of a provider's `error` code kept in a failure.
pub(crate) const MAX_ERROR_CODE: usize = 128;
/// The most bytes of the first line of a provider's `error_description` kept in a failure.
pub(crate) const MAX_DESCRIPTION: usize = 512;

/// `text` cut to at most `max` bytes on a character boundary: a provider's words go into
/// errors, logs and the database, and the answer they come from may be 256 KiB.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl ProviderErrorBody {
    /// The error code, cut to [`MAX_ERROR_CODE`] bytes.
    fn error_code(&self) -> &str {
        cut(&self.error, MAX_ERROR_CODE)
    }

    /// The first line of the description (Microsoft's later lines carry trace ids and
    /// timestamps), trimmed and cut to [`MAX_DESCRIPTION`] bytes.
    fn description_line(&self) -> Option<&str> {
        self.error_description.as_deref().map(|description| {
            cut(
                description.lines().next().unwrap_or_default().trim(),
                MAX_DESCRIPTION,
            )
        })
    }
}

impl fmt::Display for ProviderErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error_code())?;
        if let Some(description) = self.description_line() {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

impl oauth2::ErrorResponse for ProviderErrorBody {}

/// The id_token that comes with a token response (with the `openid` scope).
#[derive(Clone, Default, Deserialize, Serialize)]
pub(crate) struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

impl fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenField")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ExtraTokenFields for IdTokenField {}

/// Microsoft's device authorization response carries a ready-made `message`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct DeviceMessage {
    #[serde(default)]
    pub(crate) message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for DeviceMessage {}

type ProviderTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type OAuthClient = oauth2::Client<
    ProviderErrorBody,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// Tokens from a token endpoint. `Debug` shows no token.
#[derive(Clone)]
pub struct IssuedTokens {
    pub(crate) access_token: Secret,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) scopes: Vec<String>,
    pub(crate) id_token: Option<String>,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

fn issued(response: ProviderTokenResponse) -> IssuedTokens {
    IssuedTokens {
        access_token: Secret::new(response.access_token().secret().as_str()),
        refresh_token: response
            .refresh_token()
            .map(|token| Secret::new(token.secret().as_str())),
        expires_in: response.expires_in(),
        scopes: response
            .scopes()
            .map(|scopes| scopes.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        id_token: response.extra_fields().id_token.clone(),
    }
}

/// An OAuth failure, classified for the broker and the sign-in flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OAuthFailure {
    /// The refresh token (or code) is expired or revoked: sign in again.
    Revoked(String),
    /// The provider wants interaction (MFA, sign-in frequency).
    InteractionRequired(String),
    /// An administrator must consent first.
    ConsentRequired(String),
    /// Worth retrying: network, 5xx, `temporarily_unavailable`.
    Transient(String),
    /// Any other OAuth error (`invalid_client`, `invalid_scope`, ...).
    Provider {
        error: String,
        description: Option<String>,
    },
    /// The answer could not be understood.
    Malformed(String),
}

fn has_code(body: &ProviderErrorBody, codes: &[u64]) -> bool {
    body.error_codes.iter().any(|code| codes.contains(code))
}

pub(crate) fn classify_error_body(body: &ProviderErrorBody) -> OAuthFailure {
    let detail = body.to_string();
    let consent = has_code(body, &[65001]) || body.suberror.as_deref() == Some("consent_required");
    let mfa = has_code(body, &[50076, 50079, 70043, 50158])
        || body.suberror.as_deref() == Some("basic_action");
    match body.error.as_str() {
        "invalid_grant" if consent => OAuthFailure::ConsentRequired(detail),
        "invalid_grant" if mfa => OAuthFailure::InteractionRequired(detail),
        "invalid_grant" => OAuthFailure::Revoked(detail),
        "interaction_required" if consent => OAuthFailure::ConsentRequired(detail),
        "interaction_required" | "login_required" => OAuthFailure::InteractionRequired(detail),
        "consent_required" => OAuthFailure::ConsentRequired(detail),
        "temporarily_unavailable" | "server_error" => OAuthFailure::Transient(detail),
        _ => OAuthFailure::Provider {
            error: body.error_code().to_owned(),
            description: body.description_line().map(str::to_owned),
        },
    }
}

fn classify<TE: oauth2::ErrorResponse>(
    error: RequestTokenError<HttpError, TE>,
    body_of: impl FnOnce(TE) -> OAuthFailure,
) -> OAuthFailure {
    match error {
        RequestTokenError::ServerResponse(body) => body_of(body),
        RequestTokenError::Request(HttpError::Network { host, detail }) => {
            OAuthFailure::Transient(format!("cannot reach {host}: {detail}"))
        }
        RequestTokenError::Request(HttpError::ServerStatus { status }) => {
            OAuthFailure::Transient(format!("the token endpoint answered HTTP {status}"))
        }
        RequestTokenError::Request(error @ HttpError::NotOAuthError { .. }) => {
            OAuthFailure::Malformed(format!("the token endpoint: {error}"))
        }
        RequestTokenError::Request(error) => OAuthFailure::Malformed(error.to_string()),
        // The body of a successful answer may hold tokens: report only where parsing failed.
        RequestTokenError::Parse(error, body) => OAuthFailure::Malformed(format!(
            "a {}-byte answer did not parse at `{}`",
            body.len(),
            error.path()
        )),
        RequestTokenError::Other(text) => OAuthFailure::Malformed(text),
    }
}

fn client(app: &AppRegistration) -> Result<OAuthClient, OAuthFailure> {
    let mut client =
        OAuthClient::new(ClientId::new(app.client_id.clone())).set_auth_type(AuthType::RequestBody);
    // Never Microsoft's (a public client; AADSTS700025): see `client_secret_to_send`.
    if let Some(secret) = app.client_secret_to_send() {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    Ok(client)
}

/// The start of a browser sign-in: the URL to open and what the redirect must carry.
#[derive(Debug)]
pub(crate) struct AuthorizationStart {
    pub(crate) url: url::Url,
    pub(crate) state: CsrfToken,
    pub(crate) verifier: PkceCodeVerifier,
}

/// Builds the authorization URL with PKCE S256, `state`, `login_hint` and the provider's
/// `prompt` (and `access_type=offline` for Google).
pub(crate) fn authorization_url(
    app: &AppRegistration,
    scopes: &[String],
    redirect_uri: &str,
    login_hint: Option<&str>,
) -> Result<AuthorizationStart, OAuthFailure> {
    let endpoints = app.endpoints();
    let client = client(app)?
        .set_auth_uri(AuthUrl::from_url(endpoints.authorize))
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OAuthFailure::Malformed(e.to_string()))?,
        );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .set_pkce_challenge(challenge);
    match app.provider {
        Provider::Google => {
            request = request
                .add_extra_param("access_type", "offline")
                .add_extra_param("prompt", "consent");
        }
        _ => request = request.add_extra_param("prompt", "select_account"),
    }
    if let Some(hint) = login_hint.filter(|hint| !hint.is_empty()) {
        request = request.add_extra_param("login_hint", hint.to_owned());
    }
    let (url, state) = request.url();
    Ok(AuthorizationStart {
        url,
        state,
        verifier,
    })
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub(crate) async fn exchange_code(
    http: &OAuthHttp,
    app: &AppRegistration,
    scopes: &[String],
    code: &str,
    verifier: PkceCodeVerifier,
    redirect_uri: &str,
) -> Result<IssuedTokens, OAuthFailure> {
    let client = client(app)?
        .set_token_uri(TokenUrl::from_url(app.endpoints().token))
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OAuthFailure::Malformed(e.to_string()))?,
        );
    let mut request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(verifier);
    if app.provider == Provider::Microsoft {
        // Microsoft's v2.0 code redemption names the scopes again.
        request = request.add_extra_param("scope", scopes.join(" "));
    }
    request
        .request_async(http)
        .await
        .map(issued)
        .map_err(|error| classify(error, |body| classify_error_body(&body)))
}

/// Redeems a refresh token for an access token of the resource `scopes` name (one
/// resource: Entra refuses more, `AADSTS28000`).
pub(crate) async fn refresh(
    http: &OAuthHttp,
    app: &AppRegistration,
    scopes: &[String],
    refresh_token: &Secret,
) -> Result<IssuedTokens, OAuthFailure> {
    let client = client(app)?.set_token_uri(TokenUrl::from_url(app.endpoints().token));
    let token = RefreshToken::new(refresh_token.expose().to_owned());
    client
        .exchange_refresh_token(&token)
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(http)
        .await
        .map(issued)
        .map_err(|error| classify(error, |body| classify_error_body(&body)))
}

/// What the user must do to approve a device sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    /// The code to enter.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// The provider's own instructions, when it sends them (Microsoft does).
    pub message: Option<String>,
    /// How long the code is valid.
    pub expires_in: Duration,
}

/// Why a device sign-in ended without tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceFailure {
    Expired,
    Declined,
    Other(OAuthFailure),
}

/// Runs the device authorization grant: starts it, hands the prompt to `on_prompt`, then
/// polls at the provider's interval (`slow_down` adds 5 s to this and every later poll).
pub(crate) async fn device_flow<S, SF>(
    http: &OAuthHttp,
    app: &AppRegistration,
    scopes: &[String],
    on_prompt: impl FnOnce(&DevicePrompt),
    sleep: S,
) -> Result<IssuedTokens, DeviceFailure>
where
    S: Fn(Duration) -> SF + Send + Sync,
    SF: Future<Output = ()> + Send,
{
    let endpoints = app.endpoints();
    let device_url = endpoints.device.ok_or_else(|| {
        DeviceFailure::Other(OAuthFailure::Malformed("no device endpoint".to_owned()))
    })?;
    let client = client(app)
        .map_err(DeviceFailure::Other)?
        .set_token_uri(TokenUrl::from_url(endpoints.token))
        .set_device_authorization_url(DeviceAuthorizationUrl::from_url(device_url));
    let details: oauth2::DeviceAuthorizationResponse<DeviceMessage> = client
        .exchange_device_code()
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(http)
        .await
        .map_err(|error| {
            DeviceFailure::Other(classify(error, |body| classify_error_body(&body)))
        })?;
    on_prompt(&DevicePrompt {
        user_code: details.user_code().secret().clone(),
        verification_uri: details.verification_uri().to_string(),
        message: details.extra_fields().message.clone(),
        expires_in: details.expires_in(),
    });
    client
        .exchange_device_access_token(&details)
        .request_async(http, sleep, None)
        .await
        .map(issued)
        .map_err(|error| match error {
            RequestTokenError::ServerResponse(body) => match body.error() {
                oauth2::DeviceCodeErrorResponseType::ExpiredToken => DeviceFailure::Expired,
                oauth2::DeviceCodeErrorResponseType::AccessDenied => DeviceFailure::Declined,
                // Microsoft's word for a declined request (AADSTS70000 family).
                oauth2::DeviceCodeErrorResponseType::Basic(
                    oauth2::basic::BasicErrorResponseType::Extension(kind),
                ) if kind == "authorization_declined" => DeviceFailure::Declined,
                _ => DeviceFailure::Other(OAuthFailure::Provider {
                    error: body.to_string(),
                    description: None,
                }),
            },
            other => DeviceFailure::Other(classify(other, |_: oauth2::DeviceCodeErrorResponse| {
                OAuthFailure::Malformed("unexpected device error".to_owned())
            })),
        })
}

/// Revokes a token at the provider's revocation endpoint (RFC 7009: POST `token=...`).
///
/// A direct request rather than `oauth2`'s revocation, which refuses `http://` even for
/// a loopback test server. Returns the provider's answer in words.
pub(crate) async fn revoke(
    http: &OAuthHttp,
    url: &url::Url,
    token: &Secret,
) -> Result<String, OAuthFailure> {
    check_destination(url.scheme(), url.host_str().unwrap_or_default()).map_err(|problem| {
        OAuthFailure::Provider {
            error: problem,
            description: None,
        }
    })?;
    let response = http
        .reqwest()
        .post(url.clone())
        .form(&[("token", token.expose())])
        .send()
        .await
        .map_err(|error| {
            OAuthFailure::Transient(format!(
                "cannot reach {}: {}",
                url.host_str().unwrap_or_default(),
                error_chain(&error)
            ))
        })?;
    let status = response.status();
    let body = redact(
        &read_bounded(response).await.unwrap_or_default(),
        &[token.expose().to_owned()],
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        return Ok(format!(
            "the provider confirmed the revocation (HTTP {})",
            status.as_u16()
        ));
    }
    let detail = serde_json::from_str::<ProviderErrorBody>(&body)
        .map(|body| body.to_string())
        .unwrap_or_else(|_| body.chars().filter(|c| !c.is_control()).take(120).collect());
    Err(OAuthFailure::Provider {
        error: format!("revocation answered HTTP {}", status.as_u16()),
        description: Some(detail).filter(|detail| !detail.is_empty()),
    })
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod http_tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// What `read_bounded` makes of an answer of `size` bytes.
    async fn read_answer_of(size: usize) -> Result<Vec<u8>, String> {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; size]))
            .mount(&server)
            .await;
        let response = reqwest::get(server.uri()).await.unwrap();
        read_bounded(response).await
    }

    #[tokio::test]
    async fn an_answer_is_read_up_to_256_kib_and_no_further() {
        // A Microsoft answer with its JWTs is a few KiB; 256 KiB is read whole.
        assert_eq!(read_answer_of(8 * 1024).await.unwrap().len(), 8 * 1024);
        assert_eq!(read_answer_of(MAX_ANSWER).await.unwrap().len(), 256 * 1024);
        let error = read_answer_of(MAX_ANSWER + 1).await.unwrap_err();
        assert_eq!(error, "the answer is larger than 262144 bytes");
    }

    #[test]
    fn an_error_is_told_with_each_of_its_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            error_chain(&error),
            "error sending request: connection refused"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_with_the_token() {
        // A 307 would send the form, token included, wherever it points.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/revoke"))
            .respond_with(ResponseTemplate::new(307).insert_header("Location", "/elsewhere"))
            .mount(&server)
            .await;
        Mock::given(path("/elsewhere"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let url = url::Url::parse(&format!("{}/revoke", server.uri())).unwrap();
        let failure = revoke(&OAuthHttp::new(), &url, &Secret::new("1//0g-to-revoke"))
            .await
            .unwrap_err();
        match failure {
            OAuthFailure::Provider { error, .. } => {
                assert_eq!(error, "revocation answered HTTP 307")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_revocation_reports_the_providers_words_if_any() {
        let token = Secret::new("1//0g-to-revoke");
        for (answer, expected) in [
            (ResponseTemplate::new(400), None),
            (
                ResponseTemplate::new(400).set_body_json(serde_json::json!({
                    "error": "invalid_token",
                    "error_description": "Token expired or revoked",
                })),
                Some("invalid_token: Token expired or revoked"),
            ),
            // A page that is not JSON: its text, without control characters.
            (
                ResponseTemplate::new(400).set_body_string("Bad Request\r\n\tno token\n"),
                Some("Bad Requestno token"),
            ),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(answer)
                .mount(&server)
                .await;
            let url = url::Url::parse(&format!("{}/revoke", server.uri())).unwrap();
            let failure = revoke(&OAuthHttp::new(), &url, &token).await.unwrap_err();
            assert_eq!(
                failure,
                OAuthFailure::Provider {
                    error: "revocation answered HTTP 400".to_owned(),
                    description: expected.map(str::to_owned),
                }
            );
        }
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    fn kind(body: serde_json::Value) -> &'static str {
        let body: ProviderErrorBody = serde_json::from_value(body).unwrap();
        match classify_error_body(&body) {
            OAuthFailure::ConsentRequired(_) => "consent",
            OAuthFailure::InteractionRequired(_) => "interaction",
            OAuthFailure::Revoked(_) => "revoked",
            OAuthFailure::Transient(_) => "transient",
            OAuthFailure::Provider { .. } => "provider",
            OAuthFailure::Malformed(_) => "malformed",
        }
    }

    /// Entra names a refused refresh's cause by its `error_codes` or by its `suberror`
    /// (either may come alone): AADSTS65001 / `consent_required` wants consent;
    /// AADSTS50076, 50079, 70043, 50158 / `basic_action` want the person to sign in.
    #[test]
    fn a_refused_grant_is_told_by_its_code_or_its_suberror_alone() {
        use serde_json::json;
        assert_eq!(
            kind(json!({"error": "invalid_grant", "error_codes": [65001]})),
            "consent"
        );
        assert_eq!(
            kind(json!({"error": "invalid_grant", "suberror": "consent_required"})),
            "consent"
        );
        for code in [50076, 50079, 70043, 50158] {
            assert_eq!(
                kind(json!({"error": "invalid_grant", "error_codes": [code]})),
                "interaction",
                "AADSTS{code}"
            );
        }
        assert_eq!(
            kind(json!({"error": "invalid_grant", "suberror": "basic_action"})),
            "interaction"
        );
        assert_eq!(
            kind(json!({"error": "invalid_grant", "error_codes": [70000]})),
            "revoked"
        );
        // Interaction that is consent is asked as consent.
        assert_eq!(
            kind(json!({"error": "interaction_required", "error_codes": [65001]})),
            "consent"
        );
        for (error, expected) in [
            ("interaction_required", "interaction"),
            ("login_required", "interaction"),
            ("consent_required", "consent"),
            ("temporarily_unavailable", "transient"),
            ("server_error", "transient"),
            ("invalid_scope", "provider"),
        ] {
            assert_eq!(kind(json!({"error": error})), expected, "{error}");
        }
    }

    #[test]
    fn issued_tokens_show_no_token_in_debug() {
        let issued = IssuedTokens {
            access_token: Secret::new("eyJ0eXAi-access"),
            refresh_token: Some(Secret::new("M.C105_BAY-refresh")),
            expires_in: Some(Duration::from_secs(3599)),
            scopes: vec!["https://outlook.office.com/SMTP.Send".to_owned()],
            id_token: Some("eyJ0eXAi-id".to_owned()),
        };
        assert_eq!(
            format!("{issued:?}"),
            "IssuedTokens { refresh_token: Some(\"<redacted>\"), expires_in: Some(3599s), scopes: [\"https://outlook.office.com/SMTP.Send\"], .. }"
        );
        let field = IdTokenField {
            id_token: Some("eyJ0eXAi-id".to_owned()),
        };
        assert_eq!(
            format!("{field:?}"),
            "IdTokenField { id_token: Some(\"<redacted>\") }"
        );
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    proptest::proptest! {
        /// No secret of the request survives in a body that echoes it, sent as it was or
        /// form-encoded.
        #[test]
        fn an_echoed_secret_never_survives(
            secret in "[A-Za-z0-9+/=._~-]{8,40}",
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
        ) {
            let form = format!("grant_type=refresh_token&refresh_token={}", url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>());
            let secrets = request_secrets(form.as_bytes());
            proptest::prop_assert_eq!(&secrets, &vec![secret.clone()]);
            for echoed in [format!("{before}{secret}{after}"), format!("{before}{form}{after}")] {
                let redacted = String::from_utf8(redact(echoed.as_bytes(), &secrets)).unwrap();
                proptest::prop_assert!(!redacted.contains(&secret), "{}", redacted);
            }
        }
    }

    #[test]
    fn secrets_go_only_over_https_or_to_loopback() {
        assert!(check_destination("https", "login.microsoftonline.com").is_ok());
        assert!(check_destination("http", "127.0.0.1").is_ok());
        assert!(check_destination("http", "[::1]").is_ok());
        assert!(check_destination("http", "localhost").is_ok());
        assert!(check_destination("http", "[::ffff:127.0.0.1]").is_err());
        assert!(check_destination("http", "login.microsoftonline.com").is_err());
        assert!(check_destination("ftp", "127.0.0.1").is_err());
    }
}
