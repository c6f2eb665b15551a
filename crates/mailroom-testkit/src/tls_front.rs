//! [`TlsFront`]: an HTTPS front for a plain HTTP server on loopback (wiremock, the
//! sandbox), with its own CA, so a test can check that a client trusts exactly the roots it
//! was given: the front's CA as an extra root makes the connection work, leaving it out
//! makes it a certificate error.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::certificates::TestCertificates;

/// TLS on `127.0.0.1:port`, each connection's bytes passed to the target as they are.
/// Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsFront {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its CA certificate (PEM), which signed a certificate for `localhost` and
    /// `127.0.0.1`.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for the plain server at `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let certificates = TestCertificates::generate("mailroom tls front ca");
        let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("its address").port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here: nothing to pass on.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        Self {
            port,
            ca_pem: certificates.ca_pem,
            task,
        }
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The front passes bytes both ways, and a client trusting only the front's CA
    /// completes the handshake with it.
    #[tokio::test]
    async fn bytes_pass_through_to_the_plain_server() {
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = plain.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut stream, _) = plain.accept().await.unwrap();
            let mut asked = [0u8; 4];
            stream.read_exact(&mut asked).await.unwrap();
            stream
                .write_all(&[asked.as_slice(), b" back"].concat())
                .await
                .unwrap();
        });
        let front = TlsFront::start(target).await;

        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(front.ca_pem.as_bytes()) {
            roots.add(certificate.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", front.port)).await.unwrap();
        let mut tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap_or_default();
        assert_eq!(answer, b"ping back");
        echo.await.unwrap();
        assert_eq!(front.url(), format!("https://127.0.0.1:{}/", front.port));
    }
}
