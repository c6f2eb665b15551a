//! The presets, checked against the setup guide's table.

use mailroom_model::{Provider, ServerSettings, ServerSettingsChange, TlsStartup};

/// One row of the guide's table: provider, host, port, TLS, startup, timeout, and which of
/// TLS/startup/timeout the guide marks "(ignored)".
struct GuideRow {
    provider: Provider,
    host: &'static str,
    port: u16,
    tls: bool,
    startup: TlsStartup,
    timeout_ms: u32,
    ignored: &'static [&'static str],
}

#[track_caller]
fn check(row: &GuideRow) {
    let preset = ServerSettings::preset(row.provider);
    assert_eq!(preset.provider, row.provider);
    assert_eq!(preset.host, row.host, "host of {}", row.provider);
    assert_eq!(preset.port, row.port, "port of {}", row.provider);
    assert_eq!(preset.tls, row.tls, "tls of {}", row.provider);
    assert_eq!(
        preset.tls_startup, row.startup,
        "startup of {}",
        row.provider
    );
    assert_eq!(
        preset.timeout_ms, row.timeout_ms,
        "timeout of {}",
        row.provider
    );
    assert!(preset.password.is_none());
    let ignored: Vec<&str> = ServerSettings::ignored_settings(row.provider)
        .iter()
        .map(|ignored| ignored.setting)
        .collect();
    assert_eq!(ignored, row.ignored, "ignored settings of {}", row.provider);
}

#[test]
fn presets_match_the_setup_guide() {
    // Setting                      Outlook 365          Gmail
    // Email Server hostname        smtp.office365.com   gmail.googleapis.com
    // SMTP Port                    587                  443
    // Enable SMTP over SSL or TLS  True                 (ignored)
    // SSL or TLS Startup Method    Auto                 (ignored)
    // SMTP Timeout                 100000               (ignored)
    for row in [
        GuideRow {
            provider: Provider::Microsoft,
            host: "smtp.office365.com",
            port: 587,
            tls: true,
            startup: TlsStartup::Auto,
            timeout_ms: 100_000,
            ignored: &[],
        },
        GuideRow {
            provider: Provider::Google,
            host: "gmail.googleapis.com",
            port: 443,
            tls: true,
            startup: TlsStartup::Auto,
            timeout_ms: 100_000,
            ignored: &["tls", "tls startup", "timeout"],
        },
        GuideRow {
            provider: Provider::None,
            host: "",
            port: 587,
            tls: true,
            startup: TlsStartup::Auto,
            timeout_ms: 100_000,
            ignored: &[],
        },
    ] {
        check(&row);
    }
}

#[test]
fn microsoft_host_port_and_tls_may_change() {
    let applied = ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        host: Some("smtp-mail.outlook.com".to_owned()),
        port: Some(25),
        tls: Some(false),
        ..Default::default()
    }
    .apply(None)
    .unwrap();
    assert_eq!(applied.settings.host, "smtp-mail.outlook.com");
    assert_eq!(applied.settings.port, 25);
    assert!(!applied.settings.tls);
    assert!(applied.ignored.is_empty());
}

#[test]
fn google_reports_what_it_ignores_and_locks_host_and_port() {
    let applied = ServerSettingsChange {
        provider: Some(Provider::Google),
        tls: Some(false),
        tls_startup: Some(TlsStartup::Implicit),
        timeout_ms: Some(1_000),
        ..Default::default()
    }
    .apply(None)
    .unwrap();
    let ignored: Vec<&str> = applied.ignored.iter().map(|i| i.setting).collect();
    assert_eq!(ignored, ["tls", "tls startup", "timeout"]);
    assert!(
        applied
            .ignored
            .iter()
            .all(|i| i.reason.contains("Gmail API"))
    );
    for change in [
        ServerSettingsChange {
            provider: Some(Provider::Google),
            host: Some("smtp.gmail.com".to_owned()),
            ..Default::default()
        },
        ServerSettingsChange {
            provider: Some(Provider::Google),
            port: Some(587),
            ..Default::default()
        },
    ] {
        let error = change.apply(None).unwrap_err();
        assert!(error.to_string().contains("Gmail API URL"), "{error}");
        assert_eq!(
            error.remedy(),
            Some(&mailroom_model::Remedy::SetGmailApiUrl)
        );
    }
}

#[test]
fn changing_the_provider_fills_its_preset_and_drops_a_password() {
    let password_account = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        port: Some(2525),
        smtp_user: Some("invoices@example.net".to_owned()),
        password: Some("pw".into()),
        ..Default::default()
    }
    .apply(None)
    .unwrap()
    .settings;
    let applied = ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        ..Default::default()
    }
    .apply(Some(&password_account))
    .unwrap();
    assert_eq!(applied.settings.host, "smtp.office365.com");
    assert_eq!(applied.settings.port, 587);
    assert_eq!(applied.settings.smtp_user, "invoices@example.net");
    assert!(applied.settings.password.is_none());
    assert_eq!(applied.notices.len(), 1, "{:?}", applied.notices);
}
