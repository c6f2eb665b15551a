//! `mailroom info`: where things are.

use anyhow::Result;
use mailroom_accounts::Accounts;
use mailroom_crypto::KeySource;
use serde_json::json;

use super::Output;
use crate::context::{
    Context, KEY_VARIABLE, key_file_path, open_database, redact_url, sqlite_path,
};

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
    let database_key = mailroom::key_state(&context.db)
        .await?
        .map(|state| state.current)
        .unwrap_or_default();
    text.push(format!("Key id        {database_key}"));
    if context.key.ids().len() > 1 {
        text.push(format!("Host keys     {}", context.key.ids().join(", ")));
    }
    Ok(Output::new(
        text.join("\n"),
        json!({
            "database_url": url,
            "backend": if sqlite_file.is_some() { "sqlite" } else { "postgresql" },
            "database_file": sqlite_file,
            "schema_version": schema,
            "key_source": match context.key_source { KeySource::Environment => "environment", KeySource::File { .. } => "file" },
            "key_file": key_file,
            "key_id": database_key,
            "host_key_ids": context.key.ids(),
        }),
    ))
}

/// `info` when the key cannot be loaded: where the database and the expected key are, and
/// why the key is unusable; exit 0, the problem is the report.
pub(crate) async fn info_without_key(
    given_url: Option<&str>,
    problem: anyhow::Error,
) -> Result<Output> {
    let (db, database_url) = open_database(given_url).await?;
    let schema = mailroom_migrations::schema_version(&db).await?;
    let sealed_with = mailroom::sealed_with(&db).await?;
    let url = redact_url(&database_url);
    let key_file = key_file_path(&database_url)?;
    let problem_json = crate::remedy::render_json(&problem)["error"].take();
    let problem = crate::remedy::render_text(&problem)
        .trim_start_matches("error: ")
        .to_owned();
    let text = [
        format!("Database      {url}"),
        format!(
            "Schema        {}",
            schema.as_deref().unwrap_or("(not migrated)")
        ),
        format!("Key file      {} (unusable)", key_file.display()),
        format!(
            "Sealed with   {}",
            sealed_with.as_deref().unwrap_or("(no key checked yet)")
        ),
        format!("Problem       {problem}"),
    ];
    Ok(Output::new(
        text.join("\n"),
        json!({
            "database_url": url,
            "schema_version": schema,
            "key_file": key_file,
            "key_usable": false,
            "sealed_with_key_id": sealed_with,
            "problem": problem_json,
        }),
    ))
}
