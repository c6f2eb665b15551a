//! The sandbox's certificates: a CA generated at start (its PEM is written to
//! `<dir>/ca.pem` for clients to trust) and a server certificate for `localhost`,
//! `127.0.0.1` and `::1` signed by it, served with rustls on ring.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Error, Result};

/// The CA's PEM and a TLS server configuration with the certificate it signed.
pub(crate) struct SandboxCertificates {
    pub(crate) ca_pem: String,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
}

fn certificate_error(error: impl std::fmt::Display) -> Error {
    Error::Certificate(error.to_string())
}

impl SandboxCertificates {
    pub(crate) fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(certificate_error)?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mailroom sandbox CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).map_err(certificate_error)?;

        let server_key = KeyPair::generate().map_err(certificate_error)?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(certificate_error)?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "mailroom sandbox");
        server_params.is_ca = IsCa::ExplicitNoCa;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .map_err(certificate_error)?;

        let chain = vec![
            CertificateDer::from(server.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(certificate_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(certificate_error)?;
        Ok(Self {
            ca_pem: ca.pem(),
            server_config: Arc::new(server_config),
        })
    }
}
