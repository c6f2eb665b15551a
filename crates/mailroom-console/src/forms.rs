//! The account forms: the company account ("Sales Email Confirmation") and a user
//! account (Add / Edit in "SMTP Setup"). A form becomes a `ServerSettingsChange` the
//! facade validates and saves in one transaction.
//!
//! Choosing another OAuth Service Provider fills its preset: the form's server fields are
//! then not applied (they still show the old provider's values), only the provider, the
//! SMTP user and a new password; the page says so. The password is write-only: an empty
//! field keeps the stored one, and no page ever shows it.

use std::sync::Arc;

use axum::extract::{Extension, Form, Path, State as AxumState};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom::accounts::BindingChange;
use mailroom::model::{
    AccountId, Binding, FaxFormat, Provider, Secret, ServerSettings, ServerSettingsChange,
    TlsStartup, ValidationError,
};
use mailroom::{AccountRef, Mailroom};
use serde::Deserialize;

use crate::pages::{self, AccountForm, Page};
use crate::routes::{Failure, State, account_rows, html, parse_account};
use crate::security::SessionContext;
use crate::signin::Notice;

/// The sample number the fax preview formats.
pub(crate) const SAMPLE_FAX: &str = "+1 (555) 010-2000";

/// What an account form posts. Every field is text, as a browser sends it. `Debug`
/// shows no password.
#[derive(Clone, Default, Deserialize)]
pub(crate) struct Posted {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    previous_provider: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    smtp_user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    tls_startup: Option<String>,
    #[serde(default)]
    timeout_ms: Option<String>,
    #[serde(default)]
    fax_format: Option<String>,
    #[serde(default)]
    fax_sample: Option<String>,
    #[serde(default)]
    business_object: String,
    #[serde(default)]
    column_name: String,
    #[serde(default)]
    column_value: String,
    /// `preview` shows the fax format's result without saving.
    #[serde(default)]
    action: String,
    /// The draft an Add form shows (Sign In before the account exists), empty otherwise.
    #[serde(default)]
    draft: String,
}

fn number<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<T, ValidationError> {
    text.trim().parse().map_err(|_| {
        ValidationError::new(
            field,
            format!("`{}` is not a number", text.trim()),
            "enter digits only",
        )
    })
}

impl std::fmt::Debug for Posted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posted")
            .field("provider", &self.provider)
            .field("smtp_user", &self.smtp_user)
            .finish_non_exhaustive()
    }
}

impl Posted {
    fn provider(&self) -> Result<Provider, ValidationError> {
        self.provider.parse()
    }

    /// The draft this form shows (`""`: none).
    pub(crate) fn draft_id(&self) -> &str {
        &self.draft
    }

    /// Makes this form the draft `id`'s.
    pub(crate) fn set_draft_id(&mut self, id: &str) {
        id.clone_into(&mut self.draft);
    }

    /// The SMTP user typed in.
    pub(crate) fn smtp_user(&self) -> &str {
        &self.smtp_user
    }

    /// The address a sign-in for the account being added came back with.
    pub(crate) fn set_smtp_user(&mut self, address: &str) {
        address.clone_into(&mut self.smtp_user);
    }

    /// Forgets a password typed in: the account being added signs in instead, and a
    /// draft kept in memory holds no secret of its own.
    pub(crate) fn forget_password(&mut self) {
        self.password.clear();
    }

    /// The account being added, signing in with `provider`: another provider's preset
    /// fills the server fields (as choosing it in the form does), the binding is checked,
    /// and the form takes the fields the account will have.
    pub(crate) fn choose_provider(
        &mut self,
        provider: Provider,
    ) -> Result<ServerSettingsChange, ValidationError> {
        if self.provider() != Ok(provider) {
            self.previous_provider = format!("not {}", provider.as_str());
            provider.as_str().clone_into(&mut self.provider);
        }
        self.forget_password();
        let settings = self.change(true)?.apply(None)?.settings;
        self.binding()?;
        self.previous_provider = provider.as_str().to_owned();
        self.host = Some(settings.host);
        self.port = Some(settings.port.to_string());
        self.tls = settings.tls.then(|| "1".to_owned());
        self.tls_startup = Some(settings.tls_startup.as_str().to_owned());
        self.timeout_ms = Some(settings.timeout_ms.to_string());
        self.change(true)
    }

    /// Whether the provider was changed on the form (its preset then applies).
    fn provider_changed(&self) -> bool {
        !self.previous_provider.is_empty() && self.previous_provider != self.provider
    }

    /// The change the form asks for. A field the page showed disabled (ignored by the
    /// provider) is not posted and so not changed.
    fn change(&self, tls_checkbox_shown: bool) -> Result<ServerSettingsChange, ValidationError> {
        let provider = self.provider()?;
        let mut change = ServerSettingsChange {
            provider: Some(provider),
            smtp_user: Some(self.smtp_user.clone()),
            password: (!self.password.is_empty()).then(|| Secret::from(self.password.as_str())),
            ..ServerSettingsChange::default()
        };
        if self.provider_changed() {
            return Ok(change);
        }
        change.host = self.host.clone();
        change.port = match self.port.as_deref() {
            Some(port) => Some(number("port", port)?),
            None => None,
        };
        // A checkbox is posted only when ticked.
        if tls_checkbox_shown {
            change.tls = Some(self.tls.is_some());
        }
        change.tls_startup = match self.tls_startup.as_deref() {
            Some(method) => Some(method.parse::<TlsStartup>()?),
            None => None,
        };
        change.timeout_ms = match self.timeout_ms.as_deref() {
            Some(timeout) => Some(number("timeout", timeout)?),
            None => None,
        };
        Ok(change)
    }

    fn fax_format(&self) -> Result<Option<FaxFormat>, ValidationError> {
        match self.fax_format.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => FaxFormat::parse(text).map(Some),
        }
    }

    fn binding(&self) -> Result<Option<Binding>, ValidationError> {
        let parts = [&self.business_object, &self.column_name, &self.column_value];
        if parts.iter().all(|part| part.trim().is_empty()) {
            return Ok(None);
        }
        Binding::new(
            self.business_object.trim(),
            self.column_name.trim(),
            self.column_value.trim(),
        )
        .map(Some)
    }

    /// The form as posted, to show again (with a problem, a preview or a notice).
    fn shown(&self, settings: ServerSettings) -> AccountForm {
        AccountForm {
            settings,
            fax_format: self.fax_format.clone().unwrap_or_default(),
            fax_sample: self
                .fax_sample
                .clone()
                .filter(|sample| !sample.trim().is_empty())
                .unwrap_or_else(|| SAMPLE_FAX.to_owned()),
            binding: [
                self.business_object.clone(),
                self.column_name.clone(),
                self.column_value.clone(),
            ],
            signed_in: None,
            draft: Some(self.draft.clone()).filter(|id| !id.is_empty()),
        }
    }
}

/// The form's settings: the posted change applied to the stored settings (or a preset),
/// for showing the form again; the stored ones when the change does not apply.
fn settings_for(posted: &Posted, current: Option<&ServerSettings>) -> ServerSettings {
    let provider = posted.provider().unwrap_or(Provider::Microsoft);
    posted
        .change(true)
        .ok()
        .and_then(|change| change.apply(current).ok())
        .map(|applied| applied.settings)
        .or_else(|| current.cloned())
        .unwrap_or_else(|| ServerSettings::preset(provider))
}

fn preset_notice(provider: Provider) -> Notice {
    Notice {
        error: false,
        text: format!(
            "The {} preset was filled in (server, port, TLS); the other fields were not applied. Review them and save again to change them.",
            pages::provider_name(provider)
        ),
        remedy: None,
    }
}

fn saved_notices(ignored: &[mailroom::model::IgnoredSetting], notices: &[String]) -> Vec<Notice> {
    let mut shown = vec![Notice {
        error: false,
        text: "Saved.".to_owned(),
        remedy: None,
    }];
    shown.extend(ignored.iter().map(|ignored| Notice {
        error: false,
        text: format!(
            "{} is stored but ignored: {}.",
            ignored.setting, ignored.reason
        ),
        remedy: None,
    }));
    shown.extend(notices.iter().map(|notice| Notice {
        error: false,
        text: format!("{notice}."),
        remedy: None,
    }));
    shown
}

fn problem(error: mailroom::Error) -> Notice {
    Notice {
        error: true,
        text: error.to_string(),
        remedy: error.remedy(),
    }
}

async fn render(
    state: &State,
    session: &SessionContext,
    account: Option<AccountRef>,
    form: Option<AccountForm>,
    notices: Vec<Notice>,
) -> Result<Response, Failure> {
    let rows = account_rows(state).await?;
    let row = match account {
        None => None,
        Some(reference) => rows
            .into_iter()
            .find(|row| row.account.account_ref() == reference),
    };
    let title = match account {
        Some(AccountRef::Company) => "Sales Email Confirmation",
        Some(AccountRef::User(_)) => "Edit account",
        None => "Add account",
    };
    let form = match (form, &row) {
        (Some(form), _) => form,
        (None, Some(row)) => AccountForm::of(&row.account),
        (None, None) => AccountForm::new(account),
    };
    let page = Page {
        title,
        csrf: Some(&session.csrf),
    };
    let browser = state.options.listen.ip().is_loopback();
    let mut shown = state.sign_ins.take_notices(&session.key);
    shown.extend(notices);
    Ok(html(pages::account_form(
        &page,
        account,
        row.as_ref(),
        &form,
        &shown,
        browser,
    )))
}

/// GET: the company account's or a user account's form.
pub(crate) async fn show(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    if let AccountRef::User(_) = reference {
        // A user account that does not exist is a 404, not an empty form.
        state
            .accounts()
            .account(reference)
            .await
            .map_err(Failure::from)?;
    }
    render(&state, &session, Some(reference), None, Vec::new()).await
}

/// GET: the Add form; the account being added with Sign In first, when there is one
/// (the form as it was, filled from the sign-in).
pub(crate) async fn show_new(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
) -> Result<Response, Failure> {
    let now = state.options.clock.now();
    let form = state
        .sign_ins
        .drafts
        .form(&session.key, now)
        .map(|(posted, signed_in)| AccountForm {
            signed_in,
            ..posted.shown(settings_for(&posted, None))
        });
    render(&state, &session, None, form, Vec::new()).await
}

/// POST: saves the company account or a user account (or previews the fax format).
pub(crate) async fn save(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Path(account): Path<String>,
    Form(posted): Form<Posted>,
) -> Result<Response, Failure> {
    let reference = parse_account(&account)?;
    let current = match state.accounts().account(reference).await {
        Ok(account) => Some(account.server().clone()),
        Err(mailroom::accounts::Error::NoCompanyAccount) if reference == AccountRef::Company => {
            None
        }
        Err(error) => return Err(error.into()),
    };
    let shown = posted.shown(settings_for(&posted, current.as_ref()));
    if posted.action == "preview" {
        return render(&state, &session, Some(reference), Some(shown), Vec::new()).await;
    }
    match save_account(&state.mailroom, reference, &posted, current.as_ref()).await {
        Ok(notices) => {
            for notice in notices {
                state.sign_ins.notify(&session.key, notice);
            }
            Ok(Redirect::to(&crate::pages::path_of(Some(reference))).into_response())
        }
        Err(error) => {
            render(
                &state,
                &session,
                Some(reference),
                Some(shown),
                vec![problem(error)],
            )
            .await
        }
    }
}

/// POST: adds a user account, with the sign-in its draft holds when the form is a draft's
/// (account and token in one transaction).
pub(crate) async fn add(
    AxumState(state): AxumState<Arc<State>>,
    Extension(session): Extension<SessionContext>,
    Form(posted): Form<Posted>,
) -> Result<Response, Failure> {
    let now = state.options.clock.now();
    let mut shown = posted.shown(settings_for(&posted, None));
    let drafts = &state.sign_ins.drafts;
    let signed_in = drafts.sign_in(&session.key, posted.draft_id(), now);
    let mut notices = Vec::new();
    let saved = async {
        let change = posted.change(true).map_err(mailroom::Error::from)?;
        let binding = posted.binding()?;
        match &signed_in {
            Some(signed_in) if change.provider == Some(signed_in.provider) => {
                let account = state
                    .mailroom
                    .add_account_with_sign_in(&change, binding, signed_in)
                    .await?;
                Ok((account.id, Vec::new(), Vec::new()))
            }
            _ => {
                if let Some(signed_in) = &signed_in {
                    notices.push(Notice {
                        error: false,
                        text: format!(
                            "The sign-in of {} ({}) was not kept: the account uses another provider. Sign in again.",
                            signed_in.identity.address,
                            pages::provider_name(signed_in.provider)
                        ),
                        remedy: None,
                    });
                }
                let saved = state.mailroom.add_account(&change, binding).await?;
                Ok::<_, mailroom::Error>((saved.account.id, saved.ignored, saved.notices))
            }
        }
    }
    .await;
    match saved {
        Ok((id, ignored, saved)) => {
            drafts.finish(&session.key, posted.draft_id());
            for notice in saved_notices(&ignored, &saved).into_iter().chain(notices) {
                state.sign_ins.notify(&session.key, notice);
            }
            Ok(Redirect::to(&format!("/accounts/{id}")).into_response())
        }
        Err(error) => {
            // Not added: the draft keeps the form as posted, and its sign-in.
            drafts.keep_posted(&session.key, &posted, now);
            shown.signed_in = signed_in.map(|signed_in| signed_in.identity.address);
            render(&state, &session, None, Some(shown), vec![problem(error)]).await
        }
    }
}

async fn save_account(
    mailroom: &Mailroom,
    reference: AccountRef,
    posted: &Posted,
    current: Option<&ServerSettings>,
) -> Result<Vec<Notice>, mailroom::Error> {
    let provider = posted.provider()?;
    // The TLS checkbox is shown (and so posted or not) unless the provider ignores it.
    let shown_tls = current.is_none_or(|c| !ignores_tls(c.provider)) && !ignores_tls(provider);
    let change = posted.change(shown_tls)?;
    let (ignored, notices) = match reference {
        AccountRef::Company => {
            let saved = mailroom
                .save_company(&change, Some(posted.fax_format()?))
                .await?;
            (saved.ignored, saved.notices)
        }
        AccountRef::User(id) => {
            let binding = match posted.binding()? {
                Some(binding) => BindingChange::Set(binding),
                None => BindingChange::Clear,
            };
            let saved = mailroom
                .edit_account(id as AccountId, &change, binding)
                .await?;
            (saved.ignored, saved.notices)
        }
    };
    let mut shown = saved_notices(&ignored, &notices);
    if posted.provider_changed() {
        shown.push(preset_notice(provider));
    }
    Ok(shown)
}

/// Whether the provider ignores the TLS settings (the page shows them disabled).
pub(crate) fn ignores_tls(provider: Provider) -> bool {
    ServerSettings::ignored_settings(provider)
        .iter()
        .any(|ignored| ignored.setting == "tls")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(provider: &str, previous: &str) -> Posted {
        Posted {
            provider: provider.to_owned(),
            previous_provider: previous.to_owned(),
            host: Some("smtp.example.com".to_owned()),
            smtp_user: "sales@example.com".to_owned(),
            port: Some("2525".to_owned()),
            tls_startup: Some("starttls".to_owned()),
            timeout_ms: Some("30000".to_owned()),
            ..Posted::default()
        }
    }

    #[test]
    fn a_form_becomes_a_change_and_an_empty_password_keeps_the_stored_one() {
        let change = posted("none", "none").change(true).unwrap();
        assert_eq!(change.host.as_deref(), Some("smtp.example.com"));
        assert_eq!(change.port, Some(2525));
        assert_eq!(
            change.tls,
            Some(false),
            "an unticked box is posted as nothing"
        );
        assert_eq!(change.tls_startup, Some(TlsStartup::StartTls));
        assert_eq!(change.timeout_ms, Some(30_000));
        assert!(change.password.is_none());
        let mut with_password = posted("none", "none");
        with_password.password = "s3cret".to_owned();
        assert_eq!(
            with_password
                .change(true)
                .unwrap()
                .password
                .unwrap()
                .expose(),
            "s3cret"
        );
    }

    #[test]
    fn another_provider_takes_its_preset_not_the_old_fields() {
        let change = posted("microsoft", "none").change(true).unwrap();
        assert_eq!(change.provider, Some(Provider::Microsoft));
        assert!(change.host.is_none() && change.port.is_none() && change.tls.is_none());
        let applied = change.apply(None).unwrap().settings;
        assert_eq!(applied.host, "smtp.office365.com");
        assert_eq!(applied.port, 587);
    }

    #[test]
    fn bad_numbers_and_methods_say_which_field() {
        let mut bad = posted("none", "none");
        bad.port = Some("25x".to_owned());
        assert!(bad.change(true).unwrap_err().to_string().contains("port"));
        let mut bad = posted("none", "none");
        bad.tls_startup = Some("sometimes".to_owned());
        assert!(bad.change(true).is_err());
    }

    #[test]
    fn choosing_a_provider_to_sign_in_fills_its_preset_and_forgets_the_password() {
        let mut form = posted("none", "none");
        form.password = "typed".to_owned();
        let change = form.choose_provider(Provider::Google).unwrap();
        assert_eq!(change.provider, Some(Provider::Google));
        assert!(form.password.is_empty(), "a draft holds no password");
        let google = ServerSettings::preset(Provider::Google);
        assert_eq!(form.host.as_deref(), Some(google.host.as_str()));
        assert_eq!(form.port, Some(google.port.to_string()));
        assert_eq!(
            (form.provider.as_str(), form.previous_provider.as_str()),
            ("google", "google")
        );
        assert_eq!(form.smtp_user(), "sales@example.com");

        // The form's own provider keeps what was typed.
        let mut form = posted("microsoft", "microsoft");
        let change = form.choose_provider(Provider::Microsoft).unwrap();
        assert_eq!(change.host.as_deref(), Some("smtp.example.com"));
        assert_eq!(form.port.as_deref(), Some("2525"));
        assert_eq!(form.tls_startup.as_deref(), Some("starttls"));

        // A half binding is refused before anyone signs in.
        let mut form = posted("microsoft", "microsoft");
        form.business_object = "SystemUser".to_owned();
        assert!(form.choose_provider(Provider::Microsoft).is_err());
    }

    #[test]
    fn a_binding_is_all_three_fields_or_none() {
        let mut form = posted("microsoft", "microsoft");
        assert_eq!(form.binding().unwrap(), None);
        form.business_object = "SystemUser".to_owned();
        assert!(form.binding().is_err(), "a half binding is refused");
        form.column_name = "User_Name".to_owned();
        form.column_value = "sa".to_owned();
        assert_eq!(
            form.binding().unwrap(),
            Some(Binding::new("SystemUser", "User_Name", "sa").unwrap())
        );
    }
}
