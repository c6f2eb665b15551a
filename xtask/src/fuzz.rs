//! `cargo xtask fuzz NAME --time SECONDS`: runs one property target (proptest) for longer
//! than CI does. CI runs each property with proptest's default 256 cases; here the target's
//! test binary is built once and run again and again, each run with a fresh random seed and
//! `PROPTEST_CASES` sized to the time left, until the time is up or a property fails. A
//! failure prints proptest's report (the minimal failing input) and proptest records the
//! seed under the crate's `proptest-regressions/`, so the next test run replays it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Which test binary of a package holds a target's properties.
#[derive(Clone, Copy)]
enum Binary {
    /// The library's unit tests (`--lib`).
    Lib,
    /// The integration test target `it` (`--test it`).
    It,
}

/// A property target: a name, the package and binary, and the test-name filters (libtest
/// substring filters) that select its properties.
struct Target {
    name: &'static str,
    package: &'static str,
    binary: Binary,
    filters: &'static [&'static str],
    about: &'static str,
}

/// The property targets, one per parser that reads what others write.
const TARGETS: &[Target] = &[
    Target {
        name: "smtp-reply",
        package: "mailroom-smtp",
        binary: Binary::Lib,
        filters: &["reply_props::"],
        about: "SMTP replies, their classification, 334 challenges, EHLO AUTH",
    },
    Target {
        name: "smtp-wire",
        package: "mailroom-smtp",
        binary: Binary::Lib,
        filters: &[
            "wire::tests::arbitrary_bytes_stay_within_the_bounds",
            "wire::tests::reply_shaped_bytes_parse_the_same_in_any_pieces",
        ],
        about: "the SMTP reply reader on the wire: arbitrary bytes in arbitrary pieces, its bounds",
    },
    Target {
        name: "oauth-error",
        package: "mailroom-tokens",
        binary: Binary::Lib,
        filters: &["oauth::props::"],
        about: "OAuth token endpoint error bodies, their classification and bounds, redaction",
    },
    Target {
        name: "id-token",
        package: "mailroom-tokens",
        binary: Binary::Lib,
        filters: &["identity::props::"],
        about: "id_token text, payloads and claims",
    },
    Target {
        name: "gmail-error",
        package: "mailroom-gmail",
        binary: Binary::Lib,
        filters: &[
            "reply_props::any_answer_is_classified_within_bounds",
            "reply_props::an_echoed_token_never_shows",
        ],
        about: "Gmail API error answers (status, body, headers) and token redaction",
    },
    Target {
        name: "retry-after",
        package: "mailroom-gmail",
        binary: Binary::Lib,
        filters: &["reply_props::retry_after_forms"],
        about: "Retry-After (delay-seconds, HTTP-date, anything else)",
    },
    Target {
        name: "transport-error",
        package: "mailroom-model",
        binary: Binary::It,
        filters: &["props::transport_errors_are_bounded"],
        about: "TransportError bounds: message, server reply, Retry-After clamp",
    },
    Target {
        name: "fax",
        package: "mailroom-model",
        binary: Binary::It,
        filters: &["props::fax_"],
        about: "fax format strings (round trip) and fax numbers",
    },
    Target {
        name: "validate",
        package: "mailroom-model",
        binary: Binary::It,
        filters: &[
            "props::control_characters",
            "props::text_checks",
            "props::accepted_hosts",
            "props::ports",
            "props::addresses",
        ],
        about: "address, host, port and text validation",
    },
    Target {
        name: "binding",
        package: "mailroom-model",
        binary: Binary::It,
        filters: &[
            "props::bindings_round_trip",
            "props::any_binding_text",
            "props::binding_keys_normalise",
        ],
        about: "bindings (OBJECT:COLUMN:VALUE round trip) and the normalised binding key",
    },
    Target {
        name: "sandbox-smtp-parsers",
        package: "mailroom-sandbox",
        binary: Binary::Lib,
        filters: &["smtp::props::"],
        about: "the sandbox SMTP server's SASL, path and DATA parsers",
    },
    Target {
        name: "sandbox-smtp-session",
        package: "mailroom-sandbox",
        binary: Binary::It,
        filters: &["props::any_smtp_session_is_answered"],
        about: "arbitrary SMTP sessions against a running sandbox (loopback)",
    },
    Target {
        name: "sandbox-http",
        package: "mailroom-sandbox",
        binary: Binary::It,
        filters: &["props::any_http_request_is_answered"],
        about: "arbitrary HTTP requests to the sandbox's OAuth, Gmail and admin endpoints",
    },
];

/// The longest single run of the test binary: the time left is spent in runs of at most
/// this long, so the cases-per-second estimate stays fresh.
const MAX_RUN: Duration = Duration::from_secs(30);

pub(crate) fn fuzz(args: &[String]) -> Result<()> {
    match args {
        [flag] if flag == "--list" => {
            for target in TARGETS {
                println!("{:<22} {} ({})", target.name, target.about, target.package);
            }
            Ok(())
        }
        [name, flag, seconds] if flag == "--time" => {
            let seconds: u64 = seconds
                .parse()
                .with_context(|| format!("--time takes whole seconds, not `{seconds}`"))?;
            let Some(target) = TARGETS.iter().find(|target| target.name == name) else {
                bail!("no fuzz target `{name}`; `cargo xtask fuzz --list` lists them");
            };
            run(target, Duration::from_secs(seconds))
        }
        [name] => {
            let Some(target) = TARGETS.iter().find(|target| target.name == name) else {
                bail!("no fuzz target `{name}`; `cargo xtask fuzz --list` lists them");
            };
            run(target, Duration::from_secs(60))
        }
        _ => bail!("usage: cargo xtask fuzz NAME [--time SECONDS] | cargo xtask fuzz --list"),
    }
}

fn run(target: &Target, time: Duration) -> Result<()> {
    let executable = build(target)?;
    let tests = list(&executable, target)?;
    if tests.is_empty() {
        bail!(
            "the filters of `{}` select no test in {}: the table in xtask/src/fuzz.rs is out of date",
            target.name,
            executable
        );
    }
    println!(
        "xtask fuzz {}: {} properties ({}), {} s",
        target.name,
        tests.len(),
        tests.join(", "),
        time.as_secs()
    );
    let started = Instant::now();
    let mut cases_each: u64 = 0;
    let mut runs = 0u32;
    let mut batch: u64 = 256;
    loop {
        let run_started = Instant::now();
        let output = Command::new(&executable)
            .args(target.filters)
            .env("PROPTEST_CASES", batch.to_string())
            // Shrinking a failure may take long; it stays bounded.
            .env("PROPTEST_MAX_SHRINK_TIME", "60000")
            .env_remove("PROPTEST_RNG_SEED")
            .output()
            .with_context(|| format!("cannot run {executable}"))?;
        runs += 1;
        let took = run_started.elapsed();
        if !output.status.success() {
            println!("{}", String::from_utf8_lossy(&output.stdout));
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            println!(
                "xtask fuzz {}: FAILED in run {runs} (batch of {batch} cases) after {:.1} s and {cases_each} earlier cases per property; the minimal failing input is above, and proptest-regressions/ of {} holds its seed",
                target.name,
                started.elapsed().as_secs_f64(),
                target.package
            );
            bail!("fuzz target {} found a failure", target.name);
        }
        cases_each += batch;
        let elapsed = started.elapsed();
        if elapsed >= time {
            break;
        }
        // Size the next run to the time left (at most MAX_RUN), from this run's rate.
        let left = (time - elapsed).min(MAX_RUN);
        let rate = batch as f64 / took.as_secs_f64().max(0.001);
        batch = ((rate * left.as_secs_f64()) as u64).clamp(16, 10_000_000);
    }
    println!(
        "xtask fuzz {}: {} runs, {} cases per property ({} in all), {:.1} s, no failure",
        target.name,
        runs,
        cases_each,
        cases_each * tests.len() as u64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the target's test binary and returns its path (from cargo's JSON messages).
fn build(target: &Target) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command.args([
        "test",
        "--no-run",
        "--message-format=json",
        "--package",
        target.package,
    ]);
    match target.binary {
        Binary::Lib => command.arg("--lib"),
        Binary::It => command.args(["--test", "it"]),
    };
    println!(
        "xtask: building the tests of {} for {}",
        target.package, target.name
    );
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !output.status.success() {
        bail!("the tests of {} do not build", target.package);
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let kinds = message["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let wanted = match target.binary {
            Binary::Lib => kinds.iter().any(|kind| kind == "lib" || kind == "rlib"),
            Binary::It => {
                message["target"]["name"] == "it" && kinds.iter().any(|kind| kind == "test")
            }
        };
        if let (true, Some(executable)) = (wanted, message["executable"].as_str()) {
            return Ok(executable.to_owned());
        }
    }
    bail!("cargo built no test binary for {}", target.name)
}

/// The tests the target's filters select.
fn list(executable: &str, target: &Target) -> Result<Vec<String>> {
    let output = Command::new(executable)
        .args(target.filters)
        .arg("--list")
        .output()
        .with_context(|| format!("cannot run {executable}"))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}
