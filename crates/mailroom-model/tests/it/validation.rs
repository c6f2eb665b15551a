//! Validation: a table of good and bad inputs, each refusal checked for what it says.

use mailroom_model::validate::{check_timeout_ms, parse_port};
use mailroom_model::{Binding, Provider, Secret, ServerSettingsChange};

/// What a row of the table sets.
#[derive(Debug, Clone, Copy)]
enum Input {
    Host(&'static str),
    Port(&'static str),
    TimeoutMs(u64),
    User(&'static str),
    Password(&'static str),
    Binding(&'static str),
    PlaintextLoopback(&'static str),
}

/// Applies `input` to a new account of `provider` (with a valid host for `None`) and
/// checks the outcome: `Ok(())`, or an error whose text contains the fragment.
#[track_caller]
fn check(provider: Provider, input: Input, expected: Result<(), &str>) {
    let mut change = ServerSettingsChange {
        provider: Some(provider),
        ..Default::default()
    };
    if provider == Provider::None {
        change.host = Some("mail.example.net".to_owned());
    }
    let outcome: Result<(), String> = (|| {
        match input {
            Input::Host(host) => change.host = Some(host.to_owned()),
            Input::Port(port) => change.port = Some(parse_port(port).map_err(|e| e.to_string())?),
            Input::TimeoutMs(ms) => {
                change.timeout_ms = Some(check_timeout_ms(ms).map_err(|e| e.to_string())?)
            }
            Input::User(user) => change.smtp_user = Some(user.to_owned()),
            Input::Password(password) => change.password = Some(Secret::new(password)),
            Input::Binding(text) => {
                text.parse::<Binding>().map_err(|e| e.to_string())?;
                return Ok(());
            }
            Input::PlaintextLoopback(host) => {
                change.host = Some(host.to_owned());
                change.allow_plaintext_loopback = Some(true);
            }
        }
        change.apply(None).map(|_| ()).map_err(|e| e.to_string())
    })();
    match (outcome, expected) {
        (Ok(()), Ok(())) => {}
        (Err(error), Err(fragment)) => assert!(
            error.contains(fragment),
            "{provider} {input:?}: error `{error}` does not contain `{fragment}`"
        ),
        (outcome, expected) => {
            panic!("{provider} {input:?}: got {outcome:?}, expected {expected:?}")
        }
    }
}

#[test]
fn good_and_bad_inputs() {
    use Input::*;
    use Provider::{Google, Microsoft, None as Password_};
    let rows: &[(Provider, Input, Result<(), &str>)] = &[
        // Hosts.
        (Password_, Host("smtp.example.com"), Ok(())),
        (Password_, Host("192.0.2.10"), Ok(())),
        (Password_, Host("2001:db8::1"), Ok(())),
        (Password_, Host("mail-1.example.co.uk."), Ok(())),
        (Password_, Host(""), Err("enter the server's name")),
        (
            Password_,
            Host("smtp://smtp.example.com"),
            Err("URL scheme"),
        ),
        (Password_, Host("smtp example.com"), Err("contains a space")),
        (
            Password_,
            Host("smtp.example.com:587"),
            Err("port or a path"),
        ),
        (
            Password_,
            Host("smtp.example.com/path"),
            Err("port or a path"),
        ),
        (
            Password_,
            Host("-bad.example.com"),
            Err("not a valid host name"),
        ),
        (Password_, Host("a..b"), Err("not a valid host name")),
        (Password_, Host("smtp.exämple.com"), Err("punycode")),
        (
            Password_,
            Host("smtp.example.com\r\nRSET"),
            Err("line break"),
        ),
        (
            Password_,
            Host("smtp.example.com\0"),
            Err("control character"),
        ),
        (Microsoft, Host("smtp-mail.outlook.com"), Ok(())),
        // Ports.
        (Microsoft, Port("587"), Ok(())),
        (Microsoft, Port("1"), Ok(())),
        (Microsoft, Port("65535"), Ok(())),
        (Microsoft, Port("0"), Err("from 1 to 65535")),
        (Microsoft, Port("65536"), Err("from 1 to 65535")),
        (Microsoft, Port("-25"), Err("from 1 to 65535")),
        (Microsoft, Port("smtp"), Err("not a port number")),
        (Google, Port("587"), Err("Gmail API")),
        // Timeouts.
        (Microsoft, TimeoutMs(100_000), Ok(())),
        (Microsoft, TimeoutMs(1), Ok(())),
        (Microsoft, TimeoutMs(0), Err("out of range")),
        (Microsoft, TimeoutMs(600_001), Err("out of range")),
        (Microsoft, TimeoutMs(u64::MAX), Err("out of range")),
        // SMTP users.
        (Microsoft, User("invoices@contoso.example"), Ok(())),
        (Microsoft, User(""), Ok(())),
        (Google, User("josé@exämple.com"), Ok(())),
        (Microsoft, User("invoices"), Err("not an email address")),
        (Microsoft, User("a@b@c"), Err("not an email address")),
        (
            Google,
            User("ar@example.com\r\nBcc: x@evil.example"),
            Err("line break"),
        ),
        (Password_, User("relay-login"), Ok(())),
        (Password_, User("relay\nlogin"), Err("line break")),
        (Password_, User(&*"x".repeat(300).leak()), Err("too long")),
        // Passwords.
        (Password_, Password("correct horse battery staple"), Ok(())),
        (Password_, Password("pässwörd-ünïcode"), Ok(())),
        (Password_, Password("line\r\nbreak"), Err("line break")),
        (Microsoft, Password("secret"), Err("signs in with OAuth")),
        (Google, Password("secret"), Err("signs in with OAuth")),
        // Bindings.
        (Password_, Binding("SystemUser:User_Name:sa"), Ok(())),
        (Password_, Binding("Customer:Territory:EAST:1"), Ok(())),
        (
            Password_,
            Binding("SystemUser:User_Name"),
            Err("three parts"),
        ),
        (
            Password_,
            Binding("SystemUser::sa"),
            Err("column name: is empty"),
        ),
        (
            Password_,
            Binding(":User_Name:sa"),
            Err("business object: is empty"),
        ),
        (
            Password_,
            Binding("SystemUser:User_Name:  "),
            Err("column value: is empty"),
        ),
        (
            Password_,
            Binding("SystemUser:User_Name:s\ta"),
            Err("control character"),
        ),
        (
            Password_,
            Binding("SystemUser:User_Name:sa\r\n"),
            Err("line break"),
        ),
        // Plaintext bearer tokens, loopback only.
        (Microsoft, PlaintextLoopback("127.0.0.1"), Ok(())),
        (Microsoft, PlaintextLoopback("::1"), Ok(())),
        (Microsoft, PlaintextLoopback("localhost"), Ok(())),
        (
            Microsoft,
            PlaintextLoopback("smtp.office365.com"),
            Err("not a loopback address"),
        ),
    ];
    assert!(rows.len() >= 30);
    for (provider, input, expected) in rows {
        check(*provider, *input, *expected);
    }
}

#[test]
fn every_refusal_says_what_to_do() {
    let error = parse_port("0").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid port: `0` is not a port number; use a number from 1 to 65535, e.g. 587 for STARTTLS or 465 for implicit TLS"
    );
    let error = ServerSettingsChange::default().apply(None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid provider: is missing for a new account; give --provider microsoft, google or none"
    );
}

/// Found by the binding round-trip property: a `:` in the business object or column made a
/// binding whose `OBJECT:COLUMN:VALUE` text parsed back to another binding (or none).
#[test]
fn a_colon_is_refused_in_the_object_and_column_but_not_the_value() {
    let error = Binding::new("ü", ":", "A").unwrap_err();
    assert_eq!(error.field, "column name");
    assert!(error.to_string().contains("contains `:`"), "{error}");
    let error = Binding::new("Sales:Order", "Region", "EAST").unwrap_err();
    assert_eq!(error.field, "business object");
    let binding = Binding::new("Customer", "Territory", "EAST:1").unwrap();
    assert_eq!(binding.to_string().parse::<Binding>().unwrap(), binding);
}
