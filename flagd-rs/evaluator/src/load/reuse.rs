//! What a compiled flag was built from, so that a reload can keep flags whose inputs did not
//! change instead of compiling them again.
//!
//! A flag's compiled form depends on its own definition (key and raw bytes), the document's
//! flag-set `metadata` (merged into every flag), the load options that shape compilation, and
//! the shared `$evaluators` its rule refers to, directly or through other evaluators. The first
//! three are fingerprinted; the evaluators are recorded by name with the fingerprint each had
//! (or that it was missing, since a `$ref` to a missing evaluator compiles too).

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::LoadOptions;
pub(crate) use super::digest::fingerprint;
use crate::logic::input::{RuleInput, Shape};

/// Fingerprint of an evaluator that the document does not define.
pub(crate) const MISSING: u64 = 0;

/// The inputs a compiled flag was built from. The default (no fingerprint) never matches, for
/// flags that were not built by a fingerprinting load (patched ones, those from a parsed value).
#[derive(Debug, Clone, Default)]
pub(crate) struct Provenance {
    /// Fingerprint of the flag's key and definition bytes; 0 when unknown.
    pub(crate) definition: u64,
    /// The evaluators the rule refers to (transitively), sorted by name, with their fingerprints.
    pub(crate) evaluators: Box<[(Box<str>, u64)]>,
}

impl Provenance {
    /// Whether a flag built from `self` is what `definition` under `evaluators` compiles to.
    pub(crate) fn matches(&self, definition: u64, evaluators: &FxHashMap<Box<str>, u64>) -> bool {
        self.definition != 0
            && self.definition == definition
            && self
                .evaluators
                .iter()
                .all(|(name, hash)| evaluators.get(&**name).copied().unwrap_or(MISSING) == *hash)
    }
}

/// The document-level inputs of every flag: the load options that shape compilation and the
/// raw flag-set metadata (`None` when absent).
pub(crate) fn document_fingerprint(opts: &LoadOptions, metadata: Option<&str>) -> u64 {
    let options = format!("{:?}/{}/{:?}", opts.hash, opts.max_rule_depth, opts.budget);
    fingerprint(&[
        options.as_bytes(),
        metadata.map_or(&[][..], str::as_bytes),
        &[u8::from(metadata.is_some())],
    ])
}

/// The provenance of a flag built from `definition` with `rule`: the evaluators the rule refers
/// to, directly or through the evaluators it names, each with its fingerprint ([`MISSING`] when
/// the document does not define it). Every string under a `$ref` member counts, wherever it is:
/// a superset of what compilation inlines, which is all the comparison needs.
pub(crate) fn provenance<I: RuleInput>(
    definition: u64,
    rule: Option<&I>,
    evaluators: &Map<String, Value>,
    hashes: &FxHashMap<Box<str>, u64>,
) -> Provenance {
    let Some(rule) = rule else {
        return Provenance {
            definition,
            evaluators: Box::default(),
        };
    };
    let names = referenced_names(rule, evaluators);
    // Built at its final size: one allocation for the list and one per name.
    let evaluators = names
        .iter()
        .map(|&name| {
            let hash = hashes.get(name).copied().unwrap_or(MISSING);
            (Box::from(name), hash)
        })
        .collect();
    Provenance {
        definition,
        evaluators,
    }
}

/// The evaluator names `rule` refers to through `$ref`, directly or through the evaluators it
/// names, sorted. Every string under a `$ref` member counts, wherever it is.
pub(crate) fn referenced<I: RuleInput>(rule: &I, evaluators: &Map<String, Value>) -> Vec<Box<str>> {
    referenced_names(rule, evaluators)
        .into_iter()
        .map(Box::from)
        .collect()
}

/// [`referenced`], borrowing the names from the rule and the evaluators. A rule names few
/// evaluators and is a shallow tree, so the lists stay inline.
fn referenced_names<'a, I: RuleInput>(
    rule: &'a I,
    evaluators: &'a Map<String, Value>,
) -> SmallVec<[&'a str; 4]> {
    let mut names = SmallVec::new();
    let mut bodies: SmallVec<[&'a Value; 4]> = SmallVec::new();
    references_in(rule, evaluators, &mut names, &mut bodies);
    while let Some(body) = bodies.pop() {
        references_in(body, evaluators, &mut names, &mut bodies);
    }
    names.sort_unstable();
    names
}

/// Adds the names `rule` refers to that `names` does not hold yet, and the bodies of those the
/// document defines to `bodies`.
fn references_in<'a, I: RuleInput>(
    rule: &'a I,
    evaluators: &'a Map<String, Value>,
    names: &mut SmallVec<[&'a str; 4]>,
    bodies: &mut SmallVec<[&'a Value; 4]>,
) {
    let mut pending: SmallVec<[&'a I; 16]> = SmallVec::new();
    pending.push(rule);
    while let Some(value) = pending.pop() {
        match value.shape() {
            Shape::Obj(_) => {
                for (op, args) in value.members() {
                    if op == "$ref"
                        && let Shape::Str(name) = args.shape()
                        && !names.contains(&name)
                    {
                        names.push(name);
                        if let Some(body) = evaluators.get(name) {
                            bodies.push(body);
                        }
                    }
                    pending.push(args);
                }
            }
            Shape::Arr(items) => pending.extend(items),
            _ => {}
        }
    }
}

/// Whether a rule's text can refer to an evaluator: only one that names `$ref` (or hides a name
/// behind an escape).
pub(crate) fn may_refer(rule_text: &str) -> bool {
    rule_text.contains("$ref") || rule_text.contains("\\u")
}

/// A digest of what the evaluators behind `names` are (each as its parsed rule, so spacing does
/// not count; a missing one counts as missing); 0 for no names. `cache` keeps each evaluator's
/// own digest across the flags of one document.
pub(crate) fn evaluators_digest<'n>(
    names: impl Iterator<Item = &'n str>,
    evaluators: &Map<String, Value>,
    cache: &mut FxHashMap<Box<str>, u64>,
) -> u64 {
    let mut digests: Vec<u8> = Vec::new();
    for name in names {
        let digest = match cache.get(name) {
            Some(&d) => d,
            None => {
                let d = match evaluators.get(name) {
                    Some(body) => {
                        fingerprint(&[name.as_bytes(), body.to_string().as_bytes(), b"1"])
                    }
                    None => fingerprint(&[name.as_bytes(), b"0"]),
                };
                cache.insert(name.into(), d);
                d
            }
        };
        digests.extend_from_slice(&digest.to_le_bytes());
    }
    if digests.is_empty() {
        0
    } else {
        fingerprint(&[&digests])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provenance_lists_every_evaluator_reached_once_sorted() {
        let evaluators = json!({
            "b": {"and": [{"$ref": "c"}, {"$ref": "a"}]},
            "a": {"or": [[{"$ref": "gone"}], {"$ref": "b"}]},
            "c": {"==": [{"var": "x"}, "$ref"]},
            "unused": {"$ref": "d"}
        });
        let evaluators = evaluators.as_object().unwrap();
        let rule = json!({"if": [{"$ref": "b"}, {"$ref": "b"}, {"in": ["x", [{"$ref": "c"}]]}]});
        assert_eq!(
            referenced(&rule, evaluators),
            ["a", "b", "c", "gone"].map(Box::<str>::from).to_vec()
        );
        let hashes: FxHashMap<Box<str>, u64> = [("a", 1), ("b", 2), ("c", 3), ("unused", 4)]
            .into_iter()
            .map(|(n, h)| (Box::from(n), h))
            .collect();
        let p = provenance(7, Some(&rule), evaluators, &hashes);
        assert_eq!(p.definition, 7);
        let listed: Vec<(&str, u64)> = p.evaluators.iter().map(|(n, h)| (&**n, *h)).collect();
        assert_eq!(listed, [("a", 1), ("b", 2), ("c", 3), ("gone", MISSING)]);
        assert!(p.matches(7, &hashes));
        let mut changed = hashes.clone();
        changed.insert("c".into(), 30);
        assert!(!p.matches(7, &changed));
        // An evaluator the rule does not reach does not count.
        changed.insert("c".into(), 3);
        changed.insert("unused".into(), 40);
        assert!(p.matches(7, &changed));
        // No rule, or a rule without `$ref`: nothing listed.
        let none = provenance::<Value>(7, None, evaluators, &hashes);
        assert!(none.evaluators.is_empty());
        let plain = provenance(7, Some(&json!({"var": "$ref"})), evaluators, &hashes);
        assert!(plain.evaluators.is_empty());
    }
}
