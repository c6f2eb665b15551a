//! `mailroom send`: build a message from options and files, then send it now through the
//! facade (prompting for a sign-in in a terminal when needed and allowed) or queue it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use mailroom::{
    AccountRef, Attachment, Mailroom, MailroomOptions, MessageDraft, Preview, Priority, Receipt,
    SendRequest,
};
use serde_json::json;

use super::Output;
use crate::context::Context;
use crate::signin::{TerminalPrompt, interactive};

/// The environment variable naming a PEM file of extra trusted root certificates.
pub(crate) const CA_FILE_VARIABLE: &str = "MAILROOM_CA_FILE";

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// A To recipient (repeatable): box@example.com or "Name <box@example.com>".
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) to: Vec<String>,
    /// A Cc recipient (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) cc: Vec<String>,
    /// A Bcc recipient (repeatable); never visible to the other recipients.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) bcc: Vec<String>,
    /// A fax number (repeatable), sent through the company account's email-to-fax format.
    #[arg(long, value_name = "NUMBER")]
    pub(crate) fax: Vec<String>,
    /// The From address, when not the account's SMTP user (needs Send As permission).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) from: Option<String>,
    /// The Reply-To address.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) reply_to: Option<String>,
    /// The subject.
    #[arg(long)]
    pub(crate) subject: String,
    /// The plain text body.
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file", required_unless_present_any = ["body_file", "html_file"])]
    pub(crate) body: Option<String>,
    /// Read the plain text body from a file (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub(crate) body_file: Option<PathBuf>,
    /// Read an HTML body from a file (UTF-8); with a text body, both are sent as
    /// alternatives.
    #[arg(long, value_name = "FILE")]
    pub(crate) html_file: Option<PathBuf>,
    /// Attach a file (repeatable); its content type comes from the file name.
    #[arg(long, value_name = "FILE")]
    pub(crate) attach: Vec<PathBuf>,
    /// The system user signed in to the host application (chooses their bound account).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// The sending feature: sales-document, smart-printing or automation-agent.
    #[arg(long, value_name = "NAME", default_value = mailroom::SALES_DOCUMENT)]
    pub(crate) feature: String,
    /// Send with the company account, whatever the user and feature.
    #[arg(long, conflicts_with = "account")]
    pub(crate) company: bool,
    /// Send with this user account (by id), whatever the user and feature.
    #[arg(long, value_name = "ID")]
    pub(crate) account: Option<i64>,
    /// Resolve the account and build the message, print what would be sent (account and
    /// why, transport, envelope, size) and send nothing: no network, no sign-in.
    #[arg(long, conflicts_with = "queue")]
    pub(crate) dry_run: bool,
    /// Never prompt for a sign-in; fail with "Failed to obtain an access token" instead.
    #[arg(long)]
    pub(crate) no_sign_in: bool,
    /// Store the message in the outbox for `mailroom agent` and print its id.
    #[arg(long)]
    pub(crate) queue: bool,
    /// With --queue: which queued messages the agent sends first, across mailboxes:
    /// interactive (a person is waiting), normal (the default) or bulk (after everything
    /// else that is due).
    #[arg(long, value_name = "PRIORITY", value_parser = parse_priority)]
    pub(crate) priority: Option<Priority>,
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    text.parse()
}

/// The facade options of this process: the database key, and `MAILROOM_CA_FILE` as an
/// extra trusted root for both transports.
pub(crate) fn mailroom_options(context: &Context) -> Result<MailroomOptions> {
    let mut options = MailroomOptions::new(context.key.clone());
    if let Some(path) = std::env::var_os(CA_FILE_VARIABLE).filter(|path| !path.is_empty()) {
        let pem = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {CA_FILE_VARIABLE}={}; point it at a PEM file of trusted root certificates or unset it",
                PathBuf::from(&path).display()
            )
        })?;
        options.extra_root_pem = Some(pem);
    }
    Ok(options)
}

pub(crate) async fn open_mailroom(context: &Context) -> Result<Mailroom> {
    Ok(Mailroom::with_connection(context.db.clone(), mailroom_options(context)?).await?)
}

async fn read_text(path: &PathBuf, what: &str) -> Result<String> {
    tokio::fs::read_to_string(path).await.with_context(|| {
        format!(
            "cannot read the {what} file {}; check the path and that it is UTF-8 text",
            path.display()
        )
    })
}

async fn draft(args: &SendArgs) -> Result<MessageDraft> {
    let text = match (&args.body, &args.body_file) {
        (Some(body), _) => Some(body.clone()),
        (None, Some(path)) => Some(read_text(path, "body").await?),
        (None, None) => None,
    };
    let html = match &args.html_file {
        Some(path) => Some(read_text(path, "HTML").await?),
        None => None,
    };
    let mut attachments = Vec::with_capacity(args.attach.len());
    for path in &args.attach {
        attachments.push(Attachment::from_path(path).await?);
    }
    Ok(MessageDraft {
        from: args.from.clone(),
        to: args.to.clone(),
        cc: args.cc.clone(),
        bcc: args.bcc.clone(),
        fax: args.fax.clone(),
        reply_to: args.reply_to.clone(),
        subject: args.subject.clone(),
        text,
        html,
        attachments,
    })
}

fn receipt_text(receipt: &Receipt) -> String {
    let mut lines = vec![
        ("Sent", receipt.message_id.clone()),
        (
            "Account",
            format!("{} ({})", receipt.account, receipt.account_user),
        ),
        ("Why", receipt.reason.clone()),
        ("Transport", receipt.transport.to_string()),
    ];
    if let Some(id) = &receipt.provider_message_id {
        lines.push(("Provider message id", id.clone()));
    }
    lines.push(("Server reply", receipt.reply.clone()));
    if receipt.attempts > 1 {
        lines.push(("Attempts", receipt.attempts.to_string()));
    }
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn preview_text(preview: &Preview) -> String {
    let lines = [
        ("Dry run", "nothing was sent".to_owned()),
        (
            "Account",
            format!("{} ({})", preview.account, preview.address),
        ),
        ("Why", preview.reason.clone()),
        ("Transport", preview.transport.to_string()),
        ("Envelope from", preview.sender.clone()),
        ("Envelope to", preview.recipients.join(", ")),
        ("Size", format!("{} bytes", preview.size)),
    ];
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) async fn send(context: &Context, args: SendArgs) -> Result<Output> {
    if args.priority.is_some() && !args.queue {
        return Err(crate::UsageError(
            "--priority only applies with --queue: it orders the outbox, and a message sent now waits for nothing; add --queue, or leave --priority out".to_owned(),
        )
        .into());
    }
    let mailroom = open_mailroom(context).await?;
    let message = draft(&args).await?;
    let prompt = TerminalPrompt { context };
    let request = SendRequest {
        feature: args.feature.clone(),
        system_user: args.user.clone(),
        account: match (args.account, args.company) {
            (Some(id), _) => Some(AccountRef::User(id)),
            (None, true) => Some(AccountRef::Company),
            (None, false) => None,
        },
        message,
        sign_in: (!args.no_sign_in && !args.queue && interactive())
            .then_some(&prompt as &dyn mailroom::SignInPrompt),
        priority: args.priority.unwrap_or_default(),
    };
    if args.dry_run {
        let preview = mailroom.prepare_preview(&request).await?;
        return Ok(Output::new(preview_text(&preview), json!(preview)));
    }
    if args.queue {
        let id = mailroom.queue(request).await?;
        let queued = mailroom.outbox().get(id).await?;
        return Ok(Output::new(
            id.to_string(),
            json!({ "id": id, "message_id": queued.message_id, "status": queued.status }),
        ));
    }
    let receipt =
        crate::logging::with_spinner(waiting_for(context, &args), mailroom.send(request)).await?;
    Ok(Output::new(receipt_text(&receipt), json!(receipt)))
}

/// What a send waits on, for the spinner: the account's server as the resolution would
/// pick it (best effort: a failing resolution is the send's own error to report).
async fn waiting_for(context: &Context, args: &SendArgs) -> String {
    let accounts = mailroom_accounts::Accounts::new(&context.db, &context.key);
    let account = if args.company {
        accounts.account(AccountRef::Company).await.ok()
    } else {
        let catalog = mailroom_model::FeatureCatalog::with_defaults();
        match catalog.get(&args.feature) {
            Ok(feature) => accounts
                .resolve(feature, args.user.as_deref())
                .await
                .ok()
                .map(|resolution| resolution.account),
            Err(_) => None,
        }
    };
    match account.as_ref().map(|account| account.server()) {
        Some(server) if server.provider == mailroom_model::Provider::Google => {
            "the Gmail API".to_owned()
        }
        Some(server) => format!("the SMTP server {}:{}", server.host, server.port),
        None => "the mail server".to_owned(),
    }
}
