//! The stable names the CLI and the database use, their aliases, and small value types.

use std::str::FromStr;

use mailroom_model::{
    AUTOMATION_AGENT, AccountPolicy, Auth, Binding, FaxFormat, Feature, FeatureCatalog,
    MailboxLimits, Provider, SALES_DOCUMENT, SMART_PRINTING, Secret, TlsStartup, TransportError,
    TransportErrorKind,
};

#[test]
fn providers_have_stable_names_and_aliases() {
    for (provider, name) in [
        (Provider::None, "none"),
        (Provider::Microsoft, "microsoft"),
        (Provider::Google, "google"),
    ] {
        assert_eq!(provider.as_str(), name);
        assert_eq!(provider.to_string(), name);
        assert_eq!(name.parse::<Provider>().unwrap(), provider);
    }
    for (alias, provider) in [
        ("password", Provider::None),
        ("SMTP", Provider::None),
        ("office365", Provider::Microsoft),
        (" Outlook ", Provider::Microsoft),
        ("m365", Provider::Microsoft),
        ("gmail", Provider::Google),
        ("GOOGLE", Provider::Google),
    ] {
        assert_eq!(Provider::from_str(alias).unwrap(), provider, "{alias}");
    }
    let error = "yahoo".parse::<Provider>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid provider: `yahoo` is not a provider; use one of microsoft, google, none"
    );
    assert!(!Provider::None.uses_oauth());
    assert!(Provider::Microsoft.uses_oauth());
    assert!(Provider::Google.uses_oauth());
}

#[test]
fn tls_startup_methods_have_stable_names_and_aliases() {
    for (startup, name) in [
        (TlsStartup::Auto, "auto"),
        (TlsStartup::StartTls, "starttls"),
        (TlsStartup::Implicit, "implicit"),
    ] {
        assert_eq!(startup.as_str(), name);
        assert_eq!(startup.to_string(), name);
        assert_eq!(name.parse::<TlsStartup>().unwrap(), startup);
        assert_eq!(
            serde_json::to_value(startup).unwrap(),
            serde_json::json!(name)
        );
    }
    for (alias, startup) in [
        (" AUTO ", TlsStartup::Auto),
        ("start-tls", TlsStartup::StartTls),
        ("start_tls", TlsStartup::StartTls),
        ("ssl", TlsStartup::Implicit),
        ("SMTPS", TlsStartup::Implicit),
    ] {
        assert_eq!(alias.parse::<TlsStartup>().unwrap(), startup, "{alias}");
    }
    let error = "tls".parse::<TlsStartup>().unwrap_err();
    assert_eq!(error.field, "tls startup");
    assert_eq!(error.fix, "use one of auto, starttls, implicit");
}

#[test]
fn secrets_compare_by_value_and_know_when_empty() {
    assert!(Secret::new("").is_empty());
    assert!(!Secret::new("hunter2").is_empty());
    assert_eq!(Secret::from("hunter2"), Secret::from("hunter2".to_owned()));
    assert_ne!(Secret::new("hunter2"), Secret::new("hunter3"));
}

#[test]
fn the_feature_catalog_starts_with_the_guides_three() {
    let catalog = FeatureCatalog::with_defaults();
    assert_eq!(catalog, FeatureCatalog::default());
    let listed: Vec<(&str, AccountPolicy)> = catalog
        .iter()
        .map(|feature| (feature.name.as_ref(), feature.policy))
        .collect();
    assert_eq!(
        listed,
        [
            (SALES_DOCUMENT, AccountPolicy::UserThenCompany),
            (SMART_PRINTING, AccountPolicy::UserThenCompany),
            (AUTOMATION_AGENT, AccountPolicy::CompanyOnly),
        ]
    );
    assert_eq!(
        catalog.get(" Sales-Document ").unwrap().name,
        SALES_DOCUMENT
    );
    let error = catalog.get("purchase-orders").unwrap_err();
    assert_eq!(error.problem, "`purchase-orders` is not a known feature");
    assert_eq!(
        error.fix,
        "use one of sales-document, smart-printing, automation-agent"
    );
}

#[test]
fn a_host_feature_is_registered_once() {
    let mut catalog = FeatureCatalog::with_defaults();
    let orders = Feature::new(
        "purchase-orders",
        "Purchase orders",
        AccountPolicy::CompanyOnly,
    )
    .unwrap();
    catalog.register(orders.clone()).unwrap();
    assert_eq!(catalog.iter().count(), 4);
    assert_eq!(catalog.get("purchase-orders").unwrap(), &orders);
    let error = catalog.register(orders).unwrap_err();
    assert_eq!(error.problem, "`purchase-orders` is already registered");
    let builtin = Feature::new(SMART_PRINTING, "again", AccountPolicy::CompanyOnly).unwrap();
    assert!(catalog.register(builtin).is_err());
    assert_eq!(catalog.iter().count(), 4);
}

#[test]
fn a_binding_key_ignores_case_and_spaces() {
    let binding = Binding::system_user(" SA ").unwrap();
    assert_eq!(binding.to_string(), "SystemUser:User_Name:SA");
    assert_eq!(binding.key(), "systemuser\u{1f}user_name\u{1f}sa");
    assert_eq!(
        binding.key(),
        "systemuser:user_name:sa".parse::<Binding>().unwrap().key()
    );
    assert_ne!(binding.key(), Binding::system_user("sb").unwrap().key());
}

#[test]
fn a_fax_format_prints_and_converts_as_its_text() {
    let format = FaxFormat::parse(" {0}@fax.example.com ").unwrap();
    assert_eq!(format.to_string(), "{0}@fax.example.com");
    assert_eq!(format.as_str(), "{0}@fax.example.com");
    assert_eq!(String::from(format.clone()), "{0}@fax.example.com");
    assert_eq!(
        serde_json::to_value(&format).unwrap(),
        serde_json::json!("{0}@fax.example.com")
    );
    assert_eq!("{0}@fax.example.com".parse::<FaxFormat>().unwrap(), format);
}

#[test]
fn authentication_kinds_have_stable_names_and_aliases() {
    for (auth, name) in [(Auth::Delegated, "delegated"), (Auth::AppOnly, "app-only")] {
        assert_eq!(auth.as_str(), name);
        assert_eq!(auth.to_string(), name);
        assert_eq!(name.parse::<Auth>().unwrap(), auth);
    }
    for alias in ["app_only", " AppOnly ", "APP-ONLY"] {
        assert_eq!(alias.parse::<Auth>().unwrap(), Auth::AppOnly, "{alias}");
    }
    assert_eq!(" Delegated ".parse::<Auth>().unwrap(), Auth::Delegated);
    let error = "certificate".parse::<Auth>().unwrap_err();
    assert_eq!(error.field, "auth");
    assert!(error.problem.contains("`certificate`"), "{}", error.problem);
    assert!(error.fix.contains("app-only"), "{}", error.fix);
}

#[test]
fn limits_are_unlimited_only_when_none_of_the_three_is_set() {
    assert!(MailboxLimits::NONE.is_unlimited());
    for limits in [
        MailboxLimits {
            per_minute: Some(30),
            ..MailboxLimits::NONE
        },
        MailboxLimits {
            daily: Some(2_000),
            ..MailboxLimits::NONE
        },
        MailboxLimits {
            concurrent: Some(3),
            ..MailboxLimits::NONE
        },
    ] {
        assert!(!limits.is_unlimited(), "{limits:?}");
    }
}

#[test]
fn throttling_is_a_rate_limit_mark_or_a_paused_mailbox() {
    let transient = TransportError::new(TransportErrorKind::Transient, "421 try later");
    assert!(!transient.is_throttled());
    assert!(transient.throttled().is_throttled());
    let paused = TransportError::new(
        TransportErrorKind::MailboxThrottled,
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    );
    assert!(paused.is_throttled());
    assert!(
        !TransportError::new(TransportErrorKind::TooManyConnections, "432 4.3.2").is_throttled(),
        "too many connections: fewer connections, not a pause"
    );
}
