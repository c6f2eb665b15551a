//! `app`, `sign-in`, `sign-out`, `token` and `key rotate` end to end, with wiremock as the
//! identity provider and the test playing the browser; and the refresh storm across four
//! `mailroom` processes sharing one database.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{Cli, Run, dump};

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn jwt(claims: Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        encode(br#"{"alg":"RS256"}"#),
        encode(claims.to_string().as_bytes()),
        encode(b"sig")
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn microsoft_tokens(access: &str, refresh: &str, address: Option<&str>, expires_in: u64) -> Value {
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "https://outlook.office.com/SMTP.Send",
        "expires_in": expires_in,
        "access_token": access,
        "refresh_token": refresh,
    });
    if let Some(address) = address {
        body["id_token"] = json!(jwt(json!({
            "aud": CLIENT_ID,
            "iss": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"),
            "exp": now() + 3600,
            "tid": TENANT_ID,
            // Microsoft's stable identity of the person (id-token-claims-reference): one
            // per address here, as one person per mailbox.
            "oid": format!("oid-of-{}", address.to_lowercase()),
            "preferred_username": address,
        })));
    }
    body
}

/// An identity provider that approves every authorization at once.
async fn provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(|request: &Request| {
            let query: std::collections::HashMap<String, String> =
                request.url.query_pairs().into_owned().collect();
            let location = format!(
                "{}?code=the-code&state={}",
                query["redirect_uri"], query["state"]
            );
            ResponseTemplate::new(302).insert_header("Location", location.as_str())
        })
        .mount(&server)
        .await;
    server
}

fn register_microsoft(cli: &Cli, server: &MockServer, env: &[(&str, &str)]) {
    let uri = server.uri();
    cli.run_with(
        &[
            "app",
            "set",
            "microsoft",
            "--client-id",
            CLIENT_ID,
            // A multi-tenant registration's tenant; the mock serves any.
            "--tenant",
            "organizations",
            "--authorize-url",
            &format!("{uri}/authorize"),
            "--token-url",
            &format!("{uri}/token"),
            "--device-url",
            &format!("{uri}/devicecode"),
        ],
        "",
        env,
    )
    .ok();
}

/// Runs `mailroom` with `args` in a blocking task, playing the browser: the sign-in URL it
/// prints on stderr is followed (through the mock authorize endpoint to the listener).
async fn run_signing_in(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = cli.command(args);
    command.stdin(Stdio::null()).envs(env.iter().copied());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(url) = line
                .trim()
                .strip_prefix("http://127.0.0.1:")
                .map(|rest| format!("http://127.0.0.1:{rest}"))
            {
                let _ = reqwest::blocking_get(&url);
            }
        }
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: seen,
        }
    })
    .await
    .unwrap()
}

mod reqwest {
    //! A tiny blocking GET that follows redirects, for playing the browser from a thread.
    pub(super) fn blocking_get(url: &str) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            ::reqwest::Client::new()
                .get(url)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_stores_the_token_and_fills_an_empty_smtp_user() {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(microsoft_tokens(
            "at-cli",
            "rt-cli",
            Some("Invoices@Contoso.example"),
            3599,
        )))
        .mount(&server)
        .await;
    let cli = Cli::new();
    register_microsoft(&cli, &server, &[]);
    cli.run(&["company", "set", "--provider", "microsoft"]).ok();
    let resolved = cli.run(&["resolve", "--json"]).ok().json();
    assert_eq!(resolved["signed_in"], "not_signed_in");
    let run = run_signing_in(
        &cli,
        &[
            "sign-in",
            "--company",
            "--no-browser",
            "--timeout-secs",
            "30",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("signed in as Invoices@Contoso.example"),
        "{run:?}"
    );
    let resolved = cli.run(&["resolve", "--json"]).ok().json();
    assert_eq!(resolved["signed_in"], "signed_in");
    assert_eq!(resolved["account"]["signed_in"], "signed_in");
    let resolved = cli.run(&["resolve"]).ok();
    assert!(resolved.stdout.contains("signed in: yes"), "{resolved:?}");
    let company = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(
        company["smtp_user"], "Invoices@Contoso.example",
        "an empty SMTP user is filled from the sign-in"
    );
    let tokens = cli.run(&["token", "list", "--json"]).ok().json();
    assert_eq!(tokens[0]["address"], "Invoices@Contoso.example");
    assert_eq!(tokens[0]["status"], "valid");
    assert_eq!(tokens[0]["accounts"], json!([{ "kind": "company" }]));
    assert_eq!(tokens[0]["access_resources"], json!(["mail"]));
    let listed = cli.run(&["token", "list"]).ok();
    assert!(
        listed.stdout.starts_with("Account") && listed.stdout.contains("\ncompany "),
        "token list names the account: {}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("Access tokens") && listed.stdout.contains(" mail "),
        "token list names the resources with access tokens: {}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains("at-cli") && !listed.stdout.contains("rt-cli"),
        "token list shows no secret"
    );
    assert_eq!(
        cli.run(&["token", "access", "--company"])
            .ok()
            .stdout
            .trim(),
        "at-cli"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_as_someone_else_changes_nothing() {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(microsoft_tokens(
            "at-x",
            "rt-x",
            Some("intruder@contoso.example"),
            3599,
        )))
        .mount(&server)
        .await;
    let cli = Cli::new();
    register_microsoft(&cli, &server, &[]);
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
        "--bind",
        "SystemUser:User_Name:sa",
    ])
    .ok();
    let before = dump(cli.path()).await;
    let run = run_signing_in(&cli, &["sign-in", "--account", "1", "--no-browser"], &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("error: signed in as intruder@contoso.example, but this account sends as sa@contoso.example: sign in again as sa@contoso.example; or, if sa@contoso.example is a shared mailbox that intruder@contoso.example may send as, mark the account as a shared mailbox and sign in again as intruder@contoso.example"),
        "{}",
        run.stderr
    );
    assert_eq!(before, dump(cli.path()).await, "nothing was stored");
    // The terminal names the redirect URI the app registration must hold (a provider that
    // lacks it says so only in the browser).
    assert!(
        run.stderr.contains(
            "the app registration must list the redirect URI http://localhost (any port)"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_add_with_sign_in_creates_the_account_from_the_identity() {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(microsoft_tokens(
            "at-new",
            "rt-new",
            Some("jonathon.minard@cavallo.example"),
            3599,
        )))
        .mount(&server)
        .await;
    let cli = Cli::new();
    register_microsoft(&cli, &server, &[]);
    let run = run_signing_in(
        &cli,
        &[
            "account",
            "add",
            "--provider",
            "microsoft",
            "--sign-in",
            "--no-browser",
            "--bind",
            "SystemUser:User_Name:sa",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.stdout.trim().to_owned();
    let account = cli.run(&["account", "show", &id, "--json"]).ok().json();
    assert_eq!(account["smtp_user"], "jonathon.minard@cavallo.example");
    assert_eq!(account["host"], "smtp.office365.com");
    assert_eq!(account["port"], 587);
    assert_eq!(
        cli.run(&["token", "access", "--account", &id])
            .ok()
            .stdout
            .trim(),
        "at-new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_script_gets_the_failed_to_obtain_error() {
    let server = provider().await;
    let cli = Cli::new();
    register_microsoft(&cli, &server, &[]);
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
    ])
    .ok();
    let run = cli.run(&["token", "access", "--account", "1"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "error: Failed to obtain an access token for sa@contoso.example (microsoft): no one has signed in for this address yet; an administrator must sign in for account 1\n  to fix: mailroom sign-in --account 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_settings_are_checked_and_the_secret_never_shown() {
    let cli = Cli::new();
    let run = cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        CLIENT_ID,
        "--token-url",
        "http://login.example.com/token",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("plain http to a non-loopback host"),
        "{}",
        run.stderr
    );
    let run = cli.run(&["app", "set", "google", "--client-secret-stdin"]);
    assert_eq!(run.code, 2, "{run:?}");
    cli.run_with(
        &[
            "app",
            "set",
            "google",
            "--client-id",
            "google-client.apps.googleusercontent.com",
            "--client-secret-stdin",
        ],
        "GOCSPX-secret-value",
        &[],
    )
    .ok();
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        CLIENT_ID,
        "--tenant",
        "contoso.onmicrosoft.com",
    ])
    .ok();
    let shown = cli.run(&["app", "show"]).ok();
    assert!(!shown.stdout.contains("GOCSPX-secret-value"));
    assert!(
        shown.stdout.contains(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        ),
        "{}",
        shown.stdout
    );
    let apps = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(apps[0]["provider"], "google");
    assert_eq!(apps[0]["client_secret_set"], true);
    assert_eq!(
        apps[0]["revoke_url"],
        "https://oauth2.googleapis.com/revoke"
    );
    assert_eq!(
        apps[1]["scopes"],
        json!([
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
            "openid",
            "profile",
            "email"
        ])
    );
    assert!(
        !dump(cli.path()).await.contains("GOCSPX-secret-value"),
        "the client secret is sealed"
    );
}

/// The registration the providers document: `app set microsoft` needs the tenant (a
/// single-tenant app cannot use organizations, AADSTS50194), takes no client secret (a
/// public client, AADSTS700025) and a loopback redirect URI (no `[::1]` for Entra).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_set_microsoft_follows_the_app_registration_rules() {
    let cli = Cli::new();
    let run = cli.run(&["app", "set", "microsoft", "--client-id", CLIENT_ID]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("invalid tenant: is missing"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("to fix: mailroom app set microsoft --tenant TENANT-ID"),
        "{}",
        run.stderr
    );
    // Refused before standard input is read (nothing is piped here).
    let run = cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        CLIENT_ID,
        "--tenant",
        "contoso.onmicrosoft.com",
        "--client-secret-stdin",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("AADSTS700025"), "{}", run.stderr);
    for (uri, expected) in [
        ("http://[::1]", "IPv6 loopback address"),
        ("https://localhost", "not an http:// URI"),
        ("http://app.example/callback", "not a loopback URI"),
    ] {
        let run = cli.run(&[
            "app",
            "set",
            "microsoft",
            "--client-id",
            CLIENT_ID,
            "--tenant",
            "contoso.onmicrosoft.com",
            "--redirect-uri",
            uri,
        ]);
        assert_eq!(run.code, 2, "{uri}: {run:?}");
        assert!(run.stderr.contains(expected), "{uri}: {}", run.stderr);
    }
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        CLIENT_ID,
        "--tenant",
        "contoso.onmicrosoft.com",
    ])
    .ok();
    let shown = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(shown[0]["redirect_uri"], "http://localhost");
    assert_eq!(shown[0]["redirect_uri_default"], true);
    assert_eq!(shown[0]["client_secret_set"], false);
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--redirect-uri",
        "http://127.0.0.1:8400/mailroom",
    ])
    .ok();
    let shown = cli.run(&["app", "show"]).ok();
    assert!(
        shown
            .stdout
            .contains("redirect uri   http://127.0.0.1/mailroom (register it"),
        "{}",
        shown.stdout
    );
    let google = cli.run(&[
        "app",
        "set",
        "google",
        "--client-id",
        "g.apps.googleusercontent.com",
        "--tenant",
        "x",
    ]);
    assert_eq!(google.code, 2, "{google:?}");
}

/// `--cloud` sets the login host of the default endpoints and issuer and the Graph URL
/// (MicrosoftDocs/entra-docs `docs/identity-platform/authentication-national-cloud.md`,
/// microsoft-graph-docs `concepts/deployments.md`); `--graph-api-url` overrides the
/// latter; Google has neither.
#[tokio::test]
async fn app_set_microsoft_cloud_sets_the_national_cloud_endpoints() {
    let cli = Cli::new();
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        CLIENT_ID,
        "--tenant",
        "contoso.onmicrosoft.us",
        "--cloud",
        "usgov-dod",
    ])
    .ok();
    let shown = cli.run(&["app", "show", "--json"]).ok().json();
    assert_eq!(shown[0]["cloud"], "usgov-dod");
    assert_eq!(
        shown[0]["token_url"],
        "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/token"
    );
    assert_eq!(shown[0]["graph_api_url"], "https://dod-graph.microsoft.us/");
    assert_eq!(
        shown[0]["issuer"],
        json!(["https://login.microsoftonline.us/{tid}/v2.0"])
    );
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--cloud",
        "china",
        "--graph-api-url",
        "http://127.0.0.1:9/graph/",
    ])
    .ok();
    let shown = cli.run(&["app", "show"]).ok();
    for line in [
        "cloud          china",
        "authorize      https://login.chinacloudapi.cn/contoso.onmicrosoft.us/oauth2/v2.0/authorize",
        "graph api      http://127.0.0.1:9/graph/",
    ] {
        assert!(shown.stdout.contains(line), "{line}: {}", shown.stdout);
    }
    let run = cli.run(&["app", "set", "microsoft", "--cloud", "germany"]);
    assert_eq!(run.code, 2, "{run:?}");
    let google = cli.run(&[
        "app",
        "set",
        "google",
        "--client-id",
        "g.apps.googleusercontent.com",
        "--cloud",
        "usgov",
    ]);
    assert_eq!(google.code, 2, "{google:?}");
    assert!(
        google.stderr.contains("applies to Microsoft only"),
        "{}",
        google.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_deletes_the_token_and_revokes_it_at_google() {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.cli",
            "expires_in": 3599,
            "refresh_token": "1//0g-cli",
            "scope": "https://www.googleapis.com/auth/gmail.send openid",
            "token_type": "Bearer",
            "id_token": jwt(json!({"aud": CLIENT_ID, "iss": "https://accounts.google.com", "exp": now() + 3600, "sub": "110169484474386276334", "email": "orders@example.com", "email_verified": true})),
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("token=1%2F%2F0g-cli"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let cli = Cli::new();
    let uri = server.uri();
    cli.run_with(
        &[
            "app",
            "set",
            "google",
            "--client-id",
            CLIENT_ID,
            "--client-secret-stdin",
            "--authorize-url",
            &format!("{uri}/authorize"),
            "--token-url",
            &format!("{uri}/token"),
            "--revoke-url",
            &format!("{uri}/revoke"),
        ],
        "secret",
        &[],
    )
    .ok();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "google",
        "--user",
        "orders@example.com",
    ])
    .ok();
    let run = run_signing_in(&cli, &["sign-in", "--company", "--no-browser"], &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli.run(&["sign-out", "--company"]).ok();
    assert!(
        run.stdout
            .contains("the stored token was deleted; the provider confirmed the revocation"),
        "{}",
        run.stdout
    );
    assert_eq!(cli.run(&["token", "list", "--json"]).ok().json(), json!([]));
    let device = cli.run(&["sign-in", "--company", "--device-code"]);
    assert_eq!(device.code, 1);
    assert!(
        device
            .stderr
            .contains("Google does not allow Gmail scopes in the device flow"),
        "{}",
        device.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_re_encrypts_every_secret() {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(microsoft_tokens(
            "at-rot",
            "rt-rot",
            Some("sa@contoso.example"),
            3599,
        )))
        .mount(&server)
        .await;
    let cli = Cli::new();
    register_microsoft(&cli, &server, &[]);
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "smtp.example.net",
            "--user",
            "relay",
            "--password-stdin",
        ],
        "relay-pw",
        &[],
    )
    .ok();
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
    ])
    .ok();
    assert_eq!(
        run_signing_in(&cli, &["sign-in", "--account", "1", "--no-browser"], &[])
            .await
            .code,
        0
    );
    let old_key = std::fs::read_to_string(cli.key_file()).unwrap();
    let old_id = cli.run(&["key", "show", "--json"]).ok().json()["database_key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Host B runs with a copy of the original key only.
    let host_b = [("MAILROOM_KEY", old_key.trim())];

    // Step 1: the new key joins the key file; nothing is re-encrypted yet.
    let prepared = cli
        .run(&["key", "rotate", "--prepare", "--json"])
        .ok()
        .json();
    let new_id = prepared["key_id"].as_str().unwrap().to_owned();
    assert_eq!(prepared["current_key_id"], old_id.as_str());
    let file = std::fs::read_to_string(cli.key_file()).unwrap();
    assert_eq!(file.lines().count(), 2, "{file}");
    assert!(
        file.starts_with(&old_key),
        "the old key stays first: {file}"
    );
    let shown = cli.run(&["key", "show", "--json"]).ok().json();
    assert_eq!(shown["prepared_key_id"], new_id.as_str());
    assert_eq!(shown["database_key_id"], old_id.as_str());
    assert_eq!(cli.run_with(&["company", "show"], "", &host_b).code, 0);

    // Host B cannot commit: it lacks the new key, and says which and where to get it.
    let refused = cli.run_with(&["key", "rotate", "--commit"], "", &host_b);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains(&format!("this host lacks key {new_id}"))
            && refused
                .stderr
                .contains(&format!("copy the key with fingerprint {new_id}")),
        "{}",
        refused.stderr
    );

    // Step 2 on host A: everything is re-encrypted with the new key.
    let run = cli.run(&["key", "rotate", "--commit"]).ok();
    assert!(
        run.stdout.contains(&format!(
            "re-encrypted 1 passwords, 0 client secrets and 1 tokens with key {new_id}"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        cli.run(&["token", "access", "--account", "1"])
            .ok()
            .stdout
            .trim(),
        "at-rot"
    );
    assert_eq!(
        cli.run(&["company", "show", "--json"]).ok().json()["password_set"],
        true
    );
    // Host B is refused now, with the key it lacks, and writes nothing.
    let with_old = cli.run_with(&["company", "show", "--json"], "", &host_b);
    assert_eq!(with_old.code, 1);
    let error = serde_json::from_str::<serde_json::Value>(&with_old.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "key", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("this host lacks key {new_id}")),
        "{error}"
    );
    assert_eq!(error["error"]["remedy"]["key_id"], new_id.as_str());
    // Nothing is prepared now, so a commit says to prepare first.
    let nothing = cli.run(&["key", "rotate", "--commit"]);
    assert_eq!(nothing.code, 1);
    assert!(
        nothing.stderr.contains("mailroom key rotate --prepare"),
        "{}",
        nothing.stderr
    );

    // On a single host both steps run at once.
    let run = cli.run(&["key", "rotate", "--json"]).ok().json();
    assert_eq!(run["step"], "committed");
    assert_ne!(run["key_id"], new_id.as_str());
    assert_eq!(
        std::fs::read_to_string(cli.key_file())
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert_eq!(
        cli.run(&["token", "access", "--account", "1"])
            .ok()
            .stdout
            .trim(),
        "at-rot"
    );
}

/// Four `mailroom token access` processes on an expired token: exactly one refresh, and
/// every process prints the refreshed token.
async fn refresh_storm(cli: &Cli, env: Vec<(String, String)>) {
    let server = provider().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(microsoft_tokens(
            "at-short",
            "rt-1",
            Some("sa@contoso.example"),
            60,
        )))
        .mount(&server)
        .await;
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    register_microsoft(cli, &server, &env_refs);
    cli.run_with(
        &[
            "account",
            "add",
            "--provider",
            "microsoft",
            "--user",
            "sa@contoso.example",
        ],
        "",
        &env_refs,
    )
    .ok();
    // A token that lives 60 s is already inside the 5-minute expiry margin: every process
    // sees it as expired.
    let signed = run_signing_in(
        cli,
        &["sign-in", "--account", "1", "--no-browser"],
        &env_refs,
    )
    .await;
    assert_eq!(signed.code, 0, "{signed:?}");
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_tokens("at-after-storm", "rt-2", None, 3599))
                // The refresh stays in flight while the other processes arrive.
                .set_delay(std::time::Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut children = Vec::new();
    for _ in 0..4 {
        let mut command = cli.command(&["token", "access", "--account", "1"]);
        command.stdin(Stdio::null()).envs(env_refs.iter().copied());
        children.push(command.spawn().unwrap());
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for output in outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap().trim(),
            "at-after-storm"
        );
    }
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_one_sqlite_file_refresh_once() {
    let cli = Cli::new();
    refresh_storm(&cli, Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_one_postgres_database_refresh_once() {
    let cli = Cli::new();
    let database = mailroom_testkit::TestDatabase::new(mailroom_testkit::Backend::Postgres).await;
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=".to_owned();
    refresh_storm(
        &cli,
        vec![
            ("MAILROOM_DATABASE_URL".to_owned(), database.url.clone()),
            ("MAILROOM_KEY".to_owned(), key),
        ],
    )
    .await;
    database.finish().await;
}
