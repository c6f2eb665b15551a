//! `cargo xtask bench graph`: sends a 30 MiB message (one large attachment) to a local
//! Graph-like endpoint through the draft and upload-session path, and prints the sending
//! process's peak resident memory, its ratio to the message size (goal: at most 3x) and the
//! throughput.
//!
//! The endpoint runs in a child process (this binary, re-executed with
//! `MAILROOM_GRAPH_BENCH_SERVER=1`) that reads and discards what it is sent, so the figures
//! are the sender's alone. Peak memory is `VmHWM` of `/proc/self/status` (Linux).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader as StdBufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use mailroom_graph::{GraphConfig, GraphTransport};
use mailroom_model::{
    Address, CredentialSecret, Credentials, Envelope, MessageTransport, OutgoingMessage, Secret,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const SERVER_MODE: &str = "MAILROOM_GRAPH_BENCH_SERVER";
const MESSAGE_SIZE: usize = 30 * 1024 * 1024;

/// Bytes the server's upload sessions have received.
static UPLOADED: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    if std::env::var_os(SERVER_MODE).is_some() {
        serve();
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench graph: {error}");
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
        user: "bench@contoso.com".to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new("eyJ.bench-token")),
        version: 1,
    };
    let (message, attachment_size) = message(MESSAGE_SIZE);
    let size = message.bytes.len();
    let config = GraphConfig {
        allow_plaintext_loopback: true,
        ..GraphConfig::with_base_url(base_url)
    };
    let transport = GraphTransport::new(config).map_err(|error| format!("transport: {error}"))?;
    let before = memory()?;
    println!(
        "bench graph: message {size} bytes ({:.1} MiB) with a {attachment_size}-byte attachment; before sending: RSS {} KiB",
        size as f64 / 1_048_576.0,
        before.rss_kib
    );
    reset_peak();
    let started = Instant::now();
    let delivery = runtime
        .block_on(transport.send(&message, &credentials))
        .map_err(|error| format!("the send failed: {error}"))?;
    let elapsed = started.elapsed();
    let expected = format!("bench-{attachment_size}");
    if delivery.provider_message_id.as_deref() != Some(expected.as_str()) {
        return Err(format!(
            "the server did not get the whole attachment: {}",
            delivery.reply
        ));
    }
    let after = memory()?;
    let ratio = after.peak_kib as f64 * 1024.0 / size as f64;
    let growth = after.peak_kib.saturating_sub(before.rss_kib) as f64 * 1024.0 / size as f64;
    println!(
        "bench graph: draft + upload session (4 MiB chunks): peak RSS {} KiB ({:.1} MiB) = {ratio:.2}x the message size \
         (growth over the process before the send: {growth:.2}x); {:.0} ms, {:.0} MiB/s of message",
        after.peak_kib,
        after.peak_kib as f64 / 1024.0,
        elapsed.as_secs_f64() * 1000.0,
        size as f64 / 1_048_576.0 / elapsed.as_secs_f64()
    );
    let verdict = if ratio <= 3.0 { "met" } else { "NOT met" };
    println!("bench graph: goal peak RSS <= 3x the message size: {verdict} ({ratio:.2}x)");
    Ok(())
}

/// A multipart message of about `size` bytes: a short text and one base64 attachment.
fn message(size: usize) -> (OutgoingMessage, usize) {
    let head = "From: bench@contoso.com\r\nTo: someone@fabrikam.com\r\nSubject: bench\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BENCH\"\r\n\r\n--BENCH\r\nContent-Type: text/plain\r\n\r\nThe file is attached.\r\n--BENCH\r\nContent-Type: application/octet-stream; name=\"bench.bin\"\r\nContent-Disposition: attachment; filename=\"bench.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    let tail = "--BENCH--\r\n";
    // 57 bytes make one 76-character line plus CRLF.
    let lines = (size - head.len() - tail.len()) / 78;
    let attachment_size = lines * 57;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(head.as_bytes());
    let engine = base64::engine::general_purpose::STANDARD;
    let mut block = [0u8; 57];
    let mut line = [0u8; 76];
    for index in 0..lines {
        for (offset, byte) in block.iter_mut().enumerate() {
            *byte = (index.wrapping_mul(31) ^ offset) as u8;
        }
        engine
            .encode_slice(block, &mut line)
            .expect("57 bytes fit 76 characters");
        bytes.extend_from_slice(&line);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(tail.as_bytes());
    let sender: Address = "bench@contoso.com".parse().expect("address");
    let recipient: Address = "someone@fabrikam.com".parse().expect("address");
    (
        OutgoingMessage {
            envelope: Envelope::new(sender, vec![recipient]).expect("envelope"),
            bytes: Bytes::from(bytes),
            message_id: None,
        },
        attachment_size,
    )
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

/// Resets `VmHWM` to the current RSS (Linux 4.0+), so building the message is not counted.
fn reset_peak() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!(
            "bench graph: cannot reset the peak RSS ({error}); the figure includes building the message"
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

/// Server mode: answers Graph's draft, upload session and send requests until stdin closes.
fn serve() {
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
                    eprintln!("bench graph server: {error}");
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
        let mut content_range = String::new();
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
                    value.clone_into(&mut content_range);
                }
            }
        }
        let received = tokio::io::copy(
            &mut (&mut stream).take(content_length),
            &mut tokio::io::sink(),
        )
        .await?;
        let target = request_line.split_whitespace().nth(1).unwrap_or_default();
        let response = if request_line.starts_with("PUT") {
            let held = UPLOADED.fetch_add(received, Ordering::SeqCst) + received;
            let (span, total) = content_range
                .trim_start_matches("bytes ")
                .split_once('/')
                .unwrap_or(("0-0", "0"));
            let last: u64 = span
                .split_once('-')
                .and_then(|(_, last)| last.parse().ok())
                .unwrap_or(0);
            if last + 1 == total.parse::<u64>().unwrap_or(0) {
                reply("201 Created", "", &[])
            } else {
                let _ = held;
                reply(
                    "200 OK",
                    &format!(r#"{{"nextExpectedRanges":["{}"]}}"#, last + 1),
                    &[],
                )
            }
        } else if target.ends_with("/createUploadSession") {
            UPLOADED.store(0, Ordering::SeqCst);
            reply(
                "201 Created",
                &format!(
                    r#"{{"uploadUrl":"http://{address}/upload/session?authtoken=bench","nextExpectedRanges":["0-"]}}"#
                ),
                &[],
            )
        } else if target.ends_with("/send") || target.ends_with("/sendMail") {
            let request_id = format!("bench-{}", UPLOADED.load(Ordering::SeqCst));
            reply("202 Accepted", "", &[("request-id", &request_id)])
        } else if target.ends_with("/messages") {
            reply("201 Created", r#"{"id":"AAMkBench="}"#, &[])
        } else {
            reply("404 Not Found", "", &[])
        };
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

fn reply(status: &str, body: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        text.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}
