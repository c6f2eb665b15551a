//! Validation of the values an administrator types: each check says what is wrong and how
//! to fix it.

use std::net::IpAddr;

use crate::pacing::Limit;
use lettre::Address;

pub use crate::error::ValidationError;

/// The longest timeout accepted, in milliseconds (10 minutes): longer waits only hide a dead
/// server from the agent.
pub const MAX_TIMEOUT_MS: u32 = 600_000;

/// The longest text accepted for names, users and binding parts.
pub const MAX_TEXT_LEN: usize = 254;

/// Refuses CR, LF and every other control character: such values could inject SMTP
/// commands or mail headers.
pub fn reject_control_characters(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.contains(['\r', '\n']) {
        return Err(ValidationError::new(
            field,
            "contains a line break (CR or LF)",
            "enter the value on one line",
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            format!("contains the control character {}", c.escape_unicode()),
            "remove it and enter plain text",
        ));
    }
    Ok(())
}

/// Checks the length and characters of a short text value; empty is refused.
pub fn check_text(field: &'static str, value: &str) -> Result<(), ValidationError> {
    reject_control_characters(field, value)?;
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "is empty", "enter a value"));
    }
    if value.chars().count() > MAX_TEXT_LEN {
        return Err(ValidationError::new(
            field,
            format!("is {} characters long", value.chars().count()),
            format!("use at most {MAX_TEXT_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks an SMTP host: a DNS name or an IP address, without scheme, port, path or spaces.
pub fn check_host(host: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "host";
    reject_control_characters(FIELD, host)?;
    if host.is_empty() {
        return Err(ValidationError::new(
            FIELD,
            "is empty",
            "enter the server's name or IP address, e.g. smtp.office365.com",
        ));
    }
    if host.contains("://") {
        return Err(ValidationError::new(
            FIELD,
            format!("`{host}` contains a URL scheme"),
            "enter only the name, e.g. smtp.office365.com instead of smtp://smtp.office365.com",
        ));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            FIELD,
            format!("`{host}` contains a space"),
            "enter the name without spaces",
        ));
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if !host.is_ascii() {
        return Err(ValidationError::new(
            FIELD,
            format!("`{host}` contains non-ASCII characters"),
            "enter the ASCII (punycode, xn--) form of the name",
        ));
    }
    if host.contains([':', '/']) {
        return Err(ValidationError::new(
            FIELD,
            format!("`{host}` contains a port or a path"),
            "enter only the name and give the port with --port",
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(ValidationError::new(
            FIELD,
            format!("is {} characters long", name.len()),
            "a DNS name has at most 253 characters",
        ));
    }
    for label in name.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !label_ok {
            return Err(ValidationError::new(
                FIELD,
                format!("`{host}` is not a valid host name (label `{label}`)"),
                "use letters, digits, hyphens and dots, e.g. mail.example.com",
            ));
        }
    }
    Ok(())
}

/// True for `localhost` and the loopback addresses (127.0.0.0/8, ::1).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a port number given as text: 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, ValidationError> {
    match text.trim().parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(ValidationError::new(
            "port",
            format!("`{}` is not a port number", text.escape_debug()),
            "use a number from 1 to 65535, e.g. 587 for STARTTLS or 465 for implicit TLS",
        )),
    }
}

/// Checks a port number: 1 to 65535.
pub fn check_port(port: u32) -> Result<u16, ValidationError> {
    parse_port(&port.to_string())
}

/// Checks a timeout in milliseconds: more than zero and at most [`MAX_TIMEOUT_MS`].
pub fn check_timeout_ms(timeout_ms: u64) -> Result<u32, ValidationError> {
    if timeout_ms == 0 || timeout_ms > u64::from(MAX_TIMEOUT_MS) {
        return Err(ValidationError::new(
            "timeout",
            format!("{timeout_ms} ms is out of range"),
            format!("use 1 to {MAX_TIMEOUT_MS} ms; the default is 100000"),
        ));
    }
    Ok(timeout_ms as u32)
}

/// The highest messages-per-minute limit an account may set.
pub const MAX_RATE_PER_MINUTE: u32 = 100_000;

/// The highest daily limit an account may set.
pub const MAX_DAILY_LIMIT: u32 = 10_000_000;

/// Checks an overridden limit: [`Limit::Off`], or 1 to `max`.
pub fn check_limit(
    field: &'static str,
    limit: Option<Limit>,
    max: u32,
) -> Result<(), ValidationError> {
    match limit {
        Some(Limit::At(value)) if value == 0 || value > max => Err(ValidationError::new(
            field,
            format!("{value} is out of range"),
            format!("use 1 to {max}, `off` for no limit, or `default` for the provider's"),
        )),
        _ => Ok(()),
    }
}

/// Parses an email address with lettre's RFC 5321 parser (not a regex).
pub fn parse_address(field: &'static str, text: &str) -> Result<Address, ValidationError> {
    reject_control_characters(field, text)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(
            field,
            "is empty",
            "enter an email address such as invoices@example.com",
        ));
    }
    trimmed.parse::<Address>().map_err(|error| {
        ValidationError::new(
            field,
            format!("`{trimmed}` is not an email address ({error})"),
            "enter an address such as invoices@example.com",
        )
    })
}
