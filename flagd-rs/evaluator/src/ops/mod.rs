//! flagd's custom JSONLogic operators as pure functions over evaluated arguments.

pub mod fractional;
pub mod cbor;
pub mod murmur3;
pub mod semver;
