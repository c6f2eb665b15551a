//! [`KeyRing`]: every key a host has, so values sealed before and after a rotation open.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use zeroize::Zeroizing;

use crate::{
    EncryptionKey, Error, KeySource, Result, check_permissions, create_private_file, into_string,
    sealed_by,
};

/// The keys a host has: the one the database's secrets are sealed with now, and any
/// previous or prepared ones. Which key seals new values is the database's decision
/// ([`crate::store`]); the ring opens any value sealed with a key it holds, by the key
/// id the value carries.
///
/// In a key file or `MAILROOM_KEY`: one key per line (base64 or hex of 32 bytes); blank
/// lines and lines starting with `#` are ignored, and in `MAILROOM_KEY` commas or spaces
/// also separate keys. `Debug` shows only the keys' fingerprints.
#[derive(Clone)]
pub struct KeyRing {
    /// Never empty, no two with the same id; the first is the one a new database is
    /// sealed with.
    keys: Vec<EncryptionKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("ids", &self.ids()).finish()
    }
}

impl From<EncryptionKey> for KeyRing {
    fn from(key: EncryptionKey) -> Self {
        Self { keys: vec![key] }
    }
}

impl KeyRing {
    /// A ring of one new random key.
    pub fn generate() -> Self {
        EncryptionKey::generate().into()
    }

    /// A ring of `keys` (duplicates dropped; the first is [`KeyRing::primary`]).
    /// No key at all is [`Error::MalformedKey`].
    pub fn new(keys: impl IntoIterator<Item = EncryptionKey>) -> Result<Self> {
        let mut ring: Vec<EncryptionKey> = Vec::new();
        for key in keys {
            if !ring.iter().any(|have| have.id() == key.id()) {
                ring.push(key);
            }
        }
        if ring.is_empty() {
            return Err(Error::MalformedKey);
        }
        Ok(Self { keys: ring })
    }

    /// Parses keys given as text: one per line, or separated by commas or spaces; `#`
    /// starts a comment line.
    pub fn from_text(text: &str) -> Result<Self> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|word| !word.is_empty())
            .map(EncryptionKey::from_text)
            .collect::<Result<Vec<_>>>()?;
        Self::new(keys)
    }

    /// The ring as text, one key per line, as a key file holds it.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for key in &self.keys {
            text.push_str(&key.to_text());
            text.push('\n');
        }
        text
    }

    /// Reads the key file at `path`, or creates it with one new key and mode 0600 when it
    /// does not exist. A file readable by other users is refused. When several processes
    /// create it at once, all get the one key that was published first.
    pub fn load_or_create(path: &Path) -> Result<(Self, KeySource)> {
        let key_file_error = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        match Self::load(path) {
            Ok(ring) => Ok((
                ring,
                KeySource::File {
                    path: path.to_owned(),
                    created: false,
                },
            )),
            Err(Error::KeyFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(key_file_error)?;
                }
                // The key is written whole to a private temporary file, then published
                // under its name with a hard link, which fails if another process
                // published one first: then that key is the one, and it is read. No process
                // ever reads a half-written key file.
                let ring = Self::generate();
                let temporary = write_temporary(path, &ring)?;
                let published = fs::hard_link(&temporary, path);
                let _ = fs::remove_file(&temporary);
                match published {
                    Ok(()) => Ok((
                        ring,
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
            Err(error) => Err(error),
        }
    }

    /// Reads the key file at `path`, which must exist and be private.
    pub fn load(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?);
        check_permissions(path)?;
        Self::from_text(&text).map_err(|_| Error::KeyFileContents {
            path: path.to_owned(),
        })
    }

    /// Adds `key` to the key file at `path` (created if missing), replacing the file
    /// atomically: a crash leaves the old file or the new one, never a part. The keys
    /// already there stay, in their order.
    pub fn add_to_file(path: &Path, key: &EncryptionKey) -> Result<Self> {
        let ring = match Self::load(path) {
            Ok(ring) => ring.with(key.clone()),
            Err(Error::KeyFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                key.clone().into()
            }
            Err(error) => Err(error)?,
        };
        let temporary = write_temporary(path, &ring)?;
        fs::rename(&temporary, path).map_err(|source| {
            let _ = fs::remove_file(&temporary);
            Error::KeyFile {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(ring)
    }

    /// This ring with `key` added (last), unless it holds it already.
    pub fn with(mut self, key: EncryptionKey) -> Self {
        if self.get(&key.id()).is_none() {
            self.keys.push(key);
        }
        self
    }

    /// The key a database without a key yet is sealed with: the first.
    pub fn primary(&self) -> &EncryptionKey {
        &self.keys[0]
    }

    /// The key with fingerprint `id`, if this ring holds it.
    pub fn get(&self, id: &str) -> Option<&EncryptionKey> {
        self.keys.iter().find(|key| key.id() == id)
    }

    /// The key with fingerprint `id`, or [`Error::MissingKey`] naming it.
    pub fn require(&self, id: &str) -> Result<&EncryptionKey> {
        self.get(id).ok_or_else(|| Error::MissingKey {
            id: id.to_owned(),
            have: self.ids(),
        })
    }

    /// The fingerprints of the keys held, in order.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(EncryptionKey::id).collect()
    }

    /// Decrypts a value sealed by any key of the ring, chosen by the key id the value
    /// carries: [`Error::MissingKey`] when the ring lacks that key, [`Error::CannotOpen`]
    /// when the value was altered or moved. A value in the first format (no key id) is
    /// tried with every key.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match sealed_by(sealed) {
            Some(id) => self.require(&id)?.open(sealed, associated),
            None => self
                .keys
                .iter()
                .find_map(|key| key.open(sealed, associated).ok())
                .ok_or(Error::CannotOpen),
        }
    }

    /// [`KeyRing::open`] for text secrets.
    pub fn open_string(&self, sealed: &[u8], associated: &[u8]) -> Result<Zeroizing<String>> {
        into_string(self.open(sealed, associated)?)
    }
}

/// Writes `ring` to a new private file beside `path`, synced, and returns its path.
fn write_temporary(path: &Path, ring: &KeyRing) -> Result<std::path::PathBuf> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let temporary = std::path::PathBuf::from(temporary);
    let written = create_private_file(&temporary).and_then(|mut file| {
        file.write_all(ring.to_text().as_bytes())?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok(temporary),
        Err(source) => {
            let _ = fs::remove_file(&temporary);
            Err(Error::KeyFile {
                path: path.to_owned(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_opens_what_any_of_its_keys_sealed_and_names_the_key_it_lacks() {
        let old = EncryptionKey::generate();
        let new = EncryptionKey::generate();
        let ring = KeyRing::new([old.clone(), new.clone()]).unwrap();
        let by_old = old.seal(b"a", b"row:1");
        let by_new = new.seal(b"b", b"row:1");
        assert_eq!(ring.open(&by_old, b"row:1").unwrap().as_slice(), b"a");
        assert_eq!(ring.open_string(&by_new, b"row:1").unwrap().as_str(), "b");
        assert!(matches!(
            ring.open(&by_new, b"row:2"),
            Err(Error::CannotOpen)
        ));

        let only_old = KeyRing::from(old.clone());
        match only_old.open(&by_new, b"row:1") {
            Err(Error::MissingKey { id, have }) => {
                assert_eq!(id, new.id());
                assert_eq!(have, vec![old.id()]);
            }
            other => panic!("expected MissingKey, got {other:?}"),
        }
        let message = only_old.require(&new.id()).unwrap_err().to_string();
        assert!(message.contains(&new.id()), "{message}");
        assert_eq!(ring.primary().id(), old.id());
        assert_eq!(ring.ids(), vec![old.id(), new.id()]);
        assert!(!format!("{ring:?}").contains(old.to_text().as_str()));
        assert!(matches!(KeyRing::new([]), Err(Error::MalformedKey)));
    }

    #[test]
    fn ring_text_round_trips_with_comments_commas_and_duplicates() {
        let a = EncryptionKey::generate();
        let b = EncryptionKey::generate();
        let ring = KeyRing::from_text(&format!(
            "# mailroom keys\n{}\n\n{}\n{}\n",
            a.to_text().as_str(),
            b.to_text().as_str(),
            a.to_text().as_str()
        ))
        .unwrap();
        assert_eq!(ring.ids(), vec![a.id(), b.id()]);
        let again = KeyRing::from_text(&ring.to_text()).unwrap();
        assert_eq!(again.ids(), ring.ids());
        let env = format!("{}, {}", b.to_text().as_str(), a.to_text().as_str());
        assert_eq!(
            KeyRing::from_text(&env).unwrap().ids(),
            vec![b.id(), a.id()]
        );
        for bad in [
            "",
            "# nothing\n",
            "short",
            &format!("{} nonsense", a.to_text().as_str()),
        ] {
            assert!(KeyRing::from_text(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn keys_added_to_a_file_keep_the_file_private_and_the_old_keys() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("erp.sqlite.key");
        let (first, source) = KeyRing::load_or_create(&path).unwrap();
        assert!(matches!(source, KeySource::File { created: true, .. }));
        let next = EncryptionKey::generate();
        let ring = KeyRing::add_to_file(&path, &next).unwrap();
        assert_eq!(ring.ids(), vec![first.primary().id(), next.id()]);
        let (loaded, source) = KeyRing::load_or_create(&path).unwrap();
        assert!(matches!(source, KeySource::File { created: false, .. }));
        assert_eq!(loaded.ids(), ring.ids());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Adding a key the file has changes nothing.
        assert_eq!(
            KeyRing::add_to_file(&path, &next).unwrap().ids(),
            ring.ids()
        );
        // Only the key file is left: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A missing file is created holding just the new key.
        let fresh = dir.path().join("other.key");
        assert_eq!(
            KeyRing::add_to_file(&fresh, &next).unwrap().ids(),
            vec![next.id()]
        );
        assert_eq!(
            fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
