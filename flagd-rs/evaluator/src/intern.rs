//! What the flags of one load share instead of each holding a copy: names (variant names,
//! metadata keys) and values (variant values, metadata values). The same few names and values
//! (`"on"`, `true`, a team's name) repeat across thousands of flags, and a shared one costs a
//! pointer instead of an allocation.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use serde_json::{Number, Value};
use smallvec::SmallVec;

/// The names and values handed out during one load.
#[derive(Default)]
pub(crate) struct Interner {
    names: Names,
    values: Values,
}

impl Interner {
    /// The shared name `text`.
    pub(crate) fn name(&mut self, text: &str) -> Arc<str> {
        self.names.get(text)
    }

    /// The shared value written as `value` is.
    pub(crate) fn value(&mut self, value: Value) -> Arc<Value> {
        self.values.get(value)
    }

    /// The shared string value `text` ([`Interner::value`] of it, with no string made when it
    /// is already shared).
    pub(crate) fn string_value(&mut self, text: &str) -> Arc<Value> {
        self.values.get_string(text)
    }
}

/// Shared names: each text once.
#[derive(Default)]
struct Names(FxHashSet<Arc<str>>);

impl Names {
    /// The shared name `text`.
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(name) = self.0.get(text) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(text);
        self.0.insert(name.clone());
        name
    }
}

/// Shared values: each value once, where "the same" means written the same way: an integer
/// and a float of equal magnitude (`1`, `1.0`) or the two zeros (`0.0`, `-0.0`) stay apart, as
/// output keeps the form the document gave.
#[derive(Default)]
struct Values {
    by_hash: FxHashMap<u64, SmallVec<[Arc<Value>; 1]>>,
    /// `false` and `true` (most variants of boolean flags), kept apart from the map: no hash
    /// and no lookup for them.
    bools: [Option<Arc<Value>>; 2],
}

impl Values {
    /// The shared value equal to `value`.
    fn get(&mut self, value: Value) -> Arc<Value> {
        if let Value::Bool(b) = value {
            return self.bools[usize::from(b)]
                .get_or_insert_with(|| Arc::new(Value::Bool(b)))
                .clone();
        }
        let mut h = FxHasher::default();
        hash(&value, &mut h);
        let same = self.by_hash.entry(h.finish()).or_default();
        if let Some(found) = same.iter().find(|v| identical(v, &value)) {
            return found.clone();
        }
        let value = Arc::new(value);
        same.push(value.clone());
        value
    }

    /// [`Values::get`] of a string value, hashed as [`hash`] hashes it.
    fn get_string(&mut self, text: &str) -> Arc<Value> {
        let mut h = FxHasher::default();
        h.write_u8(4);
        text.hash(&mut h);
        let same = self.by_hash.entry(h.finish()).or_default();
        if let Some(found) = same
            .iter()
            .find(|v| matches!(&***v, Value::String(s) if s == text))
        {
            return found.clone();
        }
        let value = Arc::new(Value::String(text.to_owned()));
        same.push(value.clone());
        value
    }
}

/// What tells numbers apart as written: an unsigned integer, a negative one, or a float's bits.
fn number_form(n: &Number) -> (u8, u64) {
    if let Some(u) = n.as_u64() {
        (0, u)
    } else if let Some(i) = n.as_i64() {
        (1, i as u64)
    } else {
        (2, n.as_f64().map_or(0, f64::to_bits))
    }
}

fn hash(value: &Value, h: &mut FxHasher) {
    match value {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => h.write_u8(1 + u8::from(*b)),
        Value::Number(n) => {
            h.write_u8(3);
            number_form(n).hash(h);
        }
        Value::String(s) => {
            h.write_u8(4);
            s.hash(h);
        }
        Value::Array(items) => {
            h.write_u8(5);
            h.write_usize(items.len());
            for item in items {
                hash(item, h);
            }
        }
        Value::Object(map) => {
            h.write_u8(6);
            h.write_usize(map.len());
            for (k, v) in map {
                k.hash(h);
                hash(v, h);
            }
        }
    }
}

/// Equality as written (see [`Values`]).
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_form(x) == number_form(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| identical(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && identical(va, vb))
        }
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_shared() {
        let mut names = Names::default();
        let (a, b) = (names.get("on"), names.get("on"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &names.get("off")));
    }

    #[test]
    fn string_values_are_shared_with_values_read_whole() {
        let mut values = Values::default();
        let a = values.get(json!("stable"));
        assert!(Arc::ptr_eq(&a, &values.get_string("stable")));
        let b = values.get_string("canary");
        assert_eq!(*b, json!("canary"));
        assert!(Arc::ptr_eq(&b, &values.get(json!("canary"))));
        assert!(Arc::ptr_eq(&b, &values.get_string("canary")));
        // Other values written alike stay apart from the string.
        for other in [
            json!(["canary"]),
            json!({"canary": null}),
            json!(null),
            json!(0),
        ] {
            assert!(!Arc::ptr_eq(&values.get(other), &b));
        }
        assert!(!Arc::ptr_eq(&values.get_string(""), &b));
        assert_eq!(*values.get_string(""), json!(""));
    }

    #[test]
    fn values_are_shared_when_written_the_same_way() {
        let mut values = Values::default();
        let object = json!({"columns": 2, "theme": "dark", "n": [1, 2.5, null, false]});
        let a = values.get(object.clone());
        assert!(Arc::ptr_eq(&a, &values.get(object)));
        assert!(Arc::ptr_eq(
            &values.get(json!(true)),
            &values.get(json!(true))
        ));
        assert!(Arc::ptr_eq(
            &values.get(json!(false)),
            &values.get(json!(false))
        ));
        assert_eq!(*values.get(json!(false)), json!(false));
        assert!(Arc::ptr_eq(
            &values.get(json!("x")),
            &values.get(json!("x"))
        ));
        // Forms that compare equal as JSON numbers stay apart.
        let apart = [
            json!(0),
            json!(0.0),
            json!(-0.0),
            json!(1),
            json!(1.0),
            json!(-1),
            json!(u64::MAX),
            json!([0]),
            json!([0.0]),
            json!({"a": 0}),
            json!({"a": -0.0}),
            json!("0"),
            json!(false),
            json!(true),
            json!(null),
        ];
        let shared: Vec<Arc<Value>> = apart.iter().map(|v| values.get(v.clone())).collect();
        for (i, a) in shared.iter().enumerate() {
            assert_eq!(a.to_string(), apart[i].to_string());
            for b in &shared[i + 1..] {
                assert!(!Arc::ptr_eq(a, b), "{a} and {b} were merged");
            }
        }
    }
}
