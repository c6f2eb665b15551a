//! TLS: which way TLS starts for an account, the trusted roots (Mozilla's plus an optional
//! extra PEM root), and the handshake on a socket we opened ourselves (implicit TLS and
//! STARTTLS).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mailroom_model::{ServerSettings, TlsStartup};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::{Error, Result};

/// How TLS starts on a connection, derived from the account's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsPlan {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS, and refuse to go on when the server does not offer it.
    StartTlsRequired,
    /// STARTTLS when the server offers it, plaintext otherwise (TLS disabled in the
    /// settings; a bearer token is still never sent in plaintext).
    StartTlsIfOffered,
}

impl TlsPlan {
    /// `Auto` is implicit TLS on port 465 and required STARTTLS elsewhere.
    pub(crate) fn for_settings(settings: &ServerSettings) -> Self {
        match (settings.tls, settings.tls_startup) {
            (false, _) => TlsPlan::StartTlsIfOffered,
            (true, TlsStartup::Implicit) => TlsPlan::Implicit,
            (true, TlsStartup::StartTls) => TlsPlan::StartTlsRequired,
            (true, TlsStartup::Auto) if settings.port == 465 => TlsPlan::Implicit,
            (true, TlsStartup::Auto) => TlsPlan::StartTlsRequired,
        }
    }
}

/// The TLS configuration of one server, built once per transport. Both paths verify the
/// server's certificate against the same roots; there is no way to turn that off.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    /// For implicit TLS and STARTTLS alike.
    implicit: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How many root certificates a PEM text holds; an error when it is not PEM or holds
/// none (what a transport given it as its extra root would refuse).
pub fn count_root_certificates(pem: &[u8]) -> Result<usize> {
    parse_roots(pem).map(|roots| roots.len())
}

/// Parses PEM root certificates; at least one is required.
pub(crate) fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let roots = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::InvalidRootCertificate {
            reason: error.to_string(),
        })?;
    if roots.is_empty() {
        return Err(Error::InvalidRootCertificate {
            reason: "it contains no certificate".to_owned(),
        });
    }
    Ok(roots)
}

impl TlsMaterial {
    pub(crate) fn new(host: &str, extra_root_pem: Option<&[u8]>) -> Result<Self> {
        let tls_setup = |reason: String| Error::TlsSetup {
            host: host.to_owned(),
            reason,
        };
        let extra_roots = match extra_root_pem {
            Some(pem) => parse_roots(pem)?,
            None => Vec::new(),
        };

        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in &extra_roots {
            roots
                .add(root.clone())
                .map_err(|error| Error::InvalidRootCertificate {
                    reason: error.to_string(),
                })?;
        }
        // The ring provider explicitly: the process-wide default may be unset, and the
        // tree carries no other provider.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_setup(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|error| tls_setup(format!("`{host}` is not a valid server name: {error}")))?;

        Ok(Self {
            implicit: tokio_rustls::TlsConnector::from(Arc::new(client_config)),
            server_name,
        })
    }

    /// Runs the TLS handshake after STARTTLS.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<FirstBytes<TcpStream>>> {
        self.implicit
            .connect(self.server_name.clone(), FirstBytes::new(tcp))
            .await
    }

    /// Runs the TLS handshake of implicit TLS on an open socket. On failure, says whether
    /// the server spoke plain SMTP first (its first bytes were a reply code, where a TLS
    /// record was expected).
    pub(crate) async fn connect_implicit(
        &self,
        tcp: TcpStream,
    ) -> Result<TlsStream<FirstBytes<TcpStream>>, ImplicitTlsError> {
        match self
            .implicit
            .connect(self.server_name.clone(), FirstBytes::new(tcp))
            .into_fallible()
            .await
        {
            Ok(stream) => Ok(stream),
            Err((source, io)) => Err(ImplicitTlsError {
                source,
                first_bytes: io.first,
            }),
        }
    }
}

/// A failed implicit TLS handshake, with the first bytes the server sent.
#[derive(Debug)]
pub(crate) struct ImplicitTlsError {
    pub(crate) source: io::Error,
    first_bytes: Vec<u8>,
}

impl ImplicitTlsError {
    /// The server answered with an SMTP reply code (`220 ...`): it speaks plain SMTP first.
    pub(crate) fn speaks_plain_smtp(&self) -> bool {
        starts_with_reply_code(&self.first_bytes)
    }

    /// The server answered with a TLS record (handshake or alert): it speaks TLS, whatever
    /// else went wrong (an untrusted certificate, say).
    pub(crate) fn speaks_tls(&self) -> bool {
        is_tls_record_start(&self.first_bytes)
    }
}

/// Three digits: the start of an SMTP reply.
pub(crate) fn starts_with_reply_code(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit)
}

/// The content type of a TLS handshake (22) or alert (21) record.
pub(crate) fn is_tls_record_start(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x16 | 0x15))
}

/// How many of the server's first bytes [`FirstBytes`] keeps.
const FIRST_BYTES: usize = 8;

/// A socket that remembers the first bytes read from it, so a failed handshake can say
/// what the server sent instead of a TLS record.
pub(crate) struct FirstBytes<T> {
    inner: T,
    first: Vec<u8>,
}

impl<T> FirstBytes<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            first: Vec::with_capacity(FIRST_BYTES),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytes<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.first.len() < FIRST_BYTES {
            let wanted = FIRST_BYTES - self.first.len();
            let new = &buf.filled()[before..];
            let take = new.len().min(wanted);
            let copied = new[..take].to_vec();
            self.first.extend_from_slice(&copied);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytes<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// True when the error chain holds a rustls error: the handshake failed, most often
/// because the certificate did not verify.
pub(crate) fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if error.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the wrapped error itself, so look inside by hand.
        // (No let-chains: the workspace's rust-version is 1.85.)
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(|io_error| io_error.get_ref())
        {
            if inner.is::<rustls::Error>() || is_tls_failure(inner) {
                return true;
            }
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use mailroom_model::Provider;

    #[track_caller]
    fn check(tls: bool, startup: TlsStartup, port: u16, expected: TlsPlan) {
        let mut settings = ServerSettings::preset(Provider::None);
        settings.tls = tls;
        settings.tls_startup = startup;
        settings.port = port;
        assert_eq!(TlsPlan::for_settings(&settings), expected);
    }

    #[test]
    fn plan_follows_the_settings() {
        check(true, TlsStartup::Implicit, 587, TlsPlan::Implicit);
        check(true, TlsStartup::StartTls, 465, TlsPlan::StartTlsRequired);
        check(true, TlsStartup::Auto, 465, TlsPlan::Implicit);
        check(true, TlsStartup::Auto, 587, TlsPlan::StartTlsRequired);
        check(true, TlsStartup::Auto, 25, TlsPlan::StartTlsRequired);
        check(false, TlsStartup::Implicit, 465, TlsPlan::StartTlsIfOffered);
        check(false, TlsStartup::Auto, 587, TlsPlan::StartTlsIfOffered);
    }

    #[test]
    fn the_first_bytes_of_a_failed_handshake_say_what_the_port_speaks() {
        let failed = |first: &[u8]| ImplicitTlsError {
            source: io::Error::from(io::ErrorKind::InvalidData),
            first_bytes: first.to_vec(),
        };
        // A TLS alert (an untrusted certificate, say) or handshake record: TLS.
        for record in [&[0x15u8, 3, 3][..], &[0x16, 3, 1]] {
            assert!(failed(record).speaks_tls());
            assert!(!failed(record).speaks_plain_smtp());
        }
        let greeting = failed(b"220 smtp.example.com ESMTP");
        assert!(greeting.speaks_plain_smtp());
        assert!(!greeting.speaks_tls());
        assert!(!failed(b"").speaks_tls());
    }

    #[test]
    fn root_certificates_are_counted_block_by_block() {
        let block = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert_eq!(count_root_certificates(block.as_bytes()).unwrap(), 1);
        assert_eq!(
            count_root_certificates(format!("{block}{block}").as_bytes()).unwrap(),
            2
        );
        assert!(count_root_certificates(b"").is_err());
    }

    #[test]
    fn tls_material_shows_its_server_name() {
        let material = TlsMaterial::new("smtp.example.com", None).unwrap();
        let debug = format!("{material:?}");
        assert!(debug.starts_with("TlsMaterial"), "{debug}");
        assert!(debug.contains("smtp.example.com"), "{debug}");
    }

    /// A writer without vectored writes.
    struct OneSliceAtATime;

    impl AsyncWrite for OneSliceAtATime {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The socket under a TLS session: everything passes through both ways, and only
    /// the first eight bytes read are kept.
    #[tokio::test]
    async fn first_bytes_passes_through_and_keeps_only_the_first_eight_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut far, _) = listener.accept().await.unwrap();
        let mut wrapped = FirstBytes::new(near);
        assert!(wrapped.is_write_vectored(), "as a TCP socket is");
        assert!(!FirstBytes::new(OneSliceAtATime).is_write_vectored());

        far.write_all(b"abc").await.unwrap();
        let mut buffer = [0u8; 3];
        wrapped.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"abc");
        far.write_all(b"defghijklmnop").await.unwrap();
        let mut rest = [0u8; 13];
        wrapped.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"defghijklmnop");
        assert_eq!(wrapped.first, b"abcdefgh");

        wrapped.write_all(b"EHLO client\r\n").await.unwrap();
        wrapped.flush().await.unwrap();
        wrapped.shutdown().await.unwrap();
        let mut written = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), far.read_to_end(&mut written))
            .await
            .expect("the shutdown reaches the other end")
            .unwrap();
        assert_eq!(written, b"EHLO client\r\n");
    }

    #[test]
    fn a_rustls_error_is_found_however_deep_in_io_errors() {
        let rustls_error = || rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let once = io::Error::new(io::ErrorKind::InvalidData, rustls_error());
        assert!(is_tls_failure(&once));
        let twice = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, rustls_error()));
        assert!(is_tls_failure(&twice));
        let plain = io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!is_tls_failure(&plain));
    }

    #[test]
    fn roots_must_be_pem_certificates() {
        let error = parse_roots(b"not a certificate").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the extra trusted root certificate cannot be used: it contains no certificate; give a PEM file with at least one `BEGIN CERTIFICATE` block"
        );
    }
}
