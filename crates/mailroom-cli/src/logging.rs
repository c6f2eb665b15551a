//! Where log lines go and how loud they are. By default a command logs nothing (its
//! result is its output, and a failure is the final `error:` line), the agent logs its
//! progress at INFO; `-v` (repeatable) adds detail, `--quiet` keeps only errors, and
//! `MAILROOM_LOG` (an `EnvFilter`, e.g. `MAILROOM_LOG=debug`) overrides both. Log lines go
//! to stderr, coloured only when stderr is a terminal, and never through a progress bar:
//! while one is drawn, each line is written with the bar suspended.

use std::future::Future;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;

/// The progress bar log lines must not fight, while one is drawn.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Log lines are written around this bar until [`clear_bar`].
pub(crate) fn set_bar(bar: &ProgressBar) {
    *BAR.lock().expect("bar lock") = Some(bar.clone());
}

/// No bar is drawn any more.
pub(crate) fn clear_bar() {
    *BAR.lock().expect("bar lock") = None;
}

/// How long a wait goes unannounced before the spinner says what it waits for.
const SPINNER_AFTER: Duration = Duration::from_secs(2);

/// Set while a person is being asked something on the terminal: no spinner then.
static PROMPTING: AtomicBool = AtomicBool::new(false);

/// A prompt takes the terminal: the spinner (if any) goes, and none starts until it ends.
pub(crate) fn prompting(active: bool) {
    PROMPTING.store(active, Ordering::SeqCst);
    if active {
        if let Some(bar) = BAR.lock().expect("bar lock").take() {
            bar.finish_and_clear();
        }
    }
}

/// Runs `future`; when stderr is a terminal and it takes longer than two seconds, a
/// one-line spinner says `waiting for {what}` until it ends. `what` is worked out only
/// then, so a quick or unattended run pays nothing for the label.
pub(crate) async fn with_spinner<F: Future, W: Future<Output = String>>(
    what: W,
    future: F,
) -> F::Output {
    if !io::stderr().is_terminal() {
        return future.await;
    }
    tokio::pin!(future);
    tokio::select! {
        output = &mut future => return output,
        () = tokio::time::sleep(SPINNER_AFTER) => {}
    }
    let what = tokio::select! {
        output = &mut future => return output,
        what = what => what,
    };
    let bar = (!PROMPTING.load(Ordering::SeqCst)).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_message(format!("waiting for {what}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        set_bar(&bar);
        bar
    });
    let output = future.await;
    if let Some(bar) = bar {
        clear_bar();
        bar.finish_and_clear();
    }
    output
}

/// stderr, with the progress bar (if any) suspended while a line is written.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = BAR.lock().expect("bar lock").clone();
        match bar {
            Some(bar) => bar
                .suspend(|| io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The default filter: `off` for a command, `info` for the agent; each `-v` one level
/// more, `--quiet` only errors.
pub(crate) fn default_filter(agent: bool, verbose: u8, quiet: bool) -> &'static str {
    const LEVELS: [&str; 5] = ["off", "warn", "info", "debug", "trace"];
    if quiet {
        return if agent { "error" } else { "off" };
    }
    let base = if agent { 2 } else { 0 };
    LEVELS[(base + usize::from(verbose)).min(LEVELS.len() - 1)]
}

/// Installs the subscriber: JSON lines with `json`, else text.
pub(crate) fn init(default_filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(|| Stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Writes `text` and a newline to stdout. A reader that went away (`| head -1`, `| true`)
/// is not an error: the rest is dropped quietly, as other command-line tools do.
pub(crate) fn print_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_silent_by_default_and_the_agent_reports_progress() {
        assert_eq!(default_filter(false, 0, false), "off");
        assert_eq!(default_filter(false, 1, false), "warn");
        assert_eq!(default_filter(false, 2, false), "info");
        assert_eq!(default_filter(true, 0, false), "info");
        assert_eq!(default_filter(true, 1, false), "debug");
        assert_eq!(default_filter(true, 9, false), "trace");
        assert_eq!(default_filter(true, 0, true), "error");
        assert_eq!(default_filter(false, 3, true), "off");
    }
}
