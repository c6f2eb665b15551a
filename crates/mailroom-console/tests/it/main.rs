//! mailroom-console's tests: one binary (one link) for every module.

mod http;
mod signin;
mod support;
