//! `cargo xtask bench gmail`: sends a 25 MiB message to a local Gmail-like endpoint and
//! prints the sending process's peak resident memory and its ratio to the message size
//! (goal: at most 3x).
//!
//! The endpoint runs in a child process (this binary, re-executed with
//! `MAILROOM_GMAIL_BENCH_SERVER=1`) that reads and discards what it is sent, so the figures
//! are the sender's alone. Peak memory is `VmHWM` of `/proc/self/status` (Linux).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader as StdBufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use mailroom_gmail::{GmailConfig, GmailTransport, MAX_MESSAGE_SIZE};
use mailroom_model::{
    Address, CredentialSecret, Credentials, Envelope, MessageTransport, OutgoingMessage, Secret,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const SERVER_MODE: &str = "MAILROOM_GMAIL_BENCH_SERVER";
const MESSAGE_SIZE: usize = 25 * 1024 * 1024;
const UPLOAD_PATH: &str = "/upload/gmail/v1/users/me/messages/send";

/// Bytes the server's upload session has received (one session at a time).
static SESSION_RECEIVED: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    if std::env::var_os(SERVER_MODE).is_some() {
        serve();
        return ExitCode::SUCCESS;
    }
    // `cargo bench` passes `--bench`; nothing else is accepted.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench gmail: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut server = Server::start()?;
    let outcome = measure(&server.base_url);
    server.stop();
    outcome
}

fn measure(base_url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let base_url = Url::parse(base_url).map_err(|error| format!("bad server URL: {error}"))?;
    let credentials = Credentials {
        user: "bench@example.com".to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new("ya29.bench-token")),
        version: 1,
    };

    let before_message = memory()?;
    let message = message(MESSAGE_SIZE);
    println!(
        "bench gmail: message {} bytes ({:.1} MiB); before the message: RSS {} KiB",
        MESSAGE_SIZE,
        MESSAGE_SIZE as f64 / 1_048_576.0,
        before_message.rss_kib
    );

    let runs = [
        (
            "resumable upload (default configuration, 8 MiB chunks)",
            GmailConfig::default().resumable_threshold,
        ),
        ("media upload (one request)", MAX_MESSAGE_SIZE),
    ];
    let mut worst_ratio: f64 = 0.0;
    for (label, resumable_threshold) in runs {
        let config = GmailConfig {
            allow_plaintext_loopback: true,
            resumable_threshold,
            ..GmailConfig::with_base_url(base_url.clone())
        };
        let transport =
            GmailTransport::new(config).map_err(|error| format!("transport: {error}"))?;
        // Forget the previous run's peak so each run is measured alone.
        reset_peak();
        let started = Instant::now();
        let delivery = runtime
            .block_on(transport.send(&message, &credentials))
            .map_err(|error| format!("{label}: the send failed: {error}"))?;
        let elapsed = started.elapsed();
        let expected_id = format!("bench-{MESSAGE_SIZE}");
        if delivery.provider_message_id.as_deref() != Some(expected_id.as_str()) {
            return Err(format!(
                "{label}: the server did not get the whole message: {}",
                delivery.reply
            ));
        }
        let after = memory()?;
        let ratio = after.peak_kib as f64 * 1024.0 / MESSAGE_SIZE as f64;
        let growth = after.peak_kib.saturating_sub(before_message.rss_kib) as f64 * 1024.0
            / MESSAGE_SIZE as f64;
        worst_ratio = worst_ratio.max(ratio);
        println!(
            "bench gmail: {label}: peak RSS {} KiB ({:.1} MiB) = {ratio:.2}x the message size \
             (growth over the process before the message: {growth:.2}x); {:.0} ms, {:.0} MiB/s",
            after.peak_kib,
            after.peak_kib as f64 / 1024.0,
            elapsed.as_secs_f64() * 1000.0,
            MESSAGE_SIZE as f64 / 1_048_576.0 / elapsed.as_secs_f64()
        );
        drop(transport);
    }
    let verdict = if worst_ratio <= 3.0 { "met" } else { "NOT met" };
    println!(
        "bench gmail: goal peak RSS <= 3x the message size: {verdict} (worst {worst_ratio:.2}x)"
    );
    Ok(())
}

/// A formatted message of `size` bytes.
fn message(size: usize) -> OutgoingMessage {
    let mut bytes =
        b"From: bench@example.com\r\nTo: someone@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    bytes.reserve_exact(size - bytes.len());
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while bytes.len() < size {
        let room = size - bytes.len();
        bytes.extend_from_slice(&line[..line.len().min(room)]);
    }
    let sender: Address = "bench@example.com".parse().expect("address");
    let recipient: Address = "someone@example.org".parse().expect("address");
    OutgoingMessage {
        envelope: Envelope::new(sender, vec![recipient]).expect("envelope"),
        bytes: Bytes::from(bytes),
        message_id: None,
    }
}

struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

fn memory() -> Result<Memory, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cannot read /proc/self/status (Linux only): {error}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("/proc/self/status has no {name}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+); without it, runs after the first are
/// reported with the highest peak so far, which only overstates them.
fn reset_peak() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!(
            "bench gmail: cannot reset the peak RSS ({error}); later runs may show an earlier peak"
        );
    }
}

/// The receiving endpoint, in a child process.
struct Server {
    child: Child,
    base_url: String,
}

impl Server {
    fn start() -> Result<Self, String> {
        let executable = std::env::current_exe()
            .map_err(|error| format!("cannot find this executable: {error}"))?;
        let mut child = Command::new(executable)
            .env(SERVER_MODE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start the server process: {error}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        StdBufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| format!("the server process did not start: {error}"))?;
        let Some(address) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            return Err(format!("the server process said `{}`", line.trim()));
        };
        Ok(Self {
            base_url: format!("http://{address}"),
            child,
        })
    }

    /// Closing the child's stdin tells it to exit.
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Server mode: answers the media and resumable protocols, discarding the bytes it is sent,
/// until stdin closes.
fn serve() {
    // The parent closes stdin when it is done (or dies): then exit.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        {
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening {address}").expect("stdout");
            stdout.flush().expect("stdout");
        }
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                if let Err(error) = answer(stream, address).await {
                    eprintln!("bench gmail server: {error}");
                }
            });
        }
    });
}

async fn answer(stream: TcpStream, address: std::net::SocketAddr) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0u64;
        let mut content_range = None;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("content-range") {
                    content_range = Some(value.to_owned());
                }
            }
        }
        let received = tokio::io::copy(
            &mut (&mut stream).take(content_length),
            &mut tokio::io::sink(),
        )
        .await?;
        let response = if request_line.contains("uploadType=media") {
            sent(received)
        } else if request_line.starts_with("POST") {
            SESSION_RECEIVED.store(0, Ordering::SeqCst);
            format!(
                "HTTP/1.1 200 OK\r\nLocation: http://{address}{UPLOAD_PATH}?uploadType=resumable&upload_id=bench\r\nContent-Length: 0\r\n\r\n"
            )
        } else {
            // `bytes first-last/total`: the session "holds" everything up to `last`.
            let range = content_range.unwrap_or_default();
            let (span, total) = range
                .trim_start_matches("bytes ")
                .split_once('/')
                .unwrap_or(("*", "0"));
            let last: u64 = span
                .split_once('-')
                .and_then(|(_, last)| last.parse().ok())
                .unwrap_or(0);
            let total: u64 = total.parse().unwrap_or(0);
            let held = SESSION_RECEIVED.fetch_add(received, Ordering::SeqCst) + received;
            if last + 1 == total {
                sent(held)
            } else {
                format!(
                    "HTTP/1.1 308 Resume Incomplete\r\nRange: bytes=0-{last}\r\nContent-Length: 0\r\n\r\n"
                )
            }
        };
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

/// A sent `Message` whose id tells the sender how many bytes arrived.
fn sent(bytes: u64) -> String {
    let body = format!(r#"{{"id":"bench-{bytes}","threadId":"bench","labelIds":["SENT"]}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
