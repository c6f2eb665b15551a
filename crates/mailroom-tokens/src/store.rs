//! The token store: one row per (provider, tenant, identity key), access and
//! refresh tokens sealed with the row's identity as associated data, a version for
//! compare-and-swap, and a refresh lease for coordination between processes.

use chrono::{DateTime, Utc};
use mailroom_crypto::{EncryptionKey, KeyRing, store};
use mailroom_model::{Provider, Secret};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};

use crate::entity::oauth_token::{self, Column};
use crate::signin::SignedIn;
use crate::{Error, Result};

const VALID: &str = "valid";
const REVOKED: &str = "revoked";

/// The identity a token is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Microsoft or Google.
    pub provider: Provider,
    /// The app's tenant (`""` for Google).
    pub tenant: String,
    /// Who signed in: the provider's stable identity of the person
    /// ([`crate::identity::Identity::key`]: `oid:{tid}:{oid}`, `sub:{sub}`), or for a
    /// sign-in stored before identities were kept, the address trimmed and lower-cased.
    pub identity_key: String,
}

impl TokenKey {
    /// The key of a sign-in stored under `address` (before identities were kept).
    pub fn new(provider: Provider, tenant: &str, address: &str) -> Self {
        Self {
            provider,
            tenant: tenant.to_owned(),
            identity_key: address.trim().to_lowercase(),
        }
    }

    /// The key of the sign-in an account sends with: its recorded identity, else its
    /// address (a sign-in stored before identities were kept).
    pub fn of_account(
        provider: Provider,
        tenant: &str,
        address: &str,
        token_identity: Option<&str>,
    ) -> Self {
        match token_identity {
            Some(identity) => Self {
                provider,
                tenant: tenant.to_owned(),
                identity_key: identity.to_owned(),
            },
            None => Self::new(provider, tenant, address),
        }
    }

    fn aad(&self, column: &str) -> Vec<u8> {
        format!(
            "oauth_token:{}:{}:{}:{column}",
            self.provider, self.tenant, self.identity_key
        )
        .into_bytes()
    }
}

/// Whether a stored sign-in can still be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    /// Usable (the access token may still need a refresh).
    Valid,
    /// The provider rejected the refresh token; a sign-in is needed.
    Revoked {
        /// The provider's explanation.
        reason: String,
    },
}

/// A stored token, opened. `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Row id.
    pub id: i64,
    /// Its identity.
    pub key: TokenKey,
    /// The address as signed in.
    pub address: String,
    /// The access token.
    pub access_token: Secret,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<Secret>,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// Granted scopes, space-separated.
    pub scopes: String,
    /// Incremented on every change (compare-and-swap).
    pub version: i64,
    /// Usable or revoked.
    pub status: TokenStatus,
    /// When it was last refreshed.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the person last signed in (for rows from before it was kept: when the row was
    /// created).
    pub signed_in_at: DateTime<Utc>,
}

/// What `token list` shows: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenSummary {
    /// The address that signed in.
    pub address: String,
    /// The key it is stored under ([`TokenKey::identity_key`]): the person's stable
    /// identity, or for older rows the lower-cased address.
    pub identity_key: String,
    /// The provider.
    pub provider: Provider,
    /// The tenant.
    pub tenant: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// When it was last refreshed, if ever.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// `valid` or `revoked`.
    pub status: String,
    /// Why it was revoked.
    pub status_reason: Option<String>,
    /// Granted scopes.
    pub scopes: String,
    /// Has a refresh token.
    pub has_refresh_token: bool,
    /// The row version.
    pub version: i64,
}

/// New tokens from a refresh.
#[derive(Debug)]
pub(crate) struct RefreshedTokens<'a> {
    pub(crate) access_token: &'a Secret,
    pub(crate) refresh_token: Option<&'a Secret>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) scopes: Option<String>,
}

/// The token repository over any sea-orm connection or transaction.
#[derive(Debug)]
pub struct TokenStore<'a, C> {
    db: &'a C,
    key: &'a KeyRing,
}

impl<'a, C: ConnectionTrait> TokenStore<'a, C> {
    /// A store over `db`, sealing tokens with `key`.
    pub fn new(db: &'a C, key: &'a KeyRing) -> Self {
        Self { db, key }
    }

    fn key_of(model: &oauth_token::Model) -> Result<TokenKey> {
        Ok(TokenKey {
            provider: model.provider.parse().map_err(|_| {
                Error::CorruptRow(format!("provider `{}` of a token", model.provider))
            })?,
            tenant: model.tenant.clone(),
            identity_key: model.identity_key.clone(),
        })
    }

    fn open(&self, model: oauth_token::Model) -> Result<StoredToken> {
        let key = Self::key_of(&model)?;
        let access_token = Secret::new(
            self.key
                .open_string(&model.access_token_sealed, &key.aad("access"))?
                .as_str(),
        );
        let refresh_token = match &model.refresh_token_sealed {
            Some(sealed) => Some(Secret::new(
                self.key.open_string(sealed, &key.aad("refresh"))?.as_str(),
            )),
            None => None,
        };
        let status = match model.status.as_str() {
            VALID => TokenStatus::Valid,
            _ => TokenStatus::Revoked {
                reason: model.status_reason.clone().unwrap_or_default(),
            },
        };
        Ok(StoredToken {
            id: model.id,
            key,
            address: model.address,
            access_token,
            refresh_token,
            expires_at: model.expires_at,
            scopes: model.scopes,
            version: model.version,
            status,
            refreshed_at: model.refreshed_at,
            updated_at: model.updated_at,
            signed_in_at: model.signed_in_at.unwrap_or(model.created_at),
        })
    }

    fn find(key: &TokenKey) -> sea_orm::Select<oauth_token::Entity> {
        oauth_token::Entity::find()
            .filter(Column::Provider.eq(key.provider.as_str()))
            .filter(Column::Tenant.eq(key.tenant.as_str()))
            .filter(Column::IdentityKey.eq(key.identity_key.as_str()))
    }

    /// The token stored under `key`.
    pub async fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>> {
        Self::find(key)
            .one(self.db)
            .await?
            .map(|model| self.open(model))
            .transpose()
    }

    /// Stores a sign-in, replacing whatever was stored for the same identity.
    pub async fn save_sign_in(
        &self,
        signed_in: &SignedIn,
        now: DateTime<Utc>,
    ) -> Result<StoredToken> {
        let key = signed_in.token_key();
        let tokens = &signed_in.tokens;
        // Asked first, in the caller's transaction: a rotation cannot commit between this
        // and the write, so the tokens are never stored under a key the database left.
        let sealing = store::sealing_key(self.db, self.key).await?;
        let expires_at = now
            + chrono::Duration::from_std(
                tokens
                    .expires_in
                    .unwrap_or(std::time::Duration::from_secs(3600)),
            )
            .unwrap_or(chrono::Duration::hours(1));
        let existing = Self::find(&key).one(self.db).await?;
        let mut active = match existing.clone() {
            Some(model) => {
                let version = model.version;
                let mut active = model.into_active_model();
                active.version = Set(version + 1);
                active
            }
            None => oauth_token::ActiveModel {
                provider: Set(key.provider.as_str().to_owned()),
                tenant: Set(key.tenant.clone()),
                identity_key: Set(key.identity_key.clone()),
                version: Set(1),
                created_at: Set(now),
                ..Default::default()
            },
        };
        active.address = Set(signed_in.identity.address.clone());
        active.access_token_sealed =
            Set(sealing.seal(tokens.access_token.expose().as_bytes(), &key.aad("access")));
        active.refresh_token_sealed = Set(tokens
            .refresh_token
            .as_ref()
            .map(|token| sealing.seal(token.expose().as_bytes(), &key.aad("refresh"))));
        active.expires_at = Set(expires_at);
        active.scopes = Set(tokens.scopes.join(" "));
        active.status = Set(VALID.to_owned());
        active.status_reason = Set(None);
        active.lease_owner = Set(None);
        active.lease_until = Set(None);
        active.refreshed_at = Set(None);
        active.updated_at = Set(now);
        active.signed_in_at = Set(Some(now));
        let model = if existing.is_some() {
            active.update(self.db).await?
        } else {
            active.insert(self.db).await?
        };
        self.open(model)
    }

    /// Takes the refresh lease of row `id` at `version` unless another live lease holds it.
    pub(crate) async fn try_acquire_lease(
        &self,
        id: i64,
        version: i64,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let result = oauth_token::Entity::update_many()
            .col_expr(Column::LeaseOwner, Expr::value(owner))
            .col_expr(Column::LeaseUntil, Expr::value(until))
            .filter(Column::Id.eq(id))
            .filter(Column::Version.eq(version))
            .filter(Column::Status.eq(VALID))
            .filter(
                Column::LeaseOwner
                    .is_null()
                    .or(Column::LeaseUntil.lt(now))
                    .or(Column::LeaseOwner.eq(owner)),
            )
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Stores refreshed tokens if the row is still at `version` (compare-and-swap), in one
    /// statement: a rotated refresh token is written together with its access token. They
    /// are sealed with the database's current key, asked just before; a rotation committed
    /// since (or since the refresh began) changed the row's version, so this writes
    /// nothing and returns false.
    pub(crate) async fn complete_refresh(
        &self,
        token: &StoredToken,
        new: &RefreshedTokens<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sealing = store::sealing_key(self.db, self.key).await?;
        let key = &token.key;
        let mut update = oauth_token::Entity::update_many()
            .col_expr(
                Column::AccessTokenSealed,
                Expr::value(sealing.seal(new.access_token.expose().as_bytes(), &key.aad("access"))),
            )
            .col_expr(
                Column::RefreshTokenSealed,
                Expr::value(
                    new.refresh_token
                        .map(|t| sealing.seal(t.expose().as_bytes(), &key.aad("refresh"))),
                ),
            )
            .col_expr(Column::ExpiresAt, Expr::value(new.expires_at))
            .col_expr(Column::Version, Expr::value(token.version + 1))
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::RefreshedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now));
        if let Some(scopes) = &new.scopes {
            update = update.col_expr(Column::Scopes, Expr::value(scopes.clone()));
        }
        let result = update
            .filter(Column::Id.eq(token.id))
            .filter(Column::Version.eq(token.version))
            .exec(self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives up a lease this owner holds.
    pub(crate) async fn release_lease(&self, id: i64, owner: &str) -> Result<()> {
        oauth_token::Entity::update_many()
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(Column::Id.eq(id))
            .filter(Column::LeaseOwner.eq(owner))
            .exec(self.db)
            .await?;
        Ok(())
    }

    /// Marks the row revoked (the provider refused its refresh token).
    pub(crate) async fn mark_revoked(
        &self,
        token: &StoredToken,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        oauth_token::Entity::update_many()
            .col_expr(Column::Status, Expr::value(REVOKED))
            .col_expr(
                Column::StatusReason,
                Expr::value(reason.chars().take(1000).collect::<String>()),
            )
            .col_expr(Column::Version, Expr::value(token.version + 1))
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(token.id))
            .filter(Column::Version.eq(token.version))
            .exec(self.db)
            .await?;
        Ok(())
    }

    /// Deletes the token of `key`, returning it (for revocation at the provider).
    pub async fn delete(&self, key: &TokenKey) -> Result<Option<StoredToken>> {
        let Some(model) = Self::find(key).one(self.db).await? else {
            return Ok(None);
        };
        let id = model.id;
        // Opening may fail with a wrong key; the row is deleted either way.
        let opened = self.open(model).ok();
        oauth_token::Entity::delete_many()
            .filter(Column::Id.eq(id))
            .exec(self.db)
            .await?;
        Ok(opened)
    }

    /// Every stored token, without secrets.
    pub async fn list(&self) -> Result<Vec<TokenSummary>> {
        oauth_token::Entity::find()
            .order_by_asc(Column::Address)
            .order_by_asc(Column::Provider)
            .all(self.db)
            .await?
            .into_iter()
            .map(|model| {
                Ok(TokenSummary {
                    provider: Self::key_of(&model)?.provider,
                    address: model.address,
                    identity_key: model.identity_key,
                    tenant: model.tenant,
                    expires_at: model.expires_at,
                    refreshed_at: model.refreshed_at,
                    status: model.status,
                    status_reason: model.status_reason,
                    scopes: model.scopes,
                    has_refresh_token: model.refresh_token_sealed.is_some(),
                    version: model.version,
                })
            })
            .collect()
    }

    /// Deletes every stored token (a lost key): every account signs in again. Returns how
    /// many were deleted.
    pub async fn forget_all(&self) -> Result<u64> {
        Ok(oauth_token::Entity::delete_many()
            .exec(self.db)
            .await?
            .rows_affected)
    }

    /// Re-seals every token with `new_key` and counts a new version of each (a key
    /// rotation's commit, inside the caller's transaction): a refresh that began before it
    /// then finds the row changed and stores nothing under the old key.
    pub async fn reseal(&self, new_key: &EncryptionKey) -> Result<usize> {
        let models = oauth_token::Entity::find().all(self.db).await?;
        let count = models.len();
        for model in models {
            let key = Self::key_of(&model)?;
            let access = self
                .key
                .open(&model.access_token_sealed, &key.aad("access"))?;
            let refresh = model
                .refresh_token_sealed
                .as_ref()
                .map(|sealed| self.key.open(sealed, &key.aad("refresh")))
                .transpose()?;
            let version = model.version + 1;
            let mut active = model.into_active_model();
            active.version = Set(version);
            active.access_token_sealed = Set(new_key.seal(&access, &key.aad("access")));
            active.refresh_token_sealed =
                Set(refresh.map(|plain| new_key.seal(&plain, &key.aad("refresh"))));
            active.update(self.db).await?;
        }
        Ok(count)
    }
}
