//! The retry policy, in one place: how often and how long a send is retried after a
//! transient failure (exponential backoff with jitter, `Retry-After` honoured), and how
//! the outbox reschedules a message the policy gave up on; and the loop that follows it.

use std::time::{Duration, Instant};

use mailroom_model::{
    Auth, OutgoingMessage, Provider, Remedy, Route, SignInPrompt, TransportError,
    TransportErrorKind, TransportKind,
};
use mailroom_tokens::TokenTarget;
use mailroom_tokens::registration::Apps;

use crate::facade::{Prepared, oauth_credentials};
use crate::message::with_bcc;
use crate::{Error, Mailroom, Receipt, Result};

/// How transient failures are retried. An authentication rejection is not counted here:
/// it refreshes the token once and retries once; a permanent failure is never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most times one send hands the message to the transport (the first try
    /// included), at least 1.
    pub max_attempts: u32,
    /// No new attempt starts after this much time since the first one.
    pub max_elapsed: Duration,
    /// The wait before the second attempt; it doubles for each further one.
    pub base_delay: Duration,
    /// The longest wait between two attempts. A server's `Retry-After` longer than this
    /// (or than the time left) ends the send as transient, and the outbox waits instead.
    pub max_delay: Duration,
    /// How many times the outbox retries a message that keeps failing transiently (each
    /// time a whole send with the attempts above) before it marks it failed.
    pub outbox_max_attempts: u32,
    /// The outbox's first wait before it retries such a message; doubled each time, at
    /// most an hour.
    pub outbox_base_delay: Duration,
    /// When a send's outcome is unknown (`DeliveryUnknown`: the server took the whole
    /// message but its final reply never came), the outbox tries the message once more
    /// after this wait, and never again; a duplicate with the same Message-ID is then
    /// possible. A send outside the outbox is never retried on that error.
    pub outbox_delivery_unknown_delay: Duration,
}

/// The start of an outbox message's `last_error` once its delivery was unknown: the mark
/// that it was (or is about to be) tried once more, and must not be again.
pub const DELIVERY_UNKNOWN_MARK: &str = "delivery unknown:";

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(120),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            outbox_max_attempts: 10,
            outbox_base_delay: Duration::from_secs(30),
            outbox_delivery_unknown_delay: Duration::from_secs(15 * 60),
        }
    }
}

const OUTBOX_MAX_DELAY: Duration = Duration::from_secs(3600);

/// `base * 2^(attempt-1)`, saturating, at most `cap`.
fn exponential(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    base.saturating_mul(factor).min(cap)
}

/// A random wait in `[delay/2, delay]` ("equal jitter"): senders that failed together do
/// not retry together, and the wait never collapses to zero.
fn jitter(delay: Duration) -> Duration {
    jitter_with(delay, rand::random())
}

/// [`jitter`] with the random number `random` (any `u64`).
fn jitter_with(delay: Duration, random: u64) -> Duration {
    let half = delay / 2;
    let spread = delay.saturating_sub(half).as_nanos() as u64;
    if spread == 0 {
        return delay;
    }
    half + Duration::from_nanos(random % (spread + 1))
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after attempt `attempt` failed transiently,
    /// or `None` when the policy gives up (attempts or time used up, or a `Retry-After`
    /// longer than allowed).
    pub fn delay_after(
        &self,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let backoff = jitter(exponential(self.base_delay, attempt, self.max_delay));
        let wait = match retry_after {
            Some(asked) if asked > self.max_delay => return None,
            Some(asked) => asked.max(backoff),
            None => backoff,
        };
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }

    /// When the outbox tries a message again after its `attempts`-th claim failed
    /// transiently, or `None` when it should be marked failed.
    pub fn outbox_delay(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempts >= self.outbox_max_attempts.max(1) {
            return None;
        }
        let backoff = jitter(exponential(
            self.outbox_base_delay,
            attempts,
            OUTBOX_MAX_DELAY,
        ));
        Some(retry_after.map_or(backoff, |asked| asked.max(backoff)))
    }
}

/// The retry loop that follows [`RetryPolicy`]: the only one in mailroom.
impl Mailroom {
    /// Sends a prepared message with the retry policy. A `queued` message (the agent's) is
    /// not retried within the send when the provider throttles its mailbox: the agent
    /// pauses the whole mailbox instead of waiting here.
    pub(crate) async fn deliver(
        &self,
        prepared: &Prepared,
        prompt: Option<&dyn SignInPrompt>,
        queued: bool,
    ) -> Result<Receipt> {
        let account = &prepared.account;
        let server = account.server();
        let account_ref = account.account_ref();
        let transport = self.transport_for(account).await?;
        let kind = transport.kind();
        let message = OutgoingMessage {
            envelope: prepared.envelope.clone(),
            bytes: match kind {
                // The Gmail and Graph APIs take their recipients from the headers.
                TransportKind::GmailApi | TransportKind::GraphApi => {
                    with_bcc(&prepared.bytes, prepared.bcc_header.as_deref())
                }
                TransportKind::Smtp => prepared.bytes.clone(),
            },
            message_id: Some(prepared.message_id.clone()),
        };
        let target = TokenTarget::of_account(account_ref, server);
        let mut credentials = self.credentials(account, &target, prompt).await?;
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut transient_failures = 0u32;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let error = match transport.send(&message, &credentials).await {
                Ok(delivery) => {
                    tracing::info!(
                        account = %account_ref,
                        transport = %kind,
                        message_id = %prepared.message_id,
                        attempts,
                        "message sent"
                    );
                    return Ok(Receipt {
                        account: account_ref,
                        account_user: server.smtp_user.clone(),
                        reason: prepared.reason.clone(),
                        transport: kind,
                        message_id: prepared.message_id.clone(),
                        provider_message_id: delivery.provider_message_id,
                        reply: delivery.reply,
                        attempts,
                    });
                }
                Err(error) => error,
            };
            tracing::warn!(
                account = %account_ref,
                transport = %kind,
                message_id = %prepared.message_id,
                attempt = attempts,
                kind = ?error.kind(),
                error = %error,
                "send attempt failed"
            );
            if error.is_auth_rejected() && server.provider.uses_oauth() && !refreshed {
                // One refresh and one retry: a token revoked or expired early.
                refreshed = true;
                let token = self
                    .broker()
                    .refresh_rejected(&target, credentials.version)
                    .await?;
                credentials = oauth_credentials(&server.smtp_user, token);
                continue;
            }
            if error.is_transient() && !(queued && error.is_throttled()) {
                transient_failures += 1;
                if let Some(wait) = self.options().retry.delay_after(
                    transient_failures,
                    started.elapsed(),
                    error.retry_after(),
                ) {
                    tracing::info!(
                        message_id = %prepared.message_id,
                        wait_ms = wait.as_millis() as u64,
                        "retrying after a transient failure"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let error = error.for_account(account_ref);
            let error = if server.auth == Auth::AppOnly {
                self.app_only_refusal(error, server).await
            } else {
                error
            };
            return Err(Error::Transport { attempts, error });
        }
    }

    /// An app-only account's token was fine but the mailbox refused it: Graph's `403
    /// ErrorAccessDenied` (the app's RBAC for Applications scope leaves the mailbox out),
    /// or SMTP's `535 5.7.3` after a fresh token (no `FullAccess` for the app's Exchange
    /// service principal, or no `SMTP.SendAsApp` consent). No sign-in can fix either: the
    /// remedy is the Exchange administrator's, naming the app and the mailbox, and the
    /// error is one an administrator fixes (the agent holds the message until then).
    async fn app_only_refusal(
        &self,
        error: mailroom_model::TransportError,
        server: &mailroom_model::ServerSettings,
    ) -> mailroom_model::TransportError {
        if server.provider != Provider::Microsoft
            || !matches!(
                error.kind(),
                TransportErrorKind::SignInRequired | TransportErrorKind::AuthenticationRejected
            )
        {
            return error;
        }
        let client_id = Apps::new(&self.db, &self.options.key)
            .get(Provider::Microsoft)
            .await
            .ok()
            .flatten()
            .map(|app| app.client_id);
        let remediation = match server.route {
            Route::Graph => format!(
                "the app's own token was accepted, but the app may not send as {}: an Exchange administrator adds the mailbox to the management scope of the app's \"Application Mail.Send\" role assignment (RBAC for Applications)",
                server.smtp_user
            ),
            Route::Smtp => format!(
                "the app's own token was refused for {}: the app needs the SMTP.SendAsApp application permission with admin consent, its service principal registered in Exchange Online, and FullAccess on the mailbox",
                server.smtp_user
            ),
        };
        let mut refusal = TransportError::new(
            TransportErrorKind::SignInRequired,
            error.message().to_owned(),
        )
        .with_remediation(remediation)
        .with_remedy(Remedy::GrantAppMailboxAccess {
            client_id,
            mailbox: Some(server.smtp_user.clone()),
            route: server.route,
        });
        if let Some(reply) = error.server_reply() {
            refusal = refusal.with_server_reply(reply.to_owned());
        }
        refusal.with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        }
    }

    #[track_caller]
    fn check(attempt: u32, elapsed: u64, retry_after: Option<u64>, expected: Option<(u64, u64)>) {
        let delay = policy().delay_after(
            attempt,
            Duration::from_secs(elapsed),
            retry_after.map(Duration::from_secs),
        );
        match (delay, expected) {
            (None, None) => {}
            (Some(delay), Some((low, high))) => assert!(
                delay >= Duration::from_secs(low) && delay <= Duration::from_secs(high),
                "attempt {attempt}: {delay:?} not in {low}..={high} s"
            ),
            (delay, expected) => panic!("attempt {attempt}: {delay:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_bounds() {
        check(1, 0, None, Some((0, 1)));
        check(2, 0, None, Some((1, 2)));
        check(3, 0, None, Some((2, 4)));
        // The fourth attempt was the last.
        check(4, 0, None, None);
        // Out of time.
        check(2, 59, None, None);
        // Retry-After is honoured when longer than the backoff ...
        check(1, 0, Some(7), Some((7, 7)));
        // ... up to the longest wait allowed (10 s), and ends the send when longer.
        check(1, 0, Some(10), Some((10, 10)));
        check(1, 0, Some(11), None);
        let capped = RetryPolicy {
            max_attempts: 40,
            ..policy()
        };
        let long = capped.delay_after(30, Duration::ZERO, None).unwrap();
        assert!(long <= Duration::from_secs(10), "{long:?}");
    }

    #[test]
    fn the_jitter_spans_half_the_delay_to_all_of_it() {
        let delay = Duration::from_secs(10);
        let spread = 5_000_000_000u64;
        assert_eq!(jitter_with(delay, 0), Duration::from_secs(5));
        assert_eq!(jitter_with(delay, spread), delay);
        assert_eq!(jitter_with(delay, spread + 1), Duration::from_secs(5));
        assert_eq!(
            jitter_with(delay, 1_234_567_890),
            Duration::from_nanos(6_234_567_890)
        );
        for random in [u64::MAX, u64::MAX / 3, 7] {
            let wait = jitter_with(delay, random);
            assert!(wait >= Duration::from_secs(5) && wait <= delay, "{wait:?}");
        }
        // Too short to spread: the delay itself (1 ns halves to 0 and spreads 1 ns).
        assert_eq!(jitter_with(Duration::ZERO, 12345), Duration::ZERO);
        assert_eq!(jitter_with(Duration::from_nanos(1), 0), Duration::ZERO);
        assert_eq!(
            jitter_with(Duration::from_nanos(1), 1),
            Duration::from_nanos(1)
        );
    }

    #[test]
    fn an_unknown_delivery_waits_a_quarter_of_an_hour_by_default() {
        assert_eq!(
            RetryPolicy::default().outbox_delivery_unknown_delay,
            Duration::from_secs(15 * 60)
        );
    }

    #[test]
    fn the_outbox_gives_up_after_its_attempts() {
        let policy = RetryPolicy {
            outbox_max_attempts: 3,
            outbox_base_delay: Duration::from_secs(10),
            ..policy()
        };
        let first = policy.outbox_delay(1, None).unwrap();
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10));
        assert_eq!(
            policy.outbox_delay(2, Some(Duration::from_secs(600))),
            Some(Duration::from_secs(600))
        );
        assert_eq!(policy.outbox_delay(3, None), None);
    }
}
