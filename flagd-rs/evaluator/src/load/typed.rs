//! The fast way in for JSON: decode the document into borrowed, typed parts without building a
//! tree of the whole document, check what the schema and flagd check, compile each rule from
//! its own raw text, and keep flags a previous load already compiled from the same inputs.
//!
//! It either produces exactly what the full path ([`super::load_value`]) would, for a document
//! that path accepts without a single diagnostic, or gives up (`None`), and the caller takes the
//! full path, which explains what is wrong with the same diagnostics as ever.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::LoadOptions;
use super::raw::{Entries, Text, compact, plain_compacted, present, sort_last_wins};
use super::reuse::{document_fingerprint, fingerprint, may_refer, provenance};
use crate::intern::Interner;
use crate::logic::input::{Json, RuleInput, Shape};
use crate::logic::{CompileOptions, Rule};
use crate::metadata::{Metadata, SetMetadata};
use crate::model::{Flag, FlagSet, State};
use crate::schema;

/// One flag definition as written. Members it does not name are skipped, as the schema allows.
#[derive(Deserialize)]
struct FlagDef<'a> {
    #[serde(borrow)]
    state: Option<Text<'a>>,
    #[serde(borrow, default)]
    variants: Entries<'a, Value>,
    #[serde(borrow, rename = "defaultVariant")]
    default_variant: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    targeting: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Entries<'a, Value>,
    #[serde(borrow)]
    key: Option<Text<'a>>,
}

/// A document's members as the typed way needs them; others are skipped. A repeated member
/// fails the decode (and the document takes the full way).
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow, rename = "$schema", default, deserialize_with = "present")]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, rename = "$evaluators", default, deserialize_with = "present")]
    evaluators: Option<&'a RawValue>,
    #[serde(borrow)]
    flags: Option<FlagList<'a>>,
}

/// `flags`: key -> definition, or definitions with their `key`, each as written.
enum FlagList<'a> {
    Map(Entries<'a, &'a RawValue>),
    Array(Vec<&'a RawValue>),
}

impl<'de: 'a, 'a> Deserialize<'de> for FlagList<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ListVisitor<'a> {
            type Value = FlagList<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object or an array of flags")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(key) = map.next_key::<Text<'a>>()? {
                    out.push((key, map.next_value::<&'a RawValue>()?));
                }
                Ok(FlagList::Map(Entries(out)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(def) = seq.next_element::<&'a RawValue>()? {
                    out.push(def);
                }
                Ok(FlagList::Array(out))
            }
        }
        d.deserialize_any(ListVisitor(std::marker::PhantomData))
    }
}

/// The document's shared parts, as every flag needs them.
struct Shared<'d> {
    metadata: Map<String, Value>,
    /// The same, as every flag holds it.
    set_metadata: Option<Arc<SetMetadata>>,
    evaluators: Map<String, Value>,
    /// Evaluator name -> fingerprint of its definition.
    evaluator_hashes: FxHashMap<&'d str, u64>,
    /// The document-level fingerprint of every flag ([`document_fingerprint`]).
    document: u64,
}

/// Loads a JSON document the fast way, reusing the flags of `previous` whose inputs are
/// unchanged; `None` when the document needs the full path.
pub(super) fn load_json(
    bytes: &[u8],
    opts: &LoadOptions,
    previous: Option<&FlagSet>,
) -> Option<FlagSet> {
    // Every pass below reads the document without its line breaks and indentation; flags'
    // fingerprints are taken of that text too.
    let compacted = plain_compacted(bytes)?;
    let bytes = &*compacted;
    // Only an object is a document (serde would also take an array as the members in order).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let root: Document<'_> = serde_json::from_slice(bytes).ok()?;
    if root.schema.is_some_and(|s| !s.get().starts_with('"')) {
        return None;
    }
    let metadata_raw = root.metadata.map(RawValue::get);
    let metadata = match metadata_raw {
        None => Map::new(),
        Some(raw) => {
            let map: Map<String, Value> = serde_json::from_str(raw).ok()?;
            if !schema::set_metadata_ok(&map) {
                return None;
            }
            map
        }
    };
    let evaluator_entries: Entries<'_, &RawValue> = match root.evaluators {
        None => Entries::default(),
        Some(raw) => serde_json::from_str(raw.get()).ok()?,
    };
    let mut evaluators = Map::new();
    let mut evaluator_hashes = FxHashMap::default();
    for (name, raw) in &evaluator_entries.0 {
        let rule: Value = serde_json::from_str(raw.get()).ok()?;
        // flagd refuses an empty evaluator; the schema wants a rule object.
        if name.0.is_empty()
            || rule.as_object().is_none_or(Map::is_empty)
            || !schema::targeting_ok(&rule)
        {
            return None;
        }
        evaluator_hashes.insert(
            &*name.0,
            fingerprint(&[name.0.as_bytes(), raw.get().as_bytes()]),
        );
        evaluators.insert(name.0.clone().into_owned(), rule);
    }
    let mut interner = Interner::default();
    let shared = Shared {
        set_metadata: SetMetadata::from_map(&metadata, &mut interner),
        metadata,
        evaluators,
        evaluator_hashes,
        document: document_fingerprint(opts, metadata_raw),
    };
    let previous = previous.filter(|p| p.document_fingerprint == shared.document);
    let compile = CompileOptions {
        evaluators: Some(&shared.evaluators),
        hash: opts.hash,
        max_depth: opts.max_rule_depth,
        budget: opts.budget,
    };

    let mut flags = Vec::new();
    match root.flags? {
        FlagList::Map(entries) => {
            flags.reserve(entries.0.len());
            for (key, def) in &entries.0 {
                if key.0.is_empty() {
                    return None;
                }
                flags.push(flag(
                    &key.0,
                    def.get(),
                    false,
                    (&shared, &mut interner),
                    &compile,
                    previous,
                )?);
            }
        }
        FlagList::Array(list) => {
            flags.reserve(list.len());
            for def in list {
                flags.push(flag(
                    "",
                    def.get(),
                    true,
                    (&shared, &mut interner),
                    &compile,
                    previous,
                )?);
            }
        }
    }
    let Shared {
        metadata,
        evaluators,
        document,
        ..
    } = shared;
    let mut set = FlagSet::from_flags(flags, metadata, evaluators);
    set.document_fingerprint = document;
    Some(set)
}

/// One flag: the previous load's when its inputs are unchanged, else decoded, checked and
/// compiled. In the array form (`keyed`) the key is the definition's `key` member. Variant and
/// metadata names and values are shared through `interner`.
fn flag(
    key: &str,
    raw: &str,
    keyed: bool,
    (shared, interner): (&Shared<'_>, &mut Interner),
    compile: &CompileOptions<'_>,
    previous: Option<&FlagSet>,
) -> Option<Arc<Flag>> {
    // Only an object is a flag (serde would also take an array as the fields in order).
    if !raw.starts_with('{') {
        return None;
    }
    let decoded;
    let key = if keyed {
        #[derive(Deserialize)]
        struct Keyed<'a> {
            #[serde(borrow)]
            key: Option<Text<'a>>,
        }
        decoded = serde_json::from_str::<Keyed<'_>>(raw).ok()?.key?.0;
        &*decoded
    } else {
        key
    };
    let definition = fingerprint(&[key.as_bytes(), raw.as_bytes()]);
    if let Some(old) = previous.and_then(|p| p.get_shared(key))
        && old.provenance.matches(definition, &shared.evaluator_hashes)
    {
        return Some(old.clone());
    }
    let def: FlagDef<'_> = serde_json::from_str(raw).ok()?;
    if keyed && def.key.as_ref().is_none_or(|k| k.0.is_empty()) {
        return None;
    }

    let state = match def.state?.0.as_ref() {
        "ENABLED" => State::Enabled,
        "DISABLED" => State::Disabled,
        _ => return None,
    };

    let mut variants: Vec<(Arc<str>, Value)> = def
        .variants
        .0
        .into_iter()
        .map(|(name, value)| (interner.name(&name.0), value))
        .collect();
    // A repeated name keeps its last value, as a parsed map does.
    sort_last_wins(&mut variants, |a, b| a.0.cmp(&b.0));
    if !schema::variant_values_ok(variants.iter().map(|(_, v)| v)) {
        return None;
    }

    let default_variant = match def.default_variant {
        None => None,
        Some(name) if name.0.is_empty() => None,
        Some(name) => Some(
            u32::try_from(
                variants
                    .binary_search_by(|(k, _)| (**k).cmp(&*name.0))
                    .ok()?,
            )
            .ok()?,
        ),
    };

    let variants = variants
        .into_iter()
        .map(|(name, value)| (name, interner.value(value)))
        .collect();

    let mut own = Vec::with_capacity(def.metadata.0.len());
    for (name, value) in def.metadata.0 {
        if !schema::metadata_value_ok(&value) {
            return None;
        }
        own.push((interner.name(&name.0), interner.value(value)));
    }
    let metadata = Metadata::new(shared.set_metadata.as_ref(), own);

    let (targeting, targeting_source, provenance) = match def.targeting {
        None => (
            None,
            None,
            provenance::<Json<'_>>(
                definition,
                None,
                &shared.evaluators,
                &shared.evaluator_hashes,
            ),
        ),
        Some(raw) => {
            // The rule read straight from its text, without a tree of `Value`s.
            let rule: Json<'_> = serde_json::from_str(raw.get()).ok()?;
            if !schema::targeting_ok(&rule) {
                return None;
            }
            // Only a rule whose text names `$ref` (or hides a name behind an escape) can refer
            // to an evaluator.
            let refers = may_refer(raw.get());
            let provenance = provenance(
                definition,
                Some(&rule).filter(|_| refers),
                &shared.evaluators,
                &shared.evaluator_hashes,
            );
            if matches!(rule.shape(), Shape::Obj(0)) {
                (None, None, provenance)
            } else {
                let compiled = Rule::compile_input(&rule, compile).ok()?;
                let source = Box::from(compact(raw.get()));
                (Some(compiled), Some(source), provenance)
            }
        }
    };

    Some(Arc::new(Flag {
        key: key.into(),
        state,
        default_variant,
        variants,
        targeting,
        targeting_source,
        metadata,
        provenance,
        evaluators_digest: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Format, load_value, parse};

    fn full(doc: &str) -> FlagSet {
        let value = parse(doc.as_bytes(), Format::Json).unwrap();
        let loaded = load_value(value, &LoadOptions::default()).unwrap();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.flags
    }

    #[track_caller]
    fn agrees(doc: &str) {
        let fast = load_json(doc.as_bytes(), &LoadOptions::default(), None)
            .unwrap_or_else(|| panic!("the typed way gave up on {doc}"));
        let full = full(doc);
        assert_eq!(fast.len(), full.len());
        assert_eq!(fast.metadata(), full.metadata());
        assert_eq!(fast.evaluators(), full.evaluators());
        let contexts = [
            serde_json::json!({}),
            serde_json::json!({"email": "a@acme.com", "k": 1, "targetingKey": "u1", "v": "2.0.0"}),
        ];
        for (a, b) in fast.flags().iter().zip(full.flags()) {
            assert!(a.same_definition(b), "{a:?}\n{b:?}");
            assert_eq!(a.flag_set_id(), b.flag_set_id());
            for ctx in &contexts {
                let (x, y) = (a.evaluate(ctx, 0), b.evaluate(ctx, 0));
                assert_eq!(
                    (x.variant, x.value, x.reason),
                    (y.variant, y.value, y.reason)
                );
            }
        }
    }

    #[test]
    fn the_typed_way_builds_what_the_full_way_builds() {
        agrees(r#"{"flags":{}}"#);
        // An unknown operator compiles (and fails when evaluated), both ways.
        agrees(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":{"nope":[1]}}}}"#,
        );
        agrees(
            r#"{"$schema":"https://flagd.dev/schema/v0/flags.json","metadata":{"flagSetId":"s","version":"2","n":1},
            "$evaluators":{"staff":{"ends_with":[{"var":"email"},"@acme.com"]}},
            "flags":{
              "b": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
                    "targeting":{ "if" : [ {"$ref":"staff"}, "on", "off" ] },"metadata":{"team":"x","flagSetId":"own"}},
              "a\u00e9\n": {"state":"DISABLED","variants":{"x":{"deep":[1,2,{"a":null}]},"y":{}},"defaultVariant":null,"unknown":[1,{"z":2}]},
              "c": {"state":"ENABLED","variants":{"v":"1","w":"2","v":"3"},"defaultVariant":"v","targeting":{}},
              "d": {"state":"ENABLED","variants":{"n":1.5,"m":-2},"defaultVariant":"","targeting":{"fractional":[["n",50],["m",50]]}},
              "c": {"state":"ENABLED","variants":{"v":"last"},"defaultVariant":"v"},
              "e": {"state":"ENABLED","variants":{"old":false,"new":true},"defaultVariant":"old",
                    "targeting":{"if":[{"sem_ver":[{"var":"v"},">=","1.2.0"]},"new","old"]}}
            }}"#,
        );
        agrees(
            r#"{"flags":[
              {"key":"k","state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a"},
              {"key":"j","state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a","targeting":{"if":[{"==":[{"var":"k"},1]},"b",null]}},
              {"key":"k","state":"DISABLED","variants":{"a":"A2"},"defaultVariant":"a"}
            ]}"#,
        );
    }

    #[test]
    fn rules_read_from_their_text_load_as_parsed_rules_do() {
        agrees(
            r#"{"$evaluators":{"e":{"in":["x",{"var":"k"}]},"f":{"$ref":"e"}},"flags":{
              "dup": {"state":"ENABLED","variants":{"a":1,"b":2},"defaultVariant":"a",
                      "targeting":{"if":[true,"b","a"],"if":[{"==":[{"var":"k"},-0]},"b","a"]}},
              "esc": {"state":"ENABLED","variants":{"a\u0062":"x","b":"y"},"defaultVariant":"b",
                      "targeting":{"i\u0066":[{"\u0024ref":"f"},"a\u0062",{"v\u0061r":"k\n"}]}},
              "zero": {"state":"ENABLED","variants":{"a":true,"b":false},"defaultVariant":"a",
                      "targeting":{"if":[{"<":[0.0,{"var":"k"},-0.0]},"b",null]}},
              "lit": {"state":"ENABLED","variants":{"a":{"x":1},"b":{"x":2}},"defaultVariant":"a",
                      "targeting":{"if":[{"in":[{"var":"k"},["a","b","c","d","e","f","g","h","i","j","k"]]},"b","a"]}},
              "deep": {"state":"ENABLED","variants":{"a":true},"defaultVariant":"a",
                      "targeting":{"!":{"!":{"!":{"!":{"==":[[[[[1]]]],{"var":"k"}]}}}}}}
            }}"#,
        );
    }

    #[test]
    fn the_typed_way_leaves_to_the_full_way_what_it_must_explain() {
        let flag = r#"{"state":"ENABLED","variants":{"a":true},"defaultVariant":"a"}"#;
        let gives_up = [
            // Not a document of flags, or flags of the wrong shape.
            "[]".to_owned(),
            r#"{"flag":{}}"#.to_owned(),
            r#"{"flags":"x"}"#.to_owned(),
            format!(r#"{{"flags":{{"":{flag}}}}}"#),
            r#"{"flags":{"f":["ENABLED",{"a":true}]}}"#.to_owned(),
            format!(r#"{{"flags":[{flag}]}}"#),
            r#"{"flags":[{"key":"","state":"ENABLED","variants":{"a":true}}]}"#.to_owned(),
            // Schema warnings.
            r#"{"flags":{"f":{"state":"ON","variants":{"a":true}}}}"#.to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true,"b":1}}}}"#.to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{}}}}"#.to_owned(),
            r#"{"flags":{"f":{"variants":{"a":true}}}}"#.to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"metadata":null}}}"#
                .to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"metadata":{"o":{}}}}}"#
                .to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":null}}}"#
                .to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":"a"}}}"#
                .to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":{"in":["x"]}}}}"#
                .to_owned(),
            format!(r#"{{"metadata":null,"flags":{{"f":{flag}}}}}"#),
            format!(r#"{{"metadata":{{"flagSetId":1}},"flags":{{"f":{flag}}}}}"#),
            format!(r#"{{"$schema":1,"flags":{{"f":{flag}}}}}"#),
            format!(r#"{{"$evaluators":null,"flags":{{"f":{flag}}}}}"#),
            // What flagd rejects.
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"defaultVariant":"b"}}}"#
                .to_owned(),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"state":"ENABLED"}}}"#
                .to_owned(),
            format!(r#"{{"$evaluators":{{"e":{{}}}},"flags":{{"f":{flag}}}}}"#),
            // What only the full parse judges exactly.
            format!(
                r#"{{"x":{},"flags":{{"f":{flag}}}}}"#,
                "[".repeat(120) + &"]".repeat(120)
            ),
            format!(r#"{{"x":"\udc00","flags":{{"f":{flag}}}}}"#),
            format!(r#"{{"x":1e999,"flags":{{"f":{flag}}}}}"#),
            format!(r#"{{"flags":{{"f":{flag}}}}} x"#),
            // A rule serde_json would read as the JSON text of its member.
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":{"$serde_json::private::RawValue":"{}"}}}}"#
                .to_owned(),
            // A repeated member: the full way keeps the last one.
            format!(r#"{{"flags":{{}},"flags":{{"f":{flag}}}}}"#),
        ];
        for doc in &gives_up {
            assert!(
                load_json(doc.as_bytes(), &LoadOptions::default(), None).is_none(),
                "the typed way accepted {doc}"
            );
        }
    }

    #[test]
    fn shared_variant_values_keep_the_form_each_flag_wrote() {
        let doc = r#"{"metadata":{"team":"t","n":0},"flags":{
            "a":{"state":"ENABLED","variants":{"x":1,"y":0.0,"z":2},"defaultVariant":"x","metadata":{"n":-0.0}},
            "b":{"state":"ENABLED","variants":{"x":1.0,"y":-0.0,"z":2},"defaultVariant":"x","metadata":{"n":0}},
            "c":{"state":"ENABLED","variants":{"x":1,"y":0.0,"z":2},"defaultVariant":"x"}}}"#;
        let set = load_json(doc.as_bytes(), &LoadOptions::default(), None).unwrap();
        let written = |key: &str| {
            let flag = set.get(key).unwrap();
            let variants: Vec<String> = flag.variants().map(|(_, v)| v.to_string()).collect();
            (variants.join(" "), flag.metadata()["n"].to_string())
        };
        assert_eq!(written("a"), ("1 0.0 2".into(), "-0.0".into()));
        assert_eq!(written("b"), ("1.0 -0.0 2".into(), "0".into()));
        assert_eq!(written("c"), ("1 0.0 2".into(), "0".into()));
        assert_eq!(set.get("c").unwrap().metadata()["team"], "t");
        assert!(!set.get("a").unwrap().same_definition(set.get("b").unwrap()));
    }

    #[test]
    fn rule_text_is_kept_without_gaps() {
        let doc = r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x y"},"defaultVariant":"a",
            "targeting": { "if" : [ { "==" : [ { "var" : "k" }, "x y" ] }, "a", null ] } }}}"#;
        let set = load_json(doc.as_bytes(), &LoadOptions::default(), None).unwrap();
        assert_eq!(
            set.get("f").unwrap().targeting_source(),
            Some(r#"{"if":[{"==":[{"var":"k"},"x y"]},"a",null]}"#)
        );
    }
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    #[test]
    fn a_reference_written_with_an_escape_still_ties_the_flag_to_its_evaluator() {
        let doc = |body: &str| {
            format!(
                r#"{{"$evaluators":{{"e":{body}}},"flags":{{"f":{{"state":"ENABLED","variants":{{"a":true,"b":false}},"defaultVariant":"b","targeting":{{"if":[{{"\u0024ref":"e"}},"a","b"]}}}},"g":{{"state":"ENABLED","variants":{{"a":true}},"defaultVariant":"a"}}}}}}"#
            )
        };
        let opts = LoadOptions::default();
        let first = doc(r#"{"==":[1,1]}"#);
        let first = load_json(first.as_bytes(), &opts, None).unwrap();
        let second = doc(r#"{"==":[1,2]}"#);
        let second = load_json(second.as_bytes(), &opts, Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(
            first.get_shared("f").unwrap(),
            second.get_shared("f").unwrap()
        ));
        assert!(Arc::ptr_eq(
            first.get_shared("g").unwrap(),
            second.get_shared("g").unwrap()
        ));
        let ctx = serde_json::json!({});
        assert_eq!(
            second.get("f").unwrap().evaluate(&ctx, 0).variant,
            Some("b")
        );
        assert_eq!(first.get("f").unwrap().evaluate(&ctx, 0).variant, Some("a"));
    }
}

#[cfg(test)]
mod definition_tests {
    use crate::load::{Format, LoadOptions, load};

    fn doc(evaluator: &str) -> String {
        format!(
            r#"{{"$evaluators":{{"e":{evaluator}}},"flags":{{"f":{{"state":"ENABLED","variants":{{"a":true,"b":false}},"defaultVariant":"b","targeting":{{"if":[{{"$ref":"e"}},"a","b"]}}}},"g":{{"state":"ENABLED","variants":{{"a":true}},"defaultVariant":"a"}}}}}}"#
        )
    }

    fn same_f(a: &str, b: &str, format: Format) -> bool {
        let opts = LoadOptions::default();
        let (a, b) = (
            load(a.as_bytes(), format, &opts).unwrap().flags,
            load(b.as_bytes(), format, &opts).unwrap().flags,
        );
        assert!(a.get("g").unwrap().same_definition(b.get("g").unwrap()));
        a.get("f").unwrap().same_definition(b.get("f").unwrap())
    }

    #[test]
    fn a_flag_changes_with_the_evaluator_it_refers_to_on_both_ways() {
        let (one, two) = (doc(r#"{"==":[1,1]}"#), doc(r#"{"==":[1,2]}"#));
        let spaced = doc(r#"{ "==" : [ 1, 1 ] }"#);
        // JSON takes the typed way; YAML (JSON is YAML) the full way.
        for format in [Format::Json, Format::Yaml] {
            assert!(!same_f(&one, &two, format), "{format:?}");
            assert!(same_f(&one, &spaced, format), "{format:?}");
        }
        // The same document loaded either way is the same definition.
        let opts = LoadOptions::default();
        let typed = load(one.as_bytes(), Format::Json, &opts).unwrap().flags;
        let full = load(one.as_bytes(), Format::Yaml, &opts).unwrap().flags;
        assert!(
            typed
                .get("f")
                .unwrap()
                .same_definition(full.get("f").unwrap())
        );
    }
}
