//! "Health": each account's sign-in (state, expiry, last refresh, the token's last
//! refusal) with its remedy as a button — Sign in again, Refresh now — and the doctor's
//! checks for one account on demand (they reach the account's server, so they are not run
//! on every page load).

use std::sync::Arc;

use axum::extract::{Extension, Path, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom::{DoctorOptions, DoctorReport};

use crate::pages::{self, Page};
use crate::routes::{Failure, State, account_rows, html, parse_account};
use crate::security::SessionContext;
use crate::signin::Notice;

async fn render(
    state: &State,
    session: &SessionContext,
    report: Option<(mailroom::AccountRef, DoctorReport)>,
) -> Result<Response, Failure> {
    let rows = account_rows(state).await?;
    let notices = state.sign_ins.take_notices(&session.key);
    let page = Page {
        title: "Health",
        csrf: Some(&session.csrf),
    };
    Ok(html(pages::health(&page, &rows, &notices, report.as_ref())))
}

/// GET: every account's sign-in.
pub(crate) async fn show(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Result<Response, Failure> {
    render(&state, &session, None).await
}

/// POST: the doctor's checks for one account (sends no mail).
pub(crate) async fn check(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let report = state
        .mailroom
        .doctor(DoctorOptions {
            account: Some(reference),
            ..DoctorOptions::default()
        })
        .await;
    render(&state, &session, Some((reference, report))).await
}

/// POST: refreshes the account's token now.
pub(crate) async fn refresh(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let notice = match state.mailroom.refresh_token(reference).await {
        Ok(token) => Notice {
            error: false,
            text: format!(
                "Refreshed the token of {}: valid until {}.",
                token.address,
                token.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            remedy: None,
        },
        Err(error) => Notice {
            error: true,
            text: format!("{reference}: {error}"),
            remedy: error.remedy().map(|remedy| remedy.for_account(reference)),
        },
    };
    state.sign_ins.notify(&session.key, notice);
    Ok(Redirect::to("/health").into_response())
}
