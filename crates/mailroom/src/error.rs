//! The facade's error: every failure a send, the outbox or the agent can meet, with the
//! predicates callers decide on.

use std::time::Duration;

use mailroom_model::{AccountRef, Provider, Remedy, TransportError, ValidationError};

/// A send, queue or agent operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value was refused (an address, a header with a line break, a feature name).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The account could not be resolved or read.
    #[error(transparent)]
    Accounts(#[from] mailroom_accounts::Error),
    /// No access token could be obtained; for a sign-in that is needed and not allowed the
    /// message begins "Failed to obtain an access token".
    #[error(transparent)]
    Tokens(#[from] mailroom_tokens::Error),
    /// The transport refused the message or failed, after the retry policy gave up.
    #[error("{error}")]
    Transport {
        /// How many times the message was handed to the transport.
        attempts: u32,
        /// The last failure (its text is this error's text, so it is not repeated as a
        /// source; [`Error::transport_error`] returns it).
        error: TransportError,
    },
    /// The key ring lacks the key the database (or a value) is sealed with, a rotation
    /// cannot commit, or the key row could not be read.
    #[error(transparent)]
    Key(#[from] mailroom_crypto::Error),
    /// The SMTP transport could not be set up for the account.
    #[error(transparent)]
    SmtpSetup(#[from] mailroom_smtp::Error),
    /// The Gmail transport could not be set up.
    #[error(transparent)]
    GmailSetup(#[from] mailroom_gmail::Error),
    /// The Microsoft Graph transport could not be set up.
    #[error(transparent)]
    GraphSetup(#[from] mailroom_graph::Error),
    /// An attachment could not be read.
    #[error("cannot read the attachment {path}; check the path and its permissions")]
    Attachment {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was refused as an attachment before it was read (not a regular file, too
    /// large).
    #[error("cannot attach {path}: {problem}; attach a regular file small enough to send")]
    AttachmentRefused {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The formatted message is larger than the account's provider takes.
    #[error(
        "the message is {size} bytes once formatted, more than the provider takes ({limit}); send large files as links or split the message"
    )]
    TooLarge {
        /// The formatted size (attachments base64-encoded).
        size: u64,
        /// The provider's limit.
        limit: u64,
    },
    /// A message over what one Graph request carries, for an account on the Graph route
    /// without large attachments.
    #[error(
        "the message is {size} bytes once formatted; the {account} sends through Microsoft Graph, whose one request carries at most {limit} bytes, and sends larger messages only with its large attachments option (a draft with upload sessions, which needs the Mail.ReadWrite permission and a sign-in that grants it)"
    )]
    NeedsLargeAttachments {
        /// The account.
        account: AccountRef,
        /// The formatted size (attachments base64-encoded).
        size: u64,
        /// What one request carries.
        limit: u64,
    },
    /// A message that its account's daily limit can never take (more recipients, for
    /// Microsoft, than the mailbox sends in a day): no wait makes it fit.
    #[error("{}", crate::pace::over_daily_limit_text(*.units, *.unit, .mailbox, *.daily))]
    OverDailyLimit {
        /// The account.
        account: AccountRef,
        /// The mailbox (the lower-cased sending address).
        mailbox: String,
        /// What the message counts against the limit.
        units: u32,
        /// What the limit counts.
        unit: mailroom_model::DailyUnit,
        /// The daily limit.
        daily: u32,
    },
    /// A sign-in workflow (begin, complete, sign out) was asked for an app-only account:
    /// it sends with the app's own credentials (Microsoft client credentials, a Google
    /// service account), so no person ever signs in for it. Not a failure to fix: there
    /// is nothing to do.
    #[error(
        "the {} uses the {provider} app's own credentials (app-only) and never needs a sign-in: there is no sign-in to start, store or remove; the app's credentials are changed with its {provider} app registration",
        account.map_or_else(|| "new account".to_owned(), |account| account.to_string())
    )]
    SignInNotNeeded {
        /// The account (`None`: the account a sign-in would have created).
        account: Option<AccountRef>,
        /// Its provider.
        provider: Provider,
    },
    /// lettre could not build the message.
    #[error("cannot build the message: {0}")]
    Build(String),
    /// No queued message has this id.
    #[error("there is no queued message {id}; list the queue to find the right id")]
    NotQueued {
        /// The id asked for.
        id: i64,
    },
    /// The queued message is in a state that does not allow the change.
    #[error("queued message {id} is {status}; {what}")]
    WrongState {
        /// The message.
        id: i64,
        /// Its status.
        status: String,
        /// What can be done instead.
        what: &'static str,
    },
    /// A stored outbox row cannot be read.
    #[error("queued message {id} is unreadable: {problem}; cancel it")]
    CorruptRow {
        /// The message.
        id: i64,
        /// What is wrong.
        problem: String,
    },
    /// Queued or held messages use the account to be removed.
    #[error("account {account} is used by {} queued or held message(s): {}", messages.len(), messages.iter().map(|(id, subject)| format!("{id} \"{}\"", subject.as_deref().unwrap_or("(no subject)").escape_debug())).collect::<Vec<_>>().join(", "))]
    AccountInUse {
        /// The account.
        account: i64,
        /// The messages: id and subject (unknown for messages queued before subjects
        /// were stored).
        messages: Vec<(i64, Option<String>)>,
    },
    /// The status cannot be purged (only finished messages can).
    #[error("{status} messages cannot be purged; only sent, cancelled or failed ones")]
    NotPurgeable {
        /// The status asked for.
        status: String,
    },
    /// The agent was given a lease shorter than [`crate::MIN_LEASE`].
    #[error(
        "a lease of {lease:?} is too short; give a lease of at least {minimum:?} (it is renewed while a send is in flight, so a slow server needs no longer lease)"
    )]
    LeaseTooShort {
        /// The lease given.
        lease: Duration,
        /// The shortest lease allowed.
        minimum: Duration,
    },
    /// A send now would break the mailbox's limits (its messages a minute, its daily
    /// limit) or its provider's pause on it; a queued message waits for it instead.
    #[error(
        "{mailbox} cannot send now: {reason}; send again after {}, or queue the message (the agent sends it then without anyone acting)",
        until.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    MailboxLimit {
        /// The mailbox (the lower-cased sending address).
        mailbox: String,
        /// Which limit, or the provider's pause.
        reason: String,
        /// When it may send again.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The database failed.
    #[error("the database failed; check that it is reachable and migrated")]
    Database(#[source] Box<sea_orm::DbErr>),
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Database(Box::new(error))
    }
}

impl Error {
    /// True when trying again later may succeed (the agent reschedules these).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { error, .. } => error.is_transient(),
            Error::Tokens(error) => error.is_transient(),
            Error::Database(_) | Error::MailboxLimit { .. } => true,
            _ => false,
        }
    }

    /// True when the provider paused sending from the account's mailbox (Exchange's
    /// recipient quota, "sender throttled"): nothing is wrong with the message; the agent
    /// holds it until [`Error::retry_after`] has passed, without using up its attempts.
    pub fn is_mailbox_paused(&self) -> bool {
        matches!(self, Error::Transport { error, .. } if error.is_mailbox_paused())
    }

    /// True when the provider asked the mailbox to slow down: a pause (see
    /// [`Error::is_mailbox_paused`]) or a rate limit (Graph's 429, Gmail's
    /// `rateLimitExceeded`). The agent pauses the whole mailbox for the wait asked for, or
    /// a backoff, and holds the message meanwhile.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Error::Transport { error, .. } if error.is_throttled())
    }

    /// True when the server may have accepted the message although the send failed
    /// (`DeliveryUnknown`): it must not be sent again at once.
    pub fn is_delivery_unknown(&self) -> bool {
        matches!(self, Error::Transport { error, .. } if error.is_delivery_unknown())
    }

    /// True when only an administrator's sign-in can fix it (the agent holds these).
    pub fn needs_sign_in(&self) -> bool {
        match self {
            Error::Tokens(error) => error.needs_sign_in(),
            Error::Transport { error, .. } => error.needs_sign_in(),
            _ => false,
        }
    }

    /// True when the app's own credentials (an app-only account's) were refused or are
    /// missing: an administrator sets them right; no sign-in or retry can. The agent holds
    /// these messages, as it holds those waiting for a sign-in.
    pub fn needs_app_credential(&self) -> bool {
        matches!(self, Error::Tokens(error) if error.needs_app_credential())
    }

    /// True when a stored secret cannot be used with the key this process holds: the
    /// key is wrong, missing or was rotated after the process started, or a sealed value
    /// cannot be opened. Matched on the crypto error the account and token crates wrap
    /// (whichever variant), so new key problems are covered as they are added. Only an
    /// administrator fixes these (the right key, a restart after a rotation); the agent
    /// holds such messages instead of failing them.
    pub fn is_key_problem(&self) -> bool {
        self.key_problem().is_some()
    }

    /// The wait the server asked for, when it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Transport { error, .. } => error.retry_after(),
            _ => None,
        }
    }

    /// The action that fixes it, when there is one (a front end renders it: a command, a
    /// button, a link).
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Invalid(error) => error.remedy().cloned(),
            Error::Accounts(error) => error.remedy(),
            Error::Tokens(error) => error.remedy(),
            Error::Transport { error, .. } => error.remedy().cloned(),
            Error::Key(mailroom_crypto::Error::NoRotationPrepared) => {
                Some(Remedy::PrepareKeyRotation)
            }
            Error::Key(error) => error.missing_key().map(|id| Remedy::RestoreKey {
                key_id: id.to_owned(),
            }),
            Error::SmtpSetup(_)
            | Error::GmailSetup(_)
            | Error::GraphSetup(_)
            | Error::Attachment { .. }
            | Error::AttachmentRefused { .. }
            | Error::TooLarge { .. } => None,
            Error::NeedsLargeAttachments { account, .. }
            | Error::OverDailyLimit { account, .. } => Some(Remedy::EditAccount {
                account: Some(*account),
            }),
            Error::Build(_) | Error::SignInNotNeeded { .. } => None,
            Error::NotQueued { .. } => Some(Remedy::ListQueue),
            Error::WrongState { id, .. } => Some(Remedy::ShowQueued { id: *id }),
            Error::CorruptRow { id, .. } => Some(Remedy::CancelQueued { id: *id }),
            Error::Database(_) => Some(Remedy::CheckDatabase),
            Error::AccountInUse { account, messages } => Some(Remedy::RemoveAccountForce {
                account: *account,
                messages: messages.iter().map(|(id, _)| *id).collect(),
            }),
            Error::NotPurgeable { .. }
            | Error::LeaseTooShort { .. }
            | Error::MailboxLimit { .. } => None,
        }
    }

    /// The key problem behind it, wherever it surfaced (opening an account's password, a
    /// token, a client secret, or the database's key row): a host lacking the key, or a
    /// value that does not open. Such a message waits (held) for the key rather than
    /// failing: no retry can fix it, an administrator can.
    pub fn key_problem(&self) -> Option<&mailroom_crypto::Error> {
        match self {
            Error::Key(error)
            | Error::Accounts(mailroom_accounts::Error::Key(error))
            | Error::Tokens(mailroom_tokens::Error::Key(error)) => Some(error),
            _ => None,
        }
    }

    /// The transport's failure, when the transport failed.
    pub fn transport_error(&self) -> Option<&TransportError> {
        match self {
            Error::Transport { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use mailroom_model::TransportErrorKind;
    use mailroom_tokens::SignInReason;

    use super::*;

    fn transport(kind: TransportErrorKind) -> Error {
        Error::Transport {
            attempts: 1,
            error: TransportError::new(kind, "the server's reply"),
        }
    }

    fn sign_in_required() -> mailroom_tokens::Error {
        mailroom_tokens::Error::SignInRequired {
            address: "sa@contoso.example".to_owned(),
            provider: Provider::Microsoft,
            account: AccountRef::Company,
            reason: SignInReason::NoToken,
        }
    }

    /// What the agent decides on, for each kind of failure: `[transient, mailbox paused,
    /// throttled, delivery unknown, needs a sign-in, key problem]`.
    fn predicates(error: &Error) -> [bool; 6] {
        [
            error.is_transient(),
            error.is_mailbox_paused(),
            error.is_throttled(),
            error.is_delivery_unknown(),
            error.needs_sign_in(),
            error.is_key_problem(),
        ]
    }

    #[test]
    fn each_failure_answers_the_agents_questions_as_its_kind_says() {
        let missing_key = || mailroom_crypto::Error::MissingKey {
            id: "k2".to_owned(),
            have: vec!["k1".to_owned()],
        };
        let cases: Vec<(&str, Error, [bool; 6])> = vec![
            (
                "a transient reply",
                transport(TransportErrorKind::Transient),
                [true, false, false, false, false, false],
            ),
            (
                "too many connections",
                transport(TransportErrorKind::TooManyConnections),
                [true, false, false, false, false, false],
            ),
            (
                "a paused mailbox",
                transport(TransportErrorKind::MailboxThrottled),
                [false, true, true, false, false, false],
            ),
            (
                "a rate limit",
                Error::Transport {
                    attempts: 1,
                    error: TransportError::new(TransportErrorKind::Transient, "429").throttled(),
                },
                [true, false, true, false, false, false],
            ),
            (
                "an unknown delivery",
                transport(TransportErrorKind::DeliveryUnknown),
                [false, false, false, true, false, false],
            ),
            (
                "a refused message",
                transport(TransportErrorKind::MessageRejected),
                [false; 6],
            ),
            (
                "a sign-in the server asks for",
                transport(TransportErrorKind::SignInRequired),
                [false, false, false, false, true, false],
            ),
            (
                "a token endpoint that failed for now",
                Error::Tokens(mailroom_tokens::Error::Transient {
                    message: "503".to_owned(),
                }),
                [true, false, false, false, false, false],
            ),
            (
                "a sign-in the broker asks for",
                Error::Tokens(sign_in_required()),
                [false, false, false, false, true, false],
            ),
            (
                "the database",
                Error::from(sea_orm::DbErr::Custom("gone".to_owned())),
                [true, false, false, false, false, false],
            ),
            (
                "a mailbox's own limit",
                Error::MailboxLimit {
                    mailbox: "sa@contoso.example".to_owned(),
                    reason: "30 a minute".to_owned(),
                    until: chrono::DateTime::UNIX_EPOCH,
                },
                [true, false, false, false, false, false],
            ),
            (
                "a key this host lacks",
                Error::Key(missing_key()),
                [false, false, false, false, false, true],
            ),
            (
                "an account's secret this host cannot open",
                Error::Accounts(mailroom_accounts::Error::Key(missing_key())),
                [false, false, false, false, false, true],
            ),
            (
                "a token this host cannot open",
                Error::Tokens(mailroom_tokens::Error::Key(
                    mailroom_crypto::Error::CannotOpen,
                )),
                [false, false, false, false, false, true],
            ),
            ("no such message", Error::NotQueued { id: 7 }, [false; 6]),
        ];
        for (what, error, expected) in cases {
            assert_eq!(predicates(&error), expected, "{what}: {error:?}");
        }
    }

    #[test]
    fn only_a_transport_failure_carries_the_wait_and_the_failure_it_asked_for() {
        let asked = Error::Transport {
            attempts: 2,
            error: TransportError::new(TransportErrorKind::MailboxThrottled, "4.7.0")
                .with_retry_after(Duration::from_secs(30)),
        };
        assert_eq!(asked.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            asked.transport_error().map(TransportError::message),
            Some("4.7.0")
        );
        let other = Error::from(sea_orm::DbErr::Custom("gone".to_owned()));
        assert_eq!(other.retry_after(), None);
        assert!(other.transport_error().is_none());
        assert_eq!(transport(TransportErrorKind::Transient).retry_after(), None);
    }
}
