//! `mailroom demo` end to end: the binary runs the whole flow against its in-process
//! sandbox on a fresh "machine" (an empty HOME and TMPDIR, no mailroom variables) and
//! every step verifies; it refuses a database that already holds a configuration; and the
//! commands `mailroom sandbox serve` prints do point a database at the sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mailroom_testkit::{Backend, TestDatabase};

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
    "shared mailbox, delegate",
    "Microsoft Graph route",
];

fn fresh_machine_demo(home: &Path, args: &[&str]) -> (i32, String, String) {
    fresh_machine_demo_with(home, args, &[])
}

fn fresh_machine_demo_with(
    home: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    command
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
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run mailroom demo");
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
    assert!(stdout.ends_with("10 of 10 steps verified\n"), "{stdout}");
    assert!(
        stdout.contains("Failed to obtain an access token for orders@demo.example (google)"),
        "{stdout}"
    );
    // The Graph step: the SMTP sign-in lacks Mail.Send until sa signs in again.
    assert!(
        stdout.contains("sign in again to grant Mail.Send")
            && stdout.contains("via draft + upload session"),
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
    // 1 SMTP + 1 Gmail + 1 after the refresh + 20 queued + 1 from the shared mailbox, then
    // on the Graph route 1 sendMail + 1 draft with an upload session (the refused send
    // stored nothing) + 1 more from the shared mailbox.
    assert_eq!(eml_files(&kept.join("sandbox/mail")), 27);
    // The default database was never created.
    assert!(!home.path().join("data/mailroom").exists());

    // --json: the same steps, for pipelines; without --keep nothing is left behind.
    let (code, stdout, stderr) = fresh_machine_demo(home.path(), &["--json"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            assert_eq!(step["verified"], true, "{step}");
            step["step"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, STEPS);
    assert!(report["kept"].is_null());
    assert_eq!(
        std::fs::read_dir(home.path().join("tmp")).unwrap().count(),
        1
    );
}

#[tokio::test]
async fn the_demo_runs_on_a_given_empty_postgresql_database() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("tmp")).unwrap();
    let key_file = database.dir().join("mailroom.key");
    let (code, stdout, stderr) = fresh_machine_demo_with(
        home.path(),
        &["--database-url", &database.url],
        &[("MAILROOM_KEY_FILE", &key_file)],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.ends_with("10 of 10 steps verified\n"), "{stdout}");
    assert!(key_file.is_file());
    database.finish().await;
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

fn path_with_mailroom() -> std::ffi::OsString {
    let bin = Path::new(env!("CARGO_BIN_EXE_mailroom")).parent().unwrap();
    let mut paths = vec![bin.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// Runs one printed command line with `sh`, the way a person pastes it.
fn shell(line: &str, env: &[(&str, &std::ffi::OsStr)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(line)
        .env("PATH", path_with_mailroom())
        .env_remove("MAILROOM_KEY")
        .env_remove("MAILROOM_KEY_FILE")
        .env_remove("MAILROOM_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs a printed `mailroom sign-in ... --no-browser` line and plays the browser for the
/// address it prints.
async fn sign_in(line: &str, env: &[(&str, &std::ffi::OsStr)]) {
    use tokio::io::AsyncBufReadExt;
    let mut child = shell(line, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("sign-in printed no address");
        if let Some(url) = line.trim().strip_prefix("http://127.0.0.1:") {
            break format!("http://127.0.0.1:{url}");
        }
    };
    let browser = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if matches!(attempt.url().host_str(), Some("127.0.0.1" | "localhost"))
                && attempt.previous().len() < 5
            {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .unwrap();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Signed in"));
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{line} failed");
}

#[tokio::test]
async fn the_commands_sandbox_serve_prints_point_a_database_at_it() {
    use tokio::io::AsyncBufReadExt;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sandbox");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["sandbox", "serve", "--auto-approve", "--dir"])
        .arg(&dir)
        .env("HOME", home.path())
        .env_remove("MAILROOM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut commands = Vec::new();
    let mut in_commands = false;
    while let Some(line) = stdout.next_line().await.unwrap() {
        let line = line.trim().to_owned();
        let done = line.starts_with("mailroom sign-in --account 1");
        in_commands |= line.starts_with("Point a database at it");
        if in_commands && !line.is_empty() && !line.starts_with("Point a database") {
            commands.push(line);
        }
        if done {
            break;
        }
    }
    assert_eq!(commands.len(), 8, "{commands:#?}");
    let ca_file = commands[0]
        .strip_prefix("export MAILROOM_CA_FILE=")
        .expect("the CA file comes first");
    assert_eq!(Path::new(ca_file), dir.join("ca.pem"));
    let database = format!("sqlite://{}", home.path().join("erp.sqlite").display());
    let env: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("MAILROOM_DATABASE_URL", database.as_ref()),
        ("MAILROOM_CA_FILE", ca_file.as_ref()),
        ("HOME", home.path().as_os_str()),
    ];
    for line in &commands[1..6] {
        let output = shell(line, &env).output().await.unwrap();
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    sign_in(&commands[6], &env).await;
    sign_in(&commands[7], &env).await;
    for line in [
        "mailroom send --user sa --to buyer@example.com --subject Hello --body 'Over SMTP.'",
        "mailroom send --company --to buyer@example.com --subject Hello --body 'Over Gmail.'",
    ] {
        let output = shell(line, &env).output().await.unwrap();
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(eml_files(&dir.join("mail")), 2);
    serve.start_kill().unwrap();
    serve.wait().await.unwrap();
}

#[tokio::test]
async fn sandbox_serve_json_prints_its_endpoints_and_commands_as_one_document() {
    use tokio::io::AsyncBufReadExt;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sandbox");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["--json", "sandbox", "serve", "--auto-approve", "--dir"])
        .arg(&dir)
        .env("HOME", home.path())
        .env_remove("MAILROOM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().expect("a first line");
    let described: serde_json::Value = serde_json::from_str(&first).expect("one JSON line");
    assert_eq!(described["running"], true);
    assert_eq!(
        Path::new(described["ca_file"].as_str().unwrap()),
        dir.join("ca.pem")
    );
    assert!(Path::new(described["ca_file"].as_str().unwrap()).exists());
    assert_eq!(described["auto_approve"], true);
    assert_eq!(described["commands"].as_array().unwrap().len(), 8);
    // The Graph look-alike's base URL, for mailroom-graph's GraphConfig; it answers
    // Graph's error body to a call without a token.
    let graph = described["microsoft"]["graph_api_url"].as_str().unwrap();
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{graph}v1.0/me/sendMail"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let port = described["smtp"]["starttls_port"].as_u64().unwrap();
    // The SMTP endpoint it names is listening.
    let mut smtp = tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
        .await
        .unwrap();
    let mut greeting = [0u8; 3];
    tokio::io::AsyncReadExt::read_exact(&mut smtp, &mut greeting)
        .await
        .unwrap();
    assert_eq!(&greeting, b"220");
    serve.kill().await.unwrap();
}

/// Runs `mailroom [--json] sandbox serve --dir DIR` and returns the child and its stdout.
fn serve_sandbox(
    home: &Path,
    dir: &Path,
    json: bool,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailroom"));
    if json {
        command.arg("--json");
    }
    let mut serve = command
        .args(["sandbox", "serve", "--auto-approve", "--dir"])
        .arg(dir)
        .env("HOME", home)
        .env_remove("MAILROOM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = tokio::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    (serve, stdout)
}

#[tokio::test]
async fn sandbox_serve_writes_its_app_only_credentials_and_they_get_tokens() {
    use mailroom_tokens::OAuthHttp;
    use mailroom_tokens::app_only::{
        AppCertificate, ClientCredential, GRAPH_DEFAULT_SCOPE, OUTLOOK_DEFAULT_SCOPE,
        ServiceAccountKey, client_credentials, service_account_token,
    };
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sandbox");
    let (mut serve, mut stdout) = serve_sandbox(home.path(), &dir, true);
    let first = stdout.next_line().await.unwrap().expect("a first line");
    let described: serde_json::Value = serde_json::from_str(&first).expect("one JSON line");
    let app_only = &described["app_only"];
    assert_eq!(app_only["client_id"], described["microsoft"]["client_id"]);
    assert_eq!(app_only["graph_any_mailbox"], true);
    assert_eq!(
        app_only["smtp_mailboxes"],
        serde_json::json!(["noreply@contoso.example"])
    );

    // The files are in the sandbox's directory, owner-only, and parse as mailroom reads
    // them: the PEM holds a certificate and its key, the JSON is a service account key
    // whose token URI is the sandbox's.
    let certificate_file = dir.join("app-only-certificate.pem");
    let key_file = dir.join("service-account.json");
    assert_eq!(
        Path::new(app_only["certificate_file"].as_str().unwrap()),
        certificate_file
    );
    assert_eq!(
        Path::new(app_only["service_account_file"].as_str().unwrap()),
        key_file
    );
    #[cfg(unix)]
    for file in [&certificate_file, &key_file] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is readable by others", file.display());
    }
    let pem = std::fs::read_to_string(&certificate_file).unwrap();
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
    assert!(pem.contains("-----BEGIN PRIVATE KEY-----"));
    let certificate = AppCertificate::from_pem(&pem).expect("a certificate and its key");
    let json = std::fs::read_to_string(&key_file).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(raw["type"], "service_account");
    for field in ["client_email", "client_id", "private_key_id", "private_key"] {
        assert!(raw[field].is_string(), "{field} missing in {raw}");
    }
    let key = ServiceAccountKey::from_json(&json).expect("a service account key");
    assert_eq!(
        key.token_uri().as_str(),
        described["google"]["token_url"].as_str().unwrap()
    );
    assert_eq!(key.client_email(), app_only["service_account"]);

    // The running sandbox accepts them: the secret and the certificate get app tokens,
    // the key file a token acting for a mailbox.
    let http = OAuthHttp::new();
    let token_url: url::Url = described["microsoft"]["token_url"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let client_id = app_only["client_id"].as_str().unwrap();
    let secret = mailroom_model::Secret::new(app_only["client_secret"].as_str().unwrap());
    client_credentials(
        &http,
        &token_url,
        client_id,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Secret(&secret),
        chrono::Utc::now(),
    )
    .await
    .expect("the printed secret gets a token");
    client_credentials(
        &http,
        &token_url,
        client_id,
        OUTLOOK_DEFAULT_SCOPE,
        ClientCredential::Certificate(&certificate),
        chrono::Utc::now(),
    )
    .await
    .expect("the written certificate gets a token");
    service_account_token(
        &http,
        &key,
        key.token_uri(),
        "orders@example.com",
        chrono::Utc::now(),
    )
    .await
    .expect("the written key file gets a token");
    serve.kill().await.unwrap();
}

#[tokio::test]
async fn sandbox_serve_prints_the_app_only_credentials_and_the_commands_that_use_them() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("sandbox");
    let (mut serve, mut stdout) = serve_sandbox(home.path(), &dir, false);
    let mut text = String::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        text.push_str(&line);
        text.push('\n');
        if line.contains("account add --provider google --auth app-only") {
            break;
        }
    }
    let secret = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("client secret"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the client secret is printed")
        .to_owned();
    let certificate = dir.join("app-only-certificate.pem");
    let key_file = dir.join("service-account.json");
    for expected in [
        format!(
            "printf '%s' '{secret}' | mailroom app set microsoft --app-only --client-secret-stdin"
        ),
        format!(
            "mailroom app set microsoft --app-only --certificate {}",
            certificate.display()
        ),
        format!("mailroom app set google --service-account {}", key_file.display()),
        "mailroom account add --provider microsoft --route graph --auth app-only --user noreply@contoso.example".to_owned(),
        "mailroom account add --provider microsoft --auth app-only --user noreply@contoso.example --host 127.0.0.1".to_owned(),
        "Graph mailboxes       any".to_owned(),
        "SMTP mailboxes        noreply@contoso.example".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    assert!(certificate.is_file() && key_file.is_file());
    serve.kill().await.unwrap();
}
