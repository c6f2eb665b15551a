//! Email-to-fax format strings and fax numbers.

use mailroom_model::FaxFormat;

#[track_caller]
fn check(format: &str, number: &str, expected: Result<&str, &str>) {
    let format = FaxFormat::parse(format).unwrap();
    match (format.address_for(number), expected) {
        (Ok(address), Ok(expected)) => assert_eq!(address.to_string(), expected),
        (Err(error), Err(fragment)) => {
            assert!(
                error.to_string().contains(fragment),
                "`{error}` lacks `{fragment}`"
            )
        }
        (got, expected) => panic!("{number:?}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn fax_numbers_become_addresses() {
    check(
        "{0}@fax.example.com",
        "+1 (555) 010-2000",
        Ok("+15550102000@fax.example.com"),
    );
    check(
        "{0}@fax.example.com",
        "555.010.2000",
        Ok("5550102000@fax.example.com"),
    );
    check(
        "fax-{0}@relay.example.com",
        "0049 30 1234",
        Ok("fax-0049301234@relay.example.com"),
    );
    check(
        "{0}@fax.example.com",
        "  5550102000  ",
        Ok("5550102000@fax.example.com"),
    );
    check(
        "{0}@fax.example.com",
        "555-CALL-NOW",
        Err("contains the letter `C`"),
    );
    check("{0}@fax.example.com", "5550+102000", Err("contains `+`"));
    check("{0}@fax.example.com", "555#0102", Err("contains `#`"));
    check("{0}@fax.example.com", "", Err("has 0 digits"));
    check("{0}@fax.example.com", "( - )", Err("has 0 digits"));
    check(
        "{0}@fax.example.com",
        "1234567890123456",
        Err("has 16 digits"),
    );
    check(
        "{0}@fax.example.com",
        "555\r\nBcc: x@evil.example",
        Err("line break"),
    );
}

#[test]
fn format_strings_need_exactly_one_placeholder() {
    for (format, fragment) in [
        ("fax.example.com", "exactly once"),
        ("{0}{0}@fax.example.com", "exactly once"),
        ("{1}@fax.example.com", "exactly once"),
        ("{0}@{fax}.example.com", "braces"),
        ("{0}", "does not make an email address"),
        ("{0} @fax.example.com", "does not make an email address"),
        ("{0}@fax.example.com\n", "line break"),
    ] {
        let error = FaxFormat::parse(format).unwrap_err();
        assert!(
            error.to_string().contains(fragment),
            "{format:?}: `{error}`"
        );
    }
    assert_eq!(
        FaxFormat::parse(" {0}@fax.example.com ").unwrap().as_str(),
        "{0}@fax.example.com"
    );
}
