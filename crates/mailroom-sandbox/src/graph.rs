//! Microsoft Graph's mail sending as Microsoft's v1.0 reference describes it, under
//! `/v1.0/me/...` and `/v1.0/users/{id}/...`:
//!
//! - `POST sendMail` with a base64 MIME body (`Content-Type: text/plain`) or a JSON
//!   `{"message": ..., "saveToSentItems": ...}` (`user-sendmail`): `202 Accepted`.
//! - `POST messages` (a draft, MIME or JSON, `user-post-messages`): `201` with its `id`;
//!   `POST messages/{id}/attachments` (a `fileAttachment` under 3 MB);
//!   `POST messages/{id}/attachments/createUploadSession` (3 MB to 150 MB,
//!   `attachment-createuploadsession`); `POST messages/{id}/send` (`message-send`): `202`;
//!   `DELETE messages/{id}`: `204`.
//! - The upload URL (on another host in reality, here `/outlook-upload/{session}` with its
//!   own `authtoken` query parameter): `PUT` chunks of at most 4 MiB, in order, with
//!   `Content-Range`, and no `Authorization` header; `200` with `nextExpectedRanges` until
//!   the last byte, then `201` with a `Location`; `GET` answers the session's
//!   `nextExpectedRanges`; `DELETE` cancels the session (`concepts/outlook-large-attachments`).
//!
//! Bearer tokens are checked against the authority (Microsoft style; `Mail.Send` to send,
//! `Mail.ReadWrite` for drafts, as the token's user; another mailbox needs
//! `Mail.Send.Shared` / `Mail.ReadWrite.Shared`; `/me` is the token's user, `/users/{id}`
//! must be the user or a mailbox they may send as, named by its address: the sandbox knows no object ids;
//! an app-only token with Graph's `.default` scope and its application permissions
//! (`Mail.Send`, `Mail.ReadWrite`) may use any mailbox, or only those of the app's
//! management scope ([`crate::Authority::restrict_app_graph_mailboxes`]), not `/me`). Every answer carries a `request-id` and echoes the
//! `client-request-id`; failures carry Graph's error JSON (`concepts/errors.md`). A sent
//! message is stored as one `.eml`: the MIME exactly as received, a JSON message as built
//! here, a draft with its attachments added as parts.

// The error of these checks is the HTTP response itself, sent as it is.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Style;
use crate::authority::{
    GRAPH_APP_SCOPE, GRAPH_MAIL_READ_WRITE_ROLE, GRAPH_MAIL_READ_WRITE_SCOPES,
    GRAPH_MAIL_READ_WRITE_SHARED_SCOPES, GRAPH_MAIL_SEND_ROLE, GRAPH_MAIL_SEND_SCOPES,
    GRAPH_MAIL_SEND_SHARED_SCOPES, TokenCheck,
};
use crate::http::{AppState, ConnectionSwitch};
use crate::mailbox::{Arrival, ReceivedBy, header_value};

/// Graph's limit on one request's body ("4 MB", read as 4,000,000 bytes).
pub const GRAPH_REQUEST_LIMIT: usize = 4_000_000;
/// The largest `PUT` to an upload session (4 MiB).
pub const GRAPH_MAX_CHUNK: usize = 4 * 1024 * 1024;
/// Attachments from this size go through an upload session; smaller ones may not (3 MiB).
pub const GRAPH_MIN_UPLOAD_SIZE: u64 = 3 * 1024 * 1024;
/// The largest attachment an upload session takes (150 MB).
pub const GRAPH_MAX_ATTACHMENT_SIZE: u64 = 150 * 1024 * 1024;

/// Test hooks of the Graph look-alike; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct GraphControl {
    inner: Arc<Mutex<GraphStore>>,
}

#[derive(Debug, Default)]
struct GraphStore {
    drafts: HashMap<String, Draft>,
    sessions: HashMap<String, UploadSession>,
    failures: VecDeque<Failure>,
    drop_chunks: u32,
    dropped: u64,
    chunks_kept: u64,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Throttled(u64),
    Unavailable,
}

#[derive(Debug, Clone)]
struct Draft {
    mailbox: String,
    mime: Vec<u8>,
    attachments: Vec<FileAttachment>,
}

#[derive(Debug, Clone)]
struct FileAttachment {
    name: String,
    content_type: String,
    content_id: Option<String>,
    is_inline: bool,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct UploadSession {
    authtoken: String,
    draft_id: String,
    attachment: FileAttachment,
    size: u64,
    done: bool,
    expires: String,
}

impl GraphControl {
    fn lock(&self) -> MutexGuard<'_, GraphStore> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next Graph API call (`sendMail`, a draft, an attachment, `send`, a delete)
    /// answers `429 ApplicationThrottled` with `Retry-After: retry_after_secs`; calls queue
    /// up when this is called several times.
    pub fn throttle_next_call(&self, retry_after_secs: u64) {
        self.lock()
            .failures
            .push_back(Failure::Throttled(retry_after_secs));
    }

    /// The next Graph API call answers `503 serviceNotAvailable`.
    pub fn fail_next_call_unavailable(&self) {
        self.lock().failures.push_back(Failure::Unavailable);
    }

    /// The next `PUT` to an upload session is read, not kept, and its connection is dropped
    /// without an answer; the session still expects those bytes.
    pub fn drop_next_upload_chunk(&self) {
        self.lock().drop_chunks += 1;
    }

    /// How many upload chunks were dropped so far.
    pub fn dropped_chunk_count(&self) -> u64 {
        self.lock().dropped
    }

    /// How many upload chunks were kept so far (each `PUT` whose bytes joined an
    /// attachment; a dropped or refused chunk is not counted).
    pub fn upload_chunk_count(&self) -> u64 {
        self.lock().chunks_kept
    }

    /// How many drafts are held (created, neither sent nor deleted).
    pub fn draft_count(&self) -> usize {
        self.lock().drafts.len()
    }
}

pub(crate) fn routes() -> Router<AppState> {
    let mailbox = || {
        Router::new()
            .route("/sendMail", post(send_mail))
            .route("/messages", post(create_draft))
            .route("/messages/{id}", delete(delete_draft))
            .route("/messages/{id}/attachments", post(add_attachment))
            .route(
                "/messages/{id}/attachments/createUploadSession",
                post(create_upload_session),
            )
            .route("/messages/{id}/send", post(send_draft))
    };
    Router::new()
        .nest("/v1.0/me", mailbox())
        .nest("/v1.0/users/{user}", mailbox())
        .route(
            "/outlook-upload/{session}",
            put(upload_put).get(upload_get).delete(upload_delete),
        )
        .layer(middleware::from_fn(request_ids))
}

/// The ids of one request: Graph's `request-id`, and the client's `client-request-id`.
#[derive(Debug, Clone)]
struct RequestIds {
    request_id: String,
    client_request_id: Option<String>,
}

fn uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Gives each request its ids, and each answer the `request-id` and `client-request-id`
/// headers (the client's echoed when it sent a usable one).
async fn request_ids(mut request: Request, next: Next) -> Response {
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned);
    let ids = RequestIds {
        request_id: uuid(),
        client_request_id,
    };
    request.extensions_mut().insert(ids.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&ids.request_id) {
        headers.insert("request-id", value);
    }
    let echoed = ids.client_request_id.unwrap_or(ids.request_id);
    if let Ok(value) = HeaderValue::from_str(&echoed) {
        headers.insert("client-request-id", value);
    }
    response
}

/// Graph's error JSON, `{"error": {"code", "message", "innerError": {...}}}`.
fn graph_error(ids: &RequestIds, status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": ids.request_id,
                "client-request-id": ids.client_request_id.as_deref().unwrap_or(&ids.request_id),
            }
        }
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
    }
    response
}

fn bad_request(ids: &RequestIds, code: &str, message: &str) -> Response {
    graph_error(ids, StatusCode::BAD_REQUEST, code, message)
}

fn not_found(ids: &RequestIds) -> Response {
    graph_error(
        ids,
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn body_too_large(ids: &RequestIds) -> Response {
    graph_error(
        ids,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestBodyTooLarge",
        "The maximum request length supported is 4MB.",
    )
}

fn message_too_large(ids: &RequestIds, size: usize, limit: usize) -> Response {
    graph_error(
        ids,
        StatusCode::PAYLOAD_TOO_LARGE,
        "ErrorMessageSizeExceeded",
        &format!(
            "The message exceeds the maximum supported size. Size: {size} bytes; limit: {limit} bytes."
        ),
    )
}

fn store_failed(ids: &RequestIds, error: &std::io::Error) -> Response {
    graph_error(
        ids,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ErrorInternalServerError",
        &format!("the sandbox cannot store the message: {error}"),
    )
}

/// At most `limit` bytes of the body, else Graph's 413.
async fn read_body(ids: &RequestIds, body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| body_too_large(ids))
}

/// An injected failure, when one is queued.
fn injected(state: &AppState, ids: &RequestIds) -> Option<Response> {
    let failure = state.graph.lock().failures.pop_front()?;
    Some(match failure {
        Failure::Throttled(seconds) => {
            let mut response = graph_error(
                ids,
                StatusCode::TOO_MANY_REQUESTS,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Failure::Unavailable => graph_error(
            ids,
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable for maintenance or is overloaded. You may repeat the request after a delay.",
        ),
    })
}

/// Which permission a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Send,
    ReadWrite,
}

/// The mailbox a request acts on, or the error response: 401 `InvalidAuthenticationToken`
/// for a missing, unknown, expired or revoked token (or one of another style), 403
/// `ErrorAccessDenied` without the permission or for a mailbox the user may not use, 400
/// for `/me` with an app-only token.
fn authenticate(
    state: &AppState,
    ids: &RequestIds,
    headers: &HeaderMap,
    user: Option<&str>,
    need: Need,
) -> Result<String, Response> {
    let unauthorized = |message: &str| {
        graph_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(unauthorized("Access token is empty."));
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(unauthorized("Access token is empty."));
    }
    let info = match state.authority.check_access_token(token) {
        TokenCheck::Valid(info) if info.style == Style::Microsoft => info,
        TokenCheck::Expired(info) if info.style == Style::Microsoft => {
            return Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            ));
        }
        TokenCheck::Revoked(info) if info.style == Style::Microsoft => {
            return Err(unauthorized(
                "Access token has been revoked or the user's sessions were revoked.",
            ));
        }
        _ => {
            return Err(unauthorized(
                "IDX14100: JWT is not well formed, there are no dots (.).",
            ));
        }
    };
    let denied = || {
        graph_error(
            ids,
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    };
    let Some(address) = info.address.clone() else {
        // An app-only token: no `/me`; its application permissions (`roles`: `Mail.Send`
        // to send, `Mail.ReadWrite` for drafts; microsoft-graph-docs `user-sendmail.md`,
        // "Permissions", Application) on any mailbox, unless RBAC for Applications limits
        // the app to its management scope (learn.microsoft.com/exchange/permissions-exo/
        // application-rbac): then another mailbox is `ErrorAccessDenied`. A token for
        // another resource (Exchange Online's `.default`) carries no Graph permission.
        let Some(user) = user else {
            return Err(bad_request(
                ids,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            ));
        };
        let role = match need {
            Need::Send => GRAPH_MAIL_SEND_ROLE,
            Need::ReadWrite => GRAPH_MAIL_READ_WRITE_ROLE,
        };
        if !info.has_any_scope(&[GRAPH_APP_SCOPE])
            || !info.has_role(role)
            || !state
                .authority
                .app_may_use_graph_mailbox(&info.client_id, user)
        {
            return Err(denied());
        }
        return Ok(user.to_owned());
    };
    let mailbox = match user {
        None => address.clone(),
        Some(user) => user.to_owned(),
    };
    let own = mailbox.eq_ignore_ascii_case(&address);
    // Delegated permissions (microsoft-graph-docs `api-reference/v1.0/api/user-sendmail.md`
    // and `message-send.md`, "Permissions"; `permissions-reference.md`): `Mail.Send` sends
    // as the signed-in user only; another mailbox (a shared one) needs `Mail.Send.Shared`,
    // which covers the user's own too ("send mail as the signed-in user, including on
    // behalf of others"). Drafts: `Mail.ReadWrite`, or `Mail.ReadWrite.Shared` for another
    // mailbox.
    let permitted = match (need, own) {
        (Need::Send, true) => {
            info.has_any_scope(GRAPH_MAIL_SEND_SCOPES)
                || info.has_any_scope(GRAPH_MAIL_SEND_SHARED_SCOPES)
        }
        (Need::Send, false) => info.has_any_scope(GRAPH_MAIL_SEND_SHARED_SCOPES),
        (Need::ReadWrite, true) => {
            info.has_any_scope(GRAPH_MAIL_READ_WRITE_SCOPES)
                || info.has_any_scope(GRAPH_MAIL_READ_WRITE_SHARED_SCOPES)
        }
        (Need::ReadWrite, false) => info.has_any_scope(GRAPH_MAIL_READ_WRITE_SHARED_SCOPES),
    };
    if !permitted || !state.authority.may_send_as(&address, &mailbox) {
        return Err(denied());
    }
    Ok(mailbox)
}

/// The media type of the request, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .ok()
}

/// The addresses of an address-list header value (`a@b, "Name, Q" <c@d>`).
fn addresses(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut angle = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .filter_map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return None;
            }
            let address = match (item.rfind('<'), item.rfind('>')) {
                (Some(start), Some(end)) if start < end => &item[start + 1..end],
                _ => item,
            };
            Some(address.trim().to_owned())
        })
        .collect()
}

fn valid_address(address: &str) -> bool {
    address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)
    })
}

/// Every To, Cc and Bcc address of a MIME message, or Graph's 400.
fn mime_recipients(ids: &RequestIds, bytes: &[u8]) -> Result<Vec<String>, Response> {
    let recipients: Vec<String> = ["to", "cc", "bcc"]
        .iter()
        .filter_map(|name| header_value(bytes, name))
        .flat_map(|value| addresses(&value))
        .collect();
    check_recipients(ids, recipients)
}

fn check_recipients(ids: &RequestIds, recipients: Vec<String>) -> Result<Vec<String>, Response> {
    if recipients.is_empty() {
        return Err(bad_request(
            ids,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
        ));
    }
    if let Some(bad) = recipients.iter().find(|address| !valid_address(address)) {
        return Err(bad_request(
            ids,
            "ErrorInvalidRecipients",
            &format!("At least one recipient is not valid., Recipient '{bad}' is not resolved."),
        ));
    }
    Ok(recipients)
}

/// Stores a sent message and answers `202 Accepted`.
async fn deliver(
    state: &AppState,
    ids: &RequestIds,
    mailbox: &str,
    bytes: &[u8],
    recipients: Vec<String>,
    received_by: ReceivedBy,
) -> Response {
    if bytes.len() > state.max_message_size {
        return message_too_large(ids, bytes.len(), state.max_message_size);
    }
    let arrival = Arrival {
        received_by,
        authenticated_as: mailbox.to_owned(),
        envelope_from: None,
        recipients,
        gmail_id: None,
        graph_request_id: Some(ids.request_id.clone()),
    };
    match state.mailbox.store(arrival, bytes).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(error) => store_failed(ids, &error),
    }
}

/// The message of a request body: the MIME form (`text/plain`, base64) or the JSON form,
/// as MIME bytes and its recipients.
fn message_of(
    ids: &RequestIds,
    headers: &HeaderMap,
    body: &[u8],
    mailbox: &str,
    json_root: bool,
) -> Result<(Vec<u8>, Vec<String>, bool), Response> {
    let media_type = media_type(headers);
    if media_type == "text/plain" {
        let Some(bytes) = decode_base64(body) else {
            return Err(bad_request(
                ids,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            ));
        };
        return Ok((bytes, Vec::new(), true));
    }
    if media_type != "application/json" {
        return Err(graph_error(
            ids,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "The content type '{media_type}' is not supported: send application/json, or text/plain with a base64 MIME message."
            ),
        ));
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request(
            ids,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        ));
    };
    let message = if json_root {
        if let Some(save) = request.get("saveToSentItems") {
            if !save.is_boolean() && !save.is_null() {
                return Err(bad_request(
                    ids,
                    "ErrorInvalidRequest",
                    "saveToSentItems must be a Boolean.",
                ));
            }
        }
        match request.get("message") {
            Some(message) if message.is_object() => message,
            _ => {
                return Err(bad_request(
                    ids,
                    "ErrorInvalidRequest",
                    "The message parameter is missing or is not an object.",
                ));
            }
        }
    } else {
        &request
    };
    let built = build_json_message(ids, message, mailbox, !json_root)?;
    Ok((built.0, built.1, false))
}

async fn send_mail(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(response) = injected(&state, &ids) {
        return response;
    }
    let mailbox = match authenticate(
        &state,
        &ids,
        &headers,
        params.get("user").map(String::as_str),
        Need::Send,
    ) {
        Ok(mailbox) => mailbox,
        Err(response) => return response,
    };
    let body = match read_body(&ids, body, GRAPH_REQUEST_LIMIT).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (bytes, recipients, mime) = match message_of(&ids, &headers, &body, &mailbox, true) {
        Ok(message) => message,
        Err(response) => return response,
    };
    let (recipients, received_by) = if mime {
        match mime_recipients(&ids, &bytes) {
            Ok(recipients) => (recipients, ReceivedBy::GraphMime),
            Err(response) => return response,
        }
    } else {
        (recipients, ReceivedBy::GraphJson)
    };
    deliver(&state, &ids, &mailbox, &bytes, recipients, received_by).await
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "AAMkAD{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

async fn create_draft(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(response) = injected(&state, &ids) {
        return response;
    }
    let mailbox = match authenticate(
        &state,
        &ids,
        &headers,
        params.get("user").map(String::as_str),
        Need::ReadWrite,
    ) {
        Ok(mailbox) => mailbox,
        Err(response) => return response,
    };
    let body = match read_body(&ids, body, GRAPH_REQUEST_LIMIT).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (bytes, _, _) = match message_of(&ids, &headers, &body, &mailbox, false) {
        Ok(message) => message,
        Err(response) => return response,
    };
    if bytes.len() > state.max_message_size {
        return message_too_large(&ids, bytes.len(), state.max_message_size);
    }
    let id = new_id();
    let subject = header_value(&bytes, "subject").unwrap_or_default();
    state.graph.lock().drafts.insert(
        id.clone(),
        Draft {
            mailbox: mailbox.clone(),
            mime: bytes,
            attachments: Vec::new(),
        },
    );
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "@odata.context": format!("{}/v1.0/$metadata#users('{mailbox}')/messages/$entity", state.base),
            "id": id,
            "subject": subject,
            "isDraft": true,
            "hasAttachments": false,
        })),
    )
        .into_response()
}

/// The draft's id and mailbox after the token check, or the error response.
fn draft_request(
    state: &AppState,
    ids: &RequestIds,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    need: Need,
) -> Result<(String, String), Response> {
    if let Some(response) = injected(state, ids) {
        return Err(response);
    }
    let mailbox = authenticate(
        state,
        ids,
        headers,
        params.get("user").map(String::as_str),
        need,
    )?;
    let id = params.get("id").cloned().unwrap_or_default();
    let known = state
        .graph
        .lock()
        .drafts
        .get(&id)
        .is_some_and(|draft| draft.mailbox.eq_ignore_ascii_case(&mailbox));
    if known {
        Ok((id, mailbox))
    } else {
        Err(not_found(ids))
    }
}

async fn delete_draft(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = match draft_request(&state, &ids, &headers, &params, Need::ReadWrite) {
        Ok((id, _)) => id,
        Err(response) => return response,
    };
    let mut store = state.graph.lock();
    store.drafts.remove(&id);
    store.sessions.retain(|_, session| session.draft_id != id);
    StatusCode::NO_CONTENT.into_response()
}

fn text_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// A `fileAttachment` of a JSON body (`contentBytes` in base64).
fn file_attachment(ids: &RequestIds, value: &Value) -> Result<FileAttachment, Response> {
    let kind = text_field(value, "@odata.type").unwrap_or("#microsoft.graph.fileAttachment");
    if !kind.eq_ignore_ascii_case("#microsoft.graph.fileAttachment") {
        return Err(bad_request(
            ids,
            "ErrorInvalidRequest",
            &format!("The mailroom sandbox takes file attachments only, not {kind}."),
        ));
    }
    let Some(name) = text_field(value, "name").filter(|name| !name.trim().is_empty()) else {
        return Err(bad_request(
            ids,
            "ErrorInvalidRequest",
            "The attachment has no name.",
        ));
    };
    let Some(bytes) =
        text_field(value, "contentBytes").and_then(|text| decode_base64(text.as_bytes()))
    else {
        return Err(bad_request(
            ids,
            "ErrorInvalidRequest",
            "contentBytes is missing or is not base64.",
        ));
    };
    Ok(FileAttachment {
        name: name.to_owned(),
        content_type: text_field(value, "contentType")
            .filter(|text| !text.trim().is_empty())
            .unwrap_or("application/octet-stream")
            .to_owned(),
        content_id: text_field(value, "contentId").map(str::to_owned),
        is_inline: value
            .get("isInline")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        bytes,
    })
}

async fn add_attachment(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, _) = match draft_request(&state, &ids, &headers, &params, Need::ReadWrite) {
        Ok(draft) => draft,
        Err(response) => return response,
    };
    let body = match read_body(&ids, body, GRAPH_REQUEST_LIMIT).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(&ids, "BadRequest", "Unable to read JSON request payload.");
    };
    let attachment = match file_attachment(&ids, &value) {
        Ok(attachment) => attachment,
        Err(response) => return response,
    };
    let answer = json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": new_id(),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": attachment.bytes.len(),
        "isInline": attachment.is_inline,
    });
    match state.graph.lock().drafts.get_mut(&id) {
        Some(draft) => draft.attachments.push(attachment),
        None => return not_found(&ids),
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

fn upload_url(state: &AppState, session_id: &str, session: &UploadSession) -> String {
    format!(
        "{}/outlook-upload/{session_id}?authtoken={}",
        state.base, session.authtoken
    )
}

/// The answer to `createUploadSession`.
fn created_session(state: &AppState, session_id: &str, session: &UploadSession) -> Value {
    json!({
        "@odata.context": format!("{}/v1.0/$metadata#microsoft.graph.uploadSession", state.base),
        "uploadUrl": upload_url(state, session_id, session),
        "expirationDateTime": session.expires,
        "nextExpectedRanges": ["0-"],
    })
}

/// The upload URL's answer while bytes are missing (Outlook's shape: no `uploadUrl`, the
/// same expiry as at the start, the next offset).
fn session_progress(state: &AppState, session: &UploadSession) -> Value {
    let ranges: Vec<String> = if session.done {
        Vec::new()
    } else {
        vec![session.attachment.bytes.len().to_string()]
    };
    json!({
        "@odata.context": format!("{}/outlook-upload/$metadata#AttachmentSessions/$entity", state.base),
        "ExpirationDateTime": session.expires,
        "nextExpectedRanges": ranges,
    })
}

async fn create_upload_session(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, _) = match draft_request(&state, &ids, &headers, &params, Need::ReadWrite) {
        Ok(draft) => draft,
        Err(response) => return response,
    };
    let body = match read_body(&ids, body, GRAPH_REQUEST_LIMIT).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(&ids, "BadRequest", "Unable to read JSON request payload.");
    };
    let Some(item) = value.get("AttachmentItem").filter(|item| item.is_object()) else {
        return bad_request(
            &ids,
            "ErrorInvalidRequest",
            "The AttachmentItem parameter is missing.",
        );
    };
    if text_field(item, "attachmentType").is_some_and(|kind| !kind.eq_ignore_ascii_case("file")) {
        return bad_request(
            &ids,
            "ErrorInvalidRequest",
            "Only attachmentType file is supported.",
        );
    }
    let Some(name) = text_field(item, "name").filter(|name| !name.trim().is_empty()) else {
        return bad_request(&ids, "ErrorInvalidRequest", "The attachment has no name.");
    };
    let Some(size) = item.get("size").and_then(Value::as_u64) else {
        return bad_request(
            &ids,
            "ErrorInvalidRequest",
            "The attachment's size is missing.",
        );
    };
    if size < GRAPH_MIN_UPLOAD_SIZE {
        return bad_request(
            &ids,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        );
    }
    if size > GRAPH_MAX_ATTACHMENT_SIZE || size > state.max_message_size as u64 {
        return message_too_large(
            &ids,
            usize::try_from(size).unwrap_or(usize::MAX),
            state.max_message_size,
        );
    }
    let session = UploadSession {
        authtoken: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(rand::random::<[u8; 32]>()),
        draft_id: id,
        attachment: FileAttachment {
            name: name.to_owned(),
            content_type: text_field(item, "contentType")
                .filter(|text| !text.trim().is_empty())
                .unwrap_or("application/octet-stream")
                .to_owned(),
            content_id: text_field(item, "contentId").map(str::to_owned),
            is_inline: item
                .get("isInline")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bytes: Vec::new(),
        },
        size,
        done: false,
        expires: {
            // Graph writes seven decimals (.NET ticks).
            let at = chrono::Utc::now() + chrono::Duration::hours(6);
            format!(
                "{}.{:07}Z",
                at.format("%Y-%m-%dT%H:%M:%S"),
                chrono::Timelike::nanosecond(&at) % 1_000_000_000 / 100
            )
        },
    };
    let session_id = uuid();
    let answer = created_session(&state, &session_id, &session);
    state.graph.lock().sessions.insert(session_id, session);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// `Content-Range: bytes FIRST-LAST/TOTAL`.
fn parse_content_range(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total: u64 = total.trim().parse().ok()?;
    (first <= last).then_some((first, last, total))
}

/// The session of an upload URL whose `authtoken` matches, or the error response. The URL
/// is pre-authenticated: a request with an `Authorization` header is refused, as Outlook
/// documents that it must not carry one.
fn upload_session(
    state: &AppState,
    ids: &RequestIds,
    session_id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(graph_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The upload URL is pre-authenticated: send no Authorization header.",
        ));
    }
    let store = state.graph.lock();
    let Some(session) = store.sessions.get(session_id) else {
        return Err(not_found(ids));
    };
    let presented = query
        .get("authtoken")
        .map(String::as_str)
        .unwrap_or_default();
    if presented.is_empty() || presented != session.authtoken {
        return Err(graph_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The upload URL's authtoken is missing or not valid.",
        ));
    }
    Ok(())
}

async fn upload_get(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(session_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = upload_session(&state, &ids, &session_id, &query, &headers) {
        return response;
    }
    let store = state.graph.lock();
    let Some(session) = store.sessions.get(&session_id) else {
        return not_found(&ids);
    };
    (
        StatusCode::OK,
        axum::Json(session_progress(&state, session)),
    )
        .into_response()
}

/// Cancels the session (`204`); the draft keeps the attachments it already has.
async fn upload_delete(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(session_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = upload_session(&state, &ids, &session_id, &query, &headers) {
        return response;
    }
    state.graph.lock().sessions.remove(&session_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn upload_put(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    ConnectInfo(connection): ConnectInfo<ConnectionSwitch>,
    Path(session_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(response) = upload_session(&state, &ids, &session_id, &query, &headers) {
        return response;
    }
    let body = match axum::body::to_bytes(body, GRAPH_MAX_CHUNK).await {
        Ok(body) => body,
        Err(_) => {
            return graph_error(
                &ids,
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "A chunk of an upload session may be at most 4 MiB (4194304 bytes).",
            );
        }
    };
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_content_range);
    let mut guard = state.graph.lock();
    // One borrow of the store, so a session and the store's counters are borrowed apart.
    let store = &mut *guard;
    if store.drop_chunks > 0 {
        store.drop_chunks -= 1;
        store.dropped += 1;
        connection.cut();
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let Some(session) = store.sessions.get_mut(&session_id) else {
        return not_found(&ids);
    };
    let Some((first, last, total)) = range else {
        return bad_request(
            &ids,
            "InvalidContentRange",
            "The Content-Range header is missing or not valid; send bytes FIRST-LAST/TOTAL.",
        );
    };
    if total != session.size {
        return bad_request(
            &ids,
            "InvalidContentRange",
            &format!(
                "The Content-Range's total {total} is not the attachment's size {} given to createUploadSession.",
                session.size
            ),
        );
    }
    if (last - first).checked_add(1) != Some(body.len() as u64) {
        return bad_request(
            &ids,
            "InvalidContentRange",
            "The Content-Range does not match the length of the body.",
        );
    }
    let received = session.attachment.bytes.len() as u64;
    if session.done || first != received || last >= total {
        let mut response = graph_error(
            &ids,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            &format!(
                "The range {first}-{last} is not the next expected one; the session expects bytes {received}- of {total}."
            ),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        return response;
    }
    session.attachment.bytes.extend_from_slice(&body);
    let received = session.attachment.bytes.len() as u64;
    store.chunks_kept += 1;
    if received < total {
        let answer = session_progress(&state, session);
        return (StatusCode::OK, axum::Json(answer)).into_response();
    }
    session.done = true;
    let attachment = session.attachment.clone();
    let draft_id = session.draft_id.clone();
    let Some(draft) = store.drafts.get_mut(&draft_id) else {
        return not_found(&ids);
    };
    let mailbox = draft.mailbox.clone();
    draft.attachments.push(attachment);
    let attachment_id = new_id();
    let mut response = StatusCode::CREATED.into_response();
    let location = format!(
        "{}/v1.0/users('{mailbox}')/messages('{draft_id}')/attachments('{attachment_id}')",
        state.base
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn send_draft(
    State(state): State<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, mailbox) = match draft_request(&state, &ids, &headers, &params, Need::Send) {
        Ok(draft) => draft,
        Err(response) => return response,
    };
    if let Err(response) = read_body(&ids, body, GRAPH_REQUEST_LIMIT).await {
        return response;
    }
    let Some(draft) = state.graph.lock().drafts.get(&id).cloned() else {
        return not_found(&ids);
    };
    let bytes = with_attachments(&draft.mime, &draft.attachments);
    let recipients = match mime_recipients(&ids, &bytes) {
        Ok(recipients) => recipients,
        Err(response) => return response,
    };
    let response = deliver(
        &state,
        &ids,
        &mailbox,
        &bytes,
        recipients,
        ReceivedBy::GraphDraft,
    )
    .await;
    if response.status().is_success() {
        let mut store = state.graph.lock();
        store.drafts.remove(&id);
        store.sessions.retain(|_, session| session.draft_id != id);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Building MIME: a JSON message, and a draft with its attachments added as parts.

fn boundary() -> String {
    format!("=_mailroom_sandbox_{:032x}", rand::random::<u128>())
}

/// Base64 in lines of 76 characters, each ending in CRLF.
fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// A header value safe to write: CR and LF removed, non-ASCII as an RFC 2047 word.
fn header_text(text: &str) -> String {
    let text: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if text.is_ascii() {
        text
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        )
    }
}

/// A quoted MIME parameter value (the name of a file).
fn quoted_parameter(text: &str) -> String {
    let text = header_text(text);
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One attachment as a MIME part (headers, empty line, base64 lines).
fn attachment_part(attachment: &FileAttachment) -> String {
    let content_type: String = attachment
        .content_type
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != '"')
        .collect();
    let content_type = if content_type.contains('/') {
        content_type
    } else {
        "application/octet-stream".to_owned()
    };
    let name = quoted_parameter(&attachment.name);
    let mut part = format!(
        "Content-Type: {content_type}; name={name}\r\nContent-Disposition: {}; filename={name}\r\nContent-Transfer-Encoding: base64\r\n",
        if attachment.is_inline {
            "inline"
        } else {
            "attachment"
        }
    );
    if let Some(content_id) = &attachment.content_id {
        let content_id = header_text(content_id);
        let content_id = content_id.trim_start_matches('<').trim_end_matches('>');
        part.push_str(&format!("Content-ID: <{content_id}>\r\n"));
    }
    part.push_str("\r\n");
    part.push_str(&base64_lines(&attachment.bytes));
    part
}

/// The `boundary` parameter of a `multipart/mixed` content type.
fn mixed_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    parts.find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|value| !value.is_empty())
    })
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&index| &haystack[index..index + needle.len()] == needle)
}

/// The end of the header section (the index of the body's first byte) and the line ending.
fn split_header(bytes: &[u8]) -> (usize, &'static str) {
    for index in 0..bytes.len() {
        if bytes[index..].starts_with(b"\r\n\r\n") {
            return (index + 4, "\r\n");
        }
        if bytes[index..].starts_with(b"\n\n") {
            return (index + 2, "\n");
        }
    }
    (bytes.len(), "\r\n")
}

/// The draft's MIME with `attachments` added: as parts before the closing delimiter of a
/// top-level `multipart/mixed`, else in a new `multipart/mixed` around the message's body.
fn with_attachments(mime: &[u8], attachments: &[FileAttachment]) -> Vec<u8> {
    if attachments.is_empty() {
        return mime.to_vec();
    }
    let parts: Vec<String> = attachments.iter().map(attachment_part).collect();
    if let Some(boundary) = header_value(mime, "content-type").and_then(|ct| mixed_boundary(&ct)) {
        let closing = format!("--{boundary}--");
        if let Some(at) = find_last(mime, closing.as_bytes()) {
            let mut out =
                Vec::with_capacity(mime.len() + parts.iter().map(String::len).sum::<usize>() + 256);
            out.extend_from_slice(&mime[..at]);
            for part in &parts {
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                out.extend_from_slice(part.as_bytes());
            }
            out.extend_from_slice(&mime[at..]);
            return out;
        }
    }
    // Wrap: the content headers move into the first part, with the body.
    let (body_start, newline) = split_header(mime);
    let header_text = String::from_utf8_lossy(&mime[..body_start]);
    let mut top = String::new();
    let mut moved = String::new();
    let mut moving = false;
    for line in header_text.split(newline) {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if name == "mime-version" {
                moving = false;
                continue;
            }
            moving = name.starts_with("content-");
        }
        let target = if moving { &mut moved } else { &mut top };
        target.push_str(line);
        target.push_str("\r\n");
    }
    if moved.is_empty() {
        moved.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    }
    let boundary = boundary();
    let mut out =
        Vec::with_capacity(mime.len() + parts.iter().map(String::len).sum::<usize>() + 512);
    out.extend_from_slice(top.as_bytes());
    out.extend_from_slice(
        format!("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{moved}\r\n").as_bytes(),
    );
    out.extend_from_slice(&mime[body_start..]);
    out.extend_from_slice(b"\r\n");
    for part in &parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// The recipients of a JSON list (`[{"emailAddress": {"address", "name"}}]`), as header
/// text and addresses.
fn json_recipients(
    ids: &RequestIds,
    message: &Value,
    field: &str,
) -> Result<(String, Vec<String>), Response> {
    let Some(list) = message.get(field) else {
        return Ok((String::new(), Vec::new()));
    };
    let Some(list) = list.as_array() else {
        return Err(bad_request(
            ids,
            "ErrorInvalidRequest",
            &format!("{field} must be a collection of recipients."),
        ));
    };
    let mut shown = Vec::new();
    let mut found = Vec::new();
    for entry in list {
        let email = entry.get("emailAddress");
        let address = email
            .and_then(|email| text_field(email, "address"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !valid_address(&address) || address.contains(['<', '>', ',', '"']) {
            return Err(bad_request(
                ids,
                "ErrorInvalidRecipients",
                &format!(
                    "At least one recipient is not valid., Recipient '{address}' is not resolved."
                ),
            ));
        }
        match email
            .and_then(|email| text_field(email, "name"))
            .filter(|n| !n.trim().is_empty())
        {
            Some(name) => shown.push(format!("{} <{address}>", quoted_parameter(name))),
            None => shown.push(address.clone()),
        }
        found.push(address);
    }
    Ok((shown.join(", "), found))
}

/// A MIME message from Graph's JSON `message` resource (subject, body, recipients, file
/// attachments), From the mailbox, and its To, Cc and Bcc addresses. A message sent at
/// once gets no Bcc header, as Exchange shows none, and needs a recipient; a draft may have
/// none yet, and keeps its Bcc recipients as a header until it is sent.
fn build_json_message(
    ids: &RequestIds,
    message: &Value,
    mailbox: &str,
    draft: bool,
) -> Result<(Vec<u8>, Vec<String>), Response> {
    let mut recipients = Vec::new();
    let mut headers = format!(
        "From: {mailbox}\r\nDate: {}\r\nMessage-ID: <{}@sandbox.graph.invalid>\r\n",
        chrono::Utc::now().to_rfc2822(),
        uuid()
    );
    for (field, name) in [
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", if draft { "Bcc" } else { "" }),
    ] {
        let (shown, found) = json_recipients(ids, message, field)?;
        if !name.is_empty() && !shown.is_empty() {
            headers.push_str(&format!("{name}: {shown}\r\n"));
        }
        recipients.extend(found);
    }
    let recipients = if draft {
        recipients
    } else {
        check_recipients(ids, recipients)?
    };
    if let Some(subject) = text_field(message, "subject") {
        headers.push_str(&format!("Subject: {}\r\n", header_text(subject)));
    }
    let body = message.get("body");
    let content = body
        .and_then(|body| text_field(body, "content"))
        .unwrap_or_default();
    let subtype = match body.and_then(|body| text_field(body, "contentType")) {
        Some(kind) if kind.eq_ignore_ascii_case("html") => "html",
        _ => "plain",
    };
    let text_part = format!(
        "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        base64_lines(content.as_bytes())
    );
    let mut attachments = Vec::new();
    if let Some(list) = message.get("attachments") {
        let Some(list) = list.as_array() else {
            return Err(bad_request(
                ids,
                "ErrorInvalidRequest",
                "attachments must be a collection.",
            ));
        };
        for value in list {
            attachments.push(file_attachment(ids, value)?);
        }
    }
    headers.push_str("MIME-Version: 1.0\r\n");
    let mut out = headers;
    if attachments.is_empty() {
        out.push_str(&text_part);
    } else {
        let boundary = boundary();
        out.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{text_part}"
        ));
        for attachment in &attachments {
            out.push_str(&format!("--{boundary}\r\n{}", attachment_part(attachment)));
        }
        out.push_str(&format!("--{boundary}--\r\n"));
    }
    Ok((out.into_bytes(), recipients))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(
            addresses("a@b.example, \"Doe, Jane\" <jane@c.example>,<x@y>"),
            ["a@b.example", "jane@c.example", "x@y"]
        );
        assert!(addresses(" ").is_empty());
        assert!(valid_address("a@b"));
        assert!(!valid_address("ab"));
        assert!(!valid_address("a b@c"));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-99/200"), Some((0, 99, 200)));
        assert_eq!(parse_content_range("bytes 5-1/9"), None);
        assert_eq!(parse_content_range("bytes */9"), None);
        assert_eq!(parse_content_range("bytes 0-1/*"), None);
    }

    fn attachment(bytes: &[u8]) -> FileAttachment {
        FileAttachment {
            name: "r\u{e9}sum\u{e9}.bin".to_owned(),
            content_type: "application/octet-stream".to_owned(),
            content_id: None,
            is_inline: false,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn attachments_join_a_mixed_message_or_wrap_a_single_part() {
        let mixed = b"To: a@b\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XX--\r\n";
        let out = String::from_utf8(with_attachments(mixed, &[attachment(b"abc")])).unwrap();
        assert!(out.ends_with("hi\r\n--XX\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?B?csOpc3Vtw6kuYmlu?=\"\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?csOpc3Vtw6kuYmlu?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n--XX--\r\n"), "{out}");

        let single = b"To: a@b\r\nContent-Type: text/plain\r\nSubject: s\r\n\r\nhello\r\n";
        let out = String::from_utf8(with_attachments(single, &[attachment(b"abc")])).unwrap();
        assert!(out.starts_with("To: a@b\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="), "{out}");
        assert!(
            out.contains("\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\n--"),
            "{out}"
        );
        assert!(out.contains("YWJj\r\n--=_mailroom_sandbox_"), "{out}");
        assert_eq!(with_attachments(single, &[]), single.to_vec());
    }
}
