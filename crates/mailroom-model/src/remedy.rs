//! What a person should do about a failure, as data.
//!
//! Library errors say what went wrong in plain prose that names no program, and carry a
//! [`Remedy`]: the action that fixes it. Each front end renders the remedy its own way —
//! the `mailroom` CLI as the command to run, a console as a button or a link, a host
//! application as its own screen — so no library tells a user to type a command that the
//! host may not ship.

use std::fmt;

use serde::Serialize;

use crate::{AccountId, AccountRef, Binding, Provider, Route};

/// An action that fixes a failure. `Display` is its prose, naming no program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Remedy {
    /// An administrator signs in for the account (the browser flow when `browser_only`,
    /// because the provider refuses the device flow for these scopes). `account` is
    /// `None` where the failing layer does not know which account it served.
    SignIn {
        /// The account to sign in for, when known.
        account: Option<AccountRef>,
        /// The device-code flow cannot be used.
        browser_only: bool,
    },
    /// Register the provider's OAuth app (its client id).
    RegisterApp {
        /// The provider.
        provider: Provider,
    },
    /// Review the OAuth app registration (client id, tenant, issuer, endpoints).
    ReviewApp {
        /// The provider, when known.
        provider: Option<Provider>,
    },
    /// Register this exact redirect URI with the provider's app (Entra: a "Mobile and
    /// desktop applications" platform; Google: a Desktop app client accepts loopback IP
    /// URIs without registration), or set the app's redirect URI to the one registered.
    RegisterRedirectUri {
        /// The provider.
        provider: Provider,
        /// The URI to register, as the provider's console takes it (no port).
        redirect_uri: String,
    },
    /// Set the Microsoft app's tenant to the directory (tenant) id or a verified domain
    /// of its single-tenant registration (`organizations` and `common` need a
    /// multi-tenant one).
    SetMicrosoftTenant,
    /// Point the Google app at another Gmail API URL (a proxy or test endpoint), or fix
    /// the one configured.
    SetGmailApiUrl,
    /// Configure the company account.
    ConfigureCompany,
    /// Add a user account bound to this binding.
    AddBoundAccount {
        /// The binding a new account would carry.
        binding: Binding,
    },
    /// Remove the binding from the account that holds it.
    Unbind {
        /// The account that holds the binding.
        account: AccountId,
    },
    /// Correct or remove the account's settings.
    EditAccount {
        /// The account, when known.
        account: Option<AccountRef>,
    },
    /// List the user accounts to find the right id.
    ListAccounts,
    /// Switch the account from a password to OAuth (the provider's preset) and sign in.
    SwitchToOAuth {
        /// The account, when known.
        account: Option<AccountRef>,
    },
    /// An Exchange administrator enables SMTP AUTH for the mailbox (or the tenant).
    EnableSmtpAuth {
        /// The mailbox, when known.
        mailbox: Option<String>,
    },
    /// SMTP AUTH is disabled for the mailbox (or its tenant): an Exchange administrator
    /// enables it, or the account sends through Microsoft Graph instead (provider
    /// microsoft, route graph), which needs no SMTP AUTH, after a sign-in that grants
    /// `Mail.Send`.
    EnableSmtpAuthOrUseGraph {
        /// The account, when known.
        account: Option<AccountRef>,
        /// The mailbox, when known.
        mailbox: Option<String>,
    },
    /// Sign in again and grant the permission (scope) the send needs.
    GrantScope {
        /// The account, when known.
        account: Option<AccountRef>,
        /// The scope, e.g. `https://www.googleapis.com/auth/gmail.send`.
        scope: String,
    },
    /// Set the app's app-only credential again: a new client secret or certificate
    /// (Microsoft), or a new service account key (Google).
    SetAppCredential {
        /// The provider.
        provider: Provider,
    },
    /// A Google Workspace administrator authorizes the service account's client id for
    /// `https://www.googleapis.com/auth/gmail.send` under domain-wide delegation.
    ConfigureDomainWideDelegation {
        /// The service account's client id or address, when known.
        client: Option<String>,
    },
    /// An Exchange administrator lets the app send as the mailbox: on the Graph route an
    /// RBAC for Applications assignment of "Application Mail.Send" whose scope includes
    /// the mailbox; on SMTP the app's Exchange service principal with `FullAccess` on it.
    GrantAppMailboxAccess {
        /// The app's client (application) id, when known.
        client_id: Option<String>,
        /// The mailbox, when known.
        mailbox: Option<String>,
        /// The route the app sends on.
        route: Route,
    },
    /// Set the company account's fax format string.
    SetFaxFormat,
    /// Look at the company account's fax format string.
    ShowFaxFormat,
    /// Check that the database is reachable and migrated, and where the key is.
    CheckDatabase,
    /// Give a readable PEM file of extra trusted root certificates, or none.
    CheckRootCertificate,
    /// Give this host the key the database's secrets are sealed with (copy it from a
    /// host that has it, beside this host's keys); if it is lost everywhere, forget the
    /// stored secrets and sign in again.
    RestoreKey {
        /// The fingerprint of the key the database needs.
        key_id: String,
    },
    /// Prepare a key rotation (make the next key and give it to every host) before
    /// committing one.
    PrepareKeyRotation,
    /// List the queued messages to find the right id.
    ListQueue,
    /// Look at a queued message again.
    ShowQueued {
        /// The message id.
        id: i64,
    },
    /// Cancel a queued message.
    CancelQueued {
        /// The message id.
        id: i64,
    },
    /// Remove the account anyway, re-resolving its queued and held messages (to the
    /// account their feature picks without it), or cancel those messages first.
    RemoveAccountForce {
        /// The account to remove.
        account: AccountId,
        /// The queued and held messages that use it.
        messages: Vec<i64>,
    },
}

impl Remedy {
    /// The same remedy with the account filled in where it was not known.
    #[must_use]
    pub fn for_account(self, known: AccountRef) -> Self {
        match self {
            Remedy::SignIn {
                account: None,
                browser_only,
            } => Remedy::SignIn {
                account: Some(known),
                browser_only,
            },
            Remedy::EditAccount { account: None } => Remedy::EditAccount {
                account: Some(known),
            },
            Remedy::SwitchToOAuth { account: None } => Remedy::SwitchToOAuth {
                account: Some(known),
            },
            Remedy::GrantScope {
                account: None,
                scope,
            } => Remedy::GrantScope {
                account: Some(known),
                scope,
            },
            Remedy::EnableSmtpAuthOrUseGraph {
                account: None,
                mailbox,
            } => Remedy::EnableSmtpAuthOrUseGraph {
                account: Some(known),
                mailbox,
            },
            other => other,
        }
    }
}

fn the_account(account: Option<&AccountRef>) -> String {
    account.map_or_else(|| "this account".to_owned(), ToString::to_string)
}

impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remedy::SignIn {
                account,
                browser_only,
            } => {
                write!(
                    f,
                    "an administrator signs in for {}",
                    the_account(account.as_ref())
                )?;
                if *browser_only {
                    f.write_str(" through the browser (the device-code flow is not allowed)")?;
                }
                Ok(())
            }
            Remedy::RegisterApp { provider } => {
                write!(f, "register the {provider} OAuth app with its client id")
            }
            Remedy::ReviewApp { provider: Some(p) } => {
                write!(
                    f,
                    "review the {p} OAuth app registration (client id, tenant, issuer)"
                )
            }
            Remedy::ReviewApp { provider: None } => {
                f.write_str("review the OAuth app registration (client id, tenant, issuer)")
            }
            Remedy::RegisterRedirectUri {
                provider: Provider::Microsoft,
                redirect_uri,
            } => write!(
                f,
                "add the redirect URI {redirect_uri} to the Microsoft app registration (Authentication, platform \"Mobile and desktop applications\"), or set the app's redirect URI to one that is registered there"
            ),
            Remedy::RegisterRedirectUri {
                provider,
                redirect_uri,
            } => write!(
                f,
                "use an OAuth client of type Desktop app for the {provider} app (it accepts {redirect_uri} on any port), or register {redirect_uri} with the client"
            ),
            Remedy::SetMicrosoftTenant => f.write_str(
                "set the Microsoft app's tenant to the directory (tenant) id or a verified domain of its single-tenant registration (organizations or common only with a multi-tenant registration)",
            ),
            Remedy::SetGmailApiUrl => f.write_str("check the Google app's Gmail API URL"),
            Remedy::ConfigureCompany => f.write_str("configure the company account"),
            Remedy::AddBoundAccount { binding } => {
                write!(f, "add a user account bound to {binding}")
            }
            Remedy::Unbind { account } => write!(f, "remove the binding of account {account}"),
            Remedy::EditAccount { account } => {
                write!(f, "correct or remove {}", the_account(account.as_ref()))
            }
            Remedy::ListAccounts => f.write_str("list the accounts to find the right id"),
            Remedy::SwitchToOAuth { account } => write!(
                f,
                "switch {} to OAuth (provider microsoft) and sign in",
                the_account(account.as_ref())
            ),
            Remedy::EnableSmtpAuth { mailbox: Some(m) } => write!(
                f,
                "an Exchange administrator enables SMTP AUTH for the mailbox {m}"
            ),
            Remedy::EnableSmtpAuth { mailbox: None } => {
                f.write_str("an Exchange administrator enables SMTP AUTH for the mailbox")
            }
            Remedy::EnableSmtpAuthOrUseGraph { account, mailbox } => write!(
                f,
                "an Exchange administrator enables SMTP AUTH for the mailbox{}, or {} sends through Microsoft Graph instead (provider microsoft, route graph; no SMTP AUTH needed) after a sign-in that grants Mail.Send",
                mailbox.as_ref().map(|m| format!(" {m}")).unwrap_or_default(),
                the_account(account.as_ref())
            ),
            Remedy::GrantScope { account, scope } => write!(
                f,
                "sign in again for {} and grant the permission {scope}",
                the_account(account.as_ref())
            ),
            Remedy::SetAppCredential { provider: Provider::Google } => f.write_str(
                "set the Google app's service account key again (a new JSON key of the service account)",
            ),
            Remedy::SetAppCredential { provider } => write!(
                f,
                "set the {provider} app's app-only credential again (a new client secret, or a certificate uploaded to the app registration, with its private key)"
            ),
            Remedy::ConfigureDomainWideDelegation { client } => write!(
                f,
                "a Google Workspace super administrator authorizes the service account{} for the scope https://www.googleapis.com/auth/gmail.send (Admin console: Security, Access and data control, API controls, Domain-wide delegation)",
                client.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
            ),
            Remedy::GrantAppMailboxAccess {
                client_id,
                mailbox,
                route: Route::Graph,
            } => write!(
                f,
                "an Exchange administrator lets the app{} send as {} with RBAC for Applications: an assignment of the role \"Application Mail.Send\" to the app's service principal, with a management scope that includes the mailbox",
                client_id.as_ref().map(|c| format!(" {c}")).unwrap_or_default(),
                mailbox.as_deref().unwrap_or("the mailbox")
            ),
            Remedy::GrantAppMailboxAccess {
                client_id,
                mailbox,
                route: Route::Smtp,
            } => write!(
                f,
                "an Exchange administrator registers the app{}'s service principal in Exchange Online and gives it FullAccess to {} (the application permission SMTP.SendAsApp needs admin consent too)",
                client_id.as_ref().map(|c| format!(" {c}")).unwrap_or_default(),
                mailbox.as_deref().unwrap_or("the mailbox")
            ),
            Remedy::SetFaxFormat => f.write_str("set the company account's fax format string"),
            Remedy::ShowFaxFormat => f.write_str("check the company account's fax format string"),
            Remedy::CheckDatabase => {
                f.write_str("check that the database is reachable and migrated")
            }
            Remedy::CheckRootCertificate => {
                f.write_str("give a readable PEM file of trusted root certificates, or none")
            }
            Remedy::RestoreKey { key_id } => write!(
                f,
                "give this host the key with fingerprint {key_id} (copy it from a host that has it, beside this host's keys), or, if it is lost everywhere, forget the stored secrets and sign in again"
            ),
            Remedy::PrepareKeyRotation => {
                f.write_str("prepare a key rotation and give the new key to every host first")
            }
            Remedy::ListQueue => f.write_str("list the queued messages to find the right id"),
            Remedy::ShowQueued { id } => write!(f, "look at queued message {id} again"),
            Remedy::CancelQueued { id } => write!(f, "cancel queued message {id}"),
            Remedy::RemoveAccountForce { account, messages } => write!(
                f,
                "remove account {account} with force, which re-resolves its queued messages to the account their feature picks without it, or cancel the messages ({}) first",
                messages
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_account_fills_only_an_unknown_account() {
        let unknown = Remedy::SignIn {
            account: None,
            browser_only: false,
        };
        assert_eq!(
            unknown.for_account(AccountRef::User(4)),
            Remedy::SignIn {
                account: Some(AccountRef::User(4)),
                browser_only: false
            }
        );
        let known = Remedy::EditAccount {
            account: Some(AccountRef::Company),
        };
        assert_eq!(known.clone().for_account(AccountRef::User(4)), known);
        assert_eq!(
            Remedy::GrantScope {
                account: None,
                scope: "s".into()
            }
            .for_account(AccountRef::Company),
            Remedy::GrantScope {
                account: Some(AccountRef::Company),
                scope: "s".into()
            }
        );
        assert_eq!(
            Remedy::ListQueue.for_account(AccountRef::Company),
            Remedy::ListQueue
        );
    }

    #[test]
    fn prose_names_the_account_and_no_program() {
        let text = Remedy::SignIn {
            account: Some(AccountRef::User(4)),
            browser_only: true,
        }
        .to_string();
        assert_eq!(
            text,
            "an administrator signs in for account 4 through the browser (the device-code flow is not allowed)"
        );
        assert_eq!(
            Remedy::EnableSmtpAuth {
                mailbox: Some("orders@contoso.example".into())
            }
            .to_string(),
            "an Exchange administrator enables SMTP AUTH for the mailbox orders@contoso.example"
        );
        let graph = Remedy::EnableSmtpAuthOrUseGraph {
            account: None,
            mailbox: Some("orders@contoso.example".into()),
        }
        .for_account(AccountRef::User(4));
        assert_eq!(
            graph.to_string(),
            "an Exchange administrator enables SMTP AUTH for the mailbox orders@contoso.example, or account 4 sends through Microsoft Graph instead (provider microsoft, route graph; no SMTP AUTH needed) after a sign-in that grants Mail.Send"
        );
    }

    #[test]
    fn serializes_as_an_action_with_its_fields() {
        let json = serde_json::to_value(Remedy::SignIn {
            account: Some(AccountRef::User(4)),
            browser_only: false,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action": "sign_in", "account": {"kind": "user", "id": 4}, "browser_only": false})
        );
        assert_eq!(
            serde_json::to_value(Remedy::CancelQueued { id: 12 }).unwrap(),
            serde_json::json!({"action": "cancel_queued", "id": 12})
        );
        assert_eq!(
            serde_json::to_value(Remedy::RegisterRedirectUri {
                provider: Provider::Microsoft,
                redirect_uri: "http://localhost".into()
            })
            .unwrap(),
            serde_json::json!({"action": "register_redirect_uri", "provider": "microsoft", "redirect_uri": "http://localhost"})
        );
        assert_eq!(
            serde_json::to_value(Remedy::SetMicrosoftTenant).unwrap(),
            serde_json::json!({"action": "set_microsoft_tenant"})
        );
    }

    #[test]
    fn the_redirect_uri_remedy_names_the_uri_and_where_it_goes() {
        let text = Remedy::RegisterRedirectUri {
            provider: Provider::Microsoft,
            redirect_uri: "http://localhost".into(),
        }
        .to_string();
        assert!(
            text.starts_with(
                "add the redirect URI http://localhost to the Microsoft app registration"
            ),
            "{text}"
        );
        assert!(text.contains("Mobile and desktop applications"), "{text}");
        let text = Remedy::RegisterRedirectUri {
            provider: Provider::Google,
            redirect_uri: "http://127.0.0.1".into(),
        }
        .to_string();
        assert!(text.contains("Desktop app"), "{text}");
    }
}
