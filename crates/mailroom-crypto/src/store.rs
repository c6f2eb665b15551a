//! Which key the database's secrets are sealed with: the `key_check` row.
//!
//! The row names the database's current key (and a prepared next one during a rotation)
//! and holds a value sealed with each, so a host learns at open whether it has the key,
//! and every write that seals a secret asks here, in its own transaction, which key to
//! seal with ([`sealing_key`]). That question locks the row: a rotation's commit
//! (which re-seals every secret in one transaction and then names the new key here) and a
//! write never interleave, so no value is ever written under a key the database has
//! stopped using.
//!
//! A rotation: [`prepare`] names the next key (which every host must receive before the
//! commit); [`commit_with`] returns it, under the row's lock, for the caller to re-seal
//! with in the same transaction, and [`finish_commit`] makes it current. A crash at any
//! point leaves the row saying what is true: before the commit the old key seals and the
//! new one is "prepared"; after it the new one seals.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, Set};

use crate::{EncryptionKey, Error, KeyRing, Result};

const CHECK_ID: i32 = 1;
const CHECK_PLAINTEXT: &[u8] = b"mailroom key check";
/// The check value of a database from before settings seals.
const CHECK_AAD: &[u8] = b"key_check:1";
/// The check value of a database whose every account and app row carries a settings seal
/// (see [`settings_sealed`]); the marker is sealed, so it cannot be removed without the key.
const SEALED_CHECK_AAD: &[u8] = b"key_check:1:settings-sealed";
const PREPARED_AAD: &[u8] = b"key_check:1:prepared";

mod key_check {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_check")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub key_id: String,
        pub sealed: Vec<u8>,
        pub prepared_key_id: Option<String>,
        pub prepared_sealed: Option<Vec<u8>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What the database says about its keys; readable without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The fingerprint of the key every secret is sealed with.
    pub current: String,
    /// The fingerprint of the key a prepared rotation will seal with, if one is prepared.
    pub prepared: Option<String>,
}

impl From<key_check::Model> for KeyState {
    fn from(model: key_check::Model) -> Self {
        Self {
            current: model.key_id,
            prepared: model.prepared_key_id,
        }
    }
}

/// The database's key state, if it has recorded a key yet. Needs no key.
pub async fn state<C: ConnectionTrait>(db: &C) -> Result<Option<KeyState>> {
    Ok(key_check::Entity::find_by_id(CHECK_ID)
        .one(db)
        .await?
        .map(KeyState::from))
}

/// Checks that `ring` holds the database's current key and that it opens the check
/// value; a database with no key yet is given the ring's [`KeyRing::primary`].
/// [`Error::MissingKey`] names a key this host lacks.
pub async fn verify<C: ConnectionTrait>(db: &C, ring: &KeyRing) -> Result<KeyState> {
    match key_check::Entity::find_by_id(CHECK_ID).one(db).await? {
        Some(check) => {
            open_check(ring, &check)?;
            Ok(check.into())
        }
        None => {
            let inserted = current_row(ring.primary()).insert(db).await;
            match inserted {
                Ok(model) => Ok(model.into()),
                // Another process recorded its key first: check against that one.
                Err(_) => match key_check::Entity::find_by_id(CHECK_ID).one(db).await? {
                    Some(check) => {
                        ring.require(&check.key_id)?;
                        Ok(check.into())
                    }
                    None => Err(Error::CannotOpen),
                },
            }
        }
    }
}

/// Opens the check value with the database's key: whether the database's rows all carry
/// settings seals.
fn open_check(ring: &KeyRing, check: &key_check::Model) -> Result<bool> {
    let key = ring.require(&check.key_id)?;
    for (aad, sealed) in [(SEALED_CHECK_AAD, true), (CHECK_AAD, false)] {
        if let Ok(plain) = key.open(&check.sealed, aad) {
            if plain.as_slice() == CHECK_PLAINTEXT {
                return Ok(sealed);
            }
        }
    }
    Err(Error::CannotOpen)
}

/// Whether every account and app row must carry a settings seal (a seal over the columns
/// that decide where a secret is sent, made with the key): true for every database made
/// or rotated since seals exist; false only for an older one until
/// [`mark_settings_sealed`]. The answer is itself sealed, so it cannot be turned off
/// without the key.
pub async fn settings_sealed<C: ConnectionTrait>(db: &C, ring: &KeyRing) -> Result<bool> {
    match key_check::Entity::find_by_id(CHECK_ID).one(db).await? {
        Some(check) => open_check(ring, &check),
        None => Ok(true),
    }
}

/// Records that every row now carries a settings seal, in the transaction that sealed
/// them with `key` (the database's current key).
pub async fn mark_settings_sealed<C: ConnectionTrait>(db: &C, key: &EncryptionKey) -> Result<()> {
    let check = lock(db).await?.ok_or(Error::CannotOpen)?;
    let mut active: key_check::ActiveModel = check.into();
    active.sealed = Set(key.seal(CHECK_PLAINTEXT, SEALED_CHECK_AAD));
    active.update(db).await?;
    Ok(())
}

/// Locks the key row for the rest of the caller's transaction (a write, so SQLite takes
/// its write lock here and waits its busy timeout rather than failing later) and reads it.
async fn lock<C: ConnectionTrait>(db: &C) -> Result<Option<key_check::Model>> {
    key_check::Entity::update_many()
        .col_expr(
            key_check::Column::KeyId,
            Expr::col(key_check::Column::KeyId).into(),
        )
        .filter(key_check::Column::Id.eq(CHECK_ID))
        .exec(db)
        .await?;
    Ok(key_check::Entity::find_by_id(CHECK_ID).one(db).await?)
}

/// The key a write seals with: the database's current key, read under the key row's
/// lock in the caller's transaction, so a rotation cannot commit between this read and
/// the caller's commit. [`Error::MissingKey`] when this host lacks it: nothing is written.
pub async fn sealing_key<'k, C: ConnectionTrait>(
    db: &C,
    ring: &'k KeyRing,
) -> Result<&'k EncryptionKey> {
    match lock(db).await? {
        Some(check) => ring.require(&check.key_id),
        None => {
            let state = verify(db, ring).await?;
            ring.require(&state.current)
        }
    }
}

/// Records `next` as the key a rotation will seal with (replacing any rotation prepared
/// before). The database keeps sealing with its current key until [`finish_commit`].
pub async fn prepare<C: ConnectionTrait>(
    db: &C,
    ring: &KeyRing,
    next: &EncryptionKey,
) -> Result<KeyState> {
    let check = match lock(db).await? {
        Some(check) => check,
        None => {
            verify(db, ring).await?;
            lock(db).await?.ok_or(Error::CannotOpen)?
        }
    };
    let mut active: key_check::ActiveModel = check.into();
    active.prepared_key_id = Set(Some(next.id()));
    active.prepared_sealed = Set(Some(next.seal(CHECK_PLAINTEXT, PREPARED_AAD)));
    Ok(active.update(db).await?.into())
}

/// The start of a rotation's commit, in the caller's transaction: locks the key row and
/// returns the prepared key from `ring` for the caller to re-seal every secret with, then
/// call [`finish_commit`]. [`Error::NoRotationPrepared`] when none is;
/// [`Error::MissingKey`] when this host lacks the prepared key.
pub async fn commit_with<'k, C: ConnectionTrait>(
    db: &C,
    ring: &'k KeyRing,
) -> Result<&'k EncryptionKey> {
    let check = lock(db).await?.ok_or(Error::NoRotationPrepared)?;
    let (Some(id), Some(sealed)) = (&check.prepared_key_id, &check.prepared_sealed) else {
        return Err(Error::NoRotationPrepared);
    };
    let next = ring.require(id)?;
    if next.open(sealed, PREPARED_AAD)?.as_slice() != CHECK_PLAINTEXT {
        return Err(Error::CannotOpen);
    }
    Ok(next)
}

/// Makes `next` the database's current key and clears the prepared one; in the
/// transaction that re-sealed every secret with it.
pub async fn finish_commit<C: ConnectionTrait>(db: &C, next: &EncryptionKey) -> Result<KeyState> {
    replace(db, next).await
}

/// Makes `key` the database's key with nothing prepared (a lost key's reset, or a
/// rotation's end), in the caller's transaction, which must also have sealed every
/// row's settings with it: the row says they are.
pub async fn replace<C: ConnectionTrait>(db: &C, key: &EncryptionKey) -> Result<KeyState> {
    key_check::Entity::delete_many().exec(db).await?;
    Ok(current_row(key).insert(db).await?.into())
}

/// The row naming `key` as the database's key, nothing prepared.
fn current_row(key: &EncryptionKey) -> key_check::ActiveModel {
    key_check::ActiveModel {
        id: Set(CHECK_ID),
        key_id: Set(key.id()),
        sealed: Set(key.seal(CHECK_PLAINTEXT, SEALED_CHECK_AAD)),
        prepared_key_id: Set(None),
        prepared_sealed: Set(None),
    }
}
