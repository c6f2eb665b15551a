//! The commands: each runs in one transaction and returns what to print.

mod accounts;
pub(crate) mod agent;
mod completions;
pub(crate) mod console;
pub(crate) mod demo;
pub(crate) mod doctor;
mod info;
mod key;
mod oauth;
pub(crate) mod queue;
pub(crate) mod sandbox;
pub(crate) mod send;

use anyhow::Result;
use mailroom_accounts::Accounts;
use serde_json::Value;

use crate::cli::{AccountCommand, AppCommand, Cli, Command, KeyCommand, TokenCommand};
use crate::context::Context;

/// What a command prints: text for people, JSON with `--json`, and notes for stderr.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) text: String,
    pub(crate) json: Value,
    pub(crate) notes: Vec<String>,
    /// Printed, but the command found a problem: exit 1 (e.g. `doctor`).
    pub(crate) failed: bool,
}

impl Output {
    pub(crate) fn new(text: impl Into<String>, json: Value) -> Self {
        Self {
            text: text.into(),
            json,
            notes: Vec::new(),
            failed: false,
        }
    }

    /// Prints the output; notes go to stderr so stdout stays parseable.
    pub(crate) fn print(&self, json: bool, quiet: bool) -> std::io::Result<()> {
        if !quiet {
            for note in &self.notes {
                eprintln!("note: {}", crate::remedy::escape_control(note));
            }
        }
        if json {
            crate::logging::print_stdout(
                &serde_json::to_string_pretty(&self.json).expect("JSON values serialize"),
            )
        } else if !self.text.is_empty() {
            crate::logging::print_stdout(&self.text)
        } else {
            Ok(())
        }
    }
}

/// Runs a command against the database in one transaction, committed only on success.
pub(crate) async fn run(cli: Cli) -> Result<Output> {
    // The sandbox needs no database, and the demo makes its own: neither may create the
    // default one. Completions and the manual page come from the clap definition alone.
    match cli.command {
        Command::Completions { shell } => return Ok(completions::completions(shell)),
        Command::Man => return completions::man_page(),
        Command::Sandbox(command) => return sandbox::run(command, cli.json).await,
        Command::Demo(args) => return demo::run(args, cli.database_url.as_deref(), cli.json).await,
        _ => {}
    }
    if let Command::Key(KeyCommand::Reset { .. }) = cli.command {
        return key::reset(cli.database_url.as_deref()).await;
    }
    let context = match Context::open(cli.database_url.as_deref()).await {
        Ok(context) => context,
        // `info` says where things are even when the key is missing.
        Err(error) if matches!(cli.command, Command::Info) => {
            return info::info_without_key(cli.database_url.as_deref(), error).await;
        }
        // `doctor` reports what it cannot open as a problem, and exits 1.
        Err(error) if matches!(cli.command, Command::Doctor(_)) => {
            return Ok(doctor::without_context(&error));
        }
        Err(error) => return Err(error),
    };
    // Commands that talk to a person or a provider run their own, short transactions:
    // a sign-in can take minutes and must not hold the database meanwhile.
    match cli.command {
        Command::Info => info::info(&context).await,
        Command::App(AppCommand::Set(args)) => oauth::app_set(&context, *args).await,
        Command::App(AppCommand::Show) => oauth::app_show(&context).await,
        Command::SignIn(args) => oauth::sign_in(&context, &args.account, &args.mode).await,
        Command::SignOut { account } => oauth::sign_out(&context, &account).await,
        Command::Token(TokenCommand::List) => oauth::token_list(&context).await,
        Command::Token(TokenCommand::Refresh { account }) => {
            oauth::token_refresh(&context, &account).await
        }
        Command::Token(TokenCommand::Access { account }) => {
            oauth::token_access(&context, &account).await
        }
        Command::Key(KeyCommand::Rotate {
            prepare,
            commit,
            new_key_file,
        }) => {
            let step = match (prepare, commit) {
                (true, _) => key::RotationStep::Prepare,
                (_, true) => key::RotationStep::Commit,
                _ => key::RotationStep::Both,
            };
            key::rotate(&context, step, new_key_file.as_deref()).await
        }
        Command::Key(KeyCommand::Show) => key::show(&context).await,
        Command::Account(AccountCommand::Add {
            server,
            bind,
            sign_in: true,
            sign_in_mode,
        }) => {
            accounts::check_add(&server, true, &sign_in_mode)?;
            let change = accounts::server_change(&server)?;
            oauth::add_with_sign_in(&context, &server, change, bind, &sign_in_mode).await
        }
        Command::Account(AccountCommand::Remove { id, force }) => {
            accounts::remove(&context, id, force).await
        }
        Command::Send(args) => send::send(&context, args).await,
        Command::Doctor(args) => doctor::doctor(&context, args).await,
        Command::Agent(args) => agent::agent(&context, args).await,
        Command::Console(args) => console::console(&context, args).await,
        Command::Queue(command) => queue::queue(&context, command).await,
        command => run_in_transaction(&context, command).await,
    }
}

async fn run_in_transaction(context: &Context, command: Command) -> Result<Output> {
    let transaction = mailroom_migrations::begin_write(&context.db).await?;
    let output = {
        let accounts = Accounts::new(&transaction, &context.key);
        accounts.verify_key().await?;
        let tokens = if matches!(
            command,
            Command::Account(AccountCommand::List | AccountCommand::Show { .. })
                | Command::Resolve(_)
        ) {
            mailroom::stored_tokens(&transaction, &context.key).await?
        } else {
            Vec::new()
        };
        accounts::run(&accounts, command, &tokens).await?
    };
    transaction.commit().await?;
    Ok(output)
}
