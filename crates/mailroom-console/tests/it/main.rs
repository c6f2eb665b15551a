//! mailroom-console's tests: one binary (one link) for every module.

mod browser;
mod http;
mod signin;
mod support;
