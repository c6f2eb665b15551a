//! The tokens crate's error: what went wrong with a sign-in or a token, and what to do.

use crate::app_only::AppCredentialProblem;
use mailroom_model::{AccountRef, Provider, Remedy, ValidationError};

/// Why a sign-in is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignInReason {
    /// No one has signed in for this address yet.
    NoToken,
    /// The provider rejected the stored sign-in as expired or revoked.
    Revoked {
        /// The provider's explanation.
        detail: String,
    },
    /// The provider wants the user to complete multi-factor authentication again.
    MultiFactorRequired {
        /// The provider's explanation.
        detail: String,
    },
    /// An administrator has not granted the app the permission it asks for.
    ConsentMissing {
        /// The provider's explanation.
        detail: String,
    },
    /// The stored sign-in does not grant a permission the account's route needs (a
    /// Microsoft Graph refresh answered "consent required", `AADSTS65001`, or a token
    /// without the permission): sign in again to grant it.
    PermissionNotGranted {
        /// The permission's short name, e.g. `Mail.Send`.
        permission: String,
        /// The provider's explanation.
        detail: String,
    },
    /// The stored sign-in has no refresh token.
    NoRefreshToken,
    /// The provider refused the token for this account or scope.
    TokenRejected,
}

impl std::fmt::Display for SignInReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignInReason::NoToken => f.write_str("no one has signed in for this address yet"),
            SignInReason::Revoked { detail } => {
                write!(
                    f,
                    "the stored sign-in has expired or was revoked ({detail})"
                )
            }
            SignInReason::MultiFactorRequired { detail } => write!(
                f,
                "the provider requires multi-factor authentication again ({detail})"
            ),
            SignInReason::ConsentMissing { detail } => write!(
                f,
                "an administrator must first grant the app consent in the identity provider ({detail})"
            ),
            SignInReason::PermissionNotGranted { permission, detail } => write!(
                f,
                "the sign-in does not grant the permission {permission}; sign in again to grant {permission} ({detail})"
            ),
            SignInReason::NoRefreshToken => {
                f.write_str("the stored sign-in has no refresh token and its access token expired")
            }
            SignInReason::TokenRejected => {
                f.write_str("the provider rejected the token for this account")
            }
        }
    }
}

/// A token or sign-in operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value was refused.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No OAuth app is registered for the provider.
    #[error("no OAuth app is registered for {provider}; register the app's client id first")]
    AppNotConfigured {
        /// The provider.
        provider: Provider,
    },
    /// A sign-in is needed and this caller may not (or could not) run one.
    #[error(
        "Failed to obtain an access token for {address} ({provider}): {reason}; an administrator must sign in for {account}"
    )]
    SignInRequired {
        /// The address the account sends as (or `(no SMTP user)`).
        address: String,
        /// The provider.
        provider: Provider,
        /// The account that needs the sign-in.
        account: AccountRef,
        /// Why.
        reason: SignInReason,
    },
    /// The user signed in as someone other than the account's SMTP user.
    #[error(
        "signed in as {signed_in}, but this account sends as {expected}: sign in again as {expected}; or, if {expected} is a shared mailbox that {signed_in} may send as, mark the account as a shared mailbox and sign in again as {signed_in}"
    )]
    IdentityMismatch {
        /// Who signed in.
        signed_in: String,
        /// Whom the account sends as.
        expected: String,
    },
    /// Google signed in a person whose address Google has not verified
    /// (`email_verified` is not true): the address may not be theirs.
    #[error(
        "Google has not verified the address {address} of the account that signed in, so it cannot stand for that mailbox; sign in with an account whose address Google has verified"
    )]
    AddressNotVerified {
        /// The unverified address (cut short).
        address: String,
    },
    /// The sign-in did not grant the scope mailroom sends with (Google lets the person
    /// untick each scope on its consent screen).
    #[error(
        "the sign-in did not grant permission to send mail (`{scope}`): the consent screen's box for sending email was left unticked; sign in again and tick it"
    )]
    ScopeNotGranted {
        /// The missing scope.
        scope: String,
    },
    /// The interactive sign-in did not complete.
    #[error("sign-in failed: {0}")]
    SignInFailed(String),
    /// The provider does not allow the device flow for these scopes.
    #[error(
        "Google does not allow Gmail scopes in the device flow; sign in through the browser instead (on a machine without one, open the sign-in address on another device)"
    )]
    DeviceFlowNotSupported,
    /// The identity provider could not be reached or failed; the stored token is kept.
    #[error(
        "the identity provider is unavailable: {message}; the stored sign-in was kept, try again later"
    )]
    Transient {
        /// What happened.
        message: String,
    },
    /// The identity provider refused the request for a reason a sign-in will not fix.
    #[error(
        "the identity provider refused the request: {error}{}; check the app registration",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Provider {
        /// The OAuth error code, e.g. `invalid_client`.
        error: String,
        /// The provider's description (its first line), when it gave one.
        description: Option<String>,
    },
    /// The provider does not accept the sign-in's redirect URI (`AADSTS50011`,
    /// `redirect_uri_mismatch`): the app registration lacks it.
    #[error(
        "the {provider} app registration does not accept the redirect URI {sent} ({detail}); register {to_register} with the app"
    )]
    RedirectUriNotRegistered {
        /// The provider.
        provider: Provider,
        /// The URI the sign-in sent (with its listener's port).
        sent: String,
        /// The URI to register (no port, as the provider's console takes it).
        to_register: String,
        /// The provider's words.
        detail: String,
    },
    /// A single-tenant Microsoft app was used with `organizations` or `common`
    /// (`AADSTS50194`).
    #[error(
        "the Microsoft app is registered for one tenant, so it must sign in at its tenant's endpoints, not organizations or common ({detail}); set the app's tenant"
    )]
    TenantRequired {
        /// The provider's words.
        detail: String,
    },
    /// The identity provider's answer could not be understood.
    #[error(
        "the identity provider sent an answer mailroom cannot use: {0}; the stored sign-in was kept"
    )]
    MalformedResponse(String),
    /// The id_token failed a check.
    #[error(
        "the sign-in's id_token is not acceptable: {0}; check the app registration (client id, tenant, issuer)"
    )]
    InvalidIdToken(String),
    /// The encryption key is wrong or a stored secret is damaged.
    #[error(transparent)]
    Key(#[from] mailroom_crypto::Error),
    /// An app registration's endpoints do not match their seal: they were changed outside
    /// mailroom (in the database, without the key). No secret is sent to them.
    #[error(
        "the {provider} app registration's endpoints were changed outside mailroom (they do not match their seal), so no token or secret is sent to them; check the registration and set it again"
    )]
    SettingsAltered {
        /// The provider.
        provider: Provider,
    },
    /// The provider refused the app's own credentials (an app-only token request: a
    /// client secret, a certificate's assertion, a service account's key).
    #[error(
        "Failed to obtain an access token: the {provider} app's own credentials were refused: {problem} ({detail})"
    )]
    AppCredentialRejected {
        /// The provider.
        provider: Provider,
        /// The app's client id (Microsoft) or the service account (Google).
        client: String,
        /// What is wrong, with what to do.
        problem: AppCredentialProblem,
        /// The provider's error code and first line of description.
        detail: String,
    },
    /// An account authenticates app-only, but its provider's app has no app-only
    /// credential.
    #[error(
        "Failed to obtain an access token for {address} ({provider}): the account authenticates app-only (with the app's own credentials), but the {provider} app has none; set the app's {needed}"
    )]
    AppCredentialMissing {
        /// The provider.
        provider: Provider,
        /// The address the account sends as.
        address: String,
        /// What to set, in a person's words.
        needed: &'static str,
    },
    /// A stored row holds a value this version cannot read.
    #[error("the database holds an unreadable {0}; sign in again to replace it")]
    CorruptRow(String),
    /// The database failed.
    #[error("the database failed; check that it is reachable and migrated")]
    Database(#[source] Box<sea_orm::DbErr>),
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Database(Box::new(error))
    }
}

impl Error {
    /// The "Failed to obtain an access token" error for `target`, naming the address (or
    /// that there is none yet), the provider and the command an administrator must run.
    pub fn sign_in_required(target: &crate::TokenTarget, reason: SignInReason) -> Self {
        Error::SignInRequired {
            address: if target.address.is_empty() {
                "(no SMTP user yet)".to_owned()
            } else {
                target.address.clone()
            },
            provider: target.provider,
            account: target.account,
            reason,
        }
    }

    /// The action that fixes it, when there is one.
    pub fn remedy(&self) -> Option<Remedy> {
        let sign_in = |account: Option<AccountRef>, browser_only| Remedy::SignIn {
            account,
            browser_only,
        };
        match self {
            Error::Invalid(error) => error.remedy().cloned(),
            Error::AppNotConfigured { provider } => Some(Remedy::RegisterApp {
                provider: *provider,
            }),
            Error::SignInRequired {
                account,
                reason: SignInReason::PermissionNotGranted { permission, .. },
                ..
            } => Some(Remedy::GrantScope {
                account: Some(*account),
                scope: permission.clone(),
            }),
            Error::SignInRequired { account, .. } => Some(sign_in(Some(*account), false)),
            Error::IdentityMismatch { .. }
            | Error::ScopeNotGranted { .. }
            | Error::AddressNotVerified { .. }
            | Error::CorruptRow(_) => Some(sign_in(None, false)),
            Error::DeviceFlowNotSupported => Some(sign_in(None, true)),
            Error::Provider { .. } | Error::InvalidIdToken(_) => {
                Some(Remedy::ReviewApp { provider: None })
            }
            Error::Database(_) => Some(Remedy::CheckDatabase),
            Error::RedirectUriNotRegistered {
                provider,
                to_register,
                ..
            } => Some(Remedy::RegisterRedirectUri {
                provider: *provider,
                redirect_uri: to_register.clone(),
            }),
            Error::TenantRequired { .. } => Some(Remedy::SetMicrosoftTenant),
            Error::SettingsAltered { provider } => Some(Remedy::ReviewApp {
                provider: Some(*provider),
            }),
            Error::AppCredentialRejected {
                provider,
                client,
                problem,
                ..
            } => Some(match problem {
                AppCredentialProblem::DelegationNotConfigured => {
                    Remedy::ConfigureDomainWideDelegation {
                        client: Some(client.clone()),
                    }
                }
                AppCredentialProblem::AppNotInTenant => Remedy::ReviewApp {
                    provider: Some(*provider),
                },
                _ => Remedy::SetAppCredential {
                    provider: *provider,
                },
            }),
            Error::AppCredentialMissing { provider, .. } => Some(Remedy::SetAppCredential {
                provider: *provider,
            }),
            Error::Key(error) => error.missing_key().map(|id| Remedy::RestoreKey {
                key_id: id.to_owned(),
            }),
            Error::SignInFailed(_) | Error::Transient { .. } | Error::MalformedResponse(_) => None,
        }
    }

    /// True when the app's own credentials (app-only) failed in a way only an
    /// administrator can fix: refused, or missing.
    pub fn needs_app_credential(&self) -> bool {
        matches!(
            self,
            Error::AppCredentialRejected { .. } | Error::AppCredentialMissing { .. }
        )
    }

    /// True when only a new sign-in can fix it.
    pub fn needs_sign_in(&self) -> bool {
        matches!(self, Error::SignInRequired { .. })
    }

    /// True when trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the three questions a caller asks (hold for an administrator's app
    /// credential, hold for a sign-in, try again later) is yes for its own errors only.
    #[test]
    fn each_question_is_yes_for_its_own_errors_only() {
        let cases = [
            (
                Error::SignInRequired {
                    address: "box@example.com".to_owned(),
                    provider: Provider::Microsoft,
                    account: AccountRef::Company,
                    reason: SignInReason::NoToken,
                },
                (false, true, false),
            ),
            (
                Error::Transient {
                    message: "the token endpoint timed out".to_owned(),
                },
                (false, false, true),
            ),
            (
                Error::AppCredentialRejected {
                    provider: Provider::Microsoft,
                    client: "11111111-2222-3333-4444-555555555555".to_owned(),
                    problem: AppCredentialProblem::ExpiredSecret,
                    detail: "AADSTS7000222".to_owned(),
                },
                (true, false, false),
            ),
            (
                Error::AppCredentialMissing {
                    provider: Provider::Google,
                    address: "box@example.com".to_owned(),
                    needed: "service account key",
                },
                (true, false, false),
            ),
            (
                Error::SignInFailed("the browser was closed".to_owned()),
                (false, false, false),
            ),
            (
                Error::Provider {
                    error: "invalid_client".to_owned(),
                    description: None,
                },
                (false, false, false),
            ),
            (
                Error::MalformedResponse("no access_token".to_owned()),
                (false, false, false),
            ),
        ];
        for (error, (app_credential, sign_in, transient)) in cases {
            assert_eq!(error.needs_app_credential(), app_credential, "{error}");
            assert_eq!(error.needs_sign_in(), sign_in, "{error}");
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }
}
