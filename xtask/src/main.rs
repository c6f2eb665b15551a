//! `cargo xtask`: every project script in one place (ci, deny, bench).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci            cargo fmt --check, clippy -D warnings, nextest on the whole workspace, doctests,
                the Gmail tests in a copy with nothing beside it (makes target/test-python
                with aiosmtpd when python3 lacks it)
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
    let python = test_python()?;
    let test_env = [
        ("MAILROOM_TEST_POSTGRES_URL", postgres.as_str()),
        ("MAILROOM_TEST_PYTHON", python.as_str()),
    ];
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
    standalone_clone_check(&test_env)?;
    Ok(())
}

/// The virtual environment `cargo xtask` makes when no Python at hand has aiosmtpd (the
/// SMTP server the tests run); the SMTP test harness finds it here too.
const TEST_VENV: &str = "target/test-python";

/// A Python with the test servers' packages (`.ci/requirements.txt`): `MAILROOM_TEST_PYTHON`
/// when set, else `python3` when it has them, else a virtual environment under `target/`
/// made (once) with `python3 -m venv` and `pip install -r .ci/requirements.txt`.
fn test_python() -> Result<String> {
    if let Ok(python) = env::var("MAILROOM_TEST_PYTHON") {
        if !has_aiosmtpd(&python) {
            bail!(
                "MAILROOM_TEST_PYTHON={python} cannot import aiosmtpd; install .ci/requirements.txt into it or unset the variable and let xtask make {TEST_VENV}"
            );
        }
        return Ok(python);
    }
    if has_aiosmtpd("python3") {
        return Ok("python3".to_owned());
    }
    let venv_python = env::current_dir()?.join(TEST_VENV).join("bin/python");
    let venv_python_text = venv_python.display().to_string();
    if has_aiosmtpd(&venv_python_text) {
        return Ok(venv_python_text);
    }
    println!(
        "xtask: python3 lacks aiosmtpd (the tests' SMTP server); making {TEST_VENV} with .ci/requirements.txt"
    );
    run_checked(Command::new("python3").args(["-m", "venv", "--clear", TEST_VENV]))
        .context("cannot make a Python virtual environment; install Python 3 with its venv module (Debian: apt-get install python3-venv)")?;
    run_checked(Command::new(&venv_python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        ".ci/requirements.txt",
    ]))
    .context("cannot install .ci/requirements.txt into the test virtual environment")?;
    if !has_aiosmtpd(&venv_python_text) {
        bail!("{TEST_VENV} still cannot import aiosmtpd after installing .ci/requirements.txt");
    }
    Ok(venv_python_text)
}

fn has_aiosmtpd(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn run_checked(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Proves that no test reads outside the repository: the tracked files (as they are in the
/// work tree) go into a fresh temporary directory with nothing beside them, and the Gmail
/// contract tests, which read Google's discovery document, run there.
fn standalone_clone_check(test_env: &[(&str, &str)]) -> Result<()> {
    let parent = env::temp_dir().join(format!("mailroom-standalone-{}", std::process::id()));
    if parent.exists() {
        std::fs::remove_dir_all(&parent)?;
    }
    let clone = parent.join("main");
    println!(
        "xtask: copying the tracked files to {} (no sibling shared/) and running mailroom-gmail's tests there",
        clone.display()
    );
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .output()
        .context("cannot run git ls-files: the standalone check needs a git checkout")?;
    if !listed.status.success() {
        bail!("git ls-files failed: the standalone check needs a git checkout");
    }
    for name in listed
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
    {
        let name = std::str::from_utf8(name).context("a tracked file name is not UTF-8")?;
        let from = Path::new(name);
        if !from.exists() {
            continue; // deleted in the work tree, not yet committed
        }
        let to = clone.join(name);
        std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
        std::fs::copy(from, &to).with_context(|| format!("cannot copy {name}"))?;
    }
    // Reuse the registry crates already built; the workspace crates build anew there.
    let target = env::current_dir()?.join("target");
    let target_text = target.display().to_string();
    let mut vars = test_env.to_vec();
    vars.push(("CARGO_TARGET_DIR", target_text.as_str()));
    let result = cargo_in(
        &clone,
        &[
            "nextest",
            "run",
            "--package",
            "mailroom-gmail",
            "--no-fail-fast",
        ],
        &vars,
    );
    std::fs::remove_dir_all(&parent)?;
    result.context("the Gmail contract tests failed in a clone with nothing beside it: a test reads outside the repository")
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
    let python = test_python()?;
    let mut command = vec!["bench", "--package", package, "--bench", target, "--"];
    command.extend(args[1..].iter().map(String::as_str));
    cargo_with_env(&command, &[("MAILROOM_TEST_PYTHON", python.as_str())])
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], vars: &[(&str, &str)]) -> Result<()> {
    cargo_in(Path::new("."), args, vars)
}

fn cargo_in(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .current_dir(dir)
        .args(args)
        .envs(vars.iter().copied())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
