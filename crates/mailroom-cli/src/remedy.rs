//! The CLI's rendering of library errors: the message with its causes (each said once),
//! and the structured [`Remedy`] as the command that fixes it. The libraries name no
//! program; this is the one place that turns their remedies into `mailroom` commands.

use std::error::Error as StdError;

use mailroom_model::{AccountRef, Remedy, TransportError, ValidationError};
use serde_json::{Value, json};

/// `--company` or `--account ID`.
fn selector(account: Option<&AccountRef>) -> String {
    match account {
        Some(AccountRef::Company) => "--company".to_owned(),
        Some(AccountRef::User(id)) => format!("--account {id}"),
        None => "--account ID".to_owned(),
    }
}

/// The command (or, for actions outside mailroom, the administrator's command) that
/// carries out `remedy`.
pub(crate) fn command(remedy: &Remedy) -> String {
    match remedy {
        Remedy::SignIn {
            account,
            browser_only,
        } => {
            let mut command = format!("mailroom sign-in {}", selector(account.as_ref()));
            if *browser_only {
                command.push_str(" (without --device-code; add --no-browser to print the address to open elsewhere)");
            }
            command
        }
        Remedy::RegisterApp { provider } => match provider {
            mailroom_model::Provider::Microsoft => {
                "mailroom app set microsoft --client-id ID --tenant TENANT-ID".to_owned()
            }
            _ => format!("mailroom app set {provider} --client-id ID"),
        },
        Remedy::RegisterRedirectUri {
            provider: mailroom_model::Provider::Microsoft,
            redirect_uri,
        } => format!(
            "add the redirect URI {redirect_uri} in the Entra admin center (App registrations -> the app -> Authentication -> Add a platform -> Mobile and desktop applications -> custom redirect URI); if the app has another loopback URI registered: mailroom app set microsoft --redirect-uri THAT-URI"
        ),
        Remedy::RegisterRedirectUri {
            provider,
            redirect_uri,
        } => format!(
            "use an OAuth client of type Desktop app (Google Auth Platform -> Clients; it accepts {redirect_uri} on any port), or register {redirect_uri} with the client; for another URI: mailroom app set {provider} --redirect-uri URI"
        ),
        Remedy::SetMicrosoftTenant => "mailroom app set microsoft --tenant TENANT-ID (the Directory (tenant) ID on the app registration's Overview page, or a verified domain)".to_owned(),
        Remedy::ReviewApp { .. } => "mailroom app show".to_owned(),
        Remedy::SetGmailApiUrl => "mailroom app set google --gmail-api-url URL".to_owned(),
        Remedy::ConfigureCompany => {
            "mailroom company set --provider microsoft|google|none --user ADDRESS".to_owned()
        }
        Remedy::AddBoundAccount { binding } => {
            format!("mailroom account add --provider P --user ADDRESS --bind {binding}")
        }
        Remedy::Unbind { account } => format!("mailroom account edit {account} --unbind"),
        Remedy::EditAccount { account } => match account {
            Some(AccountRef::Company) => "mailroom company set [OPTIONS]".to_owned(),
            Some(AccountRef::User(id)) => format!("mailroom account edit {id} [OPTIONS]"),
            None => {
                "mailroom account edit ID [OPTIONS] (or mailroom company set [OPTIONS])".to_owned()
            }
        },
        Remedy::ListAccounts => "mailroom account list".to_owned(),
        Remedy::SwitchToOAuth { account } => {
            let change = match account {
                Some(AccountRef::Company) => "mailroom company set --provider microsoft".to_owned(),
                Some(AccountRef::User(id)) => {
                    format!("mailroom account edit {id} --provider microsoft")
                }
                None => "mailroom account edit ID --provider microsoft".to_owned(),
            };
            format!(
                "{change}, then mailroom sign-in {}",
                selector(account.as_ref())
            )
        }
        Remedy::EnableSmtpAuth { mailbox } => format!(
            "Set-CASMailbox -Identity {} -SmtpClientAuthenticationDisabled $false (Exchange Online PowerShell)",
            mailbox.as_deref().unwrap_or("<mailbox>")
        ),
        Remedy::EnableSmtpAuthOrUseGraph { account, mailbox } => {
            let change = match account {
                Some(AccountRef::Company) => "mailroom company set --provider microsoft --route graph".to_owned(),
                Some(AccountRef::User(id)) => {
                    format!("mailroom account edit {id} --provider microsoft --route graph")
                }
                None => "mailroom account edit ID --provider microsoft --route graph".to_owned(),
            };
            format!(
                "Set-CASMailbox -Identity {} -SmtpClientAuthenticationDisabled $false (Exchange Online PowerShell); or send through Microsoft Graph: {change}, then mailroom sign-in {}",
                mailbox.as_deref().unwrap_or("<mailbox>"),
                selector(account.as_ref())
            )
        }
        Remedy::GrantScope { account, scope } => format!(
            "mailroom sign-in {} (and grant {scope})",
            selector(account.as_ref())
        ),
        Remedy::SetAppCredential { provider } => match provider {
            mailroom_model::Provider::Google => {
                "mailroom app set google --service-account KEYFILE.json".to_owned()
            }
            _ => "mailroom app set microsoft --app-only --client-secret-stdin (or --certificate FILE: the certificate uploaded to the app registration and its private key, in PEM)".to_owned(),
        },
        Remedy::ConfigureDomainWideDelegation { client } => format!(
            "in the Google Admin console (Security > Access and data control > API controls > Domain-wide delegation), add the client id of {} with the scope https://www.googleapis.com/auth/gmail.send",
            client.as_deref().unwrap_or("the service account")
        ),
        Remedy::GrantAppMailboxAccess {
            client_id,
            mailbox,
            route: mailroom_model::Route::Graph,
        } => format!(
            "Exchange Online PowerShell: New-ServicePrincipal -AppId {app} -ObjectId <enterprise app object id>; New-ManagementScope -Name mailroom-senders -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{mailbox}'\"; New-ManagementRoleAssignment -App {app} -Role \"Application Mail.Send\" -CustomResourceScope mailroom-senders",
            app = client_id.as_deref().unwrap_or("<client id>"),
            mailbox = mailbox.as_deref().unwrap_or("<mailbox>")
        ),
        Remedy::GrantAppMailboxAccess {
            client_id,
            mailbox,
            route: _,
        } => format!(
            "Exchange Online PowerShell: New-ServicePrincipal -AppId {} -ObjectId <enterprise app object id>; Add-MailboxPermission -Identity {} -User <service principal id> -AccessRights FullAccess (and admin consent for SMTP.SendAsApp)",
            client_id.as_deref().unwrap_or("<client id>"),
            mailbox.as_deref().unwrap_or("<mailbox>")
        ),
        Remedy::SetFaxFormat => {
            "mailroom company set --fax-format '{0}@fax.example.com'".to_owned()
        }
        Remedy::ShowFaxFormat => "mailroom company show".to_owned(),
        Remedy::CheckDatabase => "mailroom info".to_owned(),
        Remedy::CheckRootCertificate => format!(
            "point {} at a readable PEM file of trusted root certificates, or unset it",
            crate::commands::send::CA_FILE_VARIABLE
        ),
        Remedy::RestoreKey { key_id } => format!(
            "copy the key with fingerprint {key_id} from a host that has it into this host's key file (one key per line, beside the keys there) or MAILROOM_KEY; if it is lost everywhere: mailroom key reset --forget-secrets"
        ),
        Remedy::PrepareKeyRotation => "mailroom key rotate --prepare".to_owned(),
        Remedy::ListQueue => "mailroom queue list".to_owned(),
        Remedy::ShowQueued { id } => format!("mailroom queue show {id}"),
        Remedy::CancelQueued { id } => format!("mailroom queue cancel {id}"),
        Remedy::RemoveAccountForce { account, messages } => format!(
            "mailroom account remove {account} --force (re-resolves them), or {}",
            messages
                .iter()
                .map(|id| format!("mailroom queue cancel {id}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // A remedy added to the libraries after this CLI: its prose still helps.
        other => other.to_string(),
    }
}

/// The first remedy any error in the chain carries.
pub(crate) fn find(error: &anyhow::Error) -> Option<Remedy> {
    error.chain().find_map(remedy_of)
}

fn remedy_of(cause: &(dyn StdError + 'static)) -> Option<Remedy> {
    if let Some(error) = cause.downcast_ref::<mailroom::Error>() {
        return error.remedy();
    }
    if let Some(error) = cause.downcast_ref::<mailroom_accounts::Error>() {
        return error.remedy();
    }
    if let Some(error) = cause.downcast_ref::<mailroom_tokens::Error>() {
        return error.remedy();
    }
    if let Some(error) = cause.downcast_ref::<TransportError>() {
        return error.remedy().cloned();
    }
    if let Some(error) = cause.downcast_ref::<ValidationError>() {
        return error.remedy().cloned();
    }
    if let Some(missing) = cause.downcast_ref::<crate::context::KeyFileMissing>() {
        return Some(Remedy::RestoreKey {
            key_id: missing.key_id.clone(),
        });
    }
    None
}

/// The message and its causes, each said once: a cause whose text the message already
/// contains (a library that prints its cause and also chains it) is left out.
pub(crate) fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    escape_control(&text)
}

/// Server and provider text reaches the terminal with its control characters escaped
/// (ESC, BEL and the other C0 characters but tab), so a hostile server cannot drive the
/// terminal.
pub(crate) fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// What kind of failure, for `--json`: a stable snake_case word.
fn kind(error: &anyhow::Error) -> &'static str {
    for cause in error.chain() {
        if cause.is::<crate::UsageError>() || cause.is::<ValidationError>() {
            return "invalid_input";
        }
        if let Some(error) = cause.downcast_ref::<mailroom::Error>() {
            if error.needs_sign_in() {
                return "sign_in_required";
            }
            if let mailroom::Error::Transport { .. } = error {
                return "transport";
            }
            if let mailroom::Error::Invalid(_) = error {
                return "invalid_input";
            }
            if error.key_problem().is_some() {
                return "key";
            }
        }
        if let Some(error) = cause.downcast_ref::<mailroom_tokens::Error>() {
            if error.needs_sign_in() {
                return "sign_in_required";
            }
            return "token";
        }
        if let Some(error) = cause.downcast_ref::<mailroom_accounts::Error>() {
            return match error {
                mailroom_accounts::Error::Invalid(_) => "invalid_input",
                mailroom_accounts::Error::AccountNotFound { .. } => "not_found",
                mailroom_accounts::Error::Database(_) => "database",
                mailroom_accounts::Error::Key(_) => "key",
                _ => "account",
            };
        }
        if cause.is::<mailroom_crypto::Error>() || cause.is::<crate::context::KeyFileMissing>() {
            return "key";
        }
        if cause.is::<sea_orm::DbErr>() {
            return "database";
        }
    }
    "failed"
}

/// The text an error prints on stderr: `error: ...`, then `  to fix: ...` when the error
/// carries a remedy.
pub(crate) fn render_text(error: &anyhow::Error) -> String {
    let mut text = format!("error: {}", message(error));
    if let Some(remedy) = find(error) {
        text.push_str(&format!("\n  to fix: {}", command(&remedy)));
    }
    text
}

/// The JSON an error prints on stderr under `--json`:
/// `{"error": {"kind", "message", "remedy"}}`, the remedy as data with the command added.
pub(crate) fn render_json(error: &anyhow::Error) -> Value {
    let remedy = find(error).map(|remedy| {
        let mut value = serde_json::to_value(&remedy).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("command".to_owned(), Value::String(command(&remedy)));
            fields.insert("description".to_owned(), Value::String(remedy.to_string()));
        }
        value
    });
    json!({"error": {"kind": kind(error), "message": message(error), "remedy": remedy}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_remedy_becomes_a_mailroom_command() {
        let cases = [
            (
                Remedy::SignIn {
                    account: Some(AccountRef::User(4)),
                    browser_only: false,
                },
                "mailroom sign-in --account 4",
            ),
            (
                Remedy::SignIn {
                    account: Some(AccountRef::Company),
                    browser_only: false,
                },
                "mailroom sign-in --company",
            ),
            (
                Remedy::Unbind { account: 7 },
                "mailroom account edit 7 --unbind",
            ),
            (Remedy::CancelQueued { id: 12 }, "mailroom queue cancel 12"),
            (Remedy::ShowQueued { id: 12 }, "mailroom queue show 12"),
            (Remedy::CheckDatabase, "mailroom info"),
            (
                Remedy::SwitchToOAuth {
                    account: Some(AccountRef::User(3)),
                },
                "mailroom account edit 3 --provider microsoft, then mailroom sign-in --account 3",
            ),
        ];
        for (remedy, expected) in cases {
            assert_eq!(command(&remedy), expected);
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let error = anyhow::Error::new(std::io::Error::other("database \"x\" does not exist"))
            .context("cannot open: database \"x\" does not exist")
            .context("cannot open the database");
        assert_eq!(
            message(&error),
            "cannot open the database: cannot open: database \"x\" does not exist"
        );
    }

    #[test]
    fn control_characters_are_escaped_but_tab_is_kept() {
        assert_eq!(
            escape_control("550 \u{1b}[31mred\u{7}\tok"),
            "550 \\u{1b}[31mred\\u{7}\tok"
        );
    }
}
