//! Server settings: what `validate` refuses, and what a change keeps, clears and reports.

use mailroom_model::{Auth, Provider, Remedy, Route, Secret, ServerSettings, ServerSettingsChange};

fn password_account() -> ServerSettings {
    ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        smtp_user: Some("orders".to_owned()),
        password: Some(Secret::new("hunter2")),
        ..Default::default()
    }
    .apply(None)
    .unwrap()
    .settings
}

fn microsoft_account() -> ServerSettings {
    let mut settings = ServerSettings::preset(Provider::Microsoft);
    settings.smtp_user = "orders@contoso.example".to_owned();
    settings.token_identity = Some("oid:t:o".to_owned());
    settings
}

#[test]
fn plaintext_bearer_tokens_only_to_loopback() {
    let mut settings = ServerSettings::preset(Provider::Microsoft);
    settings.allow_plaintext_loopback = true;
    let error = settings.validate().unwrap_err();
    assert_eq!(error.field, "allow plaintext loopback");
    assert_eq!(
        error.problem,
        "`smtp.office365.com` is not a loopback address"
    );
    settings.host = "127.0.0.1".to_owned();
    settings.validate().unwrap();
}

#[test]
fn a_shared_mailbox_is_a_microsoft_mailbox_with_an_address() {
    let mut settings = microsoft_account();
    settings.shared_mailbox = true;
    settings.validate().unwrap();
    settings.smtp_user.clear();
    assert_eq!(settings.validate().unwrap_err().field, "smtp user");

    let mut google = ServerSettings::preset(Provider::Google);
    google.smtp_user = "orders@example.com".to_owned();
    google.validate().unwrap();
    google.shared_mailbox = true;
    let error = google.validate().unwrap_err();
    assert_eq!(error.field, "shared mailbox");
    assert!(
        error.problem.starts_with("the Gmail API sends only from"),
        "{error}"
    );

    let mut password = password_account();
    password.shared_mailbox = true;
    let error = password.validate().unwrap_err();
    assert_eq!(error.field, "shared mailbox");
    assert!(error.problem.starts_with("a password account"), "{error}");
}

#[test]
fn an_oauth_account_has_an_address_and_no_password() {
    let mut settings = microsoft_account();
    settings.smtp_user = "orders".to_owned();
    assert_eq!(settings.validate().unwrap_err().field, "smtp user");
    let mut settings = microsoft_account();
    settings.password = Some(Secret::new("hunter2"));
    let error = settings.validate().unwrap_err();
    assert_eq!(error.field, "password");
    assert_eq!(
        error.problem,
        "a microsoft account signs in with OAuth and has no password"
    );
    assert_eq!(
        error.remedy(),
        Some(&Remedy::SignIn {
            account: None,
            browser_only: false
        })
    );
}

#[test]
fn a_password_accounts_user_has_at_most_254_characters() {
    let mut settings = password_account();
    settings.smtp_user = "u".repeat(254);
    settings.validate().unwrap();
    settings.smtp_user = "u".repeat(255);
    let error = settings.validate().unwrap_err();
    assert_eq!(
        (error.field, error.problem.as_str()),
        ("smtp user", "is too long")
    );
    let mut settings = password_account();
    settings.password = Some(Secret::new("hunter\n2"));
    assert_eq!(settings.validate().unwrap_err().field, "password");
}

#[test]
fn an_empty_change_names_nothing() {
    assert!(ServerSettingsChange::default().is_empty());
    let change = ServerSettingsChange {
        port: Some(25),
        ..Default::default()
    };
    assert!(!change.is_empty());
    let error = ServerSettingsChange::default().apply(None).unwrap_err();
    assert_eq!(error.field, "provider");
}

#[test]
fn naming_the_same_provider_keeps_the_settings() {
    let mut current = microsoft_account();
    current.host = "smtp-mail.outlook.com".to_owned();
    current.port = 25;
    let applied = ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        ..Default::default()
    }
    .apply(Some(&current))
    .unwrap();
    assert_eq!(applied.settings, current);
    assert!(applied.notices.is_empty());
}

#[test]
fn a_provider_change_keeps_the_user_and_only_what_the_new_provider_takes() {
    let mut shared = microsoft_account();
    shared.shared_mailbox = true;
    // To a password server: no shared mailbox, the user stays, no password to drop.
    let applied = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some(" relay.example.net ".to_owned()),
        ..Default::default()
    }
    .apply(Some(&shared))
    .unwrap();
    assert!(!applied.settings.shared_mailbox);
    assert_eq!(applied.settings.host, "relay.example.net");
    assert_eq!(applied.settings.smtp_user, "orders@contoso.example");
    assert!(applied.settings.password.is_none());
    assert!(applied.notices.is_empty(), "{:?}", applied.notices);
    assert_eq!(applied.settings.token_identity, None);

    // A password account moving to OAuth loses its password, with a notice; moving back
    // to a password server, with no password to drop, gives none.
    let current = password_account();
    let applied = ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        smtp_user: Some("orders@contoso.example".to_owned()),
        ..Default::default()
    }
    .apply(Some(&current))
    .unwrap();
    assert!(applied.settings.password.is_none());
    assert_eq!(applied.notices.len(), 1);
    let back = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        ..Default::default()
    }
    .apply(Some(&applied.settings))
    .unwrap();
    assert!(back.notices.is_empty());
}

#[test]
fn a_provider_change_to_another_oauth_provider_keeps_a_shared_mailbox() {
    let mut shared = microsoft_account();
    shared.shared_mailbox = true;
    shared.host = "smtp-mail.outlook.com".to_owned();
    // Same kind of sign-in: the option stays, and the new preset replaces the host.
    let mut unshared = shared.clone();
    unshared.shared_mailbox = false;
    let applied = ServerSettingsChange {
        provider: Some(Provider::Google),
        ..Default::default()
    }
    .apply(Some(&unshared))
    .unwrap();
    assert!(!applied.settings.shared_mailbox);
    assert_eq!(applied.settings.host, "gmail.googleapis.com");
    // It had no password, so nothing was removed and nothing is said about one.
    assert!(applied.notices.is_empty(), "{:?}", applied.notices);
    // Google refuses shared mailboxes, so carrying the option over is refused.
    let error = ServerSettingsChange {
        provider: Some(Provider::Google),
        ..Default::default()
    }
    .apply(Some(&shared))
    .unwrap_err();
    assert_eq!(error.field, "shared mailbox");
}

#[test]
fn a_new_smtp_user_forgets_the_sign_in_but_a_change_of_case_does_not() {
    let current = microsoft_account();
    let same = ServerSettingsChange {
        smtp_user: Some(" Orders@Contoso.example ".to_owned()),
        ..Default::default()
    }
    .apply(Some(&current))
    .unwrap();
    assert_eq!(same.settings.smtp_user, "Orders@Contoso.example");
    assert_eq!(same.settings.token_identity.as_deref(), Some("oid:t:o"));
    let other = ServerSettingsChange {
        smtp_user: Some("sales@contoso.example".to_owned()),
        ..Default::default()
    }
    .apply(Some(&current))
    .unwrap();
    assert_eq!(other.settings.token_identity, None);
}

#[test]
fn only_the_settings_given_are_reported_as_ignored() {
    let applied = ServerSettingsChange {
        provider: Some(Provider::Google),
        timeout_ms: Some(5_000),
        ..Default::default()
    }
    .apply(None)
    .unwrap();
    let ignored: Vec<&str> = applied.ignored.iter().map(|i| i.setting).collect();
    assert_eq!(ignored, ["timeout"]);
    let applied = ServerSettingsChange {
        provider: Some(Provider::Google),
        ..Default::default()
    }
    .apply(None)
    .unwrap();
    assert!(applied.ignored.is_empty());
}

#[test]
fn the_graph_route_is_microsofts_and_large_attachments_need_it() {
    let mut settings = microsoft_account();
    assert_eq!(
        settings.route,
        Route::Smtp,
        "the guide's route is the default"
    );
    settings.large_attachments = true;
    let error = settings.validate().unwrap_err();
    assert_eq!(error.field, "large attachments");
    settings.route = Route::Graph;
    settings.validate().unwrap();

    for (mut other, says) in [
        (
            ServerSettings::preset(Provider::Google),
            "through the Gmail API",
        ),
        (password_account(), "through its SMTP server"),
    ] {
        other.smtp_user = "orders@example.com".to_owned();
        other.route = Route::Graph;
        let error = other.validate().unwrap_err();
        assert_eq!(error.field, "route");
        assert!(error.problem.ends_with(says), "{error}");
    }
}

#[test]
fn a_route_change_keeps_or_clears_large_attachments() {
    let graph = ServerSettingsChange {
        route: Some(Route::Graph),
        large_attachments: Some(true),
        ..Default::default()
    }
    .apply(Some(&microsoft_account()))
    .unwrap()
    .settings;
    assert_eq!((graph.route, graph.large_attachments), (Route::Graph, true));
    assert_eq!(
        graph.token_identity.as_deref(),
        Some("oid:t:o"),
        "a route change keeps the sign-in: one sign-in serves both routes"
    );
    // Naming the route it already has changes nothing.
    let again = ServerSettingsChange {
        route: Some(Route::Graph),
        ..Default::default()
    }
    .apply(Some(&graph))
    .unwrap()
    .settings;
    assert_eq!((again.route, again.large_attachments), (Route::Graph, true));
    let back = ServerSettingsChange {
        route: Some(Route::Smtp),
        ..Default::default()
    }
    .apply(Some(&graph))
    .unwrap();
    assert_eq!(back.settings.route, Route::Smtp);
    assert!(
        !back.settings.large_attachments,
        "belongs to the Graph route"
    );

    let refused = ServerSettingsChange {
        route: Some(Route::Smtp),
        large_attachments: Some(true),
        ..Default::default()
    }
    .apply(Some(&graph))
    .unwrap_err();
    assert_eq!(refused.field, "large attachments");

    let google = ServerSettingsChange {
        provider: Some(Provider::Google),
        ..Default::default()
    }
    .apply(Some(&graph))
    .unwrap();
    assert_eq!(google.settings.route, Route::Smtp);
    assert!(!google.settings.large_attachments);
    assert_eq!(
        google.notices,
        ["the route is smtp now: google accounts have no graph route"]
    );
}

#[test]
fn routes_parse_from_their_names() {
    assert_eq!(" Graph ".parse::<Route>().unwrap(), Route::Graph);
    assert_eq!("smtp".parse::<Route>().unwrap(), Route::Smtp);
    assert_eq!(Route::Graph.to_string(), "graph");
    let error = "rest".parse::<Route>().unwrap_err();
    assert_eq!(error.field, "route");
    assert_eq!(error.problem, "`rest` is not a route");
}

#[test]
fn app_only_is_for_oauth_accounts_with_a_mailbox_and_no_shared_sign_in() {
    assert_eq!(
        ServerSettings::preset(Provider::Microsoft).auth,
        Auth::Delegated,
        "a person's sign-in is the default"
    );
    for provider in [Provider::Microsoft, Provider::Google] {
        let mut settings = ServerSettings::preset(provider);
        settings.smtp_user = "orders@example.com".to_owned();
        settings.auth = Auth::AppOnly;
        settings.validate().unwrap();

        settings.smtp_user.clear();
        let error = settings.validate().unwrap_err();
        assert_eq!(error.field, "smtp user");
        assert!(
            error.problem.starts_with(
                "is empty for an app-only account: it is the mailbox the app sends as"
            ),
            "{error}"
        );
        assert_eq!(error.fix, "give the mailbox's address as the SMTP user");
    }

    let mut shared = microsoft_account();
    shared.token_identity = None;
    shared.shared_mailbox = true;
    shared.validate().unwrap();
    shared.auth = Auth::AppOnly;
    let error = shared.validate().unwrap_err();
    assert_eq!(error.field, "shared mailbox");
    assert!(
        error.problem.starts_with("is for delegated sign-ins"),
        "{error}"
    );
    assert_eq!(
        error.fix,
        "turn the shared mailbox option off, or use --auth delegated"
    );

    let mut password = password_account();
    password.auth = Auth::AppOnly;
    let error = password.validate().unwrap_err();
    assert_eq!(error.field, "auth");
    assert_eq!(
        error.problem,
        "app-only is for OAuth accounts (microsoft, google); a password account logs in with its SMTP user and password"
    );
    assert_eq!(
        error.fix,
        "use --auth delegated, or provider microsoft or google"
    );
}

#[test]
fn an_auth_change_to_app_only_lets_go_of_the_sign_in() {
    let app_only = ServerSettingsChange {
        auth: Some(Auth::AppOnly),
        ..Default::default()
    }
    .apply(Some(&microsoft_account()))
    .unwrap();
    assert_eq!(app_only.settings.auth, Auth::AppOnly);
    assert_eq!(
        app_only.settings.token_identity, None,
        "there is no sign-in to send with"
    );
    assert!(app_only.notices.is_empty());
    assert_eq!(app_only.settings.smtp_user, "orders@contoso.example");

    let unchanged = ServerSettingsChange {
        route: Some(Route::Graph),
        ..Default::default()
    }
    .apply(Some(&app_only.settings))
    .unwrap()
    .settings;
    assert_eq!(
        (unchanged.auth, unchanged.route),
        (Auth::AppOnly, Route::Graph),
        "a change that does not name auth keeps it"
    );

    let delegated = ServerSettingsChange {
        auth: Some(Auth::Delegated),
        ..Default::default()
    }
    .apply(Some(&microsoft_account()))
    .unwrap()
    .settings;
    assert_eq!(
        delegated.token_identity.as_deref(),
        Some("oid:t:o"),
        "delegated keeps the sign-in it has"
    );

    let google = ServerSettingsChange {
        provider: Some(Provider::Google),
        ..Default::default()
    }
    .apply(Some(&app_only.settings))
    .unwrap();
    assert_eq!(
        google.settings.auth,
        Auth::AppOnly,
        "Google has app-only credentials too"
    );
    assert!(google.notices.is_empty(), "{:?}", google.notices);

    let refused = ServerSettingsChange {
        auth: Some(Auth::AppOnly),
        smtp_user: Some(String::new()),
        ..Default::default()
    }
    .apply(Some(&microsoft_account()))
    .unwrap_err();
    assert_eq!(refused.field, "smtp user");

    let new_account = ServerSettingsChange {
        provider: Some(Provider::Google),
        smtp_user: Some("orders@example.com".to_owned()),
        auth: Some(Auth::AppOnly),
        ..Default::default()
    }
    .apply(None)
    .unwrap()
    .settings;
    assert_eq!(new_account.auth, Auth::AppOnly);
}

#[test]
fn a_provider_change_to_none_makes_auth_delegated_with_a_notice() {
    let mut app_only = microsoft_account();
    app_only.token_identity = None;
    app_only.auth = Auth::AppOnly;
    let password = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        password: Some(Secret::new("hunter2")),
        ..Default::default()
    }
    .apply(Some(&app_only))
    .unwrap();
    assert_eq!(password.settings.auth, Auth::Delegated);
    assert_eq!(
        password.notices,
        [
            "auth is delegated now: a password account (provider none) logs in with its SMTP user and password, not the app's credentials"
        ]
    );

    let delegated = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        ..Default::default()
    }
    .apply(Some(&microsoft_account()))
    .unwrap();
    assert!(
        delegated.notices.is_empty(),
        "nothing changed about auth: {:?}",
        delegated.notices
    );

    let refused = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("mail.example.net".to_owned()),
        auth: Some(Auth::AppOnly),
        ..Default::default()
    }
    .apply(Some(&app_only))
    .unwrap_err();
    assert_eq!(refused.field, "auth");
}
