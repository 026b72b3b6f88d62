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
