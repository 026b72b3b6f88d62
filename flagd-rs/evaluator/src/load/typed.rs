//! The fast way in for JSON: read the document once, decoding each flag definition as it is
//! read ([`super::read`]) without a tree of the whole document, check what the schema and
//! flagd check, compile each rule from the tree read from its text, and keep flags a previous
//! load already compiled from the same inputs.
//!
//! It either produces exactly what the full path ([`super::load_value`]) would, for a document
//! that path accepts without a single diagnostic, or gives up (`None`), and the caller takes the
//! full path, which explains what is wrong with the same diagnostics as ever.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::LoadOptions;
use super::raw::{Entries, sort_last_wins};
use super::read::{Item, Lists, Parts, Reader, state};
use super::reuse::{document_fingerprint, fingerprint, provenance};
use crate::intern::Interner;
use crate::logic::input::{Json, RuleInput, Shape};
use crate::logic::{CompileOptions, Rule};
use crate::metadata::{Metadata, SetMetadata};
use crate::model::{Flag, FlagSet};
use crate::schema;

/// The document's shared parts, as every flag needs them.
struct Shared {
    metadata: Map<String, Value>,
    /// The same, as every flag holds it.
    set_metadata: Option<Arc<SetMetadata>>,
    evaluators: Map<String, Value>,
    /// Evaluator name -> fingerprint of its definition.
    evaluator_hashes: FxHashMap<Box<str>, u64>,
    /// The document-level fingerprint of every flag ([`document_fingerprint`]).
    document: u64,
}

impl Shared {
    /// From the texts of the document's `metadata` and `$evaluators` members (`None`: absent).
    fn new(
        metadata: Option<&str>,
        evaluators: Option<&str>,
        opts: &LoadOptions,
        interner: &mut Interner,
    ) -> Option<Self> {
        let metadata_map = match metadata {
            None => Map::new(),
            Some(raw) => {
                let map: Map<String, Value> = serde_json::from_str(raw).ok()?;
                if !schema::set_metadata_ok(&map) {
                    return None;
                }
                map
            }
        };
        let entries: Entries<'_, &RawValue> = match evaluators {
            None => Entries::default(),
            Some(raw) => serde_json::from_str(raw).ok()?,
        };
        let mut evaluator_map = Map::new();
        let mut evaluator_hashes = FxHashMap::default();
        for (name, raw) in &entries.0 {
            let rule: Value = serde_json::from_str(raw.get()).ok()?;
            // flagd refuses an empty evaluator; the schema wants a rule object.
            if name.0.is_empty()
                || rule.as_object().is_none_or(Map::is_empty)
                || !schema::targeting_ok(&rule)
            {
                return None;
            }
            evaluator_hashes.insert(
                Box::from(&*name.0),
                fingerprint(&[name.0.as_bytes(), raw.get().as_bytes()]),
            );
            evaluator_map.insert(name.0.clone().into_owned(), rule);
        }
        Some(Shared {
            set_metadata: SetMetadata::from_map(&metadata_map, interner),
            metadata: metadata_map,
            evaluators: evaluator_map,
            evaluator_hashes,
            document: document_fingerprint(opts, metadata),
        })
    }
}

/// Loads a JSON document the fast way, reusing the flags of `previous` whose inputs are
/// unchanged; `None` when the document needs the full path.
pub(super) fn load_json(
    bytes: &[u8],
    opts: &LoadOptions,
    previous: Option<&FlagSet>,
) -> Option<FlagSet> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reader = Reader::new(text);
    // Only an object is a document.
    let mut more = reader.open(b'{', b'}')?;
    let mut interner = Interner::default();
    let (mut schema_seen, mut metadata, mut evaluators) = (false, None, None);
    // The flags, the span of the `flags` member, and the shared parts they were built with.
    let mut built: Option<(Vec<Arc<Flag>>, usize, usize, Shared)> = None;
    // Whether `metadata` or `$evaluators` came after `flags` (then the flags are built again).
    let mut late = false;
    while more {
        let name = reader.name()?;
        // A repeated member makes it give up (the full way keeps the last one).
        match &*name {
            "$schema" => {
                if std::mem::replace(&mut schema_seen, true) || reader.peek()? != b'"' {
                    return None;
                }
                reader.skip()?;
            }
            "metadata" | "$evaluators" => {
                let start = reader.at();
                reader.skip()?;
                let slot = if name == "metadata" {
                    &mut metadata
                } else {
                    &mut evaluators
                };
                if slot.replace(reader.since(start)?).is_some() {
                    return None;
                }
                late |= built.is_some();
            }
            "flags" => {
                if built.is_some() {
                    return None;
                }
                let shared = Shared::new(metadata, evaluators, opts, &mut interner)?;
                let start = reader.at();
                let flags = flags(&mut reader, (&shared, &mut interner), opts, previous)?;
                built = Some((flags, start, reader.at(), shared));
            }
            _ => reader.skip()?,
        }
        more = reader.next(b'}')?;
    }
    if !reader.at_end() {
        return None;
    }
    let (mut flags, start, end, mut shared) = built?;
    if late {
        shared = Shared::new(metadata, evaluators, opts, &mut interner)?;
        let mut again = Reader::new(text.get(start..end)?);
        flags = self::flags(&mut again, (&shared, &mut interner), opts, previous)?;
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

/// The `flags` member: key -> definition, or definitions with their `key`.
fn flags<'a>(
    reader: &mut Reader<'a>,
    (shared, interner): (&Shared, &mut Interner),
    opts: &LoadOptions,
    previous: Option<&FlagSet>,
) -> Option<Vec<Arc<Flag>>> {
    let previous = previous.filter(|p| p.document_fingerprint == shared.document);
    let compile = CompileOptions {
        evaluators: Some(&shared.evaluators),
        hash: opts.hash,
        max_depth: opts.max_rule_depth,
        budget: opts.budget,
    };
    let mut out = Vec::new();
    let mut lists = Lists::default();
    match reader.peek()? {
        b'{' => {
            let mut more = reader.open(b'{', b'}')?;
            while more {
                let key = reader.name()?;
                if key.is_empty() {
                    return None;
                }
                out.push(flag(
                    (reader, &mut lists),
                    Some(&key),
                    (shared, interner),
                    &compile,
                    previous,
                )?);
                more = reader.next(b'}')?;
            }
        }
        b'[' => {
            let mut more = reader.open(b'[', b']')?;
            while more {
                out.push(flag(
                    (reader, &mut lists),
                    None,
                    (shared, interner),
                    &compile,
                    previous,
                )?);
                more = reader.next(b']')?;
            }
        }
        _ => return None,
    }
    Some(out)
}

/// One flag: the previous load's when its inputs are unchanged, else decoded, checked and
/// compiled. `key` is `None` in the array form, where the key is the definition's `key` member.
/// With a previous load to reuse from, the definition is passed over first and decoded only
/// when it changed; without, it is decoded as it is read. Variant and metadata names and
/// values are shared through `interner`; `lists` are where the reader puts them.
fn flag<'a>(
    (reader, lists): (&mut Reader<'a>, &mut Lists<'a>),
    key: Option<&str>,
    (shared, interner): (&Shared, &mut Interner),
    compile: &CompileOptions<'_>,
    previous: Option<&FlagSet>,
) -> Option<Arc<Flag>> {
    // Only an object is a flag.
    if reader.peek()? != b'{' {
        return None;
    }
    let array_form = key.is_none();
    let start = reader.at();
    // The fingerprint, when it was taken before decoding.
    let (raw, mut parts, taken) = match (previous, key) {
        (Some(previous), Some(key)) => {
            reader.skip()?;
            let raw = reader.since(start)?;
            let definition = fingerprint(&[key.as_bytes(), raw.as_bytes()]);
            if let Some(old) = previous.get_shared(key)
                && old.provenance.matches(definition, &shared.evaluator_hashes)
            {
                return Some(old.clone());
            }
            let mut again = Reader::new(raw);
            (raw, again.flag(lists)?, Some(definition))
        }
        _ => {
            let parts = reader.flag(lists)?;
            (reader.since(start)?, parts, None)
        }
    };
    let own_key;
    let key = match key {
        Some(key) => key,
        None => {
            own_key = parts.key.take().filter(|k| !k.is_empty())?;
            &*own_key
        }
    };
    let definition = taken.unwrap_or_else(|| fingerprint(&[key.as_bytes(), raw.as_bytes()]));
    if array_form
        && let Some(old) = previous.and_then(|p| p.get_shared(key))
        && old.provenance.matches(definition, &shared.evaluator_hashes)
    {
        return Some(old.clone());
    }
    build(key, definition, (parts, lists), (shared, interner), compile)
}

/// A flag from its decoded parts, checked as the schema and flagd check it.
fn build(
    key: &str,
    definition: u64,
    (parts, lists): (Parts<'_>, &mut Lists<'_>),
    (shared, interner): (&Shared, &mut Interner),
    compile: &CompileOptions<'_>,
) -> Option<Arc<Flag>> {
    let state = state(&parts.state?)?;

    let variants = &mut lists.variants;
    // A repeated name keeps its last value, as a parsed map does.
    sort_last_wins(variants, |a, b| a.0.cmp(&b.0));
    if !schema::variant_kinds_ok(variants.iter().map(|(_, v)| v.kind())) {
        return None;
    }

    let default_variant = match parts.default_variant {
        None => None,
        Some(name) if name.is_empty() => None,
        Some(name) => {
            Some(u32::try_from(variants.binary_search_by(|(k, _)| (**k).cmp(&*name)).ok()?).ok()?)
        }
    };

    // Built at its final size.
    let mut shared_variants = Vec::with_capacity(variants.len());
    for (name, value) in variants.drain(..) {
        shared_variants.push((interner.name(&name), value.shared(interner)));
    }
    let variants = shared_variants.into_boxed_slice();

    let mut own = Vec::with_capacity(lists.metadata.len());
    for (name, value) in lists.metadata.drain(..) {
        // A string is always a metadata value the schema accepts; other values are checked.
        if let Item::Value(value) = &value
            && !schema::metadata_value_ok(value)
        {
            return None;
        }
        own.push((interner.name(&name), value.shared(interner)));
    }
    let metadata = Metadata::new(shared.set_metadata.as_ref(), own);

    let (targeting, targeting_source, provenance) = match parts.targeting {
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
        Some((_, source, rule)) => {
            if !schema::targeting_ok(&rule) {
                return None;
            }
            // Only a rule with a member named `$ref` can refer to an evaluator.
            let provenance = provenance(
                definition,
                Some(&rule).filter(|_| parts.refers),
                &shared.evaluators,
                &shared.evaluator_hashes,
            );
            if matches!(rule.shape(), Shape::Obj(0)) {
                (None, None, provenance)
            } else {
                let compiled = Rule::compile_input(&rule, compile).ok()?;
                (Some(compiled), Some(source), provenance)
            }
        }
    };

    Some(Arc::new(Flag {
        key: key.into(),
        state,
        variants,
        default_variant,
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
    fn metadata_strings_read_from_the_text_load_as_parsed_ones_do() {
        let doc = r#"{"flags":{
          "f": {"state":"ENABLED","variants":{"a":true},"defaultVariant":"a",
                "metadata":{"owner":"team","t":"x \" \u00e9\n","n":1,"b":false,"z":2.5,"owner":"last","e":""}},
          "g": {"state":"ENABLED","variants":{"a":"team"},"defaultVariant":"a",
                "metadata":{ "owner" : "team" , "t":"x \" \u00e9\n","m":"last"}}}}"#;
        agrees(doc);
        let set = load_json(doc.as_bytes(), &LoadOptions::default(), None).unwrap();
        let (f, g) = (set.get("f").unwrap(), set.get("g").unwrap());
        assert_eq!(f.metadata().get("owner"), Some(&serde_json::json!("last")));
        assert_eq!(
            g.metadata().get("t"),
            Some(&serde_json::json!("x \" \u{e9}\n"))
        );
        assert_eq!(f.metadata().get("z"), Some(&serde_json::json!(2.5)));
        // Kinds the schema refuses still leave the document to the full way.
        for bad in [r#"{"o":null}"#, r#"{"o":[]}"#, r#"{"o":"x","p":{}}"#] {
            let doc = format!(
                r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"a":true}},"metadata":{bad}}}}}}}"#
            );
            assert!(
                load_json(doc.as_bytes(), &LoadOptions::default(), None).is_none(),
                "{doc}"
            );
        }
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

    /// The same comparison for any document: when the typed way takes it, it builds what the
    /// full way builds; when it gives up, the full way decides.
    #[track_caller]
    fn agrees_or_gives_up(doc: &str) {
        if load_json(doc.as_bytes(), &LoadOptions::default(), None).is_some() {
            agrees(doc);
        }
    }

    #[test]
    fn every_testbed_document_loads_as_the_full_way_loads_it() {
        let Some(documents) = crate::testbed::flag_documents() else {
            return;
        };
        let mut taken = 0;
        for (path, value) in documents {
            let text = std::fs::read_to_string(&path).unwrap();
            for form in [
                text,
                value.to_string(),
                serde_json::to_string_pretty(&value).unwrap(),
            ] {
                let parsed = parse(form.as_bytes(), Format::Json).unwrap();
                let clean = load_value(parsed, &LoadOptions::default())
                    .is_ok_and(|l| l.diagnostics.is_empty());
                let typed = load_json(form.as_bytes(), &LoadOptions::default(), None);
                if typed.is_some() {
                    assert!(
                        clean,
                        "{}: the typed way took what the full way warns of",
                        path.display()
                    );
                    agrees(&form);
                    taken += 1;
                }
            }
        }
        assert!(taken > 0, "the typed way took no testbed document");
    }

    #[test]
    fn shared_members_after_the_flags_still_apply() {
        let flag = r#"{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off","targeting":{"if":[{"$ref":"e"},"on","off"]}}"#;
        let late = format!(
            r#"{{"flags":{{"f":{flag}}},"metadata":{{"flagSetId":"s","v":1}},"$evaluators":{{"e":{{"==":[1,1]}}}}}}"#
        );
        let set = load_json(late.as_bytes(), &LoadOptions::default(), None).unwrap();
        let f = set.get("f").unwrap();
        assert_eq!(f.flag_set_id(), Some("s"));
        assert_eq!(f.evaluate(&serde_json::json!({}), 0).variant, Some("on"));
        agrees(&late);
        // And on a reload, with the previous set to reuse from.
        let again = load_json(late.as_bytes(), &LoadOptions::default(), Some(&set)).unwrap();
        assert!(Arc::ptr_eq(
            set.get_shared("f").unwrap(),
            again.get_shared("f").unwrap()
        ));
    }

    #[test]
    fn indented_and_compact_documents_load_alike() {
        let doc: Value = serde_json::from_str(
            r#"{"$schema":"https://flagd.dev/schema/v0/flags.json","metadata":{"flagSetId":"s","n":-0.5},
            "$evaluators":{"staff":{"ends_with":[{"var":"email"},"@acme.com"]}},
            "flags":{
              "a":{"state":"ENABLED","variants":{"x":{"k":[1,-0,0.25,"\u00e9\t"]},"y":{}},"defaultVariant":"x",
                   "targeting":{"if":[{"in":["@b.com",{"var":"email"}]},"y",null]},"metadata":{"t":"x y","n":1.0}},
              "b":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on","unknown":[{"deep":[[[]]]},"s",false,null]},
              "c":{"state":"ENABLED","variants":{"1":1,"2":2},"defaultVariant":"2",
                   "targeting":{"fractional":[{"cat":[{"var":"$flagd.flagKey"},{"var":"targetingKey"}]},["1",50],["2",50]]}},
              "d":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
                   "targeting":{"if":[{"$ref":"staff"},"on","off"]}}
            }}"#,
        )
        .unwrap();
        for text in [doc.to_string(), serde_json::to_string_pretty(&doc).unwrap()] {
            agrees(&text);
            let array = text.replacen(r#""flags":{"#, r#""flags":["#, 1);
            agrees_or_gives_up(&array);
        }
    }

    #[test]
    fn gaps_of_every_kind_around_every_token_load_alike() {
        let compact = r#"{"metadata":{"flagSetId":"s"},"flags":{"a":{"state":"ENABLED","variants":{"x":{"k":[1,-0,0.25,"\u00e9\t"]},"y":{"s":"y \" ,:{}[]"}},"defaultVariant":"x","targeting":{"if":[{"in":["@b.com",{"var":"email"}]},"y",null]},"metadata":{"t":"x y","n":1.0,"b":true}},"b":{"state":"DISABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#;
        let full = full(compact);
        let gaps = [
            " ".to_owned(),
            "\t".to_owned(),
            "\r\n".to_owned(),
            format!("\n{}", " ".repeat(7)),
            format!("\n{}", " ".repeat(16)),
            format!("\n{}", " ".repeat(33)),
            "\n\t  \r\n    \n".to_owned(),
        ];
        for gap in &gaps {
            // The gap after every structural byte outside strings (and so before every token).
            let mut text = String::new();
            let mut in_string = false;
            let mut escaped = false;
            for ch in compact.chars() {
                text.push(ch);
                if in_string {
                    match (escaped, ch) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_string = false,
                        _ => {}
                    }
                    if !in_string {
                        text.push_str(gap);
                    }
                    continue;
                }
                match ch {
                    '"' => in_string = true,
                    '{' | '}' | '[' | ']' | ':' | ',' => text.push_str(gap),
                    _ => {}
                }
            }
            let text = format!("{gap}{text}");
            agrees(&text);
            let fast = load_json(text.as_bytes(), &LoadOptions::default(), None).unwrap();
            for (a, b) in fast.flags().iter().zip(full.flags()) {
                assert!(a.same_definition(b), "{text:?}");
                assert_eq!(a.targeting_source(), b.targeting_source(), "{text:?}");
            }
            // Cut short anywhere before its last byte that is not whitespace, it is refused.
            let last = text.trim_end().len();
            for end in (0..last).filter(|&end| text.is_char_boundary(end)) {
                let cut = &text.as_bytes()[..end];
                assert!(
                    load_json(cut, &LoadOptions::default(), None).is_none(),
                    "{:?}",
                    &text[..end]
                );
                assert!(
                    matches!(
                        crate::load(cut, Format::Json, &LoadOptions::default()),
                        Err(crate::LoadError::Syntax { .. })
                    ),
                    "{:?}",
                    &text[..end]
                );
            }
        }
    }

    #[test]
    fn documents_cut_short_go_the_full_way_and_are_syntax_errors() {
        let doc = r#"{"metadata":{"v":"1"},"flags":{"f":{"state":"ENABLED","variants":{"a":"x \" y","b":"\u00e9"},"defaultVariant":"a","targeting":{"if":[{"==":[{"var":"k"},[1,2.5]]},"b",null]}}}}"#;
        assert!(load_json(doc.as_bytes(), &LoadOptions::default(), None).is_some());
        for end in 0..doc.len() {
            let cut = &doc.as_bytes()[..end];
            assert!(
                load_json(cut, &LoadOptions::default(), None).is_none(),
                "{end}"
            );
            assert!(
                matches!(
                    crate::load(cut, Format::Json, &LoadOptions::default()),
                    Err(crate::LoadError::Syntax { .. })
                ),
                "{end}"
            );
        }
    }

    #[test]
    fn repeated_members_and_keys_load_as_the_full_way_loads_them() {
        // Repeated flag keys: the last wins, both ways.
        agrees(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"},"f":{"state":"DISABLED","variants":{"b":2},"defaultVariant":"b"}}}"#,
        );
        // Repeated members of a definition, of the document, and of a rule's object.
        for doc in [
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"variants":{"b":1},"defaultVariant":"b"}}}"#,
            r#"{"metadata":{},"metadata":{"x":1},"flags":{}}"#,
            r#"{"$schema":"a","$schema":"b","flags":{}}"#,
        ] {
            assert!(
                load_json(doc.as_bytes(), &LoadOptions::default(), None).is_none(),
                "{doc}"
            );
        }
        agrees(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1,"b":2},"defaultVariant":"a","targeting":{"if":[false,"a","b"],"if":[true,"b","a"]},"x":1,"x":2}}}"#,
        );
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
