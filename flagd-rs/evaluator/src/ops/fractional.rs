//! The `fractional` operator: deterministic weighted bucketing.
//!
//! A bucketing value is hashed with MurmurHash3 (x86, 32-bit, seed 0) into `h`; the bucket is
//! `(h * total_weight) >> 32`, and the first distribution entry whose running weight sum exceeds
//! the bucket wins. Which bytes are hashed depends on the [`HashGeneration`]. The argument
//! handling (what is the bucketing value, what are entries) lives with the rule evaluator; this
//! module holds the pure parts.

use serde_json::Value;

use super::{cbor, murmur3};
use crate::logic::value::View;

/// Which input the bucketing hash is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashGeneration {
    /// MurmurHash3 over the UTF-8 string (flagd 0.15–0.16).
    V2,
    /// MurmurHash3 over the deterministic CBOR encoding (the accepted spec).
    #[default]
    V3,
}

/// The largest weight, and the largest weight sum, flagd accepts (`i32::MAX`).
const MAX_WEIGHT: u64 = i32::MAX as u64;

/// Hash of an explicit string bucketing value.
#[inline]
pub(crate) fn hash_str(generation: HashGeneration, s: &str) -> u32 {
    match generation {
        HashGeneration::V2 => murmur3::murmur3_32(s.as_bytes(), 0),
        HashGeneration::V3 => cbor::hash_str(s),
    }
}

/// Hash of an explicit bucketing value of any type. Only the CBOR generation accepts
/// non-strings; `null` is never a bucketing value.
pub(crate) fn hash_value(generation: HashGeneration, v: &Value) -> Option<u32> {
    match (generation, v) {
        (_, Value::String(s)) => Some(hash_str(generation, s)),
        (HashGeneration::V2, _) => None,
        (HashGeneration::V3, v) => cbor::hash_value(v),
    }
}

/// Hash of the shorthand bucketing key: the flag key followed by the targeting key (V2: the two
/// strings concatenated; V3: the CBOR array `[flagKey, targetingKey]`). Nothing is allocated.
#[inline]
pub(crate) fn hash_shorthand(
    generation: HashGeneration,
    flag_key: &str,
    targeting_key: &str,
) -> u32 {
    match generation {
        HashGeneration::V2 => {
            let mut h = murmur3::Murmur3::new(0);
            h.write(flag_key.as_bytes());
            h.write(targeting_key.as_bytes());
            h.finish()
        }
        HashGeneration::V3 => cbor::hash_pair(flag_key, targeting_key),
    }
}

/// Hash of the string `cat` would build from `parts` (concatenated, then whitespace-trimmed, as
/// `cat` does with two or more operands), without building it.
pub(crate) fn hash_trimmed_concat<S: AsRef<str>>(generation: HashGeneration, parts: &[S]) -> u32 {
    // Whitespace never spans two parts, so trimming the ends of the outermost non-blank parts
    // trims the concatenation.
    let first = parts
        .iter()
        .position(|p| !p.as_ref().trim_start().is_empty());
    let last = parts
        .iter()
        .rposition(|p| !p.as_ref().trim_end().is_empty());
    let pieces: &[S] = match (first, last) {
        (Some(a), Some(b)) if a <= b => parts.get(a..=b).unwrap_or_default(),
        _ => &[],
    };
    let n = pieces.len();
    fn piece(i: usize, n: usize, p: &str) -> &str {
        let p = if i == 0 { p.trim_start() } else { p };
        if i + 1 == n { p.trim_end() } else { p }
    }
    let mut h = murmur3::Murmur3::new(0);
    if generation == HashGeneration::V3 {
        let total: usize = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| piece(i, n, p.as_ref()).len())
            .sum();
        let (head, len) = cbor_text_head(total as u64);
        h.write(head.get(..len).unwrap_or_default());
    }
    for (i, p) in pieces.iter().enumerate() {
        h.write(piece(i, n, p.as_ref()).as_bytes());
    }
    h.finish()
}

/// The CBOR head of a text string of `len` bytes (major type 3, shortest length encoding).
fn cbor_text_head(len: u64) -> ([u8; 9], usize) {
    const TEXT: u8 = 3 << 5;
    let mut out = [0u8; 9];
    let used = if len < 24 {
        out[0] = TEXT | len as u8;
        1
    } else if let Ok(b) = u8::try_from(len) {
        out[0] = TEXT | 24;
        out[1] = b;
        2
    } else if let Ok(b) = u16::try_from(len) {
        out[0] = TEXT | 25;
        out[1..3].copy_from_slice(&b.to_be_bytes());
        3
    } else if let Ok(b) = u32::try_from(len) {
        out[0] = TEXT | 26;
        out[1..5].copy_from_slice(&b.to_be_bytes());
        5
    } else {
        out[0] = TEXT | 27;
        out[1..9].copy_from_slice(&len.to_be_bytes());
        9
    };
    (out, used)
}

/// A distribution weight: absent or `null` means 1, negative is clamped to 0; a weight that is
/// not a whole number, or exceeds `i32::MAX`, is invalid (`None`).
#[inline]
pub(crate) fn weight(w: Option<View<'_>>) -> Option<u64> {
    match w {
        None | Some(View::Null) => Some(1),
        Some(View::Num(n)) => {
            if !n.is_finite() || n.fract() != 0.0 {
                None
            } else if n < 0.0 {
                Some(0)
            } else if n > MAX_WEIGHT as f64 {
                None
            } else {
                Some(n as u64)
            }
        }
        Some(_) => None,
    }
}

/// Whether `v` can be returned as a variant: a string, boolean, number or `null`.
#[inline]
pub(crate) fn valid_variant(v: View<'_>) -> bool {
    matches!(v, View::Str(_) | View::Bool(_) | View::Num(_) | View::Null)
}

/// Running weight sums of `(variant, weight)` entries, or `None` when the distribution is
/// unusable: an invalid entry, no entries, a zero total, or a total above `i32::MAX`.
pub(crate) fn cumulative<'v>(
    entries: impl Iterator<Item = (View<'v>, Option<View<'v>>)>,
) -> Option<Vec<u64>> {
    let mut sum = 0_u64;
    let mut cum = Vec::with_capacity(entries.size_hint().0);
    for (variant, w) in entries {
        if !valid_variant(variant) {
            return None;
        }
        sum += weight(w)?;
        if sum > MAX_WEIGHT {
            return None;
        }
        cum.push(sum);
    }
    (sum > 0).then_some(cum)
}

/// The bucket of hash `h` among `total` weight units: `(h * total) >> 32`, in `[0, total)`.
#[inline]
pub(crate) fn bucket(h: u32, total: u64) -> u64 {
    (u64::from(h) * total) >> 32
}

/// The index of the entry hash `h` selects, given running weight sums.
#[inline]
pub(crate) fn pick(cum: &[u64], h: u32) -> Option<usize> {
    let total = *cum.last()?;
    let b = bucket(h, total);
    // The first entry whose running sum exceeds the bucket; sums never decrease.
    let i = cum.partition_point(|&c| c <= b);
    (i < cum.len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(weight(None), Some(1));
        assert_eq!(weight(Some(View::Null)), Some(1));
        assert_eq!(weight(Some(View::Num(25.0))), Some(25));
        assert_eq!(weight(Some(View::Num(-50.0))), Some(0));
        assert_eq!(weight(Some(View::Num(2.5))), None);
        assert_eq!(
            weight(Some(View::Num(2_147_483_647.0))),
            Some(2_147_483_647)
        );
        assert_eq!(weight(Some(View::Num(2_147_483_648.0))), None);
        assert_eq!(weight(Some(View::Str("5"))), None);
        assert_eq!(weight(Some(View::Bool(true))), None);
    }

    #[test]
    fn cumulative_sums() {
        let e = |w: f64| (View::Str("x"), Some(View::Num(w)));
        assert_eq!(
            cumulative([e(25.0), e(25.0), e(50.0)].into_iter()),
            Some(vec![25, 50, 100])
        );
        assert_eq!(cumulative([e(0.0), e(0.0)].into_iter()), None);
        assert_eq!(cumulative(std::iter::empty()), None);
        assert_eq!(cumulative([e(2_147_483_647.0), e(1.0)].into_iter()), None);
        assert_eq!(cumulative([(View::Arr(&[]), None)].into_iter()), None);
        assert_eq!(
            cumulative([(View::Null, None), (View::Bool(true), None)].into_iter()),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn buckets_at_the_edges() {
        let cum = [50, 100];
        assert_eq!(bucket(0, 100), 0);
        assert_eq!(bucket(u32::MAX, 100), 99);
        assert_eq!(pick(&cum, 0), Some(0));
        assert_eq!(pick(&cum, 2_147_483_647), Some(0));
        assert_eq!(pick(&cum, 2_147_483_648), Some(1));
        assert_eq!(pick(&cum, u32::MAX), Some(1));
        // A zero-weight entry is never picked.
        assert_eq!(pick(&[0, 1], 0), Some(1));
        assert_eq!(pick(&[], 0), None);
    }

    #[test]
    fn concatenated_hash_matches_the_built_string() {
        let long = "x".repeat(300);
        let longer = "y".repeat(70_000);
        let cases: [&[&str]; 9] = [
            &["a", "b"],
            &["  a", "b  "],
            &[" ", " a b ", " "],
            &["", ""],
            &["\u{a0}\t", "\n"],
            &["héllo", " wörld "],
            &[&long, "z"],
            &[&longer, "z"],
            &["a", " ", "b"],
        ];
        for parts in cases {
            let built = parts.concat();
            let built = built.trim();
            for g in [HashGeneration::V2, HashGeneration::V3] {
                assert_eq!(
                    hash_trimmed_concat(g, parts),
                    hash_str(g, built),
                    "{g:?} {parts:?}"
                );
            }
        }
    }

    #[test]
    fn hashes() {
        assert_eq!(
            hash_str(HashGeneration::V2, "headerColorrachel@faas.com"),
            1_805_633_606
        );
        assert_eq!(
            hash_shorthand(HashGeneration::V2, "headerColor", "foo@foo.com"),
            3_455_740_957
        );
        assert_eq!(hash_value(HashGeneration::V2, &Value::Bool(true)), None);
        assert_eq!(hash_value(HashGeneration::V3, &Value::Null), None);
    }
}
