//! Every documented limit at its boundary: the last value accepted and the first refused.

use mailroom_model::validate::{
    MAX_DAILY_LIMIT, MAX_RATE_PER_MINUTE, MAX_TEXT_LEN, MAX_TIMEOUT_MS, check_host, check_limit,
    check_port, check_text, check_timeout_ms, is_loopback_host, parse_address, parse_port,
    reject_control_characters,
};
use mailroom_model::{AccountPolicy, FaxFormat, Feature, Limit};

#[test]
fn text_is_one_to_max_text_len_characters() {
    assert_eq!(MAX_TEXT_LEN, 254);
    assert!(check_text("column value", &"a".repeat(MAX_TEXT_LEN)).is_ok());
    // Characters, not bytes: 254 two-byte characters are still 254 characters.
    assert!(check_text("column value", &"é".repeat(MAX_TEXT_LEN)).is_ok());
    let error = check_text("column value", &"a".repeat(MAX_TEXT_LEN + 1)).unwrap_err();
    assert_eq!(error.field, "column value");
    assert_eq!(error.problem, "is 255 characters long");
    assert_eq!(error.fix, "use at most 254 characters");
    assert!(check_text("column value", "a").is_ok());
    for empty in ["", "   "] {
        let error = check_text("column value", empty).unwrap_err();
        assert_eq!(
            (error.problem.as_str(), error.fix.as_str()),
            ("is empty", "enter a value")
        );
    }
}

#[test]
fn control_characters_are_named() {
    assert!(reject_control_characters("smtp user", "plain text, with ünïcode").is_ok());
    for line_break in ["a\rb", "a\nb", "\r\n"] {
        let error = reject_control_characters("smtp user", line_break).unwrap_err();
        assert_eq!(error.field, "smtp user");
        assert_eq!(error.problem, "contains a line break (CR or LF)");
        assert_eq!(error.fix, "enter the value on one line");
    }
    let error = reject_control_characters("smtp user", "a\tb").unwrap_err();
    assert_eq!(error.problem, "contains the control character \\u{9}");
    assert_eq!(error.fix, "remove it and enter plain text");
    let error = reject_control_characters("smtp user", "a\u{7f}").unwrap_err();
    assert_eq!(error.problem, "contains the control character \\u{7f}");
}

#[test]
fn a_host_name_has_at_most_253_characters_and_labels_of_at_most_63() {
    // Four labels of 63 plus three dots: 255 characters, refused; 253 accepted.
    let label = "a".repeat(63);
    let long = [label.as_str(); 4].join(".");
    assert_eq!(long.len(), 255);
    let error = check_host(&long).unwrap_err();
    assert_eq!(error.problem, "is 255 characters long");
    assert_eq!(error.fix, "a DNS name has at most 253 characters");
    let exactly = format!("{}.{}.{}.{}", label, label, label, "a".repeat(61));
    assert_eq!(exactly.len(), 253);
    assert!(check_host(&exactly).is_ok());
    // A root dot does not count towards the length.
    assert!(check_host(&format!("{exactly}.")).is_ok());
    let over = format!("{}.{}.{}.{}", label, label, label, "a".repeat(62));
    assert_eq!(over.len(), 254);
    assert!(check_host(&over).is_err());

    assert!(check_host(&format!("{label}.example.com")).is_ok());
    let error = check_host(&format!("a{label}.example.com")).unwrap_err();
    assert!(
        error.problem.contains("is not a valid host name (label `a"),
        "{error}"
    );
}

#[test]
fn host_labels_are_letters_digits_hyphens_and_underscores() {
    for good in [
        "smtp.office365.com",
        "mail-1.example.net",
        "_dmarc.example.com",
        "localhost",
        "127.0.0.1",
        "::1",
        "2001:db8::25",
        "EXAMPLE.COM",
    ] {
        assert!(check_host(good).is_ok(), "{good}");
    }
    for (bad, problem) in [
        ("", "is empty"),
        ("smtp://smtp.office365.com", "contains a URL scheme"),
        ("smtp .example.com", "contains a space"),
        ("bücher.example", "contains non-ASCII characters"),
        ("smtp.example.com:25", "contains a port or a path"),
        ("smtp.example.com/x", "contains a port or a path"),
        ("-smtp.example.com", "label `-smtp`"),
        ("smtp-.example.com", "label `smtp-`"),
        ("smtp..example.com", "label ``"),
        ("smtp.exa!mple.com", "label `exa!mple`"),
        ("smtp\r.example.com", "line break"),
    ] {
        let error = check_host(bad).unwrap_err();
        assert_eq!(error.field, "host");
        assert!(error.problem.contains(problem), "{bad}: {error}");
    }
}

#[test]
fn loopback_hosts() {
    for loopback in [
        "localhost",
        "LocalHost",
        "127.0.0.1",
        "127.9.8.7",
        "::1",
        "[::1]",
    ] {
        assert!(is_loopback_host(loopback), "{loopback}");
    }
    for other in [
        "128.0.0.1",
        "0.0.0.0",
        "::",
        "10.0.0.1",
        "example.com",
        "localhost.example",
        "",
    ] {
        assert!(!is_loopback_host(other), "{other}");
    }
}

#[test]
fn ports_are_1_to_65535() {
    assert_eq!(parse_port("1").unwrap(), 1);
    assert_eq!(parse_port(" 587 ").unwrap(), 587);
    assert_eq!(parse_port("65535").unwrap(), 65535);
    for bad in ["0", "65536", "4294967296", "-1", "", "smtp"] {
        let error = parse_port(bad).unwrap_err();
        assert_eq!(error.field, "port");
        assert_eq!(error.problem, format!("`{bad}` is not a port number"));
        assert!(
            error.fix.starts_with("use a number from 1 to 65535"),
            "{error}"
        );
    }
    assert_eq!(check_port(1).unwrap(), 1);
    assert_eq!(check_port(65535).unwrap(), 65535);
    assert!(check_port(0).is_err());
    assert!(check_port(65536).is_err());
}

#[test]
fn timeouts_are_1_ms_to_ten_minutes() {
    assert_eq!(MAX_TIMEOUT_MS, 600_000);
    assert_eq!(check_timeout_ms(1).unwrap(), 1);
    assert_eq!(check_timeout_ms(100_000).unwrap(), 100_000);
    assert_eq!(check_timeout_ms(600_000).unwrap(), 600_000);
    for bad in [0, 600_001, u64::from(u32::MAX) + 1] {
        let error = check_timeout_ms(bad).unwrap_err();
        assert_eq!(error.field, "timeout");
        assert_eq!(error.problem, format!("{bad} ms is out of range"));
        assert_eq!(error.fix, "use 1 to 600000 ms; the default is 100000");
    }
}

#[test]
fn addresses_are_trimmed_and_refusals_name_the_field() {
    assert_eq!(
        parse_address("to", "  invoices@example.com ")
            .unwrap()
            .to_string(),
        "invoices@example.com"
    );
    let error = parse_address("to", "  ").unwrap_err();
    assert_eq!((error.field, error.problem.as_str()), ("to", "is empty"));
    let error = parse_address("cc", "not an address").unwrap_err();
    assert_eq!(error.field, "cc");
    assert!(
        error
            .problem
            .starts_with("`not an address` is not an email address ("),
        "{error}"
    );
    assert!(parse_address("to", "a@b.example\n").is_err());
}

#[test]
fn a_fax_number_has_1_to_15_digits() {
    let format = FaxFormat::parse("{0}@fax.example.com").unwrap();
    assert_eq!(
        format.address_for("123456789012345").unwrap().to_string(),
        "123456789012345@fax.example.com"
    );
    assert_eq!(
        format.address_for("+123456789012345").unwrap().to_string(),
        "+123456789012345@fax.example.com"
    );
    let error = format.address_for("1234567890123456").unwrap_err();
    assert_eq!(error.field, "fax number");
    assert_eq!(error.problem, "`1234567890123456` has 16 digits");
    assert_eq!(error.fix, "a fax number has 1 to 15 digits");
    let error = format.address_for("+").unwrap_err();
    assert_eq!(error.problem, "`+` has 0 digits");
    assert_eq!(
        format.address_for("7").unwrap().to_string(),
        "7@fax.example.com"
    );
    // A plus is kept only in front.
    let error = format.address_for("1+2").unwrap_err();
    assert_eq!(error.problem, "`1+2` contains `+`");
    assert_eq!(
        error.fix,
        "use digits, a leading +, spaces, dashes, dots and parentheses only"
    );
    let error = format.address_for("555 CALL").unwrap_err();
    assert_eq!(error.problem, "`555 CALL` contains the letter `C`");
    assert_eq!(
        format.address_for(" (555) 010.20-00 ").unwrap().to_string(),
        "5550102000@fax.example.com"
    );
}

#[test]
fn a_feature_name_is_1_to_64_lowercase_letters_digits_and_hyphens() {
    let ok = |name: &str| Feature::new(name.to_owned(), "d", AccountPolicy::CompanyOnly).is_ok();
    assert!(ok(&"a".repeat(64)));
    assert!(!ok(&"a".repeat(65)));
    assert!(ok("a"));
    assert!(ok("purchase-orders-2"));
    assert!(ok("orders-"));
    for bad in [
        "",
        "-orders",
        "Orders",
        "purchase_orders",
        "orders ",
        "ördërs",
    ] {
        let error = Feature::new(bad.to_owned(), "d", AccountPolicy::CompanyOnly).unwrap_err();
        assert_eq!(error.field, "feature name");
        assert_eq!(error.problem, format!("`{bad}` is not a feature name"));
    }
}

#[test]
fn an_overridden_limit_is_off_or_one_to_its_maximum() {
    for (field, max) in [
        ("rate", MAX_RATE_PER_MINUTE),
        ("daily limit", MAX_DAILY_LIMIT),
    ] {
        assert!(check_limit(field, None, max).is_ok());
        assert!(check_limit(field, Some(Limit::Off), max).is_ok());
        assert!(check_limit(field, Some(Limit::At(1)), max).is_ok());
        assert!(check_limit(field, Some(Limit::At(max)), max).is_ok());
        for refused in [0, max + 1] {
            let error = check_limit(field, Some(Limit::At(refused)), max).unwrap_err();
            assert_eq!(error.field, field);
            assert_eq!(error.problem, format!("{refused} is out of range"));
            assert!(
                error.fix.starts_with(&format!("use 1 to {max}, ")),
                "{}",
                error.fix
            );
        }
    }
}
