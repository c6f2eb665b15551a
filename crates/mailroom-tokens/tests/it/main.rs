//! Contract tests of sign-in, refresh and the token store, with wiremock playing the
//! providers' token endpoints with their documented request and response bodies.

mod app_only;
mod broker;
mod google;
mod loopback;
mod microsoft;
mod registration;
mod resources;
mod secrets;
mod support;
