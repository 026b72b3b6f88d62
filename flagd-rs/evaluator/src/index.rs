//! The key → flag index of a [`crate::FlagSet`].
//!
//! Flag keys are short (`new-checkout`, `email-domain`): each slot of an open-addressed table
//! holds the key's length and its first sixteen bytes as two words, so a lookup hashes those
//! words and compares them in registers, with no call into `memcmp` for keys of up to sixteen
//! bytes. Longer keys compare their remaining bytes against the flag's own key.

/// A slot's flag position when the slot is empty.
const EMPTY: u32 = u32::MAX;

/// Odd 64-bit multipliers (from the fractional parts of π and e) that spread the key's words.
const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x9e37_79b9_7f4a_7c15;

/// A key as a slot holds it: its first sixteen bytes, zero-padded, and its length (saturated:
/// a key of 4 GiB or more compares its remaining bytes anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Words {
    head: u64,
    tail: u64,
    len: u32,
}

/// One table slot: a key's [`Words`], laid out flat in 24 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: u64,
    tail: u64,
    len: u32,
    /// The flag's position in the set, or [`EMPTY`].
    flag: u32,
}

impl Slot {
    /// Whether the slot's key has the words `w`.
    #[inline(always)]
    fn holds(&self, w: Words) -> bool {
        self.head == w.head && self.tail == w.tail && self.len == w.len
    }
}

/// Key → position of the flag in the set's sorted list.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlagIndex {
    /// A power of two long (or empty), at most two-thirds full, so probe runs stay short.
    slots: Box<[Slot]>,
    /// How far a hash is shifted to give a slot position (64 − log2 of the table length).
    shift: u32,
}

/// Up to eight bytes of `b` from `at` as a little-endian word, zero-padded; `n` (at most 8) is
/// how many bytes there are from `at`.
#[inline(always)]
fn small_word(b: &[u8], at: usize, n: usize) -> u64 {
    let word = |i: usize| -> u64 {
        b.get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let half = |i: usize| -> u64 {
        b.get(i..i + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    let pair = |i: usize| -> u64 {
        b.get(i..i + 2)
            .and_then(|w| <[u8; 2]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u16::from_le_bytes(w)))
    };
    // Two overlapping reads cover the `n` bytes; the bytes they share are the same.
    match n {
        8.. => word(at),
        4..=7 => half(at) | (half(at + n - 4) << (8 * (n - 4))),
        2..=3 => pair(at) | (pair(at + n - 2) << (8 * (n - 2))),
        1 => b.get(at).map_or(0, |&x| u64::from(x)),
        0 => 0,
    }
}

impl Words {
    /// The words of `key`.
    #[inline(always)]
    fn of(key: &[u8]) -> Words {
        let len = key.len();
        let (head, tail) = if len >= 16 {
            (small_word(key, 0, 8), small_word(key, 8, 8))
        } else if len > 8 {
            (small_word(key, 0, 8), small_word(key, 8, len - 8))
        } else {
            (small_word(key, 0, len), 0)
        };
        Words {
            head,
            tail,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }
}

/// The hash of `key`, whose words are `w`: every byte counts, eight at a time.
#[inline(always)]
fn hash(key: &[u8], w: Words) -> u64 {
    let mix = |acc: u64, x: u64| (acc ^ x).wrapping_mul(K1).rotate_left(29);
    let mut h = mix(mix(u64::from(w.len).wrapping_mul(K2), w.head), w.tail);
    let mut at = 16;
    while at < key.len() {
        let n = (key.len() - at).min(8);
        h = mix(h, small_word(key, at, n));
        at += 8;
    }
    h.wrapping_mul(K2)
}

impl FlagIndex {
    /// The index of `keys`, given in the set's order (each key once).
    pub(crate) fn new<'k>(keys: impl ExactSizeIterator<Item = &'k str>) -> FlagIndex {
        let n = keys.len();
        if n == 0 {
            return FlagIndex::default();
        }
        // At least half as many slots again as keys (and at least 8).
        let len = (n + n / 2 + 1).next_power_of_two().max(8);
        let empty = Slot {
            head: 0,
            tail: 0,
            len: 0,
            flag: EMPTY,
        };
        let mut slots = vec![empty; len].into_boxed_slice();
        let shift = 64 - len.trailing_zeros();
        for (i, key) in keys.enumerate() {
            let b = key.as_bytes();
            let w = Words::of(b);
            let mut at = (hash(b, w) >> shift) as usize;
            while slots.get(at).is_some_and(|s| s.flag != EMPTY) {
                at = (at + 1) & (len - 1);
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = Slot {
                    head: w.head,
                    tail: w.tail,
                    len: w.len,
                    flag: i as u32,
                };
            }
        }
        FlagIndex { slots, shift }
    }

    /// The position of the flag whose key is `key`; `key_of` gives the key of a position, for
    /// keys longer than sixteen bytes.
    #[inline]
    pub(crate) fn get<'s>(
        &self,
        key: &str,
        key_of: impl Fn(usize) -> Option<&'s str>,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let b = key.as_bytes();
        let w = Words::of(b);
        let mask = self.slots.len() - 1;
        let mut at = (hash(b, w) >> self.shift) as usize;
        loop {
            let slot = self.slots.get(at)?;
            if slot.flag == EMPTY {
                return None;
            }
            if slot.holds(w) {
                let i = slot.flag as usize;
                if b.len() <= 16 {
                    return Some(i);
                }
                if key_of(i).is_some_and(|k| k.as_bytes().get(16..) == b.get(16..)) {
                    return Some(i);
                }
            }
            at = (at + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(keys: &[String], index: &FlagIndex, key: &str) -> Option<usize> {
        index.get(key, |i| keys.get(i).map(String::as_str))
    }

    #[test]
    fn small_words_are_the_padded_bytes() {
        let b = b"0123456789abcdefghij";
        for at in 0..b.len() {
            for n in 0..=(b.len() - at).min(8) {
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(&b[at..at + n]);
                assert_eq!(small_word(b, at, n), u64::from_le_bytes(w), "{at} {n}");
            }
        }
    }

    #[test]
    fn every_key_is_found_and_no_other() {
        let mut keys: Vec<String> = vec![
            String::new(),
            "a".into(),
            "ab".into(),
            "email-domain".into(),
            "12345678".into(),
            "123456789".into(),
            "0123456789abcdef".into(),
            "0123456789abcdefX".into(),
            "0123456789abcdefY".into(),
            "feature-flag-number-00001-enabled".into(),
            "feature-flag-number-00002-enabled".into(),
            "josé".into(),
            "ユーザー".into(),
            "a\0".into(),
        ];
        for i in 0..3000 {
            keys.push(format!("flag-{i:05}"));
            keys.push(format!("a-much-longer-flag-key-{i}-with-a-tail"));
        }
        keys.sort();
        keys.dedup();
        let index = FlagIndex::new(keys.iter().map(String::as_str));
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(lookup(&keys, &index, k), Some(i), "{k:?}");
        }
        for missing in [
            "b",
            "a\0\0",
            "email-domaim",
            "email-domain ",
            "0123456789abcdeZ",
            "0123456789abcdefZ",
            "feature-flag-number-00003-enabled",
            "flag-03000",
            "a-much-longer-flag-key-3000-with-a-tail",
            "josë",
        ] {
            assert_eq!(lookup(&keys, &index, missing), None, "{missing:?}");
        }
        // A key that is a zero-padded prefix of another is a different key.
        let keys = vec!["ab".to_owned(), "ab\0".to_owned()];
        let index = FlagIndex::new(keys.iter().map(String::as_str));
        assert_eq!(lookup(&keys, &index, "ab"), Some(0));
        assert_eq!(lookup(&keys, &index, "ab\0"), Some(1));
        assert_eq!(lookup(&keys, &index, "ab\0\0"), None);
    }

    #[test]
    fn slots_are_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = FlagIndex::default();
        assert_eq!(index.get("x", |_| None), None);
        let index = FlagIndex::new(std::iter::empty());
        assert_eq!(index.get("", |_| None), None);
    }
}
