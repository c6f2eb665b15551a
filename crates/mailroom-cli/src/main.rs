//! The `mailroom` command. Only this crate prints; every command runs in one database
//! transaction, so a failed command changes nothing.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod context;
mod logging;
mod output;
mod remedy;
mod signin;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// A mistake in how the command was called: exit code 2, like clap's own errors.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The agent runs unattended: its log is its report (JSON lines with --json).
    let agent = matches!(cli.command, cli::Command::Agent(_));
    logging::init(
        logging::default_filter(agent, cli.verbose, cli.quiet),
        agent && cli.json,
    );
    // Named, so that `top -H` and a profiler tell the agent's threads from others.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("mailroom-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let quiet = cli.quiet;
    match runtime.block_on(commands::run(cli)) {
        Ok(output) => match output.print(json, quiet) {
            Ok(()) if output.failed => ExitCode::FAILURE,
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write the output: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            if json {
                eprintln!("{}", remedy::render_json(&error));
            } else {
                eprintln!("{}", remedy::render_text(&error));
            }
            if is_usage_error(&error) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn is_usage_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<mailroom_model::ValidationError>()
            || matches!(
                cause.downcast_ref::<mailroom_accounts::Error>(),
                Some(mailroom_accounts::Error::Invalid(_))
            )
            || matches!(
                cause.downcast_ref::<mailroom::Error>(),
                Some(mailroom::Error::Invalid(_))
            )
            || matches!(
                cause.downcast_ref::<mailroom_tokens::Error>(),
                Some(mailroom_tokens::Error::Invalid(_))
            )
    })
}
