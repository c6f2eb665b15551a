//! The `key_check` row (`mailroom_crypto::store`): which key the database's secrets are
//! sealed with, a rotation's prepare and commit, a lost key's reset, and the settings-seal
//! marker, on SQLite and PostgreSQL.

use mailroom_crypto::store::{self, KeyState};
use mailroom_crypto::{EncryptionKey, Error, KeyRing};
use mailroom_testkit::{TestDatabase, on_both_backends};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Query};

on_both_backends!(
    a_new_database_records_the_primary_key,
    a_host_without_the_current_key_is_told_which_key_it_lacks,
    writes_seal_with_the_current_key_not_the_primary,
    a_rotation_is_prepared_then_committed,
    a_commit_needs_a_prepared_rotation_and_its_key,
    a_prepared_key_whose_check_does_not_open_is_refused,
    replace_makes_a_key_current_with_nothing_prepared,
    an_older_database_is_marked_settings_sealed,
    a_check_value_that_does_not_open_is_refused,
    mark_settings_sealed_needs_a_recorded_key,
);

/// The check value an older version wrote (before settings seals), the one after, and a
/// rotation's prepared check, as the module documents them.
const CHECK_PLAINTEXT: &[u8] = b"mailroom key check";
const OLD_CHECK_AAD: &[u8] = b"key_check:1";
const PREPARED_AAD: &[u8] = b"key_check:1:prepared";

fn state(current: &EncryptionKey, prepared: Option<&EncryptionKey>) -> KeyState {
    KeyState {
        current: current.id(),
        prepared: prepared.map(EncryptionKey::id),
    }
}

/// Overwrites one bytes column of the `key_check` row.
async fn set_column(db: &TestDatabase, column: &str, value: Vec<u8>) {
    let update = Query::update()
        .table(Alias::new("key_check"))
        .value(Alias::new(column), value)
        .to_owned();
    let backend = db.db.get_database_backend();
    let result = db.db.execute(backend.build(&update)).await.unwrap();
    assert_eq!(result.rows_affected(), 1);
}

async fn a_new_database_records_the_primary_key(db: &TestDatabase) {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([a.clone(), b.clone()]).unwrap();
    assert_eq!(store::state(&db.db).await.unwrap(), None);
    // A database with no key yet needs no settings-seal migration.
    assert!(store::settings_sealed(&db.db, &ring).await.unwrap());
    assert_eq!(store::verify(&db.db, &ring).await.unwrap(), state(&a, None));
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&a, None)));
    // Recorded once: a later host whose primary differs keeps the database's key.
    let reordered = KeyRing::new([b.clone(), a.clone()]).unwrap();
    assert_eq!(
        store::verify(&db.db, &reordered).await.unwrap(),
        state(&a, None)
    );
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&a, None)));
    // A new database's check value carries the settings-seal marker.
    assert!(store::settings_sealed(&db.db, &ring).await.unwrap());
}

async fn a_host_without_the_current_key_is_told_which_key_it_lacks(db: &TestDatabase) {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    store::verify(&db.db, &KeyRing::from(a.clone()))
        .await
        .unwrap();
    let other = KeyRing::from(b.clone());
    for error in [
        store::verify(&db.db, &other).await.unwrap_err(),
        store::settings_sealed(&db.db, &other).await.unwrap_err(),
        store::sealing_key(&db.db, &other).await.unwrap_err(),
    ] {
        match error {
            Error::MissingKey { id, have } => {
                assert_eq!(id, a.id());
                assert_eq!(have, vec![b.id()]);
            }
            other => panic!("expected MissingKey, got {other:?}"),
        }
    }
    // Nothing changed.
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&a, None)));
}

async fn writes_seal_with_the_current_key_not_the_primary(db: &TestDatabase) {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    // On a database with no key yet, the first write records the ring's primary.
    let first = KeyRing::new([a.clone(), b.clone()]).unwrap();
    assert_eq!(
        store::sealing_key(&db.db, &first).await.unwrap().id(),
        a.id()
    );
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&a, None)));
    // Later the database's key, whatever the ring's order.
    let reordered = KeyRing::new([b.clone(), a.clone()]).unwrap();
    assert_eq!(
        store::sealing_key(&db.db, &reordered).await.unwrap().id(),
        a.id()
    );
}

async fn a_rotation_is_prepared_then_committed(db: &TestDatabase) {
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();
    let both = KeyRing::new([old.clone(), new.clone()]).unwrap();
    store::verify(&db.db, &both).await.unwrap();
    assert_eq!(
        store::prepare(&db.db, &both, &new).await.unwrap(),
        state(&old, Some(&new))
    );
    assert_eq!(
        store::state(&db.db).await.unwrap(),
        Some(state(&old, Some(&new)))
    );
    // Until the commit the old key seals, and a host with only the old key still opens.
    assert_eq!(
        store::sealing_key(&db.db, &both).await.unwrap().id(),
        old.id()
    );
    assert_eq!(
        store::verify(&db.db, &KeyRing::from(old.clone()))
            .await
            .unwrap(),
        state(&old, Some(&new))
    );
    let next = store::commit_with(&db.db, &both).await.unwrap();
    assert_eq!(next.id(), new.id());
    assert_eq!(
        store::finish_commit(&db.db, next).await.unwrap(),
        state(&new, None)
    );
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&new, None)));
    assert_eq!(
        store::sealing_key(&db.db, &both).await.unwrap().id(),
        new.id()
    );
    assert_eq!(
        store::verify(&db.db, &KeyRing::from(new.clone()))
            .await
            .unwrap(),
        state(&new, None)
    );
    assert!(
        store::settings_sealed(&db.db, &KeyRing::from(new.clone()))
            .await
            .unwrap()
    );
    let error = store::verify(&db.db, &KeyRing::from(old.clone()))
        .await
        .unwrap_err();
    assert_eq!(error.missing_key(), Some(new.id().as_str()));
    // Nothing is prepared any more.
    assert!(matches!(
        store::commit_with(&db.db, &both).await,
        Err(Error::NoRotationPrepared)
    ));
}

async fn a_commit_needs_a_prepared_rotation_and_its_key(db: &TestDatabase) {
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();
    let newer = EncryptionKey::generate();
    let ring = KeyRing::new([old.clone(), new.clone(), newer.clone()]).unwrap();
    // No row at all, then a row with nothing prepared.
    let error = store::commit_with(&db.db, &ring).await.unwrap_err();
    assert!(matches!(error, Error::NoRotationPrepared), "{error:?}");
    assert_eq!(
        error.to_string(),
        "no key rotation is prepared for this database; prepare one first"
    );
    store::verify(&db.db, &ring).await.unwrap();
    assert!(matches!(
        store::commit_with(&db.db, &ring).await,
        Err(Error::NoRotationPrepared)
    ));
    // A second prepare replaces the first.
    store::prepare(&db.db, &ring, &new).await.unwrap();
    assert_eq!(
        store::prepare(&db.db, &ring, &newer).await.unwrap(),
        state(&old, Some(&newer))
    );
    // A host without the prepared key cannot commit, and is told which key it lacks.
    let without = KeyRing::new([old.clone(), new.clone()]).unwrap();
    let error = store::commit_with(&db.db, &without).await.unwrap_err();
    assert_eq!(error.missing_key(), Some(newer.id().as_str()));
    assert_eq!(
        store::commit_with(&db.db, &ring).await.unwrap().id(),
        newer.id()
    );
}

async fn a_prepared_key_whose_check_does_not_open_is_refused(db: &TestDatabase) {
    let old = EncryptionKey::generate();
    let new = EncryptionKey::generate();
    let ring = KeyRing::new([old.clone(), new.clone()]).unwrap();
    // A rotation prepared on a database with no key yet records the primary first.
    assert_eq!(
        store::prepare(&db.db, &ring, &new).await.unwrap(),
        state(&old, Some(&new))
    );
    // The prepared check opens, but holds another text.
    set_column(
        db,
        "prepared_sealed",
        new.seal(b"something else", PREPARED_AAD),
    )
    .await;
    assert!(matches!(
        store::commit_with(&db.db, &ring).await,
        Err(Error::CannotOpen)
    ));
    // The prepared check sealed for another purpose does not open at all.
    set_column(
        db,
        "prepared_sealed",
        new.seal(CHECK_PLAINTEXT, OLD_CHECK_AAD),
    )
    .await;
    assert!(matches!(
        store::commit_with(&db.db, &ring).await,
        Err(Error::CannotOpen)
    ));
    set_column(
        db,
        "prepared_sealed",
        new.seal(CHECK_PLAINTEXT, PREPARED_AAD),
    )
    .await;
    assert_eq!(
        store::commit_with(&db.db, &ring).await.unwrap().id(),
        new.id()
    );
}

async fn replace_makes_a_key_current_with_nothing_prepared(db: &TestDatabase) {
    let lost = EncryptionKey::generate();
    let next = EncryptionKey::generate();
    let reset = EncryptionKey::generate();
    let ring = KeyRing::new([lost.clone(), next.clone()]).unwrap();
    store::prepare(&db.db, &ring, &next).await.unwrap();
    assert_eq!(
        store::replace(&db.db, &reset).await.unwrap(),
        state(&reset, None)
    );
    assert_eq!(
        store::state(&db.db).await.unwrap(),
        Some(state(&reset, None))
    );
    let only_reset = KeyRing::from(reset.clone());
    assert_eq!(
        store::verify(&db.db, &only_reset).await.unwrap(),
        state(&reset, None)
    );
    assert!(store::settings_sealed(&db.db, &only_reset).await.unwrap());
    assert_eq!(
        store::sealing_key(&db.db, &only_reset).await.unwrap().id(),
        reset.id()
    );
}

async fn an_older_database_is_marked_settings_sealed(db: &TestDatabase) {
    let key = EncryptionKey::generate();
    let ring = KeyRing::from(key.clone());
    store::verify(&db.db, &ring).await.unwrap();
    // As a version from before settings seals left it.
    set_column(db, "sealed", key.seal(CHECK_PLAINTEXT, OLD_CHECK_AAD)).await;
    assert!(!store::settings_sealed(&db.db, &ring).await.unwrap());
    assert_eq!(
        store::verify(&db.db, &ring).await.unwrap(),
        state(&key, None)
    );
    store::mark_settings_sealed(&db.db, &key).await.unwrap();
    assert!(store::settings_sealed(&db.db, &ring).await.unwrap());
    assert_eq!(store::state(&db.db).await.unwrap(), Some(state(&key, None)));
}

async fn a_check_value_that_does_not_open_is_refused(db: &TestDatabase) {
    let key = EncryptionKey::generate();
    let ring = KeyRing::from(key.clone());
    store::verify(&db.db, &ring).await.unwrap();
    for check in [
        // Opens, but holds another text.
        key.seal(b"not the check", OLD_CHECK_AAD),
        key.seal(b"not the check", b"key_check:1:settings-sealed"),
        // Sealed for another purpose.
        key.seal(CHECK_PLAINTEXT, PREPARED_AAD),
        // Sealed with another key under this key's name (the key was replaced by hand).
        EncryptionKey::generate().seal(CHECK_PLAINTEXT, OLD_CHECK_AAD),
    ] {
        set_column(db, "sealed", check).await;
        assert!(matches!(
            store::verify(&db.db, &ring).await,
            Err(Error::CannotOpen)
        ));
        assert!(matches!(
            store::settings_sealed(&db.db, &ring).await,
            Err(Error::CannotOpen)
        ));
    }
}

async fn mark_settings_sealed_needs_a_recorded_key(db: &TestDatabase) {
    let key = EncryptionKey::generate();
    assert!(matches!(
        store::mark_settings_sealed(&db.db, &key).await,
        Err(Error::CannotOpen)
    ));
    assert_eq!(store::state(&db.db).await.unwrap(), None);
}
