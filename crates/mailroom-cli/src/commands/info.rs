//! `mailroom info`: where things are.

use anyhow::Result;
use mailroom_accounts::Accounts;
use mailroom_crypto::KeySource;
use serde_json::json;

use super::Output;
use crate::context::{Context, KEY_VARIABLE, redact_url, sqlite_path};

pub(crate) async fn info(context: &Context) -> Result<Output> {
    Accounts::new(&context.db, &context.key)
        .verify_key()
        .await?;
    let schema = mailroom_migrations::schema_version(&context.db).await?;
    let url = redact_url(&context.database_url);
    let sqlite_file = sqlite_path(&context.database_url);
    let (key_text, key_file) = match &context.key_source {
        KeySource::Environment => (
            format!("from the {KEY_VARIABLE} environment variable"),
            None,
        ),
        KeySource::File { path, .. } => (
            format!("{} (mode 0600)", path.display()),
            Some(path.clone()),
        ),
    };
    let mut text = vec![
        format!("Database      {url}"),
        format!(
            "Backend       {}",
            if sqlite_file.is_some() {
                "sqlite"
            } else {
                "postgresql"
            }
        ),
    ];
    if let Some(file) = &sqlite_file {
        text.push(format!("Database file {}", file.display()));
    }
    text.push(format!(
        "Schema        {}",
        schema.as_deref().unwrap_or("(not migrated)")
    ));
    text.push(format!("Key           {key_text}"));
    text.push(format!("Key id        {}", context.key.id()));
    Ok(Output::new(
        text.join("\n"),
        json!({
            "database_url": url,
            "backend": if sqlite_file.is_some() { "sqlite" } else { "postgresql" },
            "database_file": sqlite_file,
            "schema_version": schema,
            "key_source": match context.key_source { KeySource::Environment => "environment", KeySource::File { .. } => "file" },
            "key_file": key_file,
            "key_id": context.key.id(),
        }),
    ))
}
