//! One-line conformance cases for flagd evaluation semantics.
