//! [`probe`]: what an account's server offers, without authenticating or sending: the
//! same connection code as a send (TCP, TLS as the settings say, EHLO), then `QUIT`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use mailroom_model::{ServerSettings, TransportError};

use crate::SmtpTransportConfig;
use crate::connection::{ConnectionSettings, Greeted, connect, quit};
use crate::reply::Failure;
use crate::tls::{TlsMaterial, TlsPlan};
use crate::transport::hello_name;

/// How TLS started on a probed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeTls {
    /// TLS from the first byte (implicit TLS).
    Implicit,
    /// STARTTLS after the greeting.
    StartTls,
    /// No TLS: the settings allow plaintext and the server offers no STARTTLS.
    None,
}

impl fmt::Display for ProbeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeTls::Implicit => "implicit TLS",
            ProbeTls::StartTls => "STARTTLS",
            ProbeTls::None => "no TLS",
        })
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// The address connected to.
    pub peer: SocketAddr,
    /// How TLS started.
    pub tls: ProbeTls,
    /// The name the server gave in its EHLO reply.
    pub server_name: String,
    /// The `AUTH` mechanisms the server offers after TLS, upper-cased (`XOAUTH2`,
    /// `OAUTHBEARER`, `PLAIN`, `LOGIN`, ...).
    pub auth_mechanisms: Vec<String>,
}

impl Probe {
    /// True when the server offers a mechanism that carries an access token (XOAUTH2 or
    /// OAUTHBEARER).
    pub fn offers_oauth(&self) -> bool {
        self.auth_mechanisms
            .iter()
            .any(|mechanism| mechanism == "XOAUTH2" || mechanism == "OAUTHBEARER")
    }

    /// True when the server offers a password mechanism (PLAIN or LOGIN).
    pub fn offers_password(&self) -> bool {
        self.auth_mechanisms
            .iter()
            .any(|mechanism| mechanism == "PLAIN" || mechanism == "LOGIN")
    }
}

/// Why a probe failed: settings that cannot be used, or the connection (a
/// [`TransportError`] with its kind, prose and remedy, as a send would report it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The settings or the extra root certificate cannot be used.
    #[error(transparent)]
    Settings(#[from] crate::Error),
    /// Connecting, TLS or EHLO failed.
    #[error(transparent)]
    Connection(#[from] TransportError),
}

/// Connects to the server of `settings` as a send would (TCP, TLS as the settings say,
/// EHLO), asks for the `AUTH` mechanisms, and says `QUIT`. Never authenticates and never
/// sends mail; every step is bounded by the settings' timeout.
pub async fn probe(
    settings: &ServerSettings,
    extra_root_pem: Option<&[u8]>,
) -> Result<Probe, ProbeError> {
    let mut config = SmtpTransportConfig::new(settings.clone());
    config.extra_root_pem = extra_root_pem.map(<[u8]>::to_vec);
    config.validate()?;
    let connection = ConnectionSettings {
        server: settings.clone(),
        tls: TlsMaterial::new(&settings.host, extra_root_pem)?,
        hello: hello_name(None),
        timeout: Duration::from_millis(u64::from(settings.timeout_ms)),
        final_reply_timeout: config.final_reply_timeout,
    };
    let into_error = |failure: Failure| failure.into_transport_error(&settings.smtp_user);
    let Greeted {
        wire,
        capabilities,
        encrypted,
        peer,
    } = connect(&connection).await.map_err(into_error)?;
    let auth_mechanisms = capabilities.auth_mechanisms();
    let server_name = capabilities.name.clone();
    quit(wire, connection.timeout).await;
    let tls = match (encrypted, TlsPlan::for_settings(settings)) {
        (false, _) => ProbeTls::None,
        (true, TlsPlan::Implicit) => ProbeTls::Implicit,
        (true, _) => ProbeTls::StartTls,
    };
    Ok(Probe {
        peer,
        tls,
        server_name,
        auth_mechanisms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(mechanisms: &[&str]) -> Probe {
        Probe {
            peer: SocketAddr::from(([127, 0, 0, 1], 587)),
            tls: ProbeTls::StartTls,
            server_name: "smtp.example.com".to_owned(),
            auth_mechanisms: mechanisms.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    #[test]
    fn how_tls_started_reads_as_the_doctor_prints_it() {
        assert_eq!(ProbeTls::Implicit.to_string(), "implicit TLS");
        assert_eq!(ProbeTls::StartTls.to_string(), "STARTTLS");
        assert_eq!(ProbeTls::None.to_string(), "no TLS");
    }

    #[test]
    fn each_token_mechanism_alone_counts_as_oauth_and_password_ones_do_not() {
        for (mechanisms, oauth, password) in [
            (&["XOAUTH2"][..], true, false),
            (&["OAUTHBEARER"][..], true, false),
            (&["PLAIN"][..], false, true),
            (&["LOGIN"][..], false, true),
            (&["LOGIN", "XOAUTH2"][..], true, true),
            (&["CRAM-MD5", "NTLM"][..], false, false),
            (&[][..], false, false),
        ] {
            let probe = offering(mechanisms);
            assert_eq!(probe.offers_oauth(), oauth, "{mechanisms:?}");
            assert_eq!(probe.offers_password(), password, "{mechanisms:?}");
        }
    }
}
