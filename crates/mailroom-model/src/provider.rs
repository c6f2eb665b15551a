//! `Provider` and `TlsStartup`: which service an account sends through and how TLS starts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The service an account sends through (the guide's "SMTP OAuth Service Provider").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any SMTP server, authenticated with a password (or not at all).
    None,
    /// Microsoft 365: SMTP with OAuth 2.0 (SASL XOAUTH2).
    Microsoft,
    /// Google: the Gmail REST API with OAuth 2.0.
    Google,
}

impl Provider {
    /// Every provider, in the order the guide lists them.
    pub const ALL: [Provider; 3] = [Provider::Microsoft, Provider::Google, Provider::None];

    /// The stable lowercase name used in the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::None => "none",
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
        }
    }

    /// True for the providers that authenticate with OAuth access tokens.
    pub fn uses_oauth(self) -> bool {
        !matches!(self, Provider::None)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "password" | "smtp" => Ok(Provider::None),
            "microsoft" | "office365" | "outlook" | "m365" => Ok(Provider::Microsoft),
            "google" | "gmail" => Ok(Provider::Google),
            _ => Err(ValidationError::new(
                "provider",
                format!("`{}` is not a provider", text.escape_debug()),
                "use one of microsoft, google, none",
            )),
        }
    }
}

/// How TLS starts on an SMTP connection (the guide's "SSL or TLS Startup Method").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsStartup {
    /// Implicit TLS on port 465, STARTTLS on every other port.
    Auto,
    /// Connect in plaintext and require STARTTLS.
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

impl TlsStartup {
    /// The stable lowercase name used in the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsStartup::Auto => "auto",
            TlsStartup::StartTls => "starttls",
            TlsStartup::Implicit => "implicit",
        }
    }
}

/// How a Microsoft account's mail leaves: SMTP submission (the setup guide's, the
/// default) or Microsoft Graph's `sendMail`, for tenants where SMTP AUTH is off
/// (security defaults, `SmtpClientAuthenticationDisabled`). Google accounts always send
/// through the Gmail API and password accounts through their SMTP server: both are `Smtp`
/// here, the one route they have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The provider's own route: SMTP submission (Microsoft, password servers) or the
    /// Gmail API (Google).
    #[default]
    Smtp,
    /// Microsoft Graph (`POST /users/{mailbox}/sendMail`); Microsoft accounts only.
    Graph,
}

impl Route {
    /// The stable lowercase name used in the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Smtp => "smtp",
            Route::Graph => "graph",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Route {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "smtp" => Ok(Route::Smtp),
            "graph" => Ok(Route::Graph),
            _ => Err(ValidationError::new(
                "route",
                format!("`{}` is not a route", text.escape_debug()),
                "use smtp or graph",
            )),
        }
    }
}

/// How an OAuth account obtains its tokens: a person's delegated sign-in (the default), or
/// the app's own credentials (Microsoft client credentials with a secret or certificate;
/// a Google service account with domain-wide delegation), which need no sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// An administrator signs in once; the stored refresh token serves every send.
    #[default]
    Delegated,
    /// The app's own credentials: no person, no refresh token, no sign-in.
    AppOnly,
}

impl Auth {
    /// The stable name used in the CLI and the database: `delegated` or `app-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Delegated => "delegated",
            Auth::AppOnly => "app-only",
        }
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Auth {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "delegated" => Ok(Auth::Delegated),
            "app-only" | "app_only" | "apponly" => Ok(Auth::AppOnly),
            _ => Err(ValidationError::new(
                "auth",
                format!("`{}` is not a kind of authentication", text.escape_debug()),
                "use delegated (a person signs in) or app-only (the app's own credentials)",
            )),
        }
    }
}

impl fmt::Display for TlsStartup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsStartup {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TlsStartup::Auto),
            "starttls" | "start-tls" | "start_tls" => Ok(TlsStartup::StartTls),
            "implicit" | "ssl" | "smtps" => Ok(TlsStartup::Implicit),
            _ => Err(ValidationError::new(
                "tls startup",
                format!("`{}` is not a TLS startup method", text.escape_debug()),
                "use one of auto, starttls, implicit",
            )),
        }
    }
}
