//! The OAuth SASL mechanisms: XOAUTH2 and OAUTHBEARER
//! (RFC 7628) initial responses, the commands that carry them, and the server's `334`
//! error challenge.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The OAuth mechanisms, strongest first is not a thing here: a server that offers XOAUTH2
/// gets XOAUTH2 (what Microsoft documents), one that offers only OAUTHBEARER gets that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuthMechanism {
    Xoauth2,
    OAuthBearer,
}

impl OAuthMechanism {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OAuthMechanism::Xoauth2 => "XOAUTH2",
            OAuthMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// What the client answers to the server's error challenge: RFC 7628 §3.2.3 requires
    /// a single `%x01` for OAUTHBEARER; Google's XOAUTH2 document asks for an empty line.
    pub(crate) fn challenge_answer(self) -> AuthLine {
        AuthLine(match self {
            OAuthMechanism::Xoauth2 => String::new(),
            OAuthMechanism::OAuthBearer => STANDARD.encode([0x01]),
        })
    }

    /// The `AUTH` command with the base64 initial response.
    pub(crate) fn command(self, user: &str, token: &str, host: &str, port: u16) -> AuthLine {
        let initial = match self {
            OAuthMechanism::Xoauth2 => xoauth2_initial_response(user, token),
            OAuthMechanism::OAuthBearer => oauthbearer_initial_response(user, token, host, port),
        };
        AuthLine(format!("AUTH {} {}", self.name(), STANDARD.encode(initial)))
    }
}

/// The XOAUTH2 initial response before base64:
/// `user=<user>\x01auth=Bearer <token>\x01\x01`.
pub fn xoauth2_initial_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// The OAUTHBEARER (RFC 7628) initial response before base64:
/// `n,a=<user>,\x01host=<host>\x01port=<port>\x01auth=Bearer <token>\x01\x01`; `,` and `=`
/// in the user are escaped as RFC 5801 requires.
pub fn oauthbearer_initial_response(user: &str, token: &str, host: &str, port: u16) -> String {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
}

/// One line of an SASL exchange. It may hold a token or a password, so `Debug` prints
/// nothing of it; `Display` (what goes on the wire) adds the CRLF.
pub(crate) struct AuthLine(String);

impl AuthLine {
    pub(crate) fn new(line: String) -> Self {
        Self(line)
    }
}

impl fmt::Display for AuthLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)?;
        f.write_str("\r\n")
    }
}

impl fmt::Debug for AuthLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthLine(<redacted>)")
    }
}

/// The text of a `334` challenge: base64 JSON from a server rejecting a token, decoded
/// when it decodes, else as the server sent it.
pub(crate) fn decode_challenge(text: &str) -> String {
    let text = text.trim();
    match STANDARD.decode(text) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(decoded) => decoded,
            Err(_) => text.to_owned(),
        },
        Err(_) => text.to_owned(),
    }
}

/// Which OAuth mechanism the `AUTH` keywords of an EHLO reply allow, XOAUTH2 first.
pub(crate) fn choose_oauth_mechanism<'a>(
    ehlo_lines: impl IntoIterator<Item = &'a str>,
) -> Option<OAuthMechanism> {
    let offered = offered_mechanisms(ehlo_lines);
    if offered.iter().any(|mechanism| mechanism == "XOAUTH2") {
        Some(OAuthMechanism::Xoauth2)
    } else if offered.iter().any(|mechanism| mechanism == "OAUTHBEARER") {
        Some(OAuthMechanism::OAuthBearer)
    } else {
        None
    }
}

/// The mechanisms the `AUTH` lines of an EHLO reply offer, upper-cased, in order.
pub(crate) fn offered_mechanisms<'a>(ehlo_lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut offered: Vec<String> = Vec::new();
    for line in ehlo_lines {
        let mut words = line.split_whitespace();
        if words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("AUTH"))
        {
            for mechanism in words.map(str::to_ascii_uppercase) {
                if !offered.contains(&mechanism) {
                    offered.push(mechanism);
                }
            }
        }
    }
    offered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_initial_response_is_the_documented_format() {
        assert_eq!(
            xoauth2_initial_response("someone@example.com", "ya29.token"),
            "user=someone@example.com\x01auth=Bearer ya29.token\x01\x01"
        );
        // The example of Google's XOAUTH2 document, byte for byte.
        assert_eq!(
            STANDARD.encode(xoauth2_initial_response(
                "someuser@example.com",
                "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
            )),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_initial_response_follows_rfc_7628() {
        // RFC 7628 §4.1's example.
        assert_eq!(
            oauthbearer_initial_response(
                "user@example.com",
                "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                "server.example.com",
                143
            ),
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert_eq!(
            oauthbearer_initial_response("a,b=c", "t", "h", 1),
            "n,a=a=2Cb=3Dc,\x01host=h\x01port=1\x01auth=Bearer t\x01\x01"
        );
    }

    #[test]
    fn commands_and_answers_on_the_wire() {
        assert_eq!(
            OAuthMechanism::Xoauth2
                .command("u@x", "t", "h", 587)
                .to_string(),
            format!(
                "AUTH XOAUTH2 {}\r\n",
                STANDARD.encode("user=u@x\x01auth=Bearer t\x01\x01")
            )
        );
        assert_eq!(
            OAuthMechanism::Xoauth2.challenge_answer().to_string(),
            "\r\n"
        );
        assert_eq!(
            OAuthMechanism::OAuthBearer.challenge_answer().to_string(),
            "AQ==\r\n"
        );
        let line = OAuthMechanism::OAuthBearer.command("u@x", "secret-token", "h", 587);
        assert_eq!(format!("{line:?}"), "AuthLine(<redacted>)");
    }

    #[test]
    fn challenges_are_decoded() {
        assert_eq!(
            decode_challenge(
                "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
            ),
            r#"{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}"#
        );
        assert_eq!(decode_challenge("not base64!"), "not base64!");
    }

    #[track_caller]
    fn check_choice(lines: &[&str], expected: Option<OAuthMechanism>) {
        assert_eq!(choose_oauth_mechanism(lines.iter().copied()), expected);
    }

    #[test]
    fn mechanism_choice() {
        check_choice(
            &["smtp.example.com", "AUTH LOGIN XOAUTH2"],
            Some(OAuthMechanism::Xoauth2),
        );
        check_choice(&["AUTH OAUTHBEARER XOAUTH2"], Some(OAuthMechanism::Xoauth2));
        check_choice(
            &["8BITMIME", "AUTH PLAIN OAUTHBEARER"],
            Some(OAuthMechanism::OAuthBearer),
        );
        check_choice(&["AUTH PLAIN LOGIN"], None);
        check_choice(&["STARTTLS"], None);
    }
}
