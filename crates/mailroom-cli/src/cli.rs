//! The command line, as clap parses it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailroom_model::{Auth, Binding, FaxFormat, Limit, Provider, Route, TlsStartup, validate};

/// The workspace version, and the git commit when built from a checkout (set by
/// `build.rs`; `MAILROOM_GIT_COMMIT` overrides the commit, e.g. for a build from
/// a source archive).
pub(crate) const VERSION: &str = env!("MAILROOM_VERSION");

/// mailroom: send business mail through Microsoft 365 (OAuth SMTP), Gmail (API) or any
/// SMTP server, with one shared, encrypted sign-in.
#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Database URL: `sqlite:///path/file.sqlite?mode=rwc` or `postgres://user@host/db`
    /// (also from MAILROOM_DATABASE_URL, whose value help never shows: it may hold a
    /// password). Default: an SQLite file in the platform data directory.
    #[arg(
        long,
        global = true,
        env = "MAILROOM_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) database_url: Option<String>,

    /// Print machine-readable JSON instead of text (errors too, on stderr).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Log more to stderr: -v warnings, -vv progress, -vvv debugging (MAILROOM_LOG, an
    /// env-filter such as `debug`, overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Print only the result and errors: no notes, no log lines.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show or change the company account (the shared mailbox; SalesPad calls it "Sales Email Confirmation").
    #[command(subcommand)]
    Company(CompanyCommand),
    /// Add, list, show, edit or remove user accounts (one mailbox per host-application user; SalesPad's "SMTP Setup").
    #[command(subcommand)]
    Account(AccountCommand),
    /// Read or change settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    #[command(
        after_help = "Examples:\n  mailroom resolve --user sa\n  mailroom resolve --user sa --feature automation-agent\n  mailroom resolve --bind Customer:Salesperson:jo"
    )]
    /// Show which account would send for a feature and user, and the rule that chose it.
    Resolve(ResolveArgs),
    #[command(after_help = "Examples:\n  mailroom fax-address \"+1 (555) 010-2000\"")]
    /// Turn a fax number into an address with the company account's format string.
    FaxAddress {
        /// The fax number, e.g. "+1 (555) 010-2000".
        number: String,
    },
    #[command(
        after_help = "Examples:\n  mailroom info\n  mailroom --database-url postgres://mailroom@db.example.internal/erp info"
    )]
    /// Show the database location, schema version and key location.
    Info,
    /// Register or show the OAuth apps (client id, secret, tenant, endpoints).
    #[command(subcommand)]
    App(AppCommand),
    #[command(
        after_help = "Examples:\n  mailroom sign-in --company\n  mailroom sign-in --account 4 --device-code\n  mailroom sign-in --account 4 --no-browser"
    )]
    /// Sign in for an account; the token is stored for every user of the database.
    SignIn(SignInArgs),
    #[command(after_help = "Examples:\n  mailroom sign-out --account 4")]
    /// Delete an account's stored token (and revoke it where the provider allows).
    SignOut {
        #[command(flatten)]
        account: AccountSelector,
    },
    /// List, refresh or print stored tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the database encryption key.
    #[command(subcommand)]
    Key(KeyCommand),
    #[command(
        after_help = "Examples:\n  mailroom send --user sa --to buyer@example.com --subject \"Order 10234\" --body-file order.txt --attach SO-10234.pdf\n  mailroom send --company --fax \"+1 (555) 010-2000\" --subject Invoice --body \"See attachment.\"\n  mailroom send --account 4 --dry-run --to buyer@example.com --subject Test --body Hi\n  mailroom send --queue --feature automation-agent --to buyer@example.com --subject Statement --body-file st.txt\n  mailroom send --queue --priority bulk --company --to buyer@example.com --subject Statement --body-file st.txt"
    )]
    /// Send a message now (or queue it for the agent with --queue) and print the receipt.
    Send(crate::commands::send::SendArgs),
    /// Check that mailroom can send: database, key, root certificate, app registrations,
    /// each account's token and server (never sends mail); exit 1 when a check finds a
    /// problem.
    #[command(after_help = crate::commands::doctor::DOCTOR_EXAMPLES)]
    Doctor(crate::commands::doctor::DoctorArgs),
    #[command(after_help = "Examples:\n  mailroom agent --once\n  mailroom agent --concurrency 8")]
    /// Run the automation agent: send queued messages, never prompting for a sign-in.
    Agent(crate::commands::agent::AgentArgs),
    #[command(
        after_help = "Examples:\n  mailroom console --open\n  mailroom console --listen 127.0.0.1:9000\n  mailroom console --listen 10.0.0.5:8470 --tls-cert console.pem --tls-key console-key.pem --host-name mail-admin.example.internal"
    )]
    /// Serve the administrator's screens (company account, SMTP Setup, sign-in, outbox) in
    /// a browser; prints a one-time login link.
    Console(crate::commands::console::ConsoleArgs),
    /// List, show, retry or cancel queued messages.
    #[command(subcommand)]
    Queue(crate::commands::queue::QueueCommand),
    /// Run the offline sandbox: look-alike Microsoft and Google sign-in, SMTP and Gmail API
    /// on 127.0.0.1, for trying mailroom without a network or an app registration.
    #[command(subcommand)]
    Sandbox(crate::commands::sandbox::SandboxCommand),
    #[command(
        after_help = "Examples:\n  cargo run --release -p mailroom-cli -- demo\n  mailroom demo --keep\n  mailroom demo --database-url postgres://postgres@127.0.0.1/empty_db"
    )]
    /// Run the whole flow offline in one command (sandbox, temporary database, sign-ins,
    /// sends, refresh, queue and agent) and verify every step; exit 0 only if all verified.
    Demo(crate::commands::demo::DemoArgs),
    /// Print the shell completion script for bash, zsh, fish, PowerShell or elvish.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `mailroom man > mailroom.1`.
    #[command(hide = true)]
    Man,
}

const COMPLETIONS_EXAMPLES: &str = "Examples:
  mailroom completions bash > ~/.local/share/bash-completion/completions/mailroom
  mailroom completions zsh > \"${fpath[1]}/_mailroom\"
  mailroom completions fish > ~/.config/fish/completions/mailroom.fish
  mailroom completions powershell >> $PROFILE";

/// `--company` or `--account ID`.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct AccountSelector {
    /// The company account.
    #[arg(long)]
    pub(crate) company: bool,
    /// A user account by id.
    #[arg(long, value_name = "ID")]
    pub(crate) account: Option<i64>,
}

impl AccountSelector {
    pub(crate) fn account_ref(&self) -> mailroom_model::AccountRef {
        match self.account {
            Some(id) => mailroom_model::AccountRef::User(id),
            None => mailroom_model::AccountRef::Company,
        }
    }
}

/// How an interactive sign-in runs.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct SignInMode {
    /// Sign in with a device code shown here (Microsoft only), e.g. on a server.
    #[arg(long)]
    pub(crate) device_code: bool,
    /// Print the sign-in address instead of opening a browser.
    #[arg(long)]
    pub(crate) no_browser: bool,
    /// How long to wait for the browser sign-in, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout_secs: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SignInArgs {
    #[command(flatten)]
    pub(crate) account: AccountSelector,
    #[command(flatten)]
    pub(crate) mode: SignInMode,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    #[command(
        after_help = "Examples:\n  mailroom app set microsoft --client-id 00000000-0000-0000-0000-000000000000 --tenant contoso.onmicrosoft.com\n  mailroom app set microsoft --redirect-uri http://localhost/mailroom\n  printf '%s' \"$SECRET\" | mailroom app set google --client-id 1234.apps.googleusercontent.com --client-secret-stdin\n  mailroom app set microsoft --app-only --certificate mailroom-app.pem\n  printf '%s' \"$APP_SECRET\" | mailroom app set microsoft --app-only --client-secret-stdin\n  mailroom app set google --service-account service-account.json"
    )]
    /// Register or change the OAuth app of a provider.
    Set(Box<AppSetArgs>),
    #[command(after_help = "Examples:\n  mailroom app show")]
    /// Show the registered apps and the endpoints in effect (never the secret).
    Show,
}

/// The providers with OAuth apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OAuthProvider {
    /// Microsoft identity platform (Entra ID).
    Microsoft,
    /// Google.
    Google,
}

impl OAuthProvider {
    pub(crate) fn provider(self) -> Provider {
        match self {
            OAuthProvider::Microsoft => Provider::Microsoft,
            OAuthProvider::Google => Provider::Google,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AppSetArgs {
    /// microsoft or google.
    pub(crate) provider: OAuthProvider,
    /// The application (client) id.
    #[arg(long, value_name = "ID")]
    pub(crate) client_id: Option<String>,
    /// Microsoft tenant, required for a new registration: the Directory (tenant) ID or a
    /// verified domain of a single-tenant app (the portal's default); organizations or
    /// common only for an app registered as multi-tenant ("Accounts in any organizational
    /// directory").
    #[arg(long, value_name = "TENANT")]
    pub(crate) tenant: Option<String>,
    /// The loopback redirect URI registered with the app (http://localhost,
    /// http://127.0.0.1 or, for Google, http://[::1], with a path if registered with
    /// one). The port is always the sign-in's own. Default: http://localhost for
    /// Microsoft, http://127.0.0.1 for Google.
    #[arg(long, value_name = "URI", conflicts_with = "default_redirect_uri")]
    pub(crate) redirect_uri: Option<String>,
    /// Back to the provider's default redirect URI.
    #[arg(long)]
    pub(crate) default_redirect_uri: bool,
    /// Read the client secret from standard input (Google only: a Microsoft delegated
    /// sign-in is a public client and sends no secret).
    #[arg(long, conflicts_with = "no_client_secret")]
    pub(crate) client_secret_stdin: bool,
    /// Remove the stored client secret (a public client).
    #[arg(long)]
    pub(crate) no_client_secret: bool,
    /// Authorization endpoint override.
    #[arg(long, value_name = "URL")]
    pub(crate) authorize_url: Option<String>,
    /// Token endpoint override.
    #[arg(long, value_name = "URL")]
    pub(crate) token_url: Option<String>,
    /// Device authorization endpoint override.
    #[arg(long, value_name = "URL")]
    pub(crate) device_url: Option<String>,
    /// Revocation endpoint override.
    #[arg(long, value_name = "URL")]
    pub(crate) revoke_url: Option<String>,
    /// The id_token issuer to expect with overridden endpoints (`{tid}` = tenant id).
    #[arg(long, value_name = "ISSUER")]
    pub(crate) issuer: Option<String>,
    /// Gmail API base URL override (Google only), for proxies and tests.
    #[arg(long, value_name = "URL")]
    pub(crate) gmail_api_url: Option<String>,
    /// Microsoft cloud (Microsoft only): global (login.microsoftonline.com,
    /// graph.microsoft.com), usgov (GCC High: login.microsoftonline.us, graph.microsoft.us),
    /// usgov-dod (login.microsoftonline.us, dod-graph.microsoft.us) or china
    /// (login.chinacloudapi.cn, microsoftgraph.chinacloudapi.cn). Sets the default
    /// endpoints, issuer and Graph URL; overrides still win.
    #[arg(long, value_name = "CLOUD", value_parser = ["global", "usgov", "usgov-dod", "china"])]
    pub(crate) cloud: Option<String>,
    /// Microsoft Graph base URL override (Microsoft only), for proxies and tests.
    #[arg(long, value_name = "URL")]
    pub(crate) graph_api_url: Option<String>,
    /// Forget every endpoint override and use the provider's real endpoints.
    #[arg(long)]
    pub(crate) default_endpoints: bool,
    /// Microsoft app-only credentials (client credentials) for accounts with `--auth
    /// app-only`: with --client-secret-stdin (the secret's value) or --certificate FILE.
    /// They sit beside the public client used for delegated sign-ins, which never sends
    /// them.
    #[arg(long, conflicts_with_all = ["no_app_only", "service_account"])]
    pub(crate) app_only: bool,
    /// With --app-only: a PEM file holding the certificate uploaded to the app
    /// registration (Certificates & secrets) and its unencrypted RSA private key. The key
    /// is sealed in the database.
    #[arg(
        long,
        value_name = "FILE",
        requires = "app_only",
        conflicts_with = "client_secret_stdin"
    )]
    pub(crate) certificate: Option<std::path::PathBuf>,
    /// Google: a service account's JSON key file, for accounts with `--auth app-only`
    /// (domain-wide delegation of https://www.googleapis.com/auth/gmail.send). The key is
    /// sealed in the database.
    #[arg(long, value_name = "KEYFILE.json", conflicts_with = "no_app_only")]
    pub(crate) service_account: Option<std::path::PathBuf>,
    /// Remove the app-only credential (client secret, certificate or service account).
    #[arg(long)]
    pub(crate) no_app_only: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    #[command(after_help = "Examples:\n  mailroom token list")]
    /// List stored tokens: address, provider, expiry, last refresh. Never a secret.
    List,
    #[command(after_help = "Examples:\n  mailroom token refresh --company")]
    /// Refresh an account's token now and report the outcome.
    Refresh {
        #[command(flatten)]
        account: AccountSelector,
    },
    #[command(after_help = "Examples:\n  TOKEN=$(mailroom token access --account 4)")]
    /// Print a valid access token for scripts (the only command that prints a token).
    Access {
        #[command(flatten)]
        account: AccountSelector,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// For a lost key: delete every stored secret (passwords, client secrets, tokens) and
    /// seal with a new key from now on; accounts and registrations stay, an administrator
    /// sets the passwords and signs in again. A key file in the way is kept beside it.
    #[command(after_help = "Examples:\n  mailroom key reset --forget-secrets")]
    Reset {
        /// Confirms that the stored secrets are to be deleted (required).
        #[arg(long, required = true)]
        forget_secrets: bool,
    },
    #[command(
        after_help = "Examples:\n  mailroom key rotate --prepare\n  mailroom key rotate --commit\n  mailroom key rotate\n  MAILROOM_KEY=... mailroom key rotate --prepare --new-key-file /secure/next.key"
    )]
    /// Re-encrypt every stored secret with a new key. When several hosts share the
    /// database, rotate in two steps so no host is ever without the key: `--prepare` adds
    /// a new key to the key file (copy the file to every host; with MAILROOM_KEY, add the
    /// key beside the current one, comma-separated), then `--commit` re-encrypts everything
    /// with it in one transaction. Without either flag both steps run at once (one host).
    Rotate {
        /// Only make the new key and record it as prepared; nothing is re-encrypted yet.
        #[arg(long, conflicts_with = "commit")]
        prepare: bool,
        /// Re-encrypt everything with the prepared key (this host must have it).
        #[arg(long)]
        commit: bool,
        /// Where to write the new key when the current one comes from MAILROOM_KEY.
        #[arg(long, value_name = "PATH", conflicts_with = "commit")]
        new_key_file: Option<std::path::PathBuf>,
    },
    /// Show which key the database's secrets are sealed with, any prepared rotation, and
    /// the keys this host has.
    #[command(after_help = "Examples:\n  mailroom key show\n  mailroom key show --json")]
    Show,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CompanyCommand {
    #[command(after_help = "Examples:\n  mailroom company show\n  mailroom company show --json")]
    /// Show the company account.
    Show,
    #[command(
        after_help = "Examples:\n  mailroom company set --provider microsoft --user orders@contoso.example\n  mailroom company set --provider google --user orders@example.com --fax-format '{0}@fax.example.com'\n  mailroom company set --rate 20/min --daily default\n  printf '%s' \"$PASSWORD\" | mailroom company set --provider none --host smtp.example.net --user relay --from orders@example.net --password-stdin"
    )]
    /// Create or change the company account; choosing a provider fills its preset.
    Set {
        #[command(flatten)]
        server: ServerOptions,
        /// Email-to-fax format string with one `{0}`, e.g. `{0}@fax.example.com`.
        #[arg(long, value_name = "FORMAT", value_parser = parse_fax_format, conflicts_with = "no_fax_format")]
        fax_format: Option<FaxFormat>,
        /// Remove the email-to-fax format string.
        #[arg(long)]
        no_fax_format: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    #[command(
        after_help = "Examples:\n  mailroom account add --provider microsoft --user sa@contoso.example --bind SystemUser:User_Name:sa\n  mailroom account add --provider microsoft --sign-in --bind SystemUser:User_Name:sa\n  printf '%s' \"$PASSWORD\" | mailroom account add --provider none --host smtp.example.net --port 587 --user relay --from sa@example.net --password-stdin"
    )]
    /// Add a user account and print its id.
    Add {
        #[command(flatten)]
        server: ServerOptions,
        /// Bind the account: OBJECT:COLUMN:VALUE, e.g. SystemUser:User_Name:sa.
        #[arg(long, value_name = "OBJECT:COLUMN:VALUE", value_parser = parse_binding)]
        bind: Option<Binding>,
        /// Sign in first and take the SMTP user from the sign-in (the quickest path).
        #[arg(long)]
        sign_in: bool,
        #[command(flatten)]
        sign_in_mode: SignInMode,
    },
    #[command(after_help = "Examples:\n  mailroom account list\n  mailroom account list --json")]
    /// List the user accounts.
    List,
    #[command(after_help = "Examples:\n  mailroom account show 4")]
    /// Show one user account.
    Show {
        /// The account id.
        id: i64,
    },
    #[command(
        after_help = "Examples:\n  mailroom account edit 4 --port 587\n  mailroom account edit 4 --bind SystemUser:User_Name:jo\n  mailroom account edit 4 --unbind\n  mailroom account edit 4 --rate 10/min --daily 500\n  mailroom account edit 4 --rate default --daily off"
    )]
    /// Change a user account.
    Edit {
        /// The account id.
        id: i64,
        #[command(flatten)]
        server: ServerOptions,
        /// Bind the account: OBJECT:COLUMN:VALUE.
        #[arg(long, value_name = "OBJECT:COLUMN:VALUE", value_parser = parse_binding, conflicts_with = "unbind")]
        bind: Option<Binding>,
        /// Remove the account's binding.
        #[arg(long)]
        unbind: bool,
    },
    /// Remove a user account; refused while queued or held messages use it.
    #[command(
        after_help = "Examples:\n  mailroom account remove 4\n  mailroom account remove 4 --force"
    )]
    Remove {
        /// The account id.
        id: i64,
        /// Re-resolve its queued and held messages (to the account their feature picks
        /// without it, e.g. the company account) and remove it, in one transaction.
        #[arg(long)]
        force: bool,
    },
}

/// The settings the CLI can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SettingName {
    /// Whether an interactive send may ask the user to sign in (default true).
    CanSignInWhenSending,
    /// Days the agent keeps sent and cancelled messages before deleting them (default
    /// 30; 0 keeps them forever).
    OutboxRetentionDays,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SettingsCommand {
    #[command(
        after_help = "Examples:\n  mailroom settings get\n  mailroom settings get can-sign-in-when-sending"
    )]
    /// Show one setting, or all.
    Get {
        /// The setting.
        name: Option<SettingName>,
    },
    /// Change a setting.
    #[command(
        after_help = "Examples:\n  mailroom settings set can-sign-in-when-sending false\n  mailroom settings set outbox-retention-days 90"
    )]
    Set {
        /// The setting.
        name: SettingName,
        /// The new value: true or false, or a number of days.
        value: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// The system user signed in to the host application.
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// Resolve by another binding instead of the system user: OBJECT:COLUMN:VALUE.
    #[arg(long, value_name = "OBJECT:COLUMN:VALUE", value_parser = parse_binding, conflicts_with = "user")]
    pub(crate) bind: Option<Binding>,
    /// The sending feature: sales-document, smart-printing or automation-agent.
    #[arg(long, value_name = "NAME", default_value = mailroom_model::SALES_DOCUMENT)]
    pub(crate) feature: String,
}

/// Server settings as options; each one left out keeps its current value.
#[derive(Debug, Args, Default)]
pub(crate) struct ServerOptions {
    /// The provider: microsoft (also m365, office365, outlook), google (also gmail) or
    /// none (password SMTP; also password, smtp). Fills its preset.
    #[arg(long, value_name = "PROVIDER", value_parser = parse_provider)]
    pub(crate) provider: Option<Provider>,
    /// The SMTP user: the mailbox address (OAuth) or login name (password SMTP).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Server name or IP address.
    #[arg(long, value_name = "HOST")]
    pub(crate) host: Option<String>,
    /// Server port, 1-65535.
    #[arg(long, value_name = "N", value_parser = parse_port)]
    pub(crate) port: Option<u16>,
    /// Use TLS ("Enable SMTP over SSL or TLS").
    #[arg(long, conflicts_with = "no_tls")]
    pub(crate) tls: bool,
    /// Do not require TLS (STARTTLS is still used when offered).
    #[arg(long)]
    pub(crate) no_tls: bool,
    /// How TLS starts: auto (465 implicit, otherwise STARTTLS), starttls, implicit.
    #[arg(long, value_name = "METHOD", value_parser = parse_tls_startup)]
    pub(crate) tls_startup: Option<TlsStartup>,
    /// Timeout for connecting and each command, in milliseconds (default 100000).
    #[arg(long, value_name = "MS", value_parser = parse_timeout)]
    pub(crate) timeout_ms: Option<u32>,
    /// Read the SMTP password from standard input (provider none only).
    #[arg(long)]
    pub(crate) password_stdin: bool,
    /// The From address (and envelope sender) of sends that give none, for password
    /// accounts whose login is not an address.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "no_from")]
    pub(crate) from: Option<String>,
    /// Remove the account's From address (sends come from the SMTP user again).
    #[arg(long)]
    pub(crate) no_from: bool,
    /// Let an OAuth account send its token without TLS to a loopback test server.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) allow_plaintext_loopback: Option<bool>,
    /// Let a password account send its password without TLS to a server that is not on
    /// this machine (old internal relays; anyone on the path can read it). Off by default:
    /// a password goes in plaintext only to a loopback host.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) allow_plaintext_password: Option<bool>,
    /// The SMTP user is a shared mailbox (or any mailbox another person may send as): a
    /// person with rights on it signs in, and mail still goes out as the mailbox. Without
    /// it only the mailbox's own person may sign in for the account.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) shared_mailbox: Option<bool>,
    /// How a Microsoft account's mail leaves: smtp (SMTP submission, the default) or graph
    /// (Microsoft Graph's sendMail, for tenants where SMTP AUTH is off). The Graph route
    /// signs in for Mail.Send (Mail.Send.Shared for a shared mailbox); sign in again after
    /// switching when the current sign-in has not granted it.
    #[arg(long, value_name = "ROUTE", value_parser = parse_route)]
    pub(crate) route: Option<Route>,
    /// Graph route: send messages over Graph's 4 MB request limit (up to 35 MB, Exchange
    /// Online's default message size) as a draft with upload sessions. Needs the
    /// Mail.ReadWrite permission, which the sign-in then asks for.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) large_attachments: Option<bool>,
    /// How a Microsoft or Google account gets its tokens: delegated (a person signs in,
    /// the default) or app-only (the app's own credentials: Microsoft client credentials
    /// with a secret or certificate, a Google service account with domain-wide
    /// delegation; no sign-in). App-only sends as the SMTP user, which it needs.
    #[arg(long, value_name = "AUTH", value_parser = parse_auth)]
    pub(crate) auth: Option<Auth>,
    /// Messages a minute the mailbox may send, spaced evenly, for every process on the
    /// database: N (or N/min), off (no limit) or default (the provider's: Microsoft 30,
    /// Google 60, password SMTP none).
    #[arg(long, value_name = "N/min|N|off|default", value_parser = parse_rate)]
    pub(crate) rate: Option<LimitOption>,
    /// The mailbox's limit per rolling 24 hours, in the provider's unit: N, off (no limit)
    /// or default (Microsoft 10,000 recipients, Google 2,000 messages, password SMTP none).
    #[arg(long, value_name = "N|off|default", value_parser = parse_daily)]
    pub(crate) daily: Option<LimitOption>,
}

/// `--rate` or `--daily`: a limit of the account's own, or `default` (`None`: back to the
/// provider's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitOption(pub(crate) Option<Limit>);

fn parse_rate(text: &str) -> Result<LimitOption, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number = lower.strip_suffix("/min").unwrap_or(&lower).trim_end();
    parse_limit(
        text,
        number,
        "rate",
        "a number of messages a minute such as 30 or 30/min",
        validate::MAX_RATE_PER_MINUTE,
    )
}

fn parse_daily(text: &str) -> Result<LimitOption, String> {
    let lower = text.trim().to_ascii_lowercase();
    parse_limit(
        text,
        &lower,
        "daily limit",
        "a number such as 2000 (recipients for Microsoft, messages otherwise)",
        validate::MAX_DAILY_LIMIT,
    )
}

/// A limit option: `default`, `off`, or a number from 1 to `max`; anything else is refused
/// with the forms the option takes.
fn parse_limit(
    text: &str,
    lower: &str,
    field: &'static str,
    number: &str,
    max: u32,
) -> Result<LimitOption, String> {
    match lower {
        "default" => return Ok(LimitOption(None)),
        "off" => return Ok(LimitOption(Some(Limit::Off))),
        _ => {}
    }
    let value: u32 = match lower.parse() {
        Ok(value) if lower.bytes().all(|byte| byte.is_ascii_digit()) => value,
        _ => {
            return Err(format!(
                "`{}` is not a {field}; give {number} (1 to {max}), `off` for no limit, or `default` for the provider's",
                text.escape_debug()
            ));
        }
    };
    let limit = Some(Limit::At(value));
    validate::check_limit(field, limit, max).map_err(|error| error.to_string())?;
    Ok(LimitOption(limit))
}

/// Every name `--provider` accepts, the canonical ones first.
const PROVIDER_NAMES: [&str; 9] = [
    "microsoft",
    "google",
    "none",
    "m365",
    "office365",
    "outlook",
    "gmail",
    "password",
    "smtp",
];

fn parse_provider(text: &str) -> Result<Provider, String> {
    text.parse().map_err(|e: mailroom_model::ValidationError| {
        match did_you_mean(text, &PROVIDER_NAMES) {
            Some(name) => format!(
                "`{}` is not a provider; did you mean `{name}`?",
                text.escape_debug()
            ),
            None => e.to_string(),
        }
    })
}

/// The closest of `names` to `text`, when it is a plausible typo (at most 2 edits, and
/// fewer than half the name).
pub(crate) fn did_you_mean<'a>(text: &str, names: &[&'a str]) -> Option<&'a str> {
    let text = text.trim().to_ascii_lowercase();
    names
        .iter()
        .map(|name| (edit_distance(&text, name), *name))
        .filter(|(distance, name)| *distance <= 2 && *distance * 2 < name.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours (`microsfot` is one swap from `microsoft`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn parse_auth(text: &str) -> Result<Auth, String> {
    text.parse()
        .map_err(|e: mailroom_model::ValidationError| e.to_string())
}

fn parse_route(text: &str) -> Result<Route, String> {
    text.parse()
        .map_err(|e: mailroom_model::ValidationError| e.to_string())
}

fn parse_tls_startup(text: &str) -> Result<TlsStartup, String> {
    text.parse()
        .map_err(|e: mailroom_model::ValidationError| e.to_string())
}

fn parse_port(text: &str) -> Result<u16, String> {
    validate::parse_port(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<u32, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of milliseconds"))?;
    validate::check_timeout_ms(value).map_err(|e| e.to_string())
}

fn parse_binding(text: &str) -> Result<Binding, String> {
    text.parse()
        .map_err(|e: mailroom_model::ValidationError| e.to_string())
}

fn parse_fax_format(text: &str) -> Result<FaxFormat, String> {
    FaxFormat::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn provider_typos_get_the_nearest_name() {
        assert_eq!(
            did_you_mean("microsfot", &PROVIDER_NAMES),
            Some("microsoft")
        );
        assert_eq!(did_you_mean("gogle", &PROVIDER_NAMES), Some("google"));
        assert_eq!(did_you_mean("gmial", &PROVIDER_NAMES), Some("gmail"));
        assert_eq!(did_you_mean("exchange", &PROVIDER_NAMES), None);
        assert_eq!(did_you_mean("no", &PROVIDER_NAMES), None);
    }

    #[test]
    fn limits_take_a_number_off_or_default() {
        let at = |value| Ok(LimitOption(Some(Limit::At(value))));
        assert_eq!(parse_rate("30"), at(30));
        assert_eq!(parse_rate(" 30/min "), at(30));
        assert_eq!(parse_rate("30 /MIN"), at(30));
        assert_eq!(parse_rate("OFF"), Ok(LimitOption(Some(Limit::Off))));
        assert_eq!(parse_rate("default"), Ok(LimitOption(None)));
        assert_eq!(parse_daily("10000"), at(10_000));
        assert_eq!(parse_daily("Default"), Ok(LimitOption(None)));
        for refused in [
            "0", "0/min", "-5", "+5", "fast", "", "/min", "1.5", "100001",
        ] {
            let error = parse_rate(refused).unwrap_err();
            assert!(
                error.contains("`off` for no limit, or `default` for the provider's"),
                "{refused:?}: {error}"
            );
        }
        assert!(parse_daily("30/min").is_err());
        assert!(parse_daily("10000001").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Splits a shell line into words: spaces separate, quotes group (no escapes needed
    /// by the examples).
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote = None;
        let mut started = false;
        for c in line.chars() {
            match (quote, c) {
                (None, '\'' | '"') => {
                    quote = Some(c);
                    started = true;
                }
                (Some(q), c) if c == q => quote = None,
                (None, ' ') => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                (_, c) => {
                    word.push(c);
                    started = true;
                }
            }
        }
        if started {
            words.push(word);
        }
        words
    }

    fn examples(command: &clap::Command, out: &mut Vec<String>) {
        if let Some(help) = command.get_after_help() {
            for line in help.to_string().lines() {
                // The mailroom command of a line (after `... | ` or `X=$(`), if it has one.
                let line = line.trim();
                let start = line
                    .find("mailroom ")
                    .filter(|_| !line.contains("cargo run"));
                if let Some(start) = start {
                    let mut command = line[start..].trim_end_matches(')');
                    // Up to a redirection, a pipe or a comment.
                    for stop in [" >", " | ", " #", " && "] {
                        command = command.split(stop).next().unwrap_or(command);
                    }
                    out.push(command.trim().to_owned());
                }
            }
        }
        for sub in command.get_subcommands() {
            examples(sub, out);
        }
    }

    #[test]
    fn every_example_in_the_help_parses() {
        let mut found = Vec::new();
        examples(&Cli::command(), &mut found);
        assert!(found.len() > 40, "only {} examples", found.len());
        for example in found {
            let args = words(&example);
            if let Err(error) = Cli::try_parse_from(&args) {
                panic!("the example `{example}` does not parse: {error}");
            }
        }
    }
}
