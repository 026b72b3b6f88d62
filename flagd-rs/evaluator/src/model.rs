//! The flag model: a loaded document's flags, compiled and ready to evaluate.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::index::FlagIndex;
use crate::load::Provenance;
use crate::load::raw::sort_last_wins;
use crate::load::reuse;
use crate::logic::Rule;
use crate::metadata::Metadata;

/// Whether a flag is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Evaluated normally.
    Enabled,
    /// Resolves with reason `DISABLED` and no value.
    Disabled,
}

/// One flag, compiled.
#[derive(Debug, Clone)]
pub struct Flag {
    pub(crate) key: Box<str>,
    pub(crate) state: State,
    /// Index into `variants`; `None` when the document gave null, `""` or nothing.
    pub(crate) default_variant: Option<u32>,
    /// Variants sorted by name, so lookups can binary-search and output is stable. Names and
    /// values are shared with the other flags of the load that have the same.
    pub(crate) variants: Box<[(Arc<str>, Arc<Value>)]>,
    /// `None` when targeting is absent, null or `{}`: such a flag resolves statically.
    pub(crate) targeting: Option<Rule>,
    /// The targeting rule as written (JSON without whitespace between tokens, `$ref`s not
    /// expanded), kept for sync output.
    pub(crate) targeting_source: Option<Box<str>>,
    /// Flag-set metadata (shared with the document's other flags) overlaid by the flag's own.
    pub(crate) metadata: Metadata,
    /// What the flag was compiled from, for reuse by a later load of the same document.
    pub(crate) provenance: Provenance,
    /// What the shared `$evaluators` its rule refers to are (0: it refers to none), so that a
    /// changed evaluator changes the definition of every flag that uses it, as inlining would.
    pub(crate) evaluators_digest: u64,
}

impl Flag {
    /// The flag's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Enabled or disabled.
    pub fn state(&self) -> State {
        self.state
    }

    /// Variant names and values, sorted by name.
    pub fn variants(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.variants.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of variant `name`, if the flag has it.
    #[inline]
    pub fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        self.variant_index(name)
            .and_then(|i| self.variants.get(i))
            .map(|(k, v)| (&**k, &**v))
    }

    /// The position of variant `name`. Flags have few variants, so for up to eight a scan that
    /// compares lengths before bytes beats the binary search, whose every step is a full string
    /// comparison.
    #[inline]
    pub(crate) fn variant_index(&self, name: &str) -> Option<usize> {
        if self.variants.len() <= 8 {
            self.variants
                .iter()
                .position(|(k, _)| k.len() == name.len() && k.as_bytes() == name.as_bytes())
        } else {
            self.variants
                .binary_search_by(|(k, _)| (**k).cmp(name))
                .ok()
        }
    }

    /// The default variant's name and value, if the flag has one.
    pub fn default_variant(&self) -> Option<(&str, &Value)> {
        self.default_variant
            .and_then(|i| self.variants.get(i as usize))
            .map(|(k, v)| (&**k, &**v))
    }

    /// The compiled targeting rule; `None` for a static flag.
    pub fn targeting(&self) -> Option<&Rule> {
        self.targeting.as_ref()
    }

    /// The targeting rule as written in the document (without whitespace between tokens), if any.
    pub fn targeting_source(&self) -> Option<&str> {
        self.targeting_source.as_deref()
    }

    /// Flag-set metadata merged with the flag's metadata (the flag's keys win), as a view that
    /// iterates in byte order of the keys.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The flag set this flag belongs to (`metadata.flagSetId`), if any.
    #[inline]
    pub fn flag_set_id(&self) -> Option<&str> {
        self.metadata.flag_set_id()
    }

    /// What the shared `$evaluators` its rule refers to are (0 when it refers to none). With the
    /// rule as written it determines what the rule does: a changed evaluator changes it.
    pub fn evaluators_digest(&self) -> u64 {
        self.evaluators_digest
    }

    /// Structural equality of what a client can observe (used to compute change sets). Rules
    /// are compared as JSON values, so a rule written with other spacing or member order is
    /// the same rule.
    pub fn same_definition(&self, other: &Flag) -> bool {
        std::ptr::eq(self, other)
            || (self.key == other.key
                && self.state == other.state
                && self.variants == other.variants
                && self.default_variant() == other.default_variant()
                && self.metadata == other.metadata
                && self.evaluators_digest == other.evaluators_digest
                && same_rule(
                    self.targeting_source.as_deref(),
                    other.targeting_source.as_deref(),
                ))
    }
}

/// Records in each newly built flag what the evaluators its rule refers to are. A flag shared
/// with an earlier load keeps its digest: it was reused because those evaluators are unchanged.
/// A fingerprinted flag's provenance already lists the evaluators its rule refers to (none for a
/// rule whose text cannot name one); only other flags look at the rule's text.
fn stamp_evaluators_digests(flags: &mut [Arc<Flag>], evaluators: &Map<String, Value>) {
    let mut cache = FxHashMap::default();
    for flag in flags {
        let Some(flag) = Arc::get_mut(flag) else {
            continue;
        };
        if flag.provenance.definition != 0 {
            if !flag.provenance.evaluators.is_empty() {
                flag.evaluators_digest = reuse::evaluators_digest(
                    flag.provenance.evaluators.iter().map(|(name, _)| &**name),
                    evaluators,
                    &mut cache,
                );
            }
            continue;
        }
        let Some(text) = flag.targeting_source.as_deref() else {
            continue;
        };
        if !reuse::may_refer(text) {
            continue;
        }
        flag.evaluators_digest = match serde_json::from_str::<Value>(text) {
            Ok(rule) => reuse::evaluators_digest(
                reuse::referenced(&rule, evaluators).iter().map(|n| &**n),
                evaluators,
                &mut cache,
            ),
            Err(_) => 0,
        };
    }
}

/// Whether two rule texts are the same JSON value.
fn same_rule(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a == b
                || matches!(
                    (
                        serde_json::from_str::<Value>(a),
                        serde_json::from_str::<Value>(b),
                    ),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        (a, b) => a == b,
    }
}

/// The flags of one document, with its flag-set metadata and shared evaluators.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    /// Flags sorted by key, each shared with the loads that reused it.
    pub(crate) flags: Vec<Arc<Flag>>,
    pub(crate) index: FlagIndex,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) evaluators: Map<String, Value>,
    /// The document-level inputs of every flag (load options, flag-set metadata); 0 when the
    /// flags cannot be reused.
    pub(crate) document_fingerprint: u64,
}

impl FlagSet {
    pub(crate) fn from_flags(
        mut flags: Vec<Arc<Flag>>,
        metadata: Map<String, Value>,
        evaluators: Map<String, Value>,
    ) -> Self {
        // In the array form a key may repeat; the later definition wins, as a map would keep it.
        sort_last_wins(&mut flags, |a, b| a.key.cmp(&b.key));
        stamp_evaluators_digests(&mut flags, &evaluators);
        for flag in &mut flags {
            // A flag shared with an earlier load was bound then.
            if let Some(flag) = Arc::get_mut(flag) {
                flag.bind_results();
            }
        }
        let index = FlagIndex::new(flags.iter().map(|f| &*f.key));
        Self {
            flags,
            index,
            metadata,
            evaluators,
            document_fingerprint: 0,
        }
    }

    /// Looks a flag up by key.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.get_shared(key).map(|f| &**f)
    }

    /// Looks a flag up by key, as the shared pointer the set holds.
    #[inline]
    pub fn get_shared(&self, key: &str) -> Option<&Arc<Flag>> {
        let i = self
            .index
            .get(key, |i| self.flags.get(i).map(|f| &*f.key))?;
        self.flags.get(i)
    }

    /// All flags, sorted by key. A flag a later [`crate::reload`] reused is the same `Arc` in
    /// both sets.
    pub fn flags(&self) -> &[Arc<Flag>] {
        &self.flags
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the document defined no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The document's top-level `metadata`.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// The document's `$evaluators`, as written.
    pub fn evaluators(&self) -> &Map<String, Value> {
        &self.evaluators
    }
}
