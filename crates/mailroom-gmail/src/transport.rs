//! `GmailTransport`: the reqwest client, the size check, the one-request media upload, and
//! what a successful answer becomes.

use std::time::Duration;

use bytes::Bytes;
use mailroom_model::{
    CredentialSecret, Credentials, Delivery, MessageTransport, OutgoingMessage, TransportError,
    TransportErrorKind, TransportKind,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Response, redirect};
use serde::Deserialize;
use url::Url;

use crate::{Error, GmailConfig, MAX_MESSAGE_SIZE, MESSAGE_MEDIA_TYPE, reply};

/// The send method's media path (`mediaUpload.protocols.simple.path` of the discovery
/// document, with `userId` = `me`). Both protocols use it, told apart by `uploadType`.
pub(crate) const SEND_UPLOAD_PATH: &str = "/upload/gmail/v1/users/me/messages/send";

/// Error bodies longer than this are cut: they are only quoted, and a misbehaving server
/// must not make the sender buffer without bound.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Sends messages through the Gmail API (`users.messages.send`).
///
/// Build one per configuration and share it: it holds a connection pool. The access token
/// comes with each send ([`Credentials`] with [`CredentialSecret::AccessToken`]), so a
/// refreshed token needs no new transport.
///
/// # Errors
///
/// Send failures are [`TransportError`]s of these kinds:
///
/// | Gmail's answer | kind |
/// |---|---|
/// | 401 | `AuthenticationRejected` (refresh once and retry) |
/// | 403 `insufficientPermissions` / `ACCESS_TOKEN_SCOPE_INSUFFICIENT` | `SignInRequired` |
/// | 403 `Delegation denied ...` | `SendAsDenied` |
/// | 403 or 429 `rateLimitExceeded` / `userRateLimitExceeded`, any 429, 5xx, 408 | `Transient`, with `Retry-After` |
/// | 400 `failedPrecondition` | `AccountConfiguration` (Gmail not enabled) |
/// | 400 `invalidArgument` | `MessageRejected`, with Google's message |
/// | 413, or a message over [`MAX_MESSAGE_SIZE`] (checked before any request) | `MessageTooLarge` |
/// | other 3xx/4xx | `Permanent`, with Google's message |
/// | certificate or TLS failure | `Tls` |
/// | no answer: connection refused or dropped, timeout | `Transient` |
///
/// A `Retry-After` header (seconds or HTTP-date) is reported on any of them. A body that is
/// not Google's error JSON is quoted, shortened, as the server reply.
///
/// A simple (media) upload whose connection drops after the body was sent may or may not
/// have been delivered; it is reported as `Transient`, so delivery is at least once. The
/// resumable protocol asks the session instead and never sends twice.
#[derive(Debug, Clone)]
pub struct GmailTransport {
    pub(crate) config: GmailConfig,
    pub(crate) client: Client,
}

impl GmailTransport {
    /// Checks the configuration and builds the HTTP client (rustls with the built-in web
    /// roots plus [`GmailConfig::extra_root_pem`]; redirects are never followed).
    pub fn new(config: GmailConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut builder = Client::builder()
            .use_rustls_tls()
            // A redirect would carry the bearer token to wherever it points.
            .redirect(redirect::Policy::none())
            .https_only(config.base_url.scheme() == "https")
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("mailroom-gmail/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.extra_root_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|source| {
                Error::InvalidRootCertificate {
                    problem: "it is not valid PEM".to_owned(),
                    source: Some(Box::new(source)),
                }
            })?;
            if certificates.is_empty() {
                return Err(Error::InvalidRootCertificate {
                    problem: "it holds no certificate".to_owned(),
                    source: None,
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|source| Error::HttpClient {
            source: Box::new(source),
        })?;
        Ok(Self { config, client })
    }

    /// Checks that the API host is reachable: a TLS connection (verified as for a send)
    /// and one unauthenticated `GET` of the base URL, whose status (any) it returns. Sends
    /// no token and no message.
    pub async fn probe(&self) -> Result<u16, TransportError> {
        let response = self
            .client
            .get(self.config.base_url.clone())
            .send()
            .await
            .map_err(|error| crate::reply::from_request_error(error, self.config.timeout))?;
        Ok(response.status().as_u16())
    }

    /// The configuration the transport was built with.
    pub fn config(&self) -> &GmailConfig {
        &self.config
    }

    /// The URL of the send method's upload path with the given `uploadType`.
    pub(crate) fn upload_url(&self, upload_type: &str) -> Url {
        let base = &self.config.base_url;
        let mut url = base.clone();
        url.set_path(&format!(
            "{}{SEND_UPLOAD_PATH}",
            base.path().trim_end_matches('/')
        ));
        url.set_query(Some(&format!("uploadType={upload_type}")));
        url
    }

    /// One `uploadType=media` request with the whole message as the body.
    async fn send_media(
        &self,
        bytes: &Bytes,
        auth: &Authorization<'_>,
    ) -> Result<Delivery, TransportError> {
        let response = self
            .client
            .post(self.upload_url("media"))
            .header(AUTHORIZATION, auth.header.clone())
            .header(CONTENT_TYPE, MESSAGE_MEDIA_TYPE)
            // `Bytes` is reference-counted: the body is the caller's buffer, not a copy.
            .body(bytes.clone())
            .send()
            .await
            .map_err(|error| self.request_error(error))?;
        if response.status().is_success() {
            Ok(delivery_from(response).await)
        } else {
            Err(error_from(response, auth.token).await)
        }
    }

    pub(crate) fn request_error(&self, error: reqwest::Error) -> TransportError {
        reply::from_request_error(error, self.config.timeout)
    }
}

#[async_trait::async_trait]
impl MessageTransport for GmailTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::GmailApi
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        let size = message.bytes.len() as u64;
        if size > MAX_MESSAGE_SIZE {
            return Err(TransportError::new(
                TransportErrorKind::MessageTooLarge,
                format!(
                    "the message is {size} bytes, more than gmail's limit of {MAX_MESSAGE_SIZE} bytes (35 MiB)"
                ),
            )
            .with_remediation(
                "make the message smaller, for example by sending large attachments as links",
            ));
        }
        let auth = Authorization::from_credentials(credentials)?;
        if size > self.config.resumable_threshold {
            tracing::debug!(size, "sending through the gmail api, resumable upload");
            self.send_resumable(&message.bytes, &auth).await
        } else {
            tracing::debug!(size, "sending through the gmail api, media upload");
            self.send_media(&message.bytes, &auth).await
        }
    }
}

/// The bearer token of one send, as a header value and as text to redact.
pub(crate) struct Authorization<'a> {
    pub(crate) header: HeaderValue,
    pub(crate) token: &'a str,
}

impl<'a> Authorization<'a> {
    fn from_credentials(credentials: &'a Credentials) -> Result<Self, TransportError> {
        let CredentialSecret::AccessToken(token) = &credentials.secret else {
            return Err(reply::grant_send_permission(TransportError::new(
                TransportErrorKind::SignInRequired,
                "the gmail API needs an OAuth access token, and none was given",
            )));
        };
        let token = token.expose();
        if token.is_empty() {
            return Err(reply::grant_send_permission(TransportError::new(
                TransportErrorKind::SignInRequired,
                "the access token for the gmail API is empty",
            )));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            // The header error would not show the token, but it is dropped all the same.
            reply::grant_send_permission(TransportError::new(
                TransportErrorKind::SignInRequired,
                "the access token contains characters an HTTP header cannot carry",
            ))
        })?;
        header.set_sensitive(true);
        Ok(Self { header, token })
    }
}

/// The fields of Gmail's `Message` answer that a sender needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    thread_id: Option<String>,
}

/// A 2xx answer means Gmail took the message, so even an unreadable body is a delivery:
/// reporting a failure would make the caller send it twice.
pub(crate) async fn delivery_from(response: Response) -> Delivery {
    let status = response.status();
    let sent = match read_limited(response, ERROR_BODY_LIMIT).await {
        Ok(body) => serde_json::from_slice::<SentMessage>(&body).ok(),
        Err(error) => {
            tracing::warn!(%error, "gmail accepted the message but its answer could not be read");
            None
        }
    };
    let (id, thread_id) = sent
        .map(|sent| (sent.id, sent.thread_id))
        .unwrap_or((None, None));
    let reply = match (&id, &thread_id) {
        (Some(id), Some(thread)) => format!("gmail accepted the message: id {id}, thread {thread}"),
        (Some(id), None) => format!("gmail accepted the message: id {id}"),
        _ => format!(
            "gmail accepted the message (HTTP {}) without saying its id",
            status.as_u16()
        ),
    };
    Delivery {
        reply,
        provider_message_id: id,
        thread_id,
    }
}

/// Maps an unsuccessful answer, reading at most [`ERROR_BODY_LIMIT`] bytes of its body.
pub(crate) async fn error_from(response: Response, token: &str) -> TransportError {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    reply::from_response(status, &headers, &body, token)
}

async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The wait before resume number `attempt` (1-based): `base`, doubling each time.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_keep_a_base_path() {
        for (base, expected) in [
            (
                "https://gmail.googleapis.com",
                "https://gmail.googleapis.com/upload/gmail/v1/users/me/messages/send?uploadType=media",
            ),
            (
                "https://proxy.example/google/",
                "https://proxy.example/google/upload/gmail/v1/users/me/messages/send?uploadType=media",
            ),
        ] {
            let transport = GmailTransport::new(GmailConfig::with_base_url(
                Url::parse(base).expect("parses"),
            ))
            .expect("builds");
            assert_eq!(transport.upload_url("media").as_str(), expected);
        }
    }

    #[test]
    fn backoff_doubles() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, 4), Duration::from_millis(800));
        assert_eq!(backoff(Duration::ZERO, 9), Duration::ZERO);
    }

    #[test]
    fn pem_without_a_certificate_is_refused() {
        let config = GmailConfig {
            extra_root_pem: Some(b"not a certificate".to_vec()),
            ..GmailConfig::default()
        };
        let error = GmailTransport::new(config).expect_err("refused");
        assert!(
            error.to_string().contains("holds no certificate"),
            "{error}"
        );
    }
}
