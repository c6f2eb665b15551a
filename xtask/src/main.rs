//! `cargo xtask`: every project script in one place (ci, test, dist, package, checks,
//! deny, bench, fuzz, mutants).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace::Workspace;

mod checks;
mod dist;
mod fuzz;
mod workspace;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci            the repository checks, cargo fmt --check, clippy -D warnings, cargo check of
                each library crate alone, the packaging run, nextest on the whole workspace,
                doctests, the examples (offline, against the sandbox), the Gmail tests in a
                copy with nothing beside it (makes
                target/test-python with aiosmtpd when python3 lacks it, and installs
                chromium and chromium-driver with apt-get for the console's browser tests)
  test CRATE    one crate's tests (nextest and doctests) as a team reusing it runs them,
                with only the services that crate needs
  dist          build the release archive target/dist/mailroom-VERSION-TARGET.tar.gz
                (binary, README, licences, completions, man page) and target/dist/SHA256SUMS
  dist --check [ARCHIVE]
                verify an archive: checksum, contents, the binary prints the workspace version
  package       cargo package --no-verify of every library crate, in one run
  check-crates  cargo check of each library crate alone (and without default features, and
                with all features, where it has features)
  checks        the repository checks alone (no `mailroom ` in library src/, no #[path]
                outside its crate, one smtp_server.py)
  deny          cargo-deny: licences, bans, sources (advisories are skipped: no network here)
  bench NAME    run a benchmark and print its figures; NAME is one of: {benches}
  fuzz NAME [--time SECONDS]
                run one property target (proptest) for SECONDS (default 60) with fresh seeds,
                far more cases than CI's 256; prints cases run and any minimal failing input
  fuzz --list   the property targets
  mutants [CRATE...] [--changed]
                mutation testing (cargo-mutants with nextest, installed when missing) of the
                named library crates (default: all), each mutant tested by its own crate's
                tests only; --changed mutates only the lines changed since the merge base
                with main. Prints caught / missed / timed out / unviable per crate; output
                in target/mutants/CRATE/mutants.out. Not part of `ci`: a full run is long";

/// Benchmarks: the name given to `cargo xtask bench` -> (package, bench target).
const BENCHES: &[(&str, &str, &str)] = &[
    ("smtp", "mailroom-smtp", "smtp"),
    ("gmail", "mailroom-gmail", "gmail"),
    ("graph", "mailroom-graph", "graph"),
    ("send", "mailroom", "send"),
    ("line-ends", "mailroom", "line_ends"),
    ("claim", "mailroom", "claim"),
    ("memory", "mailroom-cli", "memory"),
    ("agent", "mailroom-cli", "agent"),
    ("console", "mailroom-console", "console"),
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
        Some("test") => test(&args[1..]),
        Some("dist") => dist::dist(&Workspace::load()?, &args[1..]),
        Some("package") => package(&Workspace::load()?),
        Some("checks") => repository_checks(),
        Some("check-crates") => check_each_library_crate(&Workspace::load()?),
        Some("deny") => deny(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("mutants") => mutants(&Workspace::load()?, &args[1..]),
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

/// `MAILROOM_TEST_POSTGRES_URL`, else the local server.
fn test_postgres_url() -> String {
    env::var("MAILROOM_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        println!("xtask: MAILROOM_TEST_POSTGRES_URL is not set; using {LOCAL_POSTGRES}");
        LOCAL_POSTGRES.to_owned()
    })
}

fn ci() -> Result<()> {
    // Instant, and each prints every finding before any failure stops the run.
    repository_checks()?;
    let workspace = Workspace::load()?;
    let postgres = test_postgres_url();
    let python = test_python()?;
    let test_env = [
        ("MAILROOM_TEST_POSTGRES_URL", postgres.as_str()),
        ("MAILROOM_TEST_PYTHON", python.as_str()),
    ];
    browser_tools()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    check_each_library_crate(&workspace)?;
    package(&workspace)?;
    cargo_with_env(
        &["nextest", "run", "--workspace", "--no-fail-fast"],
        &test_env,
    )?;
    cargo_with_env(&["test", "--workspace", "--doc"], &test_env)?;
    run_examples()?;
    standalone_clone_check(&test_env)?;
    Ok(())
}

/// The examples a team reusing a crate starts from: (package, example). Each runs offline
/// against the in-process sandbox and exits non-zero unless what it did checked out.
const EXAMPLES: &[(&str, &str)] = &[
    ("mailroom", "host_app"),
    ("mailroom-smtp", "send_one"),
    ("mailroom-tokens", "refresh"),
];

fn run_examples() -> Result<()> {
    for (package, example) in EXAMPLES {
        cargo(&["run", "--quiet", "--package", package, "--example", example])
            .with_context(|| format!("the example {example} of {package} failed"))?;
    }
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

/// Whether `program` is on the `PATH`.
fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The console's browser tests drive Chromium through chromedriver (Debian's `chromium`
/// and `chromium-driver`): installed with apt-get when missing and this runs as root;
/// otherwise the run stops here and says what to install.
fn browser_tools() -> Result<()> {
    let have = |program: &str, variable: &str| env::var_os(variable).is_some() || on_path(program);
    if have("chromium", "MAILROOM_TEST_CHROMIUM")
        && have("chromedriver", "MAILROOM_TEST_CHROMEDRIVER")
    {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !(root && on_path("apt-get")) {
        bail!(
            "the console's browser tests need Chromium and chromedriver: install them (Debian: `apt-get install chromium chromium-driver`) or set MAILROOM_TEST_CHROMIUM and MAILROOM_TEST_CHROMEDRIVER"
        );
    }
    println!("xtask: installing chromium and chromium-driver for the console's browser tests");
    run_checked(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get update failed")?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("cannot install chromium and chromium-driver")?;
    Ok(())
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
    copy_files(&git_files(&[])?, &clone)?;
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

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
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

/// `git ls-files` with `extra` arguments (e.g. `--others --exclude-standard` to add the
/// untracked files that are not ignored): paths relative to the workspace root.
fn git_files(extra: &[&str]) -> Result<Vec<String>> {
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .args(extra)
        .output()
        .context("cannot run git ls-files: this task needs a git checkout")?;
    if !listed.status.success() {
        bail!("git ls-files failed: this task needs a git checkout");
    }
    listed
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            std::str::from_utf8(name)
                .map(str::to_owned)
                .context("a tracked file name is not UTF-8")
        })
        .collect()
}

/// Copies the files (relative to the current directory) that still exist into `to`.
fn copy_files(names: &[String], to: &Path) -> Result<()> {
    for name in names {
        let from = Path::new(name);
        if !from.exists() {
            continue; // deleted in the work tree, not yet committed
        }
        let destination = to.join(name);
        std::fs::create_dir_all(destination.parent().expect("a file has a parent"))?;
        std::fs::copy(from, &destination).with_context(|| format!("cannot copy {name}"))?;
    }
    Ok(())
}

/// The repository checks (`checks.rs`): every finding of every check is printed, then the
/// task fails if there was any.
fn repository_checks() -> Result<()> {
    let root = env::current_dir()?;
    let reports = checks::run_all(&root, &git_files(&[])?)?;
    let mut failed = Vec::new();
    for report in &reports {
        if report.findings.is_empty() {
            println!("xtask: check {}: ok", report.name);
            continue;
        }
        failed.push(report.name);
        eprintln!(
            "xtask: check {} failed ({} findings): {}",
            report.name,
            report.findings.len(),
            report.rule
        );
        for finding in &report.findings {
            eprintln!("  {finding}");
        }
    }
    if !failed.is_empty() {
        bail!("repository checks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The crates whose tests start the aiosmtpd SMTP server and so need a Python with it
/// (`test_python`). Keep in step with the tests: `cargo xtask test` gives other crates no
/// `MAILROOM_TEST_PYTHON`.
const SMTP_SERVER_TESTS: &[&str] = &["mailroom", "mailroom-cli", "mailroom-smtp"];

/// The packages whose presence among a crate's dependencies means its tests open a
/// database, and so get `MAILROOM_TEST_POSTGRES_URL`.
const DATABASE_DEPENDENCIES: &[&str] = &["mailroom-testkit", "mailroom-migrations", "sea-orm"];

/// `cargo xtask test CRATE`: the crate's tests alone, with only what they need.
fn test(args: &[String]) -> Result<()> {
    let workspace = Workspace::load()?;
    let testable: Vec<&str> = workspace
        .packages
        .iter()
        .map(|package| package.name.as_str())
        .filter(|name| *name != "xtask")
        .collect();
    let [name] = args else {
        bail!(
            "usage: cargo xtask test CRATE, where CRATE is one of: {}",
            testable.join(", ")
        );
    };
    let Some(package) = workspace
        .package(name)
        .filter(|package| package.name != "xtask")
    else {
        bail!(
            "no crate `{name}` in this workspace; the crates are: {}",
            testable.join(", ")
        );
    };
    let needs_database = package.name == "mailroom-testkit"
        || package
            .dependencies
            .iter()
            .any(|dependency| DATABASE_DEPENDENCIES.contains(&dependency.as_str()));
    let needs_smtp_server = SMTP_SERVER_TESTS.contains(&package.name.as_str());
    if package.name == "mailroom-console" {
        browser_tools()?;
    }
    let postgres = needs_database.then(test_postgres_url);
    let python = if needs_smtp_server {
        Some(test_python()?)
    } else {
        None
    };
    println!(
        "xtask: testing {name} with {}",
        match (&postgres, &python) {
            (Some(_), Some(_)) => "PostgreSQL and the Python SMTP server",
            (Some(_), None) => "PostgreSQL",
            (None, Some(_)) => "the Python SMTP server",
            (None, None) => "no outside service",
        }
    );
    let mut vars = Vec::new();
    if let Some(postgres) = &postgres {
        vars.push(("MAILROOM_TEST_POSTGRES_URL", postgres.as_str()));
    }
    if let Some(python) = &python {
        vars.push(("MAILROOM_TEST_PYTHON", python.as_str()));
    }
    let mut removed = Vec::new();
    if postgres.is_none() {
        removed.push("MAILROOM_TEST_POSTGRES_URL");
    }
    if python.is_none() {
        removed.push("MAILROOM_TEST_PYTHON");
    }
    cargo_isolated(
        &["nextest", "run", "--package", name, "--no-fail-fast"],
        &vars,
        &removed,
    )?;
    if package.has_lib {
        cargo_isolated(&["test", "--package", name, "--doc"], &vars, &removed)?;
    }
    Ok(())
}

/// `cargo check -p CRATE` for every library crate, one at a time: in a run over several
/// packages cargo unifies their dependencies' features, which would hide a crate that
/// builds only beside another. Crates with features are also checked without their
/// default features and with all of them.
fn check_each_library_crate(workspace: &Workspace) -> Result<()> {
    let started = Instant::now();
    for package in workspace.library_crates() {
        let mut variants: Vec<&[&str]> = vec![&[]];
        if package.has_features {
            variants.push(&["--no-default-features"]);
            variants.push(&["--all-features"]);
        }
        for variant in variants {
            let mut args = vec!["check", "--quiet", "--package", package.name.as_str()];
            args.extend_from_slice(variant);
            let one = Instant::now();
            cargo(&args)?;
            println!(
                "xtask: {} builds alone{} ({:.1} s)",
                package.name,
                if variant.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", variant.join(" "))
                },
                one.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "xtask: every library crate builds alone ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo package --no-verify` of every library crate in one run, so that crates depending
/// on unpublished workspace crates resolve them from the run itself (cargo 1.84+).
///
/// The workspace says `publish = false` until a release is decided, and cargo leaves such
/// packages out of the local registry a multi-package run resolves them from. So the run
/// happens in a copy of the work tree (tracked and untracked files, not ignored ones) whose
/// root manifest says `publish = true`; nothing in the repository changes. The `.crate`
/// files land in `target/package/`.
fn package(workspace: &Workspace) -> Result<()> {
    let started = Instant::now();
    let copy = env::temp_dir().join(format!("mailroom-package-{}", std::process::id()));
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    copy_files(&git_files(&["--others", "--exclude-standard"])?, &copy)?;
    let manifest_path = copy.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)?;
    let publishable = manifest.replacen("\npublish = false\n", "\npublish = true\n", 1);
    std::fs::write(&manifest_path, publishable)?;
    let target_text = workspace.target_dir.display().to_string();
    let mut args = vec!["package", "--no-verify", "--allow-dirty", "--quiet"];
    for package in workspace.library_crates() {
        args.extend(["--package", package.name.as_str()]);
    }
    let result = cargo_in(&copy, &args, &[("CARGO_TARGET_DIR", target_text.as_str())]);
    std::fs::remove_dir_all(&copy)?;
    result.context("a library crate does not package")?;
    println!(
        "xtask: {} library crates packaged into {} ({:.1} s)",
        workspace.library_crates().len(),
        workspace
            .relative(&workspace.target_dir.join("package"))
            .display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs cargo with `vars` set and `removed` unset, so a test cannot lean on a service the
/// caller's environment happens to provide.
fn cargo_isolated(args: &[&str], vars: &[(&str, &str)], removed: &[&str]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(&cargo);
    command.args(args).envs(vars.iter().copied());
    for name in removed {
        command.env_remove(name);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// What cargo-mutants made of one crate's mutants, counted from the lists it writes into
/// `mutants.out/` (one mutant a line).
#[derive(Debug, Default, PartialEq, Eq)]
struct MutantCounts {
    caught: usize,
    missed: usize,
    timeout: usize,
    unviable: usize,
}

impl MutantCounts {
    fn read(out_dir: &Path) -> Result<Self> {
        let count = |file: &str| -> Result<usize> {
            let path = out_dir.join(file);
            if !path.exists() {
                return Ok(0);
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(text.lines().filter(|line| !line.trim().is_empty()).count())
        };
        Ok(Self {
            caught: count("caught.txt")?,
            missed: count("missed.txt")?,
            timeout: count("timeout.txt")?,
            unviable: count("unviable.txt")?,
        })
    }

    /// The mutants that built: caught, missed and timed out.
    fn viable(&self) -> usize {
        self.caught + self.missed + self.timeout
    }

    /// The share of viable mutants caught, in percent; `None` when none was viable.
    fn percent_caught(&self) -> Option<f64> {
        let viable = self.viable();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        (viable > 0).then(|| 100.0 * self.caught as f64 / viable as f64)
    }
}

/// The table `cargo xtask mutants` prints: one row per crate.
fn mutants_table(rows: &[(String, MutantCounts, f64)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _, _)| name.len())
        .chain(["crate".len()])
        .max()
        .unwrap_or(0);
    let mut table = format!(
        "{:<width$}  {:>6}  {:>6}  {:>9}  {:>8}  {:>8}  {:>7}\n",
        "crate", "caught", "missed", "timed out", "unviable", "% caught", "time"
    );
    for (name, counts, seconds) in rows {
        let percent = counts
            .percent_caught()
            .map_or_else(|| "-".to_owned(), |percent| format!("{percent:.1}"));
        table.push_str(&format!(
            "{name:<width$}  {:>6}  {:>6}  {:>9}  {:>8}  {percent:>8}  {:>6.0}s\n",
            counts.caught, counts.missed, counts.timeout, counts.unviable, seconds
        ));
    }
    table
}

/// `cargo xtask mutants [CRATE...] [--changed]`: cargo-mutants on each library crate in
/// turn, each mutant tested by that crate's own tests (nextest), then a table of outcomes.
/// Exclusions live in `.cargo/mutants.toml`.
fn mutants(workspace: &Workspace, args: &[String]) -> Result<()> {
    let mut changed = false;
    let mut names = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--changed" => changed = true,
            flag if flag.starts_with('-') => {
                bail!("unknown option `{flag}`; usage: cargo xtask mutants [CRATE...] [--changed]")
            }
            name => names.push(name),
        }
    }
    let libraries: Vec<&str> = workspace
        .library_crates()
        .iter()
        .map(|package| package.name.as_str())
        .collect();
    if names.is_empty() {
        names.clone_from(&libraries);
    }
    for name in &names {
        if !libraries.contains(name) {
            bail!(
                "`{name}` is not a library crate of this workspace; they are: {}",
                libraries.join(", ")
            );
        }
    }
    ensure_cargo_mutants()?;
    let out_root = workspace.target_dir.join("mutants");
    std::fs::create_dir_all(&out_root)
        .with_context(|| format!("cannot make {}", out_root.display()))?;
    let diff = if changed {
        Some(write_diff_against_main(&out_root)?)
    } else {
        None
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for name in names {
        let out_dir = out_root.join(name);
        let out_text = out_dir.display().to_string();
        let mut command = vec![
            "mutants",
            "--package",
            name,
            "--test-package",
            name,
            "--test-tool",
            "nextest",
            "--output",
            out_text.as_str(),
        ];
        let diff_text = diff.as_ref().map(|path| path.display().to_string());
        if let Some(diff_text) = &diff_text {
            command.extend(["--in-diff", diff_text.as_str()]);
        }
        let one = Instant::now();
        run_cargo_mutants(&command)?;
        let counts = MutantCounts::read(&out_dir.join("mutants.out"))?;
        rows.push((name.to_owned(), counts, one.elapsed().as_secs_f64()));
    }
    print!("{}", mutants_table(&rows));
    println!(
        "xtask: mutants done in {:.0} s; the lists are in {}/CRATE/mutants.out/",
        started.elapsed().as_secs_f64(),
        workspace.relative(&out_root).display()
    );
    Ok(())
}

/// Installs cargo-mutants when `cargo mutants --version` fails.
fn ensure_cargo_mutants() -> Result<()> {
    let cargo_program = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let present = Command::new(&cargo_program)
        .args(["mutants", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        return Ok(());
    }
    println!("xtask: cargo-mutants is missing; installing it");
    cargo(&["install", "cargo-mutants", "--locked"]).context("cannot install cargo-mutants")
}

/// Writes `git diff` of the work tree against the merge base of `HEAD` and `main` into
/// `dir/changed.diff`, for `--in-diff`.
fn write_diff_against_main(dir: &Path) -> Result<PathBuf> {
    let base = Command::new("git")
        .args(["merge-base", "HEAD", "main"])
        .output()
        .context("cannot run git merge-base")?;
    if !base.status.success() {
        bail!(
            "git merge-base HEAD main failed: {}",
            String::from_utf8_lossy(&base.stderr).trim()
        );
    }
    let base = String::from_utf8(base.stdout).context("git merge-base printed no text")?;
    let diff = Command::new("git")
        .args(["diff", base.trim(), "--"])
        .output()
        .context("cannot run git diff")?;
    if !diff.status.success() {
        bail!("git diff against {} failed", base.trim());
    }
    let path = dir.join("changed.diff");
    std::fs::write(&path, &diff.stdout)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "xtask: mutating only the lines changed since {} ({} bytes of diff)",
        &base.trim()[..base.trim().len().min(12)],
        diff.stdout.len()
    );
    Ok(path)
}

/// Runs `cargo mutants`: its exit codes 2 (mutants missed) and 3 (timeouts) are outcomes
/// the table reports, not failures of the run. The tests run under nextest's `mutants`
/// profile (`.config/nextest.toml`), which stops a test that hangs.
fn run_cargo_mutants(args: &[&str]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .env("NEXTEST_PROFILE", "mutants")
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    match status.code() {
        Some(0 | 2 | 3) => Ok(()),
        _ => bail!("`cargo {}` failed ({status})", args.join(" ")),
    }
}

#[cfg(test)]
mod mutants_tests {
    use super::*;

    #[test]
    fn counts_come_from_the_lists_and_missing_lists_count_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("caught.txt"), "a.rs:1: x\na.rs:2: y\n\n").unwrap();
        std::fs::write(dir.path().join("missed.txt"), "a.rs:3: z\n").unwrap();
        let counts = MutantCounts::read(dir.path()).unwrap();
        assert_eq!(
            counts,
            MutantCounts {
                caught: 2,
                missed: 1,
                timeout: 0,
                unviable: 0
            }
        );
        assert_eq!(counts.viable(), 3);
        let percent = counts.percent_caught().unwrap();
        assert!((percent - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn unviable_mutants_do_not_count_towards_the_share() {
        let counts = MutantCounts {
            caught: 9,
            missed: 0,
            timeout: 1,
            unviable: 40,
        };
        assert_eq!(counts.percent_caught(), Some(90.0));
        assert_eq!(MutantCounts::default().percent_caught(), None);
        let table = mutants_table(&[("mailroom-model".to_owned(), counts, 12.0)]);
        assert!(table.lines().nth(1).unwrap().contains("90.0"), "{table}");
    }
}
