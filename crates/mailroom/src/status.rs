//! Which account a stored token belongs to, and whether an account is signed in: what
//! every front end's account and token lists show.

use mailroom_accounts::{Account, Accounts};
use mailroom_crypto::KeyRing;
use mailroom_model::{AccountRef, Auth};
use mailroom_tokens::storage::{TokenStore, TokenSummary};
use sea_orm::ConnectionTrait;
use serde::Serialize;

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

/// Every stored token, with the accounts it belongs to.
pub async fn owned_tokens<C: ConnectionTrait>(db: &C, key: &KeyRing) -> Result<Vec<OwnedToken>> {
    let tokens = TokenStore::new(db, key).list().await?;
    let accounts = Accounts::new(db, key).all_accounts().await?;
    Ok(tokens
        .into_iter()
        .map(|token| OwnedToken {
            accounts: accounts
                .iter()
                .filter(|account| owns(account, &token))
                .map(Account::account_ref)
                .collect(),
            token,
        })
        .collect())
}

/// The stored tokens' summaries (for [`sign_in_state`]).
pub async fn stored_tokens<C: ConnectionTrait>(db: &C, key: &KeyRing) -> Result<Vec<TokenSummary>> {
    Ok(TokenStore::new(db, key).list().await?)
}
