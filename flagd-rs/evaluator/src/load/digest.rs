//! The fingerprint that tells changed flag definitions from unchanged ones across the loads of
//! one process.
//!
//! Every byte of every part is mixed in, sixteen at a time, through a 64×64→128-bit multiply
//! folded to 64 bits, chained so that order counts; each part is prefixed with its length, so
//! `["ab", "c"]` and `["a", "bc"]` differ. The four keys are drawn once per process from the
//! operating system's randomness, so fingerprints compare across loads, never across processes,
//! and whoever writes a document cannot aim at a collision. It is not a cryptographic hash: two
//! different definitions share a fingerprint with a chance of about one in 2^64.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

/// The process's keys.
fn keys() -> &'static [u64; 4] {
    static KEYS: OnceLock<[u64; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let state = RandomState::new();
        [0u64, 1, 2, 3].map(|i| state.hash_one(i) | 1)
    })
}

/// The high and low halves of the full product of `x` and `y`, combined.
#[inline]
fn fold(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The two little-endian words of a 16-byte block.
#[inline]
fn words(block: &[u8; 16]) -> (u64, u64) {
    let (low, high) = block.split_at(8);
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(low);
    b.copy_from_slice(high);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

/// A keyed 64-bit digest of `parts`, each length-prefixed; never 0 (0 stands for "unknown").
pub(crate) fn fingerprint(parts: &[&[u8]]) -> u64 {
    let [k0, k1, k2, k3] = *keys();
    let mut acc = k0;
    for part in parts {
        acc = fold(acc ^ part.len() as u64, k1);
        let mut blocks = part.chunks_exact(16);
        for block in &mut blocks {
            let mut whole = [0u8; 16];
            whole.copy_from_slice(block);
            let (a, b) = words(&whole);
            acc = fold(acc ^ a ^ k2, b ^ k3);
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            // Zero-padded: the length prefix tells a short tail from one that ends in zeros.
            let mut tail = [0u8; 16];
            tail[..rest.len()].copy_from_slice(rest);
            let (a, b) = words(&tail);
            acc = fold(acc ^ a ^ k2, b ^ k3);
        }
    }
    fold(acc ^ k3, k0 ^ k1) | 1
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn same_parts_give_the_same_fingerprint() {
        let text =
            br#"{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}"#;
        assert_eq!(fingerprint(&[b"flag", text]), fingerprint(&[b"flag", text]));
        assert_ne!(fingerprint(&[]), 0);
        assert_ne!(fingerprint(&[b""]), 0);
    }

    #[test]
    fn every_byte_counts() {
        // Lengths around the 16-byte block and 8-byte word boundaries, each byte changed in turn.
        for len in [1usize, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100] {
            let base: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let reference = fingerprint(&[b"key", &base]);
            for i in 0..len {
                for flip in [1u8, 0x80, 0xff] {
                    let mut changed = base.clone();
                    changed[i] ^= flip;
                    assert_ne!(
                        fingerprint(&[b"key", &changed]),
                        reference,
                        "length {len}, byte {i}, flip {flip:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn part_boundaries_and_trailing_zeros_count() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_ne!(fingerprint(&[b"abc"]), fingerprint(&[b"abc", b""]));
        assert_ne!(fingerprint(&[b"abc"]), fingerprint(&[b"abc\0"]));
        assert_ne!(fingerprint(&[&[0u8; 16]]), fingerprint(&[&[0u8; 32]]));
        assert_ne!(fingerprint(&[b""]), fingerprint(&[]));
    }

    #[test]
    fn block_order_counts() {
        let ab = [[1u8; 16], [2u8; 16]].concat();
        let ba = [[2u8; 16], [1u8; 16]].concat();
        assert_ne!(fingerprint(&[&ab]), fingerprint(&[&ba]));
    }
}
