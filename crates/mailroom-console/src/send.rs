//! "Send a test message": from a chosen account, or for a (feature, system user) pair as
//! the host application would send, showing which account the resolution picked and why.
//! The send never prompts (the console has no one to prompt mid-request): an account that
//! needs a sign-in fails with the remedy, offered as its Sign In button.

use std::sync::Arc;

use axum::extract::{Extension, Form, State as AxumState};
use axum::response::Response;
use mailroom::{MessageDraft, SendRequest};
use serde::Deserialize;

use crate::pages::{self, Page};
use crate::routes::{Failure, State, account_rows, html, parse_account};
use crate::security::SessionContext;
use crate::signin::Notice;

/// What the form posts.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SendForm {
    /// `account` (send with `account`) or `resolve` (`feature` and `system_user`).
    #[serde(default)]
    pub(crate) mode: String,
    #[serde(default)]
    pub(crate) account: String,
    #[serde(default)]
    pub(crate) feature: String,
    #[serde(default)]
    pub(crate) system_user: String,
    #[serde(default)]
    pub(crate) to: String,
    #[serde(default)]
    pub(crate) subject: String,
    #[serde(default)]
    pub(crate) body: String,
}

async fn render(
    state: &State,
    session: &SessionContext,
    form: &SendForm,
    outcome: Vec<Notice>,
    receipt: Option<&mailroom::Receipt>,
) -> Result<Response, Failure> {
    let rows = account_rows(state).await?;
    let features: Vec<String> = state
        .mailroom
        .options()
        .features
        .iter()
        .map(|feature| feature.name.to_string())
        .collect();
    let page = Page {
        title: "Send a test message",
        csrf: Some(&session.csrf),
    };
    Ok(html(pages::send_test(
        &page, &rows, &features, form, &outcome, receipt,
    )))
}

/// GET: the form.
pub(crate) async fn show(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Result<Response, Failure> {
    let form = SendForm {
        mode: "account".to_owned(),
        account: "company".to_owned(),
        subject: "mailroom test message".to_owned(),
        body: "This is a test message sent from the mailroom console.".to_owned(),
        ..SendForm::default()
    };
    render(&state, &session, &form, Vec::new(), None).await
}

/// POST: sends, and shows the receipt or what went wrong.
pub(crate) async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(form): Form<SendForm>,
) -> Result<Response, Failure> {
    let account = if form.mode == "resolve" {
        None
    } else {
        Some(parse_account(&form.account)?)
    };
    let mut request = SendRequest::new(
        if form.feature.trim().is_empty() {
            mailroom::SALES_DOCUMENT.to_owned()
        } else {
            form.feature.trim().to_owned()
        },
        MessageDraft {
            to: form
                .to
                .split([',', ';'])
                .map(str::trim)
                .filter(|to| !to.is_empty())
                .map(str::to_owned)
                .collect(),
            subject: form.subject.clone(),
            text: Some(format!("{}\r\n", form.body.trim_end())),
            ..MessageDraft::default()
        },
    );
    request.account = account;
    request.system_user = Some(form.system_user.trim().to_owned()).filter(|u| !u.is_empty());
    match state.mailroom.send(request).await {
        Ok(receipt) => render(&state, &session, &form, Vec::new(), Some(&receipt)).await,
        Err(error) => {
            let notice = Notice {
                error: true,
                text: error.to_string(),
                remedy: error.remedy().map(|remedy| match account {
                    Some(known) => remedy.for_account(known),
                    None => remedy,
                }),
            };
            render(&state, &session, &form, vec![notice], None).await
        }
    }
}
