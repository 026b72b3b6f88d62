//! Table-driven tests of the rule engine: one line per case.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{CompileOptions, Context, EvalContext, EvalError, Rule, RuleError};
use crate::ops::fractional::HashGeneration;

const TS: i64 = 1_700_000_000;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s}: {e}"))
}

fn run_with(
    rule: &str,
    data: &str,
    flag_key: &str,
    opts: &CompileOptions<'_>,
) -> Result<Value, EvalError> {
    let rule = Rule::compile(&parse(rule), opts).unwrap_or_else(|e| panic!("compile {rule}: {e}"));
    let data = parse(data);
    let ctx = EvalContext {
        data: &data,
        flag_key,
        timestamp: TS,
    };
    let got = rule.evaluate(&ctx).map(std::borrow::Cow::into_owned);
    // Every case also runs over the context built for lookups, which must agree exactly.
    let built = Context::from_json(&data);
    let flat = rule
        .evaluate_with(&built, flag_key, TS)
        .map(std::borrow::Cow::into_owned);
    assert_eq!(flat, got, "built context disagrees: {data}");
    got
}

fn run(rule: &str, data: &str) -> Result<Value, EvalError> {
    run_with(rule, data, "flag", &CompileOptions::default())
}

#[track_caller]
fn check(rule: &str, data: &str, expected: &str) {
    let got = run(rule, data);
    assert_eq!(got, Ok(parse(expected)), "rule {rule} over {data}");
}

#[track_caller]
fn check_err(rule: &str, data: &str) {
    let got = run(rule, data);
    assert!(
        got.is_err(),
        "rule {rule} over {data} gave {got:?}, expected an error"
    );
}

/// `fractional` with a hash generation and flag key.
#[track_caller]
fn check_frac(hash: HashGeneration, flag_key: &str, rule: &str, data: &str, expected: &str) {
    let opts = CompileOptions {
        hash,
        ..CompileOptions::default()
    };
    let got = run_with(rule, data, flag_key, &opts);
    assert_eq!(
        got,
        Ok(parse(expected)),
        "{hash:?} {flag_key}: rule {rule} over {data}"
    );
}

use HashGeneration::{V2, V3};

#[test]
fn literals() {
    check("5", "{}", "5");
    check(r#""x""#, "{}", r#""x""#);
    check("null", "{}", "null");
    check("{}", "{}", "{}");
    check(r#"{"a":1,"b":2}"#, "{}", r#"{"a":1,"b":2}"#);
    check(
        r#"[1,{"var":"a"},[{"var":"a"}]]"#,
        r#"{"a":2}"#,
        "[1,2,[2]]",
    );
    check(
        r#"{"a":{"var":"x"},"b":2}"#,
        "{}",
        r#"{"a":{"var":"x"},"b":2}"#,
    );
}

#[test]
fn unknown_operators_fail_only_when_evaluated() {
    check_err(r#"{"invalid":["this is not valid targeting"]}"#, "{}");
    check_err(r#"{"invalid":1}"#, "{}");
    check_err(r#"{"log":"x"}"#, "{}");
    check(r#"{"if":[true,"a",{"bogus":1}]}"#, "{}", r#""a""#);
    check(r#"{"or":[true,{"bogus":1}]}"#, "{}", "true");
    assert_eq!(
        run(r#"{"nope":[1,2]}"#, "{}"),
        Err(EvalError::UnknownOperator("nope".into()))
    );
}

#[test]
fn truthiness_and_if() {
    check(r#"{"if":[true,"a","b"]}"#, "{}", r#""a""#);
    check(r#"{"if":[false,"a","b"]}"#, "{}", r#""b""#);
    check(r#"{"if":[false,"a"]}"#, "{}", "null");
    check(r#"{"if":[]}"#, "{}", "null");
    check(r#"{"if":["x"]}"#, "{}", r#""x""#);
    check(
        r#"{"if":[0,"a",[],"b",{},"c","","d",null,"e","0","f","g"]}"#,
        "{}",
        r#""f""#,
    );
    check(r#"{"if":[[0],"a","b"]}"#, "{}", r#""a""#);
    check(
        r#"{"if":[{"var":"o"},"a","b"]}"#,
        r#"{"o":{"k":1}}"#,
        r#""a""#,
    );
    check(r#"{"if":[true,null,"one"]}"#, "{}", "null");
    check(r#"{"if":[false,1,false,2,3]}"#, "{}", "3");
    check(r#"{"if":[false,1,true,2,3]}"#, "{}", "2");
    check(r#"{"if":[true,true,false]}"#, "{}", "true");
    check(r#"{"if":[true,{"a":1,"b":2},0]}"#, "{}", r#"{"a":1,"b":2}"#);
    check(r#"{"if":[true,{},0]}"#, "{}", "{}");
    check_err(r#"{"if":true}"#, "{}");
    check_err(r#"{"if":null}"#, "{}");
    check_err(r#"{"if":"x"}"#, "{}");
    check_err(r#"{"if":{"var":"args"}}"#, r#"{"args":[false,"y","n"]}"#);
    check_err(r#"{"if":{"var":"args"}}"#, r#"{"args":"x"}"#);
}

#[test]
fn if_branch_objects_are_evaluated_again() {
    check(
        r#"{"if":[true,{"var":"r"},0]}"#,
        r#"{"r":{"var":"x"},"x":5}"#,
        "5",
    );
    check(
        r#"{"if":[true,{"var":"r"},0]}"#,
        r#"{"r":{"a":1,"b":2}}"#,
        r#"{"a":1,"b":2}"#,
    );
    check_err(r#"{"if":[true,{"var":"r"},0]}"#, r#"{"r":{"nope":1}}"#);
    // Data that keeps producing itself as a rule is cut off, not followed forever.
    check_err(
        r#"{"if":[true,{"var":"x"},0]}"#,
        r#"{"x":{"if":[true,{"var":"x"},0]}}"#,
    );
}

#[test]
fn and_or() {
    check(r#"{"and":[true,true]}"#, "{}", "true");
    check(r#"{"and":[true,false]}"#, "{}", "false");
    check(r#"{"and":[]}"#, "{}", "null");
    check(r#"{"and":[1,3,2]}"#, "{}", "2");
    check(r#"{"and":[3,0,2]}"#, "{}", "0");
    check(r#"{"and":[true,"",false]}"#, "{}", r#""""#);
    check(r#"{"and":[true,[1]]}"#, "{}", "[1]");
    check(r#"{"and":[true,"abc"]}"#, "{}", r#""abc""#);
    check(r#"{"and":[true,null]}"#, "{}", "null");
    check(r#"{"and":[true,{}]}"#, "{}", "{}");
    check(r#"{"and":[false,{"bogus":1}]}"#, "{}", "false");
    check(r#"{"and":[{"==":[1,1]},{"in":["a","abc"]}]}"#, "{}", "true");
    check_err(r#"{"and":true}"#, "{}");
    check_err(r#"{"and":{"var":"xs"}}"#, r#"{"xs":[true,false]}"#);
    check(r#"{"or":[false,0,"a"]}"#, "{}", r#""a""#);
    check(r#"{"or":[false,0]}"#, "{}", "0");
    check(r#"{"or":[]}"#, "{}", "null");
    check(r#"{"or":[null,{"var":"x"}]}"#, r#"{"x":[1]}"#, "[1]");
    check(r#"{"or":[true,{"bogus":1}]}"#, "{}", "true");
    check_err(r#"{"or":"x"}"#, "{}");
}

#[test]
fn equality() {
    check(r#"{"==":[1,1]}"#, "{}", "true");
    check(r#"{"==":[1,"1"]}"#, "{}", "true");
    check(r#"{"==":[0,""]}"#, "{}", "true");
    check(r#"{"==":[0,false]}"#, "{}", "true");
    check(r#"{"==":[true,"1"]}"#, "{}", "true");
    check(r#"{"==":[null,null]}"#, "{}", "true");
    check(r#"{"==":[null,0]}"#, "{}", "false");
    check(r#"{"==":["",null]}"#, "{}", "false");
    check(r#"{"==":["a","a"]}"#, "{}", "true");
    check(r#"{"==":["abc",0]}"#, "{}", "false");
    check(r#"{"==":[" 1",1]}"#, "{}", "false");
    check(r#"{"==":["1e3",1000]}"#, "{}", "true");
    check(r#"{"==":[[1],1]}"#, "{}", "false");
    check(r#"{"==":[{},{}]}"#, "{}", "false");
    check(
        r#"{"==":[{"var":"a"},{"var":"b"}]}"#,
        r#"{"a":"x","b":"x"}"#,
        "true",
    );
    check(r#"{"==":[1]}"#, "{}", "true");
    check(r#"{"==":[0]}"#, "{}", "false");
    check(r#"{"==":[]}"#, "{}", "false");
    check(r#"{"==":5}"#, "{}", "true");
    check(r#"{"==":null}"#, "{}", "null");
    check_err(r#"{"==":{"a":1,"b":2}}"#, "{}");
    check(r#"{"==":[3,2,1]}"#, "{}", "true");
    check(r#"{"==":[1,1,1]}"#, "{}", "false");
    check(r#"{"==":[1,1,5,7]}"#, "{}", "true");
    check(r#"{"!=":[1,2]}"#, "{}", "true");
    check(r#"{"!=":[1,"1"]}"#, "{}", "false");
    check(r#"{"!=":[]}"#, "{}", "true");
    check(r#"{"!=":[0]}"#, "{}", "false");
    check(r#"{"===":[1,1]}"#, "{}", "true");
    check(r#"{"===":[1,"1"]}"#, "{}", "false");
    check(r#"{"===":[null,null]}"#, "{}", "true");
    check(r#"{"===":[true,true]}"#, "{}", "true");
    check(r#"{"===":[1,true]}"#, "{}", "false");
    check(r#"{"===":[[],[]]}"#, "{}", "false");
    check(r#"{"!==":[1,"1"]}"#, "{}", "true");
    check(r#"{"!==":[1,1]}"#, "{}", "false");
    check(r#"{"!==":[]}"#, "{}", "true");
}

#[test]
fn ordering() {
    check(r#"{"<":[1,2]}"#, "{}", "true");
    check(r#"{"<":[2,1]}"#, "{}", "false");
    check(r#"{"<":["a","b"]}"#, "{}", "true");
    check(r#"{"<":["10","9"]}"#, "{}", "true");
    check(r#"{"<":[10,"9"]}"#, "{}", "false");
    check(r#"{"<":[null,1]}"#, "{}", "true");
    check(r#"{"<":["x",1]}"#, "{}", "false");
    check(r#"{"<":[1,2,3]}"#, "{}", "true");
    check(r#"{"<":[1,3,2]}"#, "{}", "false");
    check(r#"{"<":[1,1,2]}"#, "{}", "false");
    check(r#"{"<":[]}"#, "{}", "false");
    check(r#"{"<=":[1,1]}"#, "{}", "true");
    check(r#"{"<=":[1,1,1]}"#, "{}", "true");
    check(r#"{"<=":[1,2,1]}"#, "{}", "false");
    check(r#"{"<=":[null,0]}"#, "{}", "false");
    check(r#"{">":[2,1]}"#, "{}", "true");
    check(r#"{">":[1,1]}"#, "{}", "false");
    check(r#"{">":[3,2,1]}"#, "{}", "true");
    check(r#"{">":[1,2,3]}"#, "{}", "false");
    check(r#"{">=":[1,1]}"#, "{}", "true");
    check(r#"{">=":[0,1]}"#, "{}", "false");
    check(r#"{">=":[3,2,2]}"#, "{}", "true");
    check(r#"{">=":[2,3,1]}"#, "{}", "false");
    check(r#"{">":[{"/":[1,0]},1e308]}"#, "{}", "true");
}

#[test]
fn timestamp_comparisons() {
    let rule = r#"{"if":[{">":[{"var":"$flagd.timestamp"},{"var":"time"}]},"past",{"if":[{"<":[{"var":"$flagd.timestamp"},{"var":"time"}]},"future","none"]}]}"#;
    check(rule, r#"{"time":1}"#, r#""past""#);
    check(rule, r#"{"time":4133980802}"#, r#""future""#);
    check(rule, r#"{"time":1700000000}"#, r#""none""#);
}

#[test]
fn negation() {
    check(r#"{"!":[true]}"#, "{}", "false");
    check(r#"{"!":[[]]}"#, "{}", "true");
    check(r#"{"!":false}"#, "{}", "true");
    check(r#"{"!":null}"#, "{}", "true");
    check(r#"{"!":[]}"#, "{}", "true");
    check(r#"{"!":[0,1]}"#, "{}", "true");
    check(r#"{"!":{"var":"xs"}}"#, r#"{"xs":[1]}"#, "false");
    check(r#"{"!":{"var":"o"}}"#, r#"{"o":{}}"#, "true");
    check(r#"{"!!":[1]}"#, "{}", "true");
    check(r#"{"!!":["0"]}"#, "{}", "true");
    check(r#"{"!!":[""]}"#, "{}", "false");
    check(r#"{"!!":"x"}"#, "{}", "true");
    check(r#"{"!!":null}"#, "{}", "null");
    check_err(r#"{"!!":[1,2]}"#, "{}");
}

#[test]
fn arithmetic() {
    check(r#"{"+":[1,2]}"#, "{}", "3");
    check(r#"{"+":["1",2]}"#, "{}", "3");
    check(r#"{"+":["a",2]}"#, "{}", "2");
    check(r#"{"+":[1.5,1]}"#, "{}", "2.5");
    check(r#"{"+":[]}"#, "{}", "0");
    check(r#"{"+":"3"}"#, "{}", "3");
    check(r#"{"+":["3.5"]}"#, "{}", "3.5");
    check_err(r#"{"+":[1,true]}"#, "{}");
    check_err(r#"{"+":[1,null]}"#, "{}");
    check_err(r#"{"+":[1,{"var":"missing"}]}"#, "{}");
    check(r#"{"+":[9007199254740993,0]}"#, "{}", "9007199254740992");
    check(r#"{"+":[1e300,1e300]}"#, "{}", "2e300");
    check(r#"{"-":[5,2]}"#, "{}", "3");
    check(r#"{"-":[2]}"#, "{}", "-2");
    check(r#"{"-":[]}"#, "{}", "0");
    check(r#"{"-":[10,2,3]}"#, "{}", "5");
    check(r#"{"*":[2,3]}"#, "{}", "6");
    check(r#"{"*":[]}"#, "{}", "1");
    check(r#"{"*":[2]}"#, "{}", "2");
    check(r#"{"/":[6,3]}"#, "{}", "2");
    check(r#"{"/":[1,2]}"#, "{}", "0.5");
    check(r#"{"/":[4]}"#, "{}", "4");
    check(r#"{"/":[1,0]}"#, "{}", "null");
    check(r#"{"%":[7,3]}"#, "{}", "1");
    check(r#"{"%":[-7,3]}"#, "{}", "-1");
    check(r#"{"%":[7.5,2]}"#, "{}", "1.5");
    check(r#"{"%":[7,0]}"#, "{}", "null");
    check(r#"{"%":[7]}"#, "{}", "true");
    check_err(r#"{"%":[]}"#, "{}");
    check(r#"{"abs":-2}"#, "{}", "2");
    check(r#"{"abs":[-2.5]}"#, "{}", "2.5");
    check_err(r#"{"abs":[1,2]}"#, "{}");
    check(r#"{"max":[1,3,2]}"#, "{}", "3");
    check(r#"{"min":[1,3,2]}"#, "{}", "1");
    check(r#"{"max":["5",1]}"#, "{}", "5");
    check(r#"{"min":[-1,-2]}"#, "{}", "-2");
    check(r#"{"max":[]}"#, "{}", "null");
    check(r#"{"max":5}"#, "{}", "true");
    check_err(r#"{"max":[true]}"#, "{}");
    check_err(r#"{"max":null}"#, "{}");
    check(r#"{"*":[{"var":"n"},2]}"#, r#"{"n":"21"}"#, "42");
}

#[test]
fn var() {
    check(r#"{"var":"a"}"#, r#"{"a":1}"#, "1");
    check(r#"{"var":"a.b"}"#, r#"{"a":{"b":"x"}}"#, r#""x""#);
    check(r#"{"var":"a.1"}"#, r#"{"a":[10,20]}"#, "20");
    check(r#"{"var":"a.1.5"}"#, r#"{"a":[10,20]}"#, "null");
    check(r#"{"var":"a.x"}"#, r#"{"a":[10,20]}"#, "10");
    check(r#"{"var":"a.-1"}"#, r#"{"a":[10,20]}"#, "null");
    check(r#"{"var":"a.2"}"#, r#"{"a":[10,20]}"#, "null");
    check(r#"{"var":"a.b.c"}"#, r#"{"a":{"b":"str"}}"#, "null");
    check(r#"{"var":"..a."}"#, r#"{"a":1}"#, "1");
    check(r#"{"var":"missing"}"#, "{}", "null");
    check(r#"{"var":"a"}"#, r#"{"a":null}"#, "null");
    check(r#"{"var":["missing","d"]}"#, "{}", r#""d""#);
    check(r#"{"var":["a","d"]}"#, r#"{"a":null}"#, r#""d""#);
    check(r#"{"var":["a","d"]}"#, r#"{"a":false}"#, "false");
    check(r#"{"var":["a"]}"#, r#"{"a":3}"#, "3");
    check(r#"{"var":["missing",1,2]}"#, "{}", "null");
    check(r#"{"var":["x",{"cat":["a","b"]}]}"#, "{}", r#""ab""#);
    check(r#"{"var":1}"#, r#"{"1":"one"}"#, r#""one""#);
    check(r#"{"var":0}"#, r#"{"0":"zero"}"#, r#""zero""#);
    check(r#"{"var":1}"#, r#"{"a":1}"#, "null");
    check(r#"{"var":null}"#, r#"{"a":1}"#, "null");
    check_err(r#"{"var":true}"#, "{}");
    check_err(r#"{"var":[1]}"#, "{}");
    check_err(r#"{"var":{"a":1,"b":2}}"#, "{}");
    check(r#"{"var":{"cat":["a","b"]}}"#, r#"{"ab":7}"#, "7");
    check(r#"{"var":{"var":"p"}}"#, r#"{"p":["q",4]}"#, "4");
    check(r#"{"var":[{"cat":["a","b"]},3]}"#, "{}", "3");
    check(r#"{"var":"x"}"#, "null", "null");
    check(r#"{"var":"x"}"#, "[1]", "null");
}

#[test]
fn var_whole_data_and_flagd() {
    let flagd = json!({"flagKey": "flag", "timestamp": TS});
    assert_eq!(
        run(r#"{"var":""}"#, r#"{"a":1}"#),
        Ok(json!({"a": 1, "$flagd": flagd}))
    );
    assert_eq!(
        run(r#"{"var":[]}"#, r#"{"a":1}"#),
        Ok(json!({"a": 1, "$flagd": flagd}))
    );
    assert_eq!(run(r#"{"var":"."}"#, "{}"), Ok(json!({"$flagd": flagd})));
    assert_eq!(run(r#"{"var":"$flagd"}"#, "{}"), Ok(flagd.clone()));
    check(r#"{"var":"$flagd.flagKey"}"#, "{}", r#""flag""#);
    check(r#"{"var":"$flagd.timestamp"}"#, "{}", "1700000000");
    check(
        r#"{"var":"$flagd.flagKey"}"#,
        r#"{"$flagd":{"flagKey":"evil"}}"#,
        r#""flag""#,
    );
    check(
        r#"{"var":"$flagd.other"}"#,
        r#"{"$flagd":{"other":1}}"#,
        "null",
    );
    check(r#"{"var":"$flagd.flagKey.x"}"#, "{}", "null");
    check(r#"{"var":["$flagd.nope","d"]}"#, "{}", r#""d""#);
    check(
        r#"{"cat":[{"var":"$flagd.flagKey"},"-",{"var":"u"}]}"#,
        r#"{"u":"x"}"#,
        r#""flag-x""#,
    );
    check(r#"{"map":[[1],{"var":"$flagd.flagKey"}]}"#, "{}", "[null]");
}

#[test]
fn missing() {
    check(r#"{"missing":["a","b"]}"#, r#"{"a":1}"#, r#"["b"]"#);
    check(r#"{"missing":"a"}"#, "{}", r#"["a"]"#);
    check(r#"{"missing":[]}"#, "{}", "[]");
    check(
        r#"{"missing":["a.b"]}"#,
        r#"{"a":{"b":null}}"#,
        r#"["a.b"]"#,
    );
    check(r#"{"missing":["a.b"]}"#, r#"{"a":{"b":0}}"#, "[]");
    check(r#"{"missing":[1]}"#, r#"{"1":true}"#, "[]");
    check(
        r#"{"missing":{"merge":[["a"],["b"]]}}"#,
        r#"{"b":1}"#,
        r#"["a"]"#,
    );
    check_err(r#"{"missing":[true]}"#, "{}");
    check_err(r#"{"missing":5}"#, "{}");
    check(r#"{"missing_some":[1,["a","b"]]}"#, r#"{"a":1}"#, "[]");
    check(
        r#"{"missing_some":[2,["a","b","c"]]}"#,
        r#"{"a":1}"#,
        r#"["b","c"]"#,
    );
    check(r#"{"missing_some":[0,["a"]]}"#, "{}", "[]");
    check_err(r#"{"missing_some":[1]}"#, "{}");
    check_err(r#"{"missing_some":[1,"a"]}"#, "{}");
    check_err(r#"{"missing_some":[null,["a"]]}"#, "{}");
}

#[test]
fn membership() {
    check(r#"{"in":["@acme.com","ann@acme.com"]}"#, "{}", "true");
    check(r#"{"in":["x","abc"]}"#, "{}", "false");
    check(r#"{"in":["","abc"]}"#, "{}", "true");
    check(
        r#"{"in":["@acme.com",{"var":"email"}]}"#,
        r#"{"email":"a@acme.com"}"#,
        "true",
    );
    check(r#"{"in":["@acme.com",{"var":"email"}]}"#, "{}", "false");
    check_err(r#"{"in":[1,"a1"]}"#, "{}");
    check_err(r#"{"in":[null,"abc"]}"#, "{}");
    check_err(r#"{"in":[{"var":"missing"},"abc"]}"#, "{}");
    check(r#"{"in":["a",["a","b"]]}"#, "{}", "true");
    check(r#"{"in":["c",["a","b"]]}"#, "{}", "false");
    check(r#"{"in":[5,[[1,10]]]}"#, "{}", "true");
    check(r#"{"in":[10,[[1,10]]]}"#, "{}", "true");
    check(r#"{"in":[11,[[1,10]]]}"#, "{}", "false");
    check(r#"{"in":["5",[[1,10]]]}"#, "{}", "true");
    check(r#"{"in":[5,[[1,10,99]]]}"#, "{}", "true");
    check_err(r#"{"in":[5,[[1]]]}"#, "{}");
    check_err(r#"{"in":[null,[[1,10]]]}"#, "{}");
    check(r#"{"in":[5,["5"]]}"#, "{}", "true");
    check(r#"{"in":[5,["x"]]}"#, "{}", "false");
    check(r#"{"in":[0,["x"]]}"#, "{}", "true");
    check_err(r#"{"in":[5,[true]]}"#, "{}");
    check(r#"{"in":[true,[1,true]]}"#, "{}", "true");
    check(r#"{"in":[null,[null]]}"#, "{}", "true");
    check(r#"{"in":["a",{"var":"missing"}]}"#, "{}", "false");
    check(r#"{"in":["a",5]}"#, "{}", "false");
    check(r#"{"in":"abc"}"#, "{}", "true");
    check(r#"{"in":["a"]}"#, "{}", "false");
    check_err(r#"{"in":[]}"#, "{}");
    check(r#"{"in":["b",["a","b"],{"var":"x"}]}"#, "{}", "true");
    let many: Vec<String> = (0..20).map(|i| format!("\"user{i}@x.com\"")).collect();
    let rule = format!(r#"{{"in":[{{"var":"e"}},[{}]]}}"#, many.join(","));
    check(&rule, r#"{"e":"user7@x.com"}"#, "true");
    check(&rule, r#"{"e":"user70@x.com"}"#, "false");
    check(&rule, r#"{"e":7}"#, "false");
    check(&rule, r#"{"e":null}"#, "false");
}

#[test]
fn strings() {
    check(r#"{"cat":["a","b"]}"#, "{}", r#""ab""#);
    check(r#"{"cat":["a",1,2.5,null,-0.5]}"#, "{}", r#""a12.5-0.5""#);
    check(r#"{"cat":[" a ","b "]}"#, "{}", r#""a b""#);
    check(r#"{"cat":[" a "]}"#, "{}", r#"" a ""#);
    check(r#"{"cat":[7]}"#, "{}", r#""7""#);
    check(r#"{"cat":"  x "}"#, "{}", r#""  x ""#);
    check(
        r#"{"cat":[1e21,"x"]}"#,
        "{}",
        r#""1000000000000000000000x""#,
    );
    check(r#"{"cat":[1e-7,"x"]}"#, "{}", r#""0.0000001x""#);
    check(r#"{"cat":[]}"#, "{}", r#""""#);
    check_err(r#"{"cat":["a",true]}"#, "{}");
    check_err(r#"{"cat":["a",["b"]]}"#, "{}");
    check_err(r#"{"cat":5}"#, "{}");
    check(r#"{"substr":["jsonlogic",4]}"#, "{}", r#""logic""#);
    check(r#"{"substr":["jsonlogic",-5]}"#, "{}", r#""logic""#);
    check(r#"{"substr":["jsonlogic",1,3]}"#, "{}", r#""son""#);
    check(r#"{"substr":["jsonlogic",4,-2]}"#, "{}", r#""log""#);
    check(r#"{"substr":["héllo",1,2]}"#, "{}", r#""él""#);
    check(r#"{"substr":["abc",5]}"#, "{}", r#""abc""#);
    check(r#"{"substr":["abc",-5]}"#, "{}", r#""abc""#);
    check(r#"{"substr":["abc",1,99]}"#, "{}", r#""bc""#);
    check(r#"{"substr":[12345,1,2]}"#, "{}", r#""23""#);
    check_err(r#"{"substr":["abc",2,-2]}"#, "{}");
    check_err(r#"{"substr":["abc"]}"#, "{}");
    check_err(r#"{"substr":"abc"}"#, "{}");
    check_err(r#"{"substr":[true,1]}"#, "{}");
}

#[test]
fn flagd_string_operators() {
    let rule = r#"{"if":[{"starts_with":[{"var":"id"},"abc"]},"prefix",{"if":[{"ends_with":[{"var":"id"},"xyz"]},"postfix",{"if":[{"ends_with":[{"var":"id"},3]},"fail","none"]}]}]}"#;
    check(rule, r#"{"id":"abcdef"}"#, r#""prefix""#);
    check(rule, r#"{"id":"uvwxyz"}"#, r#""postfix""#);
    check(rule, r#"{"id":"abcxyz"}"#, r#""prefix""#);
    check(rule, r#"{"id":"lmnopq"}"#, r#""none""#);
    check(rule, r#"{"id":"3"}"#, r#""none""#);
    check(
        r#"{"starts_with":[{"var":"num"},"abc"]}"#,
        r#"{"num":123}"#,
        "null",
    );
    check(
        r#"{"ends_with":[{"var":"num"},"xyz"]}"#,
        r#"{"num":123}"#,
        "null",
    );
    check(r#"{"starts_with":["abc"]}"#, "{}", "null");
    check(r#"{"ends_with":["xyz"]}"#, "{}", "null");
    check(r#"{"starts_with":"abc"}"#, "{}", "null");
    check(r#"{"starts_with":["abc","abc","x"]}"#, "{}", "null");
    check(r#"{"starts_with":["Abc","a"]}"#, "{}", "false");
    check(
        r#"{"ends_with":{"var":"args"}}"#,
        r#"{"args":["abc","bc"]}"#,
        "true",
    );
    check_err(r#"{"starts_with":[{"nope":1},"a"]}"#, "{}");
}

#[test]
fn literal_needles_and_affixes() {
    use super::tree::Node;
    let compiled = |rule: &str| {
        Rule::compile(&parse(rule), &CompileOptions::default())
            .unwrap()
            .root
    };
    // A literal second argument gets the literal node; a rule's value does not.
    assert!(matches!(
        compiled(r#"{"starts_with":[{"var":"s"},"ab"]}"#),
        Node::Affix(_)
    ));
    assert!(matches!(
        compiled(r#"{"ends_with":[{"var":"s"},{"var":"t"}]}"#),
        Node::EndsWith(_)
    ));
    assert!(matches!(
        compiled(r#"{"in":["@a",{"var":"s"}]}"#),
        Node::In(n) if n.finder.is_some()
    ));
    assert!(matches!(
        compiled(r#"{"in":[{"var":"t"},{"var":"s"}]}"#),
        Node::In(n) if n.finder.is_none()
    ));
    let data =
        r#"{"s":"ann@acme.com","n":12,"b":true,"u":"żółw@straße.de","arr":["@acme.com","x"]}"#;
    for (rule, expected) in [
        (r#"{"starts_with":[{"var":"s"},"ann@"]}"#, "true"),
        (r#"{"starts_with":[{"var":"s"},"acme"]}"#, "false"),
        (r#"{"ends_with":[{"var":"s"},".com"]}"#, "true"),
        (r#"{"ends_with":[{"var":"s"},""]}"#, "true"),
        (r#"{"ends_with":[{"var":"u"},"straße.de"]}"#, "true"),
        (r#"{"starts_with":[{"var":"u"},"żó"]}"#, "true"),
        (r#"{"starts_with":[{"var":"n"},"1"]}"#, "null"),
        (r#"{"starts_with":[{"var":"b"},"t"]}"#, "null"),
        (r#"{"starts_with":[{"var":"missing"},"a"]}"#, "null"),
        (r#"{"starts_with":[{"cat":["ab","cd"]},"abc"]}"#, "true"),
        (
            r#"{"ends_with":[{"cat":[{"var":"s"},"!"]},"com!"]}"#,
            "true",
        ),
        (r#"{"ends_with":[{"var":"$flagd.flagKey"},"ag"]}"#, "true"),
        (r#"{"in":["@acme.com",{"var":"s"}]}"#, "true"),
        (r#"{"in":["@acme.co",{"var":"s"}]}"#, "true"),
        (r#"{"in":["@acme.org",{"var":"s"}]}"#, "false"),
        (r#"{"in":["straße",{"var":"u"}]}"#, "true"),
        (r#"{"in":["@acme.com",{"var":"arr"}]}"#, "true"),
        (r#"{"in":["@acme",{"var":"arr"}]}"#, "false"),
        (r#"{"in":["1",{"var":"n"}]}"#, "false"),
        (r#"{"in":["",{"var":"s"}]}"#, "true"),
        (r#"{"in":["a",{"var":"missing"}]}"#, "false"),
        (r#"{"in":["lag",{"var":"$flagd.flagKey"}]}"#, "true"),
    ] {
        check(rule, data, expected);
    }
    check_err(r#"{"starts_with":[{"nope":1},"a"]}"#, data);
    check_err(r#"{"in":["a",{"nope":1}]}"#, data);
}

#[test]
fn sem_ver() {
    let cmp = |actual: &str, op: &str, target: &str, expected: &str| {
        check(
            &format!(r#"{{"sem_ver":[{actual},"{op}",{target}]}}"#),
            "{}",
            expected,
        );
        // The same with the target computed at evaluation time.
        let rule = format!(r#"{{"sem_ver":[{actual},"{op}",{{"var":"t"}}]}}"#);
        check(&rule, &format!(r#"{{"t":{target}}}"#), expected);
    };
    cmp(r#""2.0.0""#, "=", r#""2.0.0""#, "true");
    cmp(r#""2.1.0""#, ">", r#""2.0.0""#, "true");
    cmp(r#""1.9.0""#, "<", r#""2.0.0""#, "true");
    cmp(r#""2.0.0-alpha""#, "<", r#""2.0.0""#, "true");
    cmp(r#""2.0.0.0""#, "=", r#""2.0.0""#, "null");
    cmp(r#""2.0.0""#, "=", r#""2.0.0.0""#, "null");
    cmp(r#""v1.0.0""#, "=", r#""1.0.0""#, "true");
    cmp(r#""V1.0.0""#, "=", r#""v1.0.0""#, "true");
    cmp("1", "=", r#""1.0.0""#, "true");
    cmp("1.2", "=", r#""1.2.0""#, "true");
    cmp(r#""1.2""#, ">", "1.1", "true");
    cmp(r#""1.0.0+other""#, "=", r#""1.0.0+build""#, "true");
    cmp(r#""3.0.1""#, "~", r#""3.0.0""#, "true");
    cmp(r#""3.1.0""#, "~", r#""3.0.0""#, "false");
    cmp(r#""3.1.0""#, "^", r#""3.0.0""#, "true");
    cmp(r#""4.0.0""#, "^", r#""3.0.0""#, "false");
    cmp(r#""1.5.0""#, "^", r#""1""#, "true");
    cmp(r#""1.0.0""#, "!=", r#""1.0.1""#, "true");
    cmp(r#""1.0.0""#, ">=", r#""1.0.0""#, "true");
    cmp(r#""1.0.0""#, "<=", r#""0.9.0""#, "false");
    cmp(r#""1.0.0""#, "===", r#""1.0.0""#, "null");
    cmp(r#""not-a-version""#, "=", r#""1.0.0""#, "null");
    cmp("null", "=", r#""1.0.0""#, "null");
    cmp("true", "=", r#""1.0.0""#, "null");
    check(
        r#"{"sem_ver":[{"var":"version"},"="]}"#,
        r#"{"version":"1.0.0"}"#,
        "null",
    );
    check(r#"{"sem_ver":"1.0.0"}"#, "{}", "null");
    check(
        r#"{"sem_ver":["1.0.0",{"var":"op"},"1.0.0"]}"#,
        r#"{"op":"="}"#,
        "true",
    );
    check(
        r#"{"sem_ver":["1.0.0",{"var":"op"},"1.0.0"]}"#,
        r#"{"op":5}"#,
        "null",
    );
    let gate = r#"{"if":[{"sem_ver":[{"var":"appVersion"},">=","2.1.0"]},"new","old"]}"#;
    check(gate, r#"{"appVersion":"2.1.3"}"#, r#""new""#);
    check(gate, r#"{"appVersion":"2.0.9"}"#, r#""old""#);
    check(gate, "{}", r#""old""#);
}

#[test]
fn arrays() {
    check(r#"{"merge":[[1,2],[3],4]}"#, "{}", "[1,2,3,4]");
    check(r#"{"merge":[[1,[2]]]}"#, "{}", "[1,[2]]");
    check(r#"{"merge":5}"#, "{}", "[5]");
    check(r#"{"merge":[]}"#, "{}", "[]");
    check(
        r#"{"merge":[{"var":"a"},{"var":"b"}]}"#,
        r#"{"a":[1],"b":2}"#,
        "[1,2]",
    );
    check_err(r#"{"merge":null}"#, "{}");
    let xs = r#"{"xs":[1,2,3]}"#;
    check(
        r#"{"map":[{"var":"xs"},{"*":[{"var":""},2]}]}"#,
        xs,
        "[2,4,6]",
    );
    check(r#"{"map":[[1,2],{"+":[{"var":""},1]}]}"#, "{}", "[2,3]");
    check(r#"{"map":[{"var":"missing"},{"var":""}]}"#, "{}", "[]");
    check(r#"{"map":[{"var":"xs"}]}"#, xs, "[]");
    check(r#"{"map":[{"var":"xs"},"k"]}"#, xs, r#"["k","k","k"]"#);
    check_err(r#"{"map":[{"var":"s"},1]}"#, r#"{"s":"abc"}"#);
    check_err(r#"{"map":5}"#, "{}");
    check(
        r#"{"filter":[{"var":"xs"},{">":[{"var":""},1]}]}"#,
        xs,
        "[2,3]",
    );
    check(r#"{"filter":[{"var":"xs"},true]}"#, xs, "[1,2,3]");
    let users = r#"{"users":[{"tier":"a"},{"tier":"b"}],"wanted":"b"}"#;
    check(
        r#"{"filter":[{"var":"users"},{"==":[{"var":"tier"},{"var":"wanted"}]}]}"#,
        users,
        r#"[{"tier":"b"}]"#,
    );
    check(
        r#"{"reduce":[{"var":"xs"},{"+":[{"var":"current"},{"var":"accumulator"}]},0]}"#,
        xs,
        "6",
    );
    check(
        r#"{"reduce":[{"var":"xs"},{"+":[{"var":"current"},{"var":"accumulator"}]},10]}"#,
        xs,
        "16",
    );
    check(
        r#"{"reduce":[["a","b"],{"cat":[{"var":"accumulator"},{"var":"current"}]},""]}"#,
        "{}",
        r#""ab""#,
    );
    check(
        r#"{"reduce":[[1,0],{"var":"current"},true]}"#,
        "{}",
        "false",
    );
    check(r#"{"reduce":[[1,null,2],{"var":"current"},0]}"#, "{}", "2");
    check(
        r#"{"reduce":[{"var":"missing"},{"var":"current"},5]}"#,
        "{}",
        "0",
    );
    check(r#"{"reduce":[{"var":"xs"},{"var":"current"}]}"#, xs, "0");
    check_err(r#"{"reduce":[{"var":"xs"},{"var":"current"},null]}"#, xs);
    check(r#"{"all":[{"var":"xs"},{">":[{"var":""},0]}]}"#, xs, "true");
    check(
        r#"{"all":[{"var":"xs"},{">":[{"var":""},1]}]}"#,
        xs,
        "false",
    );
    check(r#"{"all":[[],{">":[{"var":""},0]}]}"#, "{}", "false");
    check(
        r#"{"none":[{"var":"xs"},{">":[{"var":""},5]}]}"#,
        xs,
        "true",
    );
    check(
        r#"{"none":[{"var":"xs"},{">":[{"var":""},2]}]}"#,
        xs,
        "false",
    );
    check(r#"{"none":[[],{">":[{"var":""},2]}]}"#, "{}", "true");
    check(
        r#"{"some":[{"var":"xs"},{">":[{"var":""},2]}]}"#,
        xs,
        "true",
    );
    check(
        r#"{"some":[{"var":"xs"},{">":[{"var":""},3]}]}"#,
        xs,
        "false",
    );
    check(
        r#"{"some":[{"var":"missing"},{">":[{"var":""},3]}]}"#,
        "{}",
        "false",
    );
    check_err(r#"{"some":[{"var":"xs"},5]}"#, xs);
    check_err(r#"{"all":[]}"#, "{}");
    check(r#"{"set":[{"a":1,"b":2},"a",5]}"#, "{}", r#"{"a":5,"b":2}"#);
    check(
        r#"{"set":[{"var":"o"},"c",{"var":"o.a"}]}"#,
        r#"{"o":{"a":1}}"#,
        r#"{"a":1,"c":1}"#,
    );
    check(r#"{"set":[5,"a",1]}"#, "{}", "5");
    check(r#"{"set":[]}"#, "{}", "null");
    check(
        r#"{"contains_all":[["a","b","c"],["a","c"]]}"#,
        "{}",
        "true",
    );
    check(r#"{"contains_all":[["a","b"],["a","z"]]}"#, "{}", "false");
    check(r#"{"contains_any":[["a","b"],["z","b"]]}"#, "{}", "true");
    check(r#"{"contains_any":[["a","b"],["z"]]}"#, "{}", "false");
    check(r#"{"contains_none":[["a","b"],["z"]]}"#, "{}", "true");
    check(r#"{"contains_none":[["a","b"],["b"]]}"#, "{}", "false");
    check(r#"{"contains_all":["a",["a"]]}"#, "{}", "false");
}

#[test]
fn ternary() {
    check(r#"{"?:":[true,"a","b"]}"#, "{}", r#""a""#);
    check(r#"{"?:":[false,"a","b"]}"#, "{}", r#""b""#);
    check(r#"{"?:":[true]}"#, "{}", "true");
    check_err(r#"{"?:":[1,"a","b"]}"#, "{}");
    check_err(r#"{"?:":[false,"a"]}"#, "{}");
}

#[test]
fn references() {
    let evaluators = parse(
        r#"{
            "is_ballmer": {"==": ["ballmer@macrosoft.com", {"var": ["email"]}]},
            "staff": {"or": [{"$ref": "is_ballmer"}, {"ends_with": [{"var": "email"}, "@corp.com"]}]},
            "loop_a": {"!": {"$ref": "loop_b"}},
            "loop_b": {"!": {"$ref": "loop_a"}},
            "self": {"if": [true, {"$ref": "self"}]}
        }"#,
    );
    let Value::Object(evaluators) = evaluators else {
        panic!()
    };
    let opts = CompileOptions {
        evaluators: Some(&evaluators),
        ..CompileOptions::default()
    };
    let run = |rule: &str, data: &str| run_with(rule, data, "flag", &opts);
    let hit = r#"{"if":[{"$ref":"is_ballmer"},"hi","bye"]}"#;
    assert_eq!(
        run(hit, r#"{"email":"ballmer@macrosoft.com"}"#),
        Ok(json!("hi"))
    );
    assert_eq!(
        run(hit, r#"{"email":"user@example.com"}"#),
        Ok(json!("bye"))
    );
    let nested = r#"{"if":[{"$ref":"staff"},"in","out"]}"#;
    assert_eq!(run(nested, r#"{"email":"a@corp.com"}"#), Ok(json!("in")));
    assert_eq!(
        run(nested, r#"{"email":"ballmer@macrosoft.com"}"#),
        Ok(json!("in"))
    );
    assert_eq!(run(nested, r#"{"email":"a@b.c"}"#), Ok(json!("out")));
    let missing = r#"{"if":[{"$ref":"nonexistent_evaluator"},"hit","miss"]}"#;
    assert_eq!(
        run(missing, "{}"),
        Err(EvalError::UnknownOperator("$ref".into()))
    );
    assert!(run(r#"{"$ref":"loop_a"}"#, "{}").is_err());
    assert!(run(r#"{"$ref":"self"}"#, "{}").is_err());
    assert!(run(r#"{"$ref":5}"#, "{}").is_err());
    // Without evaluators every reference is unknown.
    check_err(hit, "{}");
    // A multi-key object holding "$ref" is a literal.
    assert_eq!(
        run(r#"{"$ref":"is_ballmer","x":1}"#, "{}"),
        Ok(json!({"$ref": "is_ballmer", "x": 1}))
    );
}

#[test]
fn reference_blowup_is_refused() {
    let mut evaluators = Map::new();
    evaluators.insert("e0".into(), json!({"var": "x"}));
    for i in 1..40 {
        let prev = format!("e{}", i - 1);
        evaluators.insert(
            format!("e{i}"),
            json!({"+": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    let opts = CompileOptions {
        evaluators: Some(&evaluators),
        ..CompileOptions::default()
    };
    let got = Rule::compile(&json!({"$ref": "e39"}), &opts);
    assert!(matches!(got, Err(RuleError::TooLarge { .. })), "{got:?}");
    assert!(Rule::compile(&json!({"$ref": "e5"}), &opts).is_ok());
}

#[test]
fn depth_limit() {
    let mut rule = json!(true);
    for _ in 0..200 {
        rule = json!({"!": rule});
    }
    let err = Rule::compile(&rule, &CompileOptions::default()).unwrap_err();
    let RuleError::TooDeep { max, pointer } = err else {
        panic!("{err:?}")
    };
    assert_eq!(max, 128);
    assert_eq!(pointer, "/!".repeat(128));
    let opts = CompileOptions {
        max_depth: 3,
        ..CompileOptions::default()
    };
    let err = Rule::compile(&json!({"if": [{"==": [1, [1]]}, "a/b~"]}), &opts).unwrap_err();
    assert_eq!(
        err,
        RuleError::TooDeep {
            max: 3,
            pointer: "/if/0/==".into()
        }
    );
    let err =
        Rule::compile(&json!({"if": [true, {"a/b": {"c": [1]}, "d": 1}]}), &opts).unwrap_err();
    assert_eq!(
        err,
        RuleError::TooDeep {
            max: 3,
            pointer: "/if/1/a~1b".into()
        }
    );
    assert!(Rule::compile(&json!({"if": [{"!": true}, "a"]}), &opts).is_ok());
    // Deep literals are refused too, without walking them recursively to the bottom.
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let err = Rule::compile(&json!({"in": [1, deep]}), &CompileOptions::default()).unwrap_err();
    assert!(matches!(err, RuleError::TooDeep { .. }), "{err:?}");
}

#[test]
fn constants_are_folded() {
    let compile = |s: &str| Rule::compile(&parse(s), &CompileOptions::default()).unwrap();
    assert_eq!(
        compile(r#"{"if":[{"==":[1,1]},"a","b"]}"#).constant(),
        Some(&json!("a"))
    );
    assert_eq!(
        compile(r#"{"cat":["a",{"+":[1,2]}]}"#).constant(),
        Some(&json!("a3"))
    );
    assert_eq!(
        compile(r#"[1,{"in":["a","abc"]}]"#).constant(),
        Some(&json!([1, true]))
    );
    assert_eq!(compile(r#"{"var":"a"}"#).constant(), None);
    assert_eq!(compile(r#"{"fractional":[["a",1]]}"#).constant(), None);
    assert_eq!(compile(r#"{"missing":["a"]}"#).constant(), None);
    // A folded failure still fails only when reached.
    check(r#"{"if":[true,"a",{"cat":[true]}]}"#, "{}", r#""a""#);
    check_err(r#"{"if":[false,"a",{"cat":[true]}]}"#, "{}");
}

#[test]
fn results_borrow_where_possible() {
    let rule = Rule::compile(
        &parse(r#"{"if":[{"in":["@x",{"var":"e"}]},"on",{"var":"e"}]}"#),
        &CompileOptions::default(),
    )
    .unwrap();
    let data = parse(r#"{"e":"a@y"}"#);
    let ctx = EvalContext {
        data: &data,
        flag_key: "f",
        timestamp: 0,
    };
    assert!(matches!(rule.evaluate(&ctx), Ok(std::borrow::Cow::Borrowed(v)) if v == "a@y"));
    let data = parse(r#"{"e":"a@x"}"#);
    let ctx = EvalContext {
        data: &data,
        flag_key: "f",
        timestamp: 0,
    };
    assert!(matches!(rule.evaluate(&ctx), Ok(std::borrow::Cow::Borrowed(v)) if v == "on"));
}

const FOUR: &str = r#"["red",25],["blue",25],["green",25],["yellow",25]"#;

#[test]
fn fractional_v2_vectors() {
    let by =
        |seed: &str| format!(r#"{{"fractional":[{{"cat":[{seed},{{"var":"email"}}]}},{FOUR}]}}"#);
    let flag_key_rule = by(r#"{"var":"$flagd.flagKey"}"#);
    let seed_rule = by(r#""my-seed""#);
    for (email, by_flag, by_seed) in [
        ("rachel@faas.com", "blue", "green"),
        ("monica@faas.com", "yellow", "red"),
        ("joey@faas.com", "red", "blue"),
        ("ross@faas.com", "blue", "green"),
    ] {
        let data = format!(r#"{{"email":"{email}"}}"#);
        check_frac(
            V2,
            "headerColor",
            &flag_key_rule,
            &data,
            &format!("\"{by_flag}\""),
        );
        check_frac(
            V2,
            "headerColor",
            &seed_rule,
            &data,
            &format!("\"{by_seed}\""),
        );
    }
    let plain = format!(r#"{{"fractional":[{{"var":"email"}},{FOUR}]}}"#);
    check_frac(V2, "f", &plain, r#"{"email":"ross@faas.com"}"#, r#""red""#);
    check_frac(
        V2,
        "f",
        r#"{"fractional":["email",["red",50],["blue",25],["green",25]]}"#,
        "{}",
        r#""green""#,
    );
    let foo = r#"{"email":"foo@foo.com"}"#;
    check_frac(
        V2,
        "f",
        r#"{"fractional":[{"var":"email"},["red",25],["blue",25]]}"#,
        foo,
        r#""blue""#,
    );
    check_frac(
        V2,
        "f",
        r#"{"fractional":[{"var":"email"},["red"],["blue"]]}"#,
        foo,
        r#""blue""#,
    );
    let tk = |k: &str| format!(r#"{{"targetingKey":"{k}"}}"#);
    check_frac(
        V2,
        "headerColor",
        r#"{"fractional":[["blue",50],["green",50]]}"#,
        &tk("foo@foo.com"),
        r#""green""#,
    );
    check_frac(
        V2,
        "clampedWeightFlag",
        r#"{"fractional":[["red",-1000],["green",1]]}"#,
        &tk("some-targeting-key"),
        r#""green""#,
    );
    let edge = r#"{"fractional":[{"var":"targetingKey"},["lower",50],["upper",50]]}"#;
    for (k, v) in [
        ("ejOoVL", "lower"),
        ("bY9fO-", "lower"),
        ("SI7p-", "lower"),
        ("6LvT0", "upper"),
        ("ceQdGm", "upper"),
    ] {
        check_frac(V2, "f", edge, &tk(k), &format!("\"{v}\""));
    }
    let halves = r#"{"fractional":[{"var":"targetingKey"},["first",50],["second",50]]}"#;
    check_frac(V2, "f", halves, &tk("jon@company.com"), r#""first""#);
    check_frac(V2, "f", halves, &tk("user1"), r#""second""#);
}

const SUITS: &str = r#"["clubs",25],["diamonds",25],["hearts",25],["spades",25]"#;

#[test]
fn fractional_testbed_both_generations() {
    let flag = format!(
        r#"{{"fractional":[{{"cat":[{{"var":"$flagd.flagKey"}},{{"var":"user.name"}}]}},{SUITS}]}}"#
    );
    for (name, v2, v3) in [
        ("jack", "hearts", "diamonds"),
        ("queen", "spades", "diamonds"),
        ("ten", "clubs", "clubs"),
        ("nine", "diamonds", "clubs"),
        ("3", "clubs", "spades"),
    ] {
        let data = format!(r#"{{"user":{{"name":"{name}"}}}}"#);
        check_frac(V2, "fractional-flag", &flag, &data, &format!("\"{v2}\""));
        check_frac(V3, "fractional-flag", &flag, &data, &format!("\"{v3}\""));
    }
    let shared =
        format!(r#"{{"fractional":[{{"cat":["shared-seed",{{"var":"user.name"}}]}},{SUITS}]}}"#);
    for (name, v2, v3) in [
        ("seven", "hearts", "hearts"),
        ("eight", "diamonds", "hearts"),
        ("nine", "clubs", "diamonds"),
        ("two", "spades", "diamonds"),
    ] {
        let data = format!(r#"{{"user":{{"name":"{name}"}}}}"#);
        check_frac(
            V2,
            "fractional-flag-A-shared-seed",
            &shared,
            &data,
            &format!("\"{v2}\""),
        );
        check_frac(
            V3,
            "fractional-flag-B-shared-seed",
            &shared,
            &data,
            &format!("\"{v3}\""),
        );
    }
    let shorthand = r#"{"fractional":[["heads"],["tails",1]]}"#;
    let key = "fractional-flag-shorthand";
    let tk = |k: &str| format!(r#"{{"targetingKey":"{k}"}}"#);
    check_frac(V2, key, shorthand, &tk("jon@company.com"), r#""heads""#);
    check_frac(V2, key, shorthand, &tk("jane@company.com"), r#""tails""#);
    check_frac(V3, key, shorthand, &tk("jon@company.com"), r#""tails""#);
    check_frac(V3, key, shorthand, &tk("jane@company.com"), r#""tails""#);
    check_frac(V3, key, shorthand, &tk("user-1"), r#""heads""#);
    check_frac(V3, key, shorthand, &tk("user-2"), r#""tails""#);
    check_frac(V3, key, shorthand, &tk("user-3"), r#""heads""#);
    for hash_gen in [V2, V3] {
        check_frac(hash_gen, key, shorthand, r#"{"irrelevant":"none"}"#, "null");
        check_frac(
            hash_gen,
            key,
            shorthand,
            r#"{"targetingKey":12345}"#,
            "null",
        );
        check_frac(hash_gen, key, shorthand, r#"{"targetingKey":true}"#, "null");
        check_frac(hash_gen, key, shorthand, r#"{"targetingKey":""}"#, "null");
        check_frac(hash_gen, key, shorthand, "null", "null");
        check_frac(
            hash_gen,
            "f",
            r#"{"fractional":[["single",1]]}"#,
            &tk("some-targeting-key"),
            r#""single""#,
        );
    }
}

#[test]
fn fractional_v3_non_string_bucketing_values() {
    let buckets: Vec<String> = (1..=25).map(|i| format!(r#"["bucket{i}",4]"#)).collect();
    let rule = format!(
        r#"{{"fractional":[{{"var":"hashing_input"}},{}]}}"#,
        buckets.join(",")
    );
    for (input, bucket) in [
        ("true", 5),
        ("false", 1),
        (r#""user1""#, 22),
        (r#""user2""#, 16),
        ("123", 20),
        ("456", 12),
        ("1.23", 14),
        ("4.56", 18),
        (r#""123""#, 22),
        (r#""true""#, 24),
        (r#""null""#, 8),
        ("0", 8),
        ("-0.0", 8),
        ("1.0", 23),
        ("-2", 12),
        ("9007199254740992.0", 10),
        ("2147483648", 25),
        ("-2147483649", 18),
        ("1e20", 19),
        ("1.7976931348623157e+308", 17),
        (r#""""#, 4),
        (r#"{"b": 2, "a": 1}"#, 23),
        (r#"{"a": {}, "b": []}"#, 7),
        ("{}", 3),
        (r#"{"a": [1, "two", true, [], null]}"#, 23),
    ] {
        let data = format!(r#"{{"hashing_input":{input}}}"#);
        check_frac(
            V3,
            "fractional-basic-flag",
            &rule,
            &data,
            &format!("\"bucket{bucket}\""),
        );
    }
    check_frac(V3, "f", &rule, "{}", "null");
    // V2 only hashes strings.
    check_frac(V2, "f", &rule, r#"{"hashing_input":true}"#, "null");
}

#[test]
fn fractional_nested_rules() {
    let tk = |k: &str, extra: &str| format!(r#"{{"targetingKey":"{k}"{extra}}}"#);
    let nested_if = r#"{"fractional":[{"var":"targetingKey"},[{"if":[{"==":[{"var":"tier"},"premium"]},"premium","standard"]},50],["standard",50]]}"#;
    check_frac(
        V2,
        "f",
        nested_if,
        &tk("jon@company.com", r#","tier":"premium""#),
        r#""premium""#,
    );
    check_frac(
        V2,
        "f",
        nested_if,
        &tk("jon@company.com", r#","tier":"basic""#),
        r#""standard""#,
    );
    check_frac(
        V2,
        "f",
        nested_if,
        &tk("user1", r#","tier":"premium""#),
        r#""standard""#,
    );
    let nested_var = r#"{"fractional":[{"var":"targetingKey"},[{"var":"color"},50],["blue",50]]}"#;
    check_frac(
        V2,
        "f",
        nested_var,
        &tk("jon@company.com", r#","color":"red""#),
        r#""red""#,
    );
    check_frac(
        V2,
        "f",
        nested_var,
        &tk("user1", r#","color":"red""#),
        r#""blue""#,
    );
    check_frac(
        V2,
        "f",
        nested_var,
        &tk("jon@company.com", r#","color":"""#),
        r#""""#,
    );
    check_frac(V2, "f", nested_var, &tk("jon@company.com", ""), "null");
    let nested_weight = r#"{"fractional":[{"var":"targetingKey"},["red",{"if":[{"==":[{"var":"tier"},"premium"]},100,0]}],["blue",10]]}"#;
    for k in ["jon@company.com", "user1"] {
        check_frac(
            V2,
            "f",
            nested_weight,
            &tk(k, r#","tier":"premium""#),
            r#""red""#,
        );
        check_frac(
            V2,
            "f",
            nested_weight,
            &tk(k, r#","tier":"basic""#),
            r#""blue""#,
        );
    }
    for hash_gen in [V2, V3] {
        let key = r#"{"targetingKey":"some-targeting-key"}"#;
        check_frac(
            hash_gen,
            "f",
            r#"{"if":[{"fractional":[[false,0],[true,100]]},"big","small"]}"#,
            key,
            r#""big""#,
        );
        check_frac(
            hash_gen,
            "f",
            r#"{"if":[{"fractional":[[false,100],[true,0]]},"big","small"]}"#,
            key,
            r#""small""#,
        );
        check_frac(
            hash_gen,
            "f",
            r#"{"fractional":[{"var":"targetingKey"},["one",-50],["two",100]]}"#,
            key,
            r#""two""#,
        );
        check_frac(
            hash_gen,
            "f",
            r#"{"fractional":[{"var":"targetingKey"},["one",0],["two",0]]}"#,
            key,
            "null",
        );
        check_frac(
            hash_gen,
            "f",
            r#"{"fractional":[{"var":"missing_key"},["one",50],["two",50]]}"#,
            "{}",
            "null",
        );
        check_frac(
            hash_gen,
            "f",
            r#"{"fractional":{"var":"args"}}"#,
            r#"{"args":["k",["a",1]]}"#,
            r#""a""#,
        );
    }
}

#[test]
fn fractional_argument_errors_give_null() {
    for hash_gen in [V2, V3] {
        let f = |rule: &str, expected: &str| {
            check_frac(hash_gen, "f", rule, r#"{"targetingKey":"u"}"#, expected)
        };
        f(r#"{"fractional":[]}"#, "null");
        f(r#"{"fractional":["key"]}"#, "null");
        f(r#"{"fractional":"key"}"#, "null");
        f(r#"{"fractional":["key",["a",1.5]]}"#, "null");
        f(r#"{"fractional":["key",["a","1"]]}"#, "null");
        f(r#"{"fractional":["key",["a",2147483648]]}"#, "null");
        f(r#"{"fractional":["key",["a",2147483647]]}"#, r#""a""#);
        f(r#"{"fractional":["key",["a",2147483647],["b",1]]}"#, "null");
        f(r#"{"fractional":["key",[["x"],1]]}"#, "null");
        f(r#"{"fractional":["key","notarray"]}"#, "null");
        f(r#"{"fractional":["key",[]]}"#, "null");
        f(r#"{"fractional":["key",[null,1]]}"#, "null");
        f(r#"{"fractional":["key",[7,1]]}"#, "7");
        f(r#"{"fractional":["key",{"var":"missing"}]}"#, "null");
        f(
            r#"{"fractional":["key",["a",{"var":"missing"}]]}"#,
            r#""a""#,
        );
    }
    let tk = r#"{"targetingKey":"u"}"#;
    // A null first argument is dropped in V2 (shorthand) and refused in V3.
    check_frac(V2, "f", r#"{"fractional":[null,["one"]]}"#, tk, r#""one""#);
    check_frac(V3, "f", r#"{"fractional":[null,["one"]]}"#, tk, "null");
    check_frac(V2, "f", r#"{"fractional":[null,["one"]]}"#, "{}", "null");
    // A number first is an (invalid) entry in V2 and a bucketing value in V3.
    check_frac(V2, "f", r#"{"fractional":[5,["a",1]]}"#, tk, "null");
    check_frac(V3, "f", r#"{"fractional":[5,["a",1]]}"#, tk, r#""a""#);
    // A rule producing an entry first: both read it as an entry of the shorthand form.
    let lead = r#"{"fractional":[{"var":"d"},["y",0]]}"#;
    check_frac(
        V2,
        "f",
        lead,
        r#"{"d":["x",1],"targetingKey":"u"}"#,
        r#""x""#,
    );
    check_frac(
        V3,
        "f",
        lead,
        r#"{"d":["x",1],"targetingKey":"u"}"#,
        r#""x""#,
    );
    check_frac(V3, "f", lead, r#"{"d":["x",1]}"#, "null");
    // Evaluation errors inside the arguments are still errors.
    assert!(run(r#"{"fractional":["k",["a",{"nope":1}]]}"#, "{}").is_err());
}

/// A `fractional` rule over the context key `k` with the given distribution.
fn picker(hash_gen: HashGeneration, entries: &str) -> Rule {
    let rule = format!(r#"{{"fractional":[{{"var":"k"}},{entries}]}}"#);
    let opts = CompileOptions {
        hash: hash_gen,
        ..CompileOptions::default()
    };
    Rule::compile(&parse(&rule), &opts).unwrap()
}

/// The variant `rule` picks for `key`.
fn pick(rule: &Rule, key: &str) -> Value {
    let data = json!({ "k": key });
    let ctx = EvalContext {
        data: &data,
        flag_key: "f",
        timestamp: 0,
    };
    rule.evaluate(&ctx).unwrap().into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn fractional_follows_the_weights(
        weights in prop::collection::vec(1u32..100, 2..5),
        hash_gen in prop_oneof![Just(V2), Just(V3)],
        salt in any::<u32>(),
    ) {
        let entries: Vec<String> = weights.iter().enumerate().map(|(i, w)| format!(r#"[{i},{w}]"#)).collect();
        let entries = entries.join(",");
        let n = 20_000;
        let mut counts = vec![0u32; weights.len()];
        let rule = picker(hash_gen, &entries);
        for i in 0..n {
            let v = pick(&rule, &format!("user-{salt}-{i}"));
            let idx = v.as_u64().unwrap() as usize;
            counts[idx] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (c, w) in counts.iter().zip(&weights) {
            let expected = f64::from(*w) / f64::from(total);
            let got = f64::from(*c) / f64::from(n);
            prop_assert!((got - expected).abs() < 0.02, "weights {weights:?}: got {got}, expected {expected}");
        }
    }

    #[test]
    fn fractional_ramps_are_monotonic(
        low in 0u32..=100,
        step in 0u32..=100,
        hash_gen in prop_oneof![Just(V2), Just(V3)],
        keys in prop::collection::vec("[a-z0-9@.]{1,12}", 50..100),
    ) {
        let high = (low + step).min(100);
        let split = |canary: u32| format!(r#"["stable",{}],["canary",{canary}]"#, 100 - canary);
        let (lo, hi) = (picker(hash_gen, &split(low)), picker(hash_gen, &split(high)));
        for k in &keys {
            // Raising the canary weight never moves a canary user back; lowering it removes
            // exactly the users the raise added (the sets are nested).
            if pick(&lo, k) == json!("canary") {
                prop_assert_eq!(pick(&hi, k), json!("canary"));
            }
        }
    }
}

/// Operator names the random rules draw from, plus a few unknown ones.
const OPS: &[&str] = &[
    "and",
    "or",
    "!",
    "!!",
    "if",
    "?:",
    "==",
    "!=",
    "===",
    "!==",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "abs",
    "max",
    "min",
    "var",
    "missing",
    "missing_some",
    "in",
    "cat",
    "substr",
    "merge",
    "map",
    "filter",
    "reduce",
    "all",
    "none",
    "some",
    "set",
    "contains_all",
    "contains_any",
    "contains_none",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
    "$ref",
    "nope",
    "log",
];

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..300).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "",
            "a",
            "b",
            "a.b",
            "xs",
            "0",
            "1",
            "-1",
            ".",
            "targetingKey",
            "1.2.3",
            "v2",
            "=",
            ">=",
            "^",
            "~",
            "current",
            "accumulator",
            "$flagd",
            "$flagd.flagKey",
            " x "
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            (prop::sample::select(OPS), inner.clone()).prop_map(|(op, args)| json!({ op: args })),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_rules_never_panic(rule in arb_value(), data in arb_value(), v2 in any::<bool>()) {
        let evaluators = json!({"a": {"var": "a"}, "b": {"$ref": "a"}});
        let opts = CompileOptions {
            evaluators: evaluators.as_object(),
            hash: if v2 { V2 } else { V3 },
            ..CompileOptions::default()
        };
        if let Ok(rule) = Rule::compile(&rule, &opts) {
            let ctx = EvalContext { data: &data, flag_key: "flag", timestamp: 1 };
            let _ = rule.evaluate(&ctx);
        }
    }
}

proptest! {
    #[test]
    fn substring_search_matches_std(h in "[ab@.é]{0,80}", n in "[ab@.é]{0,5}") {
        prop_assert_eq!(super::value::str_contains(&h, &n), h.contains(&n));
    }
}
