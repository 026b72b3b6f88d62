//! The `flag_configuration` document the sync service sends: the selected flags in the shape
//! flagd's in-process providers parse, with shared `$evaluators` already inlined.

use std::collections::BTreeMap;

use flagd_evaluator::{Flag, State};
use serde_json::{Map, Value};

use super::gojson::{write_entries, write_map, write_str, write_value};
use crate::selector::Selector;
use crate::store::{FlagRef, Snapshot};

/// How deep `$ref`s inside evaluators are followed. Real documents nest one or two levels; the
/// limit only stops a cycle (`a` refers to `b`, `b` to `a`), whose innermost reference is then
/// left as written, as flagd leaves any reference it cannot resolve.
const MAX_REF_DEPTH: usize = 16;

/// Builds `{"flags":{<key>:{state, defaultVariant, variants, targeting?, source, metadata?}}}`
/// for the flags `selector` admits, byte-compatible with flagd's output.
///
/// Keys are sorted. When two flag sets define the same key, the one later in store order
/// (flag set, then key) takes the single map entry, as in flagd, where the later write to the
/// map wins.
pub fn flag_configuration(snapshot: &Snapshot, selector: &Selector) -> String {
    let mut flags: BTreeMap<&str, FlagRef<'_>> = BTreeMap::new();
    for r in snapshot.iter(selector) {
        flags.insert(r.flag.key(), r);
    }
    let mut out = String::with_capacity(64 + flags.len() * 192);
    out.push_str("{\"flags\":{");
    for (i, (key, r)) in flags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, key);
        out.push(':');
        let evaluators = snapshot
            .document(r.priority as usize)
            .map(|d| d.evaluators());
        write_flag(&mut out, r.flag, r.source, evaluators);
    }
    out.push_str("}}");
    out
}

fn write_flag(
    out: &mut String,
    flag: &Flag,
    source: &str,
    evaluators: Option<&Map<String, Value>>,
) {
    out.push_str("{\"state\":");
    out.push_str(match flag.state() {
        State::Enabled => "\"ENABLED\"",
        State::Disabled => "\"DISABLED\"",
    });
    out.push_str(",\"defaultVariant\":");
    write_str(out, flag.default_variant().map_or("", |(name, _)| name));
    out.push_str(",\"variants\":{");
    for (i, (name, value)) in flag.variants().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
    if let Some(targeting) = flag
        .targeting_source()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        out.push_str(",\"targeting\":");
        write_expanded(out, &targeting, evaluators, 0);
    }
    out.push_str(",\"source\":");
    write_str(out, source);
    if !flag.metadata().is_empty() {
        out.push_str(",\"metadata\":");
        write_entries(out, flag.metadata().iter(), write_value);
    }
    out.push('}');
}

/// Writes a rule with every `{"$ref": "<name>"}` (an object with that single member) replaced by
/// the named evaluator, itself expanded. This is the structural equivalent of flagd's textual
/// substitution of the compact `{"$ref":"<name>"}`; unknown names stay as written.
fn write_expanded(
    out: &mut String,
    rule: &Value,
    evaluators: Option<&Map<String, Value>>,
    depth: usize,
) {
    match rule {
        Value::Object(map) => {
            if let Some(target) = ref_target(map, evaluators).filter(|_| depth < MAX_REF_DEPTH) {
                write_expanded(out, target, evaluators, depth + 1);
            } else {
                write_map(out, map, |out, v| write_expanded(out, v, evaluators, depth));
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_expanded(out, item, evaluators, depth);
            }
            out.push(']');
        }
        scalar => write_value(out, scalar),
    }
}

fn ref_target<'a>(
    map: &Map<String, Value>,
    evaluators: Option<&'a Map<String, Value>>,
) -> Option<&'a Value> {
    if map.len() != 1 {
        return None;
    }
    let name = map.get("$ref")?.as_str()?;
    evaluators?.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SourceEvent, SourceUpdate, Store};
    use flagd_evaluator::{Format, LoadOptions};

    fn store(docs: &[&str]) -> std::sync::Arc<Store> {
        let names = (0..docs.len()).map(|i| format!("src{i}")).collect();
        let store = Store::new(names, LoadOptions::default());
        for (i, d) in docs.iter().enumerate() {
            let event = SourceEvent::Content {
                bytes: d.as_bytes().to_vec(),
                format: Format::Json,
            };
            store.apply(SourceUpdate { source: i, event }).unwrap();
        }
        store
    }

    #[test]
    fn shape_matches_flagd() {
        let s = store(&[r#"{
            "metadata": {"team": "a&b"},
            "$evaluators": {"e": {"in": ["@x.com", {"var": "email"}]}, "f": {"$ref": "e"}},
            "flags": {
                "b": {"state": "DISABLED", "variants": {"on": 1.0, "off": 0}, "defaultVariant": null},
                "a": {"state": "ENABLED", "variants": {"y": "<y>", "n": "n"}, "defaultVariant": "n",
                      "targeting": {"if": [{"$ref": "f"}, "y", null, {"$ref": "missing"}]},
                      "metadata": {"owner": "me"}}
            }}"#]);
        let got = flag_configuration(&s.snapshot(), &Selector::All);
        let want = concat!(
            r#"{"flags":{"a":{"state":"ENABLED","defaultVariant":"n","variants":{"n":"n","y":"\u003cy\u003e"},"#,
            r#""targeting":{"if":[{"in":["@x.com",{"var":"email"}]},"y",null,{"$ref":"missing"}]},"#,
            r#""source":"src0","metadata":{"owner":"me","team":"a\u0026b"}},"#,
            r#""b":{"state":"DISABLED","defaultVariant":"","variants":{"off":0,"on":1.0},"source":"src0","#,
            r#""metadata":{"team":"a\u0026b"}}}}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn cyclic_refs_terminate_and_selectors_apply() {
        let s = store(&[
            r#"{"$evaluators": {"a": {"or": [{"$ref": "b"}]}, "b": {"and": [{"$ref": "a"}]}},
                "flags": {"x": {"state": "ENABLED", "variants": {"v": true}, "defaultVariant": "v",
                                "targeting": {"$ref": "a"}}}}"#,
            r#"{"flags": {"y": {"state": "ENABLED", "variants": {"v": true}, "defaultVariant": "v"}}}"#,
        ]);
        let snap = s.snapshot();
        let all = flag_configuration(&snap, &Selector::All);
        assert!(all.contains(
            r#""y":{"state":"ENABLED","defaultVariant":"v","variants":{"v":true},"source":"src1"}"#
        ));
        assert!(all.contains(r#"{"$ref":"#));
        let only = flag_configuration(&snap, &Selector::Source("src1".into()));
        assert_eq!(
            only,
            r#"{"flags":{"y":{"state":"ENABLED","defaultVariant":"v","variants":{"v":true},"source":"src1"}}}"#
        );
        let none = flag_configuration(&snap, &Selector::FlagSet("nope".into()));
        assert_eq!(none, r#"{"flags":{}}"#);
    }
}
