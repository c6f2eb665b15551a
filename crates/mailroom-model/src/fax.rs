//! Email-to-fax: a format string such as `{0}@fax.example` turns a fax number into an
//! address.

use std::fmt;
use std::str::FromStr;

use lettre::Address;
use serde::{Deserialize, Serialize};

use crate::Remedy;
use crate::validate::{self, ValidationError};

const PLACEHOLDER: &str = "{0}";

/// The most digits a fax number may have (ITU-T E.164 allows 15).
const MAX_FAX_DIGITS: usize = 15;

/// A validated email-to-fax format string with exactly one `{0}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FaxFormat(String);

impl FaxFormat {
    /// Validates a format string: one `{0}`, no other braces, and a valid address when the
    /// placeholder is replaced by a number.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "fax format";
        validate::reject_control_characters(FIELD, text)?;
        let text = text.trim();
        if text.matches(PLACEHOLDER).count() != 1 {
            return Err(ValidationError::new(
                FIELD,
                format!("`{text}` must contain the placeholder {{0}} exactly once"),
                "write e.g. {0}@fax.example.com",
            ));
        }
        if text.replacen(PLACEHOLDER, "", 1).contains(['{', '}']) {
            return Err(ValidationError::new(
                FIELD,
                format!("`{text}` has braces other than the one {{0}}"),
                "write e.g. {0}@fax.example.com",
            ));
        }
        let format = Self(text.to_owned());
        let sample = text.replacen(PLACEHOLDER, "15550102000", 1);
        if sample.parse::<Address>().is_err() {
            return Err(ValidationError::new(
                FIELD,
                format!("`{text}` does not make an email address (e.g. `{sample}`)"),
                "write e.g. {0}@fax.example.com",
            ));
        }
        Ok(format)
    }

    /// The format string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address for a fax number. Digits and a leading `+` are kept; spaces, dashes,
    /// dots and parentheses are dropped; letters and anything else are refused.
    pub fn address_for(&self, fax_number: &str) -> Result<Address, ValidationError> {
        const FIELD: &str = "fax number";
        validate::reject_control_characters(FIELD, fax_number)?;
        let trimmed = fax_number.trim();
        let mut number = String::with_capacity(trimmed.len());
        for (index, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => number.push(c),
                '+' if index == 0 => number.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                c if c.is_alphabetic() => {
                    return Err(ValidationError::new(
                        FIELD,
                        format!("`{trimmed}` contains the letter `{c}`"),
                        "enter the number in digits, e.g. +1 555 010 2000",
                    ));
                }
                c => {
                    return Err(ValidationError::new(
                        FIELD,
                        format!("`{trimmed}` contains `{}`", c.escape_debug()),
                        "use digits, a leading +, spaces, dashes, dots and parentheses only",
                    ));
                }
            }
        }
        let digits = number.trim_start_matches('+').len();
        if digits == 0 || digits > MAX_FAX_DIGITS {
            return Err(ValidationError::new(
                FIELD,
                format!("`{trimmed}` has {digits} digits"),
                format!("a fax number has 1 to {MAX_FAX_DIGITS} digits"),
            ));
        }
        let address = self.0.replacen(PLACEHOLDER, &number, 1);
        address.parse::<Address>().map_err(|error| {
            ValidationError::new(
                FIELD,
                format!("`{address}` is not a valid address ({error})"),
                "check the company account's fax format string",
            )
            .with_remedy(Remedy::ShowFaxFormat)
        })
    }
}

impl fmt::Display for FaxFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for FaxFormat {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for FaxFormat {
    type Error = ValidationError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<FaxFormat> for String {
    fn from(format: FaxFormat) -> Self {
        format.0
    }
}
