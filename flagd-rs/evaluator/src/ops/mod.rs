//! flagd's custom JSONLogic operators as pure functions over evaluated arguments.

pub mod cbor;
pub mod fractional;
pub mod murmur3;
pub mod semver;
