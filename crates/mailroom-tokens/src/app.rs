//! OAuth app registrations: one per provider, with the real endpoints by default and
//! every endpoint overridable (sovereign clouds, identity proxies, tests).

use chrono::Utc;
use mailroom_crypto::{EncryptionKey, KeyRing, store};
use mailroom_model::{Provider, Remedy, Secret, ValidationError, validate};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryOrder, Set};
use url::Url;

use crate::entity::oauth_app;
use crate::{Error, Result};

/// Microsoft's default tenant: work and school accounts of any organization.
pub const DEFAULT_MICROSOFT_TENANT: &str = "organizations";

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
    /// Overrides of the default endpoints.
    pub overrides: EndpointOverrides,
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
                    "https://login.microsoftonline.com/{}/oauth2/v2.0",
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
            _ => vec![format!("https://login.microsoftonline.com/{tid}/v2.0")],
        }
    }

    /// The Gmail API base URL in effect.
    pub fn gmail_api_url(&self) -> Url {
        self.overrides
            .gmail_api_url
            .clone()
            .unwrap_or_else(|| fixed_url(GMAIL_API_URL))
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

/// A change to an app registration; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AppChange {
    /// A new client id (required when the app is registered the first time).
    pub client_id: Option<String>,
    /// `Some(Some(s))` sets the secret, `Some(None)` removes it.
    pub client_secret: Option<Option<Secret>>,
    /// A new Microsoft tenant.
    pub tenant: Option<String>,
    /// Endpoint overrides to set.
    pub overrides: EndpointOverrides,
    /// Drop every endpoint override (back to the real endpoints) before applying others.
    pub reset_endpoints: bool,
}

const SECRET_AAD_PREFIX: &str = "oauth_app";

fn secret_aad(provider: Provider) -> Vec<u8> {
    format!("{SECRET_AAD_PREFIX}:{provider}:client_secret").into_bytes()
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
/// Gmail API) are sent. Someone who can write the database but lacks the key cannot point
/// mailroom at another endpoint: the seal no longer opens and nothing is sent.
fn settings_aad(model: &oauth_app::Model) -> Vec<u8> {
    let field = |value: &Option<String>| match value {
        Some(text) => format!("={text}"),
        None => "~".to_owned(),
    };
    format!(
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
    .into_bytes()
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
    Ok(AppRegistration {
        provider,
        client_id: model.client_id,
        client_secret,
        tenant: model.tenant,
        overrides: EndpointOverrides {
            authorize_url: parse_stored_url("authorize url", model.authorize_url)?,
            token_url: parse_stored_url("token url", model.token_url)?,
            device_url: parse_stored_url("device url", model.device_url)?,
            revoke_url: parse_stored_url("revoke url", model.revoke_url)?,
            issuer: model.issuer,
            gmail_api_url: parse_stored_url("gmail api url", model.gmail_api_url)?,
        },
    })
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
        let mut app = match existing.clone() {
            // Not checked: the change re-seals what it leaves, so an altered registration
            // can be set right.
            Some(model) => from_model(model, self.key, None)?,
            None => AppRegistration {
                provider,
                client_id: change.client_id.clone().ok_or_else(|| {
                    ValidationError::new(
                        "client id",
                        format!("is missing; {provider} has no app registration yet"),
                        "give the client id of the app registered with the provider",
                    )
                    .with_remedy(Remedy::RegisterApp { provider })
                })?,
                client_secret: None,
                tenant: None,
                overrides: EndpointOverrides::default(),
            },
        };
        if let Some(client_id) = change.client_id {
            validate::check_text("client id", &client_id)?;
            app.client_id = client_id.trim().to_owned();
        }
        if let Some(secret) = change.client_secret {
            if let Some(secret) = &secret {
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
            if !tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(ValidationError::new(
                    "tenant",
                    format!("`{tenant}` is not a tenant name or id"),
                    "use organizations, common, consumers, a tenant id or a domain such as contoso.onmicrosoft.com",
                )
                .into());
            }
            app.tenant = Some(tenant);
        }
        if change.reset_endpoints {
            app.overrides = EndpointOverrides::default();
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
        macro_rules! take {
            ($($field:ident),*) => { $( if o.$field.is_some() { app.overrides.$field = o.$field; } )* };
        }
        take!(
            authorize_url,
            token_url,
            device_url,
            revoke_url,
            issuer,
            gmail_api_url
        );
        if let Some(issuer) = &app.overrides.issuer {
            validate::check_text("issuer", issuer)?;
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
            settings_seal: None,
            updated_at: Utc::now(),
        };
        active.settings_seal = Set(Some(sealing.seal(b"", &settings_aad(&columns))));
        if is_new {
            active.insert(self.db).await?;
        } else {
            active.update(self.db).await?;
        }
        Ok(app)
    }

    /// Forgets every stored client secret (a lost key): the registrations stay and
    /// need their secrets again. Returns how many were forgotten.
    pub async fn forget_secrets(&self) -> Result<usize> {
        let mut count = 0;
        for model in oauth_app::Entity::find().all(self.db).await? {
            if model.client_secret_sealed.is_some() {
                let mut active = model.into_active_model();
                active.client_secret_sealed = Set(None);
                active.update(self.db).await?;
                count += 1;
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
            let seal = new_key.seal(b"", &settings_aad(&model));
            let mut active = model.into_active_model();
            active.client_secret_sealed = Set(secret);
            active.settings_seal = Set(Some(seal));
            active.update(self.db).await?;
        }
        Ok(count)
    }
}
