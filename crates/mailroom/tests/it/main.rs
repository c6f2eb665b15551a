//! The facade's integration tests: end-to-end sends against wiremock (token endpoint,
//! Gmail API) and the aiosmtpd test server, the outbox and the agent on SQLite and
//! PostgreSQL.

mod agent;
mod app_only;
mod app_only_sign_in;
mod commands;
mod delivery;
mod doctor;
mod graph;
mod keys;
mod outbox;
mod pacing;
mod send;
mod shared;
mod sign_in;
mod support;
mod throttling;
