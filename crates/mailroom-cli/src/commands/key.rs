//! `mailroom key reset --forget-secrets`: the way out of a lost key.

use anyhow::{Context as _, Result};
use mailroom_crypto::EncryptionKey;
use serde_json::json;

use super::Output;
use crate::UsageError;
use crate::context::{KEY_VARIABLE, key_file_path, open_database};

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
    let (new_key, _) = EncryptionKey::load_or_create(&path)?;
    let forgotten = mailroom::forget_secrets(&db, &new_key).await?;
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
