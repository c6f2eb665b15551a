//! mailroom-smtp alone: send one message over STARTTLS with a password, offline, to the
//! in-process sandbox's SMTP submission server (the certificate is verified against the
//! sandbox's CA), then check that the server stored it.
//!
//! ```sh
//! cargo run -p mailroom-smtp --example send_one
//! ```

#![allow(clippy::print_stdout)] // an example reports what it did

use bytes::Bytes;
use mailroom_model::{
    CredentialSecret, Credentials, Envelope, MessageTransport, OutgoingMessage, Provider,
    ServerSettings, TlsStartup,
};
use mailroom_sandbox::{Sandbox, SandboxConfig};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = SandboxConfig::new(dir.path());
    config
        .password_accounts
        .push(("relay@example.net".to_owned(), "correct horse".to_owned()));
    let sandbox = Sandbox::start(config).await?;
    let endpoints = sandbox.endpoints();

    // A password SMTP account ("provider none") with STARTTLS required.
    let settings = ServerSettings {
        host: endpoints.smtp_host.clone(),
        port: endpoints.smtp_starttls_port,
        tls: true,
        tls_startup: TlsStartup::StartTls,
        smtp_user: "relay@example.net".to_owned(),
        ..ServerSettings::preset(Provider::None)
    };
    let transport = SmtpTransport::new(
        SmtpTransportConfig::new(settings).with_extra_root_pem(sandbox.ca_pem().as_bytes()),
    )?;

    let message_id = "<send-one-example@example.net>";
    let bytes = format!(
        "From: relay@example.net\r\nTo: buyer@example.com\r\nSubject: Invoice 42\r\nMessage-ID: {message_id}\r\n\r\nYour invoice is attached.\r\n"
    );
    let message = OutgoingMessage {
        envelope: Envelope::new(
            "relay@example.net".parse()?,
            vec!["buyer@example.com".parse()?],
        )?,
        bytes: Bytes::from(bytes),
        message_id: Some(message_id.to_owned()),
    };
    let credentials = Credentials {
        user: "relay@example.net".to_owned(),
        secret: CredentialSecret::Password("correct horse".into()),
        version: 1,
    };
    let delivery = transport.send(&message, &credentials).await?;
    println!("send_one: the server said {:?}", delivery.reply);

    let stored = sandbox
        .mailbox()
        .find_by_message_id("send-one-example@example.net")
        .ok_or("the sandbox did not store the message")?;
    println!(
        "send_one: stored message {} for {:?}, authenticated as {}",
        stored.sequence, stored.recipients, stored.authenticated_as
    );
    Ok(())
}
