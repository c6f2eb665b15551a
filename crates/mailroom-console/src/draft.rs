//! Sign In before the account exists, as the guide does it: the Add form's Sign In keeps
//! the form as the session's *draft*, the chosen provider's preset fills it, the sign-in
//! comes back to the draft (its address becomes the SMTP user), and Add stores account
//! and token in one transaction (`forms::add`).
//!
//! A draft lives in memory only, one per session, with a random id the Add form carries
//! in a hidden field: a sign-in fills only the draft it was started for, and Add uses a
//! sign-in only when the form posted is that draft's (an older tab's form is added
//! without it). Nothing is stored before Add; a draft lapses [`DRAFT_LIFETIME`] after it
//! was last touched, and ends with its session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, Form, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom::tokens::interactive::SignedIn;
use mailroom::{Provider, SignInMode};

use crate::forms::Posted;
use crate::pages::{self, Page};
use crate::routes::{Failure, State, html};
use crate::security::{SessionContext, random_token};
use crate::signin::{DEVICE_TIMEOUT, Notice, SignInForm, Target, follow_device, wait_for_redirect};

/// How long a draft is kept after it was last touched: longer than a device code lives,
/// so a sign-in under way always finds its draft.
const DRAFT_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The Add form's path, where a draft is shown.
const ADD: &str = "/accounts/new";

#[derive(Debug)]
struct Draft {
    id: String,
    posted: Posted,
    signed_in: Option<SignedIn>,
    touched: SystemTime,
}

impl Draft {
    fn live(&self, now: SystemTime) -> bool {
        self.touched + DRAFT_LIFETIME > now
    }
}

/// The drafts, one per session.
#[derive(Debug, Default)]
pub(crate) struct Drafts {
    drafts: Mutex<HashMap<[u8; 32], Draft>>,
}

impl Drafts {
    /// The drafts, under the lock, lapsed ones (of every session) dropped first.
    fn with<T>(
        &self,
        now: SystemTime,
        use_it: impl FnOnce(&mut HashMap<[u8; 32], Draft>) -> T,
    ) -> T {
        let mut drafts = self.drafts.lock().expect("drafts");
        drafts.retain(|_, draft| draft.live(now));
        use_it(&mut drafts)
    }

    /// Keeps the Add form as posted. The draft the form names keeps its sign-in; any
    /// other form starts a new draft. Returns the draft's id.
    fn keep(&self, session: &[u8; 32], mut posted: Posted, now: SystemTime) -> String {
        posted.forget_password();
        self.with(now, |drafts| match drafts.get_mut(session) {
            Some(draft) if draft.id == posted.draft_id() => {
                draft.posted = posted;
                draft.touched = now;
                draft.id.clone()
            }
            _ => {
                let id = random_token();
                posted.set_draft_id(&id);
                drafts.insert(
                    *session,
                    Draft {
                        id: id.clone(),
                        posted,
                        signed_in: None,
                        touched: now,
                    },
                );
                id
            }
        })
    }

    /// The session's draft as the Add form shows it: the form, and whose sign-in it holds.
    pub(crate) fn form(
        &self,
        session: &[u8; 32],
        now: SystemTime,
    ) -> Option<(Posted, Option<String>)> {
        self.with(now, |drafts| {
            drafts.get(session).map(|draft| {
                (
                    draft.posted.clone(),
                    draft.signed_in.as_ref().map(|s| s.identity.address.clone()),
                )
            })
        })
    }

    /// The sign-in held by the draft `id` (`None` when the session's draft is another).
    pub(crate) fn sign_in(
        &self,
        session: &[u8; 32],
        id: &str,
        now: SystemTime,
    ) -> Option<SignedIn> {
        self.with(now, |drafts| {
            drafts
                .get(session)
                .filter(|draft| draft.id == id)
                .and_then(|draft| draft.signed_in.clone())
        })
    }

    /// Changes the draft `id`, if it is still the session's; touched now.
    fn change(
        &self,
        session: &[u8; 32],
        id: &str,
        now: SystemTime,
        change: impl FnOnce(&mut Posted, &mut Option<SignedIn>),
    ) -> bool {
        self.with(now, |drafts| {
            match drafts.get_mut(session).filter(|draft| draft.id == id) {
                Some(draft) => {
                    change(&mut draft.posted, &mut draft.signed_in);
                    draft.touched = now;
                    true
                }
                None => false,
            }
        })
    }

    /// After a failed Add: the draft `id` keeps the form as posted (and its sign-in).
    pub(crate) fn keep_posted(&self, session: &[u8; 32], posted: &Posted, now: SystemTime) {
        let mut kept = posted.clone();
        kept.forget_password();
        self.change(session, posted.draft_id(), now, |form, _| *form = kept);
    }

    /// After Add: the draft `id` is done.
    pub(crate) fn finish(&self, session: &[u8; 32], id: &str) {
        let mut drafts = self.drafts.lock().expect("drafts");
        if drafts.get(session).is_some_and(|draft| draft.id == id) {
            drafts.remove(session);
        }
    }

    /// A sign-in for the draft `id` came back: the draft takes it, and its address as
    /// the SMTP user. False when that draft is gone (added, replaced, lapsed).
    pub(crate) fn fill(
        &self,
        session: &[u8; 32],
        id: &str,
        signed_in: SignedIn,
        now: SystemTime,
    ) -> bool {
        self.change(session, id, now, |posted, held| {
            posted.set_smtp_user(&signed_in.identity.address);
            *held = Some(signed_in);
        })
    }

    /// The session ended: its draft goes with it.
    pub(crate) fn forget(&self, session: &[u8; 32]) {
        self.drafts.lock().expect("drafts").remove(session);
    }
}

/// POST from the Add form's Sign In: keeps the form as the session's draft and shows the
/// "Email Sign In" choice for the account it will add.
pub(crate) async fn keep(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(posted): Form<Posted>,
) -> Response {
    let now = state.options.clock.now();
    state.sign_ins.drafts.keep(&session.key, posted, now);
    Redirect::to("/accounts/new/sign-in").into_response()
}

/// GET: the "Email Sign In" choice for the account being added: every provider's button
/// is live (choosing one fills its preset).
pub(crate) async fn choice(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Response {
    let now = state.options.clock.now();
    let Some((posted, _)) = state.sign_ins.drafts.form(&session.key, now) else {
        return Redirect::to(ADD).into_response();
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
/// preset. The draft's fields are checked before anyone signs in, and the draft changes
/// (preset applied, a sign-in held before dropped) only once the sign-in has begun.
pub(crate) async fn start(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(form): Form<SignInForm>,
) -> Result<Response, Failure> {
    let now = state.options.clock.now();
    let Some((mut posted, held)) = state.sign_ins.drafts.form(&session.key, now) else {
        return Ok(Redirect::to(ADD).into_response());
    };
    let device = form.device(&state)?;
    let id = posted.draft_id().to_owned();
    if held.is_some() {
        // Signing in again chooses anew: not necessarily the address signed in before.
        posted.set_smtp_user("");
    }
    let begun = async {
        let provider = form.provider().parse::<Provider>()?;
        let change = posted.choose_provider(provider)?;
        let mailroom = &state.mailroom;
        Ok::<_, mailroom::Error>(if device {
            Begun::Device(
                mailroom
                    .begin_sign_in_for_new_account(&change, SignInMode::DeviceCode, DEVICE_TIMEOUT)
                    .await?,
            )
        } else {
            Begun::Browser(Box::new(
                mailroom
                    .begin_redirect_sign_in_for_new_account(&change, state.options.listen.port())
                    .await?,
            ))
        })
    }
    .await;
    let begun = match begun {
        Ok(begun) => begun,
        Err(error) => {
            // The draft is as it was: the form the person typed, a sign-in still held.
            state
                .sign_ins
                .notify(&session.key, Notice::from_error(&error));
            return Ok(Redirect::to(ADD).into_response());
        }
    };
    state
        .sign_ins
        .drafts
        .change(&session.key, &id, now, |form, signed_in| {
            *form = posted;
            *signed_in = None;
        });
    let target = Target::Draft(id);
    match begun {
        Begun::Device(sign_in) => Ok(follow_device(&state, &session, target, sign_in)),
        Begun::Browser(sign_in) => wait_for_redirect(&state, &session, target, *sign_in),
    }
}

enum Begun {
    Device(mailroom::SignInSession),
    Browser(Box<mailroom::tokens::interactive::RedirectSignIn>),
}

/// POST from the Add form's "Discard the sign-in": the draft drops its sign-in and the
/// SMTP user it filled, and keeps the rest of the form as posted.
pub(crate) async fn discard(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(mut posted): Form<Posted>,
) -> Response {
    let now = state.options.clock.now();
    posted.forget_password();
    posted.set_smtp_user("");
    let id = posted.draft_id().to_owned();
    state
        .sign_ins
        .drafts
        .change(&session.key, &id, now, |form, signed_in| {
            *form = posted;
            *signed_in = None;
        });
    Redirect::to(ADD).into_response()
}
