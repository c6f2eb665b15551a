//! `GraphTransport`: the reqwest client, the size check, the one-request MIME `sendMail`,
//! and the draft path for messages above the request limit.

use base64::Engine as _;
use bytes::Bytes;
use mailroom_model::{
    CredentialSecret, Credentials, Delivery, MessageTransport, OutgoingMessage, TransportError,
    TransportErrorKind, TransportKind,
};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, redirect};
use serde::Deserialize;
use url::Url;

use crate::mime::{self, SplitError};
use crate::reply::{self, Step};
use crate::{Error, GraphConfig, MAX_ATTACHMENT_SIZE, REQUEST_LIMIT};

/// Bodies longer than this are cut when read: a misbehaving server must not make the sender
/// buffer without bound.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// Sends messages through Microsoft Graph as the mailbox [`Credentials::user`].
///
/// Build one per configuration and share it: it holds a connection pool. The access token
/// comes with each send ([`CredentialSecret::AccessToken`]).
///
/// # Errors
///
/// Send failures are [`TransportError`]s of these kinds (Graph's `error.code`, else the
/// status):
///
/// | Graph's answer | kind |
/// |---|---|
/// | 401 (`InvalidAuthenticationToken`) | `AuthenticationRejected` (refresh once and retry) |
/// | 403 (`ErrorAccessDenied`, ...) | `SignInRequired`, naming the permission (`Mail.Send`, or `Mail.ReadWrite` on the draft path) |
/// | `ErrorSendAsDenied` | `SendAsDenied` |
/// | `ErrorInvalidRecipients` | `MessageRejected` |
/// | `ErrorMessageSizeExceeded`, `RequestBodyTooLarge`, 413, or a message over [`GraphConfig::max_message_size`] (before any request) | `MessageTooLarge` |
/// | `ErrorQuotaExceeded` (the mailbox is full), `MailboxNotEnabledForRESTAPI` | `AccountConfiguration` |
/// | 429 (`ApplicationThrottled`, `MailboxConcurrency`), 408, 5xx | `Transient`, with `Retry-After` (at most an hour) |
/// | other 3xx/4xx | `Permanent` |
/// | certificate or TLS failure | `Tls` |
/// | no answer before the request was sent | `Transient` |
/// | no answer to `sendMail` or `send` after the request went out | `DeliveryUnknown` |
#[derive(Debug, Clone)]
pub struct GraphTransport {
    pub(crate) config: GraphConfig,
    pub(crate) client: Client,
}

impl GraphTransport {
    /// Checks the configuration and builds the HTTP client (rustls with the built-in web
    /// roots plus [`GraphConfig::extra_root_pem`]; redirects are never followed).
    pub fn new(config: GraphConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut builder = Client::builder()
            .use_rustls_tls()
            // A redirect would carry the bearer token to wherever it points.
            .redirect(redirect::Policy::none())
            .https_only(!config.allow_plaintext_loopback)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("mailroom-graph/", env!("CARGO_PKG_VERSION")));
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

    /// Checks that Graph is reachable: a TLS connection (verified as for a send) and one
    /// unauthenticated `GET` of the base URL, whose status (any) it returns. Sends no token
    /// and no message.
    pub async fn probe(&self) -> Result<u16, TransportError> {
        let response = self
            .client
            .get(self.config.base_url.clone())
            .send()
            .await
            .map_err(|error| crate::reply::from_request_error(error, self.config.timeout, false))?;
        Ok(response.status().as_u16())
    }

    /// The configuration the transport was built with.
    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// `{base}/v1.0/users/{mailbox}` followed by `segments`, each percent-encoded as one
    /// path segment (a `/` in a mailbox or id cannot change the path).
    pub(crate) fn user_url(&self, mailbox: &str, segments: &[&str]) -> Url {
        let mut url = self.config.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["v1.0", "users", mailbox]);
            path.extend(segments);
        }
        url
    }

    pub(crate) fn request_error(&self, error: reqwest::Error, sent: bool) -> TransportError {
        reply::from_request_error(error, self.config.timeout, sent)
    }

    /// A request to Graph with the bearer token and a fresh `client-request-id`.
    pub(crate) fn graph_request(
        &self,
        method: reqwest::Method,
        url: Url,
        auth: &Authorization<'_>,
    ) -> RequestBuilder {
        self.client
            .request(method, url)
            .header(AUTHORIZATION, auth.header.clone())
            .header("client-request-id", client_request_id())
    }

    /// One `sendMail` with the whole message, base64-encoded.
    async fn send_mail(
        &self,
        message: &[u8],
        auth: &Authorization<'_>,
    ) -> Result<Delivery, TransportError> {
        let body = base64::engine::general_purpose::STANDARD.encode(message);
        let response = self
            .graph_request(
                reqwest::Method::POST,
                self.user_url(auth.mailbox, &["sendMail"]),
                auth,
            )
            .header(CONTENT_TYPE, "text/plain")
            .body(body)
            .send()
            .await
            .map_err(|error| self.request_error(error, true))?;
        if response.status().is_success() {
            Ok(accepted(&response, "sendMail"))
        } else {
            Err(error_from(response, auth.token, Step::SendMail).await)
        }
    }

    /// The draft path: a draft without the large attachments, the attachments, `send`.
    async fn send_draft(
        &self,
        message: &Bytes,
        auth: &Authorization<'_>,
    ) -> Result<Delivery, TransportError> {
        let split = mime::split(message, REQUEST_LIMIT).map_err(|error| match error {
            SplitError::Unparseable(problem) => TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "the message is over Microsoft Graph's 4 MB request limit and cannot be split into a draft and attachments: it is not readable MIME ({problem})"
                ),
            )
            .with_remediation("make the message smaller than 3 MB, or send this account over SMTP"),
            SplitError::StillTooLarge { rest } => TransportError::new(
                TransportErrorKind::MessageTooLarge,
                format!(
                    "the message without its attachments is still {rest} bytes, over Microsoft Graph's request limit of {REQUEST_LIMIT} bytes (4 MB) once base64-encoded; only attachments can be uploaded separately"
                ),
            )
            .with_remediation("shorten the message text, or send the content as an attachment"),
        })?;
        if let Some(attachment) = split
            .moved
            .iter()
            .find(|attachment| attachment.size > MAX_ATTACHMENT_SIZE)
        {
            return Err(TransportError::new(
                TransportErrorKind::MessageTooLarge,
                format!(
                    "the attachment `{}` is {} bytes, more than Microsoft Graph's limit of {MAX_ATTACHMENT_SIZE} bytes (150 MB) per attachment",
                    attachment.name, attachment.size
                ),
            )
            .with_remediation("send the file as a link instead"));
        }
        let draft_id = self.create_draft(&split.draft, auth).await?;
        drop(split.draft);
        tracing::debug!(attachments = split.moved.len(), "graph draft created");
        let outcome = async {
            for attachment in &split.moved {
                let data = attachment.decode(message).map_err(|problem| {
                    TransportError::new(
                        TransportErrorKind::Permanent,
                        format!("an attachment of the message cannot be decoded: {problem}"),
                    )
                    .with_remediation("correct the attachment's encoding and send again")
                })?;
                let data = Bytes::from(data);
                if attachment.size >= crate::LARGE_ATTACHMENT {
                    self.upload_attachment(&draft_id, attachment, data, auth)
                        .await?;
                } else {
                    self.post_attachment(&draft_id, attachment, &data, auth)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            self.delete_draft(&draft_id, auth).await;
            return Err(error);
        }
        let response = self
            .graph_request(
                reqwest::Method::POST,
                self.user_url(auth.mailbox, &["messages", &draft_id, "send"]),
                auth,
            )
            .header(CONTENT_LENGTH, 0)
            .body(Bytes::new())
            .send()
            .await
            .map_err(|error| self.request_error(error, true))?;
        if response.status().is_success() {
            Ok(accepted(&response, "the draft's send"))
        } else {
            let error = error_from(response, auth.token, Step::SendDraft).await;
            self.delete_draft(&draft_id, auth).await;
            Err(error)
        }
    }

    /// `POST /users/{m}/messages` with the MIME message, base64: the draft's id.
    async fn create_draft(
        &self,
        draft: &[u8],
        auth: &Authorization<'_>,
    ) -> Result<String, TransportError> {
        let body = base64::engine::general_purpose::STANDARD.encode(draft);
        let response = self
            .graph_request(
                reqwest::Method::POST,
                self.user_url(auth.mailbox, &["messages"]),
                auth,
            )
            .header(CONTENT_TYPE, "text/plain")
            .body(body)
            .send()
            .await
            .map_err(|error| self.request_error(error, false))?;
        if !response.status().is_success() {
            return Err(error_from(response, auth.token, Step::Draft).await);
        }
        #[derive(Deserialize)]
        struct Created {
            id: Option<String>,
        }
        let body = read_limited(response, BODY_LIMIT).await.unwrap_or_default();
        serde_json::from_slice::<Created>(&body)
            .ok()
            .and_then(|created| created.id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Permanent,
                    "Microsoft Graph created the draft but did not say its id",
                )
                .with_remediation(
                    "delete the draft from the mailbox's Drafts folder and send again; if it keeps happening, check any proxy in between",
                )
            })
    }

    /// `POST /users/{m}/messages/{id}/attachments` with a `fileAttachment` (under 3 MB).
    async fn post_attachment(
        &self,
        draft_id: &str,
        attachment: &mime::Attachment,
        data: &[u8],
        auth: &Authorization<'_>,
    ) -> Result<(), TransportError> {
        let mut body = serde_json::json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": attachment.name,
            "contentType": attachment.content_type,
            "isInline": attachment.is_inline,
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(data),
        });
        if let Some(content_id) = &attachment.content_id {
            body["contentId"] = serde_json::Value::String(content_id.clone());
        }
        let response = self
            .graph_request(
                reqwest::Method::POST,
                self.user_url(auth.mailbox, &["messages", draft_id, "attachments"]),
                auth,
            )
            .json(&body)
            .send()
            .await
            .map_err(|error| self.request_error(error, false))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_from(response, auth.token, Step::Draft).await)
        }
    }

    /// Removes a draft whose send failed before `send`, so no half-built draft is left.
    /// Best effort: a failure is logged.
    async fn delete_draft(&self, draft_id: &str, auth: &Authorization<'_>) {
        let result = self
            .graph_request(
                reqwest::Method::DELETE,
                self.user_url(auth.mailbox, &["messages", draft_id]),
                auth,
            )
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    "the unsent graph draft could not be deleted; it stays in Drafts"
                )
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "the unsent graph draft could not be deleted; it stays in Drafts")
            }
        }
    }
}

#[async_trait::async_trait]
impl MessageTransport for GraphTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::GraphApi
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        let size = message.bytes.len() as u64;
        let limit = self.config.max_message_size;
        if size > limit {
            return Err(TransportError::new(
                TransportErrorKind::MessageTooLarge,
                format!(
                    "the message is {size} bytes, more than the mailbox's limit of {limit} bytes (Exchange Online's default is 35 MB; Graph allows up to 150 MB per attachment only where an administrator raised the mailbox's limit)"
                ),
            )
            .with_remediation(
                "make the message smaller, for example by sending large attachments as links, or have an administrator raise the mailbox's size limit and the configured limit with it",
            ));
        }
        let auth = Authorization::from_credentials(credentials)?;
        if mime::base64_len(size) <= REQUEST_LIMIT {
            tracing::debug!(size, "sending through microsoft graph, sendMail (MIME)");
            self.send_mail(&message.bytes, &auth).await
        } else {
            tracing::debug!(
                size,
                "sending through microsoft graph, draft and upload sessions"
            );
            self.send_draft(&message.bytes, &auth).await
        }
    }
}

/// The bearer token and mailbox of one send.
pub(crate) struct Authorization<'a> {
    pub(crate) header: HeaderValue,
    pub(crate) token: &'a str,
    pub(crate) mailbox: &'a str,
}

impl<'a> Authorization<'a> {
    fn from_credentials(credentials: &'a Credentials) -> Result<Self, TransportError> {
        let refuse = |message: &str| {
            reply::grant_permission(
                TransportError::new(TransportErrorKind::SignInRequired, message.to_owned()),
                Step::SendMail,
            )
        };
        let CredentialSecret::AccessToken(token) = &credentials.secret else {
            return Err(refuse(
                "Microsoft Graph needs an OAuth access token, and none was given",
            ));
        };
        let token = token.expose();
        if token.is_empty() {
            return Err(refuse("the access token for Microsoft Graph is empty"));
        }
        let mailbox = credentials.user.trim();
        if mailbox.is_empty() {
            return Err(TransportError::new(
                TransportErrorKind::AccountConfiguration,
                "no mailbox was given for Microsoft Graph (the credentials' user is empty)",
            )
            .with_remediation("give the account's mailbox address (its user principal name)"));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            refuse("the access token contains characters an HTTP header cannot carry")
        })?;
        header.set_sensitive(true);
        Ok(Self {
            header,
            token,
            mailbox,
        })
    }
}

/// A fresh `client-request-id`: a random (version 4) UUID.
fn client_request_id() -> String {
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

/// A 2xx answer to a send: Graph accepted the message (202, no message id). The receipt
/// keeps the `request-id`.
fn accepted(response: &Response, what: &str) -> Delivery {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.chars().take(200).collect::<String>())
    };
    let request_id = header("request-id");
    let client_request_id = header("client-request-id");
    let mut reply = format!(
        "microsoft graph accepted the message ({what}, HTTP {})",
        response.status().as_u16()
    );
    if let Some(id) = &request_id {
        reply.push_str(&format!("; request-id {id}"));
    }
    if let Some(id) = &client_request_id {
        reply.push_str(&format!("; client-request-id {id}"));
    }
    Delivery {
        reply,
        provider_message_id: request_id,
        thread_id: None,
    }
}

/// Maps an unsuccessful answer, reading at most [`BODY_LIMIT`] bytes of its body.
pub(crate) async fn error_from(response: Response, token: &str, step: Step) -> TransportError {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response, BODY_LIMIT).await.unwrap_or_default();
    reply::from_response(status, &headers, &body, token, step)
}

pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_urls_encode_the_mailbox_and_keep_a_base_path() {
        let transport = GraphTransport::new(GraphConfig::with_base_url(
            Url::parse("https://proxy.example/graph/").expect("parses"),
        ))
        .expect("builds");
        assert_eq!(
            transport
                .user_url("a.b@contoso.com", &["sendMail"])
                .as_str(),
            "https://proxy.example/graph/v1.0/users/a.b@contoso.com/sendMail"
        );
        assert_eq!(
            transport
                .user_url("x/../y?z#w", &["messages", "AAMk/AA=", "send"])
                .as_str(),
            "https://proxy.example/graph/v1.0/users/x%2F..%2Fy%3Fz%23w/messages/AAMk%2FAA=/send"
        );
    }

    #[test]
    fn client_request_ids_are_uuids() {
        let id = client_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, client_request_id());
    }

    /// RFC 9562 version 4: `xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx`, V one of 8, 9, a, b,
    /// and every other hex digit random.
    #[test]
    fn client_request_ids_are_random_version_4_uuids() {
        let ids: Vec<String> = (0..2000).map(|_| client_request_id()).collect();
        let mut seen = [[false; 16]; 36];
        for id in &ids {
            let digits: Vec<char> = id.chars().collect();
            assert_eq!(digits.len(), 36, "{id}");
            for (at, digit) in digits.iter().enumerate() {
                if [8, 13, 18, 23].contains(&at) {
                    assert_eq!(*digit, '-', "{id}");
                } else {
                    let value = digit.to_digit(16).expect("a lowercase hex digit");
                    assert!(!digit.is_ascii_uppercase(), "{id}");
                    seen[at][value as usize] = true;
                }
            }
            assert_eq!(digits[14], '4', "{id}");
            assert!(matches!(digits[19], '8' | '9' | 'a' | 'b'), "{id}");
        }
        for (at, values) in seen.iter().enumerate() {
            let count = values.iter().filter(|&&seen| seen).count();
            let expected = match at {
                8 | 13 | 18 | 23 => 0,
                14 => 1,
                19 => 4,
                _ => 16,
            };
            assert_eq!(count, expected, "hex digit {at} took {count} values");
        }
    }
}
