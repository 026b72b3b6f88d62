//! Folding revisions into a [`Snapshot`]: the override set, and the rollout records a replay
//! still needs.

use std::collections::{BTreeMap, HashMap};

use flagd_evaluator::OverridePatch;
use serde::Deserialize as _;
use serde_json::Value;

use super::{OverrideChange, RevisionInfo, RevisionKind, RolloutRecord, Snapshot};
use crate::authority::rollout::Event;

/// Applies a revision's override changes to `overrides`.
pub fn apply_changes(overrides: &mut BTreeMap<String, OverridePatch>, changes: &[OverrideChange]) {
    for c in changes {
        match &c.after {
            Some(p) => {
                overrides.insert(c.flag.clone(), p.clone());
            }
            None => {
                overrides.remove(&c.flag);
            }
        }
    }
}

/// A rollout revision's record, if `record` is one.
pub fn rollout_record(record: &RevisionInfo) -> Option<RolloutRecord> {
    if record.kind != RevisionKind::Rollout {
        return None;
    }
    Some(RolloutRecord {
        revision: record.revision,
        flag: record.flag.clone()?,
        event: record.event.clone()?,
    })
}

/// Whether a rollout event starts a rollout.
fn is_start(event: &Value) -> bool {
    Event::deserialize(event).is_ok_and(|e| e.rollout().is_none())
}

/// The rollout records a replay needs: for every flag, its latest start and the records after
/// it. A start replaces whatever the flag's earlier records built up
/// ([`crate::authority::rollout::replay`]), so the records before it change nothing, nor do the
/// records of a flag that was never started.
pub fn retain_rollouts(records: Vec<RolloutRecord>) -> Vec<RolloutRecord> {
    let mut starts: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if is_start(&r.event) {
            starts.insert(r.flag.clone(), i);
        }
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(i, r)| starts.get(&r.flag).is_some_and(|start| i >= start))
        .map(|(_, r)| r)
        .collect()
}

impl Snapshot {
    /// The state after `records`, which follow this snapshot, stamped `time`.
    pub fn advanced(&self, records: &[RevisionInfo], time: String) -> Snapshot {
        let mut overrides = self.overrides.clone();
        for r in records {
            apply_changes(&mut overrides, &r.changes);
        }
        let rollouts = self
            .rollouts
            .iter()
            .cloned()
            .chain(records.iter().filter_map(rollout_record))
            .collect();
        Snapshot {
            revision: records.last().map_or(self.revision, |r| r.revision),
            time,
            overrides,
            rollouts: retain_rollouts(rollouts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::rollout::{self, Plan, plan};
    use serde_json::json;

    fn rollout(revision: u64, flag: &str, event: &Event) -> RevisionInfo {
        RevisionInfo {
            revision,
            time: String::new(),
            actor: "rollout".into(),
            reason: String::new(),
            kind: RevisionKind::Rollout,
            flag: Some(flag.into()),
            changes: Vec::new(),
            restored: None,
            event: Some(serde_json::to_value(event).unwrap()),
        }
    }

    fn start(plan: &Plan) -> Event {
        Event::Start {
            plan: Box::new(plan.clone()),
            before: vec![("stable".into(), 100), ("canary".into(), 0)],
            prior: None,
            layout: None,
            weights: Vec::new(),
            step: 1,
            weight: 1.0,
            at_ms: 1000,
            hold_ms: 10_000,
        }
    }

    fn step(rollout: u64, step: usize) -> Event {
        Event::Step {
            rollout,
            step,
            weights: Vec::new(),
            rebase: None,
            weight: 50.0,
            at_ms: 2000,
            hold_ms: 10_000,
            promoted: false,
        }
    }

    #[test]
    fn snapshots_keep_what_a_rollout_replay_needs() {
        let plan = plan::parse(
            b"variant: canary\nbaseline: stable\nsteps: [{weight: 1, hold: 10s}, {weight: 50, hold: 10s}]\n",
        )
        .unwrap();
        let mut records = vec![
            rollout(1, "f", &start(&plan)),
            rollout(2, "f", &step(1, 2)),
            rollout(
                3,
                "f",
                &Event::Abort {
                    rollout: 1,
                    at_ms: 3000,
                    reason: "no".into(),
                },
            ),
            rollout(4, "g", &start(&plan)),
            rollout(5, "f", &start(&plan)),
            rollout(6, "g", &step(4, 2)),
            rollout(7, "f", &step(5, 2)),
            rollout(8, "h", &step(99, 2)),
        ];
        records[7].event = Some(json!({"type": "unheard_of"}));
        let all: Vec<(u64, String, Value)> = records
            .iter()
            .filter_map(rollout_record)
            .map(|r| (r.revision, r.flag, r.event))
            .collect();
        let snapshot = Snapshot::default().advanced(&records, "t".into());
        assert_eq!(snapshot.revision, 8);
        let kept: Vec<u64> = snapshot.rollouts.iter().map(|r| r.revision).collect();
        assert_eq!(kept, [4, 5, 6, 7]);
        let from_snapshot: Vec<(u64, String, Value)> = snapshot
            .rollouts
            .iter()
            .map(|r| (r.revision, r.flag.clone(), r.event.clone()))
            .collect();
        assert_eq!(rollout::replay(&all), rollout::replay(&from_snapshot));

        // Folding in two steps keeps the same records as folding at once.
        let half = Snapshot::default().advanced(&records[..3], "t".into());
        assert_eq!(half.advanced(&records[3..], "t".into()), snapshot);
    }

    #[test]
    fn overrides_fold_in_order() {
        let patch = |v: &str| OverridePatch {
            default_variant: Some(v.into()),
            ..OverridePatch::default()
        };
        let set = |revision: u64, flag: &str, after: Option<OverridePatch>| RevisionInfo {
            revision,
            time: String::new(),
            actor: String::new(),
            reason: String::new(),
            kind: RevisionKind::Set,
            flag: Some(flag.into()),
            changes: vec![OverrideChange {
                flag: flag.into(),
                before: None,
                after,
            }],
            restored: None,
            event: None,
        };
        let records = [
            set(1, "a", Some(patch("x"))),
            set(2, "b", Some(patch("y"))),
            set(3, "a", None),
            set(4, "b", Some(patch("z"))),
        ];
        let s = Snapshot::default().advanced(&records, "t".into());
        assert_eq!(s.overrides, [("b".to_owned(), patch("z"))].into());
        assert_eq!(s.revision, 4);
    }
}
