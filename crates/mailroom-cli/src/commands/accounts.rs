//! `company`, `account`, `settings`, `resolve` and `fax-address`.

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};
use mailroom_accounts::{Account, Accounts, BindingChange, Saved, account_warnings};
use mailroom_model::AccountRef;
use mailroom_model::{FeatureCatalog, IgnoredSetting, Secret, ServerSettingsChange};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::Output;
use crate::UsageError;
use crate::cli::{
    AccountCommand, Command, CompanyCommand, ServerOptions, SettingName, SettingsCommand,
    SignInMode,
};
use crate::output::{AccountView, account_table};

pub(crate) async fn run<C: ConnectionTrait>(
    accounts: &Accounts<'_, C>,
    command: Command,
    tokens: &[mailroom::tokens::storage::TokenSummary],
) -> Result<Output> {
    match command {
        Command::Company(CompanyCommand::Show) => {
            let company = accounts
                .company()
                .await?
                .ok_or(mailroom_accounts::Error::NoCompanyAccount)?;
            let view = AccountView::company(&company);
            Ok(Output::new(view.to_text(), json!(view)))
        }
        Command::Company(CompanyCommand::Set {
            server,
            fax_format,
            no_fax_format,
        }) => {
            let change = server_change(&server)?;
            let fax = match (fax_format, no_fax_format) {
                (Some(format), _) => Some(Some(format)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let from = from_change(&server);
            if change.is_empty() && fax.is_none() && from.is_none() {
                return Err(nothing_to_change("company set"));
            }
            let mut saved = accounts.set_company(&change, fax).await?;
            if let Some(from) = from {
                accounts
                    .set_from_address(AccountRef::Company, from.as_deref())
                    .await?;
                saved.account.from_address = from.map(|text| text.trim().to_owned());
            }
            let warnings =
                account_warnings(&saved.account.server, saved.account.from_address.as_deref());
            saved.notices.extend(warnings);
            let view = AccountView::company(&saved.account);
            Ok(saved_output("company account saved", view, &saved))
        }
        Command::Account(AccountCommand::Add {
            server,
            bind,
            sign_in,
            sign_in_mode,
        }) => {
            check_add(&server, sign_in, &sign_in_mode)?;
            let change = server_change(&server)?;
            let mut saved = accounts.add_user_account(&change, bind).await?;
            if let Some(from) = from_change(&server).flatten() {
                let stored = accounts
                    .set_from_address(AccountRef::User(saved.account.id), Some(&from))
                    .await?;
                saved.account.from_address = stored.from_address().map(str::to_owned);
            }
            let warnings =
                account_warnings(&saved.account.server, saved.account.from_address.as_deref());
            saved.notices.extend(warnings);
            let id = saved.account.id;
            let mut output = saved_output("", AccountView::user(&saved.account), &saved);
            output.text = id.to_string();
            output.json["id"] = json!(id);
            Ok(output)
        }
        Command::Account(AccountCommand::List) => {
            let list = accounts.user_accounts().await?;
            let views: Vec<AccountView> = list
                .iter()
                .map(|user| {
                    AccountView::user(user).with_sign_in(&Account::User(user.clone()), tokens)
                })
                .collect();
            let text = if list.is_empty() {
                "no user accounts; add one with `mailroom account add --provider P --user ADDRESS --bind SystemUser:User_Name:NAME`".to_owned()
            } else {
                account_table(&list, tokens)
            };
            Ok(Output::new(text, json!(views)))
        }
        Command::Account(AccountCommand::Show { id }) => {
            let account = accounts.user_account(id).await?;
            let view =
                AccountView::user(&account).with_sign_in(&Account::User(account.clone()), tokens);
            Ok(Output::new(view.to_text(), json!(view)))
        }
        Command::Account(AccountCommand::Edit {
            id,
            server,
            bind,
            unbind,
        }) => {
            let change = server_change(&server)?;
            let binding = match (bind, unbind) {
                (Some(binding), _) => BindingChange::Set(binding),
                (None, true) => BindingChange::Clear,
                (None, false) => BindingChange::Keep,
            };
            let from = from_change(&server);
            if change.is_empty() && binding == BindingChange::Keep && from.is_none() {
                return Err(nothing_to_change("account edit"));
            }
            let mut saved = accounts.edit_user_account(id, &change, binding).await?;
            if let Some(from) = from {
                let stored = accounts
                    .set_from_address(AccountRef::User(id), from.as_deref())
                    .await?;
                saved.account.from_address = stored.from_address().map(str::to_owned);
            }
            let view = AccountView::user(&saved.account);
            Ok(saved_output(&format!("account {id} saved"), view, &saved))
        }
        Command::Settings(SettingsCommand::Get { name }) => {
            let settings = accounts.settings().await?;
            let sign_in = (
                format!(
                    "can-sign-in-when-sending  {}",
                    settings.can_sign_in_when_sending
                ),
                (
                    "can_sign_in_when_sending",
                    json!(settings.can_sign_in_when_sending),
                ),
            );
            let retention = (
                format!(
                    "outbox-retention-days     {}",
                    settings.outbox_retention_days
                ),
                (
                    "outbox_retention_days",
                    json!(settings.outbox_retention_days),
                ),
            );
            let shown = match name {
                Some(SettingName::CanSignInWhenSending) => vec![sign_in],
                Some(SettingName::OutboxRetentionDays) => vec![retention],
                None => vec![sign_in, retention],
            };
            let text = shown
                .iter()
                .map(|(line, _)| line.clone())
                .collect::<Vec<_>>()
                .join("\n");
            let json: serde_json::Map<String, serde_json::Value> = shown
                .into_iter()
                .map(|(_, (key, value))| (key.to_owned(), value))
                .collect();
            Ok(Output::new(text, serde_json::Value::Object(json)))
        }
        Command::Settings(SettingsCommand::Set { name, value }) => match name {
            SettingName::CanSignInWhenSending => {
                let value: bool = value.trim().parse().map_err(|_| {
                    UsageError(format!(
                        "invalid value `{value}` for can-sign-in-when-sending: give true or false"
                    ))
                })?;
                accounts.set_can_sign_in_when_sending(value).await?;
                Ok(Output::new(
                    format!("can-sign-in-when-sending set to {value}"),
                    json!({ "can_sign_in_when_sending": value }),
                ))
            }
            SettingName::OutboxRetentionDays => {
                let days: u32 = value.trim().parse().map_err(|_| {
                    UsageError(format!(
                        "`{value}` is not a number of days; give e.g. 30, or 0 to keep messages forever"
                    ))
                })?;
                accounts.set_outbox_retention_days(days).await?;
                Ok(Output::new(
                    format!("outbox-retention-days set to {days}"),
                    json!({ "outbox_retention_days": days }),
                ))
            }
        },
        Command::Resolve(args) => {
            let catalog = FeatureCatalog::with_defaults();
            let feature = catalog.get(&args.feature)?;
            let resolution = match &args.bind {
                Some(binding) => accounts.resolve_binding(feature, Some(binding)).await?,
                None => accounts.resolve(feature, args.user.as_deref()).await?,
            };
            let (name, view) = match &resolution.account {
                Account::Company(company) => (
                    "the company account".to_owned(),
                    AccountView::company(company),
                ),
                Account::User(user) => (format!("account {}", user.id), AccountView::user(user)),
            };
            let view = view.with_sign_in(&resolution.account, tokens);
            let signed_in = mailroom::sign_in_state(&resolution.account, tokens);
            let server = resolution.account.server();
            let sender = if resolution.account.sender().is_empty() {
                "(no SMTP user yet)".to_owned()
            } else {
                resolution.account.sender().to_owned()
            };
            let via = match mailroom::transport_kind(server) {
                mailroom_model::TransportKind::GraphApi => {
                    format!("{} (route graph: Microsoft Graph)", server.provider)
                }
                _ => format!("{} ({}:{})", server.provider, server.host, server.port),
            };
            let auth = if server.provider.uses_oauth() {
                format!("\nauth: {}", crate::output::auth_text(server.auth.as_str()))
            } else {
                String::new()
            };
            Ok(Output::new(
                format!(
                    "{name} sends: {sender} via {via}\nrule: {}{auth}\nsigned in: {}",
                    resolution.rule,
                    signed_in.as_str()
                ),
                json!({
                    "feature": feature.name,
                    "account": view,
                    "auth": server.auth,
                    "rule": resolution.rule,
                    "transport": mailroom::transport_kind(server).to_string(),
                    "signed_in": signed_in,
                    "reason": resolution.rule.to_string(),
                }),
            ))
        }
        Command::FaxAddress { number } => {
            let company = accounts
                .company()
                .await?
                .ok_or(mailroom_accounts::Error::NoCompanyAccount)?;
            let format = company.fax_format.ok_or_else(|| {
                mailroom_model::ValidationError::new(
                    "fax",
                    "the company account has no email-to-fax format string",
                    "set the company account's fax format string, e.g. {0}@fax.example.com",
                )
                .with_remedy(mailroom_model::Remedy::SetFaxFormat)
            })?;
            let address = format.address_for(&number)?;
            Ok(Output::new(
                address.to_string(),
                json!({ "fax_number": number, "address": address.to_string(), "format": format.as_str() }),
            ))
        }
        Command::Info
        | Command::App(_)
        | Command::SignIn(_)
        | Command::SignOut { .. }
        | Command::Token(_)
        | Command::Account(AccountCommand::Remove { .. })
        | Command::Key(_)
        | Command::Send(_)
        | Command::Doctor(_)
        | Command::Agent(_)
        | Command::Console(_)
        | Command::Queue(_)
        | Command::Sandbox(_)
        | Command::Demo(_)
        | Command::Completions { .. }
        | Command::Man => unreachable!("these commands run their own transactions"),
    }
}

/// `--from` / `--no-from`: `None` keeps the From address, `Some(None)` clears it.
fn from_change(server: &ServerOptions) -> Option<Option<String>> {
    match (&server.from, server.no_from) {
        (Some(from), _) => Some(Some(from.clone())),
        (None, true) => Some(None),
        (None, false) => None,
    }
}

/// What `account add` refuses before touching anything: a missing provider, and sign-in
/// options without `--sign-in`.
pub(crate) fn check_add(server: &ServerOptions, sign_in: bool, mode: &SignInMode) -> Result<()> {
    if server.provider.is_none() {
        return Err(UsageError(
            "--provider is required: give --provider microsoft, google or none, e.g. `mailroom account add --provider microsoft --sign-in`".to_owned(),
        )
        .into());
    }
    if sign_in && server.auth == Some(mailroom_model::Auth::AppOnly) {
        return Err(UsageError(
            "--sign-in is not taken with --auth app-only: the account uses the app's own credentials and never needs a sign-in; leave --sign-in out".to_owned(),
        )
        .into());
    }
    if sign_in && (server.from.is_some() || server.no_from) {
        return Err(UsageError(
            "--from is not taken with --sign-in (the sign-in names the mailbox); set it afterwards with `mailroom account edit ID --from ADDRESS`".to_owned(),
        )
        .into());
    }
    if !sign_in && (mode.device_code || mode.no_browser) {
        let flag = if mode.device_code {
            "--device-code"
        } else {
            "--no-browser"
        };
        return Err(UsageError(format!(
            "{flag} only applies to a sign-in: add --sign-in, or leave {flag} out"
        ))
        .into());
    }
    Ok(())
}

/// Removes a user account through the facade: refused while queued or held messages use
/// it, unless `force` re-resolves them first; one transaction.
pub(crate) async fn remove(
    context: &crate::context::Context,
    id: i64,
    force: bool,
) -> Result<Output> {
    let mailroom = super::send::open_mailroom(context).await?;
    let removed = mailroom.remove_account(id, force).await?;
    let moved: Vec<String> = removed
        .re_resolved
        .iter()
        .map(|m| format!("message {} now sends with the {}", m.id, m.account))
        .collect();
    let mut text = format!("account {id} removed");
    for line in &moved {
        text.push('\n');
        text.push_str(line);
    }
    Ok(Output::new(
        text,
        json!({ "id": id, "removed": 1, "re_resolved": removed.re_resolved }),
    ))
}

fn nothing_to_change(command: &str) -> anyhow::Error {
    UsageError(format!(
        "nothing to change; give at least one option (see `mailroom {command} --help`)"
    ))
    .into()
}

fn saved_output<T>(text: &str, view: AccountView, saved: &Saved<T>) -> Output {
    let mut output = Output::new(text, json!(view));
    output.notes = notes(&saved.ignored, &saved.notices);
    output.json["ignored_now"] = json!(
        saved
            .ignored
            .iter()
            .map(|i| json!({ "setting": i.setting, "reason": i.reason }))
            .collect::<Vec<_>>()
    );
    output.json["notices"] = json!(saved.notices);
    output
}

fn notes(ignored: &[IgnoredSetting], notices: &[String]) -> Vec<String> {
    ignored
        .iter()
        .map(|i| format!("{} was saved but is ignored: {}", i.setting, i.reason))
        .chain(notices.iter().cloned())
        .collect()
}

/// The settings change the options describe; reads the password from stdin if asked.
pub(crate) fn server_change(options: &ServerOptions) -> Result<ServerSettingsChange> {
    let password = if options.password_stdin {
        Some(read_password()?)
    } else {
        None
    };
    Ok(ServerSettingsChange {
        provider: options.provider,
        host: options.host.clone(),
        port: options.port,
        tls: match (options.tls, options.no_tls) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        },
        tls_startup: options.tls_startup,
        timeout_ms: options.timeout_ms,
        smtp_user: options.user.clone(),
        password,
        allow_plaintext_loopback: options.allow_plaintext_loopback,
        allow_plaintext_password: options.allow_plaintext_password,
        shared_mailbox: options.shared_mailbox,
        route: options.route,
        large_attachments: options.large_attachments,
        auth: options.auth,
        rate_per_minute: options.rate.map(|rate| rate.0),
        daily_limit: options.daily.map(|daily| daily.0),
    })
}

/// Reads the password: without echo from a terminal, else all of stdin minus one line end.
fn read_password() -> Result<Secret> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("SMTP password: ")
            .context("cannot read the password from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned()
    };
    if password.is_empty() {
        return Err(UsageError(
            "--password-stdin read an empty password; pipe it in, e.g. `printf '%s' \"$PASSWORD\" | mailroom ...`".to_owned(),
        )
        .into());
    }
    Ok(Secret::new(password))
}
