//! The commands: each runs in one transaction and returns what to print.

mod accounts;
mod info;

use anyhow::Result;
use mailroom_accounts::Accounts;
use sea_orm::TransactionTrait;
use serde_json::Value;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// What a command prints: text for people, JSON with `--json`, and notes for stderr.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) text: String,
    pub(crate) json: Value,
    pub(crate) notes: Vec<String>,
}

impl Output {
    pub(crate) fn new(text: impl Into<String>, json: Value) -> Self {
        Self {
            text: text.into(),
            json,
            notes: Vec::new(),
        }
    }

    /// Prints the output; notes go to stderr so stdout stays parseable.
    pub(crate) fn print(&self, json: bool) {
        for note in &self.notes {
            eprintln!("note: {note}");
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.json).expect("JSON values serialize")
            );
        } else if !self.text.is_empty() {
            println!("{}", self.text);
        }
    }
}

/// Runs a command against the database in one transaction, committed only on success.
pub(crate) async fn run(cli: Cli) -> Result<Output> {
    let context = Context::open(cli.database_url.as_deref()).await?;
    if let Command::Info = cli.command {
        return info::info(&context).await;
    }
    let transaction = context.db.begin().await?;
    let output = {
        let accounts = Accounts::new(&transaction, &context.key);
        accounts.verify_key().await?;
        accounts::run(&accounts, cli.command).await?
    };
    transaction.commit().await?;
    Ok(output)
}
