//! `app`, `sign-in`, `sign-out`, `token`, `key rotate` and `account add --sign-in`.

use std::io::Read;

use anyhow::{Context as _, Result};
use chrono::Utc;
use mailroom_accounts::Accounts;
use mailroom_model::{Binding, Provider, Secret};
use std::sync::Arc;

use mailroom_tokens::app_only::{AppCertificate, ServiceAccountKey};
use mailroom_tokens::registration::{
    AppChange, AppCredential, AppRegistration, Apps, EndpointOverrides, MicrosoftCloud,
    check_client_secret_allowed, parse_endpoint_url, parse_redirect_uri,
};
use serde_json::json;

use super::Output;
use crate::UsageError;
use crate::cli::{AccountSelector, AppSetArgs, ServerOptions, SignInMode};
use crate::commands::send::open_mailroom;
use crate::context::Context;
use crate::output::AccountView;
use crate::signin::{TerminalPrompt, broker, interactive, sign_in_account, token_target};
use mailroom::Revocation;

fn read_secret_from_stdin(what: &str) -> Result<Secret> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(UsageError(format!(
            "the {what} read from standard input is empty; pipe it in"
        ))
        .into());
    }
    Ok(Secret::new(secret))
}

/// The largest certificate or key file read: real ones are a few kilobytes.
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// Reads a credential file (a PEM certificate and key, a service account's JSON key),
/// bounded, saying which file failed and why.
fn read_credential_file(path: &std::path::Path, what: &str) -> Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the {what} {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_CREDENTIAL_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} {} as text", path.display()))?;
    if text.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(UsageError(format!(
            "the {what} {} is larger than {} KiB; give the file with just the certificate and its key",
            path.display(),
            MAX_CREDENTIAL_FILE / 1024
        ))
        .into());
    }
    Ok(text)
}

/// The app-only credential `app set` was given: `Some(None)` removes it.
fn app_credential_change(
    provider: Provider,
    args: &AppSetArgs,
) -> Result<Option<Option<AppCredential>>> {
    if args.no_app_only {
        return Ok(Some(None));
    }
    if let Some(path) = &args.service_account {
        if provider != Provider::Google {
            return Err(UsageError(
                "--service-account is Google's app-only credential; for Microsoft give --app-only with --client-secret-stdin or --certificate FILE".to_owned(),
            )
            .into());
        }
        let key =
            ServiceAccountKey::from_json(&read_credential_file(path, "service account key file")?)?;
        return Ok(Some(Some(AppCredential::ServiceAccount(Arc::new(key)))));
    }
    if !args.app_only {
        return Ok(None);
    }
    if provider != Provider::Microsoft {
        return Err(UsageError(
            "Google's app-only credential is a service account key: give --service-account KEYFILE.json".to_owned(),
        )
        .into());
    }
    if let Some(path) = &args.certificate {
        let certificate =
            AppCertificate::from_pem(&read_credential_file(path, "certificate file")?)?;
        return Ok(Some(Some(AppCredential::Certificate(Arc::new(
            certificate,
        )))));
    }
    if args.client_secret_stdin {
        return Ok(Some(Some(AppCredential::ClientSecret(
            read_secret_from_stdin("app-only client secret")?,
        ))));
    }
    Err(UsageError(
        "--app-only needs its credential: --client-secret-stdin (the secret's value) or --certificate FILE (the certificate and its private key in PEM)".to_owned(),
    )
    .into())
}

pub(crate) async fn app_set(context: &Context, args: AppSetArgs) -> Result<Output> {
    let provider = args.provider.provider();
    let url = |field: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| parse_endpoint_url(field, text))
            .transpose()
    };
    if args.client_secret_stdin && !args.app_only {
        // Refused before standard input is read.
        check_client_secret_allowed(provider)?;
    }
    let app_credential = app_credential_change(provider, &args)?;
    let change = AppChange {
        client_id: args.client_id.clone(),
        client_secret: if args.client_secret_stdin && !args.app_only {
            Some(Some(read_secret_from_stdin("client secret")?))
        } else if args.no_client_secret {
            Some(None)
        } else {
            None
        },
        tenant: args.tenant.clone(),
        cloud: args
            .cloud
            .as_deref()
            .map(str::parse::<MicrosoftCloud>)
            .transpose()?,
        overrides: EndpointOverrides {
            authorize_url: url("authorize url", &args.authorize_url)?,
            token_url: url("token url", &args.token_url)?,
            device_url: url("device url", &args.device_url)?,
            revoke_url: url("revoke url", &args.revoke_url)?,
            issuer: args.issuer.clone(),
            gmail_api_url: url("gmail api url", &args.gmail_api_url)?,
            graph_api_url: url("graph api url", &args.graph_api_url)?,
            redirect_uri: args
                .redirect_uri
                .as_deref()
                .map(|text| parse_redirect_uri(provider, text))
                .transpose()?,
        },
        reset_endpoints: args.default_endpoints,
        reset_redirect_uri: args.default_redirect_uri,
        app_credential,
    };
    let transaction = mailroom_migrations::begin_write(&context.db).await?;
    Accounts::new(&transaction, &context.key)
        .verify_key()
        .await?;
    let app = Apps::new(&transaction, &context.key)
        .set(provider, change)
        .await?;
    transaction.commit().await?;
    Ok(Output::new(
        format!("{provider} app saved\n{}", app_text(&app)),
        app_json(&app),
    ))
}

fn app_json(app: &AppRegistration) -> serde_json::Value {
    let endpoints = app.endpoints();
    json!({
        "provider": app.provider,
        "client_id": app.client_id,
        "client_secret_set": app.client_secret.is_some(),
        "client_secret_sent": app.client_secret_to_send().is_some(),
        "redirect_uri": app.redirect_uri_to_register(),
        "redirect_uri_default": app.overrides.redirect_uri.is_none(),
        "tenant": (app.provider == Provider::Microsoft).then(|| app.tenant().to_owned()),
        "scopes": app.scopes(),
        "authorize_url": endpoints.authorize.as_str(),
        "token_url": endpoints.token.as_str(),
        "device_url": endpoints.device.as_ref().map(|u| u.as_str()),
        "revoke_url": endpoints.revoke.as_ref().map(|u| u.as_str()),
        "issuer": app.expected_issuers(None),
        "gmail_api_url": (app.provider == Provider::Google).then(|| app.gmail_api_url().to_string()),
        "cloud": (app.provider == Provider::Microsoft).then_some(app.cloud),
        "graph_api_url": (app.provider == Provider::Microsoft).then(|| app.graph_api_url().to_string()),
        "app_only": app.app_credential.as_ref().map(|credential| json!({
            "kind": credential.kind(),
            "description": credential.describe(),
            "expires_at": credential.expires_at(),
        })),
    })
}

fn app_text(app: &AppRegistration) -> String {
    let endpoints = app.endpoints();
    let mut lines = vec![
        format!("  client id      {}", app.client_id),
        format!(
            "  client secret  {}",
            match (&app.client_secret, app.client_secret_to_send()) {
                (Some(_), Some(_)) => "(set)",
                (Some(_), None) => {
                    "(stored, ignored: a Microsoft delegated sign-in is a public client; remove it with --no-client-secret)"
                }
                (None, _) => "(none: public client)",
            }
        ),
        format!(
            "  redirect uri   {}{} (register it with the app; the sign-in adds its own port)",
            app.redirect_uri_to_register(),
            if app.overrides.redirect_uri.is_none() {
                " (default)"
            } else {
                ""
            }
        ),
    ];
    if app.provider == Provider::Microsoft {
        lines.push(format!("  tenant         {}", app.tenant()));
        lines.push(format!("  cloud          {}", app.cloud));
    }
    lines.push(format!("  scopes         {}", app.scopes().join(" ")));
    lines.push(format!("  authorize      {}", endpoints.authorize));
    lines.push(format!("  token          {}", endpoints.token));
    if let Some(device) = &endpoints.device {
        lines.push(format!("  device         {device}"));
    }
    lines.push(format!(
        "  revoke         {}",
        endpoints
            .revoke
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "(none: the provider offers no revocation)".to_owned())
    ));
    lines.push(format!(
        "  issuer         {}",
        app.expected_issuers(None).join(" or ")
    ));
    if app.provider == Provider::Google {
        lines.push(format!("  gmail api      {}", app.gmail_api_url()));
    }
    if app.provider == Provider::Microsoft {
        lines.push(format!("  graph api      {}", app.graph_api_url()));
    }
    lines.push(format!(
        "  app-only       {}",
        app.app_credential
            .as_ref()
            .map(|credential| credential.describe())
            .unwrap_or_else(|| "(none: delegated sign-ins only)".to_owned())
    ));
    lines.join("\n")
}

pub(crate) async fn app_show(context: &Context) -> Result<Output> {
    let apps = Apps::new(&context.db, &context.key).list().await?;
    if apps.is_empty() {
        return Ok(Output::new(
            "no OAuth apps registered; register one with `mailroom app set microsoft --client-id ID --tenant TENANT-ID` or `mailroom app set google --client-id ID --client-secret-stdin`",
            json!([]),
        ));
    }
    let text = apps
        .iter()
        .map(|app| format!("{}\n{}", app.provider, app_text(app)))
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok(Output::new(
        text,
        json!(apps.iter().map(app_json).collect::<Vec<_>>()),
    ))
}

pub(crate) async fn sign_in(
    context: &Context,
    selector: &AccountSelector,
    mode: &SignInMode,
) -> Result<Output> {
    let account = selector.account_ref();
    let mailroom = open_mailroom(context).await?;
    let address = match sign_in_account(&mailroom, account, mode).await {
        Ok(address) => address,
        Err(error) => return not_needed(error),
    };
    let (_, app) = mailroom.oauth_account(account).await?;
    Ok(Output::new(
        format!(
            "signed in as {address}; the token is stored in the database for every user and the agent"
        ),
        json!({ "account": account, "address": address, "provider": app.provider }),
    ))
}

/// An app-only account has no sign-in to start or remove: that is said, and is not a
/// failure (exit 0); any other error stays one.
fn not_needed(error: anyhow::Error) -> Result<Output> {
    match error.downcast_ref::<mailroom::Error>() {
        Some(mailroom::Error::SignInNotNeeded { account, provider }) => {
            let reason = error.to_string();
            Ok(Output::new(
                reason.clone(),
                json!({
                    "account": account,
                    "provider": provider,
                    "status": "not_needed",
                    "reason": reason,
                }),
            ))
        }
        _ => Err(error),
    }
}

pub(crate) async fn add_with_sign_in(
    context: &Context,
    server: &ServerOptions,
    change: mailroom_model::ServerSettingsChange,
    bind: Option<Binding>,
    mode: &SignInMode,
) -> Result<Output> {
    let provider = server.provider.ok_or_else(|| {
        UsageError("--sign-in needs --provider microsoft or --provider google".to_owned())
    })?;
    if !provider.uses_oauth() {
        return Err(UsageError("--sign-in works with --provider microsoft or google; password accounts take --password-stdin".to_owned()).into());
    }
    // Validate the rest before anyone signs in.
    change.apply(None)?;
    let mailroom = open_mailroom(context).await?;
    let (facade_mode, timeout) = crate::signin::facade_mode(mode);
    let session = mailroom
        .begin_sign_in_for_new_account(&change, facade_mode, timeout)
        .await?;
    crate::signin::show_step(&session, mode);
    let signed_in = session.wait().await?;
    let account = mailroom
        .add_account_with_sign_in(&change, bind, &signed_in)
        .await?;
    let id = account.id;
    let mut json = json!(AccountView::user(&account));
    json["id"] = json!(id);
    let mut output = Output::new(id.to_string(), json);
    output.notes.push(format!(
        "signed in as {}; account {id} created with the {provider} preset",
        signed_in.identity.address
    ));
    Ok(output)
}

pub(crate) async fn sign_out(context: &Context, selector: &AccountSelector) -> Result<Output> {
    let mailroom = open_mailroom(context).await?;
    let outcome = match mailroom.sign_out(selector.account_ref()).await {
        Ok(outcome) => outcome,
        Err(error) => return not_needed(error.into()),
    };
    let address = &outcome.address;
    if !outcome.still_used_by.is_empty() {
        let others: Vec<String> = outcome
            .still_used_by
            .iter()
            .map(ToString::to_string)
            .collect();
        return Ok(Output::new(
            format!(
                "signed out {address}: it no longer sends with the stored sign-in, which is kept (not revoked) because the {} still send with it; sign out of those too to end it",
                others.join(", ")
            ),
            json!({ "address": address, "removed": 0, "still_used_by": others }),
        ));
    }
    if !outcome.deleted {
        return Ok(Output::new(
            format!("no token is stored for {address}; nothing to sign out"),
            json!({ "address": address, "removed": 0 }),
        ));
    }
    // Local deletion has happened; revocation is reported whatever it answers.
    let revocation = match &outcome.revocation {
        Revocation::Revoked(answer) => answer.clone(),
        Revocation::Failed(error) => format!("revocation at the provider failed: {error}"),
        Revocation::Unsupported => "Microsoft offers no revocation endpoint for these tokens; to end every session of the user, an administrator can revoke their sessions in Entra ID".to_owned(),
        _ => String::new(),
    };
    Ok(Output::new(
        format!("signed out {address}: the stored token was deleted; {revocation}"),
        json!({ "address": address, "removed": 1, "revocation": revocation }),
    ))
}

pub(crate) async fn token_list(context: &Context) -> Result<Output> {
    let tokens = mailroom::owned_tokens(&context.db, &context.key).await?;
    if tokens.is_empty() {
        return Ok(Output::new(
            "no tokens stored; sign in with `mailroom sign-in --company` or `--account ID`",
            json!([]),
        ));
    }
    let now = Utc::now();
    let header = [
        "Account",
        "Address",
        "Provider",
        "Credential",
        "Access tokens",
        "Status",
        "Expires in",
        "Last refreshed",
        "Refresh token",
    ];
    let rows: Vec<[String; 9]> = tokens
        .iter()
        .map(|owned| {
            let token = &owned.token;
            let account = if owned.accounts.is_empty() {
                "(none)".to_owned()
            } else {
                owned
                    .accounts
                    .iter()
                    .map(|account| match account {
                        mailroom::AccountRef::Company => "company".to_owned(),
                        mailroom::AccountRef::User(id) => id.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let minutes = (token.expires_at - now).num_minutes();
            [
                account,
                token.address.clone(),
                token.provider.to_string(),
                // A person's sign-in, or the app's own credential (app-only).
                match &token.credential {
                    Some(kind) => format!("app-only ({kind})"),
                    None => "sign-in".to_owned(),
                },
                // The resources it holds an access token for (`mail`, `graph`); "Expires
                // in" is the first's.
                token.access_resources.join(", "),
                token.status.clone(),
                if minutes >= 0 {
                    format!("{minutes} min")
                } else {
                    format!("expired {} min ago", -minutes)
                },
                token
                    .refreshed_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "never".to_owned()),
                if token.has_refresh_token { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let text = crate::output::render_table(&header, &rows);
    Ok(Output::new(text, json!(tokens)))
}

pub(crate) async fn token_refresh(context: &Context, selector: &AccountSelector) -> Result<Output> {
    let (loaded, _) = open_mailroom(context)
        .await?
        .oauth_account(selector.account_ref())
        .await?;
    let token = broker(context)
        .force_refresh(&token_target(&loaded))
        .await?;
    let minutes = (token.expires_at - Utc::now()).num_minutes();
    Ok(Output::new(
        format!(
            "refreshed the token of {}: valid for {minutes} more minutes (version {})",
            token.address, token.version
        ),
        json!({ "address": token.address, "expires_at": token.expires_at, "version": token.version }),
    ))
}

pub(crate) async fn token_access(context: &Context, selector: &AccountSelector) -> Result<Output> {
    let mailroom = open_mailroom(context).await?;
    let prompt = TerminalPrompt { context };
    let token = mailroom
        .access_token(
            selector.account_ref(),
            interactive().then_some(&prompt as &dyn mailroom_model::SignInPrompt),
        )
        .await?;
    // The one place mailroom prints a token: for scripts, like `gh auth token`.
    Ok(Output::new(
        token.secret.expose().to_owned(),
        json!({ "access_token": token.secret.expose(), "expires_at": token.expires_at, "address": token.address }),
    ))
}
