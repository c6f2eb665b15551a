//! The admin API under `/_sandbox/` for people and scripts using a served sandbox:
//! the same test hooks as the [`crate::Authority`] handle, over HTTP.
//!
//! - `GET  /_sandbox/messages`: the received messages (JSON).
//! - `GET  /_sandbox/stats`: what the authority did (JSON).
//! - `POST /_sandbox/revoke` form `address`: revoke that address's refresh tokens.
//! - `POST /_sandbox/fail-next-token-call` JSON `{"status": 400, "body": {...}}`.
//! - `POST /_sandbox/access-token-lifetime` form `seconds`.
//! - `POST /_sandbox/device/approve` form `user_code`, `address`.
//! - `POST /_sandbox/graph/throttle-next-call` form `retry_after` (seconds): the next
//!   Graph call answers 429 `ApplicationThrottled`.
//! - `POST /_sandbox/graph/unavailable-next-call`: the next Graph call answers 503.
//! - `POST /_sandbox/graph/drop-next-upload-chunk`: the next upload chunk's connection is
//!   dropped.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_sandbox/messages", get(messages))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/revoke", post(revoke))
        .route("/_sandbox/fail-next-token-call", post(fail_next_token_call))
        .route(
            "/_sandbox/access-token-lifetime",
            post(access_token_lifetime),
        )
        .route("/_sandbox/device/approve", post(approve_device))
        .route(
            "/_sandbox/graph/throttle-next-call",
            post(graph_throttle_next_call),
        )
        .route(
            "/_sandbox/graph/unavailable-next-call",
            post(graph_unavailable_next_call),
        )
        .route(
            "/_sandbox/graph/drop-next-upload-chunk",
            post(graph_drop_next_upload_chunk),
        )
}

async fn graph_throttle_next_call(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(seconds) = form
        .get("retry_after")
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return bad_request("give the form field retry_after, a whole number of seconds");
    };
    state.graph.throttle_next_call(seconds);
    Json(json!({ "queued": true })).into_response()
}

async fn graph_unavailable_next_call(State(state): State<AppState>) -> Response {
    state.graph.fail_next_call_unavailable();
    Json(json!({ "queued": true })).into_response()
}

async fn graph_drop_next_upload_chunk(State(state): State<AppState>) -> Response {
    state.graph.drop_next_upload_chunk();
    Json(json!({ "queued": true })).into_response()
}

async fn messages(State(state): State<AppState>) -> Response {
    Json(state.mailbox.messages()).into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(state.authority.stats()).into_response()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn revoke(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(address) = form.get("address") else {
        return bad_request("give the form field address");
    };
    let revoked = state.authority.revoke_refresh_tokens_of(address);
    Json(json!({ "revoked": revoked })).into_response()
}

#[derive(Debug, Deserialize)]
struct Failure {
    status: u16,
    body: Value,
}

async fn fail_next_token_call(
    State(state): State<AppState>,
    Json(failure): Json<Failure>,
) -> Response {
    if !(400..=599).contains(&failure.status) {
        return bad_request("status must be an HTTP error status (400-599)");
    }
    state
        .authority
        .fail_next_token_call(failure.status, failure.body);
    Json(json!({ "queued": true })).into_response()
}

async fn access_token_lifetime(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(seconds) = form
        .get("seconds")
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return bad_request("give the form field seconds, a whole number");
    };
    state
        .authority
        .set_access_token_lifetime(Duration::from_secs(seconds));
    Json(json!({ "access_token_lifetime_secs": seconds })).into_response()
}

async fn approve_device(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (Some(code), Some(address)) = (form.get("user_code"), form.get("address")) else {
        return bad_request("give the form fields user_code and address");
    };
    let approved = state.authority.approve_device_code(code, address);
    Json(json!({ "approved": approved })).into_response()
}
