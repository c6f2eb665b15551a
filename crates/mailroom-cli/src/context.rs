//! Where the database and its key are, and opening them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use mailroom_crypto::{KeyRing, KeySource};
use sea_orm::DatabaseConnection;

/// The environment variable holding the keys as text (each base64 or hex of 32 bytes;
/// several separated by commas, spaces or lines during a key rotation).
pub(crate) const KEY_VARIABLE: &str = "MAILROOM_KEY";
/// The environment variable naming the key file.
pub(crate) const KEY_FILE_VARIABLE: &str = "MAILROOM_KEY_FILE";

/// An open, migrated database and its key.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) db: DatabaseConnection,
    pub(crate) key: KeyRing,
    pub(crate) key_source: KeySource,
    pub(crate) database_url: String,
}

/// The default database: `mailroom.sqlite` in the platform data directory (on Linux
/// `$XDG_DATA_HOME/mailroom`, else `~/.local/share/mailroom`).
fn default_database_path() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "mailroom").ok_or_else(|| {
        anyhow!("cannot find a home directory for the default database; give --database-url or set MAILROOM_DATABASE_URL")
    })?;
    Ok(dirs.data_dir().join("mailroom.sqlite"))
}

/// The SQLite file a URL names, if it is an SQLite URL of a file.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// The database URL to use: the given one, or the default SQLite file. SQLite URLs get
/// `mode=rwc` so the file is created on first use; a plain file path is taken as SQLite.
/// Only the default location's directory is created: a given SQLite file whose directory
/// does not exist is a mistake to report, not a directory to make.
pub(crate) fn database_url(given: Option<&str>) -> Result<String> {
    let (url, is_default) = match given.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) if !url.contains(':') || url.starts_with('/') || url.starts_with('.') => {
            // A plain path: SQLite, made absolute so the key file lands beside it.
            let path = std::path::absolute(url)
                .with_context(|| format!("cannot make `{url}` an absolute path"))?;
            (format!("sqlite://{}", path.display()), false)
        }
        Some(url) => (url.to_owned(), false),
        None => (
            format!("sqlite://{}", default_database_path()?.display()),
            true,
        ),
    };
    if url.starts_with("sqlite:") {
        let url = if url.contains("mode=") {
            url
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        if let Some(parent) = sqlite_path(&url).as_deref().and_then(Path::parent) {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                if !is_default {
                    return Err(crate::UsageError(format!(
                        "the directory {} of the SQLite database does not exist; create it first, or give another path",
                        parent.display()
                    ))
                    .into());
                }
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the database directory {}", parent.display())
                })?;
            }
        }
        return Ok(url);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url);
    }
    Err(crate::UsageError(format!(
        "the database URL `{}` is neither sqlite: nor postgres:; use e.g. sqlite:///var/lib/mailroom/mailroom.sqlite (or a plain file path) or postgres://user@host/db",
        redact_url(&url)
    ))
    .into())
}

/// What to say when opening the database failed. The two a person meets most (the server
/// down, the database missing) get a sentence of their own that replaces the driver's
/// words (`Ok`); anything else keeps the driver's error as its cause (`Err`).
fn open_failure(database_url: &str, error: &sea_orm::DbErr) -> Result<String, String> {
    let redacted = redact_url(database_url);
    let text = error.to_string();
    if let Ok(parsed) = url::Url::parse(database_url) {
        if parsed.scheme().starts_with("postgres") {
            let name = parsed.path().trim_start_matches('/');
            if text.contains("does not exist") && text.contains("database") {
                let host = parsed.host_str().unwrap_or("localhost");
                let user = if parsed.username().is_empty() {
                    String::new()
                } else {
                    format!(" -U {}", parsed.username())
                };
                return Ok(format!(
                    "the database `{name}` does not exist on {host}; create it (`createdb -h {host}{user} {name}`) or give another URL"
                ));
            }
            if text.to_ascii_lowercase().contains("connection refused") {
                return Ok(format!(
                    "cannot open the database {redacted}: connection refused; is the PostgreSQL server running and listening there?"
                ));
            }
        }
    }
    Err(format!(
        "cannot open the database {redacted}; check the URL and that the server is running"
    ))
}

/// The key file for a database: `MAILROOM_KEY_FILE`, else `<database file>.key` beside an
/// SQLite file, else `mailroom.key` in the platform data directory.
pub(crate) fn key_file_path(database_url: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(KEY_FILE_VARIABLE).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = sqlite_path(database_url) {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".key");
        return Ok(path.with_file_name(name));
    }
    Ok(default_database_path()?.with_file_name("mailroom.key"))
}

/// The key file is missing while the database's secrets are sealed with a key: a new key
/// would open nothing, so none is made.
#[derive(Debug)]
pub(crate) struct KeyFileMissing {
    pub(crate) path: PathBuf,
    pub(crate) key_id: String,
}

impl std::fmt::Display for KeyFileMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the key file {} is missing, and this database's secrets are sealed with the key whose fingerprint is {}; no new key was made (it could open nothing)",
            self.path.display(),
            self.key_id
        )
    }
}

impl std::error::Error for KeyFileMissing {}

/// The keys: `MAILROOM_KEY`, else the key file (one key per line; created with mode
/// 0600 on first use, but never when the database already holds secrets sealed with a
/// key: that is a lost key).
async fn load_key(database_url: &str, db: &DatabaseConnection) -> Result<(KeyRing, KeySource)> {
    if let Ok(text) = std::env::var(KEY_VARIABLE) {
        let key = KeyRing::from_text(&text).context("MAILROOM_KEY is set but unusable")?;
        return Ok((key, KeySource::Environment));
    }
    let path = key_file_path(database_url)?;
    if !path.exists() {
        if let Some(key_id) = mailroom::sealed_with(db).await? {
            return Err(KeyFileMissing { path, key_id }.into());
        }
    }
    Ok(KeyRing::load_or_create(&path)?)
}

/// A URL without its password (the user-info part, or a `password=` query parameter as
/// libpq and sqlx accept it), for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed
        .query_pairs()
        .any(|(name, _)| name.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if name.eq_ignore_ascii_case("password") {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Opens (creating and migrating if needed) the database, without its key.
pub(crate) async fn open_database(given_url: Option<&str>) -> Result<(DatabaseConnection, String)> {
    let database_url = database_url(given_url)?;
    let db = match mailroom_migrations::open(&database_url).await {
        Ok(db) => db,
        Err(error) => {
            return Err(match open_failure(&database_url, &error) {
                Ok(sentence) => anyhow!(sentence),
                Err(context) => anyhow::Error::new(error).context(context),
            });
        }
    };
    Ok((db, database_url))
}

impl Context {
    /// Opens (creating and migrating if needed) the database and loads its key.
    pub(crate) async fn open(given_url: Option<&str>) -> Result<Self> {
        let (db, database_url) = open_database(given_url).await?;
        let (key, key_source) = load_key(&database_url, &db).await?;
        Ok(Self {
            db,
            key,
            key_source,
            database_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode_and_a_key_file_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("erp.sqlite");
        // A given file in a directory that does not exist: refused, nothing made.
        let error = database_url(Some(&format!("sqlite://{}", db.display()))).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        assert!(!db.parent().unwrap().exists());
        std::fs::create_dir(db.parent().unwrap()).unwrap();
        let url = database_url(Some(&format!("sqlite://{}", db.display()))).unwrap();
        assert_eq!(url, format!("sqlite://{}?mode=rwc", db.display()));
        assert!(db.parent().unwrap().is_dir());
        assert_eq!(sqlite_path(&url).unwrap(), db);
        assert_eq!(
            key_file_path(&url).unwrap(),
            dir.path().join("sub").join("erp.sqlite.key")
        );
        assert!(database_url(Some("mysql://h/db")).is_err());
        // A plain path is SQLite.
        assert_eq!(
            database_url(Some(&db.display().to_string())).unwrap(),
            format!("sqlite://{}?mode=rwc", db.display())
        );
        assert_eq!(
            redact_url("postgres://u:hunter2@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&Password=hunter2"),
            "postgres://u@h/db?sslmode=require&Password=***"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
