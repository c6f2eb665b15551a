//! The reply reader never allocates past its bound, whatever a server sends: measured by
//! a capping allocator that is this test binary's global allocator. While the reader
//! runs, the cap is what was allocated before plus the bound; an allocation past it fails
//! and aborts the test. One test in its own binary, so nothing else allocates meanwhile.

use std::alloc::System;

use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// What the reader may hold at once: its 8 KiB read buffer, a reply's raw bytes (at most
/// 8 KiB, with room to grow), the parser's text (at most 4 KiB) and one finished reply,
/// with slack for the allocator's rounding. Four times less than any input below.
const BOUND: usize = 128 * 1024;

fn reply_lines() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((200u16..600, any::<bool>(), "[ -~]{0,120}"), 1..200).prop_map(
        |lines| {
            lines
                .into_iter()
                .flat_map(|(code, more, text)| {
                    format!("{code}{}{text}\r\n", if more { '-' } else { ' ' }).into_bytes()
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_reply_reader_never_allocates_past_its_bound(
        noise in proptest::collection::vec(any::<u8>(), 0..600_000),
        replies in reply_lines(),
        endless in 0usize..600_000,
        pieces in proptest::collection::vec(1usize..20_000, 1..8),
    ) {
        // An endless line, and an endless run of continuation lines.
        let mut long_line = b"250-".to_vec();
        long_line.resize(4 + endless, b'x');
        let continuations = b"250-\r\n".repeat(endless / 6 + 1);
        let finals = replies.split(|&byte| byte == b'\n').filter(|line| line.get(3) == Some(&b' ')).count();
        let mut outcomes = Vec::with_capacity(4);
        for input in [&noise, &replies, &long_line, &continuations] {
            let before = ALLOCATOR.allocated();
            ALLOCATOR.set_limit(before + BOUND).expect("set the cap");
            let outcome = mailroom_smtp::read_replies_in_pieces(input, &pieces);
            ALLOCATOR.set_limit(usize::MAX).expect("lift the cap");
            outcomes.push(outcome);
        }
        // And the reader did its work under the cap: well-formed replies all read (unless
        // one was past the reply bound), endless input refused.
        let (read, error) = &outcomes[1];
        prop_assert!(error.is_some() || *read == finals, "{read} of {finals}: {error:?}");
        for (input, (_, error)) in [(&long_line, &outcomes[2]), (&continuations, &outcomes[3])] {
            if input.len() > 16 * 1024 {
                prop_assert!(error.is_some(), "{} bytes without a refusal", input.len());
            }
        }
    }
}
