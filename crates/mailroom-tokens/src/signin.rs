//! Interactive sign-in: authorization code + PKCE through the loopback listener, or the
//! device authorization grant (Microsoft only), ending in a checked identity.

use std::future::Future;
use std::time::{Duration, SystemTime};

use mailroom_model::Provider;

use crate::app::AppRegistration;
use crate::identity::{Identity, identity_from_id_token};
use crate::loopback::{CallbackOutcome, LoopbackListener, Verdict};
use crate::oauth::{self, DeviceFailure, DevicePrompt, IssuedTokens, OAuthFailure, OAuthHttp};
use crate::resource::Resource;
use crate::{Error, Result};

/// How long a browser sign-in waits for the redirect by default.
pub const DEFAULT_SIGN_IN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What a sign-in expects.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    /// The account's SMTP user (the mailbox). `None` (or empty) accepts whoever signs in.
    /// Otherwise the person who signs in must be the mailbox's own: the signed-in address
    /// equals it (ignoring case), or the person is the one who signed in for it before
    /// (`known_identity`) — unless `shared_mailbox`.
    pub expected_address: Option<String>,
    /// The account is a shared mailbox: anyone may sign in for it (Exchange decides at
    /// send time whether that person may send as the mailbox), and the browser is not
    /// told whom to expect.
    pub shared_mailbox: bool,
    /// The identity key of the account's current sign-in ([`Identity::key`]): that person
    /// may sign in again even when their username changed since.
    pub known_identity: Option<String>,
    /// How long to wait for the browser's redirect.
    pub timeout: Duration,
    /// The resource the sign-in's access token is for: the authorize request, the code
    /// exchange and the device grant ask its scopes only (one resource per request).
    /// [`Resource::Mail`] asks exactly what a sign-in asked before resources.
    pub resource: Resource,
}

impl Default for SignInOptions {
    fn default() -> Self {
        Self {
            expected_address: None,
            shared_mailbox: false,
            known_identity: None,
            timeout: DEFAULT_SIGN_IN_TIMEOUT,
            resource: Resource::Mail,
        }
    }
}

impl SignInOptions {
    /// The address to suggest to the provider's sign-in page (`login_hint`): the
    /// mailbox's own, except for a shared mailbox, where a delegate signs in.
    pub(crate) fn login_hint(&self) -> Option<&str> {
        if self.shared_mailbox {
            return None;
        }
        self.expected_address
            .as_deref()
            .map(str::trim)
            .filter(|address| !address.is_empty())
    }

    /// Whether `identity` may sign in for the mailbox: the rule of
    /// [`SignInOptions::expected_address`].
    pub fn check(&self, identity: &Identity) -> Result<()> {
        let Some(expected) = self
            .expected_address
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            return Ok(());
        };
        if self.shared_mailbox
            || identity.address.trim().eq_ignore_ascii_case(expected)
            || self.known_identity.as_deref() == Some(identity.key().as_str())
        {
            return Ok(());
        }
        Err(Error::IdentityMismatch {
            signed_in: identity.address.clone(),
            expected: expected.to_owned(),
        })
    }
}

/// A completed sign-in, not yet stored. `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Who signed in.
    pub identity: Identity,
    /// The provider.
    pub provider: Provider,
    /// The app's tenant (`""` for Google), part of the token's key.
    pub tenant: String,
    /// The resource its access token is for.
    pub resource: Resource,
    pub(crate) tokens: IssuedTokens,
}

impl SignedIn {
    /// The key the sign-in is stored under: the person's stable identity.
    pub fn token_key(&self) -> crate::store::TokenKey {
        crate::store::TokenKey {
            provider: self.provider,
            tenant: self.tenant.clone(),
            identity_key: self.identity.key(),
        }
    }

    /// A sign-in from tokens obtained elsewhere (an import, a test); the caller vouches for
    /// the identity.
    pub fn from_tokens(
        identity: Identity,
        provider: Provider,
        tenant: &str,
        access_token: mailroom_model::Secret,
        refresh_token: Option<mailroom_model::Secret>,
        expires_in: Duration,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            identity,
            provider,
            tenant: tenant.to_owned(),
            resource: Resource::Mail,
            tokens: IssuedTokens {
                access_token,
                refresh_token,
                expires_in: Some(expires_in),
                scopes,
                id_token: None,
            },
        }
    }

    /// The same sign-in, its access token being for `resource` (tokens obtained elsewhere
    /// are for [`Resource::Mail`] unless said otherwise).
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = resource;
        self
    }

    /// True when the provider issued a refresh token (without one, the sign-in lasts only
    /// as long as the access token).
    pub fn has_refresh_token(&self) -> bool {
        self.tokens.refresh_token.is_some()
    }
}

/// True when the provider's words say the redirect URI is not registered: Entra's
/// `AADSTS50011` or Google's `redirect_uri_mismatch`.
fn is_redirect_mismatch(error: &str, description: Option<&str>) -> bool {
    error == "redirect_uri_mismatch"
        || error.contains("AADSTS50011:")
        || description.is_some_and(|d| d.trim_start().starts_with("AADSTS50011:"))
}

/// The provider's words of a failure, for recognizing an `AADSTS` code.
fn failure_words(failure: &OAuthFailure) -> (String, Option<String>) {
    match failure {
        OAuthFailure::Provider { error, description } => (error.clone(), description.clone()),
        OAuthFailure::Revoked(detail)
        | OAuthFailure::InteractionRequired(detail)
        | OAuthFailure::ConsentRequired(detail)
        | OAuthFailure::Transient(detail)
        | OAuthFailure::Malformed(detail) => match detail.split_once(": ") {
            Some((error, description)) => (error.to_owned(), Some(description.to_owned())),
            None => (detail.clone(), None),
        },
    }
}

/// A failure of a browser sign-in that sent `sent_redirect_uri`: a redirect URI the
/// registration lacks becomes [`Error::RedirectUriNotRegistered`] naming the URI to
/// register; anything else as [`failure`] says.
fn browser_failure(app: &AppRegistration, sent_redirect_uri: &str, failed: OAuthFailure) -> Error {
    let (error, description) = failure_words(&failed);
    if is_redirect_mismatch(&error, description.as_deref()) {
        return Error::RedirectUriNotRegistered {
            provider: app.provider,
            sent: sent_redirect_uri.to_owned(),
            to_register: app.redirect_uri_to_register(),
            detail: match description {
                Some(description) => format!("{error}: {description}"),
                None => error,
            },
        };
    }
    failure(failed)
}

/// An OAuth failure outside a token refresh, in the user's terms.
pub(crate) fn failure(failure: OAuthFailure) -> Error {
    let (error, description) = failure_words(&failure);
    // https://learn.microsoft.com/entra/identity-platform/reference-error-codes
    // AADSTS50194: a single-tenant app must use its tenant's endpoints.
    if description
        .as_deref()
        .is_some_and(|d| d.trim_start().starts_with("AADSTS50194:"))
        || error.contains("AADSTS50194:")
    {
        return Error::TenantRequired {
            detail: description.unwrap_or(error),
        };
    }
    match failure {
        OAuthFailure::Transient(message) => Error::Transient { message },
        OAuthFailure::Malformed(detail) => Error::MalformedResponse(detail),
        OAuthFailure::Provider { error, description } => Error::Provider { error, description },
        OAuthFailure::Revoked(detail)
        | OAuthFailure::InteractionRequired(detail)
        | OAuthFailure::ConsentRequired(detail) => Error::SignInFailed(format!(
            "the identity provider refused the sign-in: {detail}"
        )),
    }
}

/// Refuses a resource the app's provider does not serve (Microsoft Graph for Google).
pub(crate) fn check_resource(app: &AppRegistration, resource: Resource) -> Result<()> {
    if resource.is_graph() && app.provider != Provider::Microsoft {
        return Err(mailroom_model::ValidationError::new(
            "route",
            format!(
                "Microsoft Graph is a Microsoft route; a {} account sends through its own API",
                app.provider
            ),
            "use the default route for this account",
        )
        .into());
    }
    Ok(())
}

fn finish(
    app: &AppRegistration,
    options: &SignInOptions,
    tokens: IssuedTokens,
    now: SystemTime,
) -> Result<SignedIn> {
    let id_token = tokens.id_token.as_deref().ok_or_else(|| {
        Error::InvalidIdToken(
            "the token response has no id_token; the sign-in must include the openid scope"
                .to_owned(),
        )
    })?;
    let identity = identity_from_id_token(app, id_token, now)?;
    options.check(&identity)?;
    // Google's consent screen lets the person untick each scope ("granular consent"), and
    // the token response's `scope` then lists only what was granted (Google's OAuth 2.0
    // for desktop apps page: "scope: The scopes of access granted by the access_token");
    // without the send scope the first send would fail with 403. Per RFC 6749 §5.1 a
    // response without `scope` granted what was asked.
    if let Some(send_scope) = app.send_scope() {
        if !tokens.scopes.is_empty() && !tokens.scopes.iter().any(|s| s == send_scope) {
            return Err(Error::ScopeNotGranted {
                scope: send_scope.to_owned(),
            });
        }
    }
    Ok(SignedIn {
        identity,
        provider: app.provider,
        tenant: app.tenant().to_owned(),
        resource: options.resource,
        tokens,
    })
}

/// Signs in through the browser: binds the loopback listener, hands the authorization URL
/// to `open_url` (which opens a browser or prints it), waits for one redirect, exchanges
/// the code, and checks the identity. Nothing is stored.
pub async fn sign_in_with_browser(
    http: &OAuthHttp,
    app: &AppRegistration,
    options: &SignInOptions,
    now: impl Fn() -> SystemTime,
    open_url: impl FnOnce(&url::Url),
) -> Result<SignedIn> {
    let registered = app.redirect_uri();
    let listener = LoopbackListener::bind(registered.path())
        .await
        .map_err(|error| {
            Error::SignInFailed(format!(
                "cannot listen on 127.0.0.1 for the redirect: {error}"
            ))
        })?;
    let sign_in = RedirectSignIn::begin(app, options.clone(), listener.port())?;
    let redirect_uri = sign_in.redirect_uri.clone();
    let to_register = app.redirect_uri_to_register();
    tracing::info!(
        provider = %app.provider,
        redirect_uri = %redirect_uri,
        registered_as = %to_register,
        "waiting for the sign-in redirect"
    );
    open_url(sign_in.url());
    let outcome = listener.wait(sign_in.state(), options.timeout).await;
    let (code, verdict) = match outcome {
        Some(CallbackOutcome::Code(code, verdict)) => (code, verdict),
        Some(CallbackOutcome::Denied { error, description }) => {
            return Err(denied(app, &redirect_uri, error, description));
        }
        Some(CallbackOutcome::Incomplete) => return Err(incomplete()),
        None => {
            // A provider shows a redirect URI it does not know in the browser and never
            // redirects: the most likely reason nothing arrived, so the message says
            // which URI the app registration must hold.
            return Err(Error::SignInFailed(format!(
                "no sign-in arrived within {} s; start the sign-in again. If the browser showed an error about the redirect URI (AADSTS50011, redirect_uri_mismatch), register {to_register} with the {} app (this sign-in sent {redirect_uri}; the port does not matter)",
                options.timeout.as_secs(),
                app.provider
            )));
        }
    };
    let result = sign_in.exchange(http, &code, now()).await;
    // The browser's page waited for this: it says what the terminal says.
    verdict.send(match &result {
        Ok(signed_in) => Verdict::SignedIn(signed_in.identity.address.clone()),
        Err(error) => Verdict::Refused(error.to_string()),
    });
    result
}

/// The provider redirected back with `error=`: a redirect URI it does not know becomes
/// [`Error::RedirectUriNotRegistered`]; a refusal says to approve; anything else carries
/// the provider's explanation.
fn denied(
    app: &AppRegistration,
    redirect_uri: &str,
    error: String,
    description: Option<String>,
) -> Error {
    if is_redirect_mismatch(&error, description.as_deref()) {
        return Error::RedirectUriNotRegistered {
            provider: app.provider,
            sent: redirect_uri.to_owned(),
            to_register: app.redirect_uri_to_register(),
            detail: format!(
                "{error}{}",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        };
    }
    // Only a refusal is fixed by approving; other answers explain themselves.
    let what_to_do = if error == "access_denied" {
        "sign in again and approve the request"
    } else {
        "do what the provider's explanation says, then sign in again"
    };
    Error::SignInFailed(format!(
        "the provider answered {error}{}; {what_to_do}",
        description.map(|d| format!(" ({d})")).unwrap_or_default()
    ))
}

/// A redirect with neither a code nor an error.
fn incomplete() -> Error {
    Error::SignInFailed(
        "the redirect carried neither a code nor an error; start the sign-in again".to_owned(),
    )
}

/// A browser sign-in whose redirect the caller receives itself: a web console that
/// serves the registered loopback redirect URI on its own port. [`RedirectSignIn::begin`]
/// makes the authorization URL (PKCE S256, a random `state`); the caller sends the
/// browser there, keeps this value bound to the person's session under
/// [`RedirectSignIn::state`], and hands the redirect's query to
/// [`RedirectSignIn::complete`]. The PKCE verifier never leaves it.
pub struct RedirectSignIn {
    app: AppRegistration,
    options: SignInOptions,
    scopes: Vec<String>,
    redirect_uri: String,
    url: url::Url,
    state: oauth2::CsrfToken,
    verifier: oauth2::PkceCodeVerifier,
}

impl std::fmt::Debug for RedirectSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectSignIn")
            .field("provider", &self.app.provider)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl RedirectSignIn {
    /// Starts a sign-in whose redirect comes back to the app's registered redirect URI on
    /// `port` (a loopback URI: Entra and Google ignore its port).
    pub fn begin(app: &AppRegistration, options: SignInOptions, port: u16) -> Result<Self> {
        check_resource(app, options.resource)?;
        let redirect_uri = app.redirect_uri_with_port(port);
        let scopes = options.resource.scopes(app);
        let start = oauth::authorization_url(app, &scopes, &redirect_uri, options.login_hint())
            .map_err(failure)?;
        Ok(Self {
            app: app.clone(),
            options,
            scopes,
            redirect_uri,
            url: start.url,
            state: start.state,
            verifier: start.verifier,
        })
    }

    /// Where to send the browser.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The `state` the redirect must carry back.
    pub fn state(&self) -> &str {
        self.state.secret()
    }

    /// The redirect URI this sign-in sent (the registered one, with the port).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The path the redirect arrives on (the registered redirect URI's).
    pub fn redirect_path(&self) -> String {
        self.app.redirect_uri().path().to_owned()
    }

    /// Completes the sign-in from the redirect's query parameters: `code` is exchanged
    /// and who signed in is checked; `error` is the provider's refusal. The caller has
    /// matched `state` to this sign-in already. Nothing is stored.
    pub async fn complete<'q>(
        self,
        http: &OAuthHttp,
        query: impl IntoIterator<Item = (&'q str, &'q str)>,
        now: SystemTime,
    ) -> Result<SignedIn> {
        let mut code = None;
        let mut error = None;
        let mut description = None;
        for (name, value) in query {
            match name {
                "code" => code = Some(value.to_owned()),
                "error" => error = Some(value.to_owned()),
                "error_description" => description = Some(value.to_owned()),
                _ => {}
            }
        }
        if let Some(error) = error {
            return Err(denied(&self.app, &self.redirect_uri, error, description));
        }
        let Some(code) = code.filter(|code| !code.is_empty()) else {
            return Err(incomplete());
        };
        self.exchange(http, &code, now).await
    }

    /// Exchanges the redirect's code (with the PKCE verifier) and checks who signed in.
    async fn exchange(self, http: &OAuthHttp, code: &str, now: SystemTime) -> Result<SignedIn> {
        match oauth::exchange_code(
            http,
            &self.app,
            &self.scopes,
            code,
            self.verifier,
            &self.redirect_uri,
        )
        .await
        {
            Ok(tokens) => finish(&self.app, &self.options, tokens, now),
            Err(failed) => Err(browser_failure(&self.app, &self.redirect_uri, failed)),
        }
    }
}

/// Signs in with a device code (Microsoft only; Google excludes Gmail scopes from the
/// device flow). `on_prompt` shows the code and URL; `sleep` waits between polls.
pub async fn sign_in_with_device_code<S, SF>(
    http: &OAuthHttp,
    app: &AppRegistration,
    options: &SignInOptions,
    now: impl Fn() -> SystemTime,
    on_prompt: impl FnOnce(&DevicePrompt),
    sleep: S,
) -> Result<SignedIn>
where
    S: Fn(Duration) -> SF + Send + Sync,
    SF: Future<Output = ()> + Send,
{
    if app.provider == Provider::Google {
        return Err(Error::DeviceFlowNotSupported);
    }
    check_resource(app, options.resource)?;
    let scopes = options.resource.scopes(app);
    let tokens = oauth::device_flow(http, app, &scopes, on_prompt, sleep)
        .await
        .map_err(|failure_kind| match failure_kind {
            DeviceFailure::Expired => Error::SignInFailed(
                "the device code expired before the sign-in was approved; run the sign-in again"
                    .to_owned(),
            ),
            DeviceFailure::Declined => Error::SignInFailed(
                "the sign-in was declined on the verification page; run it again and approve it"
                    .to_owned(),
            ),
            DeviceFailure::Other(other) => failure(other),
        })?;
    finish(app, options, tokens, now())
}

/// Revokes `token` at the app's revocation endpoint, where the provider has one (Google).
/// Returns the provider's answer, or `None` when the provider offers no revocation.
pub async fn revoke_at_provider(
    http: &OAuthHttp,
    app: &AppRegistration,
    token: &mailroom_model::Secret,
) -> Option<Result<String>> {
    let url = app.endpoints().revoke?;
    Some(oauth::revoke(http, &url, token).await.map_err(failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_anyone_may_sign_in_for_mail_within_five_minutes() {
        let options = SignInOptions::default();
        assert_eq!(options.timeout, Duration::from_secs(300));
        assert_eq!(options.resource, Resource::Mail);
        assert_eq!(options.login_hint(), None);
        let identity = Identity {
            address: "anyone@contoso.example".to_owned(),
            tenant_id: None,
            subject: None,
        };
        assert!(options.check(&identity).is_ok());
    }
}
