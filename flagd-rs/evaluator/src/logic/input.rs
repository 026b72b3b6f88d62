//! What a rule is compiled from: a parsed [`Value`], or a [`Json`] tree read straight from the
//! rule's text, which borrows its strings from that text and keeps object members in a list.
//!
//! Both read the same: a [`Json`] decoded from some text has exactly the shape the [`Value`]
//! parsed from that text has (repeated members collapse to the last one, members come in key
//! order), so the compiler and the schema's checks give the same answers for either.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::load::raw::{Text, sort_last_wins};

/// The name serde_json gives a raw value inside a map. A parsed [`Value`] reads an object whose
/// first member has this name as the JSON text of its value, so [`Json`] declines it and leaves
/// it to the parse that knows.
pub(crate) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// One JSON value as a rule input shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape<'v, I> {
    Null,
    Bool(bool),
    Num(&'v Number),
    Str(&'v str),
    Arr(&'v [I]),
    /// An object with this many members (after repeated names collapse).
    Obj(usize),
}

/// A JSON value a rule can be compiled from.
pub(crate) trait RuleInput: Sized {
    /// What the value is.
    fn shape(&self) -> Shape<'_, Self>;
    /// An object's members in key order (nothing for anything else).
    fn members(&self) -> impl Iterator<Item = (&str, &Self)>;
    /// The value as an owned [`Value`], for the constants a compiled rule keeps.
    fn to_value(&self) -> Value;

    /// Whether this is an object.
    fn is_object(&self) -> bool {
        matches!(self.shape(), Shape::Obj(_))
    }

    /// JSONLogic truthiness: `false`, `null`, `0`, `""`, `[]` and `{}` are falsy.
    fn truthy(&self) -> bool {
        match self.shape() {
            Shape::Null => false,
            Shape::Bool(b) => b,
            Shape::Num(n) => super::value::number_f64(n) != 0.0,
            Shape::Str(s) => !s.is_empty(),
            Shape::Arr(items) => !items.is_empty(),
            Shape::Obj(len) => len > 0,
        }
    }
}

impl RuleInput for Value {
    #[inline]
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Value::Null => Shape::Null,
            Value::Bool(b) => Shape::Bool(*b),
            Value::Number(n) => Shape::Num(n),
            Value::String(s) => Shape::Str(s),
            Value::Array(items) => Shape::Arr(items),
            Value::Object(m) => Shape::Obj(m.len()),
        }
    }

    fn members(&self) -> impl Iterator<Item = (&str, &Self)> {
        self.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
    }

    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// A JSON value read from text: strings borrowed from the text unless they hold escapes,
/// objects as member lists sorted by name with repeated names collapsed to the last one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl RuleInput for Json<'_> {
    #[inline]
    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Json::Null => Shape::Null,
            Json::Bool(b) => Shape::Bool(*b),
            Json::Num(n) => Shape::Num(n),
            Json::Str(s) => Shape::Str(s),
            Json::Arr(items) => Shape::Arr(items),
            Json::Obj(members) => Shape::Obj(members.len()),
        }
    }

    fn members(&self) -> impl Iterator<Item = (&str, &Self)> {
        let members = match self {
            Json::Obj(members) => &members[..],
            _ => &[],
        };
        members.iter().map(|(k, v)| (&**k, v))
    }

    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Num(n) => Value::Number(n.clone()),
            Json::Str(s) => Value::String(s.clone().into_owned()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor(std::marker::PhantomData))
    }
}

struct JsonVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for JsonVisitor<'a> {
    type Value = Json<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Num(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Num(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As a parsed `Value` does: a number without a finite double is null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Num))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<Json<'a>>()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
            if members.is_empty() && key == RAW_VALUE_TOKEN {
                return Err(A::Error::custom("a raw value token as a member name"));
            }
            members.push((key, map.next_value::<Json<'a>>()?));
        }
        if members.len() > 1 {
            // Key order, and the last of repeated names, as a parsed map keeps them.
            sort_last_wins(&mut members, |a, b| a.0.cmp(&b.0));
        }
        Ok(Json::Obj(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn same_as_value(text: &str) {
        let value: Result<Value, _> = serde_json::from_str(text);
        let json: Result<Json<'_>, _> = serde_json::from_str(text);
        match (value, json) {
            (Ok(v), Ok(j)) => assert_eq!(j.to_value(), v, "{text}"),
            (Err(_), Err(_)) => {}
            (v, j) => panic!("{text}: value {v:?}, json {j:?}"),
        }
    }

    #[test]
    fn reads_as_a_parsed_value_does() {
        for text in [
            "null",
            "true",
            "[]",
            "{}",
            r#"{"b":1,"a":[2,{"c":null}],"b":3}"#,
            r#"{"a\u0062":"x\ny","ab":"z"}"#,
            r#"[1e400]"#,
            r#"[-0, 0.0, -0.0, 1.5e-400, 18446744073709551615, -9223372036854775808]"#,
            r#"[18446744073709551616, 1E2, 123456789012345678901234567890]"#,
            r#"{"x":"\ud800"}"#,
            r#"{"x":"\ud83d\ude00"}"#,
            r#"{"a":1,"$serde_json::private::RawValue":"[1]"}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            "{\"a\":1} x",
            &("[".repeat(127) + &"]".repeat(127)),
            &("[".repeat(200) + &"]".repeat(200)),
        ] {
            same_as_value(text);
        }
        // A parsed value reads this as the JSON text of the string; the rule reader declines.
        assert!(
            serde_json::from_str::<Json<'_>>(r#"{"$serde_json::private::RawValue":"[1]"}"#)
                .is_err()
        );
    }

    #[test]
    fn borrows_strings_without_escapes() {
        let json: Json<'_> = serde_json::from_str(r#"{"a":"plain","b\n":"x\ty"}"#).unwrap();
        let Json::Obj(members) = json else {
            panic!("not an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, Json::Str(Cow::Borrowed("plain"))));
        assert!(matches!(members[1].0, Cow::Owned(_)));
        assert!(matches!(members[1].1, Json::Str(Cow::Owned(_))));
    }

    /// Compiles `text` read as a [`Value`] and read as [`Json`] and checks that everything
    /// the load derives from a rule comes out the same.
    #[track_caller]
    fn compiles_alike(text: &str, evaluators: &Map<String, Value>, max_depth: usize) {
        let value: Result<Value, _> = serde_json::from_str(text);
        let json: Result<Json<'_>, _> = serde_json::from_str(text);
        let (value, json) = match (value, json) {
            (Ok(v), Ok(j)) => (v, j),
            (Err(_), Err(_)) => return,
            // Declined: the load takes the full way for it.
            (Ok(_), Err(_)) if text.contains(RAW_VALUE_TOKEN) => return,
            (v, j) => panic!("{text}: value {v:?}, json {j:?}"),
        };
        let opts = crate::logic::CompileOptions {
            evaluators: Some(evaluators),
            max_depth,
            ..Default::default()
        };
        let from_value = crate::logic::Rule::compile(&value, &opts);
        let from_json = crate::logic::Rule::compile_input(&json, &opts);
        assert_eq!(
            format!("{from_json:?}"),
            format!("{from_value:?}"),
            "{text}"
        );
        assert_eq!(
            crate::schema::targeting_ok(&json),
            crate::schema::targeting_ok(&value),
            "{text}"
        );
        assert_eq!(
            crate::load::reuse::referenced(&json, evaluators),
            crate::load::reuse::referenced(&value, evaluators),
            "{text}"
        );
    }

    fn rule_corpus() -> Vec<String> {
        let mut rules: Vec<String> = [
            r#"{"if":[{"in":["@d1.example.com",{"var":"email"}]},"on","off"]}"#,
            r#"{"fractional":[["stable",97],["canary",3]]}"#,
            r#"{"fractional":[{"cat":[{"var":"$flagd.flagKey"},{"var":"id"}]},["a",50],["b"]]}"#,
            r#"{"fractional":["x",["a",1.5],[],["b",null,3],{"var":"w"}]}"#,
            r#"{"if":[{"sem_ver":[{"var":"appVersion"},">=","3.3.0"]},"new","old"]}"#,
            r#"{"sem_ver":[{"var":"v"},{"cat":["^"]},"1.x"]}"#,
            r#"{"if":[{"starts_with":[{"var":"region"},"r4-"]},"a",{"ends_with":[{"var":"email"},".t4"]},"b","c"]}"#,
            r#"{"if":[{"$ref":"staff"},"on","off"]}"#,
            r#"{"or":[{"$ref":"staff"},{"$ref":"missing"},{"$ref":"loop"},{"$ref":"deep"},{"$ref":""},{"$ref":1}]}"#,
            r#"{"in":[{"var":"k"},["a","b","c","d","e","f","g","h","i","j"]]}"#,
            r#"{"in":[{"var":"k"},["a","b","c","d","e","f","g","h","i",1]]}"#,
            r#"{"var":["a.b.0",{"x":1,"y":[2]}]}"#,
            r#"{"var":[{"cat":["a",".b"]},null]}"#,
            r#"{"var":[]}"#,
            r#"{"var":[0,false,""]}"#,
            r#"{"var":1.5}"#,
            r#"{"var":true}"#,
            r#"{"var":{"a":1,"b":2}}"#,
            r#"{"map":[[1,2,[3]],{"+":[{"var":""},1]}]}"#,
            r#"{"reduce":[{"var":"xs"},{"+":[{"var":"current"},{"var":"accumulator"}]},0]}"#,
            r#"{"some":{"var":"x"}}"#,
            r#"{"all":[{"var":"xs"},{">":[{"var":""},0]}],"none":[]}"#,
            r#"{"==":[{"+":[1,2]},3]}"#,
            r#"{"/":[1,0]}"#,
            r#"{"if":{"var":"x"}}"#,
            r#"{"!":{"var":"x"}}"#,
            r#"{"-":[{"var":"x"}]}"#,
            r#"{"nope":[1,{"var":"x"}]}"#,
            r#"{"cat":["a\u0000b","\ud83d\ude00",{"var":"na\u00efve"}]}"#,
            r#"{"cat":["\ud800"]}"#,
            r#"{"v\u0061r":"x"}"#,
            r#"{"\u0024ref":"staff"}"#,
            r#"{"if":[1,2],"if":[{"var":"x"},"a","b"]}"#,
            r#"{"var":"a","var":"b"}"#,
            r#"{"b":1,"a":{"c":[{"d":{}}]}}"#,
            r#"{"==":[-0,0.0]}"#,
            r#"{"==":[{"var":"x"},-0.0]}"#,
            r#"{"<":[1e2,{"var":"x"},18446744073709551615]}"#,
            r#"{"<":[1e400,{"var":"x"}]}"#,
            r#"{"==":[1.0e-400,{"var":"x"}]}"#,
            r#"{"$serde_json::private::RawValue":"[1]"}"#,
            r#"{}"#,
            r#"[]"#,
            r#""if""#,
        ]
        .map(str::to_owned)
        .to_vec();
        // Deep nesting, in rules and in literals.
        for depth in [10, 63, 64, 65, 127, 128, 200] {
            rules.push(format!(
                "{}{{\"var\":\"x\"}}{}",
                r#"{"!":"#.repeat(depth),
                "}".repeat(depth)
            ));
            rules.push(format!(
                r#"{{"in":[1,{}{}]}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            ));
            rules.push(format!(
                r#"{{"==":[{}1{},{{"var":"x"}}]}}"#,
                r#"{"a":{"b":"#.repeat(depth / 2),
                "}}".repeat(depth / 2)
            ));
        }
        // Huge arrays.
        let many: Vec<String> = (0..20_000).map(|i| format!("\"s{i}\"")).collect();
        rules.push(format!(r#"{{"in":[{{"var":"k"}},[{}]]}}"#, many.join(",")));
        let many: Vec<String> = (0..5_000)
            .map(|i| format!("{{\"var\":\"v{i}\"}}"))
            .collect();
        rules.push(format!(r#"{{"and":[{}]}}"#, many.join(",")));
        rules
    }

    fn corpus_evaluators() -> Map<String, Value> {
        serde_json::from_str(
            r#"{"staff":{"ends_with":[{"var":"email"},"@acme.com"]},
                "loop":{"$ref":"loop"},
                "deep":{"and":[{"$ref":"staff"},{"$ref":"deep2"}]},
                "deep2":{"!":{"$ref":"staff"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_rule_read_from_text_compiles_as_its_parsed_value_does() {
        let evaluators = corpus_evaluators();
        for rule in rule_corpus() {
            for max_depth in [3, 64, 128] {
                compiles_alike(&rule, &evaluators, max_depth);
            }
        }
    }

    #[test]
    fn testbed_rules_compile_alike_from_text() {
        let Some(documents) = crate::testbed::flag_documents() else {
            return;
        };
        let mut compiled = 0;
        for (_, doc) in &documents {
            let evaluators = doc
                .get("$evaluators")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let flags = doc.get("flags").and_then(Value::as_object);
            for rule in flags
                .into_iter()
                .flat_map(|f| f.values())
                .filter_map(|f| f.get("targeting"))
                .chain(evaluators.values())
            {
                compiles_alike(&rule.to_string(), &evaluators, 64);
                let pretty = serde_json::to_string_pretty(rule).unwrap();
                compiles_alike(&pretty, &evaluators, 64);
                compiled += 1;
            }
        }
        assert!(compiled > 0, "no rule in the testbed's flag files");
        println!("{compiled} testbed rules compiled both ways");
    }

    #[test]
    fn shapes_agree() {
        let text = r#"{"z":[0,"",{}],"a":{"k":1},"a":{"k":2,"j":false}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let json: Json<'_> = serde_json::from_str(text).unwrap();
        let from_json: Vec<(&str, bool)> = json.members().map(|(k, v)| (k, v.truthy())).collect();
        let from_value: Vec<(&str, bool)> = value.members().map(|(k, v)| (k, v.truthy())).collect();
        assert_eq!(from_json, from_value);
        assert!(matches!(json.shape(), Shape::Obj(2)));
        assert!(!Json::Null.truthy() && !Json::Num(0.into()).truthy());
    }
}
