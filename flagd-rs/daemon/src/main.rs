//! The `flagd-rs` binary.
fn main() {}
