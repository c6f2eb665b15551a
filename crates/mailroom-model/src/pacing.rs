//! How fast a mailbox may send: the providers' documented per-mailbox limits, as defaults
//! per provider and route, and an account's own overrides.
//!
//! A mailbox is the lower-cased sending address ([`mailbox_key`]). The limits are enforced
//! for every process on the database (the facade's pacing keeps one row per mailbox); this
//! crate only says what they are.
//!
//! | provider, route | per minute | per rolling 24 h | at once |
//! |---|---|---|---|
//! | Microsoft, SMTP | 30 messages | 10,000 recipients | 3 connections |
//! | Microsoft, Graph | 30 messages | 10,000 recipients | 4 requests |
//! | Google (Gmail API) | 60 sends | 2,000 messages | — |
//! | password SMTP | — | — | — |
//!
//! Sources: Exchange Online limits (30 messages a minute, 10,000 recipients per rolling
//! 24 hours, `432 4.3.2` past three connections); Graph's Outlook throttling (4 concurrent
//! requests per app and mailbox); the Gmail API's 100 quota units per send against 6,000
//! units per user per minute for projects created from May 2026, and Workspace's 2,000
//! messages a day per user.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Provider, Route};

/// What a mailbox's daily limit counts, as each provider documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DailyUnit {
    /// Recipients (Exchange Online: 10,000 recipients per rolling 24 hours).
    Recipients,
    /// Messages (Google Workspace: 2,000 messages a day per user).
    Messages,
}

impl DailyUnit {
    /// The stable lowercase name ("recipients", "messages").
    pub fn as_str(self) -> &'static str {
        match self {
            DailyUnit::Recipients => "recipients",
            DailyUnit::Messages => "messages",
        }
    }

    /// How much one message with `recipients` recipients uses of the daily limit (at least
    /// one).
    pub fn units(self, recipients: usize) -> u32 {
        match self {
            DailyUnit::Recipients => u32::try_from(recipients.max(1)).unwrap_or(u32::MAX),
            DailyUnit::Messages => 1,
        }
    }
}

impl fmt::Display for DailyUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mailbox's limits, as enforced. `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailboxLimits {
    /// Messages per minute, spaced evenly (30 a minute is one every two seconds).
    pub per_minute: Option<u32>,
    /// Units per rolling 24 hours, counted in [`MailboxLimits::daily_unit`].
    pub daily: Option<u32>,
    /// What `daily` counts.
    pub daily_unit: DailyUnit,
    /// Sends in flight at once, across every process.
    pub concurrent: Option<u32>,
}

impl MailboxLimits {
    /// No limit at all (password SMTP servers).
    pub const NONE: MailboxLimits = MailboxLimits {
        per_minute: None,
        daily: None,
        daily_unit: DailyUnit::Messages,
        concurrent: None,
    };

    /// The documented defaults of a provider and route (see the module's table).
    pub fn defaults(provider: Provider, route: Route) -> Self {
        match (provider, route) {
            (Provider::Microsoft, Route::Smtp) => MailboxLimits {
                per_minute: Some(30),
                daily: Some(10_000),
                daily_unit: DailyUnit::Recipients,
                concurrent: Some(3),
            },
            (Provider::Microsoft, Route::Graph) => MailboxLimits {
                per_minute: Some(30),
                daily: Some(10_000),
                daily_unit: DailyUnit::Recipients,
                concurrent: Some(4),
            },
            (Provider::Google, _) => MailboxLimits {
                per_minute: Some(60),
                daily: Some(2_000),
                daily_unit: DailyUnit::Messages,
                concurrent: None,
            },
            (Provider::None, _) => MailboxLimits::NONE,
        }
    }

    /// The defaults with an account's overrides on top.
    pub fn with_overrides(mut self, overrides: PaceOverrides) -> Self {
        if let Some(rate) = overrides.per_minute {
            self.per_minute = rate.limit();
        }
        if let Some(daily) = overrides.daily {
            self.daily = daily.limit();
        }
        self
    }

    /// The even spacing between two sends: a minute divided by the rate; `None` without
    /// a rate.
    pub fn interval(&self) -> Option<Duration> {
        self.per_minute
            .filter(|rate| *rate > 0)
            .map(|rate| Duration::from_micros(60_000_000 / u64::from(rate)))
    }

    /// True when nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.per_minute.is_none() && self.daily.is_none() && self.concurrent.is_none()
    }
}

/// One overridden limit: a number, or explicitly none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// No limit (the provider's default is lifted).
    Off,
    /// At most this many.
    At(u32),
}

impl Limit {
    /// The limit as a number, `None` for [`Limit::Off`].
    pub fn limit(self) -> Option<u32> {
        match self {
            Limit::Off => None,
            Limit::At(value) => Some(value),
        }
    }
}

/// An account's overrides of its provider's limits (`None`: the provider's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PaceOverrides {
    /// Messages per minute.
    pub per_minute: Option<Limit>,
    /// The daily limit, in the provider's unit.
    pub daily: Option<Limit>,
}

/// Which queued messages an agent takes first, across mailboxes: interactive sends (a
/// person is waiting) before normal ones, normal before bulk (a month-end run).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person is waiting for it.
    Interactive,
    /// The default.
    #[default]
    Normal,
    /// Sent after everything else that is due.
    Bulk,
}

impl Priority {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Normal => "normal",
            Priority::Bulk => "bulk",
        }
    }

    /// The number stored with a queued message: lower goes first.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Interactive => 0,
            Priority::Normal => 1,
            Priority::Bulk => 2,
        }
    }

    /// The priority of a stored rank (an unknown rank is normal).
    pub fn from_rank(rank: i16) -> Self {
        match rank {
            0 => Priority::Interactive,
            2 => Priority::Bulk,
            _ => Priority::Normal,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "interactive" => Ok(Priority::Interactive),
            "normal" => Ok(Priority::Normal),
            "bulk" => Ok(Priority::Bulk),
            other => Err(format!(
                "`{other}` is not a priority; use interactive, normal or bulk"
            )),
        }
    }
}

/// The key of a mailbox: the sending address, lower-cased.
pub fn mailbox_key(address: &str) -> String {
    address.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_providers_documents() {
        let smtp = MailboxLimits::defaults(Provider::Microsoft, Route::Smtp);
        assert_eq!(
            (
                smtp.per_minute,
                smtp.daily,
                smtp.daily_unit,
                smtp.concurrent
            ),
            (Some(30), Some(10_000), DailyUnit::Recipients, Some(3))
        );
        let graph = MailboxLimits::defaults(Provider::Microsoft, Route::Graph);
        assert_eq!((graph.per_minute, graph.concurrent), (Some(30), Some(4)));
        let google = MailboxLimits::defaults(Provider::Google, Route::Smtp);
        assert_eq!(
            (google.per_minute, google.daily, google.daily_unit),
            (Some(60), Some(2_000), DailyUnit::Messages)
        );
        assert!(MailboxLimits::defaults(Provider::None, Route::Smtp).is_unlimited());
        assert!(!smtp.is_unlimited());
    }

    #[test]
    fn the_interval_spaces_a_minute_evenly() {
        let smtp = MailboxLimits::defaults(Provider::Microsoft, Route::Smtp);
        assert_eq!(smtp.interval(), Some(Duration::from_secs(2)));
        let odd = MailboxLimits {
            per_minute: Some(7),
            ..MailboxLimits::NONE
        };
        assert_eq!(odd.interval(), Some(Duration::from_micros(8_571_428)));
        assert_eq!(MailboxLimits::NONE.interval(), None);
        let zero = MailboxLimits {
            per_minute: Some(0),
            ..MailboxLimits::NONE
        };
        assert_eq!(zero.interval(), None);
    }

    #[test]
    fn overrides_replace_or_lift_a_default() {
        let base = MailboxLimits::defaults(Provider::Microsoft, Route::Smtp);
        let lifted = base.with_overrides(PaceOverrides {
            per_minute: Some(Limit::Off),
            daily: Some(Limit::At(500)),
        });
        assert_eq!((lifted.per_minute, lifted.daily), (None, Some(500)));
        assert_eq!(lifted.concurrent, Some(3));
        assert_eq!(base.with_overrides(PaceOverrides::default()), base);
        let set = MailboxLimits::NONE.with_overrides(PaceOverrides {
            per_minute: Some(Limit::At(10)),
            daily: None,
        });
        assert_eq!((set.per_minute, set.daily), (Some(10), None));
    }

    #[test]
    fn units_count_recipients_or_messages() {
        assert_eq!(DailyUnit::Recipients.units(7), 7);
        assert_eq!(DailyUnit::Recipients.units(0), 1);
        assert_eq!(DailyUnit::Messages.units(7), 1);
        assert_eq!(DailyUnit::Recipients.to_string(), "recipients");
        assert_eq!(DailyUnit::Messages.to_string(), "messages");
    }

    #[test]
    fn priorities_order_interactive_first_and_round_trip() {
        for priority in [Priority::Interactive, Priority::Normal, Priority::Bulk] {
            assert_eq!(Priority::from_rank(priority.rank()), priority);
            assert_eq!(priority.as_str().parse::<Priority>(), Ok(priority));
            assert_eq!(priority.to_string(), priority.as_str());
        }
        assert!(Priority::Interactive.rank() < Priority::Normal.rank());
        assert!(Priority::Normal.rank() < Priority::Bulk.rank());
        assert_eq!(Priority::from_rank(9), Priority::Normal);
        assert_eq!(" BULK ".parse::<Priority>(), Ok(Priority::Bulk));
        assert!(
            "urgent"
                .parse::<Priority>()
                .unwrap_err()
                .contains("interactive, normal or bulk")
        );
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn a_mailbox_is_the_lower_cased_address() {
        assert_eq!(mailbox_key(" Sales@Contoso.COM "), "sales@contoso.com");
    }
}
