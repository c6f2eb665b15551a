//! `mailroom key`: rotation in two steps (`rotate --prepare`, `rotate --commit`), `show`,
//! and `reset --forget-secrets`, the way out of a lost key.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use mailroom::{Mailroom, Resealed};
use mailroom_crypto::{EncryptionKey, KeyRing, KeySource};
use serde_json::json;

use super::Output;
use crate::UsageError;
use crate::commands::send::{mailroom_options, open_mailroom};
use crate::context::{Context, KEY_VARIABLE, key_file_path, open_database};

pub(crate) async fn reset(given_url: Option<&str>) -> Result<Output> {
    if std::env::var_os(KEY_VARIABLE).is_some() {
        return Err(UsageError(format!(
            "the key comes from {KEY_VARIABLE}; unset it so the new key goes to the key file, then copy that key to every host"
        ))
        .into());
    }
    let (db, database_url) = open_database(given_url).await?;
    let path = key_file_path(&database_url)?;
    // A key file in the way is kept, never overwritten: it may be the one a backup needs.
    let kept = if path.exists() {
        let mut kept = path.clone().into_os_string();
        kept.push(format!(
            ".replaced-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        let kept = std::path::PathBuf::from(kept);
        std::fs::rename(&path, &kept)
            .with_context(|| format!("cannot move the key file {} aside", path.display()))?;
        Some(kept)
    } else {
        None
    };
    let (ring, _) = KeyRing::load_or_create(&path)?;
    let new_key = ring.primary();
    let forgotten = mailroom::forget_secrets(&db, new_key).await?;
    let mut output = Output::new(
        format!(
            "deleted {} passwords, {} client secrets and {} tokens; new key {} in {}",
            forgotten.passwords,
            forgotten.client_secrets,
            forgotten.tokens,
            new_key.id(),
            path.display()
        ),
        json!({
            "passwords": forgotten.passwords,
            "client_secrets": forgotten.client_secrets,
            "tokens": forgotten.tokens,
            "key_id": new_key.id(),
            "key_file": path,
            "replaced_key_file": kept,
        }),
    );
    if let Some(kept) = kept {
        output.notes.push(format!(
            "the previous key file was kept as {}",
            kept.display()
        ));
    }
    output.notes.push(
        "set the passwords again (company set / account edit --password-stdin), give the apps' client secrets again (app set --client-secret-stdin) and sign in to every OAuth account".to_owned(),
    );
    Ok(output)
}

/// Which part of a key rotation `key rotate` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RotationStep {
    /// Make the next key, add it to the key file, record it as prepared.
    Prepare,
    /// Re-encrypt everything with the prepared key.
    Commit,
    /// Both, on a single host.
    Both,
}

/// `mailroom key rotate [--prepare | --commit]`.
pub(crate) async fn rotate(
    context: &Context,
    step: RotationStep,
    new_key_file: Option<&Path>,
) -> Result<Output> {
    match step {
        RotationStep::Prepare => {
            let (next, location) = prepare(context, new_key_file).await?;
            let current = mailroom::key_state(&context.db)
                .await?
                .map(|state| state.current)
                .unwrap_or_default();
            let mut output = Output::new(
                format!(
                    "prepared a rotation to key {}; it is in {} (beside the current key {current}); nothing is re-encrypted yet",
                    next.id(),
                    location.display()
                ),
                json!({ "step": "prepared", "key_id": next.id(), "key_file": location, "current_key_id": current }),
            );
            output.notes.push(match &context.key_source {
                KeySource::File { .. } if new_key_file.is_none() => format!(
                    "copy {} to every host that uses this database, then run: mailroom key rotate --commit",
                    location.display()
                ),
                _ => format!(
                    "add the key in {} to MAILROOM_KEY (comma-separated, beside the current key) on every host that uses this database, then run: mailroom key rotate --commit",
                    location.display()
                ),
            });
            Ok(output)
        }
        RotationStep::Commit => {
            let resealed = open_mailroom(context).await?.commit_key_rotation().await?;
            Ok(committed(&resealed, None))
        }
        RotationStep::Both => {
            let (next, location) = prepare(context, new_key_file).await?;
            let mut options = mailroom_options(context)?;
            options.key = context.key.clone().with(next);
            let resealed = Mailroom::with_connection(context.db.clone(), options)
                .await?
                .commit_key_rotation()
                .await?;
            Ok(committed(&resealed, Some(&location)))
        }
    }
}

/// Makes the next key, saves it (the key file, or `new_key_file`) before the database
/// records it: a crash in between leaves an unused key in the file, never a prepared key
/// no file holds.
async fn prepare(
    context: &Context,
    new_key_file: Option<&Path>,
) -> Result<(EncryptionKey, PathBuf)> {
    let location = match (&context.key_source, new_key_file) {
        (_, Some(path)) => {
            if path.exists() {
                return Err(anyhow!(
                    "{} already exists; give a new file for the new key (an existing one may hold a key a host needs)",
                    path.display()
                ));
            }
            path.to_owned()
        }
        (KeySource::File { path, .. }, None) => path.clone(),
        (KeySource::Environment, None) => {
            return Err(UsageError(format!(
                "the key comes from {KEY_VARIABLE}; give --new-key-file PATH to receive the new key, then add it to {KEY_VARIABLE} on every host"
            ))
            .into());
        }
    };
    let next = EncryptionKey::generate();
    KeyRing::add_to_file(&location, &next)?;
    open_mailroom(context)
        .await?
        .prepare_key_rotation(&next)
        .await?;
    Ok((next, location))
}

fn committed(resealed: &Resealed, location: Option<&Path>) -> Output {
    let Resealed {
        key_id,
        passwords,
        client_secrets,
        tokens,
    } = resealed;
    let mut output = Output::new(
        format!(
            "re-encrypted {passwords} passwords, {client_secrets} client secrets and {tokens} tokens with key {key_id}; the database uses it from now on"
        ),
        json!({ "step": "committed", "key_id": key_id, "key_file": location, "passwords": passwords, "client_secrets": client_secrets, "tokens": tokens }),
    );
    output.notes.push(format!(
        "a host without key {key_id} now stops with \"this host lacks key {key_id}\" and writes nothing; the previous key stays beside it (backups taken before now need it)"
    ));
    output
}

/// `mailroom key show`: the database's key, a prepared rotation, this host's keys.
pub(crate) async fn show(context: &Context) -> Result<Output> {
    let state = mailroom::key_state(&context.db).await?;
    let have = context.key.ids();
    let holds = |id: &str| {
        if have.iter().any(|mine| mine == id) {
            "this host has it"
        } else {
            "this host LACKS it"
        }
    };
    let source = match &context.key_source {
        KeySource::Environment => KEY_VARIABLE.to_owned(),
        KeySource::File { path, .. } => format!("key file {}", path.display()),
    };
    let mut lines = Vec::new();
    match &state {
        Some(state) => {
            lines.push(format!(
                "Database key  {} ({})",
                state.current,
                holds(&state.current)
            ));
            lines.push(match &state.prepared {
                Some(next) => format!(
                    "Prepared      {next} ({}); run: mailroom key rotate --commit",
                    holds(next)
                ),
                None => "Prepared      (none)".to_owned(),
            });
        }
        None => lines.push("Database key  (none recorded yet)".to_owned()),
    }
    lines.push(format!("This host     {} ({source})", have.join(", ")));
    Ok(Output::new(
        lines.join("\n"),
        json!({
            "database_key_id": state.as_ref().map(|s| s.current.clone()),
            "prepared_key_id": state.as_ref().and_then(|s| s.prepared.clone()),
            "host_key_ids": have,
            "key_source": match context.key_source { KeySource::Environment => "environment", KeySource::File { .. } => "file" },
        }),
    ))
}
