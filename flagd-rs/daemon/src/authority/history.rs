//! The revision history: the live revisions the authority holds in memory and the compacted
//! ones in the journal's archive, read a page at a time.
//!
//! Readers take the authority's lock only to copy what they need of the live revisions and the
//! snapshot's revision; archive segments are read without it. History never changes and
//! compaction only moves revisions from memory into the archive, so a revision at or below the
//! snapshot seen under the lock is always in the archive when it is read afterwards.

use std::collections::BTreeMap;

use flagd_evaluator::OverridePatch;
use serde::Serialize;

use super::journal::{JournalError, RevisionInfo, Segment, apply_changes};
use super::{Authority, AuthorityError};

/// Where a page of revisions starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cursor {
    /// The newest revisions below this one (`u64::MAX`: the latest page).
    Before(u64),
    /// The oldest revisions above this one (0: from the first).
    After(u64),
}

/// A page of revisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The authority's revision when the page was read.
    pub head: u64,
    /// The revisions, oldest first.
    pub revisions: Vec<RevisionInfo>,
    /// The cursor of the next page in the same direction, if there are more revisions.
    pub next: Option<Cursor>,
}

impl Authority {
    /// Up to `limit` revisions (only those concerning `flag`, when given) from `cursor` on,
    /// oldest first, from memory and the archive.
    pub fn revisions_page(
        &self,
        flag: Option<&str>,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, AuthorityError> {
        let limit = limit.max(1);
        let want = limit.saturating_add(1);
        let wanted = |r: &RevisionInfo| flag.is_none_or(|key| r.touches(key));
        let (head, base, live) = {
            let inner = self.lock();
            let live: Vec<RevisionInfo> = match cursor {
                Cursor::Before(before) => inner
                    .log
                    .iter()
                    .rev()
                    .filter(|r| r.revision < before && wanted(r))
                    .take(want)
                    .cloned()
                    .collect(),
                Cursor::After(after) => inner
                    .log
                    .iter()
                    .filter(|r| r.revision > after && wanted(r))
                    .take(want)
                    .cloned()
                    .collect(),
            };
            (inner.head(), inner.base.revision, live)
        };
        let segments = self.journal.segments();
        let mut found = Vec::new();
        match cursor {
            Cursor::Before(before) => {
                // Newest first while collecting.
                found = live;
                let below = before.min(base.saturating_add(1));
                for segment in segments.iter().rev().filter(|s| s.first < below) {
                    if found.len() >= want {
                        break;
                    }
                    let part = self.journal.read_segment(segment)?;
                    let older = part.records.into_iter().rev();
                    found.extend(
                        older
                            .filter(|r| r.revision < below && wanted(r))
                            .take(want - found.len()),
                    );
                }
                let next = (found.len() > limit).then(|| {
                    found.truncate(limit);
                    Cursor::Before(found.last().map_or(0, |r| r.revision))
                });
                found.reverse();
                Ok(Page {
                    head,
                    revisions: found,
                    next,
                })
            }
            Cursor::After(after) => {
                for segment in segments
                    .iter()
                    .filter(|s| s.last > after && s.first <= base)
                {
                    if found.len() >= want {
                        break;
                    }
                    let part = self.journal.read_segment(segment)?;
                    found.extend(
                        part.records
                            .into_iter()
                            .filter(|r| r.revision > after && r.revision <= base && wanted(r))
                            .take(want - found.len()),
                    );
                }
                let room = want.saturating_sub(found.len());
                found.extend(live.into_iter().take(room));
                let next = (found.len() > limit).then(|| {
                    found.truncate(limit);
                    Cursor::After(found.last().map_or(0, |r| r.revision))
                });
                Ok(Page {
                    head,
                    revisions: found,
                    next,
                })
            }
        }
    }

    /// Every revision in order, or only those concerning `flag`, archived ones included. An
    /// archive segment that cannot be read is left out (and logged); [`Authority::revisions_page`]
    /// reports it as an error instead.
    pub fn revisions(&self, flag: Option<&str>) -> Vec<RevisionInfo> {
        let mut out = Vec::new();
        let mut cursor = Cursor::After(0);
        loop {
            match self.revisions_page(flag, cursor, usize::MAX - 1) {
                Ok(page) => {
                    out.extend(page.revisions);
                    match page.next {
                        Some(next) => cursor = next,
                        None => return out,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "part of the revision history cannot be read");
                    let inner = self.lock();
                    let live = inner
                        .log
                        .iter()
                        .filter(|r| flag.is_none_or(|k| r.touches(k)));
                    return live.cloned().collect();
                }
            }
        }
    }

    /// One revision (`None`: there is no such revision).
    pub fn revision(&self, revision: u64) -> Result<Option<RevisionInfo>, AuthorityError> {
        {
            let inner = self.lock();
            if revision > inner.base.revision {
                let index = usize::try_from(revision - inner.base.revision - 1).ok();
                return Ok(index.and_then(|i| inner.log.get(i)).cloned());
            }
        }
        if revision == 0 {
            return Ok(None);
        }
        let segment = self.segment_of(revision)?;
        let part = self.journal.read_segment(&segment)?;
        Ok(part.records.into_iter().find(|r| r.revision == revision))
    }

    /// The override set right after archived revision `revision` (0: none), from the snapshot
    /// its archive segment starts with and the segment's revisions up to it.
    pub(super) fn archived_overrides(
        &self,
        revision: u64,
    ) -> Result<BTreeMap<String, OverridePatch>, AuthorityError> {
        if revision == 0 {
            return Ok(BTreeMap::new());
        }
        let segment = self.segment_of(revision).or_else(|e| {
            // The state right before a segment is that segment's snapshot.
            self.journal
                .segments()
                .into_iter()
                .find(|s| s.first == revision + 1)
                .ok_or(e)
        })?;
        let part = self.journal.read_segment(&segment)?;
        let mut target = part.snapshot.map(|s| s.overrides).unwrap_or_default();
        for r in part.records.iter().take_while(|r| r.revision <= revision) {
            apply_changes(&mut target, &r.changes);
        }
        Ok(target)
    }

    /// The archive segment holding `revision`.
    fn segment_of(&self, revision: u64) -> Result<Segment, AuthorityError> {
        self.journal
            .segments()
            .into_iter()
            .find(|s| s.holds(revision))
            .ok_or(AuthorityError::Journal(JournalError::Missing { revision }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::authority::FileOptions;
    use crate::authority::rollout::runner::testkit;
    use crate::store::Store;

    fn store() -> Arc<Store> {
        testkit::store(
            r#"{"flags": {
            "a": {"state": "ENABLED", "variants": {"x": 1, "y": 2}, "defaultVariant": "x"},
            "b": {"state": "ENABLED", "variants": {"x": 1, "y": 2}, "defaultVariant": "x"}}}"#,
            1,
        )
    }

    fn walk(authority: &Authority, flag: Option<&str>, start: Cursor, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut cursor = start;
        loop {
            let page = authority.revisions_page(flag, cursor, limit).unwrap();
            assert!(page.revisions.len() <= limit);
            let numbers: Vec<u64> = page.revisions.iter().map(|r| r.revision).collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "oldest first");
            match start {
                Cursor::Before(_) => out.splice(0..0, numbers),
                Cursor::After(_) => out.splice(out.len().., numbers),
            };
            match page.next {
                Some(next) => cursor = next,
                None => return out,
            }
        }
    }

    /// Pages walked in either direction, at any size, with or without a flag, give the whole
    /// history once, across archive segments and the revisions in memory.
    #[test]
    fn pages_cover_the_history_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = FileOptions { compact_bytes: 0 };
        let authority = Authority::open_with(dir.path(), store(), options).unwrap();
        let patch = |v: &str| OverridePatch {
            default_variant: Some(v.into()),
            ..OverridePatch::default()
        };
        for i in 1..=23u64 {
            let flag = if i % 3 == 0 { "b" } else { "a" };
            let variant = if i % 2 == 0 { "x" } else { "y" };
            authority
                .set_override(flag, patch(variant), "t", "", None)
                .unwrap();
            if i == 7 || i == 15 {
                authority.compact().unwrap();
            }
        }
        assert_eq!(authority.journal.segments().len(), 2);
        for flag in [None, Some("a"), Some("b")] {
            let expected: Vec<u64> = (1..=23)
                .filter(|i| flag.is_none_or(|f| (f == "b") == (i % 3 == 0)))
                .collect();
            for limit in [1, 2, 5, 7, 100] {
                assert_eq!(walk(&authority, flag, Cursor::After(0), limit), expected);
                assert_eq!(
                    walk(&authority, flag, Cursor::Before(u64::MAX), limit),
                    expected
                );
            }
        }
        let page = authority
            .revisions_page(None, Cursor::Before(9), 3)
            .unwrap();
        let numbers: Vec<u64> = page.revisions.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, [6, 7, 8]);
        assert_eq!(page.next, Some(Cursor::Before(6)));
        assert_eq!(page.head, 23);
        assert_eq!(authority.revision(3).unwrap().unwrap().revision, 3);
        assert_eq!(authority.revision(20).unwrap().unwrap().revision, 20);
        assert_eq!(authority.revision(24).unwrap(), None);
        assert_eq!(authority.revision(0).unwrap(), None);
        // Restoring an archived revision, and the one a segment's snapshot holds.
        let history = authority.revisions(None);
        for old in [3, 7, 15, 16] {
            let mut expected = BTreeMap::new();
            for r in history.iter().take_while(|r| r.revision <= old) {
                apply_changes(&mut expected, &r.changes);
            }
            authority.restore(old, "t", "").unwrap();
            let now: BTreeMap<String, OverridePatch> = authority.overrides().into_iter().collect();
            assert_eq!(now, expected, "restore {old}");
        }
    }
}
