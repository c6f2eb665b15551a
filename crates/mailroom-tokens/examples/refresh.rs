//! mailroom-tokens alone, offline: register an app with the in-process sandbox standing in
//! for Microsoft, sign in through the real loopback PKCE flow (a "browser" visits the
//! address; the sandbox approves at once), store the tokens sealed, then refresh through
//! the broker and check that a new token version was stored.
//!
//! ```sh
//! cargo run -p mailroom-tokens --example refresh
//! ```

#![allow(clippy::print_stdout)] // an example reports what it did

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::{AccountRef, Provider, SystemClock};
use mailroom_sandbox::{Sandbox, SandboxConfig};
use mailroom_tokens::interactive::{SignInOptions, sign_in_with_browser};
use mailroom_tokens::registration::{AppChange, Apps, EndpointOverrides};
use mailroom_tokens::storage::TokenStore;
use mailroom_tokens::{BrokerConfig, OAuthHttp, TokenBroker, TokenTarget};

const ADDRESS: &str = "sa@contoso.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = SandboxConfig::new(dir.path().join("sandbox"));
    config.auto_approve = true;
    let sandbox = Sandbox::start(config).await?;
    let microsoft = sandbox.endpoints().microsoft.clone();

    // The schema comes from mailroom-migrations, which must run first.
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tokens.sqlite").display()
    );
    let db = mailroom_migrations::open(&url).await?;
    let key = KeyRing::generate();
    let app = Apps::new(&db, &key)
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("refresh-example".to_owned()),
                client_secret: None,
                tenant: Some(sandbox.endpoints().tenant_id.clone()),
                overrides: EndpointOverrides {
                    authorize_url: Some(microsoft.authorize.clone()),
                    token_url: Some(microsoft.token.clone()),
                    device_url: Some(microsoft.device.clone()),
                    revoke_url: None,
                    issuer: Some(microsoft.issuer.clone()),
                    gmail_api_url: None,
                    graph_api_url: None,
                    redirect_uri: None,
                },
                reset_endpoints: true,
                reset_redirect_uri: false,
                cloud: None,
                app_credential: None,
            },
        )
        .await?;

    // Sign in: the callback would open a browser; here a client visits the address.
    let mut visit = None;
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &SignInOptions {
            expected_address: Some(ADDRESS.to_owned()),
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
        SystemTime::now,
        |url| {
            let url = url.clone();
            visit = Some(tokio::spawn(async move {
                reqwest::Client::builder()
                    .no_proxy()
                    .build()?
                    .get(url)
                    .send()
                    .await
            }));
        },
    )
    .await?;
    visit.ok_or("the browser was never opened")?.await??;
    let stored = TokenStore::new(&db, &key)
        .save_sign_in(&signed_in, chrono::Utc::now())
        .await?;
    println!(
        "refresh: signed in as {} (token version {})",
        signed_in.identity.address, stored.version
    );

    let broker = TokenBroker::new(
        db,
        key,
        OAuthHttp::new(),
        Arc::new(SystemClock),
        BrokerConfig::default(),
    );
    let target = TokenTarget {
        account: AccountRef::Company,
        provider: Provider::Microsoft,
        address: ADDRESS.to_owned(),
        // The sign-in is stored under the person (oid + tid), and an account records it:
        // the facade keeps this in the account's settings.
        token_identity: Some(stored.key.identity_key.clone()),
        resource: Default::default(),
        auth: Default::default(),
    };
    let refreshed = broker.force_refresh(&target).await?;
    if refreshed.version <= stored.version as u64 {
        return Err("the refresh did not store a newer token".into());
    }
    println!(
        "refresh: refreshed to version {}, valid until {}",
        refreshed.version, refreshed.expires_at
    );
    Ok(())
}
