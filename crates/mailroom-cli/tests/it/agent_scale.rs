//! Several `mailroom agent` processes on one PostgreSQL database share the work: 2,000
//! messages over 20 mailboxes, 4 agents at once, every message delivered exactly once to
//! the counting SMTP server and `sent` in the outbox. The full-size run (20,000 messages
//! over 50 mailboxes, 1 against 4 agents, with throughput) is `cargo xtask bench agent`.

use crate::scale::{Fleet, counting_server, mailboxes};

const MESSAGES: usize = 2_000;
const MAILBOXES: usize = 20;
const AGENTS: usize = 4;
const CONCURRENCY: u16 = 4;

// The figures are part of the result, printed beside the verdict.
#[allow(clippy::print_stdout)]
#[test]
fn four_agents_on_one_postgres_database_deliver_every_message_exactly_once() {
    let mailboxes = mailboxes(MAILBOXES);
    let server = counting_server(&mailboxes, 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fleet = runtime.block_on(Fleet::new(&server, mailboxes));
    let queued = runtime.block_on(fleet.queue(MESSAGES, 8));

    let run = fleet.run_agents(
        std::path::Path::new(env!("CARGO_BIN_EXE_mailroom")),
        AGENTS,
        CONCURRENCY,
    );
    let verdict = runtime.block_on(fleet.verify(&server, 0, &queued));
    println!(
        "{AGENTS} agents, {MESSAGES} messages over {MAILBOXES} mailboxes: queued in {:.2} s, sent in {:.2} s, agents' CPU {:.0} µs per message (user {:.0} µs), sent per agent {:?}; {verdict}",
        queued.seconds,
        run.seconds,
        run.cpu_seconds / MESSAGES as f64 * 1e6,
        run.user_seconds / MESSAGES as f64 * 1e6,
        run.summaries
            .iter()
            .map(|summary| summary["sent"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
    );
    assert!(verdict.exactly_once(), "{verdict}");
    assert_eq!(
        run.total("sent"),
        MESSAGES as u64,
        "the agents' summaries count each message once: {:?}",
        run.summaries
    );
    // The work is shared: an agent whose claim found every mailbox held by the others'
    // claims tries again instead of stopping as if nothing were due.
    assert!(
        run.summaries
            .iter()
            .all(|summary| summary["sent"].as_u64().unwrap_or(0) > 0),
        "every agent sent some of the messages: {:?}",
        run.summaries
    );
    runtime.block_on(fleet.finish());
}
