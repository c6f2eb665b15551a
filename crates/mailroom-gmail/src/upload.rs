//! The resumable upload protocol: start a session, upload the bytes in chunks, and after an
//! interruption ask the session how much it has and go on from there.
//!
//! Google's protocol: `POST .../send?uploadType=resumable` with `X-Upload-Content-Type` and
//! `X-Upload-Content-Length` answers with the session URI in `Location`; each `PUT` of a
//! chunk carries `Content-Range: bytes first-last/total` and is answered `308` with
//! `Range: bytes=0-N` (what the session holds) until the last one is answered with the sent
//! `Message`. After a dropped connection or a 5xx, `PUT` with an empty body and
//! `Content-Range: bytes */total` asks for the received range.

use bytes::Bytes;
use mailroom_model::{Delivery, TransportError, TransportErrorKind};
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
};
use url::Url;

use crate::transport::{Authorization, backoff, delivery_from, error_from};
use crate::{GmailTransport, MESSAGE_MEDIA_TYPE};

/// `308 Resume Incomplete`, the session's answer while bytes are missing.
const RESUME_INCOMPLETE: StatusCode = StatusCode::PERMANENT_REDIRECT;

/// What one request to the session achieved.
enum Progress {
    /// Gmail has the whole message and sent it.
    Sent(Delivery),
    /// The session holds the first `received` bytes.
    Received(u64),
}

/// Why a request to the session did not progress.
enum Setback {
    /// Worth asking the session and resuming: a dropped connection, a timeout, a 5xx.
    Interrupted(TransportError),
    /// Resuming will not help (4xx, an unusable answer): the send fails with this.
    Fatal(TransportError),
}

impl GmailTransport {
    pub(crate) async fn send_resumable(
        &self,
        bytes: &Bytes,
        auth: &Authorization<'_>,
    ) -> Result<Delivery, TransportError> {
        let total = bytes.len() as u64;
        let session = self.start_session(total, auth).await?;
        let mut offset: u64 = 0;
        let mut setbacks: u32 = 0;
        loop {
            if offset == total {
                // Google confirms the last byte with the sent `Message`, never with a 308. The
                // message may have been sent, so this must not look worth retrying.
                return Err(TransportError::new(
                    TransportErrorKind::Permanent,
                    "gmail's upload session holds the whole message but did not confirm that it was sent",
                )
                .with_remediation(
                    "look in the account's Sent folder before sending it again; if this keeps happening, check any proxy between mailroom and gmail",
                ));
            }
            let end = offset
                .saturating_add(self.config.resumable_chunk_size)
                .min(total);
            let outcome = match self.put_chunk(&session, bytes, offset, end, auth).await {
                Ok(Progress::Received(received)) if received <= offset => {
                    // No progress is a setback too, or a confused server could loop forever.
                    Err(Setback::Interrupted(protocol_error(format!(
                        "the upload session made no progress (it holds {received} of {total} bytes)"
                    ))))
                }
                other => other,
            };
            match outcome {
                Ok(Progress::Sent(delivery)) => return Ok(delivery),
                Ok(Progress::Received(received)) => offset = received,
                Err(Setback::Fatal(error)) => return Err(error),
                Err(Setback::Interrupted(mut error)) => loop {
                    setbacks += 1;
                    if setbacks > self.config.resume_attempts {
                        return Err(error);
                    }
                    let wait = backoff(self.config.resume_backoff, setbacks)
                        .max(error.retry_after().unwrap_or_default());
                    if wait > self.config.max_resume_wait {
                        return Err(error);
                    }
                    tracing::debug!(
                        attempt = setbacks,
                        ?wait,
                        %error,
                        "resumable upload interrupted; asking the session what it received"
                    );
                    tokio::time::sleep(wait).await;
                    match self.query_session(&session, total, auth).await {
                        Ok(Progress::Sent(delivery)) => return Ok(delivery),
                        Ok(Progress::Received(received)) => {
                            offset = received;
                            break;
                        }
                        Err(Setback::Fatal(fatal)) => return Err(fatal),
                        Err(Setback::Interrupted(again)) => error = again,
                    }
                },
            }
        }
    }

    /// Starts a session and returns its URI, which must be one [`session_uri_allowed`]
    /// allows: the bearer token goes with every chunk, and must not go anywhere else.
    async fn start_session(
        &self,
        total: u64,
        auth: &Authorization<'_>,
    ) -> Result<Url, TransportError> {
        let response = self
            .client
            .post(self.upload_url("resumable"))
            .header(AUTHORIZATION, auth.header.clone())
            .header("X-Upload-Content-Type", MESSAGE_MEDIA_TYPE)
            .header("X-Upload-Content-Length", total)
            .header(CONTENT_LENGTH, 0)
            .body(Bytes::new())
            .send()
            .await
            .map_err(|error| self.request_error(error))?;
        if !response.status().is_success() {
            return Err(error_from(response, auth.token).await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                protocol_error("gmail started no upload session (no Location header)")
            })?;
        let session = self
            .config
            .base_url
            .join(location)
            .map_err(|_| protocol_error("gmail's upload session URI is not a URL"))?;
        if !session_uri_allowed(&session, &self.config.base_url) {
            return Err(crate::reply::check_api_url(
                TransportError::new(
                    TransportErrorKind::Permanent,
                    format!(
                        "gmail answered with an upload session on {}, which is neither the gmail API URL's server nor a googleapis.com host over https; the access token is not sent there and nothing of the message was",
                        session.origin().ascii_serialization()
                    ),
                ),
                "a proxy must keep upload sessions on its own address",
            ));
        }
        Ok(session)
    }

    /// Uploads `bytes[offset..end]`.
    async fn put_chunk(
        &self,
        session: &Url,
        bytes: &Bytes,
        offset: u64,
        end: u64,
        auth: &Authorization<'_>,
    ) -> Result<Progress, Setback> {
        let total = bytes.len() as u64;
        // A slice of `Bytes` shares the buffer; nothing is copied.
        let chunk = bytes.slice(to_index(offset)..to_index(end));
        let request = self
            .client
            .put(session.clone())
            .header(AUTHORIZATION, auth.header.clone())
            .header(CONTENT_TYPE, MESSAGE_MEDIA_TYPE)
            .header(CONTENT_RANGE, format!("bytes {offset}-{}/{total}", end - 1))
            .body(chunk);
        self.session_request(request, total, auth).await
    }

    /// Asks the session how many bytes it holds.
    async fn query_session(
        &self,
        session: &Url,
        total: u64,
        auth: &Authorization<'_>,
    ) -> Result<Progress, Setback> {
        let request = self
            .client
            .put(session.clone())
            .header(AUTHORIZATION, auth.header.clone())
            .header(CONTENT_RANGE, format!("bytes */{total}"))
            .header(CONTENT_LENGTH, 0)
            .body(Bytes::new());
        self.session_request(request, total, auth).await
    }

    async fn session_request(
        &self,
        request: reqwest::RequestBuilder,
        total: u64,
        auth: &Authorization<'_>,
    ) -> Result<Progress, Setback> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = self.request_error(error);
                return Err(if error.kind() == TransportErrorKind::Tls {
                    Setback::Fatal(error)
                } else {
                    Setback::Interrupted(error)
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Progress::Sent(delivery_from(response).await));
        }
        if status == RESUME_INCOMPLETE {
            let range = response.headers().get(RANGE).and_then(|v| v.to_str().ok());
            return received_from_range(range, total)
                .map(Progress::Received)
                .map_err(Setback::Fatal);
        }
        let expired = matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE);
        let interrupted = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        let error = error_from(response, auth.token).await;
        if expired {
            // Google: the session expired and the upload must start over. Nothing was sent,
            // so the caller may safely send again.
            return Err(Setback::Fatal(
                TransportError::new(
                    TransportErrorKind::Transient,
                    "the gmail upload session expired before the message was complete; nothing was sent",
                )
                .with_remediation("send again; a new upload session is started")
                .with_source(error),
            ));
        }
        Err(if interrupted {
            Setback::Interrupted(error)
        } else {
            Setback::Fatal(error)
        })
    }
}

/// The number of bytes a session holds, from its `Range: bytes=0-N` header (none: nothing).
fn received_from_range(range: Option<&str>, total: u64) -> Result<u64, TransportError> {
    let Some(range) = range else {
        return Ok(0);
    };
    let last = range
        .trim()
        .strip_prefix("bytes=0-")
        .and_then(|last| last.parse::<u64>().ok())
        .ok_or_else(|| {
            protocol_error(format!(
                "gmail's upload session reported a range it does not explain (`{range}`)"
            ))
        })?;
    let received = last + 1;
    if received > total {
        return Err(protocol_error(format!(
            "gmail's upload session reports {received} bytes of a {total}-byte message"
        )));
    }
    Ok(received)
}

fn protocol_error(message: impl Into<String>) -> TransportError {
    TransportError::new(TransportErrorKind::Permanent, message).with_remediation(
        "send again later; if it keeps failing, check the gmail API URL and any proxy in between",
    )
}

/// Offsets are at most `MAX_MESSAGE_SIZE`, which fits any `usize` this code runs on.
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).expect("upload offsets are bounded by the message size")
}

/// Where an upload session may be, so the bearer token that goes with each chunk goes
/// nowhere else:
/// - the base URL's own origin (scheme, host and port: Google's, a proxy's, or a loopback
///   test server's `http://`);
/// - `https` on the base URL's host (another port; TLS proves the name);
/// - `https` on a `googleapis.com` host. Google's resumable upload guide for the Gmail API
///   (developers.google.com/gmail/api/guides/uploads, "Resumable upload") shows the session
///   URI in `Location` as `https://www.googleapis.com/upload/gmail/v1/users/userId/messages/send?uploadType=resumable&upload_id=...`,
///   a host other than `gmail.googleapis.com`, the API's documented service endpoint; the
///   guide does not promise which host a session is on, only that it is Google's.
///
/// Anything else (plain `http` off the base origin, another domain, a look-alike such as
/// `googleapis.com.example`, user info in the URI) is refused.
pub(crate) fn session_uri_allowed(session: &Url, base: &Url) -> bool {
    if !session.username().is_empty() || session.password().is_some() {
        return false;
    }
    if session.origin() == base.origin() {
        return true;
    }
    if session.scheme() != "https" {
        return false;
    }
    let Some(url::Host::Domain(host)) = session.host() else {
        // An IP address is allowed only as the base URL's own host.
        return session.host_str().is_some() && session.host_str() == base.host_str();
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let same_host = base
        .host_str()
        .is_some_and(|base_host| base_host.trim_end_matches('.').eq_ignore_ascii_case(&host));
    same_host || host == "googleapis.com" || host.ends_with(".googleapis.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(range: Option<&str>, total: u64, expected: Result<u64, &str>) {
        let actual = received_from_range(range, total).map_err(|error| error.to_string());
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{range:?}"),
            (Err(actual), Err(expected)) => {
                assert!(actual.contains(expected), "{range:?}: {actual}")
            }
            (actual, expected) => panic!("{range:?}: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn ranges() {
        check(None, 10, Ok(0));
        check(Some("bytes=0-0"), 10, Ok(1));
        check(Some("bytes=0-262143"), 1_000_000, Ok(262_144));
        check(Some("bytes=0-9"), 10, Ok(10));
        check(Some("bytes=0-10"), 10, Err("reports 11 bytes of a 10-byte"));
        check(Some("bytes=5-9"), 10, Err("does not explain"));
        check(Some("items=0-9"), 10, Err("does not explain"));
    }
}

#[cfg(test)]
mod session_uri_tests {
    use super::*;

    #[track_caller]
    fn check(session: &str, base: &str, allowed: bool) {
        let session = Url::parse(session).expect("session URL");
        let base = Url::parse(base).expect("base URL");
        assert_eq!(
            session_uri_allowed(&session, &base),
            allowed,
            "{session} for {base}"
        );
    }

    #[test]
    fn session_uris_on_the_request_host_or_googleapis_over_https_are_allowed() {
        const GMAIL: &str = "https://gmail.googleapis.com/";
        // The documented example (developers.google.com/gmail/api/guides/uploads).
        check(
            "https://www.googleapis.com/upload/gmail/v1/users/userId/messages/send?uploadType=resumable&upload_id=xa298sd_sdlkj2",
            GMAIL,
            true,
        );
        check(
            "https://gmail.googleapis.com/upload/x?upload_id=1",
            GMAIL,
            true,
        );
        check("https://googleapis.com/upload/x", GMAIL, true);
        check("https://WWW.GoogleApis.com./upload/x", GMAIL, true);
        // A proxy's own host, on its port or another over https.
        check(
            "https://proxy.example:8443/up?id=1",
            "https://proxy.example:8443/",
            true,
        );
        check(
            "https://proxy.example/up?id=1",
            "https://proxy.example:8443/",
            true,
        );
        check("https://10.0.0.5:9000/up", "https://10.0.0.5:8443/", true);
        // The loopback test base: its own origin, as before.
        check(
            "http://127.0.0.1:4000/up?id=1",
            "http://127.0.0.1:4000/",
            true,
        );
        // Google's host, even behind a proxy: the token is Google's.
        check(
            "https://www.googleapis.com/upload/x",
            "https://proxy.example/",
            true,
        );
    }

    #[test]
    fn any_other_session_uri_is_refused() {
        const GMAIL: &str = "https://gmail.googleapis.com/";
        check("http://www.googleapis.com/upload/x", GMAIL, false);
        check("https://googleapis.com.evil.example/upload/x", GMAIL, false);
        check("https://evilgoogleapis.com/upload/x", GMAIL, false);
        check("https://example.com/upload/x", GMAIL, false);
        check("https://user:pw@www.googleapis.com/upload/x", GMAIL, false);
        check("https://203.0.113.7/upload/x", GMAIL, false);
        check("ftp://www.googleapis.com/upload/x", GMAIL, false);
        // Another port on the loopback test base in plain http is another server.
        check("http://127.0.0.1:4001/up", "http://127.0.0.1:4000/", false);
        check("https://other.example/up", "https://proxy.example/", false);
    }
}
