//! MurmurHash3 x86 32-bit, the hash behind flagd's `fractional` bucketing, one-shot and streaming.

/// First block multiplier of MurmurHash3 x86_32.
const C1: u32 = 0xcc9e_2d51;
/// Second block multiplier of MurmurHash3 x86_32.
const C2: u32 = 0x1b87_3593;

/// Scrambles one 32-bit block (or the zero-padded tail) before it is mixed into the state.
#[inline]
fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// Mixes one full 4-byte block into the running state.
#[inline]
fn mix_block(h: u32, k: u32) -> u32 {
    (h ^ scramble(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Final avalanche so that every input bit affects every output bit.
#[inline]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Packs up to three trailing bytes little-endian, as the reference reads the tail.
#[inline]
fn pack_tail(tail: &[u8]) -> u32 {
    tail.iter()
        .enumerate()
        .fold(0, |k, (i, &b)| k | (u32::from(b) << (8 * i)))
}

/// MurmurHash3 x86_32 of `data` with `seed`.
///
/// flagd hashes with seed 0 and reads the result as an unsigned 32-bit number.
#[must_use]
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let (blocks, tail) = data.as_chunks::<4>();
    let mut h = blocks
        .iter()
        .fold(seed, |h, block| mix_block(h, u32::from_le_bytes(*block)));
    if !tail.is_empty() {
        h ^= scramble(pack_tail(tail));
    }
    // The reference mixes in the length as a 32-bit value; longer inputs wrap the same way.
    h ^= data.len() as u32;
    fmix32(h)
}

/// Incremental MurmurHash3 x86_32: feeding bytes in any number of pieces gives the same result
/// as [`murmur3_32`] over their concatenation.
///
/// It lets encoders hash their output as they produce it, without building a buffer first.
#[derive(Debug, Clone)]
pub struct Murmur3 {
    /// State after every complete 4-byte block seen so far.
    h: u32,
    /// Bytes that do not yet form a complete block, packed little-endian.
    pending: u32,
    /// How many bytes `pending` holds (0 to 3).
    pending_len: u8,
    /// Total input length, wrapped to 32 bits exactly as the one-shot function does.
    len: u32,
}

impl Murmur3 {
    /// Starts a hash with the given seed.
    #[must_use]
    pub const fn new(seed: u32) -> Self {
        Self {
            h: seed,
            pending: 0,
            pending_len: 0,
            len: 0,
        }
    }

    /// Feeds more input.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        let mut rest = bytes;
        if self.pending_len > 0 {
            while self.pending_len < 4 {
                let Some((&b, tail)) = rest.split_first() else {
                    return;
                };
                self.pending |= u32::from(b) << (8 * u32::from(self.pending_len));
                self.pending_len += 1;
                rest = tail;
            }
            self.h = mix_block(self.h, self.pending);
            self.pending = 0;
            self.pending_len = 0;
        }
        let (blocks, tail) = rest.as_chunks::<4>();
        for block in blocks {
            self.h = mix_block(self.h, u32::from_le_bytes(*block));
        }
        self.pending = pack_tail(tail);
        self.pending_len = tail.len() as u8;
    }

    /// Returns the hash of everything written so far; more input may still be written after.
    #[must_use]
    #[inline]
    pub fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.pending_len > 0 {
            h ^= scramble(self.pending);
        }
        fmix32(h ^ self.len)
    }
}

/// Maps a 32-bit hash onto `[0, total)` as flagd does: `(hash * total) >> 32`.
///
/// The product is taken in 128 bits, so any `total` is safe; flagd's totals fit in 31 bits.
#[must_use]
#[inline]
pub fn bucket(hash: u32, total: u64) -> u64 {
    ((u128::from(hash) * u128::from(total)) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per known vector: input, seed, expected hash.
    const VECTORS: &[(&str, u32, u32)] = &[
        ("", 0, 0),
        ("", 1, 0x514e_28b7),
        ("hello", 0, 0x248b_fa47),
        ("abc", 0, 0xb3dd_93fa),
        ("aaaa", 0x9747_b28c, 0x5a97_808a),
        ("Hello, world!", 0x9747_b28c, 0x2488_4cba),
        ("headerColorrachel@faas.com", 0, 1_805_633_606),
        ("headerColormonica@faas.com", 0, 3_314_683_759),
        ("headerColorjoey@faas.com", 0, 309_582_631),
        ("headerColorross@faas.com", 0, 1_595_699_981),
        ("my-seedrachel@faas.com", 0, 2_931_187_178),
        ("my-seedmonica@faas.com", 0, 309_002_457),
        ("my-seedjoey@faas.com", 0, 1_300_152_927),
        ("my-seedross@faas.com", 0, 3_030_988_938),
        ("ross@faas.com", 0, 345_441_592),
        ("email", 0, 3_737_300_892),
        ("foo@foo.com", 0, 4_156_476_097),
        ("headerColorfoo@foo.com", 0, 3_455_740_957),
        ("clampedWeightFlagsome-targeting-key", 0, 4_218_311_896),
        ("ejOoVL", 0, 0),
        ("bY9fO-", 0, 1),
        ("SI7p-", 0, 2_147_483_647),
        ("6LvT0", 0, 2_147_483_648),
        ("ceQdGm", 0, 4_294_967_295),
        ("jon@company.com", 0, 1_557_731_397),
        ("user1", 0, 3_305_849_917),
    ];

    #[test]
    fn known_vectors() {
        for &(input, seed, want) in VECTORS {
            assert_eq!(
                murmur3_32(input.as_bytes(), seed),
                want,
                "{input:?} seed {seed:#x}"
            );
        }
    }

    #[test]
    fn streaming_matches_one_shot_for_every_split() {
        let data = b"the quick brown fox jumps over the lazy dog 0123456789";
        for len in 0..=data.len() {
            let input = &data[..len];
            let want = murmur3_32(input, 7);
            for a in 0..=len {
                for b in a..=len {
                    let mut h = Murmur3::new(7);
                    h.write(&input[..a]);
                    h.write(&input[a..b]);
                    h.write(&input[b..]);
                    assert_eq!(h.finish(), want, "len {len} split {a} {b}");
                }
            }
            let mut bytewise = Murmur3::new(7);
            for byte in input {
                bytewise.write(std::slice::from_ref(byte));
            }
            assert_eq!(bytewise.finish(), want, "bytewise len {len}");
        }
    }

    #[test]
    fn finish_does_not_consume() {
        let mut h = Murmur3::new(0);
        h.write(b"hel");
        assert_eq!(h.finish(), murmur3_32(b"hel", 0));
        h.write(b"lo");
        assert_eq!(h.finish(), 0x248b_fa47);
    }

    /// One line per v2 bucketing case of evaluation-facts §4: bucketing string, weights, variant.
    const V2_BUCKETS: &[(&str, Weights, &str)] = &[
        ("headerColorrachel@faas.com", RGBY, "blue"),
        ("headerColormonica@faas.com", RGBY, "yellow"),
        ("headerColorjoey@faas.com", RGBY, "red"),
        ("headerColorross@faas.com", RGBY, "blue"),
        ("my-seedrachel@faas.com", RGBY, "green"),
        ("my-seedmonica@faas.com", RGBY, "red"),
        ("my-seedjoey@faas.com", RGBY, "blue"),
        ("my-seedross@faas.com", RGBY, "green"),
        ("ross@faas.com", RGBY, "red"),
        (
            "email",
            &[("red", 50), ("blue", 25), ("green", 25)],
            "green",
        ),
        ("foo@foo.com", &[("red", 25), ("blue", 25)], "blue"),
        ("foo@foo.com", &[("red", 1), ("blue", 1)], "blue"),
        (
            "headerColorfoo@foo.com",
            &[("blue", 50), ("green", 50)],
            "green",
        ),
        (
            "clampedWeightFlagsome-targeting-key",
            &[("red", 0), ("green", 1)],
            "green",
        ),
        ("ejOoVL", LOWER_UPPER, "lower"),
        ("bY9fO-", LOWER_UPPER, "lower"),
        ("SI7p-", LOWER_UPPER, "lower"),
        ("6LvT0", LOWER_UPPER, "upper"),
        ("ceQdGm", LOWER_UPPER, "upper"),
        ("jon@company.com", &[("first", 50), ("second", 50)], "first"),
        ("user1", &[("first", 50), ("second", 50)], "second"),
        // Testbed custom-ops flags, v2 examples.
        ("fractional-flagjack", SUITS, "hearts"),
        ("fractional-flagqueen", SUITS, "spades"),
        ("fractional-flagten", SUITS, "clubs"),
        ("fractional-flagnine", SUITS, "diamonds"),
        ("fractional-flag3", SUITS, "clubs"),
        ("shared-seedseven", SUITS, "hearts"),
        ("shared-seedeight", SUITS, "diamonds"),
        ("shared-seednine", SUITS, "clubs"),
        ("shared-seedtwo", SUITS, "spades"),
        (
            "fractional-flag-shorthandjon@company.com",
            HEADS_TAILS,
            "heads",
        ),
        (
            "fractional-flag-shorthandjane@company.com",
            HEADS_TAILS,
            "tails",
        ),
    ];
    /// Variants with their weights, in order.
    type Weights = &'static [(&'static str, u64)];
    const RGBY: Weights = &[("red", 25), ("blue", 25), ("green", 25), ("yellow", 25)];
    const LOWER_UPPER: Weights = &[("lower", 50), ("upper", 50)];
    const SUITS: Weights = &[
        ("clubs", 25),
        ("diamonds", 25),
        ("hearts", 25),
        ("spades", 25),
    ];
    const HEADS_TAILS: Weights = &[("heads", 1), ("tails", 1)];

    /// Walks weights in order and returns the first variant whose running sum exceeds the bucket.
    pub(crate) fn pick<'a>(hash: u32, weights: &[(&'a str, u64)]) -> &'a str {
        let total = weights.iter().map(|(_, w)| w).sum();
        let b = bucket(hash, total);
        let mut running = 0;
        for &(variant, weight) in weights {
            running += weight;
            if b < running {
                return variant;
            }
        }
        panic!("bucket {b} outside total {total}");
    }

    #[test]
    fn v2_bucketing() {
        for &(input, weights, want) in V2_BUCKETS {
            assert_eq!(
                pick(murmur3_32(input.as_bytes(), 0), weights),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn bucket_bounds() {
        assert_eq!(bucket(0, 100), 0);
        assert_eq!(bucket(u32::MAX, 100), 99);
        assert_eq!(bucket(1_805_633_606, 100), 42);
        assert_eq!(bucket(u32::MAX, u64::MAX), u64::MAX - (u64::MAX >> 32) - 1);
        assert_eq!(bucket(u32::MAX, 0), 0);
    }
}
