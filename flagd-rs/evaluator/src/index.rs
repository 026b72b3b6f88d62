//! Positions of items by their key, without a copy of the keys: an open-addressing table of
//! positions, each tagged with part of its key's hash, so that a probe compares a key (held by the
//! item itself) only when the tags agree. For 10,000 flags it is 256 KiB, where a map from a copy
//! of each key would hold the copies besides a larger table.

use std::hash::Hasher;

use rustc_hash::FxHasher;

/// An empty slot.
const EMPTY: u64 = u64::MAX;

/// Positions `0..n` of items, found by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIndex {
    /// `tag << 32 | position`, or [`EMPTY`]; at most half full, so probes are short.
    slots: Box<[u64]>,
}

/// The hash of `key`: its low bits choose the first slot, its high half is the tag.
#[inline]
fn hash(key: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(key.as_bytes());
    h.finish()
}

impl KeyIndex {
    /// The index of the `n` positions whose keys `key_at` gives. Of repeated keys the last one
    /// is found.
    pub(crate) fn new<'a>(n: usize, key_at: impl Fn(usize) -> Option<&'a str>) -> Self {
        let capacity = (n * 2).next_power_of_two().max(8);
        let mut slots = vec![EMPTY; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for position in 0..n {
            let Some(key) = key_at(position) else {
                continue;
            };
            let h = hash(key);
            let tagged = (h & !0xffff_ffff) | position as u64;
            let mut i = h as usize & mask;
            while let Some(slot) = slots.get_mut(i) {
                let taken = *slot != EMPTY;
                if taken
                    && !(*slot >> 32 == h >> 32
                        && key_at((*slot & 0xffff_ffff) as usize) == Some(key))
                {
                    i = (i + 1) & mask;
                    continue;
                }
                *slot = tagged;
                break;
            }
        }
        KeyIndex { slots }
    }

    /// The position of `key`, where `key_at` gives the key of a position.
    #[inline]
    pub(crate) fn find<'a>(
        &self,
        key: &str,
        key_at: impl Fn(usize) -> Option<&'a str>,
    ) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let h = hash(key);
        let mut i = h as usize & mask;
        loop {
            let slot = *self.slots.get(i)?;
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == h >> 32 {
                let position = (slot & 0xffff_ffff) as usize;
                if key_at(position).is_some_and(|k| k.len() == key.len() && k == key) {
                    return Some(position);
                }
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys: Vec<String> = (0..5000).map(|i| format!("feature-{i:05}")).collect();
        let key_at = |i: usize| keys.get(i).map(String::as_str);
        let index = KeyIndex::new(keys.len(), key_at);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.find(key, key_at), Some(i));
        }
        for absent in ["", "feature-5000", "feature-0000", "x"] {
            assert_eq!(index.find(absent, key_at), None);
        }
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = KeyIndex::new(0, |_| None);
        assert_eq!(index.find("a", |_| None), None);
        assert_eq!(KeyIndex::default().find("a", |_| Some("a")), None);
    }

    #[test]
    fn a_repeated_key_finds_its_last_position() {
        let keys = ["a", "b", "a"];
        let index = KeyIndex::new(keys.len(), |i| keys.get(i).copied());
        assert_eq!(index.find("a", |i| keys.get(i).copied()), Some(2));
        assert_eq!(index.find("b", |i| keys.get(i).copied()), Some(1));
    }
}
