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

use crate::forms::Posted;
use crate::pages::{self, Page, path_of};
use crate::routes::{Failure, State, account_rows, html, parse_account};
use crate::security::SessionContext;

/// How long a started browser sign-in waits for its redirect.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The most browser sign-ins one session may have waiting.
const PENDING_PER_SESSION: usize = 8;

/// How long a device code sign-in waits for the person.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A message shown once, on the session's next page.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) error: bool,
    pub(crate) text: String,
    pub(crate) remedy: Option<Remedy>,
}

impl Notice {
    fn from_error(error: &mailroom::Error) -> Self {
        Notice {
            error: true,
            text: error.to_string(),
            remedy: error.remedy(),
        }
    }
}

/// A browser sign-in waiting for its redirect, for an account (`None`: the account the
/// session's [`Draft`] will add).
#[derive(Debug)]
struct Pending {
    session: [u8; 32],
    account: Option<AccountRef>,
    sign_in: RedirectSignIn,
    started: SystemTime,
}

/// A user account being added with Sign In first, as the guide does it: the Add form as
/// it was when Sign In was chosen, and the sign-in once it came back. Kept in memory
/// only, one per session, until the account is added, the draft is discarded, or it
/// lapses ([`PENDING_LIFETIME`] after it was last touched); nothing is stored before Add.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) posted: Posted,
    pub(crate) signed_in: Option<SignedIn>,
    touched: SystemTime,
}

/// A device code sign-in under way: the code to show, and its outcome once the person
/// has approved (or not).
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub(crate) step: SignInStep,
    pub(crate) outcome: watch::Receiver<Option<Notice>>,
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
    drafts: Mutex<HashMap<[u8; 32], Draft>>,
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

    /// Keeps the Add form as posted (a sign-in already held is kept with it).
    pub(crate) fn keep_draft(&self, session: &[u8; 32], posted: Posted, now: SystemTime) {
        let mut drafts = self.drafts.lock().expect("drafts");
        drafts.retain(|_, draft| draft.touched + PENDING_LIFETIME > now);
        let signed_in = drafts.remove(session).and_then(|draft| draft.signed_in);
        drafts.insert(
            *session,
            Draft {
                posted,
                signed_in,
                touched: now,
            },
        );
    }

    /// The session's draft, taken out (put it back with [`SignIns::put_draft`]).
    pub(crate) fn take_draft(&self, session: &[u8; 32], now: SystemTime) -> Option<Draft> {
        self.drafts
            .lock()
            .expect("drafts")
            .remove(session)
            .filter(|draft| draft.touched + PENDING_LIFETIME > now)
    }

    /// Puts a draft back, touched now.
    pub(crate) fn put_draft(&self, session: &[u8; 32], mut draft: Draft, now: SystemTime) {
        draft.touched = now;
        self.drafts.lock().expect("drafts").insert(*session, draft);
    }

    /// Whether the session's draft holds a sign-in, and whose (without taking it).
    pub(crate) fn draft_form(
        &self,
        session: &[u8; 32],
        now: SystemTime,
    ) -> Option<(Posted, Option<String>)> {
        self.drafts
            .lock()
            .expect("drafts")
            .get(session)
            .filter(|draft| draft.touched + PENDING_LIFETIME > now)
            .map(|draft| {
                (
                    draft.posted.clone(),
                    draft
                        .signed_in
                        .as_ref()
                        .map(|signed_in| signed_in.identity.address.clone()),
                )
            })
    }

    /// A sign-in for the draft came back: the draft takes it, and the signed-in address
    /// as its SMTP user. False when the draft is gone (discarded, lapsed).
    fn fill_draft(&self, session: &[u8; 32], signed_in: SignedIn, now: SystemTime) -> bool {
        let mut drafts = self.drafts.lock().expect("drafts");
        let Some(draft) = drafts.get_mut(session) else {
            return false;
        };
        draft.posted.set_smtp_user(&signed_in.identity.address);
        draft.signed_in = Some(signed_in);
        draft.touched = now;
        true
    }
}

fn account_path(account: Option<AccountRef>) -> String {
    path_of(account)
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
        return Ok(follow_device(&state, &session, Some(reference), sign_in));
    }
    let sign_in = state
        .mailroom
        .begin_redirect_sign_in(reference, state.options.listen.port())
        .await?;
    wait_for_redirect(&state, &session, Some(reference), sign_in)
}

impl SignInForm {
    /// Whether the device code was chosen; a browser sign-in is refused off loopback.
    fn device(&self, state: &State) -> Result<bool, Failure> {
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
fn wait_for_redirect(
    state: &State,
    session: &SessionContext,
    account: Option<AccountRef>,
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
            account,
            sign_in,
            started: now,
        },
    );
    Ok(Redirect::to(&url).into_response())
}

/// POST from the Add form's Sign In: keeps the form as the session's draft and shows the
/// "Email Sign In" choice for the account it will add.
pub(crate) async fn new_draft(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(mut posted): Form<Posted>,
) -> Response {
    posted.forget_password();
    state
        .sign_ins
        .keep_draft(&session.key, posted, state.options.clock.now());
    Redirect::to("/accounts/new/sign-in").into_response()
}

/// GET: the "Email Sign In" choice for the account being added: every provider's button
/// is live (choosing one fills its preset).
pub(crate) async fn new_choice(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Response {
    let now = state.options.clock.now();
    let Some((posted, _)) = state.sign_ins.draft_form(&session.key, now) else {
        return Redirect::to("/accounts/new").into_response();
    };
    let page = Page {
        title: "Email Sign In",
        csrf: Some(&session.csrf),
    };
    let browser = state.options.listen.ip().is_loopback();
    html(pages::new_account_sign_in_choice(
        &page,
        posted.smtp_user(),
        browser,
    ))
}

/// POST: starts the sign-in for the account being added, with the chosen provider's
/// preset; the draft's fields are checked first, before anyone signs in.
pub(crate) async fn start_new(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(form): Form<SignInForm>,
) -> Result<Response, Failure> {
    let now = state.options.clock.now();
    let Some(mut draft) = state.sign_ins.take_draft(&session.key, now) else {
        return Ok(Redirect::to("/accounts/new").into_response());
    };
    let device = form.device(&state);
    let begun = async {
        let provider = form.provider.parse::<Provider>()?;
        let change = draft.posted.choose_provider(provider)?;
        // A new sign-in replaces the one held, whatever its outcome.
        draft.signed_in = None;
        Ok::<_, mailroom::Error>(change)
    }
    .await;
    let change = match begun {
        Ok(change) => change,
        Err(error) => {
            state.sign_ins.put_draft(&session.key, draft, now);
            state
                .sign_ins
                .notify(&session.key, Notice::from_error(&error));
            return Ok(Redirect::to("/accounts/new").into_response());
        }
    };
    state.sign_ins.put_draft(&session.key, draft, now);
    let started = if device? {
        match state
            .mailroom
            .begin_sign_in_for_new_account(&change, SignInMode::DeviceCode, DEVICE_TIMEOUT)
            .await
        {
            Ok(sign_in) => return Ok(follow_device(&state, &session, None, sign_in)),
            Err(error) => Err(error),
        }
    } else {
        state
            .mailroom
            .begin_redirect_sign_in_for_new_account(&change, state.options.listen.port())
            .await
    };
    match started {
        Ok(sign_in) => wait_for_redirect(&state, &session, None, sign_in),
        Err(error) => {
            state
                .sign_ins
                .notify(&session.key, Notice::from_error(&error));
            Ok(Redirect::to("/accounts/new").into_response())
        }
    }
}

/// POST: drops the sign-in the account being added holds, and the SMTP user it filled;
/// the form's other fields stay.
pub(crate) async fn discard_draft(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Response {
    let now = state.options.clock.now();
    if let Some(mut draft) = state.sign_ins.take_draft(&session.key, now) {
        if draft.signed_in.take().is_some() {
            draft.posted.set_smtp_user("");
        }
        state.sign_ins.put_draft(&session.key, draft, now);
    }
    Redirect::to("/accounts/new").into_response()
}

/// The outcome of a sign-in that came back: stored for an account, or held by the
/// session's draft for the account it will add.
async fn outcome(
    state: &State,
    session: &[u8; 32],
    account: Option<AccountRef>,
    signed_in: mailroom::Result<SignedIn>,
) -> Notice {
    let stored = match (account, signed_in) {
        (_, Err(error)) => Err(error),
        (Some(account), Ok(signed_in)) => {
            state.mailroom.complete_sign_in(account, &signed_in).await
        }
        (None, Ok(signed_in)) => {
            let address = signed_in.identity.address.clone();
            if !state
                .sign_ins
                .fill_draft(session, signed_in, state.options.clock.now())
            {
                return Notice {
                    error: true,
                    text: format!(
                        "{address} signed in, but the account being added was discarded or lapsed after ten minutes: nothing was kept"
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
fn follow_device(
    state: &Arc<State>,
    session: &SessionContext,
    account: Option<AccountRef>,
    sign_in: mailroom::SignInSession,
) -> Response {
    let (outcome_tx, watching) = watch::channel(None);
    let device = Device {
        step: sign_in.step().clone(),
        outcome: watching,
    };
    let waiting = Arc::clone(state);
    let key = session.key;
    tokio::spawn(async move {
        let signed_in = sign_in.wait().await;
        let notice = outcome(&waiting, &key, account, signed_in).await;
        let _ = outcome_tx.send(Some(notice));
    });
    state
        .sign_ins
        .devices
        .lock()
        .expect("devices")
        .insert((session.key, account), device);
    Redirect::to(&format!("{}/device", account_path(account))).into_response()
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
        return Redirect::to(&account_path(account)).into_response();
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
        return Redirect::to(&account_path(account)).into_response();
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
    let notice = outcome(state, &pending.session, pending.account, signed_in).await;
    state.sign_ins.notify(&pending.session, notice);
    // Back on the console's own address, where the session cookie is (the redirect
    // may have come to `localhost` while the console was opened as 127.0.0.1).
    let mut back = state.origin();
    back.set_path(&account_path(pending.account));
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
    Ok(Redirect::to(&account_path(Some(reference))).into_response())
}
