//! `cargo xtask bench memory`: the peak resident memory (VmHWM) of the `mailroom` binary
//! queueing a message with a 25 MiB attachment (`send --queue`) and of `mailroom agent
//! --once` sending it to the aiosmtpd test server over STARTTLS, each against the formatted
//! message's size (goal: at most 3x), beside the same two runs for a small message (the
//! binary's own footprint). Not a test: it prints figures and asserts nothing about them;
//! the peak is read by polling `/proc/PID/status` every millisecond (Linux only; VmHWM
//! only grows, so the last reading before the process exits is its peak).
//!
//! Environment: `MAILROOM_BENCH_ATTACHMENT_MIB` (default 25).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailroom_testkit::smtp::{ServerOptions, TestServer};

const RELAY: &str = "relay";
const RELAY_PASSWORD: &str = "relay-password-bench";

struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
            .args(args)
            .env(
                "MAILROOM_DATABASE_URL",
                format!(
                    "sqlite://{}",
                    self.dir.path().join("bench.sqlite").display()
                ),
            )
            .env("MAILROOM_CA_FILE", &self.ca)
            .env("HOME", self.dir.path())
            .env_remove("MAILROOM_KEY")
            .env_remove("MAILROOM_KEY_FILE")
            .env_remove("MAILROOM_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `mailroom ARGS`; returns its stdout and its peak resident memory in bytes.
    fn run(&self, args: &[&str], stdin: &str) -> (String, u64) {
        let mut child = self.command(args).spawn().expect("start mailroom");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let status_path = format!("/proc/{}/status", child.id());
        let stdout = child.stdout.take().expect("stdout");
        let stdout =
            std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let stderr = child.stderr.take().expect("stderr");
        let stderr =
            std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let mut peak = 0;
        loop {
            if let Some(hwm) = read_hwm(&status_path) {
                peak = peak.max(hwm);
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = child.wait().expect("wait");
        let stdout = stdout.join().expect("the stdout reader");
        let stderr = stderr.join().expect("the stderr reader");
        assert!(
            status.success(),
            "mailroom {args:?} failed ({status}): {stderr}"
        );
        (stdout, peak)
    }
}

/// `VmHWM` of a live process, in bytes.
fn read_hwm(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes that do not compress (xorshift), like a real PDF or image.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Queues one message (with `attachment` if given), sends it with `agent --once`, and
/// returns (formatted size, peak of `send --queue`, peak of the agent).
fn queue_and_drain(
    setup: &Setup,
    server: &TestServer,
    attachment: Option<&Path>,
) -> (u64, u64, u64) {
    let before = server.events_of("message").len();
    let mut args = vec![
        "--json",
        "send",
        "--queue",
        "--feature",
        "automation-agent",
        "--from",
        "orders@example.com",
        "--to",
        "buyer@example.com",
        "--subject",
        "Memory benchmark",
        "--body",
        "See the attachment.",
    ];
    let path_text;
    if let Some(path) = attachment {
        path_text = path.display().to_string();
        args.extend(["--attach", path_text.as_str()]);
    }
    let (queued, send_peak) = setup.run(&args, "");
    let queued: serde_json::Value =
        serde_json::from_str(&queued).expect("send --queue prints JSON");
    let id = queued["id"].to_string();
    let (_, agent_peak) = setup.run(&["agent", "--once"], "");
    let (shown, _) = setup.run(&["--json", "queue", "show", &id], "");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("queue show prints JSON");
    assert_eq!(
        shown["status"], "sent",
        "the agent did not send the message: {shown}"
    );
    assert_eq!(
        server.events_of("message").len(),
        before + 1,
        "the server did not get it"
    );
    let size = shown["size"].as_u64().expect("a size");
    (size, send_peak, agent_peak)
}

fn main() {
    let attachment_mib: usize = std::env::var("MAILROOM_BENCH_ATTACHMENT_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(25);
    let server = TestServer::start(ServerOptions {
        passwords: vec![(RELAY.to_owned(), RELAY_PASSWORD.to_owned())],
        ..ServerOptions::default()
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.trusted_ca_pem).expect("write the CA");
    let setup = Setup { dir, ca };
    let port = server.port.to_string();
    setup.run(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--tls-startup",
            "starttls",
            "--user",
            RELAY,
            "--password-stdin",
        ],
        &format!("{RELAY_PASSWORD}\n"),
    );
    let attachment = setup.dir.path().join("statement.pdf");
    std::fs::write(&attachment, noise(attachment_mib * 1024 * 1024)).expect("write the attachment");

    let (small_size, small_send, small_agent) = queue_and_drain(&setup, &server, None);
    let (size, send_peak, agent_peak) = queue_and_drain(&setup, &server, Some(&attachment));
    println!(
        "memory: a {attachment_mib} MiB attachment; formatted message {:.1} MiB ({size} bytes)",
        mib(size)
    );
    println!(
        "  baseline, a {small_size}-byte message: send --queue peak {:.1} MiB, agent --once peak {:.1} MiB",
        mib(small_send),
        mib(small_agent)
    );
    for (what, peak, baseline) in [
        ("send --queue", send_peak, small_send),
        ("agent --once", agent_peak, small_agent),
    ] {
        let ratio = peak as f64 / size as f64;
        let above = peak.saturating_sub(baseline);
        println!(
            "  {what:<13} peak {:>6.1} MiB = {ratio:.2}x the formatted message (goal <= 3x: {}); {:.1} MiB above the baseline = {:.2}x",
            mib(peak),
            if ratio <= 3.0 { "met" } else { "NOT met" },
            mib(above),
            above as f64 / size as f64
        );
    }
}
