//! The flag model: a loaded document's flags, compiled and ready to evaluate.

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use crate::logic::Rule;

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
    /// Variants sorted by name, so lookups can binary-search and output is stable.
    pub(crate) variants: Vec<(Box<str>, Value)>,
    /// Index into `variants`; `None` when the document gave null, `""` or nothing.
    pub(crate) default_variant: Option<usize>,
    /// `None` when targeting is absent, null or `{}`: such a flag resolves statically.
    pub(crate) targeting: Option<Rule>,
    /// The targeting rule as written (compact JSON, `$ref`s not expanded), kept for sync output.
    pub(crate) targeting_source: Option<Box<str>>,
    /// Flag-set metadata overlaid by the flag's own metadata.
    pub(crate) metadata: Map<String, Value>,
    pub(crate) flag_set_id: Option<Box<str>>,
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
        self.variants.iter().map(|(k, v)| (&**k, v))
    }

    /// The value of variant `name`, if the flag has it.
    #[inline]
    pub fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        self.variant_index(name)
            .and_then(|i| self.variants.get(i))
            .map(|(k, v)| (&**k, v))
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
            .and_then(|i| self.variants.get(i))
            .map(|(k, v)| (&**k, v))
    }

    /// The compiled targeting rule; `None` for a static flag.
    pub fn targeting(&self) -> Option<&Rule> {
        self.targeting.as_ref()
    }

    /// The targeting rule as written in the document (compact JSON), if any.
    pub fn targeting_source(&self) -> Option<&str> {
        self.targeting_source.as_deref()
    }

    /// Flag-set metadata merged with the flag's metadata (the flag's keys win).
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// The flag set this flag belongs to (`metadata.flagSetId`), if any.
    pub fn flag_set_id(&self) -> Option<&str> {
        self.flag_set_id.as_deref()
    }

    /// Structural equality of what a client can observe (used to compute change sets).
    pub fn same_definition(&self, other: &Flag) -> bool {
        self.key == other.key
            && self.state == other.state
            && self.variants == other.variants
            && self.default_variant() == other.default_variant()
            && self.targeting_source == other.targeting_source
            && self.metadata == other.metadata
    }
}

/// The flags of one document, with its flag-set metadata and shared evaluators.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    /// Flags sorted by key.
    pub(crate) flags: Vec<Flag>,
    pub(crate) index: FxHashMap<Box<str>, u32>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) evaluators: Map<String, Value>,
}

impl FlagSet {
    pub(crate) fn from_flags(
        mut flags: Vec<Flag>,
        metadata: Map<String, Value>,
        evaluators: Map<String, Value>,
    ) -> Self {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        // In the array form a key may repeat; the later definition wins, as a map would keep it.
        flags.dedup_by(|later, earlier| {
            if later.key == earlier.key {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        let mut index = FxHashMap::default();
        index.reserve(flags.len());
        for (i, flag) in flags.iter().enumerate() {
            index.insert(flag.key.clone(), i as u32);
        }
        Self {
            flags,
            index,
            metadata,
            evaluators,
        }
    }

    /// Looks a flag up by key.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.index
            .get(key)
            .and_then(|&i| self.flags.get(i as usize))
    }

    /// All flags, sorted by key.
    pub fn flags(&self) -> &[Flag] {
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
