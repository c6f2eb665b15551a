//! App-only credentials through the `mailroom` binary against the sandbox: `app set
//! --app-only --certificate` / `--client-secret-stdin` / `--service-account`, refused
//! where the providers refuse them, never shown or stored in plaintext; four processes
//! asking for an app-only account's token at once make one token request; a send needs no
//! sign-in; `app show` and `token list` say what the credential is.

use std::process::Stdio;

use mailroom_sandbox::{Sandbox, SandboxConfig};

use crate::{Cli, dump};

const CLIENT_ID: &str = "mailroom-cli-app-only";
const MAILBOX: &str = "invoices@contoso.example";

struct World {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    ca_file: String,
    certificate_file: String,
    service_account_file: String,
    client_secret: String,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(SandboxConfig::new(dir.path().join("sandbox")))
            .await
            .unwrap();
        let credentials = sandbox.app_only_credentials(CLIENT_ID);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        Self {
            ca_file: write("ca.pem", sandbox.ca_pem()),
            certificate_file: write("app.pem", &credentials.certificate_pem),
            service_account_file: write("service-account.json", &credentials.service_account_json),
            client_secret: credentials.client_secret.clone(),
            sandbox,
            _dir: dir,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("MAILROOM_CA_FILE", self.ca_file.as_str())]
    }

    /// `app set microsoft` pointed at the sandbox, with `extra` arguments.
    fn microsoft_app(&self, extra: &[&str]) -> Vec<String> {
        let endpoints = self.sandbox.endpoints();
        let ms = &endpoints.microsoft;
        let mut args: Vec<String> = [
            "app",
            "set",
            "microsoft",
            "--client-id",
            CLIENT_ID,
            "--tenant",
            &endpoints.tenant_id,
            "--authorize-url",
            ms.authorize.as_str(),
            "--token-url",
            ms.token.as_str(),
            "--device-url",
            ms.device.as_str(),
            "--issuer",
            &ms.issuer,
            "--graph-api-url",
            endpoints.graph_api.as_str(),
        ]
        .iter()
        .map(|text| (*text).to_owned())
        .collect();
        args.extend(extra.iter().map(|text| (*text).to_owned()));
        args
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The flags' rules: a credential is needed, each provider takes its own kind, the
/// certificate goes with --app-only; nothing is stored by a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_set_takes_each_providers_own_credential() {
    let world = World::new().await;
    let cli = Cli::new();
    let run = cli.run(&strs(&world.microsoft_app(&["--app-only"])));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--app-only needs its credential"),
        "{}",
        run.stderr
    );
    let run = cli.run(&["app", "set", "microsoft", "--certificate", "x.pem"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run =
        cli.run(&strs(&world.microsoft_app(&[
            "--service-account",
            &world.service_account_file,
        ])));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("Google's app-only credential"),
        "{}",
        run.stderr
    );
    let run = cli.run(&[
        "app",
        "set",
        "google",
        "--app-only",
        "--client-secret-stdin",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--service-account KEYFILE.json"),
        "{}",
        run.stderr
    );
    let run = cli.run(&strs(&world.microsoft_app(&[
        "--app-only",
        "--certificate",
        "/nonexistent/app.pem",
    ])));
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot open the certificate file /nonexistent/app.pem"),
        "{}",
        run.stderr
    );
    // A key file that is not one says so, and where.
    let run = cli.run(&[
        "app",
        "set",
        "google",
        "--service-account",
        &world.certificate_file,
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("not a service account key"),
        "{}",
        run.stderr
    );
    let shown = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(shown, serde_json::json!([]), "nothing was stored");
}

/// A certificate, then a secret, then a service account: stored sealed, shown by kind
/// (the certificate with its thumbprint and expiry), never in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_only_credentials_are_shown_by_kind_and_sealed() {
    let world = World::new().await;
    let cli = Cli::new();
    cli.run(&strs(&world.microsoft_app(&[
        "--app-only",
        "--certificate",
        &world.certificate_file,
    ])))
    .ok();
    let shown = cli.run(&["app", "show"]).ok();
    assert!(
        shown
            .stdout
            .contains("app-only       certificate x5t#S256 ")
            && shown.stdout.contains("expires 2126-11-08"),
        "{}",
        shown.stdout
    );
    let json = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(json[0]["app_only"]["kind"], "certificate");
    assert!(json[0]["app_only"]["expires_at"].is_string());

    cli.run_with(
        &strs(&world.microsoft_app(&["--app-only", "--client-secret-stdin"])),
        &world.client_secret,
        &[],
    )
    .ok();
    let json = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(json[0]["app_only"]["kind"], "client-secret");
    assert_eq!(
        json[0]["client_secret_set"], false,
        "not the delegated secret"
    );

    cli.run(&[
        "app",
        "set",
        "google",
        "--service-account",
        &world.service_account_file,
    ])
    .ok();
    let json = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(json[0]["provider"], "google");
    assert_eq!(
        json[0]["client_id"],
        mailroom_sandbox::SANDBOX_SERVICE_ACCOUNT_CLIENT_ID
    );
    assert_eq!(json[0]["app_only"]["kind"], "service-account");

    let stored = dump(cli.path()).await;
    assert!(
        !stored.contains(&world.client_secret),
        "the secret is sealed"
    );
    assert!(!stored.contains("PRIVATE KEY"), "the keys are sealed");
    let key_line = std::fs::read_to_string(&world.certificate_file)
        .unwrap()
        .lines()
        .find(|line| !line.starts_with("-----") && line.len() == 64)
        .unwrap()
        .to_owned();
    assert!(!stored.contains(&key_line));

    // Removed with --no-app-only.
    cli.run(&["app", "set", "microsoft", "--no-app-only"]).ok();
    let json = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(json[1]["app_only"], serde_json::Value::Null);
}

/// An app-only company account on the Graph route: four `token access` processes at once
/// make one client credentials request and print the same token; `send` goes out with
/// no sign-in; `sign-in` says none is needed; `token list` shows the app's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_request_one_app_token_and_send_without_a_sign_in() {
    let world = World::new().await;
    let cli = Cli::new();
    let env = world.env();
    cli.run_with(
        &strs(&world.microsoft_app(&["--app-only", "--certificate", &world.certificate_file])),
        "",
        &env,
    )
    .ok();
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "microsoft",
            "--route",
            "graph",
            "--auth",
            "app-only",
            "--user",
            MAILBOX,
        ],
        "",
        &env,
    )
    .ok();

    let mut children = Vec::new();
    for _ in 0..4 {
        let mut command = cli.command(&["token", "access", "--company"]);
        command.stdin(Stdio::null()).envs(env.iter().copied());
        children.push(command.spawn().unwrap());
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let tokens: Vec<String> = outputs
        .into_iter()
        .map(|output| {
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        })
        .collect();
    assert!(!tokens[0].is_empty());
    assert!(tokens.iter().all(|token| *token == tokens[0]), "{tokens:?}");
    assert_eq!(world.sandbox.authority().stats().client_credentials, 1);

    let signed = cli.run_with(&["sign-in", "--company"], "", &env).ok();
    assert!(signed.stdout.contains("app"), "{}", signed.stdout);

    cli.run_with(
        &[
            "send",
            "--company",
            "--to",
            "buyer@example.com",
            "--subject",
            "Invoice 1001",
            "--body",
            "Attached.",
        ],
        "",
        &env,
    )
    .ok();
    let stored = world.sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].authenticated_as, MAILBOX);
    assert_eq!(world.sandbox.authority().stats().client_credentials, 1);
    assert_eq!(world.sandbox.authority().stats().codes_issued, 0);

    let list = cli.run_with(&["token", "list"], "", &env).ok();
    assert!(
        list.stdout.contains("app-only (certificate)"),
        "{}",
        list.stdout
    );
    let json = cli
        .run_with(&["token", "list", "--json"], "", &env)
        .ok()
        .json();
    assert_eq!(json[0]["credential"], "certificate");
    assert_eq!(
        json[0]["accounts"],
        serde_json::json!([{"kind": "company"}])
    );
}
