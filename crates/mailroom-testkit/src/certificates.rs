//! A certificate authority made at test time and a server certificate it issued, so TLS
//! tests verify certificates for real without any file in the repository.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server certificate it issued for `localhost` and `127.0.0.1`.
#[derive(Clone)]
pub struct TestCertificates {
    /// The CA certificate (PEM): the root a client should trust.
    pub ca_pem: String,
    /// The server certificate (PEM).
    pub leaf_pem: String,
    /// The server certificate (DER).
    pub leaf_der: Vec<u8>,
    /// The server's private key (PEM, PKCS#8).
    pub leaf_key_pem: String,
    /// The server's private key (DER, PKCS#8).
    pub leaf_key_der: Vec<u8>,
}

impl fmt::Debug for TestCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is test material, but a `Debug` that prints keys is a bad habit to copy.
        f.debug_struct("TestCertificates")
            .field("ca_pem", &self.ca_pem)
            .field("leaf_pem", &self.leaf_pem)
            .finish_non_exhaustive()
    }
}

impl TestCertificates {
    /// A new CA named `ca_name` and a server certificate it signed.
    pub fn generate(ca_name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let leaf_key = KeyPair::generate().expect("generate the server key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("sign the server certificate");
        Self {
            ca_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    }

    /// A rustls server configuration (ring, the safe default protocol versions) that
    /// presents the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(self.leaf_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
        )
        .expect("a server configuration");
        Arc::new(config)
    }
}
