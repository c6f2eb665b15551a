//! Server settings, the providers' presets, and changes to settings that report what they
//! ignored.

use serde::{Deserialize, Serialize};

use crate::pacing::{Limit, MailboxLimits, PaceOverrides};
use crate::validate::{self, ValidationError};
use crate::{Auth, Provider, Remedy, Route, Secret, TlsStartup};

/// The default SMTP timeout of the setup guide, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 100_000;

/// The Gmail API host; Google accounts always send there (use the app's `gmail-api-url`
/// setting to point at a proxy or a test endpoint).
pub const GMAIL_API_HOST: &str = "gmail.googleapis.com";

/// Microsoft 365's SMTP submission host.
pub const OFFICE365_SMTP_HOST: &str = "smtp.office365.com";

/// How an account reaches its mail server. `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The service the account sends through.
    pub provider: Provider,
    /// Server name or IP address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The guide's "Enable SMTP over SSL or TLS".
    pub tls: bool,
    /// The guide's "SSL or TLS Startup Method".
    pub tls_startup: TlsStartup,
    /// Bound on connecting and on every SMTP command, in milliseconds.
    pub timeout_ms: u32,
    /// The address (OAuth providers) or login name (password SMTP) the account
    /// authenticates as. Empty for an OAuth account until its first sign-in fills it.
    pub smtp_user: String,
    /// The SMTP password; only provider `None` has one.
    pub password: Option<Secret>,
    /// Lets an OAuth account send its bearer token without TLS to a loopback address.
    /// For test servers only; never allowed for other addresses.
    pub allow_plaintext_loopback: bool,
    /// Lets a password account (provider `None`) send its password without TLS to a
    /// server that is not on this machine: an explicit, per-account opt-in for old
    /// internal relays. Without it a password goes in plaintext only to a loopback host.
    pub allow_plaintext_password: bool,
    /// The mailbox is one that a person with rights on it signs in for (an Exchange shared
    /// mailbox, or any mailbox the signed-in person may send as): the sign-in may be
    /// anyone's, and the SMTP user stays the mailbox mail is sent as (XOAUTH2 `user=`, MAIL
    /// FROM, From). Off: only the mailbox's own person may sign in. OAuth accounts only.
    pub shared_mailbox: bool,
    /// The key of the stored sign-in this account sends with: the provider's stable
    /// identity of the person who signed in for it (`oid:{tid}:{oid}`, `sub:{sub}`). Set by
    /// a completed sign-in, never by a [`ServerSettingsChange`]; a change of provider or
    /// SMTP user clears it (that sign-in was for another mailbox), and so does a switch to
    /// [`Auth::AppOnly`] (there is no sign-in). `None`: the sign-in
    /// stored under the SMTP user's address, as before identities were kept.
    pub token_identity: Option<String>,
    /// How the mail leaves: SMTP (the default) or, for Microsoft accounts, Microsoft Graph.
    pub route: Route,
    /// The Graph route may send messages too large for one request (Graph's 4 MB request
    /// limit) as a draft with upload sessions, which needs the `Mail.ReadWrite` permission
    /// on top of `Mail.Send`; off, such a message is refused before any request and the
    /// sign-in asks for `Mail.Send` only. Graph route only.
    pub large_attachments: bool,
    /// How the account obtains tokens: a person's sign-in ([`Auth::Delegated`], the
    /// default) or the app's own credentials ([`Auth::AppOnly`]: the SMTP user is the
    /// mailbox the app sends as, and no sign-in is ever needed). OAuth accounts only.
    pub auth: Auth,
    /// The account's own limits on top of its provider's ([`ServerSettings::mailbox_limits`]).
    pub pace: PaceOverrides,
}

/// A setting a provider ignores, with the reason; reported, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredSetting {
    /// The setting's name in the user's terms.
    pub setting: &'static str,
    /// Why it has no effect.
    pub reason: &'static str,
}

const GOOGLE_IGNORES: &str = "Google accounts send through the Gmail API over HTTPS";

impl ServerSettings {
    /// The preset of a provider, exactly the setup guide's table for Microsoft and Google.
    ///
    /// Provider `None` has no host preset (it must be given); it starts on the submission
    /// port 587 with TLS required through STARTTLS.
    pub fn preset(provider: Provider) -> Self {
        let (host, port) = match provider {
            Provider::Microsoft => (OFFICE365_SMTP_HOST, 587),
            Provider::Google => (GMAIL_API_HOST, 443),
            Provider::None => ("", 587),
        };
        Self {
            provider,
            host: host.to_owned(),
            port,
            tls: true,
            tls_startup: TlsStartup::Auto,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            smtp_user: String::new(),
            password: None,
            allow_plaintext_loopback: false,
            allow_plaintext_password: false,
            shared_mailbox: false,
            token_identity: None,
            route: Route::Smtp,
            large_attachments: false,
            auth: Auth::Delegated,
            pace: PaceOverrides::default(),
        }
    }

    /// The settings this account's provider ignores (Google: TLS, startup method, timeout).
    pub fn ignored_settings(provider: Provider) -> &'static [IgnoredSetting] {
        match provider {
            Provider::Google => &[
                IgnoredSetting {
                    setting: "tls",
                    reason: GOOGLE_IGNORES,
                },
                IgnoredSetting {
                    setting: "tls startup",
                    reason: GOOGLE_IGNORES,
                },
                IgnoredSetting {
                    setting: "timeout",
                    reason: GOOGLE_IGNORES,
                },
            ],
            Provider::Microsoft | Provider::None => &[],
        }
    }

    /// The limits the mailbox sends under: its provider's and route's documented defaults
    /// ([`MailboxLimits::defaults`]) with the account's overrides on top.
    pub fn mailbox_limits(&self) -> MailboxLimits {
        MailboxLimits::defaults(self.provider, self.route).with_overrides(self.pace)
    }

    /// Checks every field; the first problem found is returned with its fix.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::check_limit("rate", self.pace.per_minute, validate::MAX_RATE_PER_MINUTE)?;
        validate::check_limit("daily limit", self.pace.daily, validate::MAX_DAILY_LIMIT)?;
        validate::check_host(&self.host)?;
        validate::check_port(u32::from(self.port))?;
        validate::check_timeout_ms(u64::from(self.timeout_ms))?;
        validate::reject_control_characters("smtp user", &self.smtp_user)?;
        if self.provider == Provider::Google && (self.host != GMAIL_API_HOST || self.port != 443) {
            return Err(ValidationError::new(
                "host",
                format!(
                    "Google accounts send through the Gmail API at {GMAIL_API_HOST}:443, not {}:{}",
                    self.host, self.port
                ),
                "keep the preset; to use a proxy or test endpoint, set the Google app's Gmail API URL instead",
            )
            .with_remedy(Remedy::SetGmailApiUrl));
        }
        if self.allow_plaintext_loopback && !validate::is_loopback_host(&self.host) {
            return Err(ValidationError::new(
                "allow plaintext loopback",
                format!("`{}` is not a loopback address", self.host),
                "plaintext bearer tokens are allowed only to 127.0.0.1, ::1 or localhost; turn the option off",
            ));
        }
        if self.auth == Auth::AppOnly {
            if !self.provider.uses_oauth() {
                return Err(ValidationError::new(
                    "auth",
                    "app-only is for OAuth accounts (microsoft, google); a password account logs in with its SMTP user and password",
                    "use --auth delegated, or provider microsoft or google",
                ));
            }
            if self.smtp_user.is_empty() {
                return Err(ValidationError::new(
                    "smtp user",
                    "is empty for an app-only account: it is the mailbox the app sends as (XOAUTH2 user=, Graph's /users/{mailbox}, the Google service account's sub), and no sign-in will fill it",
                    "give the mailbox's address as the SMTP user",
                ));
            }
            if self.shared_mailbox {
                return Err(ValidationError::new(
                    "shared mailbox",
                    "is for delegated sign-ins (a person signs in for a mailbox they have rights on); an app-only account has no sign-in and sends as its SMTP user directly",
                    "turn the shared mailbox option off, or use --auth delegated",
                ));
            }
        }
        if self.shared_mailbox && !self.provider.uses_oauth() {
            return Err(ValidationError::new(
                "shared mailbox",
                "a password account logs in as its SMTP user and has no sign-in to share",
                "turn the shared mailbox option off, or use provider microsoft or google",
            ));
        }
        if self.shared_mailbox && self.provider == Provider::Google {
            return Err(ValidationError::new(
                "shared mailbox",
                "the Gmail API sends only from the signed-in person's own mailbox (and that mailbox's send-as addresses), so another person's sign-in cannot send as this one",
                "sign in as the mailbox itself and turn the shared mailbox option off",
            ));
        }
        if self.shared_mailbox && self.smtp_user.is_empty() {
            return Err(ValidationError::new(
                "smtp user",
                "is empty for a shared mailbox: the person who signs in is not the mailbox, so the sign-in cannot fill it",
                "give the shared mailbox's address as the SMTP user",
            ));
        }
        if self.route == Route::Graph && self.provider != Provider::Microsoft {
            return Err(ValidationError::new(
                "route",
                format!(
                    "graph is a Microsoft route; a {} account sends {}",
                    self.provider,
                    match self.provider {
                        Provider::Google => "through the Gmail API",
                        _ => "through its SMTP server",
                    }
                ),
                "use --route smtp, or provider microsoft",
            ));
        }
        if self.large_attachments && self.route != Route::Graph {
            return Err(ValidationError::new(
                "large attachments",
                "applies to the Graph route only (SMTP takes a message up to the server's size limit in one piece)",
                "turn large attachments off, or use --route graph",
            ));
        }
        if self.provider.uses_oauth() {
            if !self.smtp_user.is_empty() {
                validate::parse_address("smtp user", &self.smtp_user)?;
            }
            if self.password.is_some() {
                return Err(ValidationError::new(
                    "password",
                    format!(
                        "a {} account signs in with OAuth and has no password",
                        self.provider
                    ),
                    "leave the password out and sign in for this account instead",
                )
                .with_remedy(Remedy::SignIn {
                    account: None,
                    browser_only: false,
                }));
            }
        } else {
            if self.smtp_user.chars().count() > validate::MAX_TEXT_LEN {
                return Err(ValidationError::new(
                    "smtp user",
                    "is too long",
                    format!("use at most {} characters", validate::MAX_TEXT_LEN),
                ));
            }
            if let Some(password) = &self.password {
                validate::reject_control_characters("password", password.expose())?;
            }
        }
        Ok(())
    }
}

/// A change to server settings, as the CLI's options give it: `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettingsChange {
    /// A new provider; its preset replaces host, port, TLS, startup method and timeout.
    pub provider: Option<Provider>,
    /// A new host.
    pub host: Option<String>,
    /// A new port.
    pub port: Option<u16>,
    /// TLS on or off.
    pub tls: Option<bool>,
    /// A new TLS startup method.
    pub tls_startup: Option<TlsStartup>,
    /// A new timeout in milliseconds.
    pub timeout_ms: Option<u32>,
    /// A new SMTP user.
    pub smtp_user: Option<String>,
    /// A new password (provider `None` only).
    pub password: Option<Secret>,
    /// Allow or forbid plaintext bearer tokens to a loopback server.
    pub allow_plaintext_loopback: Option<bool>,
    /// Allow or forbid sending the password without TLS to any server.
    pub allow_plaintext_password: Option<bool>,
    /// Mark or unmark the account as a shared mailbox.
    pub shared_mailbox: Option<bool>,
    /// A new route (Microsoft accounts: SMTP or Graph).
    pub route: Option<Route>,
    /// Allow or forbid large messages on the Graph route (needs `Mail.ReadWrite`).
    pub large_attachments: Option<bool>,
    /// A new kind of authentication (OAuth accounts: a person's sign-in or the app's own
    /// credentials). Switching to app-only lets go of the account's sign-in.
    pub auth: Option<Auth>,
    /// A new messages-per-minute limit for the mailbox (`Some(None)`: back to the
    /// provider's default).
    pub rate_per_minute: Option<Option<Limit>>,
    /// A new daily limit (recipients for Microsoft, messages for Google; `Some(None)`:
    /// back to the provider's default).
    pub daily_limit: Option<Option<Limit>>,
}

/// The settings after a change, with what the change could not take effect on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedChange {
    /// The new, validated settings.
    pub settings: ServerSettings,
    /// Settings that were stored but have no effect for this provider.
    pub ignored: Vec<IgnoredSetting>,
    /// Other things the user should know (e.g. a password removed by a provider change).
    pub notices: Vec<String>,
}

impl ServerSettingsChange {
    /// True when the change names no field at all.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Applies the change to `current` (or to a provider's preset when there is none yet)
    /// and validates the result. Nothing is changed when an error is returned.
    pub fn apply(
        &self,
        current: Option<&ServerSettings>,
    ) -> Result<AppliedChange, ValidationError> {
        let mut notices = Vec::new();
        let mut settings = match (current, self.provider) {
            (Some(current), None) => current.clone(),
            (Some(current), Some(provider)) if provider == current.provider => current.clone(),
            (Some(current), Some(provider)) => {
                let mut preset = ServerSettings::preset(provider);
                preset.smtp_user = current.smtp_user.clone();
                preset.shared_mailbox = current.shared_mailbox && provider.uses_oauth();
                if current.route != Route::Smtp && provider != Provider::Microsoft {
                    notices.push(format!(
                        "the route is smtp now: {provider} accounts have no {} route",
                        current.route
                    ));
                } else {
                    preset.route = current.route;
                    preset.large_attachments = current.large_attachments;
                }
                if current.auth == Auth::AppOnly && !provider.uses_oauth() {
                    if self.auth.is_none() {
                        notices.push(
                            "auth is delegated now: a password account (provider none) logs in with its SMTP user and password, not the app's credentials"
                                .to_owned(),
                        );
                    }
                } else {
                    preset.auth = current.auth;
                }
                preset.pace = current.pace;
                if current.password.is_some() && provider.uses_oauth() {
                    notices.push(format!(
                        "the stored password was removed: {provider} accounts sign in with OAuth"
                    ));
                } else {
                    preset.password = current.password.clone();
                }
                preset
            }
            (None, Some(provider)) => ServerSettings::preset(provider),
            (None, None) => {
                return Err(ValidationError::new(
                    "provider",
                    "is missing for a new account",
                    "give --provider microsoft, google or none",
                ));
            }
        };
        if let Some(host) = &self.host {
            settings.host = host.trim().to_owned();
        }
        if let Some(port) = self.port {
            settings.port = port;
        }
        if let Some(tls) = self.tls {
            settings.tls = tls;
        }
        if let Some(tls_startup) = self.tls_startup {
            settings.tls_startup = tls_startup;
        }
        if let Some(timeout_ms) = self.timeout_ms {
            settings.timeout_ms = validate::check_timeout_ms(u64::from(timeout_ms))?;
        }
        if let Some(user) = &self.smtp_user {
            validate::reject_control_characters("smtp user", user)?;
            let user = user.trim();
            if !user.eq_ignore_ascii_case(&settings.smtp_user) {
                settings.token_identity = None;
            }
            settings.smtp_user = user.to_owned();
        }
        if let Some(password) = &self.password {
            settings.password = Some(password.clone());
        }
        if let Some(allow) = self.allow_plaintext_loopback {
            settings.allow_plaintext_loopback = allow;
        }
        if let Some(allow) = self.allow_plaintext_password {
            settings.allow_plaintext_password = allow;
        }
        if let Some(shared) = self.shared_mailbox {
            settings.shared_mailbox = shared;
        }
        if let Some(route) = self.route {
            settings.route = route;
            if route != Route::Graph && self.large_attachments.is_none() {
                // Large attachments belong to the Graph route; leaving it turns them off.
                settings.large_attachments = false;
            }
        }
        if let Some(large) = self.large_attachments {
            settings.large_attachments = large;
        }
        if let Some(auth) = self.auth {
            if auth == Auth::AppOnly {
                // The app's own credentials need no sign-in, so the account names none.
                settings.token_identity = None;
            }
            settings.auth = auth;
        }
        if let Some(rate) = self.rate_per_minute {
            settings.pace.per_minute = rate;
        }
        if let Some(daily) = self.daily_limit {
            settings.pace.daily = daily;
        }
        settings.validate()?;

        let given = [
            ("tls", self.tls.is_some()),
            ("tls startup", self.tls_startup.is_some()),
            ("timeout", self.timeout_ms.is_some()),
        ];
        let ignored = ServerSettings::ignored_settings(settings.provider)
            .iter()
            .filter(|ignored| {
                given
                    .iter()
                    .any(|(name, set)| *set && *name == ignored.setting)
            })
            .cloned()
            .collect();
        Ok(AppliedChange {
            settings,
            ignored,
            notices,
        })
    }
}
