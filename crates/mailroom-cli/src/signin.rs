//! Interactive sign-in from a terminal: the browser (opened, or its address printed) or a
//! device code, then the token stored and an empty SMTP user filled in, in one transaction.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use mailroom_accounts::{Account, Accounts, BindingChange};
use mailroom_model::{
    AccountRef, Provider, ServerSettingsChange, SignInPrompt, SignInRequest, SystemClock,
};
use mailroom_tokens::{
    AppRegistration, Apps, BrokerConfig, OAuthHttp, SignInOptions, SignedIn, TokenBroker,
    TokenStore, TokenTarget, sign_in_with_browser, sign_in_with_device_code,
};
use sea_orm::TransactionTrait;

use crate::cli::SignInMode;
use crate::context::Context;

/// Runs the interactive part of a sign-in for `app`; nothing is stored.
pub(crate) async fn interactive_sign_in(
    app: &AppRegistration,
    expected: &str,
    mode: &SignInMode,
) -> Result<SignedIn> {
    let options = SignInOptions {
        expected_address: Some(expected.to_owned()).filter(|e| !e.is_empty()),
        timeout: Duration::from_secs(mode.timeout_secs),
    };
    let http = OAuthHttp::new();
    let signed_in = if mode.device_code {
        sign_in_with_device_code(
            &http,
            app,
            &options,
            std::time::SystemTime::now,
            |prompt| {
                let text = prompt.message.clone().unwrap_or_else(|| {
                    format!(
                        "To sign in, open {} and enter the code {}.",
                        prompt.verification_uri, prompt.user_code
                    )
                });
                eprintln!("{text}");
                eprintln!(
                    "Waiting for the sign-in (the code is valid for {} minutes)...",
                    prompt.expires_in.as_secs() / 60
                );
            },
            tokio::time::sleep,
        )
        .await?
    } else {
        let no_browser = mode.no_browser;
        sign_in_with_browser(&http, app, &options, std::time::SystemTime::now, |url| {
            if no_browser || webbrowser::open(url.as_str()).is_err() {
                eprintln!("Open this address in a browser to sign in:\n\n  {url}\n");
            } else {
                eprintln!("A browser window was opened to sign in. If it did not open, visit:\n\n  {url}\n");
            }
            eprintln!("Waiting for the sign-in...");
        })
        .await?
    };
    if !signed_in.has_refresh_token() {
        eprintln!(
            "note: the provider issued no refresh token; this sign-in lasts only until the access token expires"
        );
    }
    Ok(signed_in)
}

/// The token target of an account.
pub(crate) fn token_target(account: &Account) -> TokenTarget {
    TokenTarget {
        account: account.account_ref(),
        provider: account.server().provider,
        address: account.server().smtp_user.clone(),
    }
}

/// Loads an account that signs in with OAuth, and its provider's app.
pub(crate) async fn oauth_account(
    context: &Context,
    account: AccountRef,
) -> Result<(Account, AppRegistration)> {
    let loaded = Accounts::new(&context.db, &context.key)
        .account(account)
        .await?;
    let provider = loaded.server().provider;
    if !provider.uses_oauth() {
        return Err(anyhow!(
            "the {account} uses password SMTP and has no sign-in; set its password with `mailroom {} --password-stdin`",
            match account {
                AccountRef::Company => "company set".to_owned(),
                AccountRef::User(id) => format!("account edit {id}"),
            }
        ));
    }
    let app = Apps::new(&context.db, &context.key)
        .require(provider)
        .await?;
    Ok((loaded, app))
}

/// Stores a sign-in for `account`: the token, and the SMTP user when it was empty, in one
/// transaction. Refuses when the SMTP user changed meanwhile to someone else.
pub(crate) async fn store_sign_in(
    context: &Context,
    account: AccountRef,
    signed_in: &SignedIn,
) -> Result<String> {
    let transaction = context.db.begin().await?;
    let accounts = Accounts::new(&transaction, &context.key);
    let current = accounts.account(account).await?;
    let user = current.server().smtp_user.clone();
    let address = signed_in.identity.address.clone();
    if user.is_empty() {
        let change = ServerSettingsChange {
            smtp_user: Some(address.clone()),
            ..Default::default()
        };
        match account {
            AccountRef::Company => {
                accounts.set_company(&change, None).await?;
            }
            AccountRef::User(id) => {
                accounts
                    .edit_user_account(id, &change, BindingChange::Keep)
                    .await?;
            }
        }
    } else if !user.eq_ignore_ascii_case(&address) {
        return Err(mailroom_tokens::Error::IdentityMismatch {
            signed_in: address,
            expected: user,
        }
        .into());
    }
    TokenStore::new(&transaction, &context.key)
        .save_sign_in(signed_in, chrono::Utc::now())
        .await?;
    transaction.commit().await?;
    release_held_messages(context).await;
    Ok(address)
}

/// After a sign-in, lets the agent retry held messages now. Failing here loses nothing
/// (they are retried at the next hold interval), so it is only logged.
pub(crate) async fn release_held_messages(context: &Context) {
    match mailroom::Outbox::new(&context.db).release_held().await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "held messages released after the sign-in"),
        Err(error) => {
            tracing::warn!(%error, "cannot release held messages; the agent retries them later")
        }
    }
}

/// A broker for this process.
pub(crate) fn broker(context: &Context) -> TokenBroker {
    TokenBroker::new(
        context.db.clone(),
        context.key.clone(),
        OAuthHttp::new(),
        Arc::new(SystemClock),
        BrokerConfig::default(),
    )
}

/// True when a person is at this terminal (stdin and stderr are terminals).
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The terminal's sign-in prompt: offers the browser or (Microsoft) a device code, signs
/// in, and stores the token.
#[derive(Debug)]
pub(crate) struct TerminalPrompt<'a> {
    pub(crate) context: &'a Context,
}

#[async_trait::async_trait]
impl SignInPrompt for TerminalPrompt<'_> {
    async fn sign_in(
        &self,
        request: &SignInRequest,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (_, app) = oauth_account(self.context, request.account).await?;
        eprintln!(
            "A sign-in is needed for {} ({}): {}.",
            if request.address.is_empty() {
                "this account"
            } else {
                &request.address
            },
            request.provider,
            request.reason
        );
        let mut mode = SignInMode {
            timeout_secs: 300,
            ..SignInMode::default()
        };
        if request.provider == Provider::Microsoft {
            eprint!("Sign in with the [b]rowser or a [d]evice code? [b] ");
            std::io::stderr().flush().ok();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .context("cannot read the answer")?;
            mode.device_code = answer.trim().eq_ignore_ascii_case("d");
        }
        let signed_in = interactive_sign_in(&app, &request.address, &mode).await?;
        let address = store_sign_in(self.context, request.account, &signed_in).await?;
        eprintln!("Signed in as {address}.");
        Ok(())
    }
}
