//! Which account a stored token belongs to, and whether an account is signed in: what
//! every front end's account and token lists show.

use mailroom_accounts::{Account, Accounts};
use mailroom_crypto::KeyRing;
use mailroom_model::{AccountRef, Auth};
use mailroom_tokens::storage::{TokenStore, TokenSummary};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use std::collections::HashMap;

use crate::Result;

/// Whether an account is signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInState {
    /// An OAuth account with a stored token.
    SignedIn,
    /// An OAuth account without a stored token: an administrator signs in.
    NotSignedIn,
    /// A password account, or an app-only account (it sends with the app's own
    /// credentials): there is no sign-in.
    NotApplicable,
}

impl SignInState {
    /// A short word for a table.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInState::SignedIn => "yes",
            SignInState::NotSignedIn => "no",
            SignInState::NotApplicable => "n/a",
        }
    }
}

/// Whether `account` sends with `token`: the sign-in its `token_identity` names, or for an
/// account from before identities were kept, the one stored under its SMTP user.
fn owns(account: &Account, token: &TokenSummary) -> bool {
    let server = account.server();
    if !server.provider.uses_oauth() || server.provider != token.provider {
        return false;
    }
    // An app-only account sends with the app's token for its route (Microsoft: one per
    // resource, shared by every mailbox of the app) or for its mailbox (Google); a
    // delegated one never with an app's.
    if (server.auth == Auth::AppOnly) != token.credential.is_some() {
        return false;
    }
    if server.auth == Auth::AppOnly {
        let resource = mailroom_tokens::app_only::AppResource::of_server(server);
        return token
            .identity_key
            .ends_with(&format!(":{}", resource.key()));
    }
    match &server.token_identity {
        Some(identity) => *identity == token.identity_key,
        None => {
            !server.smtp_user.trim().is_empty()
                && server.smtp_user.trim().to_lowercase() == token.identity_key
        }
    }
}

/// Whether `account` is signed in, given the stored tokens.
pub fn sign_in_state(account: &Account, tokens: &[TokenSummary]) -> SignInState {
    let server = account.server();
    if !server.provider.uses_oauth() || server.auth == Auth::AppOnly {
        SignInState::NotApplicable
    } else if tokens.iter().any(|token| owns(account, token)) {
        SignInState::SignedIn
    } else {
        SignInState::NotSignedIn
    }
}

/// A stored token and the accounts that send with it (see `owns`); none when no account
/// uses it any more.
#[derive(Debug, Clone, Serialize)]
pub struct OwnedToken {
    /// The token's summary (never a secret).
    #[serde(flatten)]
    pub token: TokenSummary,
    /// The accounts it belongs to.
    pub accounts: Vec<AccountRef>,
}

/// For each of `accounts`, the indexes of the `tokens` it sends with (see `owns`): a
/// delegated account's by its identity key in a map, an app-only account's by a scan
/// (there are few), so a list of many accounts and tokens is not their product.
fn ownership(accounts: &[Account], tokens: &[TokenSummary]) -> Vec<Vec<usize>> {
    let mut by_identity: HashMap<(mailroom_model::Provider, &str), Vec<usize>> = HashMap::new();
    for (index, token) in tokens.iter().enumerate() {
        if token.credential.is_none() {
            by_identity
                .entry((token.provider, token.identity_key.as_str()))
                .or_default()
                .push(index);
        }
    }
    accounts
        .iter()
        .map(|account| {
            let server = account.server();
            if server.auth == Auth::AppOnly {
                return (0..tokens.len())
                    .filter(|&index| owns(account, &tokens[index]))
                    .collect();
            }
            let identity = match &server.token_identity {
                Some(identity) => identity.clone(),
                None => server.smtp_user.trim().to_lowercase(),
            };
            by_identity
                .get(&(server.provider, identity.as_str()))
                .map(|found| {
                    found
                        .iter()
                        .copied()
                        .filter(|&index| owns(account, &tokens[index]))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Every stored token, with the accounts it belongs to.
pub async fn owned_tokens<C: ConnectionTrait>(db: &C, key: &KeyRing) -> Result<Vec<OwnedToken>> {
    let tokens = TokenStore::new(db, key).list().await?;
    let accounts = Accounts::new(db, key).all_accounts().await?;
    let mut owners: Vec<Vec<AccountRef>> = vec![Vec::new(); tokens.len()];
    for (account, owned) in accounts.iter().zip(ownership(&accounts, &tokens)) {
        for index in owned {
            owners[index].push(account.account_ref());
        }
    }
    Ok(tokens
        .into_iter()
        .zip(owners)
        .map(|(token, accounts)| OwnedToken { token, accounts })
        .collect())
}

/// An account as every front end's account list shows it: whether it is signed in, and
/// the token it sends with.
#[derive(Debug, Clone)]
pub struct AccountSignIn {
    /// The account.
    pub account: Account,
    /// Whether it is signed in.
    pub state: SignInState,
    /// The token it sends with, when signed in (never a secret).
    pub token: Option<TokenSummary>,
}

/// Every account (the company account first) with its sign-in, in one read of the
/// accounts and one of the tokens.
pub async fn account_sign_ins<C: ConnectionTrait>(
    db: &C,
    key: &KeyRing,
) -> Result<Vec<AccountSignIn>> {
    let tokens = TokenStore::new(db, key).list().await?;
    let accounts = Accounts::new(db, key).all_accounts().await?;
    let owned = ownership(&accounts, &tokens);
    Ok(accounts
        .into_iter()
        .zip(owned)
        .map(|(account, owned)| {
            let server = account.server();
            let state = if !server.provider.uses_oauth() || server.auth == Auth::AppOnly {
                SignInState::NotApplicable
            } else if owned.is_empty() {
                SignInState::NotSignedIn
            } else {
                SignInState::SignedIn
            };
            AccountSignIn {
                token: owned.first().map(|&index| tokens[index].clone()),
                state,
                account,
            }
        })
        .collect())
}

/// The stored tokens' summaries (for [`sign_in_state`]).
pub async fn stored_tokens<C: ConnectionTrait>(db: &C, key: &KeyRing) -> Result<Vec<TokenSummary>> {
    Ok(TokenStore::new(db, key).list().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sign_in_state_reads_as_the_lists_show_it() {
        assert_eq!(SignInState::SignedIn.as_str(), "yes");
        assert_eq!(SignInState::NotSignedIn.as_str(), "no");
        assert_eq!(SignInState::NotApplicable.as_str(), "n/a");
    }
}
