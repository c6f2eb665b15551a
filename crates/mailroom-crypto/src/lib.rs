//! The database encryption key and the sealing of secret columns with AES-256-GCM.
//!
//! Every secret mailroom stores (SMTP passwords, OAuth tokens, client secrets) is sealed
//! with the key and *associated data* naming the row and column it belongs to, so a
//! ciphertext copied to another row or column fails to open.
//!
//! This crate holds the key and does the AES; it does not know which columns are secret
//! (`mailroom-accounts` and `mailroom-tokens` decide and pass the associated data) and it
//! reads no environment variable: a front end passes the text of `MAILROOM_KEY` to
//! [`EncryptionKey::from_text`] or a path to [`EncryptionKey::load_or_create`].
//!
//! ```
//! use mailroom_crypto::{EncryptionKey, Error};
//!
//! let key = EncryptionKey::generate();
//! let sealed = key.seal(b"correct horse", b"user_account:4:password");
//! let opened = key.open(&sealed, b"user_account:4:password")?;
//! assert_eq!(opened.as_slice(), b"correct horse");
//!
//! // The same ciphertext moved to another row does not open.
//! assert!(matches!(
//!     key.open(&sealed, b"user_account:5:password"),
//!     Err(Error::CannotOpen)
//! ));
//!
//! // The key as text (what `MAILROOM_KEY` or a key file holds), and a fingerprint that is
//! // safe to show; `Debug` shows only the fingerprint.
//! let again = EncryptionKey::from_text(&key.to_text())?;
//! assert_eq!(again.id(), key.id());
//! assert!(!format!("{key:?}").contains(key.to_text().as_str()));
//! # Ok::<(), Error>(())
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

mod error;

pub use error::{Error, Result};

const FORMAT_TAG: &[u8; 3] = b"MR1";
const NONCE_LEN: usize = 12;

/// A 256-bit key. `Debug` shows only its id (a fingerprint), never the key.
#[derive(Clone)]
pub struct EncryptionKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id())
            .finish()
    }
}

/// Where a key came from, for a front end to show and for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `MAILROOM_KEY` environment variable.
    Environment,
    /// A key file.
    File {
        /// The file.
        path: PathBuf,
        /// True when this call created it.
        created: bool,
    },
}

impl EncryptionKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self { bytes }
    }

    /// Parses a key given as text: 32 bytes in standard base64 or in hex.
    pub fn from_text(text: &str) -> Result<Self> {
        let text = Zeroizing::new(text.trim().to_owned());
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .ok()
                .filter(|bytes| bytes.len() == 32)
                .or_else(|| hex::decode(text.as_bytes()).ok())
                .ok_or(Error::MalformedKey)?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| Error::MalformedKey)?;
        Ok(Self {
            bytes: Zeroizing::new(bytes),
        })
    }

    /// The key as base64 text (for `MAILROOM_KEY` or a key file).
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.as_ref()))
    }

    /// Reads the key file at `path`, or creates it with a new key and mode 0600 when it
    /// does not exist. A file readable by other users is refused.
    pub fn load_or_create(path: &Path) -> Result<(Self, KeySource)> {
        let key_file_error = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                check_permissions(path)?;
                let key =
                    Self::from_text(&Zeroizing::new(text)).map_err(|_| Error::KeyFileContents {
                        path: path.to_owned(),
                    })?;
                Ok((
                    key,
                    KeySource::File {
                        path: path.to_owned(),
                        created: false,
                    },
                ))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(key_file_error)?;
                }
                // The key is written whole to a private temporary file, then published
                // under its name with a hard link, which fails if another process
                // published one first: then that key is the one, and it is read. No process
                // ever reads a half-written key file.
                let key = Self::generate();
                let mut temporary = path.as_os_str().to_owned();
                temporary.push(format!(".{:016x}.tmp", rand::random::<u64>()));
                let temporary = std::path::PathBuf::from(temporary);
                let written = create_private_file(&temporary).and_then(|mut file| {
                    file.write_all(key.to_text().as_bytes())?;
                    file.write_all(b"\n")?;
                    file.sync_all()
                });
                if let Err(error) = written {
                    let _ = fs::remove_file(&temporary);
                    return Err(key_file_error(error));
                }
                let published = fs::hard_link(&temporary, path);
                let _ = fs::remove_file(&temporary);
                match published {
                    Ok(()) => Ok((
                        key,
                        KeySource::File {
                            path: path.to_owned(),
                            created: true,
                        },
                    )),
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(error) => Err(key_file_error(error)),
                }
            }
            Err(error) => Err(key_file_error(error)),
        }
    }

    /// A short fingerprint of the key (first 8 bytes of SHA-256, hex), safe to show.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.bytes.as_ref());
        hex::encode(&digest[..8])
    }

    /// Encrypts `plaintext`, binding it to `associated` (the row and column it belongs to).
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(self.bytes.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .expect("AES-GCM encryption cannot fail for messages under 64 GiB");
        let mut sealed = Vec::with_capacity(FORMAT_TAG.len() + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(FORMAT_TAG);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value sealed by [`EncryptionKey::seal`] with the same associated data.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let rest = sealed.strip_prefix(FORMAT_TAG).ok_or(Error::CannotOpen)?;
        if rest.len() < NONCE_LEN {
            return Err(Error::CannotOpen);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(self.bytes.as_ref().into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::CannotOpen)
    }

    /// [`EncryptionKey::open`] for text secrets.
    pub fn open_string(&self, sealed: &[u8], associated: &[u8]) -> Result<Zeroizing<String>> {
        let bytes = self.open(sealed, associated)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| Error::CannotOpen)
    }
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_owned(),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_associated_data() {
        let key = EncryptionKey::generate();
        let sealed = key.seal(b"hunter2", b"user_account:4:password");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(&sealed, b"user_account:4:password")
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(matches!(
            key.open(&sealed, b"user_account:5:password"),
            Err(Error::CannotOpen)
        ));
        let other = EncryptionKey::generate();
        assert!(matches!(
            other.open(&sealed, b"user_account:4:password"),
            Err(Error::CannotOpen)
        ));
        assert!(matches!(key.open(b"MR1short", b""), Err(Error::CannotOpen)));
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_refused() {
        let key = EncryptionKey::generate();
        let again = EncryptionKey::from_text(&key.to_text()).unwrap();
        assert_eq!(key.id(), again.id());
        let hex_text = hex::encode(key.bytes.as_ref());
        assert_eq!(EncryptionKey::from_text(&hex_text).unwrap().id(), key.id());
        for bad in ["", "short", "AAAA", &"ab".repeat(31)] {
            assert!(
                matches!(EncryptionKey::from_text(bad), Err(Error::MalformedKey)),
                "{bad}"
            );
        }
        assert!(!format!("{key:?}").contains(key.to_text().as_str()));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("mailroom.key");
        let (created, source) = EncryptionKey::load_or_create(&path).unwrap();
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: true
            }
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (loaded, source) = EncryptionKey::load_or_create(&path).unwrap();
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: false
            }
        );
        assert_eq!(created.id(), loaded.id());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            EncryptionKey::load_or_create(&path),
            Err(Error::KeyFilePermissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            EncryptionKey::load_or_create(&path),
            Err(Error::KeyFileContents { .. })
        ));
    }

    #[test]
    fn processes_creating_the_key_file_at_once_all_get_the_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("erp.sqlite.key");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    EncryptionKey::load_or_create(&path)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap().expect("every caller gets a key"))
            .collect();
        let ids: std::collections::BTreeSet<String> =
            results.iter().map(|(key, _)| key.id()).collect();
        assert_eq!(ids.len(), 1, "different keys: {ids:?}");
        let created = results
            .iter()
            .filter(|(_, source)| matches!(source, KeySource::File { created: true, .. }))
            .count();
        assert_eq!(created, 1, "exactly one caller created the file");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("erp.sqlite.key")]);
    }
}

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
