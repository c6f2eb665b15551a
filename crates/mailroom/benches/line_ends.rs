//! `cargo xtask bench line-ends`: the time to format a message whose text body has bare LF
//! line ends (2 MB and 8 MB) against the same body with CRLF line ends, in the same run.
//! Line ends are normalised by one linear pass, so the ratio stays near 1 whatever the
//! size (a quadratic pass would grow with it). Not a test: it prints figures and asserts
//! nothing.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use mailroom::MessageDraft;

/// A text body of at least `size` bytes in lines of 74 characters ending in `line_end`.
fn text_body(size: usize, line_end: &str) -> String {
    let line = "The quick brown fox jumps over the lazy dog; one line of an order statement.";
    let mut text = String::with_capacity(size + 100);
    while text.len() < size {
        text.push_str(line);
        text.push_str(line_end);
    }
    text
}

/// The median time of `runs` formattings of a message with this text body.
fn format_time(text: &str, runs: usize) -> Duration {
    let draft = MessageDraft {
        from: Some("orders@example.com".to_owned()),
        to: vec!["buyer@example.com".to_owned()],
        subject: "Statement".to_owned(),
        text: Some(text.to_owned()),
        ..MessageDraft::default()
    };
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let built = draft.build("orders@example.com", None).expect("a message");
            let took = started.elapsed();
            std::hint::black_box(built.bytes.len());
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runs = 9;
    println!(
        "line ends: formatting a text body, bare LF against CRLF (median of {runs} runs each)"
    );
    for size in [2_000_000, 8_000_000] {
        let crlf_body = text_body(size, "\r\n");
        let lf_body = text_body(size, "\n");
        // Warm up the allocator and caches once for each.
        format_time(&crlf_body, 1);
        format_time(&lf_body, 1);
        let crlf = format_time(&crlf_body, runs);
        let lf = format_time(&lf_body, runs);
        println!(
            "  {:>2} MB: CRLF {:>8.2} ms, LF {:>8.2} ms, LF/CRLF {:.2}",
            size / 1_000_000,
            crlf.as_secs_f64() * 1e3,
            lf.as_secs_f64() * 1e3,
            lf.as_secs_f64() / crlf.as_secs_f64()
        );
    }
}
