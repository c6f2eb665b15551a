//! Integration tests of the domain model: presets against the setup guide, and validation.

mod fax;
mod presets;
mod props;
mod validation;
