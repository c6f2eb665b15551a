//! The facade's integration tests.
