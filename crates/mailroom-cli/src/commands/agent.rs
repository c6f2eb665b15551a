//! `mailroom agent`: the automation agent. Sends queued messages, never prompts, stops
//! gracefully on SIGTERM or SIGINT; a progress bar with `--once` in a terminal, structured
//! logs otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mailroom::{Agent, AgentEvent, AgentOptions};
use serde_json::json;

use super::Output;
use super::send::open_mailroom;
use crate::context::Context;

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Send what is due now, then exit.
    #[arg(long)]
    pub(crate) once: bool,
    /// How many messages to send at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) concurrency: u16,
    /// How long a claimed message stays leased to this agent without a renewal, in seconds
    /// (at least 3). The lease is renewed every third of it while a send is in flight, so
    /// a slow server needs no long lease; after an agent dies, another sends its messages
    /// once their lease ran out.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = lease_seconds)]
    pub(crate) lease_secs: u64,
    /// How often an idle agent looks for new messages, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub(crate) poll_ms: u64,
    /// How long a message held for a sign-in waits before it is tried again, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) hold_secs: u64,
}

/// `--lease-secs`: from [`mailroom::MIN_LEASE`] to a day.
fn lease_seconds(text: &str) -> std::result::Result<u64, String> {
    let minimum = mailroom::MIN_LEASE.as_secs();
    let seconds: u64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if seconds < minimum {
        return Err(format!(
            "a lease under {minimum} seconds is too short; give at least {minimum} (the lease is renewed while a send is in flight, so a slow server needs no longer lease)"
        ));
    }
    if seconds > 86_400 {
        return Err("a lease over a day (86400 seconds) is refused; give at most 86400".to_owned());
    }
    Ok(seconds)
}

/// Completes on the first SIGTERM or SIGINT.
pub(crate) async fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

pub(crate) async fn agent(context: &Context, args: AgentArgs) -> Result<Output> {
    let mailroom = Arc::new(open_mailroom(context).await?);
    let mut options = AgentOptions {
        concurrency: usize::from(args.concurrency),
        once: args.once,
        lease: Duration::from_secs(args.lease_secs),
        poll_interval: Duration::from_millis(args.poll_ms),
        hold_retry: Duration::from_secs(args.hold_secs),
        ..AgentOptions::default()
    };
    let progress = if args.once && std::io::stderr().is_terminal() {
        let outbox = mailroom.outbox();
        let due = outbox.due(outbox.now().await?).await?;
        let bar = ProgressBar::new(due);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .expect("a valid progress template"),
        );
        Some(bar)
    } else {
        None
    };
    if let Some(bar) = &progress {
        crate::logging::set_bar(bar);
    }
    if let Some(bar) = progress.clone() {
        options.events = Some(Arc::new(move |event: &AgentEvent| {
            if !event.is_finished() {
                return;
            }
            bar.inc(1);
            match event {
                AgentEvent::Sent { .. } => {}
                AgentEvent::Retrying { id, .. } => bar.set_message(format!("{id} will be retried")),
                AgentEvent::Held { id, .. } => bar.set_message(format!("{id} held")),
                AgentEvent::Failed { id, .. } => bar.set_message(format!("{id} failed")),
                AgentEvent::LeaseLost { id, .. } => {
                    bar.set_message(format!("{id} taken over by another agent"))
                }
                _ => {}
            }
        }));
    }
    let shutdown = stop_signal().await?;
    // On a worker thread of the runtime, beside its sends: run here, on the thread
    // blocked on the command, each finished send would wake that thread from another.
    let agent = Agent::new(mailroom, options);
    let summary = tokio::spawn(async move { agent.run(shutdown).await })
        .await
        .context("the agent stopped unexpectedly")??;
    if let Some(bar) = progress {
        crate::logging::clear_bar();
        bar.finish_and_clear();
    }
    let text = format!(
        "sent {}, to retry {}, held {}, failed {}",
        summary.sent, summary.retrying, summary.held, summary.failed
    );
    let text = if summary.lease_lost > 0 {
        format!("{text}, taken over by another agent {}", summary.lease_lost)
    } else {
        text
    };
    let text = if summary.purged > 0 {
        format!("{text}, old messages deleted {}", summary.purged)
    } else {
        text
    };
    let mut output = Output::new(text, json!(summary));
    if summary.held > 0 {
        output.notes.push(
            "held messages wait for an administrator: a sign-in (`mailroom sign-in --company` or `--account ID`), or, when their error names a key this host lacks, that key; or, when their error says the provider paused the mailbox (a sending quota, throttling), for the time it names; `mailroom queue list` shows each one's reason, and they are retried afterwards".to_owned(),
        );
    }
    if summary.failed > 0 {
        output
            .notes
            .push("see why with `mailroom queue list --status failed`".to_owned());
    }
    Ok(output)
}
