//! The OAuth authority: codes, tokens, device codes and grants in memory, and the answers of
//! the authorize, token, device and revocation endpoints, in Microsoft's or Google's style.
//!
//! The logic here knows no HTTP: `http.rs` turns requests into calls and the
//! [`JsonReply`]s back into responses, so every rule is testable as a function.
//!
//! What the sandbox checks, as the providers do: PKCE S256 (`code_verifier` against the
//! `code_challenge`), the redirect URI (a loopback URI at authorization, the same one at
//! redemption), one redemption per code, the client id of codes and refresh tokens, a
//! client secret where Google requires one, no app-only scope in a Microsoft sign-in
//! (`SMTP.SendAsApp` is not delegated), no Gmail scopes in Google's device flow. Microsoft
//! style, as Entra: the authorize request's scopes are the consent and may span resources;
//! a code redemption or refresh names one resource's scopes (`AADSTS28000` otherwise) and
//! gets an access token for those; a refresh asking scopes outside the consent (the
//! person's for the client, gathered over all their sign-ins, or an administrator's
//! through [`Authority::consent_scopes`]) is
//! `invalid_grant` `AADSTS65001` `consent_required`. For a
//! registered client ([`ClientRegistration`], `registration.rs`), the provider's app
//! registration rules as well: Entra's redirect URI matching (`AADSTS50011`), tenant
//! endpoints for single-tenant apps (`AADSTS50194`), no secret from a public client
//! (`AADSTS700025`), Google's Desktop app clients and their secret. What it does not: an
//! unregistered client id passes with any loopback redirect, tenant and non-empty secret;
//! no `slow_down` for fast polling, no signatures.
//!
//! The state, the test hooks and the shared helpers are here; each endpoint is a module:
//! `authorize.rs`, `token.rs` (codes, refresh tokens, client credentials), `device.rs`,
//! `revoke.rs`, and `issue.rs` (access, refresh and id_tokens).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Endpoints, SandboxConfig};

mod app_only;
mod authorize;
mod device;
mod issue;
mod registration;
mod revoke;
mod token;

pub(crate) use app_only::{
    GRAPH_MAIL_READ_WRITE_ROLE, GRAPH_MAIL_SEND_ROLE, SMTP_SEND_AS_APP_ROLE,
};
pub(crate) use registration::Presented;
pub use registration::{Audience, ClientRegistration};

use device::normalize_user_code;

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
    /// The scopes granted: a delegated token's permissions, or an app-only token's one
    /// `/.default` scope.
    pub scopes: Vec<String>,
    /// An app-only token's application permissions (its `roles` claim: `Mail.Send` and
    /// `Mail.ReadWrite` for Graph, `SMTP.SendAsApp` for Exchange Online); empty for a
    /// delegated token and a Google service account's.
    pub roles: Vec<String>,
}

impl TokenInfo {
    /// True when one of `scopes` was granted (compared without case, as Entra does).
    pub fn has_any_scope(&self, scopes: &[&str]) -> bool {
        self.scopes
            .iter()
            .any(|granted| scopes.iter().any(|s| s.eq_ignore_ascii_case(granted)))
    }

    /// True when the application permission `role` was granted (an app-only token).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|granted| granted == role)
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
    /// (lower-cased mailbox, lower-cased person): the person may send as the mailbox (an
    /// Exchange shared mailbox's FullAccess + SendAs).
    send_as: HashSet<(String, String)>,
    /// Scopes the person leaves unticked on Google's consent screen when the sign-in is
    /// approved automatically.
    google_unticked: Vec<String>,
    /// Lower-cased address → the `preferred_username` its id_tokens carry, when that is
    /// not the address (Entra: it may be another address, a phone number or a name).
    usernames: HashMap<String, String>,
    /// Lower-cased address → scopes consented for the person beyond their sign-in's (an
    /// administrator's consent for the organization, Microsoft style).
    consented: HashMap<String, Vec<String>>,
    /// (client id, lower-cased address) → the scopes the person consented to for the
    /// client in any sign-in (Microsoft style). Entra records a person's consent per
    /// client, and it only grows: a refresh token, bound to the person and the client, gets
    /// tokens for every resource consented so far, whichever sign-in issued it
    /// (MicrosoftDocs/entra-docs `docs/identity-platform/refresh-tokens.md`: "bound to a
    /// combination of user and client, but aren't tied to a resource"; incremental consent
    /// in `docs/identity-platform/permissions-consent-overview.md`).
    microsoft_consents: HashMap<(String, String), Vec<String>>,
    failures: VecDeque<JsonReply>,
    stats: AuthorityStats,
    /// Registered clients by (style, client id).
    clients: HashMap<(Style, String), ClientRegistration>,
    /// Microsoft-style app-only credentials by client id (beside its public-client
    /// registration).
    app_credentials: HashMap<String, app_only::AppCredentials>,
    /// Google service accounts' certificates (DER) by lower-cased account address.
    service_accounts: HashMap<String, Vec<u8>>,
    /// Client id → the lower-cased mailboxes of the app's Exchange management scope (RBAC
    /// for Applications) for Graph's application permissions; an app not here is
    /// unscoped and may use any mailbox.
    app_graph_mailboxes: HashMap<String, HashSet<String>>,
    /// (client id, lower-cased mailbox): the app's Exchange service principal has
    /// FullAccess on the mailbox, so its `SMTP.SendAsApp` token authenticates as it.
    app_smtp_mailboxes: HashSet<(String, String)>,
}

impl State {
    fn refresh_expiry(&self) -> Option<SystemTime> {
        self.refresh_token_lifetime
            .map(|lifetime| SystemTime::now() + lifetime)
    }

    /// Adds the scopes of an approved Microsoft-style sign-in to the person's consent for
    /// the client (see `microsoft_consents`).
    fn record_microsoft_consent(&mut self, client_id: &str, address: &str, scopes: &[String]) {
        let consent = self
            .microsoft_consents
            .entry((client_id.to_owned(), address.to_lowercase()))
            .or_default();
        for scope in scopes {
            if !consent.contains(scope) {
                consent.push(scope.clone());
            }
        }
    }

    /// The scopes the person consented to for the client in earlier sign-ins.
    fn microsoft_consent_of(&self, client_id: &str, address: &str) -> &[String] {
        self.microsoft_consents
            .get(&(client_id.to_owned(), address.to_lowercase()))
            .map(Vec::as_slice)
            .unwrap_or_default()
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
/// The Microsoft Graph delegated permission to send as the signed-in user (the full URI,
/// or the short form Entra ID reads as Graph's).
pub(crate) const GRAPH_MAIL_SEND_SCOPES: &[&str] =
    &["https://graph.microsoft.com/Mail.Send", "Mail.Send"];
/// Graph's delegated permission to send as another mailbox the user has rights on.
pub(crate) const GRAPH_MAIL_SEND_SHARED_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/Mail.Send.Shared",
    "Mail.Send.Shared",
];
/// Graph's delegated permission to create drafts and add attachments in the user's own
/// mailbox.
pub(crate) const GRAPH_MAIL_READ_WRITE_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/Mail.ReadWrite",
    "Mail.ReadWrite",
];
/// Graph's delegated permission to create drafts and add attachments in another mailbox
/// the user has rights on (and in their own).
pub(crate) const GRAPH_MAIL_READ_WRITE_SHARED_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/Mail.ReadWrite.Shared",
    "Mail.ReadWrite.Shared",
];
/// Graph's app-only scope (client credentials): application permissions.
pub(crate) const GRAPH_APP_SCOPE: &str = "https://graph.microsoft.com/.default";
const OPENID_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The resource a Microsoft scope belongs to: the URI before its last path segment
/// (`https://graph.microsoft.com` of `https://graph.microsoft.com/Mail.Send`), Microsoft
/// Graph for a bare permission (`Mail.Send`: Entra reads a scope without a resource as
/// Graph's), none for the OpenID Connect scopes (MicrosoftDocs/entra-docs
/// `docs/identity-platform/scopes-oidc.md`).
pub(crate) fn microsoft_resource_of(scope: &str) -> Option<String> {
    if OPENID_SCOPES.contains(&scope) {
        return None;
    }
    match scope.rsplit_once('/') {
        Some((resource, _)) if scope.contains("://") => {
            Some(resource.trim_end_matches('/').to_ascii_lowercase())
        }
        _ => Some("https://graph.microsoft.com".to_owned()),
    }
}

/// The distinct resources `scopes` name.
pub(crate) fn microsoft_resources(scopes: &[String]) -> Vec<String> {
    let mut resources: Vec<String> = scopes
        .iter()
        .filter_map(|scope| microsoft_resource_of(scope))
        .collect();
    resources.sort();
    resources.dedup();
    resources
}

/// Entra's answer to a token request whose `scope` spans resources
/// (`AADSTS28000`, MicrosoftDocs/entra-docs `docs/identity-platform/reference-error-codes.md`).
pub(crate) fn more_than_one_resource(scopes: &[String]) -> JsonReply {
    JsonReply {
        status: 400,
        body: microsoft_error_body(
            "invalid_scope",
            28000,
            &format!(
                "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {} is not valid.",
                scopes.join(" ")
            ),
        ),
    }
}

/// Entra's answer to a refresh for scopes the user or administrator never consented to:
/// `invalid_grant`, `AADSTS65001`, suberror `consent_required`.
pub(crate) fn consent_required(client_id: &str) -> JsonReply {
    let mut body = microsoft_error_body(
        "invalid_grant",
        65001,
        &format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' named 'mailroom'. Send an interactive authorization request for this user and resource."
        ),
    );
    body["suberror"] = json!("consent_required");
    JsonReply { status: 400, body }
}

/// A scope of the sign-in itself (OpenID Connect's, and `offline_access`), which Google's
/// consent screen does not let the person untick.
pub(crate) fn is_sign_in_scope(scope: &str) -> bool {
    OPENID_SCOPES.contains(&scope)
        || scope == "https://www.googleapis.com/auth/userinfo.email"
        || scope == "https://www.googleapis.com/auth/userinfo.profile"
}

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
                send_as: HashSet::new(),
                google_unticked: Vec::new(),
                usernames: HashMap::new(),
                consented: HashMap::new(),
                microsoft_consents: HashMap::new(),
                failures: VecDeque::new(),
                stats: AuthorityStats::default(),
                clients: config
                    .clients
                    .iter()
                    .map(|client| ((client.style, client.client_id.clone()), client.clone()))
                    .collect(),
                app_credentials: HashMap::new(),
                service_accounts: HashMap::new(),
                app_graph_mailboxes: HashMap::new(),
                app_smtp_mailboxes: HashSet::new(),
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

    /// Records that `scopes` are consented for `address` beyond what its sign-ins asked (an
    /// administrator's consent for the organization): a Microsoft-style refresh may then
    /// ask for them.
    pub fn consent_scopes(&self, address: &str, scopes: &[&str]) {
        self.lock()
            .consented
            .entry(address.trim().to_lowercase())
            .or_default()
            .extend(scopes.iter().map(|scope| (*scope).to_owned()));
    }

    /// Lets `person` send as `mailbox` (an Exchange shared mailbox with FullAccess and
    /// SendAs granted to `person`): the SMTP server then accepts `person`'s token with
    /// XOAUTH2 `user=mailbox`, as Exchange documents for shared mailboxes.
    pub fn grant_send_as(&self, mailbox: &str, person: &str) {
        self.lock()
            .send_as
            .insert((mailbox.to_lowercase(), person.to_lowercase()));
    }

    /// Whether `person` may send as `mailbox` (their own, or granted).
    pub fn may_send_as(&self, person: &str, mailbox: &str) -> bool {
        person.eq_ignore_ascii_case(mailbox)
            || self
                .lock()
                .send_as
                .contains(&(mailbox.to_lowercase(), person.to_lowercase()))
    }

    /// The `preferred_username` of `address`'s Microsoft-style id_tokens from now on
    /// (Entra documents that it can change and need not be an address); the person's
    /// `oid` stays the same.
    pub fn set_username(&self, address: &str, username: &str) {
        self.lock()
            .usernames
            .insert(address.to_lowercase(), username.to_owned());
    }

    /// From now on, automatic Google-style approvals leave `scopes` unticked (Google's
    /// granular consent): the app is granted the rest, and the token response's `scope`
    /// says so. The consent page (without auto-approval) has a checkbox per scope instead.
    pub fn untick_google_scopes(&self, scopes: &[&str]) {
        self.lock().google_unticked = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    pub(crate) fn google_unticked(&self) -> Vec<String> {
        self.lock().google_unticked.clone()
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
}
