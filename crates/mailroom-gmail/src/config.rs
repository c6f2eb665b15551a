//! `GmailConfig`: where the Gmail API is, what to trust, and how to upload; and the checks
//! that run before a transport is built.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use url::{Host, Url};

use crate::{DEFAULT_BASE_URL, Error, MAX_MESSAGE_SIZE, RESUMABLE_CHUNK_GRANULARITY};

/// How a [`crate::GmailTransport`] reaches the Gmail API. The library reads no environment
/// variable or file: the caller (CLI, facade) passes what the settings and `MAILROOM_CA_FILE`
/// say.
#[derive(Clone)]
pub struct GmailConfig {
    /// The API's base URL, [`DEFAULT_BASE_URL`] by default. A path prefix is kept (for a
    /// proxy that serves the API below a path); a query, fragment or password is refused.
    pub base_url: Url,
    /// One or more extra trusted root certificates (PEM), trusted in addition to the
    /// built-in web roots, e.g. for a TLS-inspecting proxy. Certificates are always verified.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Accepts an `http://` base URL when its host is a loopback address (`127.0.0.0/8`,
    /// `::1`, `localhost`). Only for test servers: the bearer token then travels unencrypted
    /// over the loopback interface. Anything else must be `https://`.
    pub allow_plaintext_loopback: bool,
    /// The deadline of each HTTP request (connecting, sending the body, reading the answer).
    /// Each chunk of a resumable upload is its own request with its own deadline.
    pub timeout: Duration,
    /// Messages larger than this many bytes use the resumable protocol (5 MiB by default,
    /// Google's advice); smaller ones go in one media upload.
    pub resumable_threshold: u64,
    /// The size of each resumable upload request, a multiple of
    /// [`RESUMABLE_CHUNK_GRANULARITY`] (8 MiB by default).
    pub resumable_chunk_size: u64,
    /// How many times one resumable upload may be interrupted (a dropped connection, a 5xx,
    /// an answer that makes no progress) and resumed before the send fails as transient.
    pub resume_attempts: u32,
    /// The wait before the first resume; it doubles for each further one. A `Retry-After`
    /// of the server is honoured when it is longer (up to [`Self::max_resume_wait`]).
    pub resume_backoff: Duration,
    /// The longest the transport waits before a resume; a server asking for longer makes the
    /// send fail as transient with that `Retry-After`, so the caller's retry policy decides.
    pub max_resume_wait: Duration,
}

impl Default for GmailConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse(DEFAULT_BASE_URL).expect("the default base URL parses"),
            extra_root_pem: None,
            allow_plaintext_loopback: false,
            timeout: Duration::from_secs(100),
            resumable_threshold: 5 * 1024 * 1024,
            resumable_chunk_size: 8 * 1024 * 1024,
            resume_attempts: 5,
            resume_backoff: Duration::from_secs(1),
            max_resume_wait: Duration::from_secs(30),
        }
    }
}

impl GmailConfig {
    /// The default configuration with another base URL.
    pub fn with_base_url(base_url: Url) -> Self {
        Self {
            base_url,
            ..Self::default()
        }
    }

    /// Checks everything that can be checked without the network.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let url = &self.base_url;
        let shown = redact_url(url);
        if url.password().is_some() || !url.username().is_empty() {
            return Err(Error::InvalidUrl {
                url: shown,
                problem: "it contains a user name or password",
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidUrl {
                url: shown,
                problem: "it has a query or fragment",
            });
        }
        if url.host().is_none() {
            return Err(Error::InvalidUrl {
                url: shown,
                problem: "it has no host",
            });
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_plaintext_loopback && is_loopback(url) => {}
            "http" => return Err(Error::InsecureUrl { url: shown }),
            _ => {
                return Err(Error::InvalidUrl {
                    url: shown,
                    problem: "its scheme is neither https nor http",
                });
            }
        }
        let chunk_size = self.resumable_chunk_size;
        if chunk_size == 0 || chunk_size % RESUMABLE_CHUNK_GRANULARITY != 0 {
            return Err(Error::InvalidChunkSize { chunk_size });
        }
        if self.resumable_threshold > MAX_MESSAGE_SIZE {
            return Err(Error::InvalidThreshold {
                threshold: self.resumable_threshold,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for GmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GmailConfig")
            .field("base_url", &redact_url(&self.base_url))
            .field(
                "extra_root_pem",
                &self
                    .extra_root_pem
                    .as_ref()
                    .map(|pem| format!("<{} bytes of PEM>", pem.len())),
            )
            .field("allow_plaintext_loopback", &self.allow_plaintext_loopback)
            .field("timeout", &self.timeout)
            .field("resumable_threshold", &self.resumable_threshold)
            .field("resumable_chunk_size", &self.resumable_chunk_size)
            .field("resume_attempts", &self.resume_attempts)
            .field("resume_backoff", &self.resume_backoff)
            .field("max_resume_wait", &self.max_resume_wait)
            .finish()
    }
}

/// True when the URL's host is on this machine, so plaintext never leaves it.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The URL with any password replaced, for error messages.
fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Setting a password fails only for URLs that cannot have one, which then had none.
        let _ = shown.set_password(Some("redacted"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(url: &str, allow_plaintext_loopback: bool, expected: Result<(), &str>) {
        let config = GmailConfig {
            allow_plaintext_loopback,
            ..GmailConfig::with_base_url(Url::parse(url).expect("test URL parses"))
        };
        let actual = config.validate().map_err(|error| error.to_string());
        match (actual, expected) {
            (Ok(()), Ok(())) => {}
            (Err(actual), Err(expected)) => assert!(
                actual.contains(expected),
                "`{url}`: error `{actual}` lacks `{expected}`"
            ),
            (actual, expected) => panic!("`{url}`: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn base_urls() {
        check("https://gmail.googleapis.com", false, Ok(()));
        check("https://proxy.example/gmail-api/", false, Ok(()));
        check("http://127.0.0.1:8080", true, Ok(()));
        check("http://127.0.0.2:8080", true, Ok(()));
        check("http://[::1]:8080", true, Ok(()));
        check("http://localhost:8080", true, Ok(()));
        check("http://127.0.0.1:8080", false, Err("does not use https"));
        check(
            "http://gmail.googleapis.com",
            true,
            Err("does not use https"),
        );
        check("http://10.0.0.1", true, Err("does not use https"));
        check(
            "ftp://gmail.googleapis.com",
            false,
            Err("neither https nor http"),
        );
        check("https://gmail.googleapis.com/?key=1", false, Err("query"));
        check("https://gmail.googleapis.com/#top", false, Err("fragment"));
        check(
            "https://user:hunter2@gmail.googleapis.com",
            false,
            Err("user name or password"),
        );
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let config = GmailConfig::with_base_url(
            Url::parse("https://user:hunter2@gmail.googleapis.com").expect("parses"),
        );
        let error = config.validate().expect_err("a password is refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn chunk_sizes_must_be_multiples_of_256_kib() {
        for (chunk_size, valid) in [
            (0, false),
            (1, false),
            (RESUMABLE_CHUNK_GRANULARITY, true),
            (RESUMABLE_CHUNK_GRANULARITY * 3, true),
            (RESUMABLE_CHUNK_GRANULARITY + 1, false),
        ] {
            let config = GmailConfig {
                resumable_chunk_size: chunk_size,
                ..GmailConfig::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn the_threshold_cannot_exceed_the_limit() {
        let config = GmailConfig {
            resumable_threshold: MAX_MESSAGE_SIZE + 1,
            ..GmailConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(Error::InvalidThreshold { .. })
        ));
    }
}
