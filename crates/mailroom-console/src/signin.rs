//! Sign In and Sign Out from the console: the "Email Sign In" choice, the browser flow
//! with the redirect coming back to the console's own port (the app's registered loopback
//! redirect URI: Entra and Google ignore a loopback redirect's port), and the device code
//! shown on a page (Microsoft; the only way when the console is not on loopback).
//!
//! A browser sign-in is bound to the session that started it: its `state` (random) names
//! it, and only that session's pending sign-ins are kept under it. The provider's redirect
//! is a cross-site navigation, so the `SameSite=Strict` cookie does not come with it; the
//! `state`, the PKCE verifier that never left the console, and the session still being
//! alive are what the callback checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, Form, Path, State as AxumState};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom::tokens::interactive::{RedirectSignIn, SignedIn};
use mailroom::{AccountRef, Provider, Remedy, SignInMode, SignInStep};
use serde::Deserialize;
use tokio::sync::watch;

use crate::draft::Drafts;
use crate::pages::{self, Page, path_of};
use crate::routes::{Failure, State, account_rows, html, parse_account};
use crate::security::SessionContext;

/// How long a started browser sign-in waits for its redirect.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The most browser sign-ins one session may have waiting.
const PENDING_PER_SESSION: usize = 8;

/// How long a device code sign-in waits for the person.
pub(crate) const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A message shown once, on the session's next page.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) error: bool,
    pub(crate) text: String,
    pub(crate) remedy: Option<Remedy>,
}

impl Notice {
    pub(crate) fn from_error(error: &mailroom::Error) -> Self {
        Notice {
            error: true,
            text: error.to_string(),
            remedy: error.remedy(),
        }
    }
}

/// What a sign-in is for: an account, or the account a session's draft will add (named
/// by the draft's id, so a sign-in never fills another draft).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Account(AccountRef),
    Draft(String),
}

impl Target {
    /// The account (`None`: the one being added).
    fn account(&self) -> Option<AccountRef> {
        match self {
            Target::Account(account) => Some(*account),
            Target::Draft(_) => None,
        }
    }

    /// Where the sign-in comes back to: the account's form, or the Add form.
    fn path(&self) -> String {
        path_of(self.account())
    }
}

/// A browser sign-in waiting for its redirect.
#[derive(Debug)]
struct Pending {
    session: [u8; 32],
    target: Target,
    sign_in: RedirectSignIn,
    started: SystemTime,
}

/// A device code sign-in under way: the code to show, and its outcome once the person
/// has approved (or not).
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub(crate) step: SignInStep,
    pub(crate) outcome: watch::Receiver<Option<Notice>>,
    /// The task waiting for the person: a sign-in started again for the same account
    /// (or the session's end) stops it, so a session has one at most per account.
    task: tokio::task::AbortHandle,
}

/// How long the device code page holds a request open for the sign-in to end, before it
/// answers and reloads (`Refresh`).
const DEVICE_HOLD: Duration = Duration::from_secs(2);

/// A device code sign-in's session and account (`None`: the account being added).
type DeviceKey = ([u8; 32], Option<AccountRef>);

/// The sign-ins under way and the notices waiting to be shown, per session.
#[derive(Debug, Default)]
pub(crate) struct SignIns {
    pending: Mutex<HashMap<String, Pending>>,
    devices: Mutex<HashMap<DeviceKey, Device>>,
    notices: Mutex<HashMap<[u8; 32], Vec<Notice>>>,
    /// The accounts being added with Sign In first.
    pub(crate) drafts: Drafts,
}

impl SignIns {
    /// Adds a notice for the session's next page.
    pub(crate) fn notify(&self, session: &[u8; 32], notice: Notice) {
        self.notices
            .lock()
            .expect("notices")
            .entry(*session)
            .or_default()
            .push(notice);
    }

    /// The session's notices, once.
    pub(crate) fn take_notices(&self, session: &[u8; 32]) -> Vec<Notice> {
        self.notices
            .lock()
            .expect("notices")
            .remove(session)
            .unwrap_or_default()
    }

    fn device(&self, session: &[u8; 32], account: Option<AccountRef>) -> Option<Device> {
        self.devices
            .lock()
            .expect("devices")
            .get(&(*session, account))
            .cloned()
    }

    /// The session ended: its sign-ins under way, notices and draft go with it.
    pub(crate) fn forget(&self, session: &[u8; 32]) {
        self.pending
            .lock()
            .expect("pending")
            .retain(|_, waiting| waiting.session != *session);
        self.devices
            .lock()
            .expect("devices")
            .retain(|(owner, _), device| {
                let mine = owner == session;
                if mine {
                    device.task.abort();
                }
                !mine
            });
        self.notices.lock().expect("notices").remove(session);
        self.drafts.forget(session);
    }
}

/// GET: the "Email Sign In" choice.
pub(crate) async fn choice(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let row = account_rows(&state)
        .await?
        .into_iter()
        .find(|row| row.account.account_ref() == reference)
        .ok_or_else(|| Failure::not_found(reference))?;
    let page = Page {
        title: "Email Sign In",
        csrf: Some(&session.csrf),
    };
    let browser = state.options.listen.ip().is_loopback();
    Ok(html(pages::sign_in_choice(&page, &row, browser)))
}

/// The choice posted by an "Email Sign In" button.
#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    provider: String,
    #[serde(default)]
    mode: Option<String>,
}

/// POST: starts the chosen sign-in.
pub(crate) async fn start(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
    Form(form): Form<SignInForm>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let loaded = state
        .accounts()
        .account(reference)
        .await
        .map_err(Failure::from)?;
    let provider = loaded.server().provider;
    let chosen = form.provider.parse::<Provider>().ok();
    if chosen != Some(provider) {
        return Err(Failure::invalid(
            format!(
                "the {reference} uses the {provider} provider; it cannot sign in with {}",
                form.provider
            ),
            "choose its own provider's button, or change the account's OAuth Service Provider first",
        ));
    }
    if form.device(&state)? {
        let sign_in = state
            .mailroom
            .begin_sign_in(reference, SignInMode::DeviceCode, DEVICE_TIMEOUT)
            .await?;
        return Ok(follow_device(
            &state,
            &session,
            Target::Account(reference),
            sign_in,
        ));
    }
    let sign_in = state
        .mailroom
        .begin_redirect_sign_in(reference, state.options.listen.port())
        .await?;
    wait_for_redirect(&state, &session, Target::Account(reference), sign_in)
}

impl SignInForm {
    /// The provider chosen.
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    /// Whether the device code was chosen; a browser sign-in is refused off loopback.
    pub(crate) fn device(&self, state: &State) -> Result<bool, Failure> {
        let device = self.mode.as_deref() == Some("device");
        if !device && !state.options.listen.ip().is_loopback() {
            return Err(Failure::invalid(
                "a browser sign-in needs the console on loopback: the provider redirects back only to a loopback address".to_owned(),
                "sign in with a device code (Microsoft), or run the console on 127.0.0.1",
            ));
        }
        Ok(device)
    }
}

/// Keeps a browser sign-in bound to the session under its `state` and sends the browser
/// to the provider.
pub(crate) fn wait_for_redirect(
    state: &State,
    session: &SessionContext,
    target: Target,
    sign_in: RedirectSignIn,
) -> Result<Response, Failure> {
    let url = sign_in.url().to_string();
    let now = state.options.clock.now();
    let mut pending = state.sign_ins.pending.lock().expect("pending");
    pending.retain(|_, waiting| waiting.started + PENDING_LIFETIME > now);
    let mine = pending
        .values()
        .filter(|waiting| waiting.session == session.key)
        .count();
    if mine >= PENDING_PER_SESSION {
        return Err(Failure::invalid(
            format!("{mine} sign-ins from this session are waiting for their redirect"),
            "finish or abandon one of them (they lapse after ten minutes), then sign in again",
        ));
    }
    pending.insert(
        sign_in.state().to_owned(),
        Pending {
            session: session.key,
            target,
            sign_in,
            started: now,
        },
    );
    Ok(Redirect::to(&url).into_response())
}

/// The outcome of a sign-in that came back: stored for an account, or held by the
/// session's draft it was started for.
async fn outcome(
    state: &State,
    session: &[u8; 32],
    target: &Target,
    signed_in: mailroom::Result<SignedIn>,
) -> Notice {
    let stored = match (target, signed_in) {
        (_, Err(error)) => Err(error),
        (Target::Account(account), Ok(signed_in)) => {
            state.mailroom.complete_sign_in(*account, &signed_in).await
        }
        (Target::Draft(id), Ok(signed_in)) => {
            let address = signed_in.identity.address.clone();
            let now = state.options.clock.now();
            if !state.sign_ins.drafts.fill(session, id, signed_in, now) {
                return Notice {
                    error: true,
                    text: format!(
                        "{address} signed in, but the account being added was added, replaced or discarded meanwhile: this sign-in was not kept"
                    ),
                    remedy: None,
                };
            }
            return Notice {
                error: false,
                text: format!(
                    "Signed in as {address}. Review the account and Add it: the sign-in is kept with it."
                ),
                remedy: None,
            };
        }
    };
    match stored {
        Ok(address) => Notice {
            error: false,
            text: format!("Signed in as {address}."),
            remedy: None,
        },
        Err(error) => Notice::from_error(&error),
    }
}

/// Shows the device code on a page that follows the sign-in until it ends.
pub(crate) fn follow_device(
    state: &Arc<State>,
    session: &SessionContext,
    target: Target,
    sign_in: mailroom::SignInSession,
) -> Response {
    let account = target.account();
    let (outcome_tx, watching) = watch::channel(None);
    let step = sign_in.step().clone();
    let waiting = Arc::clone(state);
    let key = session.key;
    let task = tokio::spawn(async move {
        let signed_in = sign_in.wait().await;
        let notice = outcome(&waiting, &key, &target, signed_in).await;
        let _ = outcome_tx.send(Some(notice));
    });
    let device = Device {
        step,
        outcome: watching,
        task: task.abort_handle(),
    };
    let replaced = state
        .sign_ins
        .devices
        .lock()
        .expect("devices")
        .insert((session.key, account), device);
    if let Some(replaced) = replaced {
        replaced.task.abort();
    }
    Redirect::to(&format!("{}/device", path_of(account))).into_response()
}

/// GET: the device code page; it reloads itself until the sign-in ends.
pub(crate) async fn device_page(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    Ok(follow_device_page(&state, &session, Some(reference)).await)
}

/// GET: the device code page of the account being added.
pub(crate) async fn new_device_page(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Response {
    follow_device_page(&state, &session, None).await
}

async fn follow_device_page(
    state: &State,
    session: &SessionContext,
    account: Option<AccountRef>,
) -> Response {
    let Some(mut device) = state.sign_ins.device(&session.key, account) else {
        return Redirect::to(&path_of(account)).into_response();
    };
    let stopped = matches!(
        tokio::time::timeout(DEVICE_HOLD, device.outcome.wait_for(Option::is_some)).await,
        Ok(Err(_))
    );
    let current = device.outcome.borrow().clone();
    let outcome = match current {
        Some(notice) => Some(notice),
        // The task ended without an outcome (it cannot, short of a panic).
        None if stopped => Some(Notice {
            error: true,
            text: "the sign-in stopped unexpectedly".to_owned(),
            remedy: Some(Remedy::SignIn {
                account,
                browser_only: false,
            }),
        }),
        None => None,
    };
    if let Some(notice) = outcome {
        state
            .sign_ins
            .devices
            .lock()
            .expect("devices")
            .remove(&(session.key, account));
        state.sign_ins.notify(&session.key, notice);
        return Redirect::to(&path_of(account)).into_response();
    }
    let page = Page {
        title: "Email Sign In",
        csrf: Some(&session.csrf),
    };
    html(pages::device_code(&page, account, &device.step))
}

/// GET with `state`: the provider's redirect back to the console.
pub(crate) async fn callback(state: &State, uri: &Uri) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let Some(key) = query
        .iter()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.clone())
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let now = state.options.clock.now();
    let pending = state.sign_ins.pending.lock().expect("pending").remove(&key);
    let Some(pending) = pending.filter(|p| p.started + PENDING_LIFETIME > now) else {
        return Failure::invalid(
            "this sign-in is not one the console is waiting for: it finished already, lapsed after ten minutes, or was started elsewhere".to_owned(),
            "start the sign-in again from the account's page",
        )
        .with_status(StatusCode::BAD_REQUEST)
        .into_response();
    };
    if pending.sign_in.redirect_path() != uri.path() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !state.security.session_alive(&pending.session) {
        return Failure::invalid(
            "the console session that started this sign-in has ended".to_owned(),
            "log in to the console again and sign in again",
        )
        .with_status(StatusCode::FORBIDDEN)
        .into_response();
    }
    let pairs = query.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let signed_in = state
        .mailroom
        .receive_redirect_sign_in(pending.sign_in, pairs)
        .await;
    let notice = outcome(state, &pending.session, &pending.target, signed_in).await;
    state.sign_ins.notify(&pending.session, notice);
    // Back on the console's own address, where the session cookie is (the redirect
    // may have come to `localhost` while the console was opened as 127.0.0.1).
    let mut back = state.origin();
    back.set_path(&pending.target.path());
    Redirect::to(back.as_str()).into_response()
}

/// POST: signs the account out.
pub(crate) async fn sign_out(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let out = state.mailroom.sign_out(reference).await?;
    let text = if out.deleted {
        format!("Signed out: the token of {} was deleted.", out.address)
    } else if !out.still_used_by.is_empty() {
        format!(
            "Signed out of this account; {}'s sign-in is kept for the other accounts that send with it.",
            out.address
        )
    } else {
        "There was no sign-in to remove.".to_owned()
    };
    state.sign_ins.notify(
        &session.key,
        Notice {
            error: false,
            text,
            remedy: None,
        },
    );
    Ok(Redirect::to(&path_of(Some(reference))).into_response())
}
