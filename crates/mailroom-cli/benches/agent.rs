//! `cargo xtask bench agent`: the automation agent at scale on PostgreSQL. 20,000 messages
//! over 50 password mailboxes (provider none: no rate limits) are queued through
//! `Mailroom::queue`, then sent by 1 and by 4 `mailroom agent --once` processes on one
//! database (a fresh one each) to the aiosmtpd test server on loopback, which records each
//! delivery's Message-ID. For each run: messages per second, the exactly-once verdict (every
//! queued message delivered once, none lost, none twice, each from its own mailbox, all
//! `sent` in the outbox), and the agent processes' CPU per message (user + system, from
//! this process's reaped children, with the user part printed beside it) against the bare `mailroom_smtp::SmtpTransport` sending
//! as many of the same messages to the same server from this process (one transport per
//! mailbox, as the facade keeps them), measured before the first agent run and after each:
//! each agent run is compared with the mean of the bare runs on either side of it. Several
//! agents are also compared with the bare transport split as they are (as many processes of
//! this bench, each sending its share `concurrency` at a time, counting only its sends),
//! measured before and after their run: more processes cost CPU per message whatever
//! sends, as the kernel wakes each for fewer events at a time. The goal is agent CPU per
//! message at most 1.5x the bare transport's split the same way. Not a test: it prints
//! figures and asserts nothing about them; it exits non-zero only when a run did not
//! deliver every message exactly once.
//!
//! Environment: `MAILROOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `MAILROOM_BENCH_MESSAGES` (default 20000),
//! `MAILROOM_BENCH_MAILBOXES` (default 50), `MAILROOM_BENCH_AGENTS` (the runs' agent
//! counts, default `1,4`), `MAILROOM_BENCH_CONCURRENCY` (each agent's `--concurrency`, and
//! the bare transport's concurrent sends; default 4), `MAILROOM_BENCH_SERVER_WORKERS`
//! (aiosmtpd processes, default 2), `MAILROOM_BENCH_QUEUE_TASKS` (concurrent
//! `Mailroom::queue` callers, default 8).

#![allow(clippy::print_stdout, clippy::print_stderr)]

// The harness the CI test `agent_scale` uses, so the bench checks what the test checks.
#[path = "../tests/it/scale.rs"]
mod scale;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mailroom_model::{
    CredentialSecret, Credentials, MessageTransport, OutgoingMessage, Provider, Secret,
    ServerSettings,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_testkit::smtp::TestServer;

use crate::scale::{Fleet, Mailbox, counting_server, draft, mailboxes, proc_stat_seconds};

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// This process's user + system CPU seconds so far (`getrusage(RUSAGE_SELF)`).
fn own_cpu_seconds() -> f64 {
    proc_stat_seconds(&[11, 12])
}

/// The user part of [`own_cpu_seconds`].
fn own_user_seconds() -> f64 {
    proc_stat_seconds(&[11])
}

/// User + system CPU seconds of the server's processes so far.
fn server_cpu_seconds(server: &TestServer) -> f64 {
    server
        .pids
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let ticks = |index: usize| {
                fields
                    .get(index)
                    .and_then(|value| value.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}

/// What one run cost.
struct Figures {
    seconds: f64,
    client_cpu: f64,
    /// Of `client_cpu`, user time: the rest is the kernel's, mostly the sockets'.
    client_user: f64,
    server_cpu: f64,
}

impl Figures {
    fn per_second(&self, messages: usize) -> f64 {
        messages as f64 / self.seconds
    }

    fn cpu_micros_per_message(&self, messages: usize) -> f64 {
        self.client_cpu / messages as f64 * 1e6
    }

    fn server_micros_per_message(&self, messages: usize) -> f64 {
        self.server_cpu / messages as f64 * 1e6
    }

    /// Throughput and CPU per message, as each run's line prints them.
    fn describe(&self, messages: usize) -> String {
        format!(
            "{:.0} messages/s ({:.2} s), client CPU {:.0} µs per message (user {:.0} µs), server CPU {:.0} µs per message",
            self.per_second(messages),
            self.seconds,
            self.cpu_micros_per_message(messages),
            self.client_user / messages as f64 * 1e6,
            self.server_micros_per_message(messages),
        )
    }
}

/// One transport per mailbox, with its credentials, as the facade keeps them.
type Transports = Vec<(Arc<SmtpTransport>, Credentials)>;

/// What the bare transport sends: the transports and messages `numbers` (message `number`
/// for mailbox `number % mailboxes`), built beforehand, outside the measurement.
fn bare_prepare(
    port: u16,
    mailboxes: &[Mailbox],
    numbers: std::ops::Range<usize>,
) -> (Transports, Vec<(usize, OutgoingMessage)>) {
    let transports: Transports = mailboxes
        .iter()
        .map(|mailbox| {
            let mut settings = ServerSettings::preset(Provider::None);
            settings.host = "127.0.0.1".to_owned();
            settings.port = port;
            settings.tls = false;
            settings.smtp_user = mailbox.address.clone();
            settings.password = Some(Secret::new(mailbox.password.clone()));
            let transport = SmtpTransport::new(SmtpTransportConfig::new(settings))
                .expect("a bare SMTP transport");
            let credentials = Credentials {
                user: mailbox.address.clone(),
                secret: CredentialSecret::Password(Secret::new(mailbox.password.clone())),
                version: 1,
            };
            (Arc::new(transport), credentials)
        })
        .collect();
    let outgoing = numbers
        .map(|number| {
            let index = number % mailboxes.len();
            let built = draft(number)
                .build(&mailboxes[index].address, None)
                .expect("build a message");
            let message = OutgoingMessage {
                envelope: built.envelope,
                bytes: built.bytes,
                message_id: Some(built.message_id),
            };
            (index, message)
        })
        .collect();
    (transports, outgoing)
}

/// Sends `outgoing`, `concurrency` at a time, each through its mailbox's transport.
async fn bare_send(
    transports: Transports,
    outgoing: Vec<(usize, OutgoingMessage)>,
    concurrency: usize,
) {
    let transports = Arc::new(transports);
    let outgoing = Arc::new(outgoing);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (transports, outgoing, next) = (
            Arc::clone(&transports),
            Arc::clone(&outgoing),
            Arc::clone(&next),
        );
        workers.spawn(async move {
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                let Some((index, message)) = outgoing.get(number) else {
                    break;
                };
                let (transport, credentials) = &transports[*index];
                transport
                    .send(message, credentials)
                    .await
                    .expect("a bare send");
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.expect("a bare sender panicked");
    }
}

/// The bare transport in this process: the same messages sent `concurrency` at a time.
async fn bare_transport(
    server: &TestServer,
    mailboxes: &[Mailbox],
    messages: usize,
    concurrency: usize,
) -> Figures {
    let (transports, outgoing) = bare_prepare(server.port, mailboxes, 0..messages);
    let first_delivery = server.events_of("message").len();
    let cpu_before = own_cpu_seconds();
    let user_before = own_user_seconds();
    let server_before = server_cpu_seconds(server);
    let started = Instant::now();
    bare_send(transports, outgoing, concurrency).await;
    let figures = Figures {
        seconds: started.elapsed().as_secs_f64(),
        client_cpu: own_cpu_seconds() - cpu_before,
        client_user: own_user_seconds() - user_before,
        server_cpu: server_cpu_seconds(server) - server_before,
    };
    let delivered = server.events_of("message").len() - first_delivery;
    assert_eq!(delivered, messages, "the server received every bare send");
    figures
}

/// The variable that makes this bench a bare sender process of [`bare_processes`]:
/// `PORT,MAILBOXES,FIRST,END,CONCURRENCY`.
const BARE_CHILD: &str = "MAILROOM_BENCH_BARE_CHILD";

/// A bare sender process: sends messages `FIRST..END` (see [`BARE_CHILD`]), then prints
/// the CPU seconds, user CPU seconds and wall seconds its sends took (not its start, nor the building of
/// its messages, which the agents' figure counts for them).
fn bare_child(spec: &str) {
    let fields: Vec<usize> = spec
        .split(',')
        .map(|field| {
            field
                .parse()
                .expect("a number in MAILROOM_BENCH_BARE_CHILD")
        })
        .collect();
    let [port, mailbox_count, first, end, concurrency] = fields[..] else {
        panic!("MAILROOM_BENCH_BARE_CHILD is PORT,MAILBOXES,FIRST,END,CONCURRENCY: {spec}");
    };
    let port = u16::try_from(port).expect("a port");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (transports, outgoing) = bare_prepare(port, &mailboxes(mailbox_count), first..end);
    let cpu_before = own_cpu_seconds();
    let user_before = own_user_seconds();
    let started = Instant::now();
    runtime.block_on(bare_send(transports, outgoing, concurrency));
    println!(
        "{} {} {}",
        own_cpu_seconds() - cpu_before,
        own_user_seconds() - user_before,
        started.elapsed().as_secs_f64()
    );
}

/// The bare transport split as the agents are: `processes` processes of this bench, each
/// sending its share of the messages `concurrency` at a time (with as many processes and
/// connections as the agents, the kernel wakes each process for fewer events at a time,
/// which costs CPU per message whatever sends). Wall time is the slowest process's.
fn bare_processes(
    server: &TestServer,
    mailbox_count: usize,
    messages: usize,
    processes: usize,
    concurrency: usize,
) -> Figures {
    let first_delivery = server.events_of("message").len();
    let server_before = server_cpu_seconds(server);
    let itself = std::env::current_exe().expect("this bench's path");
    let children: Vec<_> = (0..processes)
        .map(|process| {
            let first = messages * process / processes;
            let end = messages * (process + 1) / processes;
            std::process::Command::new(&itself)
                .env(
                    BARE_CHILD,
                    format!(
                        "{},{mailbox_count},{first},{end},{concurrency}",
                        server.port
                    ),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a bare sender process")
        })
        .collect();
    let (mut client_cpu, mut client_user, mut seconds) = (0.0f64, 0.0f64, 0.0f64);
    for child in children {
        let output = child.wait_with_output().expect("wait for a bare sender");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "a bare sender failed: {printed}");
        let figures: Vec<f64> = printed
            .split_whitespace()
            .filter_map(|figure| figure.parse().ok())
            .collect();
        let [cpu, user, wall] = figures[..] else {
            panic!("a bare sender printed {printed:?}");
        };
        client_cpu += cpu;
        client_user += user;
        seconds = seconds.max(wall);
    }
    let delivered = server.events_of("message").len() - first_delivery;
    assert_eq!(delivered, messages, "the server received every bare send");
    Figures {
        seconds,
        client_cpu,
        client_user,
        server_cpu: server_cpu_seconds(server) - server_before,
    }
}

fn main() {
    if let Ok(spec) = std::env::var(BARE_CHILD) {
        bare_child(&spec);
        return;
    }
    mailroom_testkit::rerun_with_postgres_default(LOCAL_POSTGRES);
    let messages = env_number("MAILROOM_BENCH_MESSAGES", 20_000);
    let mailbox_count = env_number("MAILROOM_BENCH_MAILBOXES", 50).max(1);
    let concurrency = env_number("MAILROOM_BENCH_CONCURRENCY", 4).clamp(1, 256);
    let workers = env_number("MAILROOM_BENCH_SERVER_WORKERS", 2);
    let queue_tasks = env_number("MAILROOM_BENCH_QUEUE_TASKS", 8);
    let agent_counts: Vec<usize> = std::env::var("MAILROOM_BENCH_AGENTS")
        .unwrap_or_else(|_| "1,4".to_owned())
        .split(',')
        .filter_map(|count| count.trim().parse().ok())
        .filter(|&count| count > 0)
        .collect();
    let binary = Path::new(env!("CARGO_BIN_EXE_mailroom"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let mailboxes = mailboxes(mailbox_count);
    let server = counting_server(&mailboxes, workers);
    println!(
        "agent bench: {messages} messages over {mailbox_count} mailboxes (password SMTP, no rate limits), concurrency {concurrency} per agent, aiosmtpd with {workers} server processes on 127.0.0.1, PostgreSQL"
    );

    // The bare transport is measured before the first agent run and again after each, and
    // each agent run is compared with the mean of the bare runs on either side of it: the
    // shared cores' speed drifts by a third between minutes, and one bare run at the start
    // made a later run's ratio follow that drift.
    let measure_bare = |label: &str| {
        let bare = runtime.block_on(bare_transport(&server, &mailboxes, messages, concurrency));
        println!(
            "bare SmtpTransport {label} (in process, {concurrency} concurrent sends): {}",
            bare.describe(messages)
        );
        bare.cpu_micros_per_message(messages)
    };
    let mut bare_before = measure_bare("(first)");

    // Several agents are also compared with the bare transport split the same way, measured
    // before and after their run.
    let measure_split = |agents: usize, label: &str| {
        let split = bare_processes(&server, mailbox_count, messages, agents, concurrency);
        println!(
            "bare SmtpTransport {label} in {agents} processes ({concurrency} concurrent sends each, as the agents): {}",
            split.describe(messages)
        );
        split.cpu_micros_per_message(messages)
    };

    let mut all_exactly_once = true;
    for agents in agent_counts {
        let split_before = (agents > 1).then(|| measure_split(agents, "(before)"));
        let fleet = runtime.block_on(Fleet::new(&server, mailboxes.clone()));
        let queued = runtime.block_on(fleet.queue(messages, queue_tasks));
        let first_delivery = server.events_of("message").len();
        let server_before = server_cpu_seconds(&server);
        let run = fleet.run_agents(binary, agents, concurrency as u16);
        let figures = Figures {
            seconds: run.seconds,
            client_cpu: run.cpu_seconds,
            client_user: run.user_seconds,
            server_cpu: server_cpu_seconds(&server) - server_before,
        };
        let verdict = runtime.block_on(fleet.verify(&server, first_delivery, &queued));
        all_exactly_once &= verdict.exactly_once();
        let agent_cpu = figures.cpu_micros_per_message(messages);
        println!(
            "{agents} agent process(es) on PostgreSQL: {} (the client is the agents); queueing took {:.0} messages/s; sent per agent {:?}, lease lost {}",
            figures.describe(messages),
            messages as f64 / queued.seconds,
            run.summaries
                .iter()
                .map(|summary| summary["sent"].as_u64().unwrap_or(0))
                .collect::<Vec<_>>(),
            run.total("lease_lost"),
        );
        println!("  {verdict}");
        // The fixed cost inside the agent CPU above: one more agent on the drained outbox.
        let idle = fleet.run_agents(binary, 1, concurrency as u16);
        println!(
            "  of the agent CPU, each process's start and exit with nothing to send: {:.0} ms",
            idle.cpu_seconds * 1e3
        );
        runtime.block_on(fleet.finish());
        let bare_after = measure_bare(&format!("(after {agents} agent(s))"));
        let bare = (bare_before + bare_after) / 2.0;
        // One agent is split as the in-process transport is (one process, `concurrency`
        // sends): the goal applies to that ratio. Several agents' goal ratio is against the
        // bare transport in as many processes.
        let one = if agents == 1 {
            " (goal: at most 1.5x)"
        } else {
            ""
        };
        println!(
            "  {agents} agent(s): agent CPU {agent_cpu:.0} µs per message = {:.2}x the in-process bare transport's {bare:.0} µs (the mean of the runs before and after; {:.2}x and {:.2}x of each){one}",
            agent_cpu / bare,
            agent_cpu / bare_before,
            agent_cpu / bare_after,
        );
        bare_before = bare_after;
        if let Some(split_before) = split_before {
            let split_after = measure_split(agents, "(after)");
            let split = (split_before + split_after) / 2.0;
            println!(
                "  {agents} agent(s): agent CPU {agent_cpu:.0} µs per message = {:.2}x the bare transport's {split:.0} µs in {agents} processes (the mean of the runs before and after; {:.2}x and {:.2}x of each) (goal: at most 1.5x)",
                agent_cpu / split,
                agent_cpu / split_before,
                agent_cpu / split_after,
            );
        }
    }
    if !all_exactly_once {
        eprintln!("agent bench: a run did not deliver every message exactly once (see above)");
        std::process::exit(1);
    }
}
