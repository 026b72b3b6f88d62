//! Overrides: live patches of a flag's state, default variant or `fractional` weights, layered
//! over the flag as its document defines it.
//!
//! A patch never produces an invalid flag: a default variant must name one of the flag's
//! variants, and weights can only be given to a flag whose own targeting rule holds exactly one
//! `fractional` split with literal variant names. The patched weights are written back into the
//! rule in the split's own entry order, so a ramp (`95/5`, then `75/25`, ...) only ever moves
//! users from one variant to the next and never reshuffles them; the rewritten rule is kept as
//! the flag's `targeting_source`, so sync clients receive the same split that is evaluated here.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::load::LoadOptions;
use crate::logic::{CompileOptions, Rule, RuleError};
use crate::model::{Flag, FlagSet, State};

/// The largest weight sum `fractional` accepts (`i32::MAX`), as flagd.
const MAX_TOTAL_WEIGHT: u64 = i32::MAX as u64;

/// How deep `$ref` chains are followed while looking for a split; deeper chains are a cycle.
const MAX_REF_DEPTH: usize = 32;

/// A live change to one flag. Fields left `None` keep what the document says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverridePatch {
    /// Serve the flag enabled or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// The variant served when targeting does not decide (the blue/green switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// New weights of the flag's `fractional` split, by variant name. Split variants not listed
    /// get weight 0; the order of the split's entries is kept whatever the order here.
    /// Serialized as a JSON object (`{"stable": 95, "canary": 5}`) in this order.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_weights",
        deserialize_with = "de_weights"
    )]
    pub weights: Option<Vec<(String, u32)>>,
}

impl OverridePatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.default_variant.is_none() && self.weights.is_none()
    }

    /// `self` with the fields `newer` sets replaced by `newer`'s values.
    pub fn merged(&self, newer: &OverridePatch) -> OverridePatch {
        OverridePatch {
            state: newer.state.or(self.state),
            default_variant: newer
                .default_variant
                .clone()
                .or_else(|| self.default_variant.clone()),
            weights: newer.weights.clone().or_else(|| self.weights.clone()),
        }
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            State::Enabled => "ENABLED",
            State::Disabled => "DISABLED",
        })
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "ENABLED" => Ok(State::Enabled),
            "DISABLED" => Ok(State::Disabled),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Str(other),
                &"\"ENABLED\" or \"DISABLED\"",
            )),
        }
    }
}

fn ser_weights<S: Serializer>(
    weights: &Option<Vec<(String, u32)>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match weights {
        None => s.serialize_none(),
        Some(list) => {
            let mut map = s.serialize_map(Some(list.len()))?;
            for (variant, weight) in list {
                map.serialize_entry(variant, weight)?;
            }
            map.end()
        }
    }
}

/// Reads weights from an object (`{"a": 1}`, in document order) or a list of pairs
/// (`[["a", 1]]`).
fn de_weights<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, u32)>>, D::Error> {
    struct Weights;

    impl<'de> Visitor<'de> for Weights {
        type Value = Option<Vec<(String, u32)>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of variant -> weight, or a list of [variant, weight] pairs")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Weights)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(2));
            while let Some((variant, weight)) = map.next_entry::<String, u32>()? {
                out.push((variant, weight));
            }
            Ok(Some(out))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
            while let Some(pair) = seq.next_element::<(String, u32)>()? {
                out.push(pair);
            }
            Ok(Some(out))
        }
    }

    d.deserialize_option(Weights)
}

/// Why a patch cannot be applied to a flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch names a variant the flag does not define.
    #[error("flag '{flag}' has no variant '{variant}'")]
    UnknownVariant {
        /// The flag's key.
        flag: String,
        /// The variant named.
        variant: String,
    },
    /// Weights were given for a flag whose targeting has no `fractional` split.
    #[error("flag '{flag}' has no fractional split to set weights on")]
    NoSplit {
        /// The flag's key.
        flag: String,
    },
    /// Weights were given for a flag whose split cannot be identified or rewritten.
    #[error("flag '{flag}' has an ambiguous fractional split: {detail}")]
    AmbiguousSplit {
        /// The flag's key.
        flag: String,
        /// What makes it ambiguous.
        detail: String,
    },
    /// The weights themselves are unusable.
    #[error("invalid weights for flag '{flag}': {detail}")]
    InvalidWeights {
        /// The flag's key.
        flag: String,
        /// What is wrong.
        detail: String,
    },
    /// The rewritten rule did not compile (it compiled before, so this signals a limit).
    #[error("flag '{flag}': the patched targeting rule does not compile: {source}")]
    Rule {
        /// The flag's key.
        flag: String,
        /// The compiler's error.
        source: RuleError,
    },
}

/// One entry of a flag's `fractional` split, as written in its targeting rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitEntry {
    /// The variant name.
    pub variant: String,
    /// The weight as written (`None` when it is not a literal whole number; an absent weight
    /// counts as 1).
    pub weight: Option<u64>,
}

/// Where the single patchable split of a rule is.
struct Located {
    /// JSON pointer of the `fractional` argument array inside the rule.
    pointer: String,
    /// Index of the first distribution entry (1 when a bucketing expression comes first).
    first_entry: usize,
}

/// Counts `fractional` nodes: those in the flag's own rule (with their pointers) and those
/// reached through `$ref`s.
#[derive(Default)]
struct Search<'e> {
    own: Vec<String>,
    referenced: usize,
    expanding: Vec<&'e str>,
}

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl<'e> Search<'e> {
    /// Walks `v` as the rule compiler reads it: a one-key object is an operator, any other
    /// object a literal (not searched), arrays are searched element by element.
    fn walk(&mut self, v: &Value, pointer: &str, evaluators: &'e Map<String, Value>, in_ref: bool) {
        match v {
            Value::Object(m) if m.len() == 1 => {
                let Some((key, args)) = m.iter().next() else {
                    return;
                };
                let here = format!("{pointer}/{}", pointer_token(key));
                match key.as_str() {
                    "fractional" => {
                        if in_ref {
                            self.referenced += 1;
                        } else {
                            self.own.push(here.clone());
                        }
                    }
                    "$ref" => {
                        if let Value::String(name) = args
                            && let Some((name, rule)) = evaluators.get_key_value(name.as_str())
                            && !self.expanding.contains(&name.as_str())
                            && self.expanding.len() < MAX_REF_DEPTH
                        {
                            self.expanding.push(name);
                            self.walk(rule, "", evaluators, true);
                            self.expanding.pop();
                        }
                        return;
                    }
                    _ => {}
                }
                self.walk(args, &here, evaluators, in_ref);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &format!("{pointer}/{i}"), evaluators, in_ref);
                }
            }
            _ => {}
        }
    }
}

/// Finds the one split of `rule` that a weight patch may rewrite.
fn locate(
    flag: &str,
    rule: &Value,
    evaluators: &Map<String, Value>,
) -> Result<Located, PatchError> {
    let mut search = Search::default();
    search.walk(rule, "", evaluators, false);
    let ambiguous = |detail: String| PatchError::AmbiguousSplit {
        flag: flag.to_owned(),
        detail,
    };
    match (search.own.len(), search.referenced) {
        (0, 0) => Err(PatchError::NoSplit {
            flag: flag.to_owned(),
        }),
        (0, _) => Err(ambiguous(
            "the split is inside a shared $evaluators rule".into(),
        )),
        (1, 0) => {
            let pointer = search.own.pop().unwrap_or_default();
            let Some(Value::Array(items)) = rule.pointer(&pointer) else {
                return Err(ambiguous(
                    "the fractional arguments are not a literal list".into(),
                ));
            };
            let first_entry = match items.first() {
                Some(Value::Array(_)) | None => 0,
                Some(_) => 1,
            };
            Ok(Located {
                pointer,
                first_entry,
            })
        }
        (own, referenced) => Err(ambiguous(format!(
            "{} fractional operators are reachable from the rule",
            own + referenced
        ))),
    }
}

/// Reads the entries of a located split; every entry must be `[name]` or `[name, weight]` with
/// a literal string name.
fn entries(flag: &str, items: &[Value], first: usize) -> Result<Vec<SplitEntry>, PatchError> {
    let ambiguous = |detail: String| PatchError::AmbiguousSplit {
        flag: flag.to_owned(),
        detail,
    };
    let mut out: Vec<SplitEntry> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate().skip(first) {
        let (name, weight) = match item.as_array().map(Vec::as_slice) {
            Some([Value::String(name)]) => (name, Some(1)),
            Some([Value::String(name), w]) => (name, literal_weight(w)),
            _ => {
                return Err(ambiguous(format!(
                    "entry {i} of the split is not a [variant, weight] pair with a literal variant name"
                )));
            }
        };
        if out.iter().any(|e| e.variant == *name) {
            return Err(ambiguous(format!(
                "variant '{name}' appears twice in the split"
            )));
        }
        out.push(SplitEntry {
            variant: name.clone(),
            weight,
        });
    }
    if out.is_empty() {
        return Err(ambiguous("the split has no entries".into()));
    }
    Ok(out)
}

fn literal_weight(w: &Value) -> Option<u64> {
    match w {
        Value::Null => Some(1),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|i| if i < 0 { 0 } else { i as u64 }))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0)
                    .map(|f| if f < 0.0 { 0 } else { f as u64 })
            }),
        _ => None,
    }
}

impl Flag {
    /// The flag's `fractional` split: its entries in rule order, when the flag's own targeting
    /// holds exactly one split with literal variant names.
    pub fn fractional_split(
        &self,
        evaluators: &Map<String, Value>,
    ) -> Result<Vec<SplitEntry>, PatchError> {
        let no_split = || PatchError::NoSplit {
            flag: self.key.to_string(),
        };
        let source = self.targeting_source.as_deref().ok_or_else(no_split)?;
        let rule: Value = serde_json::from_str(source).map_err(|_| no_split())?;
        let located = locate(&self.key, &rule, evaluators)?;
        let items = rule
            .pointer(&located.pointer)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        entries(&self.key, items, located.first_entry)
    }

    /// This flag with every field of `patch` applied, compiled against the document's
    /// `evaluators` with the document's load options; the first field that does not apply is
    /// the error, and nothing is changed then. This is how a requested change is validated.
    pub fn with_patch(
        &self,
        patch: &OverridePatch,
        evaluators: &Map<String, Value>,
        opts: &LoadOptions,
    ) -> Result<Flag, PatchError> {
        let (flag, mut stale) = self.with_patch_fields(patch, evaluators, opts);
        match stale.drain(..).next() {
            Some((_, error)) => Err(error),
            None => Ok(flag),
        }
    }

    /// This flag with each field of `patch` applied on its own: `state` always applies, a
    /// `defaultVariant` or `weights` that does not fit the flag as it is now defined (a variant
    /// renamed in the file, the split removed) is skipped and returned with the reason, and the
    /// other fields still apply.
    pub fn with_patch_fields(
        &self,
        patch: &OverridePatch,
        evaluators: &Map<String, Value>,
        opts: &LoadOptions,
    ) -> (Flag, Vec<(PatchField, PatchError)>) {
        let mut flag = self.clone();
        // A patched flag is no longer what its definition compiles to.
        flag.provenance = Default::default();
        let mut stale = Vec::new();
        if let Some(state) = patch.state {
            flag.state = state;
        }
        if let Some(name) = &patch.default_variant {
            match self.variant_index(name) {
                Some(index) => flag.default_variant = u32::try_from(index).ok(),
                None => stale.push((
                    PatchField::DefaultVariant,
                    PatchError::UnknownVariant {
                        flag: self.key.to_string(),
                        variant: name.clone(),
                    },
                )),
            }
        }
        if let Some(weights) = &patch.weights {
            match self.compiled_reweighted(weights, evaluators, opts) {
                Ok((rule, source)) => {
                    flag.targeting = Some(rule);
                    flag.targeting_source = Some(source.into_boxed_str());
                    flag.bind_results();
                }
                Err(error) => stale.push((PatchField::Weights, error)),
            }
        }
        (flag, stale)
    }

    /// The targeting rule with the split's weights replaced, compiled, and its compact JSON.
    fn compiled_reweighted(
        &self,
        weights: &[(String, u32)],
        evaluators: &Map<String, Value>,
        opts: &LoadOptions,
    ) -> Result<(Rule, String), PatchError> {
        let (rule, source) = self.reweighted(weights, evaluators)?;
        let compile = CompileOptions {
            evaluators: Some(evaluators),
            hash: opts.hash,
            max_depth: opts.max_rule_depth,
            budget: opts.budget,
        };
        let compiled = Rule::compile(&rule, &compile).map_err(|source| PatchError::Rule {
            flag: self.key.to_string(),
            source,
        })?;
        Ok((compiled, source))
    }

    /// The targeting rule with the split's weights replaced, and its compact JSON.
    fn reweighted(
        &self,
        weights: &[(String, u32)],
        evaluators: &Map<String, Value>,
    ) -> Result<(Value, String), PatchError> {
        let flag = self.key.to_string();
        let invalid = |detail: String| PatchError::InvalidWeights {
            flag: flag.clone(),
            detail,
        };
        for (i, (name, _)) in weights.iter().enumerate() {
            if self.variant_index(name).is_none() {
                return Err(PatchError::UnknownVariant {
                    flag: flag.clone(),
                    variant: name.clone(),
                });
            }
            if weights.iter().take(i).any(|(n, _)| n == name) {
                return Err(invalid(format!("variant '{name}' is given twice")));
            }
        }
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err(invalid("the weights add up to 0".into()));
        }
        if total > MAX_TOTAL_WEIGHT {
            return Err(invalid(format!(
                "the weights add up to more than {MAX_TOTAL_WEIGHT}"
            )));
        }

        let no_split = || PatchError::NoSplit { flag: flag.clone() };
        let source = self.targeting_source.as_deref().ok_or_else(no_split)?;
        let mut rule: Value = serde_json::from_str(source).map_err(|_| no_split())?;
        let located = locate(&self.key, &rule, evaluators)?;
        let Some(Value::Array(items)) = rule.pointer_mut(&located.pointer) else {
            return Err(no_split());
        };
        let split = entries(&self.key, items, located.first_entry)?;
        if let Some((name, _)) = weights
            .iter()
            .find(|(n, _)| !split.iter().any(|e| e.variant == *n))
        {
            return Err(invalid(format!(
                "variant '{name}' is not part of the fractional split"
            )));
        }
        for (item, entry) in items.iter_mut().skip(located.first_entry).zip(&split) {
            let weight = weights
                .iter()
                .find(|(n, _)| *n == entry.variant)
                .map_or(0, |(_, w)| *w);
            *item = Value::Array(vec![
                Value::String(entry.variant.clone()),
                Value::from(weight),
            ]);
        }
        let text = rule.to_string();
        Ok((rule, text))
    }
}

/// A field of an override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PatchField {
    /// `state`.
    State,
    /// `defaultVariant`.
    DefaultVariant,
    /// `weights`.
    Weights,
}

impl PatchField {
    /// The field's name in an override (`defaultVariant`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PatchField::State => "state",
            PatchField::DefaultVariant => "defaultVariant",
            PatchField::Weights => "weights",
        }
    }
}

impl fmt::Display for PatchField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field of a flag's override that does not apply to the flag as its document now defines it
/// (a file edit made it stale); the flag is served with the override's other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchFailure {
    /// The flag's key.
    pub key: String,
    /// The stale field.
    pub field: PatchField,
    /// Why it does not apply.
    pub error: PatchError,
}

impl FlagSet {
    /// A copy of this document with `patch_for(key)` applied to each of its flags, field by
    /// field ([`Flag::with_patch_fields`]); the fields that do not apply are reported.
    pub fn with_patches<'p>(
        &self,
        patch_for: impl Fn(&str) -> Option<&'p OverridePatch>,
        opts: &LoadOptions,
    ) -> (FlagSet, Vec<PatchFailure>) {
        let mut failures = Vec::new();
        let mut out = self.clone();
        for flag in &mut out.flags {
            let Some(patch) = patch_for(&flag.key) else {
                continue;
            };
            let (patched, stale) = flag.with_patch_fields(patch, &self.evaluators, opts);
            let patched = std::sync::Arc::new(patched);
            failures.extend(stale.into_iter().map(|(field, error)| PatchFailure {
                key: flag.key.to_string(),
                field,
                error,
            }));
            *flag = patched;
        }
        (out, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvalContext, Format, load};
    use serde_json::json;

    const DOC: &str = r#"{
      "$evaluators": {"split": {"fractional": [["a", 50], ["b", 50]]}},
      "flags": {
        "ramp": {"state": "ENABLED", "variants": {"stable": 1, "canary": 2}, "defaultVariant": "stable",
                 "targeting": {"fractional": [{"var": "user"}, ["stable", 95], ["canary", 5]]}},
        "short": {"state": "ENABLED", "variants": {"x": 1, "y": 2, "z": 3}, "defaultVariant": "x",
                 "targeting": {"if": [true, {"fractional": [["x"], ["y"], ["z"]]}]}},
        "plain": {"state": "ENABLED", "variants": {"blue": "b", "green": "g"}, "defaultVariant": "blue"},
        "two": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"if": [{"var": "x"}, {"fractional": [["a", 1], ["b", 1]]}, {"fractional": [["b", 1], ["a", 1]]}]}},
        "shared": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"$ref": "split"}},
        "both": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"if": [{"$ref": "split"}, {"fractional": [["a", 1], ["b", 1]]}, "a"]}},
        "computed": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"fractional": [[{"var": "v"}, 1], ["b", 1]]}}
      }
    }"#;

    fn set() -> FlagSet {
        load(DOC.as_bytes(), Format::Json, &LoadOptions::default())
            .unwrap()
            .flags
    }

    fn weights(list: &[(&str, u32)]) -> OverridePatch {
        OverridePatch {
            weights: Some(list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()),
            ..OverridePatch::default()
        }
    }

    fn patch(key: &str, p: &OverridePatch) -> Result<Flag, PatchError> {
        let set = set();
        set.get(key)
            .unwrap()
            .with_patch(p, set.evaluators(), &LoadOptions::default())
    }

    fn variant_for(flag: &Flag, user: &str) -> String {
        let data = json!({"user": user, "targetingKey": user});
        let ctx = EvalContext {
            data: &data,
            flag_key: flag.key(),
            timestamp: 0,
        };
        flag.targeting()
            .unwrap()
            .evaluate(&ctx)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn serde_shape() {
        let p: OverridePatch = serde_json::from_str(
            r#"{"state":"DISABLED","defaultVariant":"g","weights":{"z":1,"a":2}}"#,
        )
        .unwrap();
        assert_eq!(p.state, Some(State::Disabled));
        assert_eq!(p.weights, Some(vec![("z".into(), 1), ("a".into(), 2)]));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"state":"DISABLED","defaultVariant":"g","weights":{"z":1,"a":2}}"#
        );
        let pairs: OverridePatch = serde_json::from_str(r#"{"weights":[["a",1]]}"#).unwrap();
        assert_eq!(pairs.weights, Some(vec![("a".into(), 1)]));
        assert_eq!(
            serde_json::to_string(&OverridePatch::default()).unwrap(),
            "{}"
        );
        assert!(serde_json::from_str::<OverridePatch>(r#"{"state":"off"}"#).is_err());
        assert!(serde_json::from_str::<OverridePatch>(r#"{"weights":{"a":-1}}"#).is_err());
        assert!(serde_json::from_str::<OverridePatch>(r#"{"colour":1}"#).is_err());
        let null: OverridePatch = serde_json::from_str(r#"{"weights":null}"#).unwrap();
        assert!(null.is_empty());
    }

    #[test]
    fn merge_keeps_unset_fields() {
        let a = OverridePatch {
            state: Some(State::Disabled),
            ..weights(&[("a", 1)])
        };
        let b = OverridePatch {
            default_variant: Some("x".into()),
            ..weights(&[("b", 1)])
        };
        let m = a.merged(&b);
        assert_eq!(m.state, Some(State::Disabled));
        assert_eq!(m.default_variant.as_deref(), Some("x"));
        assert_eq!(m.weights, Some(vec![("b".into(), 1)]));
    }

    #[test]
    fn state_and_default_variant() {
        let p = OverridePatch {
            state: Some(State::Disabled),
            default_variant: Some("green".into()),
            weights: None,
        };
        let f = patch("plain", &p).unwrap();
        assert_eq!(f.state(), State::Disabled);
        assert_eq!(f.default_variant().unwrap().0, "green");
        let bad = OverridePatch {
            default_variant: Some("red".into()),
            ..OverridePatch::default()
        };
        assert!(matches!(
            patch("plain", &bad),
            Err(PatchError::UnknownVariant { .. })
        ));
    }

    #[test]
    fn weight_errors() {
        assert!(matches!(
            patch("plain", &weights(&[("blue", 1)])),
            Err(PatchError::NoSplit { .. })
        ));
        assert!(matches!(
            patch("ramp", &weights(&[("beta", 1)])),
            Err(PatchError::UnknownVariant { .. })
        ));
        assert!(matches!(
            patch("two", &weights(&[("a", 1)])),
            Err(PatchError::AmbiguousSplit { .. })
        ));
        assert!(matches!(
            patch("shared", &weights(&[("a", 1)])),
            Err(PatchError::AmbiguousSplit { .. })
        ));
        assert!(matches!(
            patch("both", &weights(&[("a", 1)])),
            Err(PatchError::AmbiguousSplit { .. })
        ));
        assert!(matches!(
            patch("computed", &weights(&[("a", 1)])),
            Err(PatchError::AmbiguousSplit { .. })
        ));
        assert!(matches!(
            patch("ramp", &weights(&[("stable", 0)])),
            Err(PatchError::InvalidWeights { .. })
        ));
        assert!(matches!(
            patch("ramp", &weights(&[("stable", 1), ("stable", 2)])),
            Err(PatchError::InvalidWeights { .. })
        ));
        assert!(matches!(
            patch("ramp", &weights(&[("stable", u32::MAX)])),
            Err(PatchError::InvalidWeights { .. })
        ));
    }

    #[test]
    fn weights_rewrite_the_split_in_place() {
        let f = patch("ramp", &weights(&[("canary", 25), ("stable", 75)])).unwrap();
        assert_eq!(
            f.targeting_source().unwrap(),
            r#"{"fractional":[{"var":"user"},["stable",75],["canary",25]]}"#
        );
        let set = set();
        assert_eq!(
            f.fractional_split(set.evaluators()).unwrap(),
            vec![
                SplitEntry {
                    variant: "stable".into(),
                    weight: Some(75)
                },
                SplitEntry {
                    variant: "canary".into(),
                    weight: Some(25)
                }
            ]
        );
        // Unlisted split variants get 0; the shorthand entries gain explicit weights.
        let f = patch("short", &weights(&[("z", 1)])).unwrap();
        assert!(
            f.targeting_source()
                .unwrap()
                .contains(r#"["x",0],["y",0],["z",1]"#)
        );
        for user in ["a", "b", "c", "d"] {
            assert_eq!(variant_for(&f, user), "z");
        }
    }

    #[test]
    fn ramps_are_monotonic() {
        let base = set();
        let ramp = base.get("ramp").unwrap();
        let at = |canary: u32| {
            ramp.with_patch(
                &weights(&[("stable", 100 - canary), ("canary", canary)]),
                base.evaluators(),
                &LoadOptions::default(),
            )
            .unwrap()
        };
        let steps: Vec<Flag> = [0, 1, 5, 25, 50, 99, 100].iter().map(|&c| at(c)).collect();
        let mut previous = vec![false; 2000];
        for flag in &steps {
            for (i, was) in previous.iter_mut().enumerate() {
                let canary = variant_for(flag, &format!("user-{i}")) == "canary";
                assert!(!*was || canary, "user-{i} left canary as the ramp went up");
                *was = canary;
            }
        }
        assert!(previous.iter().all(|c| *c));
    }

    #[test]
    fn flag_set_with_patches_reports_failures() {
        let set = set();
        let ok = weights(&[("stable", 1)]);
        let bad = weights(&[("nope", 1)]);
        let (out, failures) = set.with_patches(
            |k| match k {
                "ramp" => Some(&ok),
                "plain" => Some(&bad),
                _ => None,
            },
            &LoadOptions::default(),
        );
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].key, "plain");
        assert!(
            out.get("ramp")
                .unwrap()
                .targeting_source()
                .unwrap()
                .contains(r#"["canary",0]"#)
        );
        assert!(
            out.get("plain")
                .unwrap()
                .same_definition(set.get("plain").unwrap())
        );
    }

    /// A stale field is skipped and reported; the others, and `state` always, still apply.
    #[test]
    fn fields_apply_independently() {
        let set = set();
        let opts = LoadOptions::default();
        let kill = OverridePatch {
            state: Some(State::Disabled),
            default_variant: Some("gone".into()),
            weights: Some(vec![("stable".into(), 50), ("canary".into(), 50)]),
        };
        let ramp = set.get("ramp").unwrap();
        let (flag, stale) = ramp.with_patch_fields(&kill, set.evaluators(), &opts);
        assert_eq!(flag.state(), State::Disabled);
        assert_eq!(flag.default_variant().unwrap().0, "stable");
        assert!(
            flag.targeting_source()
                .unwrap()
                .contains(r#"["canary",50]"#)
        );
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, PatchField::DefaultVariant);
        assert!(matches!(stale[0].1, PatchError::UnknownVariant { .. }));
        // Validation of a request is strict: the first stale field is the error.
        assert!(ramp.with_patch(&kill, set.evaluators(), &opts).is_err());

        let plain = set.get("plain").unwrap();
        let (flag, stale) = plain.with_patch_fields(&kill, set.evaluators(), &opts);
        assert_eq!(flag.state(), State::Disabled);
        let fields: Vec<_> = stale.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, [PatchField::DefaultVariant, PatchField::Weights]);
        let (_, failures) = set.with_patches(|_| Some(&kill), &opts);
        assert!(
            failures
                .iter()
                .any(|f| f.key == "plain" && f.field == PatchField::Weights)
        );
    }
}
