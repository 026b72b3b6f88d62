//! What a journal knows of the store: the head and snapshot it last saw (with the etcd
//! revisions to compare on), the archive segments, and the size of the live part.
//!
//! Appends, compactions, listings and the watch all report here, in whatever order their
//! answers arrive; each fact carries the etcd revision it was true at, and only newer facts
//! replace older ones.

use crate::authority::journal::{Replay, Segment};

/// A consistent reading of the whole journal at one etcd revision.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Listing {
    /// The etcd revision read at.
    pub revision: i64,
    /// The snapshot and the revisions after it.
    pub replay: Replay,
    /// The head key's mod revision (0: no head key).
    pub head_mod: i64,
    /// The snapshot key's mod revision (0: no snapshot).
    pub snapshot_mod: i64,
    /// The archive segments, oldest first.
    pub segments: Vec<Segment>,
    /// The bytes of the revisions after the snapshot.
    pub live_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct State {
    /// The head revision.
    pub head: u64,
    /// The head key's mod revision (0: no head key yet; `None`: not known, the journal has not
    /// read the store yet).
    pub head_mod: Option<i64>,
    /// The snapshot's revision (0: none).
    pub base: u64,
    /// The snapshot key's mod revision (0: none).
    pub snapshot_mod: i64,
    /// The archive segments, oldest first.
    pub segments: Vec<Segment>,
    /// About how many bytes the revisions after the snapshot take.
    pub live_bytes: u64,
    /// The last revision whose size is in `live_bytes`.
    pub counted: u64,
}

impl State {
    /// Takes in a listing's facts, where they are newer than what is known.
    pub fn absorb(&mut self, listing: &Listing) {
        self.saw_head(listing.replay.head(), listing.head_mod);
        if listing.snapshot_mod >= self.snapshot_mod {
            self.base = listing.replay.base();
            self.snapshot_mod = listing.snapshot_mod;
            self.segments = listing.segments.clone();
            self.live_bytes = listing.live_bytes;
            self.counted = listing.replay.head();
        }
    }

    /// The head was `head` as of etcd revision `mod_revision`.
    pub fn saw_head(&mut self, head: u64, mod_revision: i64) {
        if self.head_mod.is_none_or(|known| mod_revision >= known) {
            self.head = head;
            self.head_mod = Some(mod_revision);
        }
    }

    /// A compaction made `base` the snapshot's revision at etcd revision `mod_revision`.
    pub fn saw_snapshot(&mut self, base: u64, mod_revision: i64) {
        if mod_revision > self.snapshot_mod {
            self.base = base;
            self.snapshot_mod = mod_revision;
            self.live_bytes = 0;
            self.counted = self.counted.max(base);
        }
    }

    /// Archive segment `segment` exists.
    pub fn saw_segment(&mut self, segment: Segment) {
        if let Err(at) = self.segments.binary_search(&segment) {
            self.segments.insert(at, segment);
        }
    }

    /// Revision `revision`, of `bytes` bytes, is stored.
    pub fn count(&mut self, revision: u64, bytes: usize) {
        if revision > self.counted && revision > self.base {
            self.live_bytes += bytes as u64;
            self.counted = revision;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_facts_never_replace_newer_ones() {
        let mut state = State::default();
        state.saw_head(5, 50);
        state.saw_head(4, 40);
        assert_eq!((state.head, state.head_mod), (5, Some(50)));
        state.saw_head(6, 60);
        assert_eq!((state.head, state.head_mod), (6, Some(60)));

        state.count(6, 100);
        state.count(6, 100);
        assert_eq!(state.live_bytes, 100);
        state.saw_snapshot(6, 61);
        assert_eq!((state.base, state.live_bytes), (6, 0));
        state.saw_snapshot(3, 30);
        assert_eq!(state.base, 6);
        state.saw_segment(Segment { first: 1, last: 6 });
        state.saw_segment(Segment { first: 1, last: 6 });
        assert_eq!(state.segments.len(), 1);
    }

    #[test]
    fn a_listing_fills_an_unknown_state() {
        let mut state = State {
            head: 9,
            head_mod: None,
            ..State::default()
        };
        let listing = Listing {
            revision: 70,
            replay: Replay::default(),
            head_mod: 0,
            snapshot_mod: 0,
            segments: Vec::new(),
            live_bytes: 0,
        };
        state.absorb(&listing);
        assert_eq!((state.head, state.head_mod), (0, Some(0)));
    }
}
