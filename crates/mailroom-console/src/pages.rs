//! The console's pages (maud: checked at compile time, every value escaped). Labels are
//! the product guide's, so an administrator who read it finds every field. No page
//! renders a secret: passwords, tokens and client secrets are never read into a page.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mailroom::model::ServerSettings;
use mailroom::tokens::registration::AppRegistration;
use mailroom::{
    Account, AccountRef, OutboxStatus, Provider, QueuedMessage, Remedy, Settings, SignInState,
    SignInStep,
};

use crate::signin::Notice;
use maud::{DOCTYPE, Markup, html};

use crate::routes::{SCRIPT, STYLESHEET};
use crate::security::CSRF_FIELD;

/// The console's stylesheet (served from the console itself: the policy allows no other
/// source).
pub(crate) const STYLESHEET_TEXT: &str = include_str!("console.css");

/// The console's only script: the fax format's live preview.
pub(crate) const SCRIPT_TEXT: &str = include_str!("console.js");

/// What every page needs: its title, and the session's CSRF token for its forms (none
/// on the pages shown before a session).
#[derive(Debug)]
pub(crate) struct Page<'a> {
    pub(crate) title: &'a str,
    pub(crate) csrf: Option<&'a str>,
}

/// An account with its sign-in, as the lists show it.
pub(crate) type AccountRow = mailroom::AccountSignIn;

const NAVIGATION: &[(&str, &str)] = &[
    ("/accounts/company", "Company account"),
    ("/accounts", "SMTP Setup"),
    ("/health", "Health"),
    ("/outbox", "Outbox"),
    ("/send", "Send a test"),
    ("/settings", "Settings"),
];

fn layout(page: &Page<'_>, body: Markup) -> Markup {
    html_page(page, body)
}

fn html_page(page: &Page<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · mailroom" }
                link rel="stylesheet" href=(STYLESHEET);
            }
            body {
                header {
                    span.brand { "mailroom" }
                    @if let Some(csrf) = page.csrf {
                        nav {
                            @for (href, label) in NAVIGATION {
                                a href=(href) { (label) }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(csrf))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (page.title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden field every form carries.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
}

/// A button that posts to `action` (every change is a POST with the CSRF token).
fn post_button(csrf: &str, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(csrf))
            button class=(class) type="submit" { (label) }
        }
    }
}

pub(crate) fn login(problem: Option<&str>, with_password: bool) -> Markup {
    let page = Page {
        title: "Log in to the console",
        csrf: None,
    };
    layout(
        &page,
        html! {
            @if let Some(problem) = problem {
                p.error role="alert" { (problem) }
            }
            p { "Open the login link printed where the console was started. Each link works once and starts a session in this browser." }
            @if with_password {
                form #login-form method="post" action="/login" {
                    label { "Or the admin password "
                        input type="password" name="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "Log in" }
                }
            }
        },
    )
}

pub(crate) fn not_found() -> Markup {
    let page = Page {
        title: "Not found",
        csrf: None,
    };
    layout(
        &page,
        html! { p { "There is no such page. " a href="/accounts" { "Back to SMTP Setup" } } },
    )
}

pub(crate) fn failure(
    page: &Page<'_>,
    message: &str,
    remedy: Option<&Remedy>,
    hint: Option<&str>,
) -> Markup {
    layout(
        page,
        html! {
            p.error role="alert" { (message) }
            @if let Some(remedy) = remedy {
                p.remedy { "To fix it: " (remedy.to_string()) "." }
            }
            @if let Some(hint) = hint {
                p.remedy { "To fix it: " (hint) "." }
            }
            p { a href="/accounts" { "Back to SMTP Setup" } }
        },
    )
}

/// Notices left for this page (a sign-in's outcome, a save): an error with its remedy,
/// and a Sign In button when signing in is the remedy (for the account the remedy names,
/// else `account`).
fn notices(account: Option<AccountRef>, notices: &[Notice]) -> Markup {
    html! {
        @for notice in notices {
            @if notice.error {
                div.error role="alert" {
                    p { (notice.text) }
                    @if let Some(remedy) = &notice.remedy {
                        p.remedy { "To fix it: " (remedy.to_string()) "." }
                        @if let Remedy::SignIn { account: named, .. } = remedy {
                            @if let Some(account) = named.or(account) {
                                a.button.primary href={ (path_of(Some(account))) "/sign-in" } { "Sign In" }
                            }
                        }
                    }
                }
            } @else {
                p.notice role="status" { (notice.text) }
            }
        }
    }
}

fn sign_in_link(account: &Account) -> Markup {
    html! { a.button.primary href={ (account_path(account)) "/sign-in" } { "Sign In" } }
}

fn when(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn yes_no(value: bool) -> &'static str {
    if value { "Yes" } else { "No" }
}

fn account_path(account: &Account) -> String {
    match account {
        Account::Company(_) => "/accounts/company".to_owned(),
        Account::User(user) => format!("/accounts/{}", user.id),
    }
}

fn account_id(account: &Account) -> String {
    match account {
        Account::Company(_) => "company".to_owned(),
        Account::User(user) => user.id.to_string(),
    }
}

/// The token state a list shows: signed in (and until when), not signed in, or none
/// needed.
fn token_state(row: &AccountRow) -> String {
    match (row.state, &row.token) {
        (SignInState::SignedIn, Some(token)) if token.status != "valid" => {
            format!(
                "{} ({})",
                token.status,
                token.status_reason.as_deref().unwrap_or("sign in again")
            )
        }
        (SignInState::SignedIn, Some(token)) => format!("valid until {}", when(&token.expires_at)),
        (SignInState::SignedIn, None) => "signed in".to_owned(),
        (SignInState::NotSignedIn, _) => "not signed in".to_owned(),
        (SignInState::NotApplicable, _) => {
            if row.account.server().provider.uses_oauth() {
                "app-only (no sign-in)".to_owned()
            } else {
                "password".to_owned()
            }
        }
    }
}

pub(crate) fn accounts(page: &Page<'_>, rows: &[AccountRow]) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    layout(
        page,
        html! {
            p.actions {
                a.button href="/accounts/new" { "Add" }
                a.button href="/accounts" { "Refresh" }
            }
            table #accounts {
                thead {
                    tr {
                        th { "Email Server ID" }
                        th { "OAuth Service Provider" }
                        th { "Email Server hostname or IP address" }
                        th { "SMTP Port" }
                        th { "SSL/TLS" }
                        th { "SSL or TLS Startup Method" }
                        th { "Business Object" }
                        th { "Column Name" }
                        th { "Column Value" }
                        th { "Signed in as" }
                        th { "Token state" }
                        th { }
                    }
                }
                tbody {
                    @for row in rows {
                        @let server = row.account.server();
                        @let binding = match &row.account {
                            Account::User(user) => user.binding.as_ref(),
                            Account::Company(_) => None,
                        };
                        tr data-account=(account_id(&row.account)) {
                            td { a href=(account_path(&row.account)) { (account_id(&row.account)) } }
                            td { (server.provider.to_string()) }
                            td { (server.host) }
                            td { (server.port) }
                            td { (yes_no(server.tls)) }
                            td { (server.tls_startup.as_str()) }
                            td { (binding.map(|b| b.business_object.as_str()).unwrap_or("")) }
                            td { (binding.map(|b| b.column_name.as_str()).unwrap_or("")) }
                            td { (binding.map(|b| b.column_value.as_str()).unwrap_or("")) }
                            td.signed-in { (row.token.as_ref().map(|t| t.address.as_str()).unwrap_or("")) }
                            td.token-state { (token_state(row)) }
                            td.row-actions {
                                a.button href=(account_path(&row.account)) { "Edit" }
                                @if let Account::User(user) = &row.account {
                                    (post_button(csrf, &format!("/accounts/{}/remove", user.id), "Remove", "danger"))
                                }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() {
                p { "No account is configured yet: set up the company account first." }
            }
        },
    )
}

/// An account form's values: the settings (stored, or as posted), the company's fax
/// format and the sample its preview formats, a user account's binding.
#[derive(Debug, Clone)]
pub(crate) struct AccountForm {
    pub(crate) settings: ServerSettings,
    pub(crate) fax_format: String,
    pub(crate) fax_sample: String,
    pub(crate) binding: [String; 3],
    /// The address of the sign-in the Add form holds (Sign In before the account exists).
    pub(crate) signed_in: Option<String>,
    /// The draft the Add form shows, if it is one.
    pub(crate) draft: Option<String>,
}

impl AccountForm {
    /// An account as stored.
    pub(crate) fn of(account: &Account) -> Self {
        let (fax_format, binding) = match account {
            Account::Company(company) => (
                company
                    .fax_format
                    .as_ref()
                    .map(|format| format.as_str().to_owned())
                    .unwrap_or_default(),
                None,
            ),
            Account::User(user) => (String::new(), user.binding.as_ref()),
        };
        Self {
            settings: account.server().clone(),
            fax_format,
            fax_sample: crate::forms::SAMPLE_FAX.to_owned(),
            binding: binding
                .map(|b| {
                    [
                        b.business_object.clone(),
                        b.column_name.clone(),
                        b.column_value.clone(),
                    ]
                })
                .unwrap_or_default(),
            signed_in: None,
            draft: None,
        }
    }

    /// A new account's form: Microsoft's preset.
    pub(crate) fn new(_account: Option<AccountRef>) -> Self {
        Self {
            settings: ServerSettings::preset(Provider::Microsoft),
            fax_format: String::new(),
            fax_sample: crate::forms::SAMPLE_FAX.to_owned(),
            binding: Default::default(),
            signed_in: None,
            draft: None,
        }
    }
}

/// A provider as the guide names it.
pub(crate) fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Microsoft => "Microsoft",
        Provider::Google => "Google",
        Provider::None => "password SMTP",
    }
}

/// Where an account's form is (`None`: the Add form).
pub(crate) fn path_of(account: Option<AccountRef>) -> String {
    match account {
        Some(AccountRef::Company) => "/accounts/company".to_owned(),
        Some(AccountRef::User(id)) => format!("/accounts/{id}"),
        None => "/accounts/new".to_owned(),
    }
}

/// What the fax format makes of the sample number: its address (or that faxing is off),
/// or what is wrong. The page's preview and the live preview (`/fax-preview`) both show it.
pub(crate) fn fax_preview_text(format: &str, sample: &str) -> Result<String, String> {
    if format.trim().is_empty() {
        return Ok("(no format: faxing is off)".to_owned());
    }
    mailroom::model::FaxFormat::parse(format.trim())
        .and_then(|format| format.address_for(sample))
        .map(|address| address.to_string())
        .map_err(|error| error.to_string())
}

/// The fax format's preview, which the script keeps up to date as the fields change.
fn fax_preview(form: &AccountForm) -> Markup {
    html! {
        span #fax-preview {
            @match fax_preview_text(&form.fax_format, &form.fax_sample) {
                Ok(address) => output.fax-preview { (address) },
                Err(error) => output.fax-preview.error { (error) },
            }
        }
    }
}

/// A field the provider ignores: shown disabled, labelled "(ignored)".
fn ignored_mark(ignored: bool) -> Markup {
    html! { @if ignored { " " span.ignored { "(ignored)" } } }
}

/// The company account ("Sales Email Confirmation") or a user account (Add / Edit), with
/// Sign In / Sign Out beside the SMTP User.
pub(crate) fn account_form(
    page: &Page<'_>,
    account: Option<AccountRef>,
    row: Option<&AccountRow>,
    form: &AccountForm,
    shown: &[Notice],
    browser: bool,
) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    let server = &form.settings;
    let path = path_of(account);
    let ignores = crate::forms::ignores_tls(server.provider);
    let company = account == Some(AccountRef::Company);
    html_page(
        page,
        html! {
            (notices(row.map(|row| row.account.account_ref()).or(account), shown))
            form #account-form method="post" action=(path) {
                // Enter in a field saves: the first submit button is the form's default.
                button.default-action type="submit" name="action" value="save" tabindex="-1" aria-hidden="true" {}
                (csrf_field(csrf))
                @if let Some(draft) = &form.draft {
                    input type="hidden" name="draft" value=(draft);
                }
                input type="hidden" name="previous_provider" value=(server.provider.as_str());
                @if let Some(AccountRef::User(id)) = account {
                    p { "Email Server ID: " strong { (id) } }
                }
                label { "Email Server hostname or IP address"
                    input type="text" name="host" value=(server.host) disabled[server.provider == Provider::Google]; }
                label { "SMTP User"
                    input type="text" name="smtp_user" value=(server.smtp_user) autocomplete="off"
                        readonly[form.signed_in.is_some()]; }
                @if account.is_none() {
                    p.sign-in {
                        @if let Some(address) = &form.signed_in {
                            "Signed in as: " strong.signed-in { (address) }
                            " (kept with the account when you Add it) "
                        }
                        button type="submit" formaction="/accounts/new/sign-in" name="action" value="sign-in" { "Sign In" }
                    }
                }
                @if let Some(row) = row.filter(|row| row.account.server().provider.uses_oauth()) {
                    p.sign-in {
                        "Signed in as: " strong.signed-in { (row.token.as_ref().map(|t| t.address.as_str()).unwrap_or("nobody")) }
                        " (" span.token-state { (token_state(row)) } ") "
                        @if row.state != SignInState::NotApplicable {
                            (sign_in_link(&row.account))
                        }
                    }
                }
                label { "SMTP Password"
                    input type="password" name="password" value="" autocomplete="new-password"
                        placeholder=(if server.password.is_some() { "(set: leave empty to keep)" } else { "" })
                        disabled[server.provider.uses_oauth()];
                    @if server.provider.uses_oauth() { " " span.ignored { "(OAuth accounts sign in instead)" } }
                }
                label { "SMTP OAuth Service Provider"
                    select name="provider" {
                        @for (value, label) in [("none", "None (SMTP Password)"), ("microsoft", "Microsoft"), ("google", "Google")] {
                            option value=(value) selected[server.provider.as_str() == value] { (label) }
                        }
                    }
                }
                label { "SMTP Port"
                    input type="number" name="port" min="1" max="65535" value=(server.port) disabled[server.provider == Provider::Google]; }
                label.disabled[ignores] {
                    input type="checkbox" name="tls" value="1" checked[server.tls] disabled[ignores];
                    " Enable SMTP over SSL or TLS" (ignored_mark(ignores))
                }
                label.disabled[ignores] { "SSL or TLS Startup Method"
                    select name="tls_startup" disabled[ignores] {
                        @for (value, label) in [("auto", "Auto"), ("starttls", "STARTTLS"), ("implicit", "Implicit (SMTPS)")] {
                            option value=(value) selected[server.tls_startup.as_str() == value] { (label) }
                        }
                    }
                    (ignored_mark(ignores))
                }
                label.disabled[ignores] { "SMTP Timeout"
                    input type="number" name="timeout_ms" min="1" value=(server.timeout_ms) disabled[ignores];
                    " ms" (ignored_mark(ignores))
                }
                @if company {
                    fieldset {
                        legend { "Email To Fax Format String" }
                        input type="text" name="fax_format" value=(form.fax_format) placeholder="{0}@fax.example.com";
                        p { "Preview for "
                            input type="text" name="fax_sample" value=(form.fax_sample) size="20";
                            ": " (fax_preview(form)) " "
                            button type="submit" name="action" value="preview" { "Preview" }
                        }
                        script src=(SCRIPT) defer {}
                    }
                }
                @if account != Some(AccountRef::Company) {
                    fieldset {
                        legend { "Bound to (empty: not bound)" }
                        label { "Business Object" input type="text" name="business_object" value=(form.binding[0]) placeholder="SystemUser"; }
                        label { "Column Name" input type="text" name="column_name" value=(form.binding[1]) placeholder="User_Name"; }
                        label { "Column Value" input type="text" name="column_value" value=(form.binding[2]) placeholder="sa"; }
                    }
                }
                p.actions {
                    button.primary type="submit" name="action" value="save" { (if account.is_none() { "Add" } else { "Save" }) }
                    @if account.is_none() && form.signed_in.is_some() {
                        button.danger type="submit" formaction="/accounts/new/discard" name="action" value="discard" { "Discard the sign-in" }
                    }
                    a href="/accounts" { "Back to SMTP Setup" }
                }
            }
            @if let Some(row) = row {
                @if row.state == SignInState::SignedIn {
                    div.actions {
                        (post_button(csrf, &format!("{path}/sign-out"), "Sign Out", "danger"))
                    }
                }
            }
            @if !browser && row.is_some_and(|r| r.state != SignInState::NotApplicable) {
                p.hint { "The console is not on loopback: only a device code sign-in (Microsoft) can come back to it." }
            }
        },
    )
}

/// The guide's "Email Sign In" buttons: Sign in with Google, Sign in with Microsoft (and
/// Microsoft's device code), posting to `action`; `live` says which may be chosen.
fn sign_in_buttons(csrf: &str, action: &str, live: impl Fn(Provider, bool) -> bool) -> Markup {
    let button = |choice: Provider, device: bool, label: &str| {
        let live = live(choice, device);
        html! {
            form.inline method="post" action=(action) {
                (csrf_field(csrf))
                input type="hidden" name="provider" value=(choice.as_str());
                input type="hidden" name="mode" value=(if device { "device" } else { "browser" });
                button.primary[live] type="submit" disabled[!live] { (label) }
            }
        }
    };
    html! {
        div.actions {
            (button(Provider::Google, false, "Sign in with Google"))
            (button(Provider::Microsoft, false, "Sign in with Microsoft"))
            (button(Provider::Microsoft, true, "Sign in with Microsoft using a code"))
        }
    }
}

/// The guide's "Email Sign In" dialog for an account. Its own provider's buttons are
/// live.
pub(crate) fn sign_in_choice(page: &Page<'_>, row: &AccountRow, browser: bool) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    let provider = row.account.server().provider;
    let action = format!("{}/sign-in", account_path(&row.account));
    layout(
        page,
        html! {
            p { "Sign in for " strong { (row.account.account_ref().to_string()) }
                @if !row.account.server().smtp_user.is_empty() {
                    " as " strong.smtp-user { (row.account.server().smtp_user) }
                }
                ". The token is stored encrypted in the database, for every user and the agent." }
            (sign_in_buttons(csrf, &action, |choice, device| choice == provider && (device || browser)))
            @if provider.uses_oauth() {
                p.hint { "This account's OAuth Service Provider is " (provider_name(provider)) ": change it in the account's settings to sign in with the other." }
            } @else {
                p.error role="alert" { "This account signs in with a password (no OAuth Service Provider): it has nothing to sign in to." }
            }
            p { a href=(account_path(&row.account)) { "Back to the account" } }
        },
    )
}

/// The "Email Sign In" dialog for the account being added: every provider may be chosen,
/// and the chosen one's preset fills the form.
pub(crate) fn new_account_sign_in_choice(
    page: &Page<'_>,
    smtp_user: &str,
    browser: bool,
) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    layout(
        page,
        html! {
            p { "Sign in for the account being added"
                @if !smtp_user.is_empty() { " as " strong.smtp-user { (smtp_user) } }
                ". The provider you choose fills its preset (server, port, TLS) and the SMTP User; the account and its sign-in are stored when you Add it." }
            (sign_in_buttons(csrf, "/accounts/new/sign-in/start", |_, device| device || browser))
            p { a href="/accounts/new" { "Back to the account" } }
        },
    )
}

/// A device code to enter at the provider; the page reloads itself (no script) until the
/// sign-in ends.
pub(crate) fn device_code(
    page: &Page<'_>,
    account: Option<AccountRef>,
    step: &SignInStep,
) -> Markup {
    let back = path_of(account);
    let body = match step {
        SignInStep::EnterCode {
            verification_uri,
            user_code,
            expires_in,
            ..
        } => html! {
            p { "On any device, open " a href=(verification_uri) rel="noreferrer" target="_blank" { (verification_uri) }
                " and enter this code:" }
            p { code.device-code { (user_code) } }
            p.hint { "The code is valid for " (expires_in.as_secs() / 60) " minutes. This page follows the sign-in and returns to the account when it ends." }
        },
        SignInStep::OpenUrl(url) => html! {
            p { "Open " a href=(url.as_str()) { "the sign-in page" } "." }
        },
        _ => html! { p { "Follow the provider's instructions." } },
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="3";
                title { (page.title) " · mailroom" }
                link rel="stylesheet" href=(STYLESHEET);
            }
            body {
                main {
                    h1 { (page.title) }
                    (body)
                    p { a href=(back) { "Back to the account" } }
                }
            }
        }
    }
}

/// The statuses the outbox's filters count: the open ones, few however long the history
/// of sent messages grows (counting that would read it all).
pub(crate) const COUNTED: [OutboxStatus; 4] = [
    OutboxStatus::Queued,
    OutboxStatus::Sending,
    OutboxStatus::Held,
    OutboxStatus::Failed,
];

const STATUSES: [OutboxStatus; 6] = [
    OutboxStatus::Queued,
    OutboxStatus::Sending,
    OutboxStatus::Held,
    OutboxStatus::Sent,
    OutboxStatus::Failed,
    OutboxStatus::Cancelled,
];

pub(crate) fn outbox(
    page: &Page<'_>,
    status: Option<OutboxStatus>,
    counts: &BTreeMap<OutboxStatus, u64>,
    messages: &[QueuedMessage],
    next: Option<i64>,
) -> Markup {
    let filter = status.map(|s| s.as_str()).unwrap_or("");
    layout(
        page,
        html! {
            nav.filters {
                a href="/outbox" class=(if status.is_none() { "current" } else { "" }) { "All" }
                @for candidate in STATUSES {
                    a href={ "/outbox?status=" (candidate.as_str()) }
                        class=(if status == Some(candidate) { "current" } else { "" }) {
                        (candidate.as_str())
                        @if COUNTED.contains(&candidate) {
                            " (" (counts.get(&candidate).copied().unwrap_or(0)) ")"
                        }
                    }
                }
            }
            table #outbox {
                thead {
                    tr {
                        th { "Id" } th { "Status" } th { "Subject" } th { "From" }
                        th { "To" } th { "Attempts" } th { "Next attempt" } th { "Last error" }
                    }
                }
                tbody {
                    @for message in messages {
                        tr data-message=(message.id) {
                            td { a href={ "/outbox/" (message.id) } { (message.id) } }
                            td.status { (message.status.as_str()) (held_sign_in(message)) }
                            td { (message.subject.as_deref().unwrap_or("")) }
                            td { (message.sender) }
                            td { (message.recipients.join(", ")) }
                            td { (message.attempts) }
                            td { (when(&message.next_attempt_at)) }
                            td { (message.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if messages.is_empty() {
                p { "No messages." }
            }
            @if let Some(next) = next {
                p { a.button rel="next" href={ "/outbox?status=" (filter) "&before=" (next) } { "Older" } }
            }
        },
    )
}

/// The largest header block a message page shows.
const MAX_HEADERS: usize = 16 * 1024;

/// A stored message's header block (up to the first empty line; no body), as text.
pub(crate) fn header_block(bytes: &[u8]) -> String {
    let end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(bytes.len())
        .min(MAX_HEADERS);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A held message's way out: its account's Sign In.
fn held_sign_in(message: &QueuedMessage) -> Markup {
    html! {
        @if message.status == OutboxStatus::Held {
            " " a.button.primary href={ (path_of(Some(message.account))) "/sign-in" } { "Sign In" }
        }
    }
}

pub(crate) fn outbox_message(page: &Page<'_>, message: &QueuedMessage, headers: &str) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    let retryable = matches!(
        message.status,
        OutboxStatus::Queued | OutboxStatus::Held | OutboxStatus::Failed
    );
    layout(
        page,
        html! {
            dl.fields {
                dt { "Id" } dd { (message.id) }
                dt { "Status" } dd.status { (message.status.as_str()) }
                dt { "Message-ID" } dd { (message.message_id) }
                dt { "Subject" } dd { (message.subject.as_deref().unwrap_or("")) }
                dt { "Feature" } dd { (message.feature) }
                dt { "System user" } dd { (message.system_user.as_deref().unwrap_or("")) }
                dt { "Account" } dd { (message.account.to_string()) }
                dt { "Envelope sender" } dd { (message.sender) }
                dt { "Recipients" } dd { (message.recipients.join(", ")) }
                dt { "Size" } dd { (message.size) " bytes" }
                dt { "Attempts" } dd { (message.attempts) }
                dt { "Next attempt" } dd { (when(&message.next_attempt_at)) }
                dt { "Last error" } dd.last-error { (message.last_error.as_deref().unwrap_or("")) }
                dt { "Delivered by" } dd { (message.transport.as_deref().unwrap_or("")) }
                dt { "Server reply" } dd { (message.reply.as_deref().unwrap_or("")) }
                dt { "Queued" } dd { (when(&message.created_at)) }
            }
            h2 { "Headers" }
            pre.headers { (headers) }
            div.actions {
                (held_sign_in(message))
                @if retryable {
                    (post_button(csrf, &format!("/outbox/{}/retry", message.id), "Retry", ""))
                    (post_button(csrf, &format!("/outbox/{}/cancel", message.id), "Cancel", "danger"))
                }
                a href="/outbox" { "Back to the outbox" }
            }
        },
    )
}

pub(crate) fn settings(
    page: &Page<'_>,
    settings: &Settings,
    apps: &[AppRegistration],
    shown: &[Notice],
) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    layout(
        page,
        html! {
            (notices(None, shown))
            form #settings-form method="post" action="/settings" {
                (csrf_field(csrf))
                label {
                    input type="checkbox" name="can_sign_in_when_sending" value="1"
                        checked[settings.can_sign_in_when_sending];
                    " Can Sign In When Sending Email"
                }
                p.hint { "When a send finds no valid token, the person sending is asked to sign in (never the agent)." }
                button type="submit" { "Save" }
            }
            h2 { "OAuth app registrations" }
            @for provider in [Provider::Microsoft, Provider::Google] {
                @let app = apps.iter().find(|app| app.provider == provider);
                form id={ "app-" (provider.as_str()) } method="post" action={ "/settings/apps/" (provider.as_str()) } {
                    (csrf_field(csrf))
                    fieldset {
                        legend { (provider_name(provider)) @if app.is_none() { " (not registered)" } }
                        label { "Client id"
                            input type="text" name="client_id" value=(app.map(|a| a.client_id.as_str()).unwrap_or("")); }
                        @if provider == Provider::Microsoft {
                            label { "Tenant"
                                input type="text" name="tenant" value=(app.map(|a| a.tenant()).unwrap_or("")) placeholder="organizations"; }
                        } @else {
                            label { "Client secret"
                                input type="password" name="client_secret" value="" autocomplete="new-password"
                                    placeholder=(if app.is_some_and(|a| a.client_secret.is_some()) { "(set: leave empty to keep)" } else { "" }); }
                        }
                        label { "Redirect URI (as registered, without a port)"
                            input type="text" name="redirect_uri"
                                value=(app.map(|a| a.redirect_uri_to_register()).unwrap_or_default()); }
                        @if let Some(app) = app {
                            @let endpoints = app.endpoints();
                            p.hint { "Authorize: " code { (endpoints.authorize.as_str()) } br; "Token: " code { (endpoints.token.as_str()) } }
                        }
                        button type="submit" { "Save the " (provider_name(provider)) " app" }
                    }
                }
            }
        },
    )
}

/// "Send a test message": the account, or the feature and system user to resolve one.
pub(crate) fn send_test(
    page: &Page<'_>,
    rows: &[AccountRow],
    features: &[String],
    form: &crate::send::SendForm,
    shown: &[Notice],
    receipt: Option<&mailroom::Receipt>,
) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    layout(
        page,
        html! {
            (notices(None, shown))
            @if let Some(receipt) = receipt {
                div.notice role="status" #receipt {
                    p { "Sent by " strong.sent-by { (receipt.account.to_string()) } " (" (receipt.account_user) ") through " (receipt.transport.to_string()) "." }
                    p { "Why this account: " span.reason { (receipt.reason) } }
                    p { "Message-ID " code { (receipt.message_id) } "; the server answered: " code { (receipt.reply) } }
                }
            }
            form #send-form method="post" action="/send" {
                (csrf_field(csrf))
                fieldset {
                    legend { "Send with" }
                    label {
                        input type="radio" name="mode" value="account" checked[form.mode != "resolve"];
                        " this account: "
                        select name="account" {
                            @for row in rows {
                                @let id = account_id(&row.account);
                                option value=(id) selected[form.account == id] {
                                    (row.account.account_ref().to_string()) " — " (row.account.sender())
                                }
                            }
                        }
                    }
                    label {
                        input type="radio" name="mode" value="resolve" checked[form.mode == "resolve"];
                        " the account the host application would use for feature "
                        select name="feature" {
                            @for feature in features {
                                option value=(feature) selected[form.feature == *feature] { (feature) }
                            }
                        }
                        " and system user "
                        input type="text" name="system_user" value=(form.system_user) placeholder="sa" size="12";
                    }
                }
                label { "To" input type="text" name="to" value=(form.to) placeholder="someone@example.com" required; }
                label { "Subject" input type="text" name="subject" value=(form.subject); }
                label { "Body" textarea name="body" rows="4" cols="60" { (form.body) } }
                div.actions { button.primary type="submit" { "Send" } }
            }
        },
    )
}

/// "Health": each account's sign-in, its remedy as a button, and one account's checks.
pub(crate) fn health(
    page: &Page<'_>,
    rows: &[AccountRow],
    shown: &[Notice],
    report: Option<&(AccountRef, mailroom::DoctorReport)>,
) -> Markup {
    let csrf = page.csrf.unwrap_or_default();
    layout(
        page,
        html! {
            (notices(None, shown))
            table #health {
                thead {
                    tr {
                        th { "Account" } th { "Signed in as" } th { "State" } th { "Expires" }
                        th { "Last refresh" } th { "Last error" } th { }
                    }
                }
                tbody {
                    @for row in rows {
                        @let path = account_path(&row.account);
                        @let oauth = row.state != SignInState::NotApplicable;
                        @let refused = row.token.as_ref().is_some_and(|t| t.status != "valid");
                        tr data-account=(account_id(&row.account)) {
                            td { a href=(path) { (row.account.account_ref().to_string()) } }
                            td { (row.token.as_ref().map(|t| t.address.as_str()).unwrap_or("")) }
                            td.token-state { (token_state(row)) }
                            td { (row.token.as_ref().map(|t| when(&t.expires_at)).unwrap_or_default()) }
                            td { (row.token.as_ref().and_then(|t| t.refreshed_at.as_ref()).map(when).unwrap_or_else(|| "never".to_owned())) }
                            td.last-error { (row.token.as_ref().and_then(|t| t.status_reason.as_deref()).unwrap_or("")) }
                            td.row-actions {
                                @if oauth && (row.state == SignInState::NotSignedIn || refused) {
                                    a.button.primary href={ (path) "/sign-in" } { "Sign in again" }
                                }
                                @if row.state == SignInState::SignedIn && !refused {
                                    (post_button(csrf, &format!("{path}/refresh"), "Refresh now", ""))
                                }
                                (post_button(csrf, &format!("{path}/check"), "Run checks", ""))
                            }
                        }
                    }
                }
            }
            @if let Some((account, report)) = report {
                h2 { "Checks of the " (account.to_string()) }
                table #checks {
                    thead { tr { th { "Check" } th { "Result" } th { "Detail" } th { "To fix it" } } }
                    tbody {
                        @for check in &report.checks {
                            tr class=(check.status.to_string()) {
                                td { (check.name) }
                                td.status { (check.status.to_string()) }
                                td { (check.detail) }
                                td { (check.remedy.as_ref().map(ToString::to_string).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        },
    )
}
