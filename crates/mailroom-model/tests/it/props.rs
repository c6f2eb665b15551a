//! Property tests (proptest) of the parsers that read what others type or send: the fax
//! format, address and host validation, bindings and their key, and the bounds of a
//! `TransportError`. `PROPTEST_CASES` scales them; `cargo xtask fuzz` runs one for longer.

use std::time::Duration;

use mailroom_model::validate::{self, MAX_TEXT_LEN};
use mailroom_model::{
    Binding, FaxFormat, MAX_ERROR_MESSAGE, MAX_RETRY_AFTER, MAX_SERVER_REPLY, TransportError,
    TransportErrorKind, binding_key,
};
use proptest::prelude::*;

/// A format string near the valid ones: a local part around `{0}` and a domain.
fn near_fax_format() -> impl Strategy<Value = String> {
    (
        "[a-z0-9.+_-]{0,6}",
        prop_oneof![
            Just("{0}"),
            Just("{0}{0}"),
            Just("{1}"),
            Just(""),
            Just("{0")
        ],
        "[a-z0-9.+_-]{0,6}",
        prop_oneof![Just("@"), Just(""), Just("@@")],
        "[a-z0-9.-]{0,12}",
        "[ \t]{0,2}",
    )
        .prop_map(|(before, placeholder, after, at, domain, space)| {
            format!("{space}{before}{placeholder}{after}{at}{domain}{space}")
        })
}

/// A binding part as typed: letters, digits, a few separators, spaces around.
fn binding_part() -> impl Strategy<Value = String> {
    "[ ]{0,2}[A-Za-z0-9_ÄÖÜäöüİı:. -]{1,20}[ ]{0,2}"
}

proptest! {
    /// Any text given as a fax format never panics; what parses prints back to itself and
    /// parses again to the same format (the round trip the database relies on).
    #[test]
    fn fax_format_round_trips(text in prop_oneof![near_fax_format(), any::<String>()]) {
        if let Ok(format) = FaxFormat::parse(&text) {
            let shown = format.to_string();
            prop_assert_eq!(&shown, format.as_str());
            let again = FaxFormat::parse(&shown);
            prop_assert_eq!(again.as_ref(), Ok(&format));
            prop_assert_eq!(shown.matches("{0}").count(), 1);
            prop_assert_eq!(shown.trim(), shown.as_str());
        }
    }

    /// Any fax number never panics against a valid format; a number of 1 to 15 digits
    /// (with spaces, dashes, dots, parentheses and a leading +) always makes an address
    /// that holds exactly its digits.
    #[test]
    fn fax_numbers(
        number in any::<String>(),
        digits in "[0-9]{1,15}",
        plus in any::<bool>(),
        separators in proptest::collection::vec(prop_oneof![Just(' '), Just('-'), Just('.'), Just('('), Just(')')], 0..15),
    ) {
        let format = FaxFormat::parse("fax-{0}@fax.example.com").expect("a valid format");
        let _ = format.address_for(&number);
        let mut typed = String::from(if plus { "+" } else { "" });
        for (index, digit) in digits.chars().enumerate() {
            typed.push(digit);
            if let Some(separator) = separators.get(index) {
                typed.push(*separator);
            }
        }
        let address = format.address_for(&typed);
        prop_assert!(address.is_ok(), "{:?}: {:?}", typed, address);
        let expected = format!("fax-{}{digits}@fax.example.com", if plus { "+" } else { "" });
        prop_assert_eq!(address.unwrap().to_string(), expected);
    }

    /// Control characters are refused exactly when present, whatever the text.
    #[test]
    fn control_characters_are_refused_exactly_when_present(text in any::<String>()) {
        let refused = validate::reject_control_characters("field", &text).is_err();
        prop_assert_eq!(refused, text.chars().any(char::is_control));
    }

    /// `check_text` accepts only one-line, non-blank text of at most `MAX_TEXT_LEN`
    /// characters.
    #[test]
    fn text_checks(text in prop_oneof![any::<String>(), "[ a-z]{0,300}"]) {
        let accepted = validate::check_text("name", &text).is_ok();
        let expected = !text.chars().any(char::is_control)
            && !text.trim().is_empty()
            && text.chars().count() <= MAX_TEXT_LEN;
        prop_assert_eq!(accepted, expected);
    }

    /// A host that passes is an IP address or a DNS name of at most 253 characters whose
    /// labels are 1 to 63 letters, digits, hyphens (not at an end) and underscores.
    #[test]
    fn accepted_hosts_are_names_or_addresses(
        host in prop_oneof![any::<String>(), "[a-z0-9_.:-]{0,70}", "([a-z0-9-]{1,63}\\.){0,5}[a-z]{0,10}\\.?"],
    ) {
        if validate::check_host(&host).is_ok() && host.parse::<std::net::IpAddr>().is_err() {
            let name = host.strip_suffix('.').unwrap_or(&host);
            prop_assert!(name.len() <= 253);
            for label in name.split('.') {
                prop_assert!(!label.is_empty() && label.len() <= 63, "{:?}", host);
                prop_assert!(!label.starts_with('-') && !label.ends_with('-'), "{:?}", host);
                prop_assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{:?}", host);
            }
        }
    }

    /// Every port prints and parses back; anything else parsed as a port is 1 to 65535.
    #[test]
    fn ports(port in 1u16..=65535, text in any::<String>(), number in any::<u32>()) {
        prop_assert_eq!(validate::parse_port(&port.to_string()), Ok(port));
        prop_assert_eq!(validate::parse_port(&format!(" {port} ")), Ok(port));
        if let Ok(parsed) = validate::parse_port(&text) {
            prop_assert!(parsed >= 1);
        }
        prop_assert_eq!(validate::check_port(number).is_ok(), (1..=65535).contains(&number));
    }

    /// Any text given as an address never panics; an accepted one prints back to an
    /// address that parses to itself.
    #[test]
    fn addresses(text in prop_oneof![any::<String>(), "[ ]?[a-z0-9.+_-]{0,10}@[a-z0-9.-]{0,12}[ ]?"]) {
        if let Ok(address) = validate::parse_address("to", &text) {
            let shown = address.to_string();
            prop_assert_eq!(shown.as_str(), text.trim());
            prop_assert_eq!(validate::parse_address("to", &shown), Ok(address));
        }
    }

    /// A binding prints as `OBJECT:COLUMN:VALUE` and parses back to itself (the value may
    /// hold colons, the object and column may not).
    #[test]
    fn bindings_round_trip(object in binding_part(), column in binding_part(), value in binding_part()) {
        if let Ok(binding) = Binding::new(&object, &column, &value) {
            let text = binding.to_string();
            prop_assert_eq!(text.parse::<Binding>(), Ok(binding.clone()), "{}", text);
            prop_assert!(!binding.business_object.contains(':') && !binding.column_name.contains(':'));
        }
    }

    /// Any text parsed as a binding never panics; what parses round-trips.
    #[test]
    fn any_binding_text(text in any::<String>()) {
        if let Ok(binding) = text.parse::<Binding>() {
            prop_assert_eq!(binding.to_string().parse::<Binding>(), Ok(binding));
        }
    }

    /// The binding key ignores case and surrounding spaces, is a fixed point of its own
    /// normalisation, and tells bindings apart exactly when their normalised parts differ.
    #[test]
    fn binding_keys_normalise(
        a in (binding_part(), binding_part(), binding_part()),
        b in (binding_part(), binding_part(), binding_part()),
    ) {
        let key = binding_key(&a.0, &a.1, &a.2);
        let shouted = binding_key(&format!(" {} ", a.0.to_uppercase()), &a.1.to_uppercase(), &a.2.to_uppercase());
        // Upper- then lower-casing is not always the identity in Unicode (e.g. `ı`, `İ`):
        // compare with the key of the lower-cased parts, which must equal the original's.
        let lowered = binding_key(&a.0.to_lowercase(), &a.1.to_lowercase(), &a.2.to_lowercase());
        prop_assert_eq!(&lowered, &key);
        let normalised = |part: &str| part.trim().to_lowercase();
        if a.0.to_uppercase().to_lowercase() == a.0.to_lowercase()
            && a.1.to_uppercase().to_lowercase() == a.1.to_lowercase()
            && a.2.to_uppercase().to_lowercase() == a.2.to_lowercase()
        {
            prop_assert_eq!(&shouted, &key);
        }
        let parts: Vec<&str> = key.split('\u{1f}').collect();
        prop_assert_eq!(parts.len(), 3);
        prop_assert_eq!(binding_key(parts[0], parts[1], parts[2]), key.clone());
        let same = normalised(&a.0) == normalised(&b.0)
            && normalised(&a.1) == normalised(&b.1)
            && normalised(&a.2) == normalised(&b.2);
        prop_assert_eq!(binding_key(&b.0, &b.1, &b.2) == key, same);
    }

    /// Whatever a server says and however long it asks to wait, a `TransportError` keeps
    /// at most `MAX_SERVER_REPLY` bytes of the reply, `MAX_ERROR_MESSAGE` of the message,
    /// a prefix of each, and a wait of at most `MAX_RETRY_AFTER`.
    #[test]
    fn transport_errors_are_bounded(
        message in prop_oneof![any::<String>(), ".{2040,2100}"],
        reply in prop_oneof![any::<String>(), ".{1000,1100}", "[a-zé]{0,3000}"],
        wait in any::<u64>(),
        nanos in 0u32..1_000_000_000,
    ) {
        let error = TransportError::new(TransportErrorKind::Permanent, message.clone())
            .with_server_reply(reply.clone())
            .with_retry_after(Duration::new(wait, nanos));
        prop_assert!(error.message().len() <= MAX_ERROR_MESSAGE);
        let server_reply = error.server_reply().expect("a reply");
        prop_assert!(server_reply.len() <= MAX_SERVER_REPLY);
        if reply.len() <= MAX_SERVER_REPLY {
            prop_assert_eq!(server_reply, reply.as_str());
        } else {
            let kept = server_reply.strip_suffix("...").expect("a cut reply is marked");
            prop_assert!(reply.starts_with(kept));
            prop_assert!(kept.len() + 3 + 4 > MAX_SERVER_REPLY, "cut too short: {}", kept.len());
        }
        if message.len() <= MAX_ERROR_MESSAGE {
            prop_assert_eq!(error.message(), message.as_str());
        } else {
            prop_assert!(message.starts_with(error.message().strip_suffix("...").expect("marked")));
        }
        prop_assert!(error.retry_after().expect("a wait") <= MAX_RETRY_AFTER);
    }
}
