//! The one thing mailroom reads from an app's certificate besides its key: its validity
//! (RFC 5280 §4.1: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter },
//! ... } ... }`, each time a `UTCTime` or `GeneralizedTime`), so `doctor` can warn before
//! the certificate expires and an expired one is refused before Entra refuses it. The
//! signature checks are the identity provider's; this only reads DER, bounded by the
//! input, and answers `None` for anything it does not understand.

use chrono::{DateTime, NaiveDate, Utc};

/// One DER element: its tag and contents; the rest of the input after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

fn digits(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, years 1950-2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<DateTime<Utc>> {
    let (year, rest) = match (tag, value.len()) {
        (UTC_TIME, 13) => {
            let year = digits(&value[..2])?;
            (
                if year >= 50 { 1900 + year } else { 2000 + year },
                &value[2..],
            )
        }
        (GENERALIZED_TIME, 15) => (digits(&value[..4])?, &value[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&rest[at..at + 2]);
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, field(0)?, field(2)?)?
        .and_hms_opt(field(4)?, field(6)?, field(8)?)
        .map(|naive| naive.and_utc())
}

/// The certificate's validity, `(notBefore, notAfter)`.
pub(crate) fn validity(der: &[u8]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (tag, not_before, rest) = element(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    Some((not_before, time(tag, not_after)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn reads_the_test_certificates_validity() {
        let der = CertificateDer::from_pem_slice(
            include_str!("../tests/data/app-only-test-cert.pem").as_bytes(),
        )
        .unwrap();
        let (not_before, not_after) = validity(der.as_ref()).unwrap();
        // `openssl x509 -noout -dates` of the test certificate.
        assert_eq!(not_before.to_rfc3339(), TEST_NOT_BEFORE);
        assert_eq!(not_after.to_rfc3339(), TEST_NOT_AFTER);
    }

    const TEST_NOT_BEFORE: &str = "2026-12-02T04:28:20+00:00";
    const TEST_NOT_AFTER: &str = "2126-11-08T04:28:20+00:00";

    #[test]
    fn reads_der_lengths_in_short_and_long_form_and_nothing_else() {
        let rest: &[u8] = b"next";
        // Short form, up to 127.
        assert_eq!(
            element(&[0x04, 0x02, 7, 8, b'n', b'e', b'x', b't']),
            Some((0x04, &[7u8, 8][..], rest))
        );
        let long = [0x04u8, 0x7f]
            .into_iter()
            .chain([1u8; 0x7f])
            .collect::<Vec<_>>();
        assert_eq!(element(&long).map(|(_, value, _)| value.len()), Some(0x7f));
        // Long form: one to four length bytes, exactly as many as it says.
        assert_eq!(element(&[0x04, 0x81, 0x00]), Some((0x04, &[][..], &[][..])));
        assert_eq!(
            element(&[0x04, 0x84, 0, 0, 0, 2, 7, 8]),
            Some((0x04, &[7u8, 8][..], &[][..]))
        );
        assert_eq!(element(&[0x04, 0x85, 0, 0, 0, 0, 2, 7, 8]), None);
        assert_eq!(element(&[0x04, 0x82, 0x01]), None);
        // 0x80 (BER's indefinite length) is no DER length, whatever follows.
        let indefinite = [0x04u8, 0x80]
            .into_iter()
            .chain([0u8; 200])
            .collect::<Vec<_>>();
        assert_eq!(element(&indefinite), None);
        // Contents shorter than the length.
        assert_eq!(element(&[0x04, 0x03, 7, 8]), None);
        assert_eq!(element(&[0x04]), None);
    }

    #[test]
    fn digits_are_ascii_digits_only() {
        assert_eq!(digits(b"07"), Some(7));
        assert_eq!(digits(b"2051"), Some(2051));
        assert_eq!(digits(b""), None);
        // `str::parse` takes a sign; a DER time does not.
        assert_eq!(digits(b"+1"), None);
        assert_eq!(digits(b"1a"), None);
    }

    #[test]
    fn reads_both_time_forms() {
        assert_eq!(
            time(UTC_TIME, b"491231235959Z").unwrap().to_rfc3339(),
            "2049-12-31T23:59:59+00:00"
        );
        assert_eq!(
            time(UTC_TIME, b"500101000000Z").unwrap().to_rfc3339(),
            "1950-01-01T00:00:00+00:00"
        );
        assert_eq!(
            time(GENERALIZED_TIME, b"20510615120000Z")
                .unwrap()
                .to_rfc3339(),
            "2051-06-15T12:00:00+00:00"
        );
        // Not UTC, a bad date, a wrong length, signs where digits belong.
        assert_eq!(time(UTC_TIME, b"491231235959+"), None);
        assert_eq!(time(UTC_TIME, b"491331235959Z"), None);
        assert_eq!(time(GENERALIZED_TIME, b"491231235959Z"), None);
        assert_eq!(time(UTC_TIME, b"4+1231235959Z"), None);
    }

    #[test]
    fn anything_else_is_none_without_panicking() {
        let der = CertificateDer::from_pem_slice(
            include_str!("../tests/data/app-only-test-cert.pem").as_bytes(),
        )
        .unwrap();
        let der = der.as_ref();
        // Every truncation is refused (the outer length runs past the end); corrupted
        // bytes never panic.
        for end in 0..der.len() {
            assert_eq!(validity(&der[..end]), None, "truncated at {end}");
        }
        for at in 0..der.len().min(64) {
            let mut bad = der.to_vec();
            bad[at] ^= 0xff;
            let _ = validity(&bad);
        }
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x02, 0x01, 0x00]), None);
    }
}
