//! The HTTP server (axum): the authority's endpoints in both styles, the consent and device
//! pages, the Gmail API (`gmail.rs`), Microsoft Graph (`graph.rs`) and the admin API
//! (`admin.rs`); and the listener whose connections a handler can cut.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

use crate::authority::{AuthorizeOutcome, ConsentPage, Decision, JsonReply};
use crate::mailbox::Mailbox;
use crate::{Authority, Style};

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) authority: Authority,
    pub(crate) mailbox: Mailbox,
    /// `http://127.0.0.1:PORT`, for absolute URLs (upload sessions).
    pub(crate) base: Arc<str>,
    pub(crate) max_message_size: usize,
    pub(crate) uploads: Arc<Mutex<HashMap<String, crate::gmail::UploadSession>>>,
    pub(crate) graph: crate::graph::GraphControl,
}

impl AppState {
    pub(crate) fn new(
        authority: Authority,
        mailbox: Mailbox,
        base: String,
        max_message_size: usize,
    ) -> Self {
        Self {
            authority,
            mailbox,
            base: Arc::from(base),
            max_message_size,
            uploads: Arc::default(),
            graph: crate::graph::GraphControl::default(),
        }
    }
}

/// Cuts the connection a request came on: its reads and writes fail from then on, so the
/// server closes it without an answer (the Graph look-alike's "dropped upload"). Every
/// request carries its connection's switch as `ConnectInfo`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionSwitch(Arc<AtomicBool>);

impl ConnectionSwitch {
    pub(crate) fn cut(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_cut(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The HTTP listener: a TCP listener whose connections carry a [`ConnectionSwitch`].
pub(crate) struct SandboxListener(pub(crate) tokio::net::TcpListener);

impl axum::serve::Listener for SandboxListener {
    type Io = SwitchedStream;
    type Addr = ConnectionSwitch;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, _) = axum::serve::Listener::accept(&mut self.0).await;
        let switch = ConnectionSwitch::default();
        (
            SwitchedStream {
                inner: stream,
                switch: switch.clone(),
            },
            switch,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(|_| ConnectionSwitch::default())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SandboxListener>>
    for ConnectionSwitch
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, SandboxListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails once its switch is cut.
pub(crate) struct SwitchedStream {
    inner: tokio::net::TcpStream,
    switch: ConnectionSwitch,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the sandbox dropped the connection",
    )
}

impl tokio::io::AsyncRead for SwitchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SwitchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(crate) fn router(state: AppState) -> Router {
    // The base64 of a `raw` send is a third larger than the message.
    let body_limit = state.max_message_size / 3 * 4 + 64 * 1024;
    Router::new()
        .route("/", get(index))
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/authorize",
            get(microsoft_authorize_get).post(microsoft_authorize_post),
        )
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/token",
            post(microsoft_token),
        )
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/devicecode",
            post(microsoft_device),
        )
        .route(
            "/microsoft/devicelogin",
            get(microsoft_device_page).post(microsoft_device_approve),
        )
        .route(
            "/google/o/oauth2/v2/auth",
            get(google_authorize_get).post(google_authorize_post),
        )
        .route("/google/token", post(google_token))
        .route("/google/device/code", post(google_device))
        .route(
            "/google/device",
            get(google_device_page).post(google_device_approve),
        )
        .route("/google/revoke", post(google_revoke))
        .merge(crate::gmail::routes())
        .merge(crate::graph::routes())
        .merge(crate::admin::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

pub(crate) fn json_response(reply: JsonReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(reply.body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em;max-width:40em\"><h1>{title}</h1>{body_html}\
         <p style=\"color:#666\">mailroom sandbox: an offline look-alike, not the real provider.</p></body></html>",
        title = escape(title)
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

async fn index() -> Response {
    page(
        StatusCode::OK,
        "mailroom sandbox",
        "<p>OAuth endpoints under /microsoft/ and /google/, the Gmail API under /gmail/v1/ and /upload/gmail/v1/, Microsoft Graph under /v1.0/ (upload sessions under /outlook-upload/), the admin API under /_sandbox/.</p>",
    )
}

fn authorize_response(outcome: AuthorizeOutcome, action: &str) -> Response {
    match outcome {
        AuthorizeOutcome::Redirect(location) => {
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        AuthorizeOutcome::ErrorPage { status, message } => page(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            "Sign-in error",
            &format!("<p>{}</p>", escape(&message)),
        ),
        AuthorizeOutcome::Consent(consent) => consent_page(&consent, action),
    }
}

fn consent_page(consent: &ConsentPage, action: &str) -> Response {
    let provider = match consent.style {
        Style::Microsoft => "Microsoft (sandbox)",
        Style::Google => "Google (sandbox)",
    };
    let hidden: String = consent
        .params
        .iter()
        .filter(|(name, _)| name != "address" && name != "decision")
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    // Google lets the person untick each permission but the sign-in ones.
    let granular = consent.style == Style::Google;
    let scopes: String = consent
        .scopes
        .iter()
        .map(|scope| {
            if granular && !crate::authority::is_sign_in_scope(scope) {
                format!(
                    "<li><label><input type=\"checkbox\" name=\"grant:{0}\" checked> <code>{0}</code></label></li>",
                    escape(scope)
                )
            } else {
                format!("<li><code>{}</code></li>", escape(scope))
            }
        })
        .collect();
    let hidden = if granular {
        format!("{hidden}<input type=\"hidden\" name=\"granular\" value=\"1\">")
    } else {
        hidden
    };
    let account = consent.address.as_deref().unwrap_or_default();
    let body = format!(
        "<p>The app <code>{client}</code> asks to sign in as</p>\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <p><input name=\"address\" value=\"{account}\" size=\"40\" placeholder=\"name@example.com\"></p>\
         <p>and for these permissions:</p><ul>{scopes}</ul>\
         <p><button name=\"decision\" value=\"approve\">Approve</button> \
         <button name=\"decision\" value=\"deny\">Deny</button></p></form>",
        client = escape(&consent.client_id),
        action = escape(action),
        account = escape(account),
    );
    page(StatusCode::OK, &format!("Sign in to {provider}"), &body)
}

fn decision_of(form: &HashMap<String, String>) -> Decision {
    match form.get("decision").map(String::as_str) {
        Some("approve") => Decision::Approve(form.get("address").cloned().unwrap_or_default()),
        _ => Decision::Deny,
    }
}

async fn microsoft_authorize_get(
    State(state): State<AppState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let outcome =
        state
            .authority
            .authorize(Style::Microsoft, Some(&tenant), &params, Decision::Ask);
    authorize_response(
        outcome,
        &format!("/microsoft/{tenant}/oauth2/v2.0/authorize"),
    )
}

async fn microsoft_authorize_post(
    State(state): State<AppState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let decision = decision_of(&form);
    let outcome = state
        .authority
        .authorize(Style::Microsoft, Some(&tenant), &form, decision);
    authorize_response(
        outcome,
        &format!("/microsoft/{tenant}/oauth2/v2.0/authorize"),
    )
}

/// Google's granular consent: the person may untick any scope but the sign-in ones, and
/// the app is granted only what stayed ticked (Google's "How to handle granular
/// permissions"). The consent page's checkboxes (`grant:SCOPE`, present when ticked) say
/// which, on a form that offered them (`granular`); an automatic approval leaves
/// unticked what [`crate::authority::Authority::untick_google_scopes`] names.
fn granted_scopes(
    params: &mut HashMap<String, String>,
    form_ticks: Option<&HashMap<String, String>>,
    unticked: &[String],
) {
    let Some(requested) = params.get("scope").cloned() else {
        return;
    };
    let granted: Vec<&str> = requested
        .split_whitespace()
        .filter(|scope| {
            if crate::authority::is_sign_in_scope(scope) {
                return true;
            }
            match form_ticks {
                Some(form) => form.contains_key(&format!("grant:{scope}")),
                None => !unticked.iter().any(|u| u == scope),
            }
        })
        .collect();
    params.insert("scope".to_owned(), granted.join(" "));
}

async fn google_authorize_get(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Response {
    granted_scopes(&mut params, None, &state.authority.google_unticked());
    let outcome = state
        .authority
        .authorize(Style::Google, None, &params, Decision::Ask);
    authorize_response(outcome, "/google/o/oauth2/v2/auth")
}

async fn google_authorize_post(
    State(state): State<AppState>,
    Form(mut form): Form<HashMap<String, String>>,
) -> Response {
    if form.contains_key("granular") {
        let ticks = form.clone();
        granted_scopes(&mut form, Some(&ticks), &[]);
    }
    let decision = decision_of(&form);
    let outcome = state
        .authority
        .authorize(Style::Google, None, &form, decision);
    authorize_response(outcome, "/google/o/oauth2/v2/auth")
}

/// HTTP Basic client credentials (`client_id:client_secret`, each form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

async fn microsoft_token(
    State(state): State<AppState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = basic_credentials(&headers);
    json_response(
        state
            .authority
            .token(Style::Microsoft, Some(&tenant), &form, basic.as_ref()),
    )
}

async fn google_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = basic_credentials(&headers);
    json_response(
        state
            .authority
            .token(Style::Google, None, &form, basic.as_ref()),
    )
}

async fn microsoft_device(
    State(state): State<AppState>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    json_response(
        state
            .authority
            .device_authorization(Style::Microsoft, Some(&tenant), &form),
    )
}

async fn google_device(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    json_response(
        state
            .authority
            .device_authorization(Style::Google, None, &form),
    )
}

fn device_page(action: &str) -> Response {
    let body = format!(
        "<form method=\"post\" action=\"{action}\">\
         <p>Code: <input name=\"user_code\" size=\"12\"></p>\
         <p>Sign in as: <input name=\"address\" size=\"40\" placeholder=\"name@example.com\"></p>\
         <p><button name=\"decision\" value=\"approve\">Approve</button> \
         <button name=\"decision\" value=\"deny\">Deny</button></p></form>"
    );
    page(StatusCode::OK, "Enter the code", &body)
}

async fn microsoft_device_page() -> Response {
    device_page("/microsoft/devicelogin")
}

async fn google_device_page() -> Response {
    device_page("/google/device")
}

fn device_decision(state: &AppState, form: &HashMap<String, String>) -> Response {
    let code = form.get("user_code").cloned().unwrap_or_default();
    let decided = match form.get("decision").map(String::as_str) {
        Some("approve") => {
            let address = form.get("address").cloned().unwrap_or_default();
            address.contains('@') && state.authority.approve_device_code(&code, &address)
        }
        _ => state.authority.decline_device_code(&code),
    };
    if decided {
        page(
            StatusCode::OK,
            "Done",
            "<p>You may close this window and return to the app.</p>",
        )
    } else {
        page(
            StatusCode::BAD_REQUEST,
            "Code not accepted",
            "<p>No pending sign-in has this code (or the address is not an email address).</p>",
        )
    }
}

async fn microsoft_device_approve(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    device_decision(&state, &form)
}

async fn google_device_approve(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    device_decision(&state, &form)
}

async fn google_revoke(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token = form
        .get("token")
        .or_else(|| query.get("token"))
        .cloned()
        .unwrap_or_default();
    json_response(state.authority.revoke(&token))
}
