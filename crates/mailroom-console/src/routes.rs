//! The console's routes and handlers: each reads or changes through the facade and
//! renders a page from `pages`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Form, Path, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mailroom::accounts::Accounts;
use mailroom::model::AccountId;
use mailroom::model::{Provider, Secret};
use mailroom::tokens::registration::{AppChange, Apps, EndpointOverrides, parse_redirect_uri};
use mailroom::{AccountRef, Mailroom, OutboxStatus};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use url::Url;

use crate::ConsoleOptions;
use crate::pages::{self, AccountRow, Page};
use crate::security::{self, Security, SessionContext};
use crate::signin::{self, SignIns};
use crate::{draft, forms, health, send};

/// Where the stylesheet is served.
pub(crate) const STYLESHEET: &str = "/console.css";

/// Where the console's only script is served (the fax format's live preview).
pub(crate) const SCRIPT: &str = "/console.js";

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) mailroom: Arc<Mailroom>,
    pub(crate) options: ConsoleOptions,
    pub(crate) security: Security,
    pub(crate) sign_ins: SignIns,
}

impl State {
    /// The console's own address, as a browser reaches it.
    pub(crate) fn origin(&self) -> Url {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let listen = self.options.listen;
        Url::parse(&format!("{scheme}://{listen}/")).expect("a socket address is a URL host")
    }

    pub(crate) fn accounts(&self) -> Accounts<'_, DatabaseConnection> {
        Accounts::new(self.mailroom.database(), &self.mailroom.options().key)
    }
}

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login).post(login_with_password))
        .route("/logout", post(logout))
        .route(STYLESHEET, get(stylesheet))
        .route(SCRIPT, get(script))
        .route("/fax-preview", get(fax_preview))
        .route("/accounts", get(accounts))
        .route("/accounts/new", get(forms::show_new).post(forms::add))
        .route(
            "/accounts/new/sign-in",
            get(draft::choice).post(draft::keep),
        )
        .route("/accounts/new/sign-in/start", post(draft::start))
        .route("/accounts/new/device", get(signin::new_device_page))
        .route("/accounts/new/discard", post(draft::discard))
        .route("/accounts/{account}", get(forms::show).post(forms::save))
        .route("/accounts/{account}/remove", post(remove_account))
        .route(
            "/accounts/{account}/sign-in",
            get(signin::choice).post(signin::start),
        )
        .route("/accounts/{account}/device", get(signin::device_page))
        .route("/accounts/{account}/sign-out", post(signin::sign_out))
        .route("/outbox", get(outbox))
        .route("/outbox/{id}", get(outbox_message))
        .route("/outbox/{id}/retry", post(retry_message))
        .route("/outbox/{id}/cancel", post(cancel_message))
        .route("/settings", get(settings).post(save_settings))
        .route("/settings/apps/{provider}", post(save_app))
        .route("/send", get(send::show).post(send::send))
        .route("/health", get(health::show))
        .route("/accounts/{account}/check", post(health::check))
        .route("/accounts/{account}/refresh", post(health::refresh))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            security::guard,
        ))
        .with_state(state)
}

/// A failure a page shows: what went wrong and what to do (the facade's remedy, or the
/// console's own advice).
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
    remedy: Option<Box<mailroom::Remedy>>,
    hint: Option<String>,
}

impl Failure {
    /// A request the console refuses, with what to do instead.
    pub(crate) fn invalid(message: String, hint: &str) -> Self {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message,
            remedy: None,
            hint: Some(hint.to_owned()),
        }
    }

    /// No such account.
    pub(crate) fn not_found(reference: AccountRef) -> Self {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: format!("there is no {reference}"),
            remedy: Some(Box::new(match reference {
                AccountRef::Company => mailroom::Remedy::ConfigureCompany,
                AccountRef::User(_) => mailroom::Remedy::ListAccounts,
            })),
            hint: None,
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl From<mailroom::Error> for Failure {
    fn from(error: mailroom::Error) -> Self {
        Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            remedy: error.remedy().map(Box::new),
            message: error.to_string(),
            hint: None,
        }
    }
}

impl From<mailroom::accounts::Error> for Failure {
    fn from(error: mailroom::accounts::Error) -> Self {
        mailroom::Error::from(error).into()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let page = Page {
            title: "Something went wrong",
            csrf: None,
        };
        (
            self.status,
            Html(
                pages::failure(
                    &page,
                    &self.message,
                    self.remedy.as_deref(),
                    self.hint.as_deref(),
                )
                .into_string(),
            ),
        )
            .into_response()
    }
}

type PageResult = Result<Response, Failure>;

pub(crate) fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::not_found().into_string()),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLESHEET_TEXT,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::SCRIPT_TEXT,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct FaxPreviewQuery {
    #[serde(default)]
    format: String,
    #[serde(default)]
    sample: String,
}

/// GET: the fax format's live preview, as text: the sample's address (200) or what is
/// wrong with the format (422). Nothing is saved.
async fn fax_preview(Query(query): Query<FaxPreviewQuery>) -> Response {
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let sample = if query.sample.trim().is_empty() {
        crate::forms::SAMPLE_FAX
    } else {
        query.sample.as_str()
    };
    match pages::fax_preview_text(&query.format, sample) {
        Ok(address) => (plain, address).into_response(),
        Err(problem) => (StatusCode::UNPROCESSABLE_ENTITY, plain, problem).into_response(),
    }
}

/// The console's home. (A provider's redirect to the default redirect URI's path,
/// `http://localhost/`, carries `state`: the guard hands it to the sign-in callback.)
async fn root() -> Response {
    Redirect::to("/accounts").into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

async fn login(
    AxumState(state): AxumState<Arc<State>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let with_password = state
        .accounts()
        .console_password_hash()
        .await
        .ok()
        .flatten()
        .is_some();
    let Some(token) = query.token else {
        return html(pages::login(None, with_password));
    };
    match state.security.redeem_login_token(&token) {
        Some(session) => signed_in(&state, &session),
        None => (
            StatusCode::FORBIDDEN,
            Html(
                pages::login(
                    Some(
                        "This login link was used already or has expired. Each link works once: ask for a new one where the console was started.",
                    ),
                    with_password,
                )
                .into_string(),
            ),
        )
            .into_response(),
    }
}

fn signed_in(state: &State, session: &str) -> Response {
    (
        [(header::SET_COOKIE, state.security.session_cookie(session))],
        Redirect::to("/accounts"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

/// POST: the admin password, when one is set.
async fn login_with_password(
    AxumState(state): AxumState<Arc<State>>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let hash = state
        .accounts()
        .console_password_hash()
        .await
        .ok()
        .flatten();
    let refuse = |status: StatusCode, problem: &str| {
        (
            status,
            Html(pages::login(Some(problem), hash.is_some()).into_string()),
        )
            .into_response()
    };
    let Some(hash) = hash.as_deref() else {
        return refuse(
            StatusCode::FORBIDDEN,
            "No admin password is set: open the login link printed where the console was started.",
        );
    };
    if !state.security.may_try_password() {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong passwords in the last minute: wait a minute, then try again.",
        );
    }
    // Argon2 is slow on purpose: off the request threads' async work.
    let (hash, password) = (hash.to_owned(), form.password);
    let matches = tokio::task::spawn_blocking(move || crate::password::verify(&hash, &password))
        .await
        .unwrap_or(false);
    if !matches {
        state.security.password_failed();
        return refuse(StatusCode::FORBIDDEN, "That is not the admin password.");
    }
    let session = state.security.start_session();
    signed_in(&state, &session)
}

async fn logout(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Response {
    state.security.end_session(&session.key);
    state.sign_ins.forget(&session.key);
    (
        [(header::SET_COOKIE, state.security.cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Every account with its sign-in: the "SMTP Setup" rows, the company account first.
pub(crate) async fn account_rows(state: &State) -> Result<Vec<AccountRow>, Failure> {
    let mailroom = &state.mailroom;
    Ok(mailroom::account_sign_ins(mailroom.database(), &mailroom.options().key).await?)
}

async fn accounts(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> PageResult {
    let rows = account_rows(&state).await?;
    let page = Page {
        title: "SMTP Setup",
        csrf: Some(&session.csrf),
    };
    Ok(html(pages::accounts(&page, &rows)))
}

/// `company` or a user account's id.
pub(crate) fn parse_account(text: &str) -> Result<AccountRef, Failure> {
    if text == "company" {
        return Ok(AccountRef::Company);
    }
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(|id| AccountRef::User(id as AccountId))
        .ok_or_else(|| Failure {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "there is no account {text:?}: an account is `company` or a user account's number"
            ),
            remedy: Some(Box::new(mailroom::Remedy::ListAccounts)),
            hint: None,
        })
}

#[derive(Debug, Deserialize)]
struct RemoveForm {
    #[serde(default)]
    force: Option<String>,
}

async fn remove_account(
    AxumState(state): AxumState<Arc<State>>,
    Path(account): Path<String>,
    Form(form): Form<RemoveForm>,
) -> PageResult {
    let AccountRef::User(id) = parse_account(&account)? else {
        return Err(Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the company account cannot be removed; change its settings instead"
                .to_owned(),
            remedy: None,
            hint: None,
        });
    };
    state
        .mailroom
        .remove_account(id, form.force.is_some())
        .await?;
    Ok(Redirect::to("/accounts").into_response())
}

#[derive(Debug, Deserialize)]
struct OutboxQuery {
    status: Option<String>,
    before: Option<i64>,
}

async fn outbox(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Query(query): Query<OutboxQuery>,
) -> PageResult {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<OutboxStatus>().map_err(|_| Failure {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "{text:?} is not an outbox status: choose queued, sending, held, sent, failed or cancelled"
            ),
            remedy: None,
            hint: None,
        })?),
    };
    let outbox = state.mailroom.outbox();
    let size = state.options.page_size;
    let messages = outbox.page(status, query.before, size).await?;
    let counts = outbox.counts_of(&pages::COUNTED).await?;
    let next = (messages.len() as u64 == size)
        .then(|| messages.last().map(|m| m.id))
        .flatten();
    let page = Page {
        title: "Outbox",
        csrf: Some(&session.csrf),
    };
    Ok(html(pages::outbox(&page, status, &counts, &messages, next)))
}

async fn outbox_message(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(id): Path<i64>,
) -> PageResult {
    let outbox = state.mailroom.outbox();
    let message = outbox.get(id).await?;
    let bytes = outbox.bytes(id).await?;
    let headers = pages::header_block(&bytes);
    let page = Page {
        title: "Queued message",
        csrf: Some(&session.csrf),
    };
    Ok(html(pages::outbox_message(&page, &message, &headers)))
}

async fn retry_message(AxumState(state): AxumState<Arc<State>>, Path(id): Path<i64>) -> PageResult {
    state.mailroom.outbox().retry(id).await?;
    Ok(Redirect::to(&format!("/outbox/{id}")).into_response())
}

async fn cancel_message(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<i64>,
) -> PageResult {
    state.mailroom.outbox().cancel(id).await?;
    Ok(Redirect::to(&format!("/outbox/{id}")).into_response())
}

async fn settings(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> PageResult {
    settings_page(&state, &session, Vec::new()).await
}

async fn settings_page(
    state: &State,
    session: &SessionContext,
    mut shown: Vec<signin::Notice>,
) -> PageResult {
    let settings = state.accounts().settings().await?;
    let apps = Apps::new(state.mailroom.database(), &state.mailroom.options().key)
        .list()
        .await
        .map_err(mailroom::Error::from)?;
    let page = Page {
        title: "Settings",
        csrf: Some(&session.csrf),
    };
    let mut notices = state.sign_ins.take_notices(&session.key);
    notices.append(&mut shown);
    Ok(html(pages::settings(&page, &settings, &apps, &notices)))
}

async fn save_settings(
    AxumState(state): AxumState<Arc<State>>,
    Form(form): Form<HashMap<String, String>>,
) -> PageResult {
    let allowed = form.contains_key("can_sign_in_when_sending");
    state
        .accounts()
        .set_can_sign_in_when_sending(allowed)
        .await?;
    Ok(Redirect::to("/settings").into_response())
}

/// What an app registration's form posts. The secret is write-only: empty keeps it.
#[derive(Debug, Deserialize)]
struct AppForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    redirect_uri: String,
}

async fn save_app(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(provider): Path<String>,
    Form(form): Form<AppForm>,
) -> PageResult {
    let saved = async {
        let provider = provider
            .parse::<Provider>()
            .ok()
            .filter(|p| p.uses_oauth())
            .ok_or_else(|| {
                mailroom::model::ValidationError::new(
                    "provider",
                    format!("`{provider}` has no OAuth app"),
                    "register the Microsoft or the Google app",
                )
            })?;
        let redirect = form.redirect_uri.trim();
        let change = AppChange {
            client_id: Some(form.client_id.trim().to_owned()).filter(|id| !id.is_empty()),
            client_secret: (!form.client_secret.is_empty())
                .then(|| Some(Secret::from(form.client_secret.as_str()))),
            tenant: form
                .tenant
                .as_deref()
                .map(str::trim)
                .filter(|tenant| !tenant.is_empty())
                .map(str::to_owned),
            overrides: EndpointOverrides {
                redirect_uri: if redirect.is_empty() {
                    None
                } else {
                    Some(parse_redirect_uri(provider, redirect)?)
                },
                ..EndpointOverrides::default()
            },
            ..AppChange::default()
        };
        state.mailroom.register_app(provider, change).await
    }
    .await;
    match saved {
        Ok(app) => {
            state.sign_ins.notify(
                &session.key,
                signin::Notice {
                    error: false,
                    text: format!(
                        "Saved the {} app (client id {}).",
                        pages::provider_name(app.provider),
                        app.client_id
                    ),
                    remedy: None,
                },
            );
            Ok(Redirect::to("/settings").into_response())
        }
        Err(error) => {
            settings_page(
                &state,
                &session,
                vec![signin::Notice {
                    error: true,
                    text: error.to_string(),
                    remedy: error.remedy(),
                }],
            )
            .await
        }
    }
}
