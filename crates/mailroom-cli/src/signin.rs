//! The terminal side of a sign-in: shows the facade's sign-in step (opens the browser or
//! prints its address, or prints a device code) and waits; storing is the facade's
//! `Mailroom::complete_sign_in`.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use mailroom::{Mailroom, SignInSession, SignInStep};
use mailroom_accounts::Account;
use mailroom_model::{AccountRef, Provider, SignInPrompt, SignInRequest, SystemClock};
use mailroom_tokens::{BrokerConfig, OAuthHttp, TokenBroker, TokenTarget};

use crate::cli::SignInMode;
use crate::context::Context;

/// Shows what the person must do for `session` (opens the browser unless told not to, or
/// prints the device code), then waits for it.
pub(crate) fn show_step(session: &SignInSession, mode: &SignInMode) {
    match session.step() {
        SignInStep::OpenUrl(url) => {
            if mode.no_browser || webbrowser::open(url.as_str()).is_err() {
                eprintln!("Open this address in a browser to sign in:\n\n  {url}\n");
            } else {
                eprintln!(
                    "A browser window was opened to sign in. If it did not open, visit:\n\n  {url}\n"
                );
            }
            if let Some(note) = redirect_note(url) {
                eprintln!("{note}");
            }
        }
        SignInStep::EnterCode {
            verification_uri,
            user_code,
            message,
            expires_in,
        } => {
            let text = message.clone().unwrap_or_else(|| {
                format!("To sign in, open {verification_uri} and enter the code {user_code}.")
            });
            eprintln!("{text}");
            eprintln!(
                "Waiting for the sign-in (the code is valid for {} minutes)...",
                expires_in.as_secs() / 60
            );
            return;
        }
        _ => {}
    }
    eprintln!("Waiting for the sign-in...");
}

/// Where the provider sends the browser back, and what the app registration must list for
/// it (the provider shows a redirect URI it does not know in the browser and mailroom
/// never hears of it, so the terminal says it up front).
fn redirect_note(url: &url::Url) -> Option<String> {
    let sent = url
        .query_pairs()
        .find(|(name, _)| name == "redirect_uri")?
        .1
        .into_owned();
    let mut parsed = url::Url::parse(&sent).ok()?;
    parsed.set_port(None).ok()?;
    let mut registered = parsed.to_string();
    if parsed.path() == "/" && parsed.query().is_none() {
        registered.pop();
    }
    Some(format!(
        "The sign-in returns to {sent}; the app registration must list the redirect URI {registered} (any port).\n"
    ))
}

/// The facade's mode and timeout for the CLI's flags.
pub(crate) fn facade_mode(mode: &SignInMode) -> (mailroom::SignInMode, Duration) {
    let facade = if mode.device_code {
        mailroom::SignInMode::DeviceCode
    } else {
        mailroom::SignInMode::Browser
    };
    (facade, Duration::from_secs(mode.timeout_secs))
}

/// Signs `account` in through the facade's workflow: begin, show, finish (which stores
/// the token, fills an empty SMTP user and releases held messages).
pub(crate) async fn sign_in_account(
    mailroom: &Mailroom,
    account: AccountRef,
    mode: &SignInMode,
) -> Result<String> {
    let (facade, timeout) = facade_mode(mode);
    let session = mailroom.begin_sign_in(account, facade, timeout).await?;
    show_step(&session, mode);
    Ok(session.finish(mailroom).await?)
}

/// The token target of an account.
pub(crate) fn token_target(account: &Account) -> TokenTarget {
    TokenTarget::of_account(account.account_ref(), account.server())
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
        crate::logging::prompting(true);
        let result = self.run(request).await;
        crate::logging::prompting(false);
        result
    }
}

impl TerminalPrompt<'_> {
    async fn run(
        &self,
        request: &SignInRequest,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mailroom = crate::commands::send::open_mailroom(self.context).await?;
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
        let address = sign_in_account(&mailroom, request.account, &mode).await?;
        eprintln!("Signed in as {address}.");
        Ok(())
    }
}
