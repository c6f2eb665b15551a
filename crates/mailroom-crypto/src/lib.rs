//! The database encryption key and the sealing of secret columns with AES-256-GCM.
//!
//! Every secret mailroom stores (SMTP passwords, OAuth tokens, client secrets) is sealed
//! with the key and *associated data* naming the row and column it belongs to, so a
//! ciphertext copied to another row or column fails to open.
//!
//! This crate holds the key and does the AES; it does not know which columns are secret
//! (`mailroom-accounts` and `mailroom-tokens` decide and pass the associated data) and it
//! reads no environment variable: a front end passes the text of `MAILROOM_KEY` to
//! [`KeyRing::from_text`] or a path to [`KeyRing::load_or_create`].
//!
//! A host may hold several keys (a [`KeyRing`]: during a rotation, the current and the
//! next); every sealed value names the key that sealed it, and [`store`] keeps, in the
//! database's `key_check` row, which key seals new values.
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
use std::io;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

mod error;
mod ring;
pub mod store;

pub use error::{Error, Result};
pub use ring::KeyRing;

/// The first format: tag, nonce, ciphertext. Still opened (by trying every key of the
/// ring); never written.
const LEGACY_TAG: &[u8; 3] = b"MR1";
/// The current format: tag, the sealing key's id (8 bytes), nonce, ciphertext. The id says
/// which key of a [`KeyRing`] opens the value, so values sealed before and after a key
/// rotation can be told apart and a host missing a key can say which one.
const FORMAT_TAG: &[u8; 3] = b"MR2";
const KEY_ID_LEN: usize = 8;
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

    /// A short fingerprint of the key (first 8 bytes of SHA-256, hex), safe to show.
    pub fn id(&self) -> String {
        hex::encode(self.id_bytes())
    }

    fn id_bytes(&self) -> [u8; KEY_ID_LEN] {
        let digest = Sha256::digest(self.bytes.as_ref());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        id
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
        let mut sealed =
            Vec::with_capacity(FORMAT_TAG.len() + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(FORMAT_TAG);
        sealed.extend_from_slice(&self.id_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value sealed by [`EncryptionKey::seal`] with the same associated data.
    /// A value sealed with another key is [`Error::CannotOpen`]; a [`KeyRing`] says which
    /// key it needs.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match sealed_key_id(sealed) {
            Some(id) if id == self.id_bytes() => {
                self.decrypt(&sealed[FORMAT_TAG.len() + KEY_ID_LEN..], associated)
            }
            Some(_) => Err(Error::CannotOpen),
            None => {
                let rest = sealed.strip_prefix(LEGACY_TAG).ok_or(Error::CannotOpen)?;
                self.decrypt(rest, associated)
            }
        }
    }

    /// Nonce and ciphertext, after the header.
    fn decrypt(&self, rest: &[u8], associated: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
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
        into_string(self.open(sealed, associated)?)
    }
}

fn into_string(bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>> {
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| Error::CannotOpen)
}

/// The id of the key that sealed `sealed`, for values in the current format.
fn sealed_key_id(sealed: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    sealed
        .strip_prefix(FORMAT_TAG)
        .and_then(|rest| rest.get(..KEY_ID_LEN))
        .and_then(|id| id.try_into().ok())
}

/// The fingerprint of the key that sealed `sealed` ([`EncryptionKey::id`]), when the value
/// says (values sealed before key ids were recorded do not). Needs no key.
pub fn sealed_by(sealed: &[u8]) -> Option<String> {
    sealed_key_id(sealed).map(hex::encode)
}

#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
pub(crate) fn check_permissions(path: &Path) -> Result<()> {
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
pub(crate) fn check_permissions(_path: &Path) -> Result<()> {
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
        assert!(matches!(key.open(b"MR2", b""), Err(Error::CannotOpen)));
        assert!(matches!(key.open(b"", b""), Err(Error::CannotOpen)));
        // The value names its key, readable without it.
        assert_eq!(sealed_by(&sealed), Some(key.id()));
        assert_eq!(&sealed[..3], b"MR2");
    }

    #[test]
    fn values_in_the_first_format_still_open() {
        let key = EncryptionKey::generate();
        let sealed = key.seal(b"hunter2", b"aad");
        // The first format: no key id between the tag and the nonce.
        let mut legacy = b"MR1".to_vec();
        legacy.extend_from_slice(&sealed[3 + KEY_ID_LEN..]);
        assert_eq!(key.open(&legacy, b"aad").unwrap().as_slice(), b"hunter2");
        assert_eq!(sealed_by(&legacy), None);
        let other = EncryptionKey::generate();
        assert!(matches!(
            other.open(&legacy, b"aad"),
            Err(Error::CannotOpen)
        ));
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
        let (created, source) = KeyRing::load_or_create(&path).unwrap();
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
        let (loaded, source) = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: false
            }
        );
        assert_eq!(created.ids(), loaded.ids());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyRing::load_or_create(&path),
            Err(Error::KeyFilePermissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            KeyRing::load_or_create(&path),
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
                    KeyRing::load_or_create(&path)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap().expect("every caller gets a key"))
            .collect();
        let ids: std::collections::BTreeSet<String> = results
            .iter()
            .map(|(ring, _)| ring.primary().id())
            .collect();
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
