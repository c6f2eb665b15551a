//! The token store: one row per (provider, tenant, identity key) with the identity's one
//! refresh token and its own access token (for the resource `access_resource` names,
//! `mail` when null), the access tokens of other resources in `oauth_access_token`, all
//! sealed with the row's identity (and the resource) as associated data, a version for
//! compare-and-swap, and a refresh lease for coordination between processes.

use chrono::{DateTime, Utc};
use mailroom_crypto::{EncryptionKey, KeyRing, store};
use mailroom_model::{Provider, Secret};
use sea_orm::sea_query::{Expr, Func, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};

use crate::entity::oauth_access_token;
use crate::entity::oauth_token::{self, Column};
use crate::resource::Resource;
use crate::signin::SignedIn;
use crate::{Error, Result};

/// The prefix of the identity keys under which app-only tokens are cached:
/// `app:{credential kind}:{client}:{resource}`. No sign-in's key starts with it (those are
/// `oid:`, `sub:` or an address).
pub(crate) const APP_KEY_PREFIX: &str = "app:";

const VALID: &str = "valid";
const REVOKED: &str = "revoked";
/// The resource of a row's own access token when `access_resource` is null (every row
/// from before resources).
const MAIL: &str = "mail";

/// The associated data's column name of `resource`'s access token: `access` for `mail`
/// (as every row from before resources has it), `access:{resource}` otherwise, so a
/// token cannot be relabelled as another resource's.
fn access_column(resource: &str) -> String {
    if resource == MAIL {
        "access".to_owned()
    } else {
        format!("access:{resource}")
    }
}

/// `access_version` with its null read as the row's `version`: the version at which the
/// row's own access token was written, kept when the row's version moves for another
/// reason (another resource's refresh, a re-seal, a revocation).
fn own_access_version() -> SimpleExpr {
    Func::coalesce([
        Expr::col(Column::AccessVersion).into(),
        Expr::col(Column::Version).into(),
    ])
    .into()
}

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

/// One resource's access token of a stored sign-in, opened. `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct ResourceAccessToken {
    /// The resource ([`Resource::storage_key`]: `mail`, `graph`).
    pub resource: String,
    /// The access token.
    pub access_token: Secret,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Its granted scopes, space-separated.
    pub scopes: String,
    /// The row version at which it was written: a refresh of another resource moves the
    /// row's version but not this.
    pub version: i64,
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
    /// The row's own access token (for [`StoredToken::access_resource`]).
    pub access_token: Secret,
    /// The refresh token, if the provider issued one: one per identity, whatever the
    /// resource.
    pub refresh_token: Option<Secret>,
    /// When the row's own access token expires.
    pub expires_at: DateTime<Utc>,
    /// The row's own access token's granted scopes, space-separated.
    pub scopes: String,
    /// Incremented on every change (compare-and-swap).
    pub version: i64,
    /// The resource of the row's own access token (the one the sign-in's code exchange
    /// returned): `mail` for every row from before resources.
    pub access_resource: String,
    /// The version at which the row's own access token was written.
    pub access_version: i64,
    /// The access tokens of the identity's other resources.
    pub other_access_tokens: Vec<ResourceAccessToken>,
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
    /// The resources it holds an access token for (`mail`, `graph`), the row's own first.
    pub access_resources: Vec<String>,
    /// For an app-only token, the app's credential kind (`client-secret`, `certificate`,
    /// `service-account`); `None` for a person's sign-in.
    pub credential: Option<String>,
}

impl StoredToken {
    /// The access token of `resource`, if one is stored.
    pub fn access_for(&self, resource: Resource) -> Option<ResourceAccessToken> {
        let wanted = resource.storage_key();
        if self.access_resource == wanted {
            return Some(ResourceAccessToken {
                resource: self.access_resource.clone(),
                access_token: self.access_token.clone(),
                expires_at: self.expires_at,
                scopes: self.scopes.clone(),
                version: self.access_version,
            });
        }
        self.other_access_tokens
            .iter()
            .find(|token| token.resource == wanted)
            .cloned()
    }
}

/// New tokens from a refresh.
#[derive(Debug)]
pub(crate) struct RefreshedTokens<'a> {
    pub(crate) resource: Resource,
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

    fn open(
        &self,
        model: oauth_token::Model,
        others: Vec<oauth_access_token::Model>,
    ) -> Result<StoredToken> {
        let key = Self::key_of(&model)?;
        let access_resource = model
            .access_resource
            .clone()
            .unwrap_or_else(|| MAIL.to_owned());
        let access_token = Secret::new(
            self.key
                .open_string(
                    &model.access_token_sealed,
                    &key.aad(&access_column(&access_resource)),
                )?
                .as_str(),
        );
        let other_access_tokens = others
            .into_iter()
            .filter(|other| other.resource != access_resource)
            .map(|other| {
                Ok(ResourceAccessToken {
                    access_token: Secret::new(
                        self.key
                            .open_string(
                                &other.access_token_sealed,
                                &key.aad(&access_column(&other.resource)),
                            )?
                            .as_str(),
                    ),
                    resource: other.resource,
                    expires_at: other.expires_at,
                    scopes: other.scopes,
                    version: other.issued_version,
                })
            })
            .collect::<Result<Vec<_>>>()?;
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
            access_version: model.access_version.unwrap_or(model.version),
            access_resource,
            other_access_tokens,
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

    async fn others_of(&self, id: i64) -> Result<Vec<oauth_access_token::Model>> {
        Ok(oauth_access_token::Entity::find()
            .filter(oauth_access_token::Column::TokenId.eq(id))
            .order_by_asc(oauth_access_token::Column::Resource)
            .all(self.db)
            .await?)
    }

    async fn open_with_others(&self, model: oauth_token::Model) -> Result<StoredToken> {
        let others = self.others_of(model.id).await?;
        self.open(model, others)
    }

    /// The token stored under `key`, with the access tokens of every resource.
    pub async fn load(&self, key: &TokenKey) -> Result<Option<StoredToken>> {
        match Self::find(key).one(self.db).await? {
            Some(model) => Ok(Some(self.open_with_others(model).await?)),
            None => Ok(None),
        }
    }

    /// Stores a sign-in, replacing whatever was stored for the same identity: its access
    /// token becomes the row's own (for the sign-in's resource), and the access tokens of
    /// other resources from the previous sign-in are dropped (the next use refreshes them
    /// with the new refresh token).
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
        let resource = signed_in.resource.storage_key();
        let version = match &active.version {
            sea_orm::ActiveValue::Set(version) | sea_orm::ActiveValue::Unchanged(version) => {
                *version
            }
            sea_orm::ActiveValue::NotSet => 1,
        };
        active.address = Set(signed_in.identity.address.clone());
        active.access_token_sealed = Set(sealing.seal(
            tokens.access_token.expose().as_bytes(),
            &key.aad(&access_column(resource)),
        ));
        active.access_resource = Set((resource != MAIL).then(|| resource.to_owned()));
        active.access_version = Set(Some(version));
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
            oauth_access_token::Entity::delete_many()
                .filter(oauth_access_token::Column::TokenId.eq(active.id.clone().unwrap()))
                .exec(self.db)
                .await?;
            active.update(self.db).await?
        } else {
            active.insert(self.db).await?
        };
        self.open(model, Vec::new())
    }

    /// Makes sure the app-only token row of `key` exists (an expired, empty token at
    /// version 1 when it did not), so processes can take its lease before the first token
    /// is requested. Racing processes insert one row: the others' inserts do nothing.
    pub(crate) async fn ensure_app_row(
        &self,
        key: &TokenKey,
        address: &str,
        resource: Resource,
        now: DateTime<Utc>,
    ) -> Result<()> {
        debug_assert!(key.identity_key.starts_with(APP_KEY_PREFIX));
        let sealing = store::sealing_key(self.db, self.key).await?;
        let resource = resource.storage_key();
        let row = oauth_token::ActiveModel {
            provider: Set(key.provider.as_str().to_owned()),
            tenant: Set(key.tenant.clone()),
            identity_key: Set(key.identity_key.clone()),
            address: Set(address.trim().to_owned()),
            access_token_sealed: Set(sealing.seal(b"", &key.aad(&access_column(resource)))),
            expires_at: Set(DateTime::<Utc>::UNIX_EPOCH),
            scopes: Set(String::new()),
            version: Set(1),
            status: Set(VALID.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            access_resource: Set((resource != MAIL).then(|| resource.to_owned())),
            // The rest start null: no refresh token, status reason, lease, refresh or
            // sign-in, and the access version is the row's (1).
            ..Default::default()
        };
        oauth_token::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    Column::Provider,
                    Column::Tenant,
                    Column::IdentityKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        Ok(())
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

    /// Stores refreshed tokens if the row is still at `version` (compare-and-swap): the
    /// rotated refresh token on the row (version + 1) and the resource's access token in
    /// its place — the row's own when it is the row's resource, else its
    /// `oauth_access_token` row, written after the compare-and-swap succeeded. Call it
    /// inside a transaction so both land together. They are sealed with the database's
    /// current key, asked just before; a rotation committed since (or since the refresh
    /// began) changed the row's version, so this writes nothing and returns false.
    pub(crate) async fn complete_refresh(
        &self,
        token: &StoredToken,
        new: &RefreshedTokens<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sealing = store::sealing_key(self.db, self.key).await?;
        let key = &token.key;
        let resource = new.resource.storage_key();
        let sealed_access = sealing.seal(
            new.access_token.expose().as_bytes(),
            &key.aad(&access_column(resource)),
        );
        let own = resource == token.access_resource;
        let mut update = oauth_token::Entity::update_many();
        if own {
            update = update
                .col_expr(
                    Column::AccessTokenSealed,
                    Expr::value(sealed_access.clone()),
                )
                .col_expr(Column::ExpiresAt, Expr::value(new.expires_at))
                .col_expr(Column::AccessVersion, Expr::value(token.version + 1));
            if let Some(scopes) = &new.scopes {
                update = update.col_expr(Column::Scopes, Expr::value(scopes.clone()));
            }
        } else {
            update = update.col_expr(Column::AccessVersion, own_access_version());
        }
        let update = update
            .col_expr(
                Column::RefreshTokenSealed,
                Expr::value(
                    new.refresh_token
                        .map(|t| sealing.seal(t.expose().as_bytes(), &key.aad("refresh"))),
                ),
            )
            .col_expr(Column::Version, Expr::value(token.version + 1))
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::RefreshedAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now));
        let result = update
            .filter(Column::Id.eq(token.id))
            .filter(Column::Version.eq(token.version))
            .exec(self.db)
            .await?;
        if result.rows_affected != 1 {
            return Ok(false);
        }
        if !own {
            oauth_access_token::Entity::delete_many()
                .filter(oauth_access_token::Column::TokenId.eq(token.id))
                .filter(oauth_access_token::Column::Resource.eq(resource))
                .exec(self.db)
                .await?;
            oauth_access_token::ActiveModel {
                token_id: Set(token.id),
                resource: Set(resource.to_owned()),
                access_token_sealed: Set(sealed_access),
                expires_at: Set(new.expires_at),
                scopes: Set(new.scopes.clone().unwrap_or_default()),
                issued_version: Set(token.version + 1),
            }
            .insert(self.db)
            .await?;
        }
        Ok(true)
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
            .col_expr(Column::AccessVersion, own_access_version())
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
        let opened = self.open_with_others(model).await.ok();
        // The cascade would do it; said here too, for a connection without foreign keys.
        oauth_access_token::Entity::delete_many()
            .filter(oauth_access_token::Column::TokenId.eq(id))
            .exec(self.db)
            .await?;
        oauth_token::Entity::delete_many()
            .filter(Column::Id.eq(id))
            .exec(self.db)
            .await?;
        Ok(opened)
    }

    /// Every stored token, without secrets.
    pub async fn list(&self) -> Result<Vec<TokenSummary>> {
        let mut others = std::collections::HashMap::<i64, Vec<String>>::new();
        for other in oauth_access_token::Entity::find()
            .order_by_asc(oauth_access_token::Column::Resource)
            .all(self.db)
            .await?
        {
            others
                .entry(other.token_id)
                .or_default()
                .push(other.resource);
        }
        oauth_token::Entity::find()
            .order_by_asc(Column::Address)
            .order_by_asc(Column::Provider)
            .all(self.db)
            .await?
            .into_iter()
            .map(|model| {
                let own = model
                    .access_resource
                    .clone()
                    .unwrap_or_else(|| MAIL.to_owned());
                let mut access_resources = vec![own.clone()];
                access_resources.extend(
                    others
                        .remove(&model.id)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|resource| *resource != own),
                );
                let credential = model
                    .identity_key
                    .strip_prefix(APP_KEY_PREFIX)
                    .and_then(|rest| rest.split(':').next())
                    .map(str::to_owned);
                Ok(TokenSummary {
                    credential,
                    access_resources,
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

    /// Deletes every stored token (a lost key): every account signs in again (app-only
    /// tokens are requested again). Returns how many were deleted.
    pub async fn forget_all(&self) -> Result<u64> {
        oauth_access_token::Entity::delete_many()
            .exec(self.db)
            .await?;
        Ok(oauth_token::Entity::delete_many()
            .exec(self.db)
            .await?
            .rows_affected)
    }

    /// Re-seals every token with `new_key` — the rows' and every resource's access token
    /// in `oauth_access_token` — and counts a new version of each row (a key rotation's
    /// commit, inside the caller's transaction): a refresh that began before it then finds
    /// the row changed and stores nothing under the old key. The access tokens keep their
    /// versions (they did not change). Returns how many rows (sign-ins) were re-sealed.
    pub async fn reseal(&self, new_key: &EncryptionKey) -> Result<usize> {
        let models = oauth_token::Entity::find().all(self.db).await?;
        let count = models.len();
        for model in models {
            let key = Self::key_of(&model)?;
            for other in self.others_of(model.id).await? {
                let column = key.aad(&access_column(&other.resource));
                let plain = self.key.open(&other.access_token_sealed, &column)?;
                let mut active = other.into_active_model();
                active.access_token_sealed = Set(new_key.seal(&plain, &column));
                active.update(self.db).await?;
            }
            let access_aad = key.aad(&access_column(
                model.access_resource.as_deref().unwrap_or(MAIL),
            ));
            let access = self.key.open(&model.access_token_sealed, &access_aad)?;
            let refresh = model
                .refresh_token_sealed
                .as_ref()
                .map(|sealed| self.key.open(sealed, &key.aad("refresh")))
                .transpose()?;
            let version = model.version + 1;
            let access_version = model.access_version.unwrap_or(model.version);
            let mut active = model.into_active_model();
            active.version = Set(version);
            active.access_version = Set(Some(access_version));
            active.access_token_sealed = Set(new_key.seal(&access, &access_aad));
            active.refresh_token_sealed =
                Set(refresh.map(|plain| new_key.seal(&plain, &key.aad("refresh"))));
            active.update(self.db).await?;
        }
        Ok(count)
    }
}

/// Deletes the cached app-only tokens of `provider`'s app (its registration changed: they
/// were issued to what it was). Returns how many were deleted.
pub(crate) async fn delete_app_tokens<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
) -> Result<u64> {
    let rows = oauth_token::Entity::find()
        .filter(Column::Provider.eq(provider.as_str()))
        .filter(Column::IdentityKey.starts_with(APP_KEY_PREFIX))
        .all(db)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    oauth_access_token::Entity::delete_many()
        .filter(oauth_access_token::Column::TokenId.is_in(ids.clone()))
        .exec(db)
        .await?;
    Ok(oauth_token::Entity::delete_many()
        .filter(Column::Id.is_in(ids))
        .exec(db)
        .await?
        .rows_affected)
}
