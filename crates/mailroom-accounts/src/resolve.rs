//! Resolution: which account sends for a feature and a current user, and which rule chose
//! it.

use std::fmt;

use mailroom_model::{AccountPolicy, AccountRef, Binding, Feature};
use sea_orm::ConnectionTrait;
use serde::Serialize;

use crate::repository::{Account, Accounts};
use crate::{Error, Result};

/// Why an account was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ResolutionRule {
    /// The feature allows user accounts and one is bound to the current user.
    BoundUserAccount {
        /// The binding that matched.
        binding: Binding,
    },
    /// The feature sends only with the company account.
    CompanyOnlyFeature {
        /// The feature.
        feature: String,
    },
    /// No user account is bound to the current user.
    NoBoundUserAccount {
        /// The binding that was looked for.
        binding: Binding,
    },
    /// No current user (or binding) was given.
    NoCurrentUser,
}

impl fmt::Display for ResolutionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolutionRule::BoundUserAccount { binding } => {
                write!(f, "the user account bound to {binding}")
            }
            ResolutionRule::CompanyOnlyFeature { feature } => {
                write!(
                    f,
                    "the company account, because feature `{feature}` sends only with it"
                )
            }
            ResolutionRule::NoBoundUserAccount { binding } => write!(
                f,
                "the company account, because no user account is bound to {binding}"
            ),
            ResolutionRule::NoCurrentUser => {
                write!(f, "the company account, because no current user was given")
            }
        }
    }
}

/// The account that sends, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The account.
    pub account: Account,
    /// The rule that chose it.
    pub rule: ResolutionRule,
}

impl Resolution {
    /// Which account was chosen.
    pub fn account_ref(&self) -> AccountRef {
        self.account.account_ref()
    }
}

impl<C: ConnectionTrait> Accounts<'_, C> {
    /// The account that sends for `feature` when `system_user` is signed in to the host
    /// application: the user account bound to `SystemUser / User_Name / <user>` if the
    /// feature allows user accounts and one exists, else the company account.
    pub async fn resolve(
        &self,
        feature: &Feature,
        system_user: Option<&str>,
    ) -> Result<Resolution> {
        let binding = match system_user.map(str::trim).filter(|user| !user.is_empty()) {
            Some(user) => Some(Binding::system_user(user)?),
            None => None,
        };
        self.resolve_binding(feature, binding.as_ref()).await
    }

    /// [`Accounts::resolve`] for any binding, e.g. `Customer / Territory / EAST`.
    pub async fn resolve_binding(
        &self,
        feature: &Feature,
        binding: Option<&Binding>,
    ) -> Result<Resolution> {
        let rule = match (feature.policy, binding) {
            (AccountPolicy::CompanyOnly, _) => ResolutionRule::CompanyOnlyFeature {
                feature: feature.name.to_string(),
            },
            (AccountPolicy::UserThenCompany, Some(binding)) => {
                if let Some(user) = self.find_by_binding(binding).await? {
                    return Ok(Resolution {
                        rule: ResolutionRule::BoundUserAccount {
                            binding: user.binding.clone().unwrap_or_else(|| binding.clone()),
                        },
                        account: Account::User(user),
                    });
                }
                ResolutionRule::NoBoundUserAccount {
                    binding: binding.clone(),
                }
            }
            (AccountPolicy::UserThenCompany, None) => ResolutionRule::NoCurrentUser,
        };
        match self.company().await? {
            Some(company) => Ok(Resolution {
                account: Account::Company(company),
                rule,
            }),
            None => {
                let user_binding =
                    binding.filter(|_| feature.policy == AccountPolicy::UserThenCompany);
                Err(Error::NoAccount {
                    feature: feature.name.to_string(),
                    binding: user_binding.cloned(),
                })
            }
        }
    }
}
