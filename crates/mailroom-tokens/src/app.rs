//! OAuth app registrations: one per provider, with the real endpoints by default and
//! every endpoint overridable (sovereign clouds, identity proxies, tests).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mailroom_crypto::{EncryptionKey, KeyRing, store};
use mailroom_model::{Provider, Remedy, Secret, ValidationError, validate};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryOrder, Set};
use url::Url;

use crate::entity::oauth_app;
use crate::jwt::{AppCertificate, ServiceAccountKey};
use crate::{Error, Result};

/// The tenant of a Microsoft registration stored before a tenant was required: work and
/// school accounts of any organization (which needs a multi-tenant app registration).
pub const DEFAULT_MICROSOFT_TENANT: &str = "organizations";

/// The Microsoft redirect URI unless one is set: what the Entra portal accepts under
/// "Mobile and desktop applications" (`http://127.0.0.1` needs a manifest edit, `[::1]`
/// is not supported). Entra ignores the port of a loopback redirect URI and matches the
/// host and path exactly; a URI without a path is used as `/`
/// (MicrosoftDocs/entra-docs `docs/identity-platform/reply-url.md`), so a sign-in
/// sends `http://localhost:PORT/`.
pub const DEFAULT_MICROSOFT_REDIRECT_URI: &str = "http://localhost";

/// The Google redirect URI unless one is set: Google's "OAuth 2.0 for iOS & Desktop Apps"
/// (https://developers.google.com/identity/protocols/oauth2/native-app#redirect-uri_loopback)
/// recommends the loopback IP address `http://127.0.0.1:PORT`, which a Desktop app client
/// accepts on any port without registration.
pub const DEFAULT_GOOGLE_REDIRECT_URI: &str = "http://127.0.0.1";

/// Delegated scopes for Microsoft 365 SMTP, plus OpenID scopes for the signed-in address.
pub const MICROSOFT_SCOPES: &[&str] = &[
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
    "openid",
    "profile",
    "email",
];

/// The Gmail send scope, plus OpenID scopes for the signed-in address.
pub const GOOGLE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/gmail.send",
    "openid",
    "email",
];

/// The default Gmail API base URL.
pub const GMAIL_API_URL: &str = "https://gmail.googleapis.com";

/// A Microsoft cloud: the global service or a national cloud, each with its own login
/// and Microsoft Graph hosts (MicrosoftDocs/entra-docs
/// `docs/identity-platform/authentication-national-cloud.md`; microsoft-graph-docs
/// `concepts/deployments.md`). It sets the default authorize, token and device endpoints,
/// the id_token issuer and the Graph base URL and scope host; each stays overridable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MicrosoftCloud {
    /// The global service: `login.microsoftonline.com`, `graph.microsoft.com`.
    #[default]
    Global,
    /// US Government L4 (GCC High): `login.microsoftonline.us`, `graph.microsoft.us`.
    #[serde(rename = "usgov")]
    UsGov,
    /// US Government L5 (DoD): `login.microsoftonline.us`, `dod-graph.microsoft.us`.
    #[serde(rename = "usgov-dod")]
    UsGovDod,
    /// Microsoft Azure operated by 21Vianet: `login.chinacloudapi.cn`,
    /// `microsoftgraph.chinacloudapi.cn`.
    China,
}

impl MicrosoftCloud {
    /// Every cloud, in the order they are listed to a person.
    pub const ALL: [MicrosoftCloud; 4] = [
        MicrosoftCloud::Global,
        MicrosoftCloud::UsGov,
        MicrosoftCloud::UsGovDod,
        MicrosoftCloud::China,
    ];

    /// Its stable name: `global`, `usgov`, `usgov-dod`, `china`.
    pub fn as_str(self) -> &'static str {
        match self {
            MicrosoftCloud::Global => "global",
            MicrosoftCloud::UsGov => "usgov",
            MicrosoftCloud::UsGovDod => "usgov-dod",
            MicrosoftCloud::China => "china",
        }
    }

    /// The Microsoft Entra login host of the cloud.
    pub fn login_host(self) -> &'static str {
        match self {
            MicrosoftCloud::Global => "login.microsoftonline.com",
            MicrosoftCloud::UsGov | MicrosoftCloud::UsGovDod => "login.microsoftonline.us",
            MicrosoftCloud::China => "login.chinacloudapi.cn",
        }
    }

    /// The Microsoft Graph base URL of the cloud, which is also the resource URI its Graph
    /// scopes are written with (`https://graph.microsoft.us/Mail.Send`).
    pub fn graph_url(self) -> &'static str {
        match self {
            MicrosoftCloud::Global => "https://graph.microsoft.com",
            MicrosoftCloud::UsGov => "https://graph.microsoft.us",
            MicrosoftCloud::UsGovDod => "https://dod-graph.microsoft.us",
            MicrosoftCloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

impl std::fmt::Display for MicrosoftCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MicrosoftCloud {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, ValidationError> {
        let text = text.trim();
        MicrosoftCloud::ALL
            .into_iter()
            .find(|cloud| cloud.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                ValidationError::new(
                    "cloud",
                    format!("`{text}` is not a Microsoft cloud"),
                    "use global, usgov (GCC High), usgov-dod (DoD) or china",
                )
            })
    }
}

/// An app's own credential, for app-only tokens (no person, no refresh token): a
/// Microsoft app's client secret or certificate (the client credentials grant), or a
/// Google service account's key (the JWT bearer grant with domain-wide delegation).
/// Stored sealed beside the delegated sign-in's registration; `Debug` shows no secret.
#[derive(Clone)]
pub enum AppCredential {
    /// A Microsoft client secret (its value, not its id).
    ClientSecret(Secret),
    /// A Microsoft certificate credential: the certificate uploaded to the app
    /// registration and its private key.
    Certificate(Arc<AppCertificate>),
    /// A Google service account key (the JSON key file).
    ServiceAccount(Arc<ServiceAccountKey>),
}

impl AppCredential {
    /// Its kind as stored and shown: `client-secret`, `certificate`, `service-account`.
    pub fn kind(&self) -> &'static str {
        match self {
            AppCredential::ClientSecret(_) => "client-secret",
            AppCredential::Certificate(_) => "certificate",
            AppCredential::ServiceAccount(_) => "service-account",
        }
    }

    /// The provider whose grant it serves.
    pub fn provider(&self) -> Provider {
        match self {
            AppCredential::ServiceAccount(_) => Provider::Google,
            _ => Provider::Microsoft,
        }
    }

    /// What a person is shown: the kind and public facts (a certificate's thumbprint and
    /// expiry, a service account's address), never a secret.
    pub fn describe(&self) -> String {
        match self {
            AppCredential::ClientSecret(_) => "client secret".to_owned(),
            AppCredential::Certificate(certificate) => format!(
                "certificate x5t#S256 {}, expires {}",
                certificate.thumbprint_sha256(),
                certificate.not_after().format("%Y-%m-%d %H:%M UTC")
            ),
            AppCredential::ServiceAccount(key) => format!(
                "service account {}{}",
                key.client_email(),
                key.client_id()
                    .map(|id| format!(" (client id {id})"))
                    .unwrap_or_default()
            ),
        }
    }

    /// When it stops working, where that is known (a certificate's `notAfter`; Entra does
    /// not tell a client when its secret expires, and service account keys need not).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            AppCredential::Certificate(certificate) => Some(certificate.not_after()),
            _ => None,
        }
    }

    /// The text sealed into the database, which [`AppCredential::from_stored`] reads back.
    fn stored_text(&self) -> Secret {
        match self {
            AppCredential::ClientSecret(secret) => secret.clone(),
            AppCredential::Certificate(certificate) => certificate.to_pem(),
            AppCredential::ServiceAccount(key) => key.key_file().clone(),
        }
    }

    fn from_stored(kind: &str, text: &str) -> Result<Self> {
        let unreadable = |_| Error::CorruptRow(format!("{kind} of an app registration"));
        Ok(match kind {
            "client-secret" => AppCredential::ClientSecret(Secret::new(text)),
            "certificate" => AppCredential::Certificate(Arc::new(
                AppCertificate::from_pem(text).map_err(unreadable)?,
            )),
            "service-account" => AppCredential::ServiceAccount(Arc::new(
                ServiceAccountKey::from_json(text).map_err(unreadable)?,
            )),
            other => {
                return Err(Error::CorruptRow(format!(
                    "app credential kind `{other}` of an app registration"
                )));
            }
        })
    }
}

impl PartialEq for AppCredential {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.stored_text().expose() == other.stored_text().expose()
    }
}

impl Eq for AppCredential {}

impl std::fmt::Debug for AppCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppCredential::ClientSecret(_) => f.write_str("ClientSecret(<redacted>)"),
            AppCredential::Certificate(certificate) => {
                f.debug_tuple("Certificate").field(certificate).finish()
            }
            AppCredential::ServiceAccount(key) => {
                f.debug_tuple("ServiceAccount").field(key).finish()
            }
        }
    }
}

/// An OAuth app registration. `Debug` never shows the client secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRegistration {
    /// Microsoft or Google.
    pub provider: Provider,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret, for confidential clients (Google desktop apps have one).
    pub client_secret: Option<Secret>,
    /// Microsoft's tenant (`organizations`, `common`, `consumers` or a tenant id).
    pub tenant: Option<String>,
    /// Microsoft's cloud (always [`MicrosoftCloud::Global`] for Google): the hosts of the
    /// default endpoints, the issuer and Microsoft Graph.
    pub cloud: MicrosoftCloud,
    /// Overrides of the default endpoints.
    pub overrides: EndpointOverrides,
    /// The app's own credential for accounts that authenticate app-only; `None`: only
    /// delegated sign-ins.
    pub app_credential: Option<AppCredential>,
}

/// Endpoint overrides; `None` means the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    /// The authorization endpoint.
    pub authorize_url: Option<Url>,
    /// The token endpoint.
    pub token_url: Option<Url>,
    /// The device authorization endpoint.
    pub device_url: Option<Url>,
    /// The revocation endpoint.
    pub revoke_url: Option<Url>,
    /// The id_token issuer expected with overridden endpoints (`{tid}` is replaced by the
    /// token's tenant id).
    pub issuer: Option<String>,
    /// The Gmail API base URL (Google only).
    pub gmail_api_url: Option<Url>,
    /// The Microsoft Graph base URL (Microsoft only); `None`: the cloud's
    /// ([`MicrosoftCloud::graph_url`]). The scopes still name the cloud's Graph host.
    pub graph_api_url: Option<Url>,
    /// The loopback redirect URI registered with the provider, without a port (the
    /// listener's port is always used); `None`: the provider's default
    /// ([`DEFAULT_MICROSOFT_REDIRECT_URI`], [`DEFAULT_GOOGLE_REDIRECT_URI`]). Parse it with
    /// [`parse_redirect_uri`].
    pub redirect_uri: Option<Url>,
}

/// The endpoints in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Authorization endpoint.
    pub authorize: Url,
    /// Token endpoint.
    pub token: Url,
    /// Device authorization endpoint, where the provider has one.
    pub device: Option<Url>,
    /// Revocation endpoint, where the provider has one.
    pub revoke: Option<Url>,
}

fn fixed_url(text: &str) -> Url {
    Url::parse(text).expect("built-in endpoint URLs parse")
}

impl AppRegistration {
    /// The tenant used in endpoints and as part of the token key (`""` for Google).
    pub fn tenant(&self) -> &str {
        match self.provider {
            Provider::Microsoft => self.tenant.as_deref().unwrap_or(DEFAULT_MICROSOFT_TENANT),
            _ => "",
        }
    }

    /// The scopes a sign-in asks for.
    pub fn scopes(&self) -> &'static [&'static str] {
        match self.provider {
            Provider::Google => GOOGLE_SCOPES,
            _ => MICROSOFT_SCOPES,
        }
    }

    /// The scope a sign-in must be granted for sending, where the provider lets the person
    /// refuse one scope and grant the others (Google's granular consent). Microsoft's
    /// consent is for the request as a whole: `None`.
    pub fn send_scope(&self) -> Option<&'static str> {
        match self.provider {
            Provider::Google => Some(GOOGLE_SCOPES[0]),
            _ => None,
        }
    }

    /// The endpoints in effect: the overrides, else the provider's real ones.
    pub fn endpoints(&self) -> Endpoints {
        let o = &self.overrides;
        match self.provider {
            Provider::Google => Endpoints {
                authorize: o
                    .authorize_url
                    .clone()
                    .unwrap_or_else(|| fixed_url("https://accounts.google.com/o/oauth2/v2/auth")),
                token: o
                    .token_url
                    .clone()
                    .unwrap_or_else(|| fixed_url("https://oauth2.googleapis.com/token")),
                device: Some(
                    o.device_url
                        .clone()
                        .unwrap_or_else(|| fixed_url("https://oauth2.googleapis.com/device/code")),
                ),
                revoke: Some(
                    o.revoke_url
                        .clone()
                        .unwrap_or_else(|| fixed_url("https://oauth2.googleapis.com/revoke")),
                ),
            },
            _ => {
                let base = format!(
                    "https://{}/{}/oauth2/v2.0",
                    self.cloud.login_host(),
                    self.tenant()
                );
                Endpoints {
                    authorize: o
                        .authorize_url
                        .clone()
                        .unwrap_or_else(|| fixed_url(&format!("{base}/authorize"))),
                    token: o
                        .token_url
                        .clone()
                        .unwrap_or_else(|| fixed_url(&format!("{base}/token"))),
                    device: Some(
                        o.device_url
                            .clone()
                            .unwrap_or_else(|| fixed_url(&format!("{base}/devicecode"))),
                    ),
                    // Microsoft has no OAuth revocation endpoint for these tokens.
                    revoke: o.revoke_url.clone(),
                }
            }
        }
    }

    /// The issuers an id_token of tenant `tid` may carry.
    pub fn expected_issuers(&self, tid: Option<&str>) -> Vec<String> {
        let tid = tid.unwrap_or("{tid}");
        if let Some(issuer) = &self.overrides.issuer {
            return vec![issuer.replace("{tid}", tid)];
        }
        match self.provider {
            Provider::Google => vec![
                "https://accounts.google.com".to_owned(),
                "accounts.google.com".to_owned(),
            ],
            _ => vec![format!("https://{}/{tid}/v2.0", self.cloud.login_host())],
        }
    }

    /// The loopback redirect URI in effect, without a port.
    pub fn redirect_uri(&self) -> Url {
        self.overrides.redirect_uri.clone().unwrap_or_else(|| {
            fixed_url(match self.provider {
                Provider::Google => DEFAULT_GOOGLE_REDIRECT_URI,
                _ => DEFAULT_MICROSOFT_REDIRECT_URI,
            })
        })
    }

    /// The redirect URI a sign-in sends when its listener has `port`.
    pub fn redirect_uri_with_port(&self, port: u16) -> String {
        let mut url = self.redirect_uri();
        // A loopback http URL always takes a port.
        let _ = url.set_port(Some(port));
        url.to_string()
    }

    /// The redirect URI as it is registered with the provider (no port; no `/` when it
    /// has no path), e.g. `http://localhost`.
    pub fn redirect_uri_to_register(&self) -> String {
        registration_form(&self.redirect_uri())
    }

    /// The client secret sent to the token endpoint. Never Microsoft's: a delegated
    /// sign-in is a public client, and Entra refuses a secret from one (`AADSTS700025`);
    /// a secret stored by an older version is ignored. Google's desktop clients need
    /// theirs.
    pub fn client_secret_to_send(&self) -> Option<&Secret> {
        match self.provider {
            Provider::Microsoft => None,
            _ => self.client_secret.as_ref(),
        }
    }

    /// The Gmail API base URL in effect.
    pub fn gmail_api_url(&self) -> Url {
        self.overrides
            .gmail_api_url
            .clone()
            .unwrap_or_else(|| fixed_url(GMAIL_API_URL))
    }

    /// The Microsoft Graph base URL in effect: the override, else the cloud's.
    pub fn graph_api_url(&self) -> Url {
        self.overrides
            .graph_api_url
            .clone()
            .unwrap_or_else(|| fixed_url(self.cloud.graph_url()))
    }
}

/// Parses an endpoint URL: `https://` anywhere, `http://` only to a loopback address.
pub fn parse_endpoint_url(field: &'static str, text: &str) -> Result<Url, ValidationError> {
    validate::reject_control_characters(field, text)?;
    let url = Url::parse(text.trim()).map_err(|error| {
        ValidationError::new(
            field,
            format!("`{text}` is not a URL ({error})"),
            "give a full URL such as https://login.example.com/oauth2/token",
        )
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if url.host_str().is_some_and(validate::is_loopback_host) => Ok(url),
        "http" => Err(ValidationError::new(
            field,
            format!("`{text}` uses plain http to a non-loopback host"),
            "use https:// (plain http is accepted only for 127.0.0.1, ::1 or localhost)",
        )),
        other => Err(ValidationError::new(
            field,
            format!("`{text}` has the scheme `{other}`"),
            "use an https:// URL",
        )),
    }
}

/// `url` as a person registers it: no port, and no `/` when there is no path.
fn registration_form(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_port(None);
    let text = url.to_string();
    match text.strip_suffix('/') {
        Some(bare) if url.path() == "/" && url.query().is_none() => bare.to_owned(),
        _ => text,
    }
}

/// Parses a loopback redirect URI for `provider`'s app: `http` to `localhost`,
/// `127.0.0.1` or `[::1]` (not for Microsoft, which does not support it), with or without
/// a port, which is dropped: the sign-in always uses its listener's port.
pub fn parse_redirect_uri(provider: Provider, text: &str) -> Result<Url, ValidationError> {
    const FIELD: &str = "redirect uri";
    validate::reject_control_characters(FIELD, text)?;
    let example = match provider {
        Provider::Google => DEFAULT_GOOGLE_REDIRECT_URI,
        _ => DEFAULT_MICROSOFT_REDIRECT_URI,
    };
    let mut url = Url::parse(text.trim()).map_err(|error| {
        ValidationError::new(
            FIELD,
            format!("`{text}` is not a URL ({error})"),
            format!("give a loopback URI such as {example}"),
        )
    })?;
    if url.scheme() != "http" {
        return Err(ValidationError::new(
            FIELD,
            format!("`{text}` is not an http:// URI"),
            format!(
                "mailroom receives the sign-in on a plain http listener on this machine; give a loopback URI such as {example}"
            ),
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => "localhost",
        Some(url::Host::Ipv4(ip)) if ip == std::net::Ipv4Addr::LOCALHOST => "127.0.0.1",
        Some(url::Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST => "[::1]",
        _ => {
            return Err(ValidationError::new(
                FIELD,
                format!("`{text}` is not a loopback URI"),
                format!(
                    "the sign-in's redirect goes to a listener on this machine: use localhost, 127.0.0.1 or [::1] as the host, e.g. {example}"
                ),
            ));
        }
    };
    if host == "[::1]" && provider == Provider::Microsoft {
        return Err(ValidationError::new(
            FIELD,
            format!(
                "`{text}` uses the IPv6 loopback address, which Entra ID does not support for redirect URIs"
            ),
            "use http://localhost (what the portal accepts) or http://127.0.0.1 (added through the app's manifest)",
        ));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ValidationError::new(
            FIELD,
            format!("`{text}` carries a user, a query or a fragment"),
            format!("give the scheme, host and path only, e.g. {example}"),
        ));
    }
    let _ = url.set_port(None);
    Ok(url)
}

/// Refuses a client secret for `provider`'s delegated sign-in: Microsoft's runs as a
/// public client, and Entra refuses a secret from one (`AADSTS700025`, MicrosoftDocs/
/// entra-docs `docs/identity-platform/reference-error-codes.md`). Google's Desktop app
/// clients need theirs.
pub fn check_client_secret_allowed(provider: Provider) -> Result<(), ValidationError> {
    if provider == Provider::Microsoft {
        return Err(ValidationError::new(
            "client secret",
            "is not used by a Microsoft delegated sign-in: it runs as a public client, and Entra ID refuses a secret from one (AADSTS700025)",
            "leave the secret out and turn on \"Allow public client flows\" in the app registration (Authentication); app-only credentials (client credentials) are configured separately",
        ));
    }
    Ok(())
}

/// A change to an app registration; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AppChange {
    /// A new client id (required when the app is registered the first time).
    pub client_id: Option<String>,
    /// `Some(Some(s))` sets the secret, `Some(None)` removes it.
    pub client_secret: Option<Option<Secret>>,
    /// A new Microsoft tenant.
    pub tenant: Option<String>,
    /// A Microsoft cloud (Microsoft only): the hosts of the default endpoints and of
    /// Microsoft Graph; endpoint overrides still win.
    pub cloud: Option<MicrosoftCloud>,
    /// Endpoint overrides to set (`graph_api_url` is Microsoft's, `gmail_api_url`
    /// Google's).
    pub overrides: EndpointOverrides,
    /// Drop every endpoint override (back to the real endpoints) before applying others;
    /// the redirect URI stays.
    pub reset_endpoints: bool,
    /// Back to the provider's default redirect URI (before `overrides.redirect_uri`).
    pub reset_redirect_uri: bool,
    /// `Some(Some(c))` sets the app-only credential (replacing any other), `Some(None)`
    /// removes it.
    pub app_credential: Option<Option<AppCredential>>,
}

const SECRET_AAD_PREFIX: &str = "oauth_app";

fn secret_aad(provider: Provider) -> Vec<u8> {
    format!("{SECRET_AAD_PREFIX}:{provider}:client_secret").into_bytes()
}

/// The associated data of an app-only credential: the provider and the kind, so a
/// credential cannot be moved to another registration or read as another kind.
fn credential_aad(provider: Provider, kind: &str) -> Vec<u8> {
    format!("{SECRET_AAD_PREFIX}:{provider}:app_credential:{kind}").into_bytes()
}

fn parse_stored_url(field: &str, text: Option<String>) -> Result<Option<Url>> {
    text.map(|text| {
        Url::parse(&text)
            .map_err(|_| Error::CorruptRow(format!("{field} `{text}` of an app registration")))
    })
    .transpose()
}

/// What a registration's settings seal covers: the provider, and every column that
/// decides where its secrets (refresh tokens, the client secret, access tokens for the
/// Gmail API, the authorization code through the redirect URI) are sent. Someone who can
/// write the database but lacks the key cannot point mailroom at another endpoint: the
/// seal no longer opens and nothing is sent. The redirect URI joins only when it is set,
/// so the seals of rows from before it (null) still open.
fn settings_aad(model: &oauth_app::Model) -> Vec<u8> {
    let field = |value: &Option<String>| match value {
        Some(text) => format!("={text}"),
        None => "~".to_owned(),
    };
    let mut aad = format!(
        "oauth_app:{}:settings\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        model.provider,
        model.client_id,
        field(&model.tenant),
        field(&model.authorize_url),
        field(&model.token_url),
        field(&model.device_url),
        field(&model.revoke_url),
        field(&model.issuer),
        field(&model.gmail_api_url),
    )
    .into_bytes();
    if let Some(redirect_uri) = &model.redirect_uri {
        aad.extend_from_slice(format!("\nredirect_uri={redirect_uri}").as_bytes());
    }
    // Like the redirect URI: named only when set, so older seals still open.
    if let Some(cloud) = &model.cloud {
        aad.extend_from_slice(format!("\ncloud={cloud}").as_bytes());
    }
    if let Some(graph_api_url) = &model.graph_api_url {
        aad.extend_from_slice(format!("\ngraph_api_url={graph_api_url}").as_bytes());
    }
    // Which app-only credential is sent (and so which grant runs) is part of the seal.
    if let Some(kind) = &model.app_credential_kind {
        aad.extend_from_slice(format!("\napp_credential={kind}").as_bytes());
    }
    aad
}

/// Checks the registration's settings seal (`None`: not checked; `Some(required)`: a
/// missing seal is refused when required).
fn check_settings(model: &oauth_app::Model, key: &KeyRing, required: Option<bool>) -> Result<()> {
    let Some(required) = required else {
        return Ok(());
    };
    let provider = model.provider.parse::<Provider>().ok();
    let altered = || Error::SettingsAltered {
        provider: provider.unwrap_or(Provider::Microsoft),
    };
    match &model.settings_seal {
        Some(seal) => match key.open(seal, &settings_aad(model)) {
            Ok(_) => Ok(()),
            Err(mailroom_crypto::Error::CannotOpen) => Err(altered()),
            Err(error) => Err(error.into()),
        },
        None if required => Err(altered()),
        None => Ok(()),
    }
}

fn from_model(
    model: oauth_app::Model,
    key: &KeyRing,
    required: Option<bool>,
) -> Result<AppRegistration> {
    check_settings(&model, key, required)?;
    let provider: Provider = model.provider.parse().map_err(|_| {
        Error::CorruptRow(format!(
            "provider `{}` of an app registration",
            model.provider
        ))
    })?;
    let client_secret = match model.client_secret_sealed {
        Some(sealed) => Some(Secret::new(
            key.open_string(&sealed, &secret_aad(provider))?.as_str(),
        )),
        None => None,
    };
    let app_credential = match (&model.app_credential_kind, &model.app_credential_sealed) {
        (Some(kind), Some(sealed)) => Some(AppCredential::from_stored(
            kind,
            key.open_string(sealed, &credential_aad(provider, kind))?
                .as_str(),
        )?),
        (None, None) => None,
        _ => {
            return Err(Error::CorruptRow(
                "app credential of an app registration (its kind without its value, or the reverse)"
                    .to_owned(),
            ));
        }
    };
    let cloud = match &model.cloud {
        Some(text) => text
            .parse()
            .map_err(|_| Error::CorruptRow(format!("cloud `{text}` of an app registration")))?,
        None => MicrosoftCloud::Global,
    };
    Ok(AppRegistration {
        provider,
        client_id: model.client_id,
        client_secret,
        tenant: model.tenant,
        cloud,
        overrides: EndpointOverrides {
            authorize_url: parse_stored_url("authorize url", model.authorize_url)?,
            token_url: parse_stored_url("token url", model.token_url)?,
            device_url: parse_stored_url("device url", model.device_url)?,
            revoke_url: parse_stored_url("revoke url", model.revoke_url)?,
            issuer: model.issuer,
            gmail_api_url: parse_stored_url("gmail api url", model.gmail_api_url)?,
            graph_api_url: parse_stored_url("graph api url", model.graph_api_url)?,
            redirect_uri: parse_stored_url("redirect uri", model.redirect_uri)?,
        },
        app_credential,
    })
}

/// Checks an app-only credential against the registration it joins (`now`: for a
/// certificate's expiry).
fn check_app_credential(
    app: &AppRegistration,
    credential: &AppCredential,
    now: DateTime<Utc>,
) -> Result<(), ValidationError> {
    if credential.provider() != app.provider {
        let fix = match app.provider {
            Provider::Google => "give Google a service account's JSON key file",
            _ => "give Microsoft a client secret or a certificate with its private key",
        };
        return Err(ValidationError::new(
            "app-only credential",
            format!(
                "a {} is not an app-only credential of {}",
                credential.kind(),
                app.provider
            ),
            fix,
        ));
    }
    match credential {
        AppCredential::ClientSecret(secret) => {
            validate::check_text("client secret", secret.expose())?;
        }
        AppCredential::Certificate(certificate) if certificate.not_after() <= now => {
            return Err(ValidationError::new(
                "certificate",
                format!(
                    "expired on {}; Entra ID refuses the assertions of an expired certificate (AADSTS700027)",
                    certificate.not_after().format("%Y-%m-%d %H:%M UTC")
                ),
                "create a new certificate, upload it to the app registration (Certificates & secrets), and set it with its private key",
            ));
        }
        _ => {}
    }
    // Client credentials need the app's own directory: `organizations` and `common` name
    // none whose application permissions apply (MicrosoftDocs/entra-docs
    // `v2-oauth2-client-creds-grant-flow.md`: "the directory tenant that you plan to
    // operate against").
    if app.provider == Provider::Microsoft
        && matches!(app.tenant(), "organizations" | "common" | "consumers")
    {
        return Err(ValidationError::new(
            "tenant",
            format!(
                "is `{}`, but app-only tokens are issued only by the app's own tenant",
                app.tenant()
            ),
            "set the app's tenant to the directory (tenant) id or a verified domain of the tenant whose mailboxes it sends from",
        )
        .with_remedy(Remedy::SetMicrosoftTenant));
    }
    Ok(())
}

fn check_oauth_provider(provider: Provider) -> Result<(), ValidationError> {
    if provider.uses_oauth() {
        Ok(())
    } else {
        Err(ValidationError::new(
            "provider",
            "password SMTP has no OAuth app",
            "use microsoft or google",
        ))
    }
}

/// App registrations over any sea-orm connection or transaction.
#[derive(Debug)]
pub struct Apps<'a, C> {
    db: &'a C,
    key: &'a KeyRing,
}

impl<'a, C: ConnectionTrait> Apps<'a, C> {
    /// A repository over `db`, sealing client secrets with `key`.
    pub fn new(db: &'a C, key: &'a KeyRing) -> Self {
        Self { db, key }
    }

    async fn seals_required(&self) -> Result<Option<bool>> {
        Ok(Some(store::settings_sealed(self.db, self.key).await?))
    }

    /// The registration of `provider`, if any.
    pub async fn get(&self, provider: Provider) -> Result<Option<AppRegistration>> {
        let required = self.seals_required().await?;
        oauth_app::Entity::find_by_id(provider.as_str().to_owned())
            .one(self.db)
            .await?
            .map(|model| from_model(model, self.key, required))
            .transpose()
    }

    /// The registration of `provider`, or an error saying how to register one.
    pub async fn require(&self, provider: Provider) -> Result<AppRegistration> {
        check_oauth_provider(provider)?;
        self.get(provider)
            .await?
            .ok_or(Error::AppNotConfigured { provider })
    }

    /// Every registration.
    pub async fn list(&self) -> Result<Vec<AppRegistration>> {
        let required = self.seals_required().await?;
        oauth_app::Entity::find()
            .order_by_asc(oauth_app::Column::Provider)
            .all(self.db)
            .await?
            .into_iter()
            .map(|model| from_model(model, self.key, required))
            .collect()
    }

    /// Creates or changes the registration of `provider`.
    pub async fn set(&self, provider: Provider, change: AppChange) -> Result<AppRegistration> {
        check_oauth_provider(provider)?;
        let sealing = store::sealing_key(self.db, self.key).await?;
        let existing = oauth_app::Entity::find_by_id(provider.as_str().to_owned())
            .one(self.db)
            .await?;
        // A Google registration made for a service account alone takes the key file's
        // client id (the one a Workspace administrator authorizes).
        let service_account_client = match &change.app_credential {
            Some(Some(AppCredential::ServiceAccount(key))) => {
                Some(key.client_id().unwrap_or(key.client_email()).to_owned())
            }
            _ => None,
        };
        let mut app = match existing.clone() {
            // Not checked: the change re-seals what it leaves, so an altered registration
            // can be set right.
            Some(model) => from_model(model, self.key, None)?,
            None => AppRegistration {
                provider,
                client_id: change
                    .client_id
                    .clone()
                    .or(service_account_client)
                    .ok_or_else(|| {
                        ValidationError::new(
                            "client id",
                            format!("is missing; {provider} has no app registration yet"),
                            "give the client id of the app registered with the provider",
                        )
                        .with_remedy(Remedy::RegisterApp { provider })
                    })?,
                client_secret: None,
                tenant: None,
                cloud: MicrosoftCloud::Global,
                overrides: EndpointOverrides::default(),
                app_credential: None,
            },
        };
        if let Some(client_id) = change.client_id {
            validate::check_text("client id", &client_id)?;
            app.client_id = client_id.trim().to_owned();
        }
        if let Some(secret) = change.client_secret {
            if let Some(secret) = &secret {
                check_client_secret_allowed(provider)?;
                validate::reject_control_characters("client secret", secret.expose())?;
            }
            app.client_secret = secret;
        }
        if let Some(tenant) = change.tenant {
            if provider != Provider::Microsoft {
                return Err(ValidationError::new(
                    "tenant",
                    "applies to Microsoft only",
                    "leave --tenant out for Google",
                )
                .into());
            }
            validate::check_text("tenant", &tenant)?;
            let tenant = tenant.trim().to_owned();
            if !tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(ValidationError::new(
                    "tenant",
                    format!("`{tenant}` is not a tenant name or id"),
                    "use the directory (tenant) id or a verified domain such as contoso.onmicrosoft.com; organizations or common only for a multi-tenant app registration",
                )
                .into());
            }
            app.tenant = Some(tenant);
        }
        if let Some(cloud) = change.cloud {
            if provider != Provider::Microsoft {
                return Err(ValidationError::new(
                    "cloud",
                    "applies to Microsoft only (Google has one cloud)",
                    "leave --cloud out for Google",
                )
                .into());
            }
            app.cloud = cloud;
        }
        if provider == Provider::Microsoft && app.tenant.is_none() && existing.is_none() {
            // A registration stored before the tenant was required keeps working (as
            // `organizations`); a new one names its tenant: a single-tenant app (the
            // portal's default) must use its tenant's endpoints (AADSTS50194).
            return Err(ValidationError::new(
                "tenant",
                "is missing; a Microsoft app registration needs its tenant",
                "give the directory (tenant) id or a verified domain of a single-tenant app (the portal's default), or organizations / common for a multi-tenant app",
            )
            .with_remedy(Remedy::SetMicrosoftTenant)
            .into());
        }
        if change.reset_endpoints {
            app.overrides = EndpointOverrides {
                redirect_uri: app.overrides.redirect_uri.take(),
                ..EndpointOverrides::default()
            };
        }
        if change.reset_redirect_uri {
            app.overrides.redirect_uri = None;
        }
        let o = change.overrides;
        if o.gmail_api_url.is_some() && provider != Provider::Google {
            return Err(ValidationError::new(
                "gmail api url",
                "applies to Google only",
                "leave --gmail-api-url out for Microsoft",
            )
            .into());
        }
        if o.graph_api_url.is_some() && provider != Provider::Microsoft {
            return Err(ValidationError::new(
                "graph api url",
                "applies to Microsoft only",
                "leave --graph-api-url out for Google",
            )
            .into());
        }
        macro_rules! take {
            ($($field:ident),*) => { $( if o.$field.is_some() { app.overrides.$field = o.$field; } )* };
        }
        if let Some(redirect_uri) = &o.redirect_uri {
            // Checked again: a library caller may build the URL without the parser.
            app.overrides.redirect_uri = Some(parse_redirect_uri(provider, redirect_uri.as_str())?);
        }
        take!(
            authorize_url,
            token_url,
            device_url,
            revoke_url,
            issuer,
            gmail_api_url,
            graph_api_url
        );
        if let Some(issuer) = &app.overrides.issuer {
            validate::check_text("issuer", issuer)?;
        }
        if let Some(credential) = change.app_credential {
            app.app_credential = credential;
        }
        if let Some(credential) = &app.app_credential {
            // Checked on every change: a tenant changed to `organizations` later is
            // refused as much as a credential set under it.
            check_app_credential(&app, credential, Utc::now())?;
        }

        let is_new = existing.is_none();
        let mut active = match existing {
            Some(model) => model.into_active_model(),
            None => oauth_app::ActiveModel {
                provider: Set(provider.as_str().to_owned()),
                ..Default::default()
            },
        };
        active.client_id = Set(app.client_id.clone());
        active.client_secret_sealed = Set(app
            .client_secret
            .as_ref()
            .map(|secret| sealing.seal(secret.expose().as_bytes(), &secret_aad(provider))));
        active.tenant = Set(app.tenant.clone());
        let url_text = |url: &Option<Url>| url.as_ref().map(Url::to_string);
        active.authorize_url = Set(url_text(&app.overrides.authorize_url));
        active.token_url = Set(url_text(&app.overrides.token_url));
        active.device_url = Set(url_text(&app.overrides.device_url));
        active.revoke_url = Set(url_text(&app.overrides.revoke_url));
        active.issuer = Set(app.overrides.issuer.clone());
        active.gmail_api_url = Set(url_text(&app.overrides.gmail_api_url));
        active.redirect_uri = Set(url_text(&app.overrides.redirect_uri));
        // The global cloud is stored as null, as on every row from before clouds.
        let cloud_text =
            (app.cloud != MicrosoftCloud::Global).then(|| app.cloud.as_str().to_owned());
        active.cloud = Set(cloud_text.clone());
        active.graph_api_url = Set(url_text(&app.overrides.graph_api_url));
        let credential_kind = app.app_credential.as_ref().map(|c| c.kind().to_owned());
        active.app_credential_kind = Set(credential_kind.clone());
        active.app_credential_sealed = Set(app.app_credential.as_ref().map(|credential| {
            sealing.seal(
                credential.stored_text().expose().as_bytes(),
                &credential_aad(provider, credential.kind()),
            )
        }));
        active.updated_at = Set(Utc::now());
        let columns = oauth_app::Model {
            provider: provider.as_str().to_owned(),
            client_id: app.client_id.clone(),
            client_secret_sealed: None,
            tenant: app.tenant.clone(),
            authorize_url: url_text(&app.overrides.authorize_url),
            token_url: url_text(&app.overrides.token_url),
            device_url: url_text(&app.overrides.device_url),
            revoke_url: url_text(&app.overrides.revoke_url),
            issuer: app.overrides.issuer.clone(),
            gmail_api_url: url_text(&app.overrides.gmail_api_url),
            redirect_uri: url_text(&app.overrides.redirect_uri),
            cloud: cloud_text,
            graph_api_url: url_text(&app.overrides.graph_api_url),
            app_credential_kind: credential_kind,
            app_credential_sealed: None,
            settings_seal: None,
            updated_at: Utc::now(),
        };
        active.settings_seal = Set(Some(sealing.seal(b"", &settings_aad(&columns))));
        if is_new {
            active.insert(self.db).await?;
        } else {
            active.update(self.db).await?;
        }
        // Cached app tokens were issued to the registration as it was (its client id,
        // tenant, credential): the next send asks for a new one.
        crate::store::delete_app_tokens(self.db, provider).await?;
        Ok(app)
    }

    /// Forgets every stored client secret and app-only credential (a lost key): the
    /// registrations stay and need their secrets again. Returns how many were forgotten.
    pub async fn forget_secrets(&self) -> Result<usize> {
        let mut count = 0;
        for model in oauth_app::Entity::find().all(self.db).await? {
            let secrets = usize::from(model.client_secret_sealed.is_some())
                + usize::from(model.app_credential_sealed.is_some());
            if secrets > 0 {
                // Without the credential its kind leaves the seal too: the seal is made
                // again by the lost key's reset (`seal_all_settings`).
                let mut active = model.into_active_model();
                active.client_secret_sealed = Set(None);
                active.app_credential_kind = Set(None);
                active.app_credential_sealed = Set(None);
                active.update(self.db).await?;
                count += secrets;
            }
        }
        Ok(count)
    }

    /// Re-seals every client secret and settings seal with `new_key` (a key rotation's
    /// commit, inside the caller's transaction). A settings seal that does not open is
    /// [`Error::SettingsAltered`]: the rotation stops rather than seal altered endpoints.
    /// Returns how many client secrets were re-sealed.
    pub async fn reseal(&self, new_key: &EncryptionKey) -> Result<usize> {
        self.reseal_rows(new_key, self.seals_required().await?)
            .await
    }

    /// Seals every registration's settings with `sealing` as they stand (client secrets
    /// re-sealed too): once, for a database from before settings seals, or after a lost
    /// key's reset. Returns how many client secrets were re-sealed.
    pub async fn seal_all_settings(&self, sealing: &EncryptionKey) -> Result<usize> {
        self.reseal_rows(sealing, None).await
    }

    async fn reseal_rows(&self, new_key: &EncryptionKey, check: Option<bool>) -> Result<usize> {
        let mut count = 0;
        for model in oauth_app::Entity::find().all(self.db).await? {
            check_settings(&model, self.key, check)?;
            let provider: Provider = model
                .provider
                .parse()
                .map_err(|_| Error::CorruptRow(format!("provider `{}`", model.provider)))?;
            let secret = match &model.client_secret_sealed {
                Some(sealed) => {
                    count += 1;
                    let plain = self.key.open(sealed, &secret_aad(provider))?;
                    Some(new_key.seal(&plain, &secret_aad(provider)))
                }
                None => None,
            };
            let credential = match (&model.app_credential_kind, &model.app_credential_sealed) {
                (Some(kind), Some(sealed)) => {
                    count += 1;
                    let aad = credential_aad(provider, kind);
                    Some(new_key.seal(&self.key.open(sealed, &aad)?, &aad))
                }
                _ => None,
            };
            let seal = new_key.seal(b"", &settings_aad(&model));
            let mut active = model.into_active_model();
            active.client_secret_sealed = Set(secret);
            active.app_credential_sealed = Set(credential);
            active.settings_seal = Set(Some(seal));
            active.update(self.db).await?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(redirect_uri: Option<&str>) -> oauth_app::Model {
        oauth_app::Model {
            provider: "microsoft".to_owned(),
            client_id: "client".to_owned(),
            client_secret_sealed: None,
            tenant: Some("contoso.onmicrosoft.com".to_owned()),
            authorize_url: None,
            token_url: Some("https://login.example/token".to_owned()),
            device_url: None,
            revoke_url: None,
            issuer: None,
            gmail_api_url: None,
            settings_seal: None,
            redirect_uri: redirect_uri.map(str::to_owned),
            cloud: None,
            graph_api_url: None,
            app_credential_kind: None,
            app_credential_sealed: None,
            updated_at: Utc::now(),
        }
    }

    /// A row from before the redirect URI (null) is sealed over exactly what it was
    /// sealed over then, so its seal still opens; a set URI joins the seal.
    #[test]
    fn the_redirect_uri_joins_the_seal_only_when_set() {
        assert_eq!(
            String::from_utf8(settings_aad(&model(None))).unwrap(),
            "oauth_app:microsoft:settings\nclient\n=contoso.onmicrosoft.com\n~\n=https://login.example/token\n~\n~\n~\n~"
        );
        assert_eq!(
            String::from_utf8(settings_aad(&model(Some("http://localhost/a")))).unwrap(),
            "oauth_app:microsoft:settings\nclient\n=contoso.onmicrosoft.com\n~\n=https://login.example/token\n~\n~\n~\n~\nredirect_uri=http://localhost/a"
        );
    }

    /// The cloud and the Graph URL join the seal only when set, as the redirect URI does:
    /// every row from before them (both null) keeps the seal it has.
    #[test]
    fn the_cloud_and_graph_url_join_the_seal_only_when_set() {
        let before = settings_aad(&model(None));
        let mut row = model(None);
        row.cloud = Some("usgov".to_owned());
        row.graph_api_url = Some("https://graph.example/".to_owned());
        let mut expected = before.clone();
        expected.extend_from_slice(b"\ncloud=usgov\ngraph_api_url=https://graph.example/");
        assert_eq!(settings_aad(&row), expected);
        row.cloud = None;
        row.graph_api_url = None;
        assert_eq!(settings_aad(&row), before);
    }

    #[track_caller]
    fn check(provider: Provider, text: &str, expected: Result<&str, &str>) {
        match (parse_redirect_uri(provider, text), expected) {
            (Ok(url), Ok(expected)) => assert_eq!(url.as_str(), expected, "{text}"),
            (Err(error), Err(expected)) => {
                assert!(error.to_string().contains(expected), "{text}: {error}")
            }
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    /// Loopback http URIs only; the port is dropped; `[::1]` is not for Microsoft
    /// (MicrosoftDocs/entra-docs `docs/identity-platform/reply-url.md`: "The IPv6 loopback
    /// address ([::1]) is not currently supported").
    #[test]
    fn redirect_uris_are_loopback_http_without_a_port() {
        use Provider::{Google, Microsoft};
        check(Microsoft, "http://localhost", Ok("http://localhost/"));
        check(Microsoft, "http://LOCALHOST:8080/", Ok("http://localhost/"));
        check(
            Microsoft,
            "http://127.0.0.1:5000/mailroom",
            Ok("http://127.0.0.1/mailroom"),
        );
        check(Google, "http://[::1]:5000", Ok("http://[::1]/"));
        check(Microsoft, "http://[::1]", Err("IPv6 loopback address"));
        check(Microsoft, "https://localhost", Err("not an http:// URI"));
        check(Microsoft, "http://login.example", Err("not a loopback URI"));
        check(Microsoft, "http://10.0.0.1", Err("not a loopback URI"));
        check(
            Microsoft,
            "http://localhost/?a=b",
            Err("a query or a fragment"),
        );
        check(Microsoft, "localhost", Err("is not a URL"));
        // Each of a user, a password, a query and a fragment is refused on its own.
        for text in [
            "http://me@localhost/",
            "http://:pw@localhost/",
            "http://localhost/?",
            "http://localhost/#top",
        ] {
            check(Google, text, Err("a query or a fragment"));
        }
        check(Google, "http://[::2]/", Err("not a loopback URI"));
        check(Google, "http://127.0.0.2/", Err("not a loopback URI"));
    }

    /// Tokens and secrets go to an endpoint over TLS; plain http only to this machine (a
    /// test server, a local proxy).
    #[test]
    fn endpoints_take_https_and_plain_http_only_to_loopback() {
        for text in [
            "https://login.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/token",
        ] {
            assert_eq!(
                parse_endpoint_url("token url", text).unwrap().as_str(),
                Url::parse(text).unwrap().as_str()
            );
        }
        for (text, problem) in [
            (
                "http://login.example.com/token",
                "plain http to a non-loopback host",
            ),
            ("http://10.0.0.1/token", "plain http to a non-loopback host"),
            ("ftp://login.example.com/token", "has the scheme `ftp`"),
            ("login.example.com/token", "is not a URL"),
        ] {
            let error = parse_endpoint_url("token url", text).unwrap_err();
            assert!(error.to_string().contains(problem), "{text}: {error}");
        }
    }

    /// A refused redirect URI is answered with the provider's own default as the example.
    #[test]
    fn a_refused_redirect_uri_names_the_providers_default() {
        let google = parse_redirect_uri(Provider::Google, "https://x").unwrap_err();
        assert!(
            google.to_string().contains(DEFAULT_GOOGLE_REDIRECT_URI),
            "{google}"
        );
        let microsoft = parse_redirect_uri(Provider::Microsoft, "https://x").unwrap_err();
        assert!(
            microsoft
                .to_string()
                .contains(DEFAULT_MICROSOFT_REDIRECT_URI)
                && !microsoft.to_string().contains(DEFAULT_GOOGLE_REDIRECT_URI),
            "{microsoft}"
        );
    }

    /// A registered URI keeps its path as written: only a bare `/` is left out.
    #[test]
    fn only_a_bare_slash_is_left_out_of_the_uri_to_register() {
        let form = |text: &str| registration_form(&Url::parse(text).unwrap());
        assert_eq!(form("http://localhost:5000/"), "http://localhost");
        assert_eq!(
            form("http://localhost/mailroom/"),
            "http://localhost/mailroom/"
        );
        assert_eq!(form("http://127.0.0.1:80/cb"), "http://127.0.0.1/cb");
    }

    #[test]
    fn clouds_are_written_as_they_are_parsed() {
        for cloud in MicrosoftCloud::ALL {
            assert_eq!(cloud.to_string(), cloud.as_str());
            assert_eq!(cloud.to_string().parse::<MicrosoftCloud>().unwrap(), cloud);
        }
        assert_eq!(MicrosoftCloud::UsGov.to_string(), "usgov");
    }

    /// A client secret's seal names its provider and what it is, so it opens neither
    /// under the other provider's registration nor as an app-only credential.
    #[test]
    fn a_client_secrets_seal_is_bound_to_its_provider_and_kind() {
        let key = mailroom_crypto::EncryptionKey::generate();
        let sealed = key.seal(b"s3cret", &secret_aad(Provider::Google));
        assert_eq!(
            &*key.open(&sealed, &secret_aad(Provider::Google)).unwrap(),
            b"s3cret"
        );
        assert!(key.open(&sealed, &secret_aad(Provider::Microsoft)).is_err());
        assert!(
            key.open(&sealed, &credential_aad(Provider::Google, "client-secret"))
                .is_err()
        );
    }

    #[test]
    fn only_oauth_providers_have_an_app() {
        assert!(check_oauth_provider(Provider::Microsoft).is_ok());
        assert!(check_oauth_provider(Provider::Google).is_ok());
        let error = check_oauth_provider(Provider::None).unwrap_err();
        assert!(error.to_string().contains("no OAuth app"), "{error}");
    }

    /// The providers' documented endpoints (Google: developers.google.com/identity/
    /// protocols/oauth2/native-app and limited-input-device; Microsoft: MicrosoftDocs/
    /// entra-docs `v2-oauth2-auth-code-flow.md`, `v2-oauth2-device-code.md`, national
    /// clouds' login hosts), and an override wins over each.
    #[test]
    fn endpoints_are_the_documented_ones_unless_overridden() {
        let app = |provider: Provider, cloud: MicrosoftCloud| AppRegistration {
            provider,
            client_id: "client".to_owned(),
            client_secret: None,
            tenant: Some("contoso.onmicrosoft.com".to_owned()),
            cloud,
            overrides: EndpointOverrides::default(),
            app_credential: None,
        };
        let text = |url: Option<Url>| url.map(|url| url.to_string());
        let google = app(Provider::Google, MicrosoftCloud::Global).endpoints();
        assert_eq!(
            google.authorize.as_str(),
            "https://accounts.google.com/o/oauth2/v2/auth"
        );
        assert_eq!(google.token.as_str(), "https://oauth2.googleapis.com/token");
        assert_eq!(
            text(google.device).as_deref(),
            Some("https://oauth2.googleapis.com/device/code")
        );
        assert_eq!(
            text(google.revoke).as_deref(),
            Some("https://oauth2.googleapis.com/revoke")
        );
        let microsoft = app(Provider::Microsoft, MicrosoftCloud::Global).endpoints();
        let base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0";
        assert_eq!(microsoft.authorize.as_str(), format!("{base}/authorize"));
        assert_eq!(microsoft.token.as_str(), format!("{base}/token"));
        assert_eq!(text(microsoft.device), Some(format!("{base}/devicecode")));
        assert_eq!(microsoft.revoke, None, "Microsoft revokes no OAuth token");
        let usgov = app(Provider::Microsoft, MicrosoftCloud::UsGov).endpoints();
        assert_eq!(
            usgov.token.as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );

        let mut overridden = app(Provider::Google, MicrosoftCloud::Global);
        let proxy =
            |path: &str| Some(Url::parse(&format!("https://proxy.example/{path}")).unwrap());
        overridden.overrides.authorize_url = proxy("a");
        overridden.overrides.token_url = proxy("t");
        overridden.overrides.device_url = proxy("d");
        overridden.overrides.revoke_url = proxy("r");
        for provider in [Provider::Google, Provider::Microsoft] {
            overridden.provider = provider;
            let endpoints = overridden.endpoints();
            assert_eq!(text(Some(endpoints.authorize)), text(proxy("a")));
            assert_eq!(text(Some(endpoints.token)), text(proxy("t")));
            assert_eq!(text(endpoints.device), text(proxy("d")));
            assert_eq!(text(endpoints.revoke), text(proxy("r")));
        }
    }

    #[test]
    fn the_uri_to_register_has_no_port_and_no_bare_slash() {
        let mut app = AppRegistration {
            provider: Provider::Microsoft,
            client_id: "client".to_owned(),
            client_secret: Some(Secret::new("old")),
            tenant: None,
            cloud: MicrosoftCloud::Global,
            overrides: EndpointOverrides::default(),
            app_credential: None,
        };
        assert_eq!(app.redirect_uri_to_register(), "http://localhost");
        assert_eq!(app.redirect_uri_with_port(4711), "http://localhost:4711/");
        assert!(app.client_secret_to_send().is_none());
        app.overrides.redirect_uri =
            Some(parse_redirect_uri(Provider::Microsoft, "http://127.0.0.1/cb").unwrap());
        assert_eq!(app.redirect_uri_to_register(), "http://127.0.0.1/cb");
        assert_eq!(app.redirect_uri_with_port(4711), "http://127.0.0.1:4711/cb");
        app.provider = Provider::Google;
        app.overrides.redirect_uri = None;
        assert_eq!(app.redirect_uri_to_register(), "http://127.0.0.1");
        assert!(app.client_secret_to_send().is_some());
    }
}
