//! `mailroom console`: the administrator's screens in a browser (`mailroom-console`),
//! on loopback unless given a certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use std::io::{IsTerminal, Read};

use clap::{Args, Subcommand};
use mailroom_console::{Console, ConsoleOptions, DEFAULT_LISTEN};
use serde_json::json;

use super::Output;
use super::agent::stop_signal;
use super::send::open_mailroom;
use crate::context::Context;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ConsoleArgs {
    #[command(subcommand)]
    pub(crate) action: Option<ConsoleAction>,
    /// The address to listen on. Anything but loopback needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Open the login URL in this machine's browser.
    #[arg(long)]
    pub(crate) open: bool,
    /// The console's certificate chain (PEM), to serve it over TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Another name the console answers to (its DNS name, as browsers reach it over TLS).
    #[arg(long = "host-name", value_name = "NAME")]
    pub(crate) host_names: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsoleAction {
    /// Set the console's admin password (stored as an Argon2 hash), read without echo from
    /// a terminal or from standard input; with it the login page also takes the password.
    #[command(
        after_help = "Examples:\n  mailroom console set-password\n  printf '%s' \"$CONSOLE_PASSWORD\" | mailroom console set-password\n  mailroom console set-password --remove"
    )]
    SetPassword {
        /// Remove the password: only the one-time login URL opens the console.
        #[arg(long)]
        remove: bool,
    },
}

/// Reads the new password: twice without echo from a terminal, else all of stdin minus
/// one line end.
fn read_new_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New console password: ")
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("Again: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from standard input")?;
    Ok(text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text)
        .to_owned())
}

async fn set_password(context: &Context, remove: bool) -> Result<Output> {
    let mailroom = open_mailroom(context).await?;
    if remove {
        mailroom_console::set_password(&mailroom, None).await?;
        return Ok(Output::new(
            "the console's admin password was removed",
            json!({ "password": false }),
        ));
    }
    let password = read_new_password()?;
    mailroom_console::set_password(&mailroom, Some(&password)).await?;
    Ok(Output::new(
        "the console's admin password is set (stored as an Argon2 hash)",
        json!({ "password": true }),
    ))
}

/// The certificate chain and key as a rustls server configuration.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot read {}", cert.display()))?,
    ))
    .collect::<std::result::Result<Vec<_>, _>>()
    .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no certificate: give the console's certificate chain in PEM",
            cert.display()
        );
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot read {}", key.display()))?,
    ))
    .with_context(|| format!("{} is not a PEM private key", key.display()))?
    .with_context(|| format!("{} holds no private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS setup")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the certificate and the key do not belong together")?;
    Ok(Arc::new(config))
}

pub(crate) async fn console(context: &Context, args: ConsoleArgs) -> Result<Output> {
    if let Some(ConsoleAction::SetPassword { remove }) = args.action {
        return set_password(context, remove).await;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let mailroom = Arc::new(open_mailroom(context).await?);
    let options = ConsoleOptions {
        listen: args.listen,
        tls,
        host_names: args.host_names,
        ..ConsoleOptions::default()
    };
    let console = Console::new(mailroom, options)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another console running? Choose another port with --listen",
                args.listen
            )
        })?;
    let console = console.bound_to(listener.local_addr()?)?;
    let login = console.login_url();
    // The one place the login URL is shown: the administrator's terminal.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("The console is at {}", console.origin());
        eprintln!("Log in (this link works once): {login}");
    }
    if args.open {
        if let Err(error) = webbrowser::open(login.as_str()) {
            tracing::warn!(%error, "cannot open a browser; open the login link yourself");
        }
    }
    let shutdown = stop_signal().await?;
    console.serve(listener, shutdown).await?;
    Ok(Output::new(
        "the console stopped",
        json!({ "stopped": true }),
    ))
}
