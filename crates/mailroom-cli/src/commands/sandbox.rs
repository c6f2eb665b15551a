//! `mailroom sandbox serve`: runs the offline sandbox (look-alike Microsoft and Google OAuth,
//! SMTP and the Gmail API on 127.0.0.1) until interrupted, and prints its endpoints and
//! the exact commands that point a mailroom database at it — with delegated sign-ins, and
//! with the sandbox's app-only credentials (a client secret, a certificate and a service
//! account key file, written into its directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use mailroom_sandbox::{
    AppOnlyCredentials, Audience, ClientRegistration, Endpoints, Sandbox, SandboxConfig,
};

use crate::commands::Output;

/// The client ids the printed `app set` commands register.
pub(crate) const MICROSOFT_CLIENT_ID: &str = "mailroom-sandbox-microsoft-client";
pub(crate) const GOOGLE_CLIENT_ID: &str = "mailroom-sandbox.apps.googleusercontent.com";
/// The Google-style Desktop app client's secret.
pub(crate) const GOOGLE_CLIENT_SECRET: &str = "GOCSPX-sandbox-secret";

/// The mailbox the Microsoft app's app-only credentials may send as over SMTP (its service
/// principal has FullAccess on it); over Graph the app is unscoped and may send as any.
pub(crate) const APP_ONLY_MAILBOX: &str = "noreply@contoso.example";
/// The mailbox the printed Google app-only account sends as (the service account has
/// domain-wide delegation for every mailbox).
const SERVICE_ACCOUNT_MAILBOX: &str = "orders@example.com";
/// The files `sandbox serve` writes the app-only credentials to, in its directory.
pub(crate) const APP_ONLY_CERTIFICATE_FILE: &str = "app-only-certificate.pem";
pub(crate) const SERVICE_ACCOUNT_FILE: &str = "service-account.json";

/// The apps the sandbox knows, registered as the README tells a person to register them:
/// a single-tenant Microsoft app, a public client ("Allow public client flows") with the
/// redirect URI `http://localhost` under "Mobile and desktop applications"; a Google
/// Desktop app client with its secret. The sandbox holds them to the providers' rules.
pub(crate) fn registered_clients() -> Vec<ClientRegistration> {
    vec![
        ClientRegistration::microsoft_public(
            MICROSOFT_CLIENT_ID,
            &["http://localhost"],
            Audience::SingleTenant,
        ),
        ClientRegistration::google_desktop(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET),
    ]
}

#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCommand {
    #[command(
        after_help = "Examples:\n  mailroom sandbox serve --auto-approve\n  mailroom sandbox serve --dir /tmp/sandbox --port-base 8400 --default-address sa@contoso.example\n  mailroom --json sandbox serve --auto-approve"
    )]
    /// Run the sandbox until Ctrl-C: print its endpoints, the CA file to trust, and the
    /// `mailroom app set ...` / `account add ...` commands that point a database at it;
    /// also its test-only app-only credentials (a client secret, and
    /// `app-only-certificate.pem` and `service-account.json` written into its directory)
    /// with the commands that use them.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where `ca.pem` and the received `.eml` files (`mail/`) go. Default: a new directory
    /// under the system's temporary directory, kept after the sandbox stops.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// HTTP on N, SMTP with STARTTLS on N+1, SMTP with implicit TLS on N+2. Default: free
    /// ports chosen by the system.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=65533))]
    pub(crate) port_base: Option<u16>,
    /// Approve every sign-in at once as its login hint (or --default-address), for
    /// scripts; without it a consent page asks.
    #[arg(long)]
    pub(crate) auto_approve: bool,
    /// Who signs in when a request names no one.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) default_address: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub(crate) access_token_lifetime: u64,
}

/// A password generated per run for the sandbox's `relay` SMTP account.
fn relay_password() -> String {
    format!("sandbox-{:016x}", rand::random::<u64>())
}

/// The commands that point a database at the sandbox, one per line.
pub(crate) fn setup_commands(endpoints: &Endpoints, relay_password: &str) -> Vec<String> {
    let ms = &endpoints.microsoft;
    let google = &endpoints.google;
    let revoke = google
        .revoke
        .as_ref()
        .map(|url| format!(" --revoke-url {url}"))
        .unwrap_or_default();
    vec![
        format!("export MAILROOM_CA_FILE={}", endpoints.ca_file.display()),
        format!(
            "mailroom app set microsoft --client-id {MICROSOFT_CLIENT_ID} --tenant {} --authorize-url {} --token-url {} --device-url {} --issuer '{}' --graph-api-url {}",
            endpoints.tenant_id, ms.authorize, ms.token, ms.device, ms.issuer, endpoints.graph_api
        ),
        format!(
            "printf '%s' {GOOGLE_CLIENT_SECRET} | mailroom app set google --client-id {GOOGLE_CLIENT_ID} --client-secret-stdin --authorize-url {} --token-url {} --device-url {}{revoke} --issuer '{}' --gmail-api-url {}",
            google.authorize, google.token, google.device, google.issuer, endpoints.gmail_api
        ),
        "mailroom company set --provider google --user orders@example.com".to_owned(),
        format!(
            "mailroom account add --provider microsoft --user sa@contoso.example --host {} --port {} --tls-startup starttls --bind SystemUser:User_Name:sa",
            endpoints.smtp_host, endpoints.smtp_starttls_port
        ),
        format!(
            "printf '%s' {relay_password} | mailroom account add --provider none --host {} --port {} --tls-startup starttls --user relay --password-stdin",
            endpoints.smtp_host, endpoints.smtp_starttls_port
        ),
        "mailroom sign-in --company --no-browser".to_owned(),
        "mailroom sign-in --account 1 --no-browser     # the id account add printed; or --device-code".to_owned(),
    ]
}

/// The sandbox's app-only credentials, registered for [`MICROSOFT_CLIENT_ID`] and written
/// into its directory.
pub(crate) struct AppOnly {
    credentials: AppOnlyCredentials,
    certificate_file: PathBuf,
    service_account_file: PathBuf,
}

/// Registers the app-only credentials (the app may send as any mailbox over Graph, and as
/// [`APP_ONLY_MAILBOX`] over SMTP) and writes the certificate and the service account key
/// file into `dir`, readable by the owner only.
pub(crate) fn app_only(sandbox: &Sandbox, dir: &Path) -> Result<AppOnly> {
    let credentials = sandbox.app_only_credentials(MICROSOFT_CLIENT_ID);
    sandbox
        .authority()
        .grant_app_smtp_mailbox(MICROSOFT_CLIENT_ID, APP_ONLY_MAILBOX);
    let certificate_file = dir.join(APP_ONLY_CERTIFICATE_FILE);
    let service_account_file = dir.join(SERVICE_ACCOUNT_FILE);
    write_private(&certificate_file, &credentials.certificate_pem)?;
    write_private(&service_account_file, &credentials.service_account_json)?;
    Ok(AppOnly {
        credentials,
        certificate_file,
        service_account_file,
    })
}

/// Writes `text` to a new or replaced file that only its owner may read (on Unix), as a
/// private key deserves even when, as here, it is a public test key.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot write {}; check the sandbox directory",
            path.display()
        )
    })?;
    file.write_all(text.as_bytes()).with_context(|| {
        format!(
            "cannot write {}; check the sandbox directory",
            path.display()
        )
    })
}

/// The commands that give a database the sandbox's app-only credentials and accounts that
/// use them, one per line (after [`setup_commands`]' `app set` commands).
pub(crate) fn app_only_commands(endpoints: &Endpoints, app_only: &AppOnly) -> Vec<String> {
    vec![
        format!(
            "printf '%s' '{}' | mailroom app set microsoft --app-only --client-secret-stdin",
            app_only.credentials.client_secret
        ),
        format!(
            "mailroom app set microsoft --app-only --certificate {}     # instead of the secret",
            app_only.certificate_file.display()
        ),
        format!(
            "mailroom app set google --service-account {}",
            app_only.service_account_file.display()
        ),
        format!(
            "mailroom account add --provider microsoft --route graph --auth app-only --user {APP_ONLY_MAILBOX} --bind SystemUser:User_Name:noreply"
        ),
        format!(
            "mailroom account add --provider microsoft --auth app-only --user {APP_ONLY_MAILBOX} --host {} --port {} --tls-startup starttls --bind SystemUser:User_Name:noreply-smtp",
            endpoints.smtp_host, endpoints.smtp_starttls_port
        ),
        format!(
            "mailroom account add --provider google --auth app-only --user {SERVICE_ACCOUNT_MAILBOX} --bind SystemUser:User_Name:orders"
        ),
    ]
}

fn describe(
    sandbox: &Sandbox,
    relay_password: &str,
    auto_approve: bool,
    app_only: &AppOnly,
) -> String {
    let endpoints = sandbox.endpoints();
    let ms = &endpoints.microsoft;
    let google = &endpoints.google;
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        text.push_str(&format!("  {label:<22}{value}\n"));
    };
    line("directory", sandbox.dir().display().to_string());
    line("CA certificate", endpoints.ca_file.display().to_string());
    line(
        "received mail",
        format!(
            "{}/ (one .eml file per message)",
            sandbox.mailbox().dir().display()
        ),
    );
    line("Microsoft authorize", ms.authorize.to_string());
    line("Microsoft token", ms.token.to_string());
    line(
        "Microsoft device code",
        format!("{} (enter codes at {})", ms.device, ms.device_verification),
    );
    line(
        "Microsoft issuer",
        format!("{} (tid {})", ms.issuer, endpoints.tenant_id),
    );
    line(
        "Microsoft app",
        format!(
            "{MICROSOFT_CLIENT_ID}: single tenant {}, public client (no secret), redirect URI http://localhost",
            endpoints.tenant_id
        ),
    );
    line("Google authorize", google.authorize.to_string());
    line("Google token", google.token.to_string());
    line(
        "Google revoke",
        google
            .revoke
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    line("Google issuer", google.issuer.clone());
    line("Gmail API", endpoints.gmail_api.to_string());
    line(
        "Graph API",
        format!(
            "{} (for Microsoft accounts on the Graph route: `mailroom account edit ID --route graph [--large-attachments]`, then sign in again)",
            endpoints.graph_api
        ),
    );
    line(
        "SMTP",
        format!(
            "{host}:{} (STARTTLS), {host}:{} (implicit TLS)",
            endpoints.smtp_starttls_port,
            endpoints.smtp_implicit_tls_port,
            host = endpoints.smtp_host
        ),
    );
    line("SMTP password account", format!("relay / {relay_password}"));
    line(
        "admin API",
        format!(
            "{}_sandbox/ (messages, stats, revoke, fail-next-token-call, access-token-lifetime, device/approve)",
            endpoints.http
        ),
    );
    line(
        "sign-ins",
        if auto_approve {
            "approved at once as the login hint".to_owned()
        } else {
            "a consent page asks (open the printed sign-in address)".to_owned()
        },
    );
    let commands: String = setup_commands(endpoints, relay_password)
        .iter()
        .map(|command| format!("  {command}\n"))
        .collect();
    let mut app_text = String::new();
    let mut app_line = |label: &str, value: String| {
        app_text.push_str(&format!("  {label:<22}{value}\n"));
    };
    app_line(
        "client secret",
        format!(
            "{} (of {MICROSOFT_CLIENT_ID}; paste it at --client-secret-stdin)",
            app_only.credentials.client_secret
        ),
    );
    app_line(
        "certificate",
        format!(
            "{} (certificate and private key, PEM)",
            app_only.certificate_file.display()
        ),
    );
    app_line(
        "service account",
        format!(
            "{} ({}, domain-wide delegation of gmail.send)",
            app_only.service_account_file.display(),
            app_only.credentials.service_account
        ),
    );
    app_line(
        "Graph mailboxes",
        "any (application permission Mail.Send, no management scope)".to_owned(),
    );
    app_line(
        "SMTP mailboxes",
        format!("{APP_ONLY_MAILBOX} (the app's service principal has FullAccess on it)"),
    );
    app_line(
        "Gmail mailboxes",
        "any, named as the token's sub (domain-wide delegation)".to_owned(),
    );
    let app_commands: String = app_only_commands(endpoints, app_only)
        .iter()
        .map(|command| format!("  {command}\n"))
        .collect();
    format!(
        "mailroom sandbox is running (Ctrl-C to stop)\n\n{text}\nPoint a database at it (trust the CA for SMTP):\n\n{commands}\nOr send app-only, without a sign-in (test-only credentials, public: never use them elsewhere):\n\n{app_text}\n{app_commands}"
    )
}

/// The same as [`describe`], as one JSON document (one line, so a script can read the
/// first line of stdout while the sandbox runs).
fn describe_json(
    sandbox: &Sandbox,
    relay_password: &str,
    auto_approve: bool,
    app_only: &AppOnly,
) -> serde_json::Value {
    let endpoints = sandbox.endpoints();
    let ms = &endpoints.microsoft;
    let google = &endpoints.google;
    serde_json::json!({
        "running": true,
        "dir": sandbox.dir(),
        "ca_file": endpoints.ca_file,
        "mail_dir": sandbox.mailbox().dir(),
        "microsoft": {
            "authorize_url": ms.authorize,
            "token_url": ms.token,
            "device_url": ms.device,
            "device_verification_url": ms.device_verification,
            "issuer": ms.issuer,
            "tenant_id": endpoints.tenant_id,
            "client_id": MICROSOFT_CLIENT_ID,
            "redirect_uris": ["http://localhost"],
            "single_tenant": true,
            "public_client": true,
            "graph_api_url": endpoints.graph_api,
        },
        "google": {
            "authorize_url": google.authorize,
            "token_url": google.token,
            "device_url": google.device,
            "revoke_url": google.revoke,
            "issuer": google.issuer,
            "client_id": GOOGLE_CLIENT_ID,
            "gmail_api_url": endpoints.gmail_api,
        },
        "smtp": {
            "host": endpoints.smtp_host,
            "starttls_port": endpoints.smtp_starttls_port,
            "implicit_tls_port": endpoints.smtp_implicit_tls_port,
            "password_account": { "user": "relay", "password": relay_password },
        },
        "admin_url": format!("{}_sandbox/", endpoints.http),
        "auto_approve": auto_approve,
        "commands": setup_commands(endpoints, relay_password),
        "app_only": {
            "client_id": MICROSOFT_CLIENT_ID,
            "client_secret": app_only.credentials.client_secret,
            "certificate_file": app_only.certificate_file,
            "service_account_file": app_only.service_account_file,
            "service_account": app_only.credentials.service_account,
            "graph_any_mailbox": true,
            "smtp_mailboxes": [APP_ONLY_MAILBOX],
            "commands": app_only_commands(endpoints, app_only),
        },
    })
}

pub(crate) async fn run(command: SandboxCommand, json: bool) -> Result<Output> {
    let SandboxCommand::Serve(args) = command;
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "mailroom-sandbox-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )),
    };
    let password = relay_password();
    let mut config = SandboxConfig::new(&dir);
    config.port_base = args.port_base;
    config.auto_approve = args.auto_approve;
    config.default_address = args.default_address;
    config.access_token_lifetime = Duration::from_secs(args.access_token_lifetime);
    config.password_accounts = vec![("relay".to_owned(), password.clone())];
    config.clients = registered_clients();
    let sandbox = Sandbox::start(config)
        .await
        .context("cannot start the sandbox")?;
    let app_only = app_only(&sandbox, sandbox.dir())?;
    // A long-running command: the description is printed now, not after it returns.
    crate::logging::print_stdout(&if json {
        describe_json(&sandbox, &password, args.auto_approve, &app_only).to_string()
    } else {
        describe(&sandbox, &password, args.auto_approve, &app_only)
    })?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    let received = sandbox.mailbox().messages().len();
    sandbox.stop();
    Ok(Output::new(
        format!(
            "sandbox stopped; {received} messages are in {}",
            dir.join("mail").display()
        ),
        serde_json::json!({ "messages": received, "dir": dir }),
    ))
}
