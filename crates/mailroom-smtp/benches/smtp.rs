//! `cargo xtask bench smtp`: messages per second and client CPU seconds for mailroom's
//! transport, lettre's pooled `AsyncSmtpTransport` and bare lettre `AsyncSmtpConnection`s
//! on `TCP_NODELAY` sockets (the floor of this stack), all with STARTTLS + XOAUTH2 to the
//! aiosmtpd test server on 127.0.0.1. Not a test: it prints figures and asserts nothing.
//!
//! Then the wide-area run: a delay proxy written here (each direction delayed by RTT/2)
//! between the client and the sandbox's SMTP server (which offers PIPELINING), one
//! connection, STARTTLS + PLAIN: mailroom (pipelined MAIL/RCPT/DATA) against a bare lettre
//! connection (no pipelining), with messages per second, the ratio, round trips per
//! message as the proxy saw them (client turns: bytes from the client after bytes from the
//! server), client CPU per message (this process, the proxy included) and peak RSS.
//! `MAILROOM_BENCH_WAN_MESSAGES` (default 500, 0 skips it), `MAILROOM_BENCH_WAN_RTT_MS`
//! (default 20).
//!
//! Environment: `MAILROOM_BENCH_MESSAGES` (default 5000), `MAILROOM_BENCH_SERVER_WORKERS`
//! (aiosmtpd worker processes, default 2), `MAILROOM_BENCH_CLIENTS` (default
//! `mailroom,lettre-pool,bare`), `MAILROOM_BENCH_ROUNDS` (runs of the fast clients, default 5;
//! the ratios use medians; the best runs are printed too, since on a shared machine other
//! load only ever slows a run down).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials as LettreCredentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};
use mailroom_model::{
    CredentialSecret, Credentials, Envelope, MessageTransport, OutgoingMessage, Provider, Secret,
    ServerSettings, TlsStartup,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_testkit::smtp::{ServerOptions, TestServer};

const USER: &str = "bench@example.com";
const TOKEN: &str = "bench-token";
const MESSAGE_SIZE: usize = 10 * 1024;

/// One message, formatted once: what every client sends.
struct Workload {
    bytes: Bytes,
    from: lettre::Address,
    to: lettre::Address,
    messages: usize,
}

impl Workload {
    fn new(messages: usize) -> Self {
        let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
        let body = line.repeat(MESSAGE_SIZE / line.len());
        let message = lettre::Message::builder()
            .from(USER.parse::<Mailbox>().expect("from"))
            .to("to@example.com".parse::<Mailbox>().expect("to"))
            .subject("bench")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .expect("message");
        Self {
            bytes: Bytes::from(message.formatted()),
            from: USER.parse().expect("from"),
            to: "to@example.com".parse().expect("to"),
            messages,
        }
    }

    fn lettre_envelope(&self) -> lettre::address::Envelope {
        lettre::address::Envelope::new(Some(self.from.clone()), vec![self.to.clone()])
            .expect("envelope")
    }
}

/// User and system CPU time of this process so far (all threads), from /proc/self/stat.
fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name; the
    // kernel reports them in USER_HZ ticks, which is 100 on Linux.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn client_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds of each server process (the dispatcher first when there are workers).
fn server_cpu_seconds(server: &TestServer) -> Vec<f64> {
    server
        .pids
        .iter()
        .map(|pid| cpu_seconds_of(&pid.to_string()))
        .collect()
}

struct Figures {
    client: &'static str,
    connections: usize,
    messages_per_second: f64,
    client_cpu: f64,
    server_cpu: Vec<f64>,
    wall: Duration,
}

/// Runs `workers` loops that take message numbers from a shared counter until `messages`
/// are sent, and measures wall and CPU time.
async fn measure<F, Fut>(
    client: &'static str,
    connections: usize,
    server: &TestServer,
    workload: &Arc<Workload>,
    make_worker: F,
) -> Figures
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let cpu_before = client_cpu_seconds();
    let server_before = server_cpu_seconds(server);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..connections {
        workers.spawn(make_worker(worker));
    }
    while let Some(result) = workers.join_next().await {
        result.expect("a bench worker panicked");
    }
    let wall = started.elapsed();
    Figures {
        client,
        connections,
        messages_per_second: workload.messages as f64 / wall.as_secs_f64(),
        client_cpu: client_cpu_seconds() - cpu_before,
        server_cpu: server_cpu_seconds(server)
            .iter()
            .zip(&server_before)
            .map(|(after, before)| after - before)
            .collect(),
        wall,
    }
}

fn settings(server: &TestServer) -> ServerSettings {
    let mut settings = ServerSettings::preset(Provider::Microsoft);
    settings.host = "127.0.0.1".to_owned();
    settings.port = server.port;
    settings.tls_startup = TlsStartup::StartTls;
    settings.timeout_ms = 60_000;
    settings.smtp_user = USER.to_owned();
    settings
}

async fn mailroom(server: &TestServer, workload: &Arc<Workload>, connections: usize) -> Figures {
    let config = SmtpTransportConfig::new(settings(server))
        .with_extra_root_pem(server.trusted_ca_pem.clone())
        .with_pool_size(connections);
    let transport = Arc::new(SmtpTransport::new(config).expect("mailroom transport"));
    let message = Arc::new(OutgoingMessage {
        envelope: Envelope::new(workload.from.clone(), vec![workload.to.clone()])
            .expect("envelope"),
        bytes: workload.bytes.clone(),
        message_id: None,
    });
    let credentials = Arc::new(Credentials {
        user: USER.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(TOKEN)),
        version: 1,
    });
    let next = Arc::new(AtomicUsize::new(0));
    measure(
        "mailroom SmtpTransport",
        connections,
        server,
        workload,
        |_| {
            let (transport, message, credentials, next, total) = (
                Arc::clone(&transport),
                Arc::clone(&message),
                Arc::clone(&credentials),
                Arc::clone(&next),
                workload.messages,
            );
            async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    transport
                        .send(&message, &credentials)
                        .await
                        .expect("mailroom send");
                }
            }
        },
    )
    .await
}

fn tls_parameters(server: &TestServer) -> TlsParameters {
    TlsParameters::builder("127.0.0.1".to_owned())
        .add_root_certificate(Certificate::from_pem(server.trusted_ca_pem.as_bytes()).expect("ca"))
        .build_rustls()
        .expect("tls parameters")
}

async fn lettre_pool(server: &TestServer, workload: &Arc<Workload>, connections: usize) -> Figures {
    let transport = Arc::new(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(server.port)
            .tls(lettre::transport::smtp::client::Tls::Required(
                tls_parameters(server),
            ))
            .credentials(LettreCredentials::new(USER.to_owned(), TOKEN.to_owned()))
            .authentication(vec![Mechanism::Xoauth2])
            .timeout(Some(Duration::from_secs(60)))
            .pool_config(PoolConfig::new().max_size(connections as u32))
            .build(),
    );
    let envelope = Arc::new(workload.lettre_envelope());
    let next = Arc::new(AtomicUsize::new(0));
    let figures = measure(
        "lettre AsyncSmtpTransport (pool)",
        connections,
        server,
        workload,
        |_| {
            let (transport, envelope, bytes, next, total) = (
                Arc::clone(&transport),
                Arc::clone(&envelope),
                workload.bytes.clone(),
                Arc::clone(&next),
                workload.messages,
            );
            async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    transport
                        .send_raw(&envelope, &bytes)
                        .await
                        .expect("lettre pooled send");
                }
            }
        },
    )
    .await;
    // Dropping the transport outside the runtime would panic; drop it here.
    drop(transport);
    figures
}

async fn bare_connections(
    server: &TestServer,
    workload: &Arc<Workload>,
    connections: usize,
) -> Figures {
    let port = server.port;
    let parameters = tls_parameters(server);
    let envelope = Arc::new(workload.lettre_envelope());
    let next = Arc::new(AtomicUsize::new(0));
    measure(
        "bare lettre AsyncSmtpConnection",
        connections,
        server,
        workload,
        |_| {
            let (parameters, envelope, bytes, next, total) = (
                parameters.clone(),
                Arc::clone(&envelope),
                workload.bytes.clone(),
                Arc::clone(&next),
                workload.messages,
            );
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                let hello = ClientId::default();
                let mut connection =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                        .await
                        .expect("greeting");
                connection
                    .starttls(parameters, &hello)
                    .await
                    .expect("starttls");
                connection
                    .auth(
                        &[Mechanism::Xoauth2],
                        &LettreCredentials::new(USER.to_owned(), TOKEN.to_owned()),
                    )
                    .await
                    .expect("auth");
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    connection.send(&envelope, &bytes).await.expect("bare send");
                }
                let _ = connection.quit().await;
            }
        },
    )
    .await
}

fn print_row(figures: &Figures) {
    let per_process: Vec<String> = figures
        .server_cpu
        .iter()
        .map(|seconds| format!("{seconds:.2}"))
        .collect();
    println!(
        "{:<34} {:>11} {:>10.0} {:>14.2} {:>9.2}   {:.2} ({})",
        figures.client,
        figures.connections,
        figures.messages_per_second,
        figures.client_cpu,
        figures.wall.as_secs_f64(),
        figures.server_cpu.iter().sum::<f64>(),
        per_process.join(" + ")
    );
}

/// A TCP proxy on 127.0.0.1 that delays each direction by `one_way`, keeping order, and
/// counts the client's turns (bytes from the client after bytes from the server).
struct DelayProxy {
    port: u16,
    turns: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    async fn start(upstream: u16, one_way: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let turns = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&turns);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                // 0: nothing yet, 1: the client spoke last, 2: the server spoke last.
                let last = Arc::new(AtomicU8::new(0));
                tokio::spawn(delay_pipe(
                    client_read,
                    server_write,
                    one_way,
                    true,
                    Arc::clone(&last),
                    Arc::clone(&counted),
                ));
                tokio::spawn(delay_pipe(
                    server_read,
                    client_write,
                    one_way,
                    false,
                    last,
                    Arc::clone(&counted),
                ));
            }
        });
        Self { port, turns, task }
    }
}

async fn delay_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    one_way: Duration,
    from_client: bool,
    last: Arc<AtomicU8>,
    turns: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sender, mut receiver) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let count = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        if from_client {
            if last.swap(1, Ordering::AcqRel) != 1 {
                turns.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            last.store(2, Ordering::Release);
        }
        let due = tokio::time::Instant::now() + one_way;
        if sender.send((due, buffer[..count].to_vec())).is_err() {
            break;
        }
    }
    drop(sender);
    let _ = writer.await;
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const WAN_LOGIN: &str = "bench@example.com";
const WAN_PASSWORD: &str = "bench-password";

struct WanFigures {
    messages_per_second: f64,
    turns_per_message: f64,
    cpu_per_message_ms: f64,
    peak_rss_kib: u64,
}

/// One client through the delay proxy to the sandbox: `mailroom` or `lettre`.
async fn wide_area_run(
    client: &str,
    sandbox: &mailroom_sandbox::Sandbox,
    workload: &Workload,
    one_way: Duration,
) -> WanFigures {
    let endpoints = sandbox.endpoints();
    let proxy = DelayProxy::start(endpoints.smtp_starttls_port, one_way).await;
    let cpu_before = client_cpu_seconds();
    let started = Instant::now();
    let turns_before;
    match client {
        "mailroom" => {
            let mut settings = ServerSettings::preset(Provider::None);
            settings.host = "127.0.0.1".to_owned();
            settings.port = proxy.port;
            settings.tls_startup = TlsStartup::StartTls;
            settings.timeout_ms = 60_000;
            settings.smtp_user = WAN_LOGIN.to_owned();
            let transport = SmtpTransport::new(
                SmtpTransportConfig::new(settings)
                    .with_extra_root_pem(sandbox.ca_pem().as_bytes())
                    .with_pool_size(1),
            )
            .expect("mailroom transport");
            let message = OutgoingMessage {
                envelope: Envelope::new(workload.from.clone(), vec![workload.to.clone()])
                    .expect("envelope"),
                bytes: workload.bytes.clone(),
                message_id: None,
            };
            let credentials = Credentials {
                user: WAN_LOGIN.to_owned(),
                secret: CredentialSecret::Password(Secret::new(WAN_PASSWORD)),
                version: 1,
            };
            transport
                .send(&message, &credentials)
                .await
                .expect("mailroom send");
            // The connection is open: count from here.
            turns_before = proxy.turns.load(Ordering::Relaxed);
            for _ in 1..workload.messages {
                transport
                    .send(&message, &credentials)
                    .await
                    .expect("mailroom send");
            }
        }
        _ => {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
                .await
                .expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let hello = ClientId::default();
            let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                .await
                .expect("greeting");
            let parameters = TlsParameters::builder("127.0.0.1".to_owned())
                .add_root_certificate(
                    Certificate::from_pem(sandbox.ca_pem().as_bytes()).expect("ca"),
                )
                .build_rustls()
                .expect("tls parameters");
            connection
                .starttls(parameters, &hello)
                .await
                .expect("starttls");
            connection
                .auth(
                    &[Mechanism::Plain],
                    &LettreCredentials::new(WAN_LOGIN.to_owned(), WAN_PASSWORD.to_owned()),
                )
                .await
                .expect("auth");
            let envelope = workload.lettre_envelope();
            connection
                .send(&envelope, &workload.bytes)
                .await
                .expect("lettre send");
            turns_before = proxy.turns.load(Ordering::Relaxed);
            for _ in 1..workload.messages {
                connection
                    .send(&envelope, &workload.bytes)
                    .await
                    .expect("lettre send");
            }
            let _ = connection.quit().await;
        }
    }
    let wall = started.elapsed();
    let turns = proxy.turns.load(Ordering::Relaxed) - turns_before;
    proxy.task.abort();
    WanFigures {
        messages_per_second: workload.messages as f64 / wall.as_secs_f64(),
        turns_per_message: turns as f64 / (workload.messages.saturating_sub(1).max(1)) as f64,
        cpu_per_message_ms: (client_cpu_seconds() - cpu_before) * 1000.0 / workload.messages as f64,
        peak_rss_kib: peak_rss_kib(),
    }
}

/// The wide-area comparison: mailroom with PIPELINING against lettre's connection.
fn wide_area(runtime: &tokio::runtime::Runtime) {
    let messages = env_number("MAILROOM_BENCH_WAN_MESSAGES", 500);
    if messages == 0 {
        return;
    }
    let rtt = Duration::from_millis(env_number("MAILROOM_BENCH_WAN_RTT_MS", 20) as u64);
    let workload = Workload::new(messages);
    let dir = tempfile::tempdir().expect("a temporary directory");
    runtime.block_on(async {
        let sandbox = mailroom_sandbox::Sandbox::start(mailroom_sandbox::SandboxConfig::new(
            dir.path(),
        ))
        .await
        .expect("start the sandbox");
        sandbox.add_password_account(WAN_LOGIN, WAN_PASSWORD);
        println!(
            "wide area: {messages} messages of {} bytes, 1 connection, {} ms RTT through a delay proxy, STARTTLS + PLAIN to the sandbox (PIPELINING offered)",
            workload.bytes.len(),
            rtt.as_millis()
        );
        println!(
            "{:<34} {:>10} {:>18} {:>18} {:>14}",
            "client", "msgs/s", "round trips/msg", "client CPU ms/msg", "peak RSS KiB"
        );
        let mut rates = Vec::new();
        for client in ["mailroom", "lettre"] {
            let figures = wide_area_run(client, &sandbox, &workload, rtt / 2).await;
            println!(
                "{:<34} {:>10.1} {:>18.2} {:>18.3} {:>14}",
                if client == "mailroom" {
                    "mailroom SmtpTransport (pipelined)"
                } else {
                    "bare lettre AsyncSmtpConnection"
                },
                figures.messages_per_second,
                figures.turns_per_message,
                figures.cpu_per_message_ms,
                figures.peak_rss_kib
            );
            rates.push(figures.messages_per_second);
        }
        println!(
            "wide-area ratio mailroom/lettre = {:.2} (goal >= 1.8; peak RSS is this process's high-water mark so far)",
            rates[0] / rates[1]
        );
        sandbox.stop();
    });
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let messages = env_number("MAILROOM_BENCH_MESSAGES", 5000);
    let rounds = env_number("MAILROOM_BENCH_ROUNDS", 5).max(1);
    let server_workers = env_number("MAILROOM_BENCH_SERVER_WORKERS", 2);
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), TOKEN.to_owned())],
        mechanisms: vec!["XOAUTH2"],
        store: false,
        workers: server_workers,
        ..ServerOptions::default()
    });
    let workload = Arc::new(Workload::new(messages));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before the run: {}", load.trim());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "smtp bench: {messages} messages of {} bytes per run, STARTTLS + XOAUTH2 to aiosmtpd on 127.0.0.1 ({server_workers} server worker processes, connections handed out in turn), tokio with 2 worker threads",
        workload.bytes.len()
    );
    println!(
        "{:<34} {:>11} {:>10} {:>14} {:>9}   server CPU s (per process)",
        "client", "connections", "msgs/s", "client CPU s", "wall s"
    );
    // Warm the server up (Python's allocator, the TLS context) so the first client
    // measured is not at a disadvantage.
    let warm_up = Arc::new(Workload::new(500.min(messages)));
    runtime.block_on(bare_connections(&server, &warm_up, 4));

    let clients = std::env::var("MAILROOM_BENCH_CLIENTS")
        .unwrap_or_else(|_| "mailroom,lettre-pool,bare".to_owned());
    let clients: Vec<&str> = clients.split(',').map(str::trim).collect();
    let mut results = Vec::new();
    for connections in [1, 4] {
        // The machine is shared (2 cores): the fast clients run `rounds` times,
        // interleaved, and the ratios use their medians. lettre's pool takes minutes per
        // run and runs once.
        for round in 0..rounds {
            for client in &clients {
                if *client == "lettre-pool" && round > 0 {
                    continue;
                }
                let figures = runtime.block_on(async {
                    match *client {
                        "mailroom" => Some(mailroom(&server, &workload, connections).await),
                        "lettre-pool" => Some(lettre_pool(&server, &workload, connections).await),
                        "bare" => Some(bare_connections(&server, &workload, connections).await),
                        other => {
                            eprintln!(
                                "smtp bench: unknown client `{other}` in MAILROOM_BENCH_CLIENTS"
                            );
                            None
                        }
                    }
                });
                if let Some(figures) = figures {
                    print_row(&figures);
                    results.push(figures);
                }
            }
        }
    }
    let rates = |client_prefix: &str, connections: usize| {
        let mut rates: Vec<f64> = results
            .iter()
            .filter(|figures| {
                figures.client.starts_with(client_prefix) && figures.connections == connections
            })
            .map(|figures| figures.messages_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    };
    let rate = |client_prefix: &str, connections: usize| {
        let rates = rates(client_prefix, connections);
        rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let best = |client_prefix: &str, connections: usize| {
        rates(client_prefix, connections)
            .last()
            .copied()
            .unwrap_or(f64::NAN)
    };
    for connections in [1, 4] {
        println!(
            "median msgs/s with {connections} connection(s): mailroom {:.0}, lettre pool {:.0}, bare connection {:.0}",
            rate("mailroom", connections),
            rate("lettre", connections),
            rate("bare", connections)
        );
    }
    for connections in [1, 4] {
        println!(
            "ratio mailroom/lettre-pool = {:.1} ({connections} connection{})",
            rate("mailroom", connections) / rate("lettre", connections),
            if connections == 1 { "" } else { "s" }
        );
    }
    for connections in [1, 4] {
        println!(
            "best msgs/s with {connections} connection(s): mailroom {:.0}, bare connection {:.0} (ratio {:.2})",
            best("mailroom", connections),
            best("bare", connections),
            best("mailroom", connections) / best("bare", connections)
        );
    }
    println!(
        "ratio mailroom/bare-connection = {:.2} (1 connection)",
        rate("mailroom", 1) / rate("bare", 1)
    );
    println!(
        "ratio mailroom/bare-connection = {:.2}",
        rate("mailroom", 4) / rate("bare", 4)
    );
    wide_area(&runtime);
}
