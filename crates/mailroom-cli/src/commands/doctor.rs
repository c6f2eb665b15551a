//! `mailroom doctor`: prints the facade's checks (`Mailroom::doctor`), one line each, with
//! the command that fixes each problem; exits 1 when any check found a problem.

use anyhow::Result;
use clap::Args;
use mailroom::{AccountRef, DoctorCheck, DoctorOptions, DoctorReport, Mailroom};
use serde_json::Value;

use super::Output;
use super::send::{CA_FILE_VARIABLE, mailroom_options};
use crate::context::Context;
use crate::remedy::{command, escape_control};

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Check only this user account (by id).
    #[arg(long, value_name = "ID", conflicts_with = "company")]
    pub(crate) account: Option<i64>,
    /// Check only the company account.
    #[arg(long)]
    pub(crate) company: bool,
    /// Also refresh each OAuth account's token now, to prove the refresh works.
    #[arg(long)]
    pub(crate) refresh: bool,
    /// Also authenticate to each SMTP account's server with its token or password and
    /// QUIT without sending (shows e.g. that SMTP AUTH is off for a Microsoft mailbox).
    #[arg(long)]
    pub(crate) authenticate: bool,
}

pub(crate) const DOCTOR_EXAMPLES: &str = "Examples:
  mailroom doctor
  mailroom doctor --company --refresh
  mailroom doctor --authenticate
  mailroom doctor --account 4 --json";

pub(crate) async fn doctor(context: &Context, args: DoctorArgs) -> Result<Output> {
    let mut options = DoctorOptions {
        account: match (args.company, args.account) {
            (true, _) => Some(AccountRef::Company),
            (false, Some(id)) => Some(AccountRef::User(id)),
            (false, None) => None,
        },
        refresh: args.refresh,
        authenticate: args.authenticate,
        ..DoctorOptions::default()
    };
    let ca_file = std::env::var_os(CA_FILE_VARIABLE).filter(|path| !path.is_empty());
    let facade_options = match mailroom_options(context) {
        Ok(facade_options) => {
            options.root_certificate_source =
                ca_file.map(|path| format!("{CA_FILE_VARIABLE}={}", path.to_string_lossy()));
            facade_options
        }
        Err(error) => {
            // The file is unreadable: report it as a check and go on without it.
            options.root_certificate_source = ca_file
                .as_ref()
                .map(|path| format!("{CA_FILE_VARIABLE}={}", path.to_string_lossy()));
            options.root_certificate_error = Some(error.root_cause().to_string());
            mailroom::MailroomOptions::new(context.key.clone())
        }
    };
    let report = match Mailroom::with_connection(context.db.clone(), facade_options).await {
        Ok(mailroom) => mailroom.doctor(options).await,
        Err(error) => DoctorReport::open_failed(&error),
    };
    Ok(render(&report))
}

/// The report of a database or key that could not even be opened.
pub(crate) fn without_context(error: &anyhow::Error) -> Output {
    let check = DoctorCheck::problem(
        "database",
        crate::remedy::message(error),
        Some(crate::remedy::find(error).unwrap_or(mailroom::Remedy::CheckDatabase)),
    );
    render(&DoctorReport {
        checks: vec![check],
    })
}

fn render(report: &DoctorReport) -> Output {
    // As wide as `problem` and `skipped`, so details line up across runs.
    let width = 7;
    let mut lines = Vec::new();
    for check in &report.checks {
        lines.push(format!(
            "{:<width$}  {}: {}",
            check.status.to_string(),
            check.name,
            escape_control(&check.detail)
        ));
        if let Some(remedy) = &check.remedy {
            lines.push(format!("  to fix: {}", command(remedy)));
        }
    }
    let json = Value::Array(report.checks.iter().map(check_json).collect());
    let mut output = Output::new(lines.join("\n"), json);
    output.failed = !report.all_ok();
    output
}

fn check_json(check: &DoctorCheck) -> Value {
    let remedy = check.remedy.as_ref().map(|remedy| {
        let mut value = serde_json::to_value(remedy).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("command".to_owned(), Value::String(command(remedy)));
            fields.insert("description".to_owned(), Value::String(remedy.to_string()));
        }
        value
    });
    serde_json::json!({
        "name": check.name,
        "status": check.status,
        "detail": check.detail,
        "remedy": remedy,
    })
}
