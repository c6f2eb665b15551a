//! A host application built on the facade alone, offline: it opens its database,
//! registers a Microsoft app and a company account, signs the account in through
//! `Mailroom::begin_sign_in` (its own "screen" shows the sign-in address; the in-process
//! sandbox stands in for Microsoft and approves at once), sends a message, queues three
//! more and drains them with the agent — then checks what the sandbox's mailbox received.
//!
//! ```sh
//! cargo run -p mailroom --example host_app
//! ```

#![allow(clippy::print_stdout)] // an example reports what it did

use std::sync::Arc;
use std::time::Duration;

use mailroom::accounts::Accounts;
use mailroom::model::{Provider, ServerSettingsChange, TlsStartup};
use mailroom::tokens::registration::{AppChange, Apps, EndpointOverrides};
use mailroom::{
    AUTOMATION_AGENT, AccountRef, Agent, AgentOptions, KeyRing, Mailroom, MailroomOptions,
    MessageDraft, SALES_DOCUMENT, SendRequest, SignInMode, SignInStep,
};
use mailroom_sandbox::{Sandbox, SandboxConfig};

const ADDRESS: &str = "orders@contoso.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // The stand-in for Microsoft: sign-in, token endpoint and SMTP submission on loopback.
    let mut config = SandboxConfig::new(dir.path().join("sandbox"));
    config.auto_approve = true;
    let sandbox = Sandbox::start(config).await?;
    let endpoints = sandbox.endpoints().clone();

    // The host's database and the key its secrets are sealed with. The schema is
    // migrated by `migrations::open` (or `Mailroom::open`) before anything else runs.
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("erp.sqlite").display()
    );
    let db = mailroom::migrations::open(&url).await?;
    let key = KeyRing::generate();

    // Configuration, as the host's own settings screens would store it.
    Apps::new(&db, &key)
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("host-app-client-id".to_owned()),
                client_secret: None,
                // The sandbox's tenant: its Microsoft endpoints are a single tenant's.
                tenant: Some(endpoints.tenant_id.clone()),
                overrides: EndpointOverrides {
                    authorize_url: Some(endpoints.microsoft.authorize.clone()),
                    token_url: Some(endpoints.microsoft.token.clone()),
                    device_url: Some(endpoints.microsoft.device.clone()),
                    revoke_url: None,
                    issuer: Some(endpoints.microsoft.issuer.clone()),
                    gmail_api_url: None,
                    graph_api_url: Some(endpoints.graph_api.clone()),
                    redirect_uri: None,
                },
                reset_endpoints: true,
                reset_redirect_uri: false,
                cloud: None,
                app_credential: None,
            },
        )
        .await?;
    Accounts::new(&db, &key)
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::Microsoft),
                host: Some(endpoints.smtp_host.clone()),
                port: Some(endpoints.smtp_starttls_port),
                tls: Some(true),
                tls_startup: Some(TlsStartup::StartTls),
                smtp_user: Some(ADDRESS.to_owned()),
                ..Default::default()
            },
            None,
        )
        .await?;

    let mut options = MailroomOptions::new(key);
    // The sandbox's certificates come from a CA made at its start: trust it, verify them.
    options.extra_root_pem = Some(sandbox.ca_pem().as_bytes().to_vec());
    let mailroom = Arc::new(Mailroom::with_connection(db, options).await?);

    // Sign in: the host shows the step in its own UI; here a "browser" visits the address.
    let session = mailroom
        .begin_sign_in(
            AccountRef::Company,
            SignInMode::Browser,
            Duration::from_secs(60),
        )
        .await?;
    let SignInStep::OpenUrl(url) = session.step().clone() else {
        return Err("the browser sign-in did not ask to open an address".into());
    };
    println!("host_app: the sign-in screen shows {url}");
    let browser = tokio::spawn(async move {
        reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(url)
            .send()
            .await?
            .text()
            .await
    });
    let signed_in_as = session.finish(&mailroom).await?;
    let page = browser.await??;
    if !page.contains("Signed in") {
        return Err(format!("the browser page does not confirm the sign-in: {page}").into());
    }
    println!("host_app: signed in as {signed_in_as}");

    // Send now, as the company account.
    let draft = |subject: &str| MessageDraft {
        to: vec!["buyer@example.com".to_owned()],
        subject: subject.to_owned(),
        text: Some("Thank you for your order.".to_owned()),
        ..MessageDraft::default()
    };
    let receipt = mailroom
        .send(SendRequest::new(SALES_DOCUMENT, draft("Order 10234")))
        .await?;
    println!(
        "host_app: sent {} via {} ({})",
        receipt.message_id, receipt.transport, receipt.reason
    );

    // Queue three for the automation agent and drain the outbox once.
    for n in 1..=3 {
        mailroom
            .queue(SendRequest::new(
                AUTOMATION_AGENT,
                draft(&format!("Statement {n}")),
            ))
            .await?;
    }
    let agent = Agent::new(
        mailroom.clone(),
        AgentOptions {
            once: true,
            ..AgentOptions::default()
        },
    );
    let summary = agent.run(std::future::pending()).await?;
    println!(
        "host_app: the agent sent {} and held {}",
        summary.sent, summary.held
    );

    let received = sandbox.mailbox().messages().len();
    if received != 4 || summary.sent != 3 {
        return Err(format!(
            "expected 4 messages in the mailbox, 3 by the agent; got {received} and {}",
            summary.sent
        )
        .into());
    }
    println!("host_app: the mailbox holds {received} messages: done");
    Ok(())
}
