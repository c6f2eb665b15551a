//! The OAuth authority: codes, tokens, device codes and grants in memory, and the answers of
//! the authorize, token, device and revocation endpoints, in Microsoft's or Google's style.
//!
//! The logic here knows no HTTP: `http.rs` turns requests into calls and the
//! [`JsonReply`]s back into responses, so every rule is testable as a function.
//!
//! What the sandbox checks, as the providers do: PKCE S256 (`code_verifier` against the
//! `code_challenge`), the redirect URI (a loopback URI at authorization, the same one at
//! redemption), one redemption per code, the client id of codes and refresh tokens, a
//! client secret where Google requires one, scopes of one resource for Microsoft
//! (`SMTP.SendAsApp` is not delegated), no Gmail scopes in Google's device flow. What it
//! does not: registered clients and secrets (any client id and any non-empty secret
//! pass), `slow_down` for fast polling, signatures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Endpoints, SandboxConfig};

/// Which provider an endpoint imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Microsoft identity platform (Entra ID) and Exchange Online.
    Microsoft,
    /// Google accounts and the Gmail API.
    Google,
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Style::Microsoft => "microsoft",
            Style::Google => "google",
        })
    }
}

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The style of the authority that issued it.
    pub style: Style,
    /// The client it was issued to.
    pub client_id: String,
    /// The signed-in address; `None` for an app-only (client credentials) token.
    pub address: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
}

impl TokenInfo {
    /// True when one of `scopes` was granted.
    pub fn has_any_scope(&self, scopes: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|granted| scopes.contains(&granted.as_str()))
    }
}

/// The state of a bearer token presented to the SMTP or Gmail endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid now.
    Valid(TokenInfo),
    /// Issued here, but past its lifetime.
    Expired(TokenInfo),
    /// Issued here, then revoked.
    Revoked(TokenInfo),
    /// Never issued here.
    Unknown,
}

/// Counts of what the authority did, for tests and the demo's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuthorityStats {
    /// Authorization requests approved (a code issued).
    pub codes_issued: u64,
    /// Codes redeemed for tokens.
    pub codes_redeemed: u64,
    /// Refresh token grants answered with tokens.
    pub refreshes: u64,
    /// Refresh tokens issued in place of a redeemed one (Microsoft style).
    pub refresh_tokens_rotated: u64,
    /// Refresh token grants refused (revoked, expired, unknown).
    pub refreshes_refused: u64,
    /// Client credentials grants answered with tokens.
    pub client_credentials: u64,
    /// Device code polls, answered or pending.
    pub device_polls: u64,
    /// Tokens revoked through the revocation endpoint.
    pub revocations: u64,
    /// Token calls answered with an injected failure.
    pub injected_failures: u64,
}

/// A status and a JSON body, the answer of a JSON endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonReply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl JsonReply {
    fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }
}

/// What the authorize endpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthorizeOutcome {
    /// A 302 to this location (the client's redirect URI with a code or an error).
    Redirect(String),
    /// Ask the person (the consent page).
    Consent(ConsentPage),
    /// The request cannot be redirected (no client id, a bad redirect URI): an error page.
    ErrorPage { status: u16, message: String },
}

/// What the consent page shows and posts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsentPage {
    pub(crate) style: Style,
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) address: Option<String>,
    /// The authorize parameters, posted back as hidden fields.
    pub(crate) params: Vec<(String, String)>,
}

/// The person's answer on the consent page (or the auto-approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A GET: auto-approve or show the page.
    Ask,
    /// Approve as this address.
    Approve(String),
    /// Deny.
    Deny,
}

#[derive(Debug, Clone)]
struct CodeGrant {
    style: Style,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scopes: Vec<String>,
    address: String,
    nonce: Option<String>,
    issue_refresh_token: bool,
    expires_at: SystemTime,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    info: TokenInfo,
    grant: Option<u64>,
    expires_at: SystemTime,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    style: Style,
    client_id: String,
    address: String,
    scopes: Vec<String>,
    grant: u64,
    revoked: bool,
    /// `None`: it does not expire (as long as the sandbox runs).
    expires_at: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(String),
    Declined,
    Redeemed,
}

#[derive(Debug, Clone)]
struct DeviceGrant {
    style: Style,
    client_id: String,
    user_code: String,
    scopes: Vec<String>,
    status: DeviceStatus,
    expires_at: SystemTime,
}

#[derive(Debug)]
struct State {
    auto_approve: bool,
    default_address: Option<String>,
    access_token_lifetime: Duration,
    refresh_token_lifetime: Option<Duration>,
    device_code_lifetime: Duration,
    device_poll_interval_secs: u64,
    tenant_id: String,
    microsoft_issuer: String,
    google_issuer: String,
    microsoft_verification: String,
    google_verification: String,
    next_grant: u64,
    codes: HashMap<String, CodeGrant>,
    redeemed_codes: HashSet<String>,
    access_tokens: HashMap<String, AccessGrant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    devices: HashMap<String, DeviceGrant>,
    /// (client id, lower-cased address) pairs that consented once (Google style): later
    /// exchanges get a refresh token only with `prompt=consent`.
    google_consents: HashSet<(String, String)>,
    failures: VecDeque<JsonReply>,
    stats: AuthorityStats,
}

impl State {
    fn refresh_expiry(&self) -> Option<SystemTime> {
        self.refresh_token_lifetime
            .map(|lifetime| SystemTime::now() + lifetime)
    }
}

/// The OAuth authority of a sandbox; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Authority {
    state: Arc<Mutex<State>>,
}

/// How long an authorization code may wait for its redemption.
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Microsoft's delegated SMTP scope.
pub(crate) const MICROSOFT_SMTP_SCOPE: &str = "https://outlook.office.com/SMTP.Send";
/// Microsoft's app-only scope for Exchange Online.
pub(crate) const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// The Gmail scopes that allow `users.messages.send`.
pub(crate) const GMAIL_SEND_SCOPES: &[&str] = &[
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
];
const OPENID_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

fn random_token(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(data)
}

fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid_text(&bytes)
}

fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Microsoft identity platform error body: `error`, an `AADSTS` description with trace
/// and correlation ids and a timestamp on later lines, `error_codes`, `timestamp`,
/// `trace_id`, `correlation_id`, `error_uri`.
pub fn microsoft_error_body(error: &str, code: u32, text: &str) -> Value {
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace_id = random_uuid();
    let correlation_id = random_uuid();
    json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ).replacen(" Trace ID:", "\r\nTrace ID:", 1)
         .replacen(" Correlation ID:", "\r\nCorrelation ID:", 1)
         .replacen(" Timestamp:", "\r\nTimestamp:", 1),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

/// A Google OAuth error body: `error` and `error_description`.
pub fn google_error_body(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

fn error_reply(style: Style, microsoft: (&str, u32, &str), google: (u16, &str, &str)) -> JsonReply {
    match style {
        Style::Microsoft => JsonReply {
            status: if microsoft.0 == "invalid_client" {
                401
            } else {
                400
            },
            body: microsoft_error_body(microsoft.0, microsoft.1, microsoft.2),
        },
        Style::Google => JsonReply {
            status: google.0,
            body: google_error_body(google.1, google.2),
        },
    }
}

fn split_scopes(text: Option<&String>) -> Vec<String> {
    text.map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

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

/// S256: base64url(SHA-256(verifier)) without padding (RFC 7636).
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn client_secret(
    form: &HashMap<String, String>,
    basic: Option<&(String, String)>,
) -> Option<String> {
    form.get("client_secret")
        .cloned()
        .or_else(|| basic.map(|(_, secret)| secret.clone()))
        .filter(|secret| !secret.is_empty())
}

fn client_id(form: &HashMap<String, String>, basic: Option<&(String, String)>) -> Option<String> {
    form.get("client_id")
        .cloned()
        .or_else(|| basic.map(|(id, _)| id.clone()))
        .filter(|id| !id.is_empty())
}

impl Authority {
    pub(crate) fn new(config: &SandboxConfig, http_base: &str, endpoints: &Endpoints) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                auto_approve: config.auto_approve,
                default_address: config.default_address.clone(),
                access_token_lifetime: config.access_token_lifetime,
                refresh_token_lifetime: config.refresh_token_lifetime,
                device_code_lifetime: config.device_code_lifetime,
                device_poll_interval_secs: config.device_poll_interval_secs,
                tenant_id: config.tenant_id.clone(),
                microsoft_issuer: format!("{http_base}/microsoft/{}/v2.0", config.tenant_id),
                google_issuer: endpoints.google.issuer.clone(),
                microsoft_verification: endpoints.microsoft.device_verification.to_string(),
                google_verification: endpoints.google.device_verification.to_string(),
                next_grant: 1,
                codes: HashMap::new(),
                redeemed_codes: HashSet::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                devices: HashMap::new(),
                google_consents: HashSet::new(),
                failures: VecDeque::new(),
                stats: AuthorityStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("authority lock")
    }

    // ---- Test hooks -------------------------------------------------------------------

    /// Access tokens issued from now on live this long (`Duration::ZERO`: expired at once).
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.lock().access_token_lifetime = lifetime;
    }

    /// Refresh tokens issued from now on expire after this long (`None`: never).
    pub fn set_refresh_token_lifetime(&self, lifetime: Option<Duration>) {
        self.lock().refresh_token_lifetime = lifetime;
    }

    /// Approve authorization requests at once (or show the consent page).
    pub fn set_auto_approve(&self, auto_approve: bool) {
        self.lock().auto_approve = auto_approve;
    }

    /// Who signs in when a request names no one.
    pub fn set_default_address(&self, address: Option<String>) {
        self.lock().default_address = address;
    }

    /// Revokes every refresh token of `address` (any style, case-insensitive), as a password
    /// reset or an administrator's "revoke sessions" does; access tokens stay valid until
    /// they expire. Returns how many were revoked.
    pub fn revoke_refresh_tokens_of(&self, address: &str) -> usize {
        let mut state = self.lock();
        let mut count = 0;
        for grant in state.refresh_tokens.values_mut() {
            if !grant.revoked && grant.address.eq_ignore_ascii_case(address) {
                grant.revoked = true;
                count += 1;
            }
        }
        count
    }

    /// Revokes every access token of `address`: the next SMTP or Gmail use is refused.
    /// Returns how many were revoked.
    pub fn revoke_access_tokens_of(&self, address: &str) -> usize {
        let mut state = self.lock();
        let mut count = 0;
        for grant in state.access_tokens.values_mut() {
            let matches = grant
                .info
                .address
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(address));
            if matches && !grant.revoked {
                grant.revoked = true;
                count += 1;
            }
        }
        count
    }

    /// The next call of a token endpoint (any style, any grant) answers `status` with
    /// `body` instead; calls queue up when this is called several times. Build provider
    /// bodies with [`microsoft_error_body`] or [`google_error_body`].
    pub fn fail_next_token_call(&self, status: u16, body: Value) {
        self.lock().failures.push_back(JsonReply { status, body });
    }

    /// Approves a pending device code as `address`. False when no pending code has this
    /// user code.
    pub fn approve_device_code(&self, user_code: &str, address: &str) -> bool {
        self.decide_device_code(user_code, DeviceStatus::Approved(address.to_owned()))
    }

    /// Declines a pending device code. False when no pending code has this user code.
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.decide_device_code(user_code, DeviceStatus::Declined)
    }

    fn decide_device_code(&self, user_code: &str, status: DeviceStatus) -> bool {
        let wanted = normalize_user_code(user_code);
        let mut state = self.lock();
        match state.devices.values_mut().find(|device| {
            normalize_user_code(&device.user_code) == wanted
                && device.status == DeviceStatus::Pending
        }) {
            Some(device) => {
                device.status = status;
                true
            }
            None => false,
        }
    }

    /// What the authority has done so far.
    pub fn stats(&self) -> AuthorityStats {
        self.lock().stats
    }

    /// Checks a bearer token presented now.
    pub fn check_access_token(&self, token: &str) -> TokenCheck {
        let state = self.lock();
        match state.access_tokens.get(token) {
            None => TokenCheck::Unknown,
            Some(grant) if grant.revoked => TokenCheck::Revoked(grant.info.clone()),
            Some(grant) if grant.expires_at <= SystemTime::now() => {
                TokenCheck::Expired(grant.info.clone())
            }
            Some(grant) => TokenCheck::Valid(grant.info.clone()),
        }
    }

    /// The Microsoft-style issuer with the tenant id filled in.
    pub fn microsoft_issuer(&self) -> String {
        self.lock().microsoft_issuer.clone()
    }

    // ---- Authorize ---------------------------------------------------------------------

    pub(crate) fn authorize(
        &self,
        style: Style,
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
                        "Auto-approve needs a login_hint or a default address.",
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

    // ---- Token -------------------------------------------------------------------------

    /// Answers a token endpoint call (`basic`: HTTP Basic client credentials, if sent).
    pub(crate) fn token(
        &self,
        style: Style,
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
            &grant.scopes,
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
            &grant.scopes,
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

    // ---- Device code -------------------------------------------------------------------

    /// Answers a device authorization request.
    pub(crate) fn device_authorization(
        &self,
        style: Style,
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

    fn redeem_device_code(
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

    // ---- Revocation --------------------------------------------------------------------

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

fn normalize_user_code(code: &str) -> String {
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

/// A stable, address-derived id (Microsoft's `oid`, Google's numeric `sub`).
fn subject_of(address: &str) -> [u8; 32] {
    Sha256::digest(address.to_lowercase().as_bytes()).into()
}

#[allow(clippy::too_many_arguments)]
fn issue(
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
    let mut claims = match style {
        Style::Microsoft => json!({
            "aud": client_id,
            "iss": state.microsoft_issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "name": address.split('@').next().unwrap_or(address),
            "oid": uuid_text(&subject),
            "preferred_username": address,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a+".repeat(30)));
    }

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

    #[test]
    fn microsoft_error_bodies_have_the_documented_fields() {
        let body = microsoft_error_body("invalid_grant", 70008, "Expired.");
        for field in [
            "error",
            "error_description",
            "error_codes",
            "timestamp",
            "trace_id",
            "correlation_id",
            "error_uri",
        ] {
            assert!(body.get(field).is_some(), "{field} missing in {body}");
        }
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS70008: Expired.\r\nTrace ID: "));
        assert_eq!(body["error_codes"], json!([70008]));
    }

    #[test]
    fn user_codes_compare_without_dashes_or_case() {
        assert_eq!(normalize_user_code("abc-DEF-ghj"), "ABCDEFGHJ");
        let code = random_user_code(9);
        assert_eq!(code.len(), 9);
    }
}
