//! The sandbox's integration tests: its authority, SMTP server, Gmail endpoint and Graph
//! look-alike, driven by mailroom's own clients (mailroom-tokens, mailroom-smtp,
//! mailroom-gmail, mailroom-graph) and by raw protocol exchanges whose transcripts are
//! pinned. Everything talks to 127.0.0.1 only.

mod app_only;
mod app_only_mailboxes;
mod authority;
mod gmail;
mod graph;
mod identity;
mod props;
mod registration;
mod smtp;
mod support;
