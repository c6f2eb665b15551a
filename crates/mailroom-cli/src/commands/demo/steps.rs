//! The demo's steps: each does one part of the flow through mailroom's real code against
//! the sandbox and verifies it against what the sandbox stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use mailroom::{
    AUTOMATION_AGENT, Agent, AgentOptions, Attachment, Mailroom, MessageDraft, OutboxStatus,
    Receipt, SALES_DOCUMENT, SendRequest,
};
use mailroom_accounts::{Accounts, BindingChange};
use mailroom_model::{
    AccountRef, Binding, FeatureCatalog, Provider, Remedy, Route, Secret, ServerSettingsChange,
    SignInPrompt, SignInRequest, TlsStartup, TransportKind,
};
use mailroom_sandbox::{ReceivedBy, Sandbox, StoredMessage};
use mailroom_tokens::{
    registration::{AppChange, Apps, EndpointOverrides},
    storage::TokenStore,
};
use sea_orm::TransactionTrait;
use tokio::task::JoinHandle;

use crate::commands::sandbox::{GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, MICROSOFT_CLIENT_ID};
use crate::context::sqlite_path;
use crate::signin::{broker, token_target};

use super::{Demo, Done};

const COMPANY_ADDRESS: &str = "orders@demo.example";
const USER_ADDRESS: &str = "sa@contoso.example";
const SYSTEM_USER: &str = "sa";
const CUSTOMER: &str = "Buyer <buyer@customer.example>";
const QUEUED_PER_ACCOUNT: usize = 10;

fn app_change(
    client_id: &str,
    secret: Option<&str>,
    tenant: Option<&str>,
    overrides: EndpointOverrides,
) -> AppChange {
    AppChange {
        client_id: Some(client_id.to_owned()),
        client_secret: Some(secret.map(Secret::new)),
        tenant: tenant.map(str::to_owned),
        overrides,
        reset_endpoints: true,
        reset_redirect_uri: true,
        cloud: None,
        app_credential: None,
    }
}

/// The apps, the company account and the user account, in one transaction, as
/// `mailroom app set`, `company set` and `account add` would store them.
pub(super) async fn configure(demo: &mut Demo) -> Result<Done> {
    let endpoints = demo.sandbox.endpoints().clone();
    let transaction = demo.context.db.begin().await?;
    let apps = Apps::new(&transaction, &demo.context.key);
    apps.set(
        Provider::Microsoft,
        app_change(
            MICROSOFT_CLIENT_ID,
            None,
            // The sandbox registers its Microsoft app as the README says: single-tenant,
            // a public client with the redirect URI http://localhost.
            Some(&endpoints.tenant_id),
            EndpointOverrides {
                authorize_url: Some(endpoints.microsoft.authorize.clone()),
                token_url: Some(endpoints.microsoft.token.clone()),
                device_url: Some(endpoints.microsoft.device.clone()),
                revoke_url: None,
                issuer: Some(endpoints.microsoft.issuer.clone()),
                gmail_api_url: None,
                graph_api_url: Some(endpoints.graph_api.clone()),
                redirect_uri: None,
            },
        ),
    )
    .await?;
    apps.set(
        Provider::Google,
        app_change(
            GOOGLE_CLIENT_ID,
            Some(GOOGLE_CLIENT_SECRET),
            None,
            EndpointOverrides {
                authorize_url: Some(endpoints.google.authorize.clone()),
                token_url: Some(endpoints.google.token.clone()),
                device_url: Some(endpoints.google.device.clone()),
                revoke_url: endpoints.google.revoke.clone(),
                issuer: Some(endpoints.google.issuer.clone()),
                gmail_api_url: Some(endpoints.gmail_api.clone()),
                graph_api_url: None,
                redirect_uri: None,
            },
        ),
    )
    .await?;
    let accounts = Accounts::new(&transaction, &demo.context.key);
    accounts.verify_key().await?;
    accounts
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::Google),
                smtp_user: Some(COMPANY_ADDRESS.to_owned()),
                ..Default::default()
            },
            None,
        )
        .await?;
    let binding: Binding = format!("SystemUser:User_Name:{SYSTEM_USER}").parse()?;
    let user = accounts
        .add_user_account(
            &ServerSettingsChange {
                provider: Some(Provider::Microsoft),
                host: Some(endpoints.smtp_host.clone()),
                port: Some(endpoints.smtp_starttls_port),
                tls: Some(true),
                tls_startup: Some(TlsStartup::StartTls),
                smtp_user: Some(USER_ADDRESS.to_owned()),
                ..Default::default()
            },
            Some(binding),
        )
        .await?;
    transaction.commit().await?;
    let user_id = user.account.id;
    demo.user_account = Some(user_id);

    // Verify: the resolution rules pick what the README says.
    let catalog = FeatureCatalog::with_defaults();
    let accounts = Accounts::new(&demo.context.db, &demo.context.key);
    let for_sales = accounts
        .resolve(catalog.get(SALES_DOCUMENT)?, Some(SYSTEM_USER))
        .await?;
    ensure!(
        for_sales.account.account_ref() == AccountRef::User(user_id),
        "sales-document for `sa` resolved to the {} instead of user account {user_id}",
        for_sales.account.account_ref()
    );
    let for_agent = accounts
        .resolve(catalog.get(AUTOMATION_AGENT)?, Some(SYSTEM_USER))
        .await?;
    ensure!(
        for_agent.account.account_ref() == AccountRef::Company,
        "automation-agent resolved to the {} instead of the company account",
        for_agent.account.account_ref()
    );
    Ok(Done::new(format!(
        "apps for both styles; company account {COMPANY_ADDRESS} (google); user account {user_id} {USER_ADDRESS} (microsoft, SMTP 127.0.0.1:{} STARTTLS) bound to SystemUser:User_Name:{SYSTEM_USER}; resolution checked",
        endpoints.smtp_starttls_port
    ))
    .with_files(sqlite_path(&demo.context.database_url)))
}

/// A client that follows redirects only to 127.0.0.1: the demo's "browser".
fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if matches!(attempt.url().host_str(), Some("127.0.0.1" | "localhost"))
                && attempt.previous().len() < 5
            {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Runs the facade's browser sign-in for `account` (as a host application's screen would
/// drive it), the demo playing the browser; returns the stored address, the page the
/// browser was shown, and the address it opened.
async fn browser_sign_in(demo: &Demo, account: AccountRef) -> Result<(String, String, url::Url)> {
    let mailroom = crate::commands::send::open_mailroom(&demo.context).await?;
    let session = mailroom
        .begin_sign_in(
            account,
            mailroom::SignInMode::Browser,
            Duration::from_secs(60),
        )
        .await?;
    let mailroom::SignInStep::OpenUrl(url) = session.step().clone() else {
        anyhow::bail!("the browser sign-in did not ask to open an address");
    };
    let client = browser()?;
    let opened = url.clone();
    let visit: JoinHandle<Result<String>> = tokio::spawn(async move {
        let response = client.get(url).send().await?;
        let status = response.status();
        let page = response.text().await?;
        ensure!(status.is_success(), "the redirect page answered {status}");
        Ok(page)
    });
    let stored_address = session.finish(&mailroom).await?;
    let page = visit.await??;
    Ok((stored_address, page, opened))
}

/// Signs an account in through mailroom's real loopback PKCE flow, the demo playing the
/// browser (the sandbox approves at once), and stores it as `mailroom sign-in` does.
pub(super) async fn sign_in(demo: &mut Demo, provider: Provider) -> Result<Done> {
    let (account, address) = match provider {
        Provider::Google => (AccountRef::Company, COMPANY_ADDRESS),
        _ => (
            AccountRef::User(demo.user_account.context("no user account")?),
            USER_ADDRESS,
        ),
    };
    let before = demo.sandbox.authority().stats();
    let (stored_address, page, _) = browser_sign_in(demo, account).await?;
    ensure!(
        page.contains(&format!("Signed in as {address}")),
        "the loopback listener did not confirm the sign-in: {page}"
    );
    let after = demo.sandbox.authority().stats();
    ensure!(
        stored_address.eq_ignore_ascii_case(address),
        "signed in as {stored_address}, expected {address}"
    );
    ensure!(
        after.codes_redeemed == before.codes_redeemed + 1,
        "the sandbox redeemed no authorization code"
    );
    let tokens = TokenStore::new(&demo.context.db, &demo.context.key)
        .list()
        .await?;
    ensure!(
        tokens
            .iter()
            .any(|token| token.address.eq_ignore_ascii_case(address) && token.has_refresh_token),
        "no stored token for {address}"
    );
    Ok(Done::new(format!(
        "loopback PKCE (S256) sign-in as {address}, approved by the sandbox; id_token checked; token stored encrypted with a refresh token"
    )))
}

fn attachment_bytes() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n% mailroom demo order confirmation\n".to_vec();
    bytes.extend((0..48_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    bytes
}

fn draft(subject: &str, text: &str, attachment: Option<Attachment>) -> MessageDraft {
    MessageDraft {
        to: vec![CUSTOMER.to_owned()],
        subject: subject.to_owned(),
        text: Some(text.to_owned()),
        attachments: attachment.into_iter().collect(),
        ..MessageDraft::default()
    }
}

/// The stored message of a receipt, checked against what was sent: headers, text, and
/// each attachment's decoded bytes.
fn verify_stored(
    sandbox: &Sandbox,
    receipt: &Receipt,
    via: &[ReceivedBy],
    subject: &str,
    text: &str,
    attachment: Option<(&str, &[u8])>,
) -> Result<StoredMessage> {
    let stored = sandbox
        .mailbox()
        .find_by_message_id(&receipt.message_id)
        .with_context(|| format!("the sandbox holds no message {}", receipt.message_id))?;
    ensure!(
        via.contains(&stored.received_by),
        "it arrived by {:?}",
        stored.received_by
    );
    ensure!(
        stored
            .authenticated_as
            .eq_ignore_ascii_case(&receipt.account_user),
        "it was authenticated as {}, not {}",
        stored.authenticated_as,
        receipt.account_user
    );
    let bytes = std::fs::read(&stored.path)
        .with_context(|| format!("cannot read {}", stored.path.display()))?;
    ensure!(bytes.len() == stored.size, "the .eml file changed size");
    let parsed = mailparse::parse_mail(&bytes).context("the stored message does not parse")?;
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
    };
    ensure!(
        header("subject").as_deref() == Some(subject),
        "its subject is {:?}",
        header("subject")
    );
    ensure!(
        header("from").is_some_and(|from| from.contains(&receipt.account_user)),
        "its From is {:?}",
        header("from")
    );
    let mut text_found = false;
    let mut attachment_found = attachment.is_none();
    for part in parsed.parts() {
        let disposition = part.get_content_disposition();
        if let Some((name, content)) = attachment {
            if disposition.params.get("filename").map(String::as_str) == Some(name) {
                ensure!(
                    part.get_body_raw()? == content,
                    "the attachment {name} differs from what was sent"
                );
                attachment_found = true;
                continue;
            }
        }
        if part.ctype.mimetype == "text/plain" && part.get_body()?.trim_end() == text.trim_end() {
            text_found = true;
        }
    }
    ensure!(text_found, "its text part differs from what was sent");
    ensure!(attachment_found, "its attachment is missing");
    Ok(stored)
}

async fn open_mailroom(demo: &Demo) -> Result<Arc<Mailroom>> {
    // A new facade has an empty token cache: it reads the tokens from the database.
    Ok(Arc::new(
        Mailroom::with_connection(demo.context.db.clone(), demo.options.clone()).await?,
    ))
}

pub(super) async fn send_smtp(demo: &mut Demo) -> Result<Done> {
    let mailroom = open_mailroom(demo).await?;
    let subject = "Order confirmation SO-10234";
    let text = "Thank you for your order. The confirmation is attached.";
    let content = attachment_bytes();
    let mut request = SendRequest::new(
        SALES_DOCUMENT,
        draft(
            subject,
            text,
            Some(Attachment::new("SO-10234.pdf", content.clone())),
        ),
    );
    request.system_user = Some(SYSTEM_USER.to_owned());
    let receipt = mailroom.send(request).await?;
    ensure!(
        receipt.transport == TransportKind::Smtp,
        "it went by {}",
        receipt.transport
    );
    let stored = verify_stored(
        &demo.sandbox,
        &receipt,
        &[ReceivedBy::SmtpStartTls],
        subject,
        text,
        Some(("SO-10234.pdf", &content)),
    )?;
    Ok(Done::new(format!(
        "sales-document for `sa` -> user account {}; SMTP STARTTLS + XOAUTH2; {} with a {}-byte PDF; .eml matches (headers, text, attachment bytes)",
        receipt.account_user,
        receipt.message_id,
        content.len()
    ))
    .with_files([stored.path]))
}

pub(super) async fn send_gmail(demo: &mut Demo) -> Result<Done> {
    let mailroom = open_mailroom(demo).await?;
    let subject = "Shipping notice SO-10234";
    let text = "Your order has shipped.";
    let mut request = SendRequest::new(SALES_DOCUMENT, draft(subject, text, None));
    request.account = Some(AccountRef::Company);
    let receipt = mailroom.send(request).await?;
    ensure!(
        receipt.transport == TransportKind::GmailApi,
        "it went by {}",
        receipt.transport
    );
    let stored = verify_stored(
        &demo.sandbox,
        &receipt,
        &[ReceivedBy::GmailMedia, ReceivedBy::GmailResumable],
        subject,
        text,
        None,
    )?;
    ensure!(
        receipt.provider_message_id == stored.gmail_id,
        "the receipt's Gmail id differs from the sandbox's"
    );
    Ok(Done::new(format!(
        "company account {}; Gmail API media upload (message/rfc822) with a bearer token; Gmail id {}; .eml matches",
        receipt.account_user,
        receipt.provider_message_id.unwrap_or_default()
    ))
    .with_files([stored.path]))
}

/// A short-lived token (under the broker's 5-minute skew) is refreshed on its next use,
/// and Microsoft rotates the refresh token each time.
pub(super) async fn refresh(demo: &mut Demo) -> Result<Done> {
    let user_id = demo.user_account.context("no user account")?;
    let account = Accounts::new(&demo.context.db, &demo.context.key)
        .account(AccountRef::User(user_id))
        .await?;
    let target = token_target(&account);
    let authority = demo.sandbox.authority();
    let before = authority.stats();
    let version_before = token_version(demo, USER_ADDRESS).await?;

    authority.set_access_token_lifetime(Duration::from_secs(60));
    let short = broker(&demo.context).force_refresh(&target).await?;
    authority.set_access_token_lifetime(Duration::from_secs(3600));
    let seconds_left = (short.expires_at - chrono::Utc::now()).num_seconds();
    ensure!(
        seconds_left <= 60,
        "the refreshed token lives {seconds_left} s"
    );

    // The next send finds the token about to expire and refreshes it first.
    let mailroom = open_mailroom(demo).await?;
    let subject = "Order change SO-10234";
    let text = "Your order was changed.";
    let mut request = SendRequest::new(SALES_DOCUMENT, draft(subject, text, None));
    request.system_user = Some(SYSTEM_USER.to_owned());
    let receipt = mailroom.send(request).await?;
    let stored = verify_stored(
        &demo.sandbox,
        &receipt,
        &[ReceivedBy::SmtpStartTls],
        subject,
        text,
        None,
    )?;
    let after = authority.stats();
    let version_after = token_version(demo, USER_ADDRESS).await?;
    ensure!(
        after.refreshes == before.refreshes + 2,
        "the sandbox saw {} refreshes, expected 2",
        after.refreshes - before.refreshes
    );
    ensure!(
        after.refresh_tokens_rotated == before.refresh_tokens_rotated + 2,
        "the refresh token was not rotated on each refresh"
    );
    ensure!(
        version_after == version_before + 2,
        "the stored token's version went from {version_before} to {version_after}, expected two refreshes"
    );
    Ok(Done::new(format!(
        "a 60 s token (inside the 5 min skew) was refreshed before the next send; 2 refreshes, refresh token rotated each time (stored version {version_before} -> {version_after}); the send after it verified"
    ))
    .with_files([stored.path]))
}

async fn token_version(demo: &Demo, address: &str) -> Result<i64> {
    TokenStore::new(&demo.context.db, &demo.context.key)
        .list()
        .await?
        .into_iter()
        .find(|token| token.address.eq_ignore_ascii_case(address))
        .map(|token| token.version)
        .with_context(|| format!("no stored token for {address}"))
}

/// 20 queued messages (10 per account), drained by one agent run; each stored `.eml` is
/// byte for byte what the outbox holds.
pub(super) async fn queue_and_drain(demo: &mut Demo) -> Result<Done> {
    let mailroom = open_mailroom(demo).await?;
    let mut ids = Vec::new();
    for index in 0..QUEUED_PER_ACCOUNT * 2 {
        let (feature, user) = if index % 2 == 0 {
            (SALES_DOCUMENT, Some(SYSTEM_USER.to_owned()))
        } else {
            (AUTOMATION_AGENT, None)
        };
        let mut request = SendRequest::new(
            feature,
            draft(
                &format!("Invoice {} (queued)", 5000 + index),
                &format!("Invoice {} is attached to your account.", 5000 + index),
                None,
            ),
        );
        request.system_user = user;
        ids.push(mailroom.queue(request).await?);
    }
    let summary = Agent::new(
        mailroom.clone(),
        AgentOptions {
            once: true,
            concurrency: 4,
            ..AgentOptions::default()
        },
    )
    .run(std::future::pending())
    .await?;
    ensure!(
        summary.sent == ids.len() as u64,
        "the agent sent {} of {} (retrying {}, held {}, failed {})",
        summary.sent,
        ids.len(),
        summary.retrying,
        summary.held,
        summary.failed
    );
    let outbox = mailroom.outbox();
    let (mut smtp, mut gmail) = (0, 0);
    for id in &ids {
        let queued = outbox.get(*id).await?;
        ensure!(
            queued.status == OutboxStatus::Sent,
            "message {id} is {:?}",
            queued.status
        );
        let stored = demo
            .sandbox
            .mailbox()
            .find_by_message_id(&queued.message_id)
            .with_context(|| format!("the sandbox holds no message {}", queued.message_id))?;
        let sent = outbox.bytes(*id).await?;
        let received = std::fs::read(&stored.path)?;
        ensure!(
            received == sent.as_ref(),
            "the .eml of queued message {id} differs from the queued bytes"
        );
        if stored.received_by.is_gmail() {
            gmail += 1;
        } else {
            smtp += 1;
        }
    }
    ensure!(
        smtp == QUEUED_PER_ACCOUNT && gmail == QUEUED_PER_ACCOUNT,
        "{smtp} went by SMTP and {gmail} by Gmail"
    );
    Ok(Done::new(format!(
        "{} queued ({smtp} for `sa` -> SMTP, {gmail} automation-agent -> Gmail); one agent run sent all; every .eml equals the queued bytes",
        ids.len()
    )))
}

/// A prompt that records whether it was asked; the demo must never be asked.
#[derive(Debug, Default)]
struct RecordingPrompt {
    asked: Mutex<bool>,
}

#[async_trait::async_trait]
impl SignInPrompt for RecordingPrompt {
    async fn sign_in(
        &self,
        _request: &SignInRequest,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        *self.asked.lock().expect("prompt lock") = true;
        Err("the demo does not sign in interactively".into())
    }
}

/// With `can-sign-in-when-sending` off and the grant revoked at the provider, a send fails
/// with `Failed to obtain an access token`, asks no one and sends nothing.
pub(super) async fn sign_in_disabled(demo: &mut Demo) -> Result<Done> {
    Accounts::new(&demo.context.db, &demo.context.key)
        .set_can_sign_in_when_sending(false)
        .await?;
    let authority = demo.sandbox.authority();
    let revoked = authority.revoke_refresh_tokens_of(COMPANY_ADDRESS)
        + authority.revoke_access_tokens_of(COMPANY_ADDRESS);
    ensure!(revoked > 0, "the sandbox had no token of {COMPANY_ADDRESS}");
    let received_before = demo.sandbox.mailbox().messages().len();
    let mailroom = open_mailroom(demo).await?;
    let prompt = RecordingPrompt::default();
    let mut first_error = None;
    // The first send meets the revoked token (401, one refresh: invalid_grant); the second
    // finds no usable token at all. Both must fail the same way.
    for _ in 0..2 {
        let mut request = SendRequest::new(
            SALES_DOCUMENT,
            draft("Never sent", "This message must not arrive.", None),
        );
        request.account = Some(AccountRef::Company);
        request.sign_in = Some(&prompt);
        let error = match mailroom.send(request).await {
            Ok(receipt) => return Err(anyhow!("the send succeeded: {}", receipt.message_id)),
            Err(error) => error,
        };
        let text = error.to_string();
        ensure!(
            text.starts_with(&format!(
                "Failed to obtain an access token for {COMPANY_ADDRESS} (google)"
            )),
            "the send failed otherwise: {text}"
        );
        ensure!(
            error.needs_sign_in(),
            "the error does not ask for a sign-in"
        );
        first_error.get_or_insert(text);
    }
    ensure!(
        !*prompt.asked.lock().expect("prompt lock"),
        "a sign-in was attempted although the setting forbids it"
    );
    ensure!(
        demo.sandbox.mailbox().messages().len() == received_before,
        "a message arrived"
    );
    let error = first_error.unwrap_or_default();
    Ok(Done::new(format!(
        "can-sign-in-when-sending=false, grant revoked at the provider: \"{}\"; no prompt, nothing sent",
        error.split(';').next().unwrap_or(&error)
    )))
}

/// The company mailbox every user sends from in Microsoft 365.
const SHARED_MAILBOX: &str = "orders@contoso.example";

/// The company account becomes an Exchange shared mailbox (orders@): no one signs in as
/// it; a person with rights on it (sa, whose id_token's `preferred_username` is not even
/// an address) signs in for it, and mail goes out as the mailbox — XOAUTH2 `user=` and
/// From are orders@, the token is sa's. The sign-in is sa's one stored token, shared with
/// sa's own account, because tokens are keyed by the person's `oid` + `tid`.
pub(super) async fn shared_mailbox(demo: &mut Demo) -> Result<Done> {
    let endpoints = demo.sandbox.endpoints().clone();
    let authority = demo.sandbox.authority();
    authority.grant_send_as(SHARED_MAILBOX, USER_ADDRESS);
    authority.set_username(USER_ADDRESS, "+1 555 0100");
    // A shared mailbox's sign-in names no one to the provider: the delegate chooses.
    authority.set_default_address(Some(USER_ADDRESS.to_owned()));
    let tokens_before = TokenStore::new(&demo.context.db, &demo.context.key)
        .list()
        .await?
        .len();
    Accounts::new(&demo.context.db, &demo.context.key)
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::Microsoft),
                host: Some(endpoints.smtp_host.clone()),
                port: Some(endpoints.smtp_starttls_port),
                tls: Some(true),
                tls_startup: Some(TlsStartup::StartTls),
                smtp_user: Some(SHARED_MAILBOX.to_owned()),
                shared_mailbox: Some(true),
                ..Default::default()
            },
            None,
        )
        .await?;
    let (signed_in_as, _, url) = browser_sign_in(demo, AccountRef::Company).await?;
    ensure!(
        !url.query_pairs().any(|(name, _)| name == "login_hint"),
        "a shared mailbox's sign-in suggested whom to sign in as: {url}"
    );
    ensure!(
        signed_in_as.eq_ignore_ascii_case(USER_ADDRESS),
        "the delegate signed in as {signed_in_as}, expected {USER_ADDRESS}"
    );
    let accounts = Accounts::new(&demo.context.db, &demo.context.key);
    let company = accounts.account(AccountRef::Company).await?;
    let user = accounts
        .account(AccountRef::User(
            demo.user_account.context("no user account")?,
        ))
        .await?;
    ensure!(
        company.server().smtp_user == SHARED_MAILBOX,
        "the sign-in changed the mailbox to {}",
        company.server().smtp_user
    );
    ensure!(
        company.server().token_identity.is_some()
            && company.server().token_identity == user.server().token_identity,
        "the shared mailbox does not send with sa's sign-in ({:?} vs {:?})",
        company.server().token_identity,
        user.server().token_identity
    );
    let tokens_after = TokenStore::new(&demo.context.db, &demo.context.key)
        .list()
        .await?
        .len();
    ensure!(
        tokens_after == tokens_before,
        "the delegate's sign-in stored a second token ({tokens_before} -> {tokens_after})"
    );
    let mailroom = open_mailroom(demo).await?;
    let subject = "Statement of account, November";
    let text = "Your statement is attached.";
    let request = SendRequest::new(AUTOMATION_AGENT, draft(subject, text, None));
    let receipt = mailroom.send(request).await?;
    ensure!(
        receipt.transport == TransportKind::Smtp && receipt.account_user == SHARED_MAILBOX,
        "it went by {} as {}",
        receipt.transport,
        receipt.account_user
    );
    let stored = verify_stored(
        &demo.sandbox,
        &receipt,
        &[ReceivedBy::SmtpStartTls],
        subject,
        text,
        None,
    )?;
    Ok(Done::new(format!(
        "company account {SHARED_MAILBOX} marked a shared mailbox; {USER_ADDRESS} (preferred_username \"+1 555 0100\") signed in for it; XOAUTH2 user={SHARED_MAILBOX} with {USER_ADDRESS}'s token, the same stored token as {USER_ADDRESS}'s own account ({tokens_after} tokens); From {SHARED_MAILBOX}; .eml matches"
    ))
    .with_files([stored.path]))
}

/// Bytes that do not compress (a scanned document, say), `size` of them.
fn incompressible_bytes(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n% mailroom demo scanned delivery note\n".to_vec();
    let header = bytes.len();
    bytes.extend(
        (0..size.saturating_sub(header) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).rotate_left(7) >> 11) as u8),
    );
    bytes
}

/// The Graph scope of a permission, as the global cloud writes it.
fn graph_scope(permission: &str) -> String {
    format!("https://graph.microsoft.com/{permission}")
}

/// The user account (sa@, signed in for SMTP earlier) moves to the Microsoft Graph route
/// with large attachments, keeping its sign-in. Its first send meets the truth: the
/// sign-in consented to Outlook's SMTP.Send only, so Entra refuses a Graph token
/// (`AADSTS65001`) and the send asks for a sign-in that grants Mail.Send, sending
/// nothing. The sign-in again asks Graph's scopes (one resource), then a small message
/// goes by `sendMail` (MIME) and a 5 MiB one by a draft and an upload session. The company
/// account, the shared mailbox on SMTP that sends with the same person's sign-in, still
/// sends afterwards.
pub(super) async fn graph_route(demo: &mut Demo) -> Result<Done> {
    let user_id = demo.user_account.context("no user account")?;
    let account = AccountRef::User(user_id);
    let accounts = Accounts::new(&demo.context.db, &demo.context.key);
    let before = accounts.account(account).await?;
    let saved = accounts
        .edit_user_account(
            user_id,
            &ServerSettingsChange {
                route: Some(Route::Graph),
                large_attachments: Some(true),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await?;
    ensure!(
        saved.account.server.route == Route::Graph && saved.account.server.large_attachments,
        "the account is on route {} (large attachments {})",
        saved.account.server.route,
        saved.account.server.large_attachments
    );
    ensure!(
        saved.account.server.token_identity.is_some()
            && saved.account.server.token_identity == before.server().token_identity,
        "the route change dropped the account's sign-in"
    );

    // 1. The sign-in it has did not consent to Graph's Mail.Send: no token, nothing sent.
    let authority = demo.sandbox.authority();
    let stats_before = authority.stats();
    let received_before = demo.sandbox.mailbox().messages().len();
    let mailroom = open_mailroom(demo).await?;
    let mut request = SendRequest::new(
        SALES_DOCUMENT,
        draft(
            "Order confirmation SO-10240",
            "Thank you for your order.",
            None,
        ),
    );
    request.system_user = Some(SYSTEM_USER.to_owned());
    let error = match mailroom.send(request).await {
        Ok(receipt) => {
            return Err(anyhow!(
                "the send succeeded with the SMTP sign-in: {}",
                receipt.message_id
            ));
        }
        Err(error) => error,
    };
    let refused = error.to_string();
    ensure!(
        error.needs_sign_in(),
        "the error does not ask for a sign-in: {refused}"
    );
    ensure!(
        matches!(
            error.remedy(),
            Some(Remedy::GrantScope { account: Some(named), ref scope })
                if named == account && scope == "Mail.Send"
        ),
        "the remedy is {:?}, not granting Mail.Send to the {account}: {refused}",
        error.remedy()
    );
    ensure!(
        refused.contains("sign in again to grant Mail.Send"),
        "the error does not say to sign in again for Mail.Send: {refused}"
    );
    ensure!(
        authority.stats().refreshes_refused == stats_before.refreshes_refused + 1,
        "the sandbox refused no Graph refresh"
    );
    ensure!(
        demo.sandbox.mailbox().messages().len() == received_before,
        "a message arrived"
    );

    // 2. Signing in again asks Graph's permissions, and Graph's only (one resource).
    let (signed_in_as, page, url) = browser_sign_in(demo, account).await?;
    ensure!(
        signed_in_as.eq_ignore_ascii_case(USER_ADDRESS),
        "signed in as {signed_in_as}, expected {USER_ADDRESS}"
    );
    ensure!(
        page.contains(&format!("Signed in as {USER_ADDRESS}")),
        "the loopback listener did not confirm the sign-in: {page}"
    );
    let scope = url
        .query_pairs()
        .find(|(name, _)| name == "scope")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    ensure!(
        scopes.contains(&graph_scope("Mail.Send").as_str())
            && scopes.contains(&graph_scope("Mail.ReadWrite").as_str())
            && !scopes.iter().any(|scope| scope.ends_with("/SMTP.Send")),
        "the sign-in asked {scope:?}"
    );

    // 3. A small message: one sendMail request with the MIME bytes.
    let mailroom = open_mailroom(demo).await?;
    let subject = "Order confirmation SO-10240";
    let text = "Thank you for your order.";
    let mut request = SendRequest::new(SALES_DOCUMENT, draft(subject, text, None));
    request.system_user = Some(SYSTEM_USER.to_owned());
    let small = mailroom.send(request).await?;
    ensure!(
        small.transport == TransportKind::GraphApi,
        "it went by {}",
        small.transport
    );
    let small_stored = verify_stored(
        &demo.sandbox,
        &small,
        &[ReceivedBy::GraphMime],
        subject,
        text,
        None,
    )?;
    ensure!(
        small.provider_message_id.is_some()
            && small.provider_message_id == small_stored.graph_request_id,
        "the receipt's id {:?} is not Graph's request-id {:?}",
        small.provider_message_id,
        small_stored.graph_request_id
    );

    // 4. Over Graph's 4 MB request once base64'd: a draft, the attachment through an
    // upload session in chunks of at most 4 MiB, then send.
    let chunks_before = demo.sandbox.graph().upload_chunk_count();
    let subject = "Delivery note SO-10240 (scanned)";
    let text = "The signed delivery note is attached.";
    let content = incompressible_bytes(5 * 1024 * 1024);
    let mut request = SendRequest::new(
        SALES_DOCUMENT,
        draft(
            subject,
            text,
            Some(Attachment::new("SO-10240-delivery.pdf", content.clone())),
        ),
    );
    request.system_user = Some(SYSTEM_USER.to_owned());
    let large = mailroom.send(request).await?;
    ensure!(
        large.transport == TransportKind::GraphApi,
        "it went by {}",
        large.transport
    );
    let large_stored = verify_stored(
        &demo.sandbox,
        &large,
        &[ReceivedBy::GraphDraft],
        subject,
        text,
        Some(("SO-10240-delivery.pdf", &content)),
    )?;
    let chunks = demo.sandbox.graph().upload_chunk_count() - chunks_before;
    ensure!(
        chunks >= 2,
        "the attachment went in {chunks} upload chunks, expected at least 2 of 4 MiB"
    );
    ensure!(
        demo.sandbox.graph().draft_count() == 0,
        "a draft was left behind"
    );

    // 5. The company account (the shared mailbox, SMTP) sends with the same person's
    // sign-in: the new sign-in did not take its Outlook permission away.
    let subject = "Statement of account, December";
    let text = "Your statement is attached.";
    let request = SendRequest::new(AUTOMATION_AGENT, draft(subject, text, None));
    let company = mailroom.send(request).await?;
    ensure!(
        company.transport == TransportKind::Smtp && company.account_user == SHARED_MAILBOX,
        "the company account sent by {} as {}",
        company.transport,
        company.account_user
    );
    let company_stored = verify_stored(
        &demo.sandbox,
        &company,
        &[ReceivedBy::SmtpStartTls],
        subject,
        text,
        None,
    )?;

    let reason = refused
        .split_once(": ")
        .map_or(refused.as_str(), |(_, reason)| reason);
    let reason = reason.split(" (").next().unwrap_or(reason);
    Ok(Done::new(format!(
        "route graph + large attachments, sign-in kept; Mail.Send missing at first, nothing sent: \"{reason}\"; signed in again asking Graph's Mail.Send + Mail.ReadWrite (no SMTP.Send); sendMail (MIME) {} (request-id {}); a {:.1} MB attachment ({:.1} MB message) via draft + upload session ({chunks} chunks), attachment bytes match; the shared mailbox {SHARED_MAILBOX} still sends over SMTP with the same sign-in",
        small.message_id,
        small.provider_message_id.as_deref().unwrap_or_default(),
        content.len() as f64 / 1_000_000.0,
        large_stored.size as f64 / 1_000_000.0
    ))
    .with_files([small_stored.path, large_stored.path, company_stored.path]))
}
