//! Integration tests of the domain model: presets against the setup guide, and validation.

mod fax;
mod limits;
mod names;
mod presets;
mod props;
mod settings;
mod transport;
mod validation;
