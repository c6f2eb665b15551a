//! Property tests (proptest) of what an SMTP server says back: replies as lettre parses
//! them, their classification (`map_reply`), the `334` challenge and EHLO's `AUTH` lines.
//! Kept apart from `reply.rs`, through its crate-visible API only. `PROPTEST_CASES`
//! scales them; `cargo xtask fuzz smtp-reply` runs them for longer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailroom_model::{MAX_ERROR_MESSAGE, MAX_SERVER_REPLY, TransportErrorKind};
use proptest::prelude::*;

use crate::reply::{Failure, Reply, Stage, map_reply};
use crate::sasl::{OAuthMechanism, choose_oauth_mechanism, decode_challenge, offered_mechanisms};

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Connect),
        Just(Stage::Greeting),
        Just(Stage::StartTls),
        Just(Stage::Authenticate),
        Just(Stage::MailFrom),
        "[a-z0-9.@-]{1,30}".prop_map(Stage::RcptTo),
        Just(Stage::Data),
        Just(Stage::Message),
    ]
}

/// Reply text near what servers send: an enhanced code (valid or not) and words.
fn reply_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (
            prop_oneof![
                Just("5.7.139"),
                Just("5.7.3"),
                Just("5.7.30"),
                Just("5.7.57"),
                Just("5.2.252"),
                Just("5.7.60"),
                Just("5.5.124"),
                Just("5.7.4"),
                Just("5.3.4"),
                Just("4.7.0"),
                Just("5.x.1"),
                Just("5..1"),
                Just(""),
            ],
            prop_oneof![
                Just(" SmtpClientAuthentication is disabled"),
                Just(" basic authentication is disabled"),
                Just(" Authentication unsuccessful"),
                Just(""),
            ],
            "[ -~]{0,40}",
        )
            .prop_map(|(code, known, words)| format!("{code}{known} {words}")),
        ".{1000,1200}",
    ]
}

fn code() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(421u16),
        Just(450),
        Just(451),
        Just(452),
        Just(501),
        Just(504),
        Just(530),
        Just(535),
        Just(538),
        Just(550),
        Just(552),
        Just(554),
        0u16..1000,
    ]
}

proptest! {
    /// Any reply at any stage maps without a panic to an error whose message and quoted
    /// reply stay within their bounds, which quotes the reply as sent when it is short, and
    /// whose kind follows the reply's class: 4xx is worth a retry (unless it says 5.3.4,
    /// too large), a code outside 400..=599 is permanent.
    #[test]
    fn any_reply_is_classified_within_bounds(
        stage in stage(),
        code in code(),
        text in reply_text(),
        user in "[a-z0-9.@]{1,40}",
    ) {
        let reply = Reply { code, text: text.clone() };
        let error = map_reply(&stage, &reply, &user);
        prop_assert!(error.message().len() <= MAX_ERROR_MESSAGE);
        let quoted = error.server_reply().expect("the server's words");
        prop_assert!(quoted.len() <= MAX_SERVER_REPLY);
        let full = reply.to_string();
        if full.len() <= MAX_SERVER_REPLY {
            prop_assert_eq!(quoted, full.as_str());
        }
        let too_large = text.split_whitespace().next() == Some("5.3.4");
        match code {
            // 4xx replies are worth retrying (`432 4.3.2` on fewer connections).
            400..=499 if !too_large => prop_assert!(error.is_transient(), "{:?}", error.kind()),
            400..=599 => {}
            _ if !too_large => prop_assert_eq!(error.kind(), TransportErrorKind::Permanent),
            _ => prop_assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge),
        }
        prop_assert!(error.remediation().is_some_and(|r| !r.is_empty()));
    }

    /// The server's words are quoted once, in `server_reply`: the message is mailroom's
    /// own (it names the user and the stage, never the reply text).
    #[test]
    fn the_reply_text_stays_out_of_the_message(
        stage in stage(),
        code in code(),
        marker in "ZQX[a-z]{6}",
        user in "[a-z0-9.@]{1,40}",
    ) {
        let reply = Reply { code, text: format!("5.7.3 {marker}") };
        let error = map_reply(&stage, &reply, &user);
        prop_assert!(!error.message().contains(&marker), "{}", error.message());
        prop_assert!(error.server_reply().is_some_and(|r| r.contains(&marker)));
    }

    /// A `334` challenge (any text, or base64 of any text) decodes without a panic, a
    /// base64 one to exactly its text; the error made of it stays within its bounds.
    #[test]
    fn challenges_decode(
        challenge in prop_oneof![any::<String>(), ".{0,3000}"],
        raw in any::<String>(),
        code in code(),
    ) {
        prop_assert_eq!(decode_challenge(&STANDARD.encode(&challenge)), challenge.clone());
        let _ = decode_challenge(&raw);
        let failure = Failure::TokenChallenge {
            mechanism: "XOAUTH2",
            challenge: decode_challenge(&STANDARD.encode(&challenge)),
            reply: Reply { code, text: raw },
        };
        let error = failure.into_transport_error("box@example.com");
        prop_assert!(error.message().len() <= MAX_ERROR_MESSAGE);
        prop_assert!(error.server_reply().is_none_or(|r| r.len() <= MAX_SERVER_REPLY));
    }

    /// EHLO's `AUTH` lines: the offered mechanisms are upper-cased, each once, and an OAuth
    /// mechanism is chosen exactly when one is offered, XOAUTH2 first.
    #[test]
    fn auth_keywords(
        lines in proptest::collection::vec(
            prop_oneof![
                any::<String>(),
                proptest::collection::vec(
                    prop_oneof![Just("xoauth2".to_owned()), Just("OAUTHBEARER".to_owned()), Just("PLAIN".to_owned()), "[A-Za-z0-9-]{1,12}"],
                    0..6,
                ).prop_map(|words| format!("AUTH {}", words.join(" "))),
            ],
            0..6,
        ),
    ) {
        let offered = offered_mechanisms(lines.iter().map(String::as_str));
        for (index, mechanism) in offered.iter().enumerate() {
            prop_assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
            prop_assert!(!offered[..index].contains(mechanism));
        }
        let expected = if offered.iter().any(|m| m == "XOAUTH2") {
            Some(OAuthMechanism::Xoauth2)
        } else if offered.iter().any(|m| m == "OAUTHBEARER") {
            Some(OAuthMechanism::OAuthBearer)
        } else {
            None
        };
        prop_assert_eq!(choose_oauth_mechanism(lines.iter().map(String::as_str)), expected);
    }
}
