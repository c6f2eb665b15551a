//! `company`, `account`, `settings`, `resolve` and `fax-address`.

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result, anyhow};
use mailroom_accounts::{Account, Accounts, BindingChange, Saved};
use mailroom_model::{FeatureCatalog, IgnoredSetting, Secret, ServerSettingsChange};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::Output;
use crate::UsageError;
use crate::cli::{
    AccountCommand, Command, CompanyCommand, ServerOptions, SettingName, SettingsCommand,
};
use crate::output::{AccountView, account_table};

pub(crate) async fn run<C: ConnectionTrait>(
    accounts: &Accounts<'_, C>,
    command: Command,
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
            if change.is_empty() && fax.is_none() {
                return Err(nothing_to_change("company set"));
            }
            let saved = accounts.set_company(&change, fax).await?;
            let view = AccountView::company(&saved.account);
            Ok(saved_output("company account saved", view, &saved))
        }
        Command::Account(AccountCommand::Add { server, bind, .. }) => {
            let change = server_change(&server)?;
            let saved = accounts.add_user_account(&change, bind).await?;
            let id = saved.account.id;
            let mut output = saved_output("", AccountView::user(&saved.account), &saved);
            output.text = id.to_string();
            output.json["id"] = json!(id);
            Ok(output)
        }
        Command::Account(AccountCommand::List) => {
            let list = accounts.user_accounts().await?;
            let views: Vec<AccountView> = list.iter().map(AccountView::user).collect();
            let text = if list.is_empty() {
                "no user accounts; add one with `mailroom account add --provider P --user ADDRESS --bind SystemUser:User_Name:NAME`".to_owned()
            } else {
                account_table(&list)
            };
            Ok(Output::new(text, json!(views)))
        }
        Command::Account(AccountCommand::Show { id }) => {
            let account = accounts.user_account(id).await?;
            let view = AccountView::user(&account);
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
            if change.is_empty() && binding == BindingChange::Keep {
                return Err(nothing_to_change("account edit"));
            }
            let saved = accounts.edit_user_account(id, &change, binding).await?;
            let view = AccountView::user(&saved.account);
            Ok(saved_output(&format!("account {id} saved"), view, &saved))
        }
        Command::Account(AccountCommand::Remove { id }) => {
            accounts.remove_user_account(id).await?;
            Ok(Output::new(
                format!("account {id} removed"),
                json!({ "removed": id }),
            ))
        }
        Command::Settings(SettingsCommand::Get { name }) => {
            let settings = accounts.settings().await?;
            match name {
                Some(SettingName::CanSignInWhenSending) | None => Ok(Output::new(
                    format!(
                        "can-sign-in-when-sending  {}",
                        settings.can_sign_in_when_sending
                    ),
                    json!({ "can-sign-in-when-sending": settings.can_sign_in_when_sending }),
                )),
            }
        }
        Command::Settings(SettingsCommand::Set { name, value }) => match name {
            SettingName::CanSignInWhenSending => {
                accounts.set_can_sign_in_when_sending(value).await?;
                Ok(Output::new(
                    format!("can-sign-in-when-sending set to {value}"),
                    json!({ "can-sign-in-when-sending": value }),
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
            let server = resolution.account.server();
            let sender = if server.smtp_user.is_empty() {
                "(no SMTP user yet)".to_owned()
            } else {
                server.smtp_user.clone()
            };
            Ok(Output::new(
                format!(
                    "{name} sends: {sender} via {} ({}:{})\nrule: {}",
                    server.provider, server.host, server.port, resolution.rule
                ),
                json!({
                    "feature": feature.name,
                    "account": view,
                    "rule": resolution.rule,
                    "explanation": resolution.rule.to_string(),
                }),
            ))
        }
        Command::FaxAddress { number } => {
            let company = accounts
                .company()
                .await?
                .ok_or(mailroom_accounts::Error::NoCompanyAccount)?;
            let format = company.fax_format.ok_or_else(|| {
                anyhow!("the company account has no email-to-fax format; set one with `mailroom company set --fax-format '{{0}}@fax.example.com'`")
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
        | Command::Key(_)
        | Command::Send(_)
        | Command::Doctor(_)
        | Command::Agent(_)
        | Command::Queue(_)
        | Command::Sandbox(_)
        | Command::Demo(_)
        | Command::Completions { .. }
        | Command::Man => unreachable!("these commands run their own transactions"),
    }
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
