//! The sandbox's integration tests: its authority, SMTP server and Gmail endpoint, driven
//! by mailroom's own clients (mailroom-tokens, mailroom-smtp, mailroom-gmail) and by raw
//! protocol exchanges whose transcripts are pinned. Everything talks to 127.0.0.1 only.

mod authority;
mod gmail;
mod identity;
mod props;
mod registration;
mod smtp;
mod support;
