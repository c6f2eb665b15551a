//! The key file: created whole with one new key and mode 0600, read back as it was
//! written, refused when others may read it, and extended by atomic replacement.
#![cfg(unix)]

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mailroom_crypto::{EncryptionKey, Error, KeyRing, KeySource};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_key_file_holds_the_one_key_as_a_line_of_base64_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("erp.sqlite.key");
    let (ring, source) = KeyRing::load_or_create(&path).unwrap();
    assert_eq!(
        source,
        KeySource::File {
            path: path.clone(),
            created: true
        }
    );
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{}\n", ring.primary().to_text().as_str()));
    assert_eq!(ring.ids().len(), 1);
    assert_eq!(
        EncryptionKey::from_text(&text).unwrap().id(),
        ring.primary().id()
    );
    // Only the key file: the temporary file it was written to is gone.
    assert_eq!(names(dir.path()), ["erp.sqlite.key"]);
    // Read back, not replaced.
    let (again, source) = KeyRing::load_or_create(&path).unwrap();
    assert_eq!(
        source,
        KeySource::File {
            path: path.clone(),
            created: false
        }
    );
    assert_eq!(again.ids(), ring.ids());
    assert_eq!(KeyRing::load(&path).unwrap().ids(), ring.ids());
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn missing_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("mailroom.key");
    let (ring, source) = KeyRing::load_or_create(&path).unwrap();
    assert!(matches!(source, KeySource::File { created: true, .. }));
    assert_eq!(KeyRing::load(&path).unwrap().ids(), ring.ids());
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn an_existing_key_file_is_read_with_its_comments_and_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    fs::write(
        &path,
        format!(
            "# keys\n{}\n{}\n",
            a.to_text().as_str(),
            b.to_text().as_str()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let (ring, source) = KeyRing::load_or_create(&path).unwrap();
    assert!(matches!(source, KeySource::File { created: false, .. }));
    assert_eq!(ring.ids(), vec![a.id(), b.id()]);
}

#[test]
fn only_the_owner_may_have_any_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    let (ring, _) = KeyRing::load_or_create(&path).unwrap();
    for private in [0o600, 0o400, 0o700] {
        fs::set_permissions(&path, fs::Permissions::from_mode(private)).unwrap();
        assert_eq!(
            KeyRing::load(&path).unwrap().ids(),
            ring.ids(),
            "mode {private:o}"
        );
        assert!(KeyRing::load_or_create(&path).is_ok(), "mode {private:o}");
    }
    for shared in [0o640, 0o610, 0o604, 0o602, 0o601, 0o644, 0o666] {
        fs::set_permissions(&path, fs::Permissions::from_mode(shared)).unwrap();
        for result in [
            KeyRing::load(&path),
            KeyRing::load_or_create(&path).map(|(ring, _)| ring),
            KeyRing::add_to_file(&path, &EncryptionKey::generate()),
        ] {
            match result {
                Err(Error::KeyFilePermissions { path: named }) => assert_eq!(named, path),
                other => panic!("mode {shared:o}: expected KeyFilePermissions, got {other:?}"),
            }
        }
    }
    // The remedy names the file.
    let error = KeyRing::load(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the key file {0} is readable by other users; run `chmod 600 {0}`",
            path.display()
        )
    );
    // Nothing was added by the refused calls.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(KeyRing::load(&path).unwrap().ids(), ring.ids());
}

#[test]
fn a_key_file_without_a_key_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    for contents in ["", "# no key here\n", "not a key\n"] {
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        match KeyRing::load_or_create(&path) {
            Err(Error::KeyFileContents { path: named }) => assert_eq!(named, path),
            other => panic!("{contents:?}: expected KeyFileContents, got {other:?}"),
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), contents);
    }
    let error = KeyRing::load(&path).unwrap_err();
    assert!(error.to_string().contains("does not hold a key"), "{error}");
}

#[test]
fn load_does_not_create_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    match KeyRing::load(&path) {
        Err(Error::KeyFile {
            path: named,
            source,
        }) => {
            assert_eq!(named, path);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected KeyFile, got {other:?}"),
    }
    assert!(!path.exists());
}

#[test]
fn a_key_file_that_cannot_be_created_says_which_file() {
    let dir = tempfile::tempdir().unwrap();
    // Its directory would have to be a regular file.
    let blocker = dir.path().join("not-a-directory");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("mailroom.key");
    match KeyRing::load_or_create(&path) {
        Err(Error::KeyFile { path: named, .. }) => assert_eq!(named, path),
        other => panic!("expected KeyFile, got {other:?}"),
    }
    // A directory in the key file's place: it cannot be read, and it is not replaced.
    let occupied = dir.path().join("occupied.key");
    fs::create_dir(&occupied).unwrap();
    for result in [
        KeyRing::load_or_create(&occupied).map(|(ring, _)| ring),
        KeyRing::add_to_file(&occupied, &EncryptionKey::generate()),
    ] {
        match result {
            Err(Error::KeyFile { path: named, .. }) => assert_eq!(named, occupied),
            other => panic!("expected KeyFile, got {other:?}"),
        }
    }
    assert!(occupied.is_dir());
    assert_eq!(names(dir.path()), ["not-a-directory", "occupied.key"]);
}

#[test]
fn adding_a_key_keeps_the_old_ones_in_order_and_the_file_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    let (first, _) = KeyRing::load_or_create(&path).unwrap();
    let second = EncryptionKey::generate();
    let third = EncryptionKey::generate();
    KeyRing::add_to_file(&path, &second).unwrap();
    let ring = KeyRing::add_to_file(&path, &third).unwrap();
    let expected = vec![first.primary().id(), second.id(), third.id()];
    assert_eq!(ring.ids(), expected);
    assert_eq!(KeyRing::load(&path).unwrap().ids(), expected);
    assert_eq!(fs::read_to_string(&path).unwrap(), ring.to_text().as_str());
    assert_eq!(mode(&path), 0o600);
    // A key the file holds already: the file stays as it is.
    let before = fs::read_to_string(&path).unwrap();
    assert_eq!(
        KeyRing::add_to_file(&path, &second).unwrap().ids(),
        expected
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), before);
    assert_eq!(names(dir.path()), ["mailroom.key"]);
    // No file yet: one holding just the key.
    let fresh = dir.path().join("fresh.key");
    let ring = KeyRing::add_to_file(&fresh, &second).unwrap();
    assert_eq!(ring.ids(), vec![second.id()]);
    assert_eq!(
        fs::read_to_string(&fresh).unwrap(),
        format!("{}\n", second.to_text().as_str())
    );
    assert_eq!(mode(&fresh), 0o600);
    assert_eq!(names(dir.path()), ["fresh.key", "mailroom.key"]);
}

#[test]
fn a_key_file_that_is_not_text_is_refused_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.key");
    let contents: &[u8] = &[0xff, 0xfe, b'\n'];
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let refused = |result: Result<KeyRing, Error>| match result {
        Err(Error::KeyFile { path: named, .. } | Error::KeyFileContents { path: named }) => {
            assert_eq!(named, path);
        }
        other => panic!("expected the key file refused, got {other:?}"),
    };
    refused(KeyRing::load(&path));
    refused(KeyRing::load_or_create(&path).map(|(ring, _)| ring));
    // Adding a key would lose the keys the file may hold: refused, and the file kept.
    refused(KeyRing::add_to_file(&path, &EncryptionKey::generate()));
    assert_eq!(fs::read(&path).unwrap(), contents);
    assert_eq!(names(dir.path()), ["mailroom.key"]);
}
