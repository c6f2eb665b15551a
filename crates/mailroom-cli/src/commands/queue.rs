//! `mailroom queue list|show|retry|cancel`: the outbox as an administrator sees it.

use anyhow::Result;
use clap::Subcommand;
use mailroom::{Outbox, OutboxStatus, QueuedMessage};
use serde_json::json;

use super::Output;
use crate::context::Context;

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    #[command(
        after_help = "Examples:\n  mailroom queue list\n  mailroom queue list --status held\n  mailroom queue list --status failed --json"
    )]
    /// List queued messages, newest first: status, attempts, next attempt, last error.
    List {
        /// Only messages of this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<OutboxStatus>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u64,
    },
    #[command(after_help = "Examples:\n  mailroom queue show 12")]
    /// Show one queued message.
    Show {
        /// The outbox id.
        id: i64,
    },
    #[command(after_help = "Examples:\n  mailroom queue retry 12")]
    /// Make a failed or held message due now.
    Retry {
        /// The outbox id.
        id: i64,
    },
    #[command(after_help = "Examples:\n  mailroom queue cancel 12")]
    /// Cancel a message that has not been sent.
    Cancel {
        /// The outbox id.
        id: i64,
    },
    /// Delete finished messages (sent, cancelled or failed) older than a duration and
    /// print how many were removed. The agent also deletes sent and cancelled messages
    /// older than the `outbox-retention-days` setting.
    #[command(
        after_help = "Examples:\n  mailroom queue purge --status sent --older-than 30d\n  mailroom queue purge --status sent --status cancelled --older-than 12h"
    )]
    Purge {
        /// Which finished messages (repeatable): sent, cancelled or failed.
        #[arg(long, required = true, value_parser = parse_purge_status)]
        status: Vec<OutboxStatus>,
        /// Only messages last changed longer ago than this: e.g. 30d, 12h, 45m.
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        older_than: chrono::Duration,
    },
}

fn parse_purge_status(text: &str) -> Result<OutboxStatus, String> {
    let status = parse_status(text)?;
    match status {
        OutboxStatus::Sent | OutboxStatus::Cancelled | OutboxStatus::Failed => Ok(status),
        other => Err(format!(
            "{other} messages are not finished and cannot be purged; use sent, cancelled or failed (cancel a message first with `mailroom queue cancel ID`)"
        )),
    }
}

/// `30d`, `12h`, `45m`, `90s`, `2w`.
pub(crate) fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let bad =
        || format!("`{text}` is not a duration; use a number and a unit: 30d, 12h, 45m, 90s or 2w");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(bad)
}

fn parse_status(text: &str) -> Result<OutboxStatus, String> {
    text.trim().to_ascii_lowercase().parse().map_err(|_| {
        format!("`{text}` is not a status; use queued, sending, held, sent, failed or cancelled")
    })
}

fn time(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn one_line(text: &str, width: usize) -> String {
    let line: String = text.replace(['\r', '\n'], " ");
    if line.chars().count() > width {
        let cut: String = line.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        line
    }
}

fn table(messages: &[QueuedMessage]) -> String {
    let header = [
        "ID",
        "Status",
        "Subject",
        "Attempts",
        "Next attempt",
        "To",
        "Last error",
    ];
    let rows: Vec<[String; 7]> = messages
        .iter()
        .map(|message| {
            [
                message.id.to_string(),
                message.status.to_string(),
                one_line(message.subject.as_deref().unwrap_or(""), 40),
                message.attempts.to_string(),
                match message.status {
                    OutboxStatus::Queued | OutboxStatus::Held => time(&message.next_attempt_at),
                    _ => String::new(),
                },
                one_line(&message.recipients.join(", "), 40),
                message
                    .last_error
                    .as_deref()
                    .map(|error| one_line(error, 60))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    crate::output::render_table(&header, &rows)
}

fn details(message: &QueuedMessage) -> String {
    let mut lines = vec![
        ("ID", message.id.to_string()),
        ("Message-ID", message.message_id.clone()),
        (
            "Subject",
            message
                .subject
                .clone()
                .unwrap_or_else(|| "(not stored)".to_owned()),
        ),
        ("Status", message.status.to_string()),
        ("Attempts", message.attempts.to_string()),
    ];
    if matches!(message.status, OutboxStatus::Queued | OutboxStatus::Held) {
        lines.push(("Next attempt", time(&message.next_attempt_at)));
    }
    lines.push((
        "Last error",
        message
            .last_error
            .clone()
            .unwrap_or_else(|| "(none)".to_owned()),
    ));
    lines.push(("Account", message.account.to_string()));
    lines.push(("Feature", message.feature.clone()));
    if let Some(user) = &message.system_user {
        lines.push(("System user", user.clone()));
    }
    lines.push(("From", message.sender.clone()));
    lines.push(("Recipients", message.recipients.join(", ")));
    lines.push(("Size", format!("{} bytes", message.size)));
    lines.push(("Queued", time(&message.created_at)));
    if let (Some(owner), Some(until)) = (&message.lease_owner, &message.lease_until) {
        lines.push(("Leased to", format!("{owner} until {}", time(until))));
    }
    if let Some(sent) = &message.sent_at {
        lines.push(("Sent", time(sent)));
    }
    if let Some(transport) = &message.transport {
        lines.push(("Transport", transport.clone()));
    }
    if let Some(id) = &message.provider_message_id {
        lines.push(("Provider message id", id.clone()));
    }
    if let Some(reply) = &message.reply {
        lines.push(("Server reply", reply.clone()));
    }
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) async fn queue(context: &Context, command: QueueCommand) -> Result<Output> {
    mailroom::Accounts::new(&context.db, &context.key)
        .verify_key()
        .await?;
    let outbox = Outbox::new(&context.db);
    Ok(match command {
        QueueCommand::List { status, limit } => {
            let messages = outbox.list(status, limit).await?;
            let text = if messages.is_empty() {
                "no queued messages; queue one with `mailroom send --queue ...`".to_owned()
            } else {
                table(&messages)
            };
            Output::new(text, json!(messages))
        }
        QueueCommand::Show { id } => {
            let message = outbox.get(id).await?;
            Output::new(details(&message), json!(message))
        }
        QueueCommand::Retry { id } => {
            let message = outbox.retry(id).await?;
            Output::new(
                format!("message {id} is due now; `mailroom agent` sends it"),
                json!(message),
            )
        }
        QueueCommand::Purge { status, older_than } => {
            let cutoff = chrono::Utc::now() - older_than;
            let removed = outbox.purge(&status, cutoff, None).await?;
            let names: Vec<&str> = status.iter().map(|s| s.as_str()).collect();
            Output::new(
                format!("{removed} message(s) removed"),
                json!({ "removed": removed, "status": names, "cutoff": cutoff }),
            )
        }
        QueueCommand::Cancel { id } => {
            let message = outbox.cancel(id).await?;
            Output::new(format!("message {id} cancelled"), json!(message))
        }
    })
}
