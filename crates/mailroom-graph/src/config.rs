//! `GraphConfig`: where Microsoft Graph is, what to trust, the size limit and the upload
//! settings; and the checks that run before a transport is built.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use url::{Host, Url};

use crate::{DEFAULT_BASE_URL, DEFAULT_MAX_MESSAGE_SIZE, Error, MAX_UPLOAD_CHUNK};

/// How a [`crate::GraphTransport`] reaches Microsoft Graph. The library reads no environment
/// variable or file: the caller passes what the settings say.
#[derive(Clone)]
pub struct GraphConfig {
    /// Graph's base URL, [`DEFAULT_BASE_URL`] by default; a national cloud's
    /// (`https://graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`) or a test
    /// server's. A path prefix is kept; a query, fragment or password is refused.
    pub base_url: Url,
    /// The largest message sent, in bytes ([`DEFAULT_MAX_MESSAGE_SIZE`], Exchange Online's
    /// default of 35 MB). Raise it only when an administrator raised the mailbox's limit.
    pub max_message_size: u64,
    /// Whether Graph keeps a copy in Sent Items. Graph's MIME send always does, so only
    /// `true` (the default, as Graph's) is accepted; see the crate documentation.
    pub save_to_sent_items: bool,
    /// One or more extra trusted root certificates (PEM), in addition to the built-in web
    /// roots, e.g. for a TLS-inspecting proxy. Certificates are always verified.
    pub extra_root_pem: Option<Vec<u8>>,
    /// Accepts `http://` URLs (the base URL and upload URLs) whose host is a loopback
    /// address. Only for test servers.
    pub allow_plaintext_loopback: bool,
    /// The deadline of each HTTP request. Each chunk of an upload is its own request.
    pub timeout: Duration,
    /// The size of each upload session `PUT`, at most [`MAX_UPLOAD_CHUNK`] (the default).
    pub upload_chunk_size: u64,
    /// How many times one attachment upload may be interrupted and resumed before the send
    /// fails as transient.
    pub resume_attempts: u32,
    /// The wait before the first resume; it doubles for each further one.
    pub resume_backoff: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse(DEFAULT_BASE_URL).expect("the default base URL parses"),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            save_to_sent_items: true,
            extra_root_pem: None,
            allow_plaintext_loopback: false,
            timeout: Duration::from_secs(100),
            upload_chunk_size: MAX_UPLOAD_CHUNK,
            resume_attempts: 5,
            resume_backoff: Duration::from_millis(500),
        }
    }
}

impl GraphConfig {
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
        if !self.save_to_sent_items {
            return Err(Error::SaveToSentItemsUnsupported);
        }
        let chunk_size = self.upload_chunk_size;
        if chunk_size == 0 || chunk_size > MAX_UPLOAD_CHUNK {
            return Err(Error::InvalidChunkSize { chunk_size });
        }
        if self.max_message_size == 0 {
            return Err(Error::InvalidMaxMessageSize);
        }
        Ok(())
    }

    /// True when requests may go to `url`: `https`, or plain `http` to a loopback host when
    /// allowed (upload URLs are checked with it too).
    pub(crate) fn url_allowed(&self, url: &Url) -> bool {
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        match url.scheme() {
            "https" => url.host().is_some(),
            "http" => self.allow_plaintext_loopback && is_loopback(url),
            _ => false,
        }
    }
}

impl fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphConfig")
            .field("base_url", &redact_url(&self.base_url))
            .field("max_message_size", &self.max_message_size)
            .field("save_to_sent_items", &self.save_to_sent_items)
            .field(
                "extra_root_pem",
                &self
                    .extra_root_pem
                    .as_ref()
                    .map(|pem| format!("<{} bytes of PEM>", pem.len())),
            )
            .field("allow_plaintext_loopback", &self.allow_plaintext_loopback)
            .field("timeout", &self.timeout)
            .field("upload_chunk_size", &self.upload_chunk_size)
            .field("resume_attempts", &self.resume_attempts)
            .field("resume_backoff", &self.resume_backoff)
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
        let _ = shown.set_password(Some("redacted"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(url: &str, allow_plaintext_loopback: bool, expected: Result<(), &str>) {
        let config = GraphConfig {
            allow_plaintext_loopback,
            ..GraphConfig::with_base_url(Url::parse(url).expect("test URL parses"))
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
        check("https://graph.microsoft.com", false, Ok(()));
        check("https://graph.microsoft.us", false, Ok(()));
        check("https://proxy.example/graph/", false, Ok(()));
        check("http://127.0.0.1:8080", true, Ok(()));
        check("http://[::1]:8080", true, Ok(()));
        check("http://localhost:8080", true, Ok(()));
        check("http://127.0.0.1:8080", false, Err("does not use https"));
        check(
            "http://graph.microsoft.com",
            true,
            Err("does not use https"),
        );
        check(
            "ftp://graph.microsoft.com",
            false,
            Err("neither https nor http"),
        );
        check("https://graph.microsoft.com/?x=1", false, Err("query"));
        check(
            "https://user:hunter2@graph.microsoft.com",
            false,
            Err("user name or password"),
        );
    }

    #[test]
    fn each_part_of_a_base_url_that_cannot_serve_is_refused_alone() {
        // A user name alone, and a password alone: credentials never go in the URL.
        check(
            "https://user@graph.microsoft.com",
            false,
            Err("user name or password"),
        );
        check(
            "https://:hunter2@graph.microsoft.com",
            false,
            Err("user name or password"),
        );
        // A query alone, and a fragment alone: the request paths are appended to the base.
        check("https://graph.microsoft.com/?", false, Err("query"));
        check("https://graph.microsoft.com/#top", false, Err("fragment"));
        check("https://graph.microsoft.com/v1.0#", false, Err("fragment"));
        // A URL without a host cannot be reached.
        check("file:///graph", false, Err("it has no host"));
        // A loopback host is allowed plaintext only when allowed, and any other host never.
        check("http://localhost:8080", false, Err("does not use https"));
        check("http://127.0.0.2:8080", true, Ok(()));
        check("http://10.0.0.1:8080", true, Err("does not use https"));
        check("http://[::2]:8080", true, Err("does not use https"));
        check(
            "http://localhost.example:8080",
            true,
            Err("does not use https"),
        );
    }

    #[test]
    fn a_refused_url_is_shown_in_the_error_without_its_password() {
        let error = GraphConfig::with_base_url(
            Url::parse("https://user:hunter2@graph.microsoft.com/graph").expect("parses"),
        )
        .validate()
        .expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`https://user:redacted@graph.microsoft.com/graph`"),
            "{error}"
        );
        let error = GraphConfig::with_base_url(
            Url::parse("https://graph.microsoft.com/?tenant=contoso").expect("parses"),
        )
        .validate()
        .expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`https://graph.microsoft.com/?tenant=contoso`"),
            "{error}"
        );
        let error =
            GraphConfig::with_base_url(Url::parse("http://graph.microsoft.com/").expect("parses"))
                .validate()
                .expect_err("refused");
        assert!(
            matches!(&error, Error::InsecureUrl { url } if url == "http://graph.microsoft.com/"),
            "{error:?}"
        );
    }

    #[test]
    fn debug_shows_the_settings_and_the_url_but_no_password_or_certificate() {
        let config = GraphConfig {
            extra_root_pem: Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec()),
            ..GraphConfig::with_base_url(
                Url::parse("https://user:hunter2@graph.microsoft.us/proxy").expect("parses"),
            )
        };
        let shown = format!("{config:?}");
        assert!(shown.starts_with("GraphConfig {"), "{shown}");
        assert!(
            shown.contains(r#"base_url: "https://user:redacted@graph.microsoft.us/proxy""#),
            "{shown}"
        );
        assert!(shown.contains("max_message_size: 36700160"), "{shown}");
        assert!(shown.contains("save_to_sent_items: true"), "{shown}");
        assert!(shown.contains("<33 bytes of PEM>"), "{shown}");
        assert!(!shown.contains("MIIB"), "{shown}");
        assert!(shown.contains("allow_plaintext_loopback: false"), "{shown}");
        assert!(shown.contains("timeout: 100s"), "{shown}");
        assert!(shown.contains("upload_chunk_size: 4194304"), "{shown}");
        assert!(shown.contains("resume_attempts: 5"), "{shown}");
        assert!(shown.contains("resume_backoff: 500ms"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = format!("{:?}", GraphConfig::default());
        assert!(
            shown.contains(r#"base_url: "https://graph.microsoft.com/""#),
            "{shown}"
        );
        assert!(shown.contains("extra_root_pem: None"), "{shown}");
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let config = GraphConfig::with_base_url(
            Url::parse("https://user:hunter2@graph.microsoft.com").expect("parses"),
        );
        let error = config.validate().expect_err("a password is refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn chunk_sizes_above_4_mib_and_no_sent_copy_are_refused() {
        let big = GraphConfig {
            upload_chunk_size: MAX_UPLOAD_CHUNK + 1,
            ..GraphConfig::default()
        };
        assert!(matches!(
            big.validate(),
            Err(Error::InvalidChunkSize { .. })
        ));
        let zero = GraphConfig {
            upload_chunk_size: 0,
            ..GraphConfig::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(Error::InvalidChunkSize { .. })
        ));
        let no_copy = GraphConfig {
            save_to_sent_items: false,
            ..GraphConfig::default()
        };
        let error = no_copy.validate().expect_err("refused");
        assert!(error.to_string().contains("always saves"), "{error}");
        assert!(GraphConfig::default().validate().is_ok());
    }

    #[test]
    fn chunk_and_message_sizes_at_their_limits() {
        let with = |upload_chunk_size: u64, max_message_size: u64| GraphConfig {
            upload_chunk_size,
            max_message_size,
            ..GraphConfig::default()
        };
        assert!(with(1, 1).validate().is_ok());
        assert!(with(MAX_UPLOAD_CHUNK, u64::MAX).validate().is_ok());
        assert!(with(MAX_UPLOAD_CHUNK - 1, 1).validate().is_ok());
        let error = with(MAX_UPLOAD_CHUNK + 1, 1)
            .validate()
            .expect_err("over 4 MiB");
        assert!(
            matches!(error, Error::InvalidChunkSize { chunk_size } if chunk_size == MAX_UPLOAD_CHUNK + 1)
        );
        assert!(error.to_string().contains("4194305"), "{error}");
        assert!(matches!(
            with(1, 0).validate(),
            Err(Error::InvalidMaxMessageSize)
        ));
    }

    #[test]
    fn upload_urls_must_be_https_unless_loopback_plaintext_is_allowed() {
        let config = GraphConfig::default();
        let parse = |url: &str| Url::parse(url).expect("parses");
        assert!(config.url_allowed(&parse(
            "https://outlook.office.com/api/v2.0/Users('x')/Messages('y')/AttachmentSessions('z')?authtoken=abc"
        )));
        assert!(!config.url_allowed(&parse("http://outlook.office.com/upload")));
        assert!(!config.url_allowed(&parse("http://127.0.0.1:9/upload")));
        assert!(!config.url_allowed(&parse("https://u:p@outlook.office.com/upload")));
        let test = GraphConfig {
            allow_plaintext_loopback: true,
            ..GraphConfig::default()
        };
        assert!(test.url_allowed(&parse("http://127.0.0.1:9/upload")));
        assert!(!test.url_allowed(&parse("http://10.0.0.1/upload")));
    }

    #[test]
    fn upload_urls_with_a_user_or_a_password_alone_or_another_scheme_are_refused() {
        let parse = |url: &str| Url::parse(url).expect("parses");
        for config in [
            GraphConfig::default(),
            GraphConfig {
                allow_plaintext_loopback: true,
                ..GraphConfig::default()
            },
        ] {
            assert!(!config.url_allowed(&parse("https://u@outlook.office.com/upload")));
            assert!(!config.url_allowed(&parse("https://:p@outlook.office.com/upload")));
            assert!(!config.url_allowed(&parse("http://u@127.0.0.1:9/upload")));
            assert!(!config.url_allowed(&parse("http://:p@localhost:9/upload")));
            assert!(!config.url_allowed(&parse("ftp://127.0.0.1/upload")));
            assert!(!config.url_allowed(&parse("wss://outlook.office.com/upload")));
            assert!(config.url_allowed(&parse("https://outlook.office.com/upload#part")));
        }
        let test = GraphConfig {
            allow_plaintext_loopback: true,
            ..GraphConfig::default()
        };
        assert!(test.url_allowed(&parse("http://localhost:9/upload")));
        assert!(test.url_allowed(&parse("http://[::1]:9/upload")));
        assert!(!test.url_allowed(&parse("http://[2001:db8::1]:9/upload")));
    }
}
