//! Certificates are verified: a server signed by an unknown CA is a TLS error, and the same
//! server is trusted once its CA is given as the extra root.

use mailroom_gmail::{GmailConfig, GmailTransport};
use mailroom_model::{MessageTransport, TransportErrorKind};
use mailroom_testkit::certificates::TestCertificates;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use url::Url;

use crate::raw_http::{read_body, read_head, respond};
use crate::{assert_no_token, credentials, message_of_size, sent_message_json};

/// An HTTPS server on 127.0.0.1 with a certificate from a fresh CA; returns its URL and the
/// CA certificate (PEM). It answers every request with a sent `Message`.
async fn https_server() -> (Url, String) {
    let certificates = TestCertificates::generate("mailroom test ca");
    let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake; nothing to do.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut stream = BufReader::new(tls);
                let Ok(head) = read_head(&mut stream).await else {
                    return;
                };
                if read_body(&mut stream, head.content_length()).await.is_ok() {
                    let headers = [("Content-Type", "application/json".to_owned())];
                    let _ =
                        respond(stream.get_mut(), "200 OK", &headers, &sent_message_json()).await;
                }
            });
        }
    });
    let url = Url::parse(&format!("https://{address}")).expect("URL");
    (url, certificates.ca_pem)
}

#[tokio::test]
async fn an_unknown_certificate_authority_is_a_tls_error() {
    let (url, _) = https_server().await;

    let error = GmailTransport::new(GmailConfig::with_base_url(url))
        .expect("builds")
        .send(&message_of_size(1_000), &credentials())
        .await
        .expect_err("the certificate is not trusted");

    assert_eq!(error.kind(), TransportErrorKind::Tls, "{error}");
    assert!(
        error.message().contains("invalid peer certificate"),
        "{error}"
    );
    assert!(
        error
            .remediation()
            .is_some_and(|text| text.contains("root certificate"))
    );
    assert_no_token(&error);
}

#[tokio::test]
async fn the_extra_root_is_trusted() {
    let (url, ca_pem) = https_server().await;
    let config = GmailConfig {
        extra_root_pem: Some(ca_pem.into_bytes()),
        ..GmailConfig::with_base_url(url)
    };

    let delivery = GmailTransport::new(config)
        .expect("builds")
        .send(&message_of_size(1_000), &credentials())
        .await
        .expect("sent over verified TLS");

    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("18c0ffee12345678")
    );
}
