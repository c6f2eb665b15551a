//! `mailroom demo` end to end: the binary runs the whole flow against its in-process
//! sandbox on a fresh "machine" (an empty HOME and TMPDIR, no mailroom variables) and
//! every step verifies; and it refuses a database that already holds a configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Cli;

const STEPS: &[&str] = &[
    "configure",
    "sign in company (Google)",
    "sign in user (Microsoft)",
    "send via SMTP + attachment",
    "send via Gmail API",
    "token refresh",
    "queue 20, agent drains",
    "sign-in disabled",
];

fn fresh_machine_demo(home: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .arg("demo")
        .args(args)
        .env_remove("MAILROOM_DATABASE_URL")
        .env_remove("MAILROOM_KEY")
        .env_remove("MAILROOM_KEY_FILE")
        .env_remove("MAILROOM_CA_FILE")
        .env_remove("MAILROOM_LOG")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("TMPDIR", home.join("tmp"))
        .stdin(Stdio::null())
        .output()
        .expect("run mailroom demo");
    (
        output.status.code().expect("mailroom exited by a signal"),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn eml_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "eml")
        })
        .count()
}

#[test]
fn the_demo_runs_the_whole_flow_offline_and_verifies_every_step() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("tmp")).unwrap();
    let (code, stdout, stderr) = fresh_machine_demo(home.path(), &["--keep"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for (index, step) in STEPS.iter().enumerate() {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{:>2}  {step} ", index + 1)))
            .unwrap_or_else(|| panic!("no line for step {step}:\n{stdout}"));
        assert!(line.split_whitespace().any(|word| word == "yes"), "{line}");
    }
    assert!(stdout.ends_with("8 of 8 steps verified\n"), "{stdout}");
    assert!(
        stdout.contains("Failed to obtain an access token for orders@demo.example (google)"),
        "{stdout}"
    );

    // --keep leaves the database, the key and the sandbox's files in the temporary folder.
    let kept: PathBuf = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("(kept: "))
        .and_then(|rest| rest.split(';').next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no kept directory in:\n{stdout}"));
    assert!(
        kept.starts_with(home.path().join("tmp")),
        "{}",
        kept.display()
    );
    assert!(kept.join("demo.sqlite").is_file());
    assert!(kept.join("demo.sqlite.key").is_file());
    assert!(kept.join("sandbox/ca.pem").is_file());
    // 1 SMTP + 1 Gmail + 1 after the refresh + 20 queued.
    assert_eq!(eml_files(&kept.join("sandbox/mail")), 23);
    // The default database was never created.
    assert!(!home.path().join("data/mailroom").exists());
}

#[test]
fn the_demo_refuses_a_database_that_already_holds_a_configuration() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "google",
        "--user",
        "orders@example.com",
    ])
    .ok();
    let tmp = cli.path().parent().unwrap().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_text = tmp.display().to_string();
    let run = cli.run_with(&["demo"], "", &[("TMPDIR", &tmp_text)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "already holds accounts or app registrations, and the demo would overwrite them"
        ),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    // Without --keep nothing is left behind.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}
