//! What the CLI prints: views of accounts for text and JSON.

use mailroom_model::{
    Auth, Binding, CompanyAccount, Limit, MailboxLimits, PaceOverrides, Provider, Route,
    ServerSettings, UserAccount,
};
use serde::Serialize;

/// An account's settings as shown to the user; never the password itself.
#[derive(Debug, Serialize)]
pub(crate) struct AccountView {
    pub(crate) id: Option<i64>,
    pub(crate) kind: &'static str,
    pub(crate) provider: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) tls_startup: &'static str,
    pub(crate) timeout_ms: u32,
    pub(crate) smtp_user: String,
    /// The From address of sends that give none (`None`: the SMTP user).
    pub(crate) from_address: Option<String>,
    /// Whether the account is signed in (OAuth: a stored token; password: n/a), when
    /// the command looked.
    pub(crate) signed_in: Option<mailroom::SignInState>,
    pub(crate) password_set: bool,
    pub(crate) allow_plaintext_loopback: bool,
    pub(crate) allow_plaintext_password: bool,
    /// A shared mailbox: a person with rights on it signs in for it.
    pub(crate) shared_mailbox: bool,
    /// How the mail leaves: smtp or graph.
    pub(crate) route: &'static str,
    /// Graph route: large messages through upload sessions (Mail.ReadWrite).
    pub(crate) large_attachments: bool,
    /// How the account gets its tokens: delegated (a person signs in) or app-only (the
    /// app's own credentials).
    pub(crate) auth: &'static str,
    /// The limits the mailbox sends under, and the account's own overrides.
    pub(crate) limits: LimitsView,
    /// Whether the provider signs in with OAuth (only those have an authentication kind).
    #[serde(skip)]
    pub(crate) uses_oauth: bool,
    pub(crate) fax_format: Option<String>,
    pub(crate) binding: Option<Binding>,
    /// Settings stored but ignored by this provider.
    pub(crate) ignored: Vec<&'static str>,
}

fn view(server: &ServerSettings, kind: &'static str) -> AccountView {
    AccountView {
        id: None,
        kind,
        provider: server.provider.as_str(),
        host: server.host.clone(),
        port: server.port,
        tls: server.tls,
        tls_startup: server.tls_startup.as_str(),
        timeout_ms: server.timeout_ms,
        smtp_user: server.smtp_user.clone(),
        from_address: None,
        signed_in: None,
        password_set: server.password.is_some(),
        allow_plaintext_loopback: server.allow_plaintext_loopback,
        allow_plaintext_password: server.allow_plaintext_password,
        shared_mailbox: server.shared_mailbox,
        route: server.route.as_str(),
        large_attachments: server.large_attachments,
        auth: server.auth.as_str(),
        limits: LimitsView::of(server),
        uses_oauth: server.provider.uses_oauth(),
        fax_format: None,
        binding: None,
        ignored: ServerSettings::ignored_settings(server.provider)
            .iter()
            .map(|ignored| ignored.setting)
            .collect(),
    }
}

impl AccountView {
    pub(crate) fn company(company: &CompanyAccount) -> Self {
        let mut view = view(&company.server, "company");
        view.fax_format = company.fax_format.as_ref().map(|f| f.as_str().to_owned());
        view.from_address = company.from_address.clone();
        view
    }

    /// The same view, saying whether the account is signed in.
    pub(crate) fn with_sign_in(
        mut self,
        account: &mailroom::Account,
        tokens: &[mailroom::tokens::storage::TokenSummary],
    ) -> Self {
        self.signed_in = Some(mailroom::sign_in_state(account, tokens));
        self
    }

    pub(crate) fn user(user: &UserAccount) -> Self {
        let mut view = view(&user.server, "user");
        view.id = Some(user.id);
        view.binding = user.binding.clone();
        view.from_address = user.from_address.clone();
        view
    }

    /// `name: value` lines, marking what the provider ignores.
    pub(crate) fn to_text(&self) -> String {
        let ignored = |setting: &str, value: String| {
            if self.ignored.contains(&setting) {
                format!("{value} (ignored: sent through the Gmail API over HTTPS)")
            } else {
                value
            }
        };
        let mut lines = Vec::new();
        if let Some(id) = self.id {
            lines.push(("Email Server ID", id.to_string()));
        }
        lines.push(("Provider", self.provider.to_owned()));
        if self.route != Route::Smtp.as_str() {
            lines.push((
                "Route",
                format!(
                    "{} (Microsoft Graph sendMail; host, port and TLS settings are not used){}",
                    self.route,
                    if self.large_attachments {
                        "; large attachments through upload sessions (Mail.ReadWrite)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if self.uses_oauth {
            lines.push(("Authentication", auth_text(self.auth).to_owned()));
        }
        lines.push(("Host", self.host.clone()));
        lines.push(("Port", self.port.to_string()));
        lines.push(("TLS", ignored("tls", self.tls.to_string())));
        lines.push((
            "TLS startup",
            ignored("tls startup", self.tls_startup.to_owned()),
        ));
        lines.push((
            "Timeout (ms)",
            ignored("timeout", self.timeout_ms.to_string()),
        ));
        lines.push((
            "SMTP user",
            if self.smtp_user.is_empty() {
                "(empty: filled in at sign-in)".to_owned()
            } else {
                self.smtp_user.clone()
            },
        ));
        lines.push((
            "From",
            self.from_address
                .clone()
                .unwrap_or_else(|| "(the SMTP user)".to_owned()),
        ));
        lines.push(("Limits", self.limits.to_text()));
        if let Some(state) = self.signed_in {
            lines.push(("Signed in", state.as_str().to_owned()));
        }
        lines.push((
            "Password",
            if self.password_set { "(set)" } else { "(none)" }.to_owned(),
        ));
        if self.allow_plaintext_loopback {
            lines.push((
                "Plaintext to loopback",
                "allowed (test servers only)".to_owned(),
            ));
        }
        if self.shared_mailbox {
            lines.push((
                "Shared mailbox",
                "yes (a person with rights on it signs in; mail goes out as the SMTP user)"
                    .to_owned(),
            ));
        }
        if self.allow_plaintext_password {
            lines.push((
                "Plaintext password",
                "allowed to any server (no TLS needed)".to_owned(),
            ));
        }
        if self.kind == "company" {
            lines.push((
                "Fax format",
                self.fax_format
                    .clone()
                    .unwrap_or_else(|| "(none)".to_owned()),
            ));
        }
        if self.kind == "user" {
            match &self.binding {
                Some(binding) => {
                    lines.push(("Business object", binding.business_object.clone()));
                    lines.push(("Column name", binding.column_name.clone()));
                    lines.push(("Column value", binding.column_value.clone()));
                }
                None => lines.push(("Binding", "(none)".to_owned())),
            }
        }
        let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        lines
            .iter()
            .map(|(name, value)| format!("{name:<width$}  {value}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An account's effective limits (its provider's defaults with its overrides on top; null
/// is no limit) and the overrides themselves (null: the provider's default, `"off"`, or a
/// number).
#[derive(Debug, Serialize)]
pub(crate) struct LimitsView {
    #[serde(flatten)]
    pub(crate) effective: MailboxLimits,
    pub(crate) overrides: OverridesView,
    #[serde(skip)]
    provider: Provider,
    #[serde(skip)]
    pace: PaceOverrides,
}

/// The overrides as JSON: each null, `"off"` or a number.
#[derive(Debug, Serialize)]
pub(crate) struct OverridesView {
    pub(crate) per_minute: Option<serde_json::Value>,
    pub(crate) daily: Option<serde_json::Value>,
}

fn limit_json(limit: Limit) -> serde_json::Value {
    match limit {
        Limit::Off => serde_json::Value::from("off"),
        Limit::At(value) => serde_json::Value::from(value),
    }
}

impl LimitsView {
    pub(crate) fn of(server: &ServerSettings) -> Self {
        LimitsView {
            effective: server.mailbox_limits(),
            overrides: OverridesView {
                per_minute: server.pace.per_minute.map(limit_json),
                daily: server.pace.daily.map(limit_json),
            },
            provider: server.provider,
            pace: server.pace,
        }
    }

    /// One line: the account's own limits first, marked "(set)", then the provider's
    /// defaults, named once at the end; "none" when nothing is limited.
    pub(crate) fn to_text(&self) -> String {
        let limits = &self.effective;
        let rate = match limits.per_minute {
            Some(rate) => format!("{} messages/min", grouped(rate)),
            None => "no per-minute limit".to_owned(),
        };
        let daily = match limits.daily {
            Some(daily) => format!("{} {} per 24 h", grouped(daily), limits.daily_unit),
            None => "no daily limit".to_owned(),
        };
        let mut set = Vec::new();
        let mut defaults = Vec::new();
        for (part, overridden, limited) in [
            (
                rate,
                self.pace.per_minute.is_some(),
                limits.per_minute.is_some(),
            ),
            (daily, self.pace.daily.is_some(), limits.daily.is_some()),
        ] {
            if overridden {
                set.push(format!("{part} (set)"));
            } else if limited {
                defaults.push(part);
            }
        }
        if let Some(concurrent) = limits.concurrent {
            defaults.push(format!("{concurrent} at once"));
        }
        if set.is_empty() && defaults.is_empty() {
            return "none".to_owned();
        }
        if !defaults.is_empty() {
            let provider = match self.provider {
                Provider::Microsoft => "Microsoft",
                Provider::Google => "Google",
                Provider::None => "password SMTP",
            };
            let last = defaults.len() - 1;
            defaults[last].push_str(&format!(" ({provider} default)"));
        }
        set.extend(defaults);
        set.join(", ")
    }
}

/// A number with thousands separated by commas (10,000).
fn grouped(value: u32) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// How an authentication kind reads in `account show` and `resolve`.
pub(crate) fn auth_text(auth: &str) -> &'static str {
    if auth == Auth::AppOnly.as_str() {
        "app-only (the app's own credentials; no sign-in)"
    } else {
        "delegated (a person signs in)"
    }
}

/// The guide's SMTP Setup grid.
pub(crate) fn account_table(
    accounts: &[UserAccount],
    tokens: &[mailroom::tokens::storage::TokenSummary],
) -> String {
    let header = [
        "ID",
        "Provider",
        "Route",
        "Auth",
        "Host",
        "Port",
        "TLS",
        "Startup",
        "SMTP User",
        "Signed in",
        "Business Object",
        "Column Name",
        "Column Value",
    ];
    let rows: Vec<[String; 13]> = accounts
        .iter()
        .map(|account| {
            let s = &account.server;
            let (object, column, value) = match &account.binding {
                Some(b) => (
                    b.business_object.clone(),
                    b.column_name.clone(),
                    b.column_value.clone(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            [
                account.id.to_string(),
                s.provider.to_string(),
                s.route.to_string(),
                if s.provider.uses_oauth() {
                    s.auth.as_str()
                } else {
                    "n/a"
                }
                .to_owned(),
                s.host.clone(),
                s.port.to_string(),
                if s.tls { "yes" } else { "no" }.to_owned(),
                s.tls_startup.to_string(),
                s.smtp_user.clone(),
                mailroom::sign_in_state(&mailroom::Account::User(account.clone()), tokens)
                    .as_str()
                    .to_owned(),
                object,
                column,
                value,
            ]
        })
        .collect();
    render_table(&header, &rows)
}

/// A plain-text table: a header row, then one row per item, columns padded to the widest
/// cell and separated by two spaces.
pub(crate) fn render_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|name| name.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        cells
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&mut header.iter().copied())];
    out.extend(
        rows.iter()
            .map(|row| line(&mut row.iter().map(String::as_str))),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_text(provider: Provider, route: Route, pace: PaceOverrides) -> String {
        let mut server = ServerSettings::preset(provider);
        server.route = route;
        server.pace = pace;
        LimitsView::of(&server).to_text()
    }

    #[test]
    fn the_limits_line_marks_what_is_set_and_names_the_defaults() {
        let default = PaceOverrides::default();
        assert_eq!(
            limits_text(Provider::Microsoft, Route::Smtp, default),
            "30 messages/min, 10,000 recipients per 24 h, 3 at once (Microsoft default)"
        );
        assert_eq!(
            limits_text(Provider::Microsoft, Route::Graph, default),
            "30 messages/min, 10,000 recipients per 24 h, 4 at once (Microsoft default)"
        );
        assert_eq!(
            limits_text(
                Provider::Google,
                Route::Smtp,
                PaceOverrides {
                    per_minute: Some(Limit::At(60)),
                    daily: None,
                }
            ),
            "60 messages/min (set), 2,000 messages per 24 h (Google default)"
        );
        assert_eq!(
            limits_text(
                Provider::Microsoft,
                Route::Smtp,
                PaceOverrides {
                    per_minute: Some(Limit::Off),
                    daily: Some(Limit::At(1_500)),
                }
            ),
            "no per-minute limit (set), 1,500 recipients per 24 h (set), 3 at once (Microsoft default)"
        );
        assert_eq!(limits_text(Provider::None, Route::Smtp, default), "none");
        assert_eq!(
            limits_text(
                Provider::None,
                Route::Smtp,
                PaceOverrides {
                    per_minute: Some(Limit::At(120)),
                    daily: None,
                }
            ),
            "120 messages/min (set)"
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        for (value, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (10_000, "10,000"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
            (u32::MAX, "4,294,967,295"),
        ] {
            assert_eq!(grouped(value), text);
        }
    }
}
