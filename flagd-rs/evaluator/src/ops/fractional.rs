//! The `fractional` operator: deterministic weighted bucketing.

/// Which input the bucketing hash is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashGeneration {
    /// MurmurHash3 over the UTF-8 string (flagd 0.15–0.16).
    V2,
    /// MurmurHash3 over the deterministic CBOR encoding (the accepted spec).
    #[default]
    V3,
}
