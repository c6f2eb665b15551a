//! The Gmail API's `users.messages.send` as Google's discovery document describes it:
//! `uploadType=media` and `uploadType=resumable` under `/upload/gmail/v1/...` (the
//! resumable protocol also under `/resumable/upload/gmail/v1/...`), and the JSON
//! `{"raw": ...}` body at `/gmail/v1/...`. Bearer tokens are checked against the authority
//! (Google style, a send scope); failures carry Google's error JSON. The message is stored
//! exactly as received: unlike Gmail, the sandbox never rewrites a `From` that is not the
//! account's address, and it does not support `uploadType=multipart`.

// The error of these checks is the HTTP response itself, sent as it is; boxing it would
// only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Style;
use crate::authority::{GMAIL_SEND_SCOPES, TokenCheck};
use crate::http::AppState;
use crate::mailbox::{Arrival, ReceivedBy, header_value};

/// A resumable upload in progress.
#[derive(Debug, Clone)]
pub(crate) struct UploadSession {
    address: String,
    total: Option<u64>,
    received: Vec<u8>,
    /// The answer once the message is complete (a status query then repeats it).
    finished: Option<Value>,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/upload/gmail/v1/users/{user_id}/messages/send",
            post(upload_post).put(resumable_put),
        )
        .route(
            "/resumable/upload/gmail/v1/users/{user_id}/messages/send",
            post(resumable_start).put(resumable_put),
        )
        .route("/gmail/v1/users/{user_id}/messages/send", post(raw_send))
}

/// Google's error JSON.
pub(crate) fn google_api_error(
    status: StatusCode,
    message: &str,
    reason: &str,
    domain: &str,
    status_text: &str,
) -> Response {
    let mut error = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{ "message": message, "domain": domain, "reason": reason }],
            "status": status_text,
        }
    });
    if reason == "insufficientPermissions" {
        error["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {
                "service": "gmail.googleapis.com",
                "method": "caribou.api.proto.MailboxService.SendMessage"
            }
        }]);
    }
    let mut response = (status, axum::Json(error)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
            ),
        );
    }
    response
}

fn unauthenticated() -> Response {
    google_api_error(
        StatusCode::UNAUTHORIZED,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "authError",
        "global",
        "UNAUTHENTICATED",
    )
}

fn invalid_argument(message: &str) -> Response {
    google_api_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalidArgument",
        "global",
        "INVALID_ARGUMENT",
    )
}

fn too_large() -> Response {
    google_api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request Too Large",
        "uploadTooLarge",
        "global",
        "FAILED_PRECONDITION",
    )
}

/// The authenticated address, or the error response: Google's 401 for a missing, unknown,
/// expired or revoked token (or one of another style), 403 for missing scopes, 403
/// "Delegation denied" for a `userId` other than `me` or the account's own address.
fn authenticate(state: &AppState, headers: &HeaderMap, user_id: &str) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthenticated)?;
    let info = match state.authority.check_access_token(token) {
        TokenCheck::Valid(info) if info.style == Style::Google => info,
        _ => return Err(unauthenticated()),
    };
    if !info.has_any_scope(GMAIL_SEND_SCOPES) {
        return Err(google_api_error(
            StatusCode::FORBIDDEN,
            "Request had insufficient authentication scopes.",
            "insufficientPermissions",
            "global",
            "PERMISSION_DENIED",
        ));
    }
    let address = info.address.unwrap_or_default();
    if user_id != "me" && !user_id.eq_ignore_ascii_case(&address) {
        let message = format!("Delegation denied for {address}");
        return Err(google_api_error(
            StatusCode::FORBIDDEN,
            &message,
            "forbidden",
            "global",
            "PERMISSION_DENIED",
        ));
    }
    Ok(address)
}

/// Gmail refuses a message without any recipient header.
fn has_recipients(bytes: &[u8]) -> bool {
    ["to", "cc", "bcc"]
        .iter()
        .any(|name| header_value(bytes, name).is_some_and(|value| !value.trim().is_empty()))
}

async fn accept(
    state: &AppState,
    address: &str,
    bytes: &[u8],
    received_by: ReceivedBy,
) -> Result<Value, Response> {
    if bytes.len() > state.max_message_size {
        return Err(too_large());
    }
    if !has_recipients(bytes) {
        return Err(invalid_argument("Recipient address required"));
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let arrival = Arrival {
        received_by,
        authenticated_as: address.to_owned(),
        envelope_from: None,
        recipients: Vec::new(),
        gmail_id: Some(id.clone()),
        graph_request_id: None,
    };
    state.mailbox.store(arrival, bytes).await.map_err(|error| {
        google_api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the sandbox cannot store the message: {error}"),
            "backendError",
            "global",
            "INTERNAL",
        )
    })?;
    Ok(json!({ "id": id, "threadId": id, "labelIds": ["SENT"] }))
}

fn is_message_media_type(headers: &HeaderMap, name: header::HeaderName) -> Result<(), Response> {
    let media_type = headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if media_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("message/"))
    {
        Ok(())
    } else {
        Err(google_api_error(
            StatusCode::BAD_REQUEST,
            &format!("Media type '{media_type}' is not supported. Valid media types: [message/*]"),
            "badContent",
            "global",
            "INVALID_ARGUMENT",
        ))
    }
}

async fn upload_post(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match query.get("uploadType").map(String::as_str) {
        Some("media") => {}
        Some("resumable") => return start_session(&state, &user_id, &headers).await,
        Some(other) => {
            return invalid_argument(&format!(
                "uploadType={other} is not supported by the mailroom sandbox; use media, resumable or the JSON raw field"
            ));
        }
        None => return invalid_argument("Missing uploadType"),
    }
    let address = match authenticate(&state, &headers, &user_id) {
        Ok(address) => address,
        Err(response) => return response,
    };
    if let Err(response) = is_message_media_type(&headers, header::CONTENT_TYPE) {
        return response;
    }
    match accept(&state, &address, &body, ReceivedBy::GmailMedia).await {
        Ok(message) => (StatusCode::OK, axum::Json(message)).into_response(),
        Err(response) => response,
    }
}

async fn resumable_start(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    start_session(&state, &user_id, &headers).await
}

async fn start_session(state: &AppState, user_id: &str, headers: &HeaderMap) -> Response {
    let address = match authenticate(state, headers, user_id) {
        Ok(address) => address,
        Err(response) => return response,
    };
    if headers.contains_key("x-upload-content-type") {
        if let Err(response) = is_message_media_type(
            headers,
            header::HeaderName::from_static("x-upload-content-type"),
        ) {
            return response;
        }
    }
    let total = headers
        .get("x-upload-content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if total.is_some_and(|total| total > state.max_message_size as u64) {
        return too_large();
    }
    let upload_id = format!("{:032x}", rand::random::<u128>());
    state.uploads.lock().expect("uploads lock").insert(
        upload_id.clone(),
        UploadSession {
            address,
            total,
            received: Vec::new(),
            finished: None,
        },
    );
    let location = format!(
        "{}/upload/gmail/v1/users/{}/messages/send?uploadType=resumable&upload_id={upload_id}",
        state.base,
        url::form_urlencoded::byte_serialize(user_id.as_bytes()).collect::<String>()
    );
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&upload_id) {
        response.headers_mut().insert("x-guploader-uploadid", value);
    }
    response
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` or `bytes */TOTAL` (a status query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentRange {
    Chunk {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
    Query {
        total: Option<u64>,
    },
}

fn parse_content_range(text: &str) -> Option<ContentRange> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        number => Some(number.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Query { total });
    }
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    (first <= last).then_some(ContentRange::Chunk { first, last, total })
}

fn incomplete(received: u64) -> Response {
    // 308 "Resume Incomplete", with what the session holds.
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    if received > 0 {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1)) {
            response.headers_mut().insert(header::RANGE, value);
        }
    }
    response
}

async fn resumable_put(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(upload_id) = query.get("upload_id") else {
        return invalid_argument("Missing upload_id");
    };
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|value| value.to_str().ok())
        .map(parse_content_range);
    let complete = {
        let mut uploads = state.uploads.lock().expect("uploads lock");
        let Some(session) = uploads.get_mut(upload_id) else {
            return google_api_error(
                StatusCode::NOT_FOUND,
                "The upload session does not exist or has expired.",
                "notFound",
                "global",
                "NOT_FOUND",
            );
        };
        if let Some(finished) = &session.finished {
            return (StatusCode::OK, axum::Json(finished.clone())).into_response();
        }
        let received = session.received.len() as u64;
        match range {
            Some(Some(ContentRange::Query { total })) => {
                if total.is_some() {
                    session.total = total;
                }
                return incomplete(received);
            }
            Some(Some(ContentRange::Chunk { first, last, total })) => {
                if total.is_some() {
                    session.total = total;
                }
                if last - first + 1 != body.len() as u64 {
                    return invalid_argument("The Content-Range does not match the body's length");
                }
                if first != received {
                    // Not where the session is: say where it is, and the client resumes.
                    return incomplete(received);
                }
                if session.received.len() + body.len() > state.max_message_size {
                    return too_large();
                }
                session.received.extend_from_slice(&body);
            }
            // No Content-Range: the whole message in one request.
            None => {
                if received != 0 {
                    return incomplete(received);
                }
                session.received.extend_from_slice(&body);
                session.total = Some(body.len() as u64);
            }
            Some(None) => return invalid_argument("The Content-Range header is not valid"),
        }
        let received = session.received.len() as u64;
        match session.total {
            Some(total) if received >= total => Some((
                session.address.clone(),
                std::mem::take(&mut session.received),
            )),
            _ => return incomplete(received),
        }
    };
    let Some((address, bytes)) = complete else {
        return incomplete(0);
    };
    match accept(&state, &address, &bytes, ReceivedBy::GmailResumable).await {
        Ok(message) => {
            if let Some(session) = state
                .uploads
                .lock()
                .expect("uploads lock")
                .get_mut(upload_id)
            {
                session.finished = Some(message.clone());
            }
            (StatusCode::OK, axum::Json(message)).into_response()
        }
        Err(response) => {
            state
                .uploads
                .lock()
                .expect("uploads lock")
                .remove(upload_id);
            response
        }
    }
}

async fn raw_send(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let address = match authenticate(&state, &headers, &user_id) {
        Ok(address) => address,
        Err(response) => return response,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_argument("Invalid JSON payload received.");
    };
    let Some(raw) = request.get("raw").and_then(Value::as_str) else {
        return invalid_argument(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    };
    // The field is base64url; Google also takes the standard alphabet and padding.
    let trimmed = raw.trim().trim_end_matches('=');
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed));
    let Ok(bytes) = decoded else {
        return invalid_argument("Invalid value for ByteString: the raw field is not base64url");
    };
    match accept(&state, &address, &bytes, ReceivedBy::GmailRaw).await {
        Ok(message) => (StatusCode::OK, axum::Json(message)).into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        for (text, expected) in [
            (
                "bytes 0-99/200",
                Some(ContentRange::Chunk {
                    first: 0,
                    last: 99,
                    total: Some(200),
                }),
            ),
            (
                "bytes 100-199/*",
                Some(ContentRange::Chunk {
                    first: 100,
                    last: 199,
                    total: None,
                }),
            ),
            (
                "bytes */200",
                Some(ContentRange::Query { total: Some(200) }),
            ),
            ("bytes */*", Some(ContentRange::Query { total: None })),
            ("bytes 5-1/9", None),
            ("items 0-1/2", None),
            ("bytes x-1/2", None),
        ] {
            assert_eq!(parse_content_range(text), expected, "{text}");
        }
    }

    #[test]
    fn recipients_are_read_from_headers() {
        assert!(has_recipients(b"To: a@b\r\n\r\n"));
        assert!(has_recipients(b"Subject: x\r\nBcc: a@b\r\n\r\n"));
        assert!(!has_recipients(b"Subject: x\r\n\r\nTo: a@b\r\n"));
    }
}
