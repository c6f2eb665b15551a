//! Starts `smtp_server.py` (aiosmtpd, a server this project did not write; the one copy in
//! the repository, beside this crate's `Cargo.toml`) on 127.0.0.1 with certificates from a
//! test CA made here, and reads what it recorded. Used by the SMTP transport's, the
//! facade's and the CLI's tests and by the SMTP and send benchmarks.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::{Value, json};

use crate::certificates::TestCertificates;

/// How the server starts TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// STARTTLS offered, and required before AUTH.
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// No STARTTLS offered; AUTH allowed in plaintext.
    None,
}

/// What the server accepts and how it answers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How TLS starts.
    pub tls: ServerTls,
    /// Offered mechanisms, from PLAIN, LOGIN, XOAUTH2, OAUTHBEARER.
    pub mechanisms: Vec<&'static str>,
    /// (user, token) pairs; a user may have several accepted tokens.
    pub tokens: Vec<(String, String)>,
    /// login -> password.
    pub passwords: Vec<(String, String)>,
    /// `{"AUTH": {token: reply}, "MAIL": {sender: reply}, "RCPT": {..}, "DATA": {..}}`,
    /// each reply given every time; and `"RCPT_ONCE": {recipient: reply}`, given to that
    /// recipient's first RCPT TO only (later ones are accepted, so a retry after a
    /// transient 451 succeeds).
    pub scripted: Value,
    /// Recipients after whose message the server closes the connection.
    pub close_after: Vec<String>,
    /// Store messages and log them (off for the benchmark).
    pub store: bool,
    /// With `store`, also write each message's bytes to a file ([`TestServer::messages`]);
    /// off, each `message` event still records the envelope and the `message_id`, which
    /// is all that counting deliveries needs, without a file per message.
    pub store_bodies: bool,
    /// Server processes sharing the listening socket.
    pub workers: usize,
    /// Serve a certificate from a CA the client does not trust.
    pub untrusted_certificate: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: ServerTls::StartTls,
            mechanisms: vec!["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"],
            tokens: Vec::new(),
            passwords: Vec::new(),
            scripted: json!({}),
            close_after: Vec::new(),
            store: true,
            store_bodies: true,
            workers: 1,
            untrusted_certificate: false,
        }
    }
}

/// A running server; killed when dropped.
pub struct TestServer {
    child: Child,
    _stdin: ChildStdin,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The server's processes (more than one with `workers`).
    pub pids: Vec<u32>,
    /// The root the client should trust (the CA of the served certificate, unless the
    /// options asked for an untrusted one).
    pub trusted_ca_pem: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

const INSTALL_HINT: &str = "the SMTP tests need a Python with aiosmtpd: `cargo xtask ci` makes one in target/test-python; or run `python3 -m pip install -r .ci/requirements.txt`, or set MAILROOM_TEST_PYTHON to a python that has it";

/// The Python that runs the server: `MAILROOM_TEST_PYTHON`, else the virtual environment
/// `cargo xtask` makes under the workspace's `target/` when it exists, else `python3`.
fn test_python() -> String {
    if let Ok(python) = std::env::var("MAILROOM_TEST_PYTHON") {
        return python;
    }
    // This crate is `<workspace>/crates/mailroom-testkit`.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_owned()
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_server.py")
}

fn tokens_by_user(tokens: &[(String, String)]) -> Value {
    let mut by_user = serde_json::Map::new();
    for (user, token) in tokens {
        by_user
            .entry(user.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("an array")
            .push(Value::String(token.clone()));
    }
    Value::Object(by_user)
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("port", &self.port)
            .field("pids", &self.pids)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts the server and waits until it listens; panics with how to install aiosmtpd
    /// when the Python lacks it.
    pub fn start(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for the smtp server");
        let trusted = TestCertificates::generate("mailroom test ca");
        let served = if options.untrusted_certificate {
            TestCertificates::generate("some other ca")
        } else {
            trusted.clone()
        };
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, &served.leaf_pem).expect("write the server certificate");
        std::fs::write(&key, &served.leaf_key_pem).expect("write the server key");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("create the mail dir");
        let log_path = dir.path().join("events.jsonl");
        let tls = match options.tls {
            ServerTls::StartTls => "starttls",
            ServerTls::Implicit => "implicit",
            ServerTls::None => "none",
        };
        let pairs = |pairs: &[(String, String)]| {
            Value::Object(
                pairs
                    .iter()
                    .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                    .collect(),
            )
        };
        let config = json!({
            "tls": tls,
            "cert": cert,
            "key": key,
            "mechanisms": options.mechanisms,
            "tokens": tokens_by_user(&options.tokens),
            "passwords": pairs(&options.passwords),
            "scripted": options.scripted,
            "close_after": options.close_after,
            "store": options.store,
            "store_bodies": options.store_bodies,
            "workers": options.workers,
            "mail_dir": mail_dir,
            "log": if options.store { Value::String(log_path.display().to_string()) } else { Value::Null },
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write the server config");

        let python = test_python();
        let mut child = Command::new(&python)
            .arg(script_path())
            .arg(&config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start `{python}`: {error}; {INSTALL_HINT}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read the smtp server's first line");
        let mut words = first_line.split_whitespace();
        let ready = words.next() == Some("READY");
        let port = words.next().and_then(|port| port.parse::<u16>().ok());
        let pids: Vec<u32> = words.filter_map(|pid| pid.parse().ok()).collect();
        let port = port
            .filter(|_| ready)
            .unwrap_or_else(|| {
                let status = child.wait().ok();
                panic!("the test smtp server did not start (said {first_line:?}, exit {status:?}); {INSTALL_HINT}")
            });
        Self {
            child,
            _stdin: stdin,
            port,
            pids,
            trusted_ca_pem: trusted.ca_pem,
            log_path,
            _dir: dir,
        }
    }

    /// Everything the server recorded so far, in order.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON event line"))
            .collect()
    }

    /// The recorded events of one kind (`auth`, `challenge_answer`, `message`).
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == kind)
            .collect()
    }

    /// The stored messages: (event, bytes exactly as the server received them). Needs
    /// `store_bodies`.
    pub fn messages(&self) -> Vec<(Value, Vec<u8>)> {
        self.events_of("message")
            .into_iter()
            .map(|event| {
                let path = event["file"].as_str().expect("file").to_owned();
                let bytes = std::fs::read(path).expect("read a stored message");
                (event, bytes)
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
