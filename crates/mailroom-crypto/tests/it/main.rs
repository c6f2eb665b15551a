//! Integration tests of the crypto crate, on its public API only: the sealed format and its
//! round trips, key text and fingerprints, the key ring, the key file (its mode and
//! content), and the `key_check` row on SQLite and PostgreSQL.

mod key_file;
mod ring;
mod sealing;
mod store;
