//! Upload sessions for attachments of 3 MB or more (Microsoft's
//! `api-reference/v1.0/api/attachment-createuploadsession.md` and
//! `concepts/outlook-large-attachments.md`):
//!
//! 1. `POST .../users/{m}/messages/{id}/attachments/createUploadSession` with
//!    `{"AttachmentItem": {"attachmentType": "file", "name", "size", ...}}` answers `201`
//!    with an `uploadSession`: `uploadUrl` (pre-authenticated, on `outlook.office.com`) and
//!    `nextExpectedRanges` (`["0-"]`).
//! 2. `PUT uploadUrl` with `Content-Type: application/octet-stream`, `Content-Length` and
//!    `Content-Range: bytes {start}-{end}/{total}`, in order, each at most 4 MiB, **without**
//!    an `Authorization` header; `200` with `nextExpectedRanges` while bytes are missing,
//!    `201` after the last byte.
//! 3. After a dropped connection, a 5xx or a 429, `GET uploadUrl` asks the session for its
//!    `nextExpectedRanges`, and the upload resumes from its first start; when the session
//!    does not answer that `GET` with them, the range after the last confirmed one is sent
//!    again.

use std::time::Duration;

use bytes::Bytes;
use mailroom_model::{TransportError, TransportErrorKind};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE};
use serde::Deserialize;
use url::Url;

use crate::GraphTransport;
use crate::mime::Attachment;
use crate::reply::Step;
use crate::transport::{Authorization, BODY_LIMIT, error_from, read_limited};

/// The longest wait before a resume; a server asking for longer fails the send as
/// transient with its `Retry-After`, so the caller's retry policy decides.
const MAX_RESUME_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadSession {
    #[serde(default)]
    upload_url: Option<String>,
    #[serde(default)]
    next_expected_ranges: Vec<String>,
}

/// What one `PUT` achieved.
enum Progress {
    /// The session has the whole attachment.
    Done,
    /// The session expects this offset next.
    Next(u64),
}

/// Why a `PUT` did not progress.
enum Setback {
    /// Worth asking the session and resuming.
    Interrupted(TransportError),
    /// The attachment cannot be uploaded in this send.
    Fatal(TransportError),
}

impl GraphTransport {
    /// Adds one attachment to the draft through an upload session.
    pub(crate) async fn upload_attachment(
        &self,
        draft_id: &str,
        attachment: &Attachment,
        data: Bytes,
        auth: &Authorization<'_>,
    ) -> Result<(), TransportError> {
        let total = data.len() as u64;
        let (upload_url, mut offset) = self
            .create_session(draft_id, attachment, total, auth)
            .await?;
        // The upload URL's query carries its credential (`authtoken`): the longest value is
        // removed from anything quoted, and the URL itself is never shown.
        let secret = upload_url
            .query_pairs()
            .map(|(_, value)| value.into_owned())
            .max_by_key(String::len)
            .unwrap_or_default();
        let mut setbacks = 0u32;
        loop {
            let end = offset
                .saturating_add(self.config.upload_chunk_size)
                .min(total);
            let outcome = match self
                .put_chunk(&upload_url, &data, offset, end, &secret)
                .await
            {
                Ok(Progress::Next(next)) if next <= offset => {
                    Err(Setback::Interrupted(protocol_error(format!(
                        "the upload session made no progress (it expects byte {next} after bytes {offset}-{})",
                        end.saturating_sub(1)
                    ))))
                }
                Ok(Progress::Next(next)) if next > total => Err(Setback::Fatal(protocol_error(
                    format!("the upload session expects byte {next} of a {total}-byte attachment"),
                ))),
                other => other,
            };
            match outcome {
                Ok(Progress::Done) => return Ok(()),
                Ok(Progress::Next(next)) => offset = next,
                Err(Setback::Fatal(error)) => return Err(error),
                Err(Setback::Interrupted(mut error)) => loop {
                    setbacks += 1;
                    if setbacks > self.config.resume_attempts {
                        return Err(error);
                    }
                    let wait = self
                        .config
                        .resume_backoff
                        .saturating_mul(1 << setbacks.saturating_sub(1).min(16))
                        .max(error.retry_after().unwrap_or_default());
                    if wait > MAX_RESUME_WAIT {
                        return Err(error);
                    }
                    tracing::debug!(attempt = setbacks, ?wait, %error, "attachment upload interrupted; asking the session where to resume");
                    tokio::time::sleep(wait).await;
                    match self.query_session(&upload_url, &secret, total).await {
                        Ok(Progress::Done) => return Ok(()),
                        Ok(Progress::Next(next)) => {
                            offset = next;
                            break;
                        }
                        Err(Setback::Fatal(refused))
                            if refused.kind() != TransportErrorKind::Tls =>
                        {
                            // The session would not say (the documentation shows
                            // `nextExpectedRanges` on `PUT` answers only): send again from
                            // the last confirmed offset; the session's answer to that `PUT`
                            // says where it stands.
                            tracing::debug!(%refused, "the upload session did not say where to resume; resending from the last confirmed byte");
                            break;
                        }
                        Err(Setback::Fatal(fatal)) => return Err(fatal),
                        Err(Setback::Interrupted(again)) => error = again,
                    }
                },
            }
        }
    }

    /// `createUploadSession`: the upload URL and the first expected offset.
    async fn create_session(
        &self,
        draft_id: &str,
        attachment: &Attachment,
        total: u64,
        auth: &Authorization<'_>,
    ) -> Result<(Url, u64), TransportError> {
        let mut item = serde_json::json!({
            "attachmentType": "file",
            "name": attachment.name,
            "size": total,
            "contentType": attachment.content_type,
            "isInline": attachment.is_inline,
        });
        if let Some(content_id) = &attachment.content_id {
            item["contentId"] = serde_json::Value::String(content_id.clone());
        }
        let response = self
            .graph_request(
                reqwest::Method::POST,
                self.user_url(
                    auth.mailbox,
                    &["messages", draft_id, "attachments", "createUploadSession"],
                ),
                auth,
            )
            .json(&serde_json::json!({ "AttachmentItem": item }))
            .send()
            .await
            .map_err(|error| self.request_error(error, false))?;
        if !response.status().is_success() {
            return Err(error_from(response, auth.token, Step::Draft).await);
        }
        let body = read_limited(response, BODY_LIMIT).await.unwrap_or_default();
        let session: UploadSession = serde_json::from_slice(&body).map_err(|_| {
            protocol_error(
                "Microsoft Graph's answer to createUploadSession is not an upload session",
            )
        })?;
        let upload_url = session
            .upload_url
            .as_deref()
            .and_then(|url| Url::parse(url).ok())
            .ok_or_else(|| {
                protocol_error("Microsoft Graph's upload session has no usable uploadUrl")
            })?;
        // The upload URL is on another host (outlook.office.com) by design, so no
        // same-origin rule; it gets no bearer token, only what its own URL carries. It must
        // still be https (or the allowed loopback test server).
        if !self.config.url_allowed(&upload_url) {
            return Err(TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "Microsoft Graph's upload session is at {}, which is not https; nothing of the attachment was sent there",
                    upload_url.origin().ascii_serialization()
                ),
            )
            .with_remediation("check the Microsoft Graph URL and any proxy in between"));
        }
        let offset = first_expected(&session.next_expected_ranges)
            .map_err(Setback::into_error)?
            .unwrap_or(0);
        Ok((upload_url, offset))
    }

    /// `PUT` of `data[offset..end]`, with no `Authorization` header.
    async fn put_chunk(
        &self,
        upload_url: &Url,
        data: &Bytes,
        offset: u64,
        end: u64,
        secret: &str,
    ) -> Result<Progress, Setback> {
        let total = data.len() as u64;
        let chunk = data.slice(to_index(offset)..to_index(end));
        let request = self
            .client
            .put(upload_url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, format!("bytes {offset}-{}/{total}", end - 1))
            .body(chunk);
        self.session_request(request, secret).await
    }

    /// `GET` of the upload URL: where the session wants to resume.
    async fn query_session(
        &self,
        upload_url: &Url,
        secret: &str,
        _total: u64,
    ) -> Result<Progress, Setback> {
        self.session_request(self.client.get(upload_url.clone()), secret)
            .await
    }

    async fn session_request(
        &self,
        request: reqwest::RequestBuilder,
        secret: &str,
    ) -> Result<Progress, Setback> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = self.request_error(error, false);
                return Err(if error.kind() == TransportErrorKind::Tls {
                    Setback::Fatal(error)
                } else {
                    Setback::Interrupted(error)
                });
            }
        };
        let status = response.status();
        if status == StatusCode::CREATED {
            return Ok(Progress::Done);
        }
        if status.is_success() {
            let body = read_limited(response, BODY_LIMIT).await.unwrap_or_default();
            let session: UploadSession = serde_json::from_slice(&body).map_err(|_| {
                Setback::Fatal(protocol_error(
                    "the upload session's answer is not an upload session",
                ))
            })?;
            return match first_expected(&session.next_expected_ranges)? {
                Some(next) => Ok(Progress::Next(next)),
                // Nothing more expected: the session has it all.
                None => Ok(Progress::Done),
            };
        }
        let interrupted = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        let error = error_from(response, secret, Step::Draft).await;
        Err(if interrupted {
            Setback::Interrupted(error)
        } else {
            Setback::Fatal(error)
        })
    }
}

impl Setback {
    fn into_error(self) -> TransportError {
        match self {
            Setback::Interrupted(error) | Setback::Fatal(error) => error,
        }
    }
}

/// The start of the first of `nextExpectedRanges` (`"2097152"`, `"0-"`, `"1998457-2097094"`);
/// `None` when the list is empty.
fn first_expected(ranges: &[String]) -> Result<Option<u64>, Setback> {
    let Some(first) = ranges.first() else {
        return Ok(None);
    };
    let start = first.split('-').next().unwrap_or("").trim();
    start.parse::<u64>().map(Some).map_err(|_| {
        Setback::Fatal(protocol_error(format!(
            "the upload session gave a range it does not explain (`{}`)",
            first.chars().take(64).collect::<String>()
        )))
    })
}

fn protocol_error(message: impl Into<String>) -> TransportError {
    TransportError::new(TransportErrorKind::Permanent, message).with_remediation(
        "send again later; if it keeps failing, check the Microsoft Graph URL and any proxy in between",
    )
}

/// Offsets are at most the attachment's length, which is a `usize`.
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).expect("upload offsets are bounded by the attachment size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_ranges() {
        let parse = |ranges: &[&str]| {
            first_expected(&ranges.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>())
                .map_err(Setback::into_error)
                .map_err(|error| error.to_string())
        };
        assert_eq!(parse(&["0-"]).ok(), Some(Some(0)));
        assert_eq!(parse(&["2097152"]).ok(), Some(Some(2_097_152)));
        assert_eq!(parse(&["1998457-2097094"]).ok(), Some(Some(1_998_457)));
        assert_eq!(parse(&[]).ok(), Some(None));
        assert!(
            parse(&["soon"])
                .expect_err("refused")
                .contains("does not explain")
        );
    }
}
