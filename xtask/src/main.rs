//! `cargo xtask`: every project script in one place (ci, deny, bench).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci            cargo fmt --check, clippy -D warnings, nextest on the whole workspace, doctests
  deny          cargo-deny: licences, bans, sources (advisories are skipped: no network here)
  bench NAME    run a benchmark and print its figures; NAME is one of: {benches}";

/// Benchmarks: the name given to `cargo xtask bench` -> (package, bench target).
const BENCHES: &[(&str, &str, &str)] = &[
    ("smtp", "mailroom-smtp", "smtp"),
    ("gmail", "mailroom-gmail", "gmail"),
    ("send", "mailroom", "send"),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deny") => deny(),
        Some("bench") => bench(&args[1..]),
        _ => {
            let names: Vec<&str> = BENCHES.iter().map(|(name, _, _)| *name).collect();
            eprintln!("{}", USAGE.replace("{benches}", &names.join(", ")));
            bail!("no task given, or an unknown one")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The PostgreSQL server the tests use when `MAILROOM_TEST_POSTGRES_URL` is not set: the
/// one every development and CI machine runs on loopback.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn ci() -> Result<()> {
    let postgres = env::var("MAILROOM_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        println!("xtask: MAILROOM_TEST_POSTGRES_URL is not set; using {LOCAL_POSTGRES}");
        LOCAL_POSTGRES.to_owned()
    });
    let test_env = [("MAILROOM_TEST_POSTGRES_URL", postgres.as_str())];
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo_with_env(
        &["nextest", "run", "--workspace", "--no-fail-fast"],
        &test_env,
    )?;
    cargo_with_env(&["test", "--workspace", "--doc"], &test_env)?;
    Ok(())
}

fn deny() -> Result<()> {
    println!(
        "xtask deny: skipping `advisories`: the RustSec advisory database cannot be fetched on this network"
    );
    cargo(&[
        "deny",
        "--workspace",
        "check",
        "licenses",
        "bans",
        "sources",
    ])
}

fn bench(args: &[String]) -> Result<()> {
    let Some(name) = args.first() else {
        bail!("give a benchmark name, e.g. `cargo xtask bench smtp`");
    };
    let Some((_, package, target)) = BENCHES.iter().find(|(known, _, _)| known == name) else {
        let names: Vec<&str> = BENCHES.iter().map(|(name, _, _)| *name).collect();
        bail!("no benchmark `{name}`; use one of {}", names.join(", "));
    };
    let mut command = vec!["bench", "--package", package, "--bench", target, "--"];
    command.extend(args[1..].iter().map(String::as_str));
    cargo(&command)
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], vars: &[(&str, &str)]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(vars.iter().copied())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
