//! The sign-in prompt port: how a caller that may talk to a person runs a sign-in in the
//! middle of a send. The CLI implements it for a terminal; the agent has none.

use std::error::Error as StdError;
use std::fmt::Debug;

use crate::{AccountRef, Provider};

/// A sign-in the token source needs before it can hand out a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRequest {
    /// The account that needs it.
    pub account: AccountRef,
    /// Its provider.
    pub provider: Provider,
    /// The address to sign in as (the `login_hint`), empty when not yet known.
    pub address: String,
    /// Why a sign-in is needed, in the user's terms.
    pub reason: String,
}

/// Runs an interactive sign-in and stores its tokens, so that the next token request for
/// the account succeeds.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait SignInPrompt: Send + Sync + Debug {
    /// Signs in for `request`; an error says why it did not complete.
    async fn sign_in(&self, request: &SignInRequest)
    -> Result<(), Box<dyn StdError + Send + Sync>>;
}
