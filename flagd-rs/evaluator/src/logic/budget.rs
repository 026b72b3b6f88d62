//! The work budget of one evaluation.
//!
//! A rule is small, but the work it does need not be: an array operator runs its per-element
//! rule once per element, array operators nest, `some`/`none`/`filter` bodies read the enclosing
//! data, `reduce` rebuilds its accumulator per element, an `if` branch read from the context is
//! compiled and run as a rule, and strings can be long. Every evaluation therefore counts what it
//! does against an [`EvalBudget`]:
//!
//! - **operations**: one per rule node visited, one per array element walked, compared or
//!   copied, and one per 64 bytes of long text (longer than 256 bytes) each time it is read,
//!   and of any text copied or built;
//! - **memory**: the estimated size of every value built or copied during the evaluation
//!   (32 bytes per JSON value plus the length of its strings and keys), freed or not.
//!
//! Work that is proportional to the data is charged where it happens, so the time and memory of
//! an evaluation are bounded by the budget times a constant. Past either limit evaluation stops
//! with [`EvalError::BudgetExceeded`]. A charge made where no error can be returned (reading a
//! long string during a variable lookup) marks the meter exhausted instead; the next node visit,
//! or the end of the evaluation, reports it.

use std::cell::Cell;
use std::fmt;

use serde_json::Value;

use super::EvalError;

/// Strings up to this length cost nothing beyond the node that reads them.
const LONG_TEXT: usize = 256;

/// The estimated size of one JSON value, the unit of the memory bound.
pub(crate) const NODE_BYTES: u64 = std::mem::size_of::<Value>() as u64;

/// Limits on the work of one evaluation, so that no rule and no context can make an evaluation
/// run or allocate without bound.
///
/// The defaults (a million operations, 32 MiB) are far above what real targeting rules need:
/// the rules of the flagd test suites take at most a few dozen operations and a few hundred
/// bytes per evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvalBudget {
    /// Most operations one evaluation may perform: rule nodes visited, array elements walked,
    /// compared or copied, and 64-byte blocks of long text read, copied or built.
    pub max_operations: u64,
    /// Most bytes of values one evaluation may build or copy, estimated as 32 bytes per JSON
    /// value plus the length of its strings and keys.
    pub max_bytes: u64,
}

impl EvalBudget {
    /// No limits, for rules and data that are fully trusted.
    pub const UNLIMITED: EvalBudget = EvalBudget {
        max_operations: u64::MAX,
        max_bytes: u64::MAX,
    };

    /// `limit` with this budget's value.
    pub fn exceeded(&self, limit: BudgetLimit) -> Exceeded {
        match limit {
            BudgetLimit::Operations => Exceeded::Operations(self.max_operations),
            BudgetLimit::Memory => Exceeded::Memory(self.max_bytes),
        }
    }
}

/// One of the two limits of an [`EvalBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetLimit {
    /// [`EvalBudget::max_operations`].
    Operations,
    /// [`EvalBudget::max_bytes`].
    Memory,
}

impl fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetLimit::Operations => "operations",
            BudgetLimit::Memory => "memory",
        })
    }
}

impl Default for EvalBudget {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_bytes: 32 << 20,
        }
    }
}

/// Which limit of an [`EvalBudget`] an evaluation ran into, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exceeded {
    /// The operation limit, [`EvalBudget::max_operations`].
    Operations(u64),
    /// The memory limit, [`EvalBudget::max_bytes`].
    Memory(u64),
}

impl Exceeded {
    /// Which limit it is.
    pub fn limit(&self) -> BudgetLimit {
        match self {
            Exceeded::Operations(_) => BudgetLimit::Operations,
            Exceeded::Memory(_) => BudgetLimit::Memory,
        }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Operations(n) => write!(f, "more than {n} operations"),
            Exceeded::Memory(n) => write!(f, "more than {n} bytes of values built"),
        }
    }
}

/// What is left of the budget of one evaluation.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Operations left.
    ops: Cell<u64>,
    /// Bytes left.
    bytes: Cell<u64>,
    /// The limit crossed first, once one is.
    over: Cell<Option<BudgetLimit>>,
    limits: EvalBudget,
}

impl Meter {
    /// A full budget.
    pub(crate) fn new(limits: EvalBudget) -> Self {
        Meter {
            ops: Cell::new(limits.max_operations),
            bytes: Cell::new(limits.max_bytes),
            over: Cell::new(None),
            limits,
        }
    }

    /// The budget this meter started from.
    pub(crate) fn limits(&self) -> EvalBudget {
        self.limits
    }

    /// The limit crossed, if any.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.over.get().map(|limit| self.limits.exceeded(limit))
    }

    /// One node visit. On the path of every node: a decrement and a branch.
    #[inline(always)]
    pub(crate) fn step(&self) -> Result<(), EvalError> {
        let left = self.ops.get();
        if left == 0 {
            return Err(self.exhausted());
        }
        self.ops.set(left - 1);
        Ok(())
    }

    /// `n` operations.
    #[inline]
    pub(crate) fn spend(&self, n: u64) -> Result<(), EvalError> {
        let left = self.ops.get();
        if n > left {
            return Err(self.exceed(BudgetLimit::Operations));
        }
        self.ops.set(left - n);
        Ok(())
    }

    /// `n` bytes of values built.
    #[inline]
    pub(crate) fn build(&self, n: u64) -> Result<(), EvalError> {
        let left = self.bytes.get();
        if n > left {
            return Err(self.exceed(BudgetLimit::Memory));
        }
        self.bytes.set(left - n);
        Ok(())
    }

    /// Reading `len` bytes of text where no error can be returned: long text that does not fit
    /// exhausts the meter, and the next node visit fails.
    #[inline(always)]
    pub(crate) fn read_text(&self, len: usize) {
        if len > LONG_TEXT {
            self.read_long_text(len);
        }
    }

    #[cold]
    fn read_long_text(&self, len: usize) {
        // The error is reported by the next step or at the end of the evaluation.
        let _ = self.spend(read_cost(len));
    }

    /// Reading a string `s` where an error can be returned.
    #[inline]
    pub(crate) fn read_str(&self, s: &str) -> Result<(), EvalError> {
        if s.len() > LONG_TEXT {
            self.spend(read_cost(s.len()))?;
        }
        Ok(())
    }

    /// Building a string of `len` bytes.
    pub(crate) fn build_text(&self, len: usize) -> Result<(), EvalError> {
        self.build(NODE_BYTES.saturating_add(len as u64))?;
        self.spend(text_ops(len))
    }

    /// Building one value that owns nothing (a scalar, or a slot for a value already charged).
    #[inline]
    pub(crate) fn build_slot(&self) -> Result<(), EvalError> {
        self.build(NODE_BYTES)
    }

    /// Reading all of `v` (hashing it) where no error can be returned: one operation per value
    /// inside plus its text; a value that does not fit exhausts the meter.
    pub(crate) fn read_value(&self, v: &Value) {
        let mut size = Size::default();
        // A walk stopped early has already cost more than is left, which the charge reports.
        measure(v, &mut size, self.ops.get(), u64::MAX, 0);
        let _ = self.spend(size.ops());
    }

    /// Copying all of `v`: one operation per value inside plus its text, and its size in bytes.
    /// Nothing is charged past the first limit crossed, and the walk stops there, so a refused
    /// copy costs no more than the budget left.
    pub(crate) fn copy(&self, v: &Value) -> Result<(), EvalError> {
        // Most copies are of scalars.
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => {
                self.spend(1)?;
                return self.build(NODE_BYTES);
            }
            Value::String(s) => {
                self.spend(1)?;
                return self.build_text(s.len());
            }
            Value::Array(_) | Value::Object(_) => {}
        }
        let mut size = Size::default();
        // A walk stopped early has already cost more than is left, which the charges report.
        measure(v, &mut size, self.ops.get(), self.bytes.get(), 0);
        self.spend(size.ops())?;
        self.build(size.bytes())
    }

    /// Compiling `rule` read from the data: copying it into a tree, and at each level of
    /// nesting looking through what lies below for rules (so each value inside may be visited
    /// once per container around it).
    pub(crate) fn compile(&self, rule: &Value) -> Result<(), EvalError> {
        let mut size = Size::default();
        measure(rule, &mut size, self.ops.get(), self.bytes.get(), 0);
        self.spend(size.ops())?;
        self.build(size.bytes())?;
        self.spend(size.nodes.saturating_mul(size.depth))
    }

    /// Records that a limit was crossed and returns the error; every later step fails too.
    #[cold]
    fn exceed(&self, limit: BudgetLimit) -> EvalError {
        if self.over.get().is_none() {
            self.over.set(Some(limit));
        }
        self.ops.set(0);
        EvalError::BudgetExceeded(self.limits.exceeded(self.over.get().unwrap_or(limit)))
    }

    /// The error of a step taken with no operation left.
    #[cold]
    #[inline(never)]
    fn exhausted(&self) -> EvalError {
        self.exceed(BudgetLimit::Operations)
    }
}

/// Operations for copying or building `len` bytes of text: one per 64 bytes.
#[inline]
fn text_ops(len: usize) -> u64 {
    (len / 64) as u64
}

/// Operations for reading `len` bytes of text: nothing up to [`LONG_TEXT`] bytes (the node that
/// reads it covers that), one per 64 bytes beyond.
#[inline]
pub(crate) fn read_cost(len: usize) -> u64 {
    if len > LONG_TEXT { text_ops(len) } else { 0 }
}

/// The size of a value: how many JSON values (and object keys) it holds, how long its text is,
/// and how deeply its containers nest.
#[derive(Debug, Default, Clone, Copy)]
struct Size {
    nodes: u64,
    text: u64,
    depth: u64,
}

impl Size {
    fn ops(self) -> u64 {
        self.nodes.saturating_add(self.text / 64)
    }

    fn bytes(self) -> u64 {
        self.nodes
            .saturating_mul(NODE_BYTES)
            .saturating_add(self.text)
    }
}

/// Adds the size of `v`, found inside `level` containers, to `size`; stops early, returning
/// `false`, once the size costs more than `ops` operations or `bytes` bytes (so the walk is
/// bounded by what is left of the budget).
fn measure(v: &Value, size: &mut Size, ops: u64, bytes: u64, level: u64) -> bool {
    size.nodes += 1;
    size.depth = size.depth.max(level);
    match v {
        Value::String(s) => size.text += s.len() as u64,
        Value::Array(items) => {
            for item in items {
                if !measure(item, size, ops, bytes, level + 1) {
                    return false;
                }
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                size.nodes += 1;
                size.text += k.len() as u64;
                if !measure(item, size, ops, bytes, level + 1) {
                    return false;
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    size.ops() <= ops && size.bytes() <= bytes
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{Value, json};

    use super::*;
    use crate::logic::{CompileOptions, EvalContext, Rule};

    fn run_with(rule: &Value, data: &Value, budget: EvalBudget) -> Result<Value, EvalError> {
        let opts = CompileOptions {
            budget,
            ..CompileOptions::default()
        };
        let rule = Rule::compile(rule, &opts).unwrap();
        let ctx = EvalContext {
            data,
            flag_key: "flag",
            timestamp: 0,
        };
        rule.evaluate(&ctx).map(Cow::into_owned)
    }

    fn run(rule: &Value, data: &Value) -> Result<Value, EvalError> {
        run_with(rule, data, EvalBudget::default())
    }

    /// `[0, 1, ..., n - 1]`.
    fn numbers(n: usize) -> Value {
        Value::Array((0..n).map(Value::from).collect())
    }

    #[track_caller]
    fn assert_operations_exceeded(got: Result<Value, EvalError>) {
        let limit = EvalBudget::default().max_operations;
        assert_eq!(
            got,
            Err(EvalError::BudgetExceeded(Exceeded::Operations(limit)))
        );
    }

    #[test]
    fn nested_some_from_a_context_rule_is_cut_off() {
        // Without a budget: 100,000 x 100,000 iterations, each reading the outer scope.
        let rule = json!({"if": [true, {"var": "x"}, null]});
        let data = json!({
            "x": {"some": [{"var": "big"}, {"some": [{"var": "big"}, {"==": [1, 2]}]}]},
            "big": numbers(100_000),
        });
        assert_operations_exceeded(run(&rule, &data));
        // With a literal per-element value instead of a rule, `some` fails at once.
        let data = json!({
            "x": {"some": [{"var": "big"}, {"some": [{"var": "big"}, false]}]},
            "big": numbers(100_000),
        });
        assert_eq!(run(&rule, &data), Err(EvalError::InvalidArguments("some")));
    }

    #[test]
    fn filter_and_none_over_the_outer_scope_are_cut_off() {
        let data = json!({"big": numbers(100_000)});
        let rule = json!({"filter": [{"var": "big"}, {"none": [{"var": "big"}, {"==": [1, 2]}]}]});
        assert_operations_exceeded(run(&rule, &data));
        let rule = json!({"none": [{"var": "big"}, {"filter": [{"var": "big"}, false]}]});
        assert_operations_exceeded(run(&rule, &data));
    }

    #[test]
    fn nested_maps_over_literal_arrays_are_cut_off() {
        // 3,000 x 3,000 values built without a budget.
        let rule = json!({"map": [numbers(3_000), {"map": [numbers(3_000), {"var": ""}]}]});
        assert_operations_exceeded(run(&rule, &json!({})));
    }

    #[test]
    fn nested_maps_over_context_arrays_are_cut_off() {
        let rule = json!({"map": [{"var": "big"}, {"map": [numbers(1_000), {"var": ""}]}]});
        assert_operations_exceeded(run(&rule, &json!({"big": numbers(100_000)})));
        // The same, with the rule itself sent in the context.
        let rule = json!({"if": [true, {"var": "x"}, null]});
        let data = json!({
            "x": {"map": [{"var": "big"}, {"map": [numbers(1_000), {"var": ""}]}]},
            "big": numbers(100_000),
        });
        assert_operations_exceeded(run(&rule, &data));
    }

    #[test]
    fn reduce_with_a_growing_accumulator_is_cut_off() {
        // Each step copies the accumulator: quadratic in the number of elements.
        let words: Vec<Value> = (0..100_000).map(|_| json!("abcdefgh")).collect();
        let rule = json!({"reduce": [
            {"var": "words"},
            {"cat": [{"var": "accumulator"}, {"var": "current"}]},
            ""
        ]});
        let limit = EvalBudget::default().max_bytes;
        assert_eq!(
            run(&rule, &json!({"words": words})),
            Err(EvalError::BudgetExceeded(Exceeded::Memory(limit)))
        );
        // A short reduce is untouched.
        let rule = json!({"reduce": [
            {"var": "words"},
            {"cat": [{"var": "accumulator"}, {"var": "current"}]},
            ""
        ]});
        assert_eq!(
            run(&rule, &json!({"words": ["a", "b", "c"]})),
            Ok(json!("abc"))
        );
    }

    #[test]
    fn quadratic_operators_are_charged() {
        let data = json!({"big": numbers(100_000)});
        let rule = json!({"contains_all": [{"var": "big"}, {"var": "big"}]});
        assert_operations_exceeded(run(&rule, &data));
        // A full scan of the outer array per element.
        let absent = json!({"+": [{"var": ""}, 100_000]});
        let rule = json!({"none": [{"var": "big"}, {"in": [absent, {"var": "big"}]}]});
        assert_operations_exceeded(run(&rule, &data));
        // No needles: no pass over the haystack, whatever its size.
        for (op, expected) in [
            ("contains_all", true),
            ("contains_any", false),
            ("contains_none", true),
        ] {
            let inner = json!({op: [{"var": "big"}, []]});
            let rule = json!({"none": [{"var": "big"}, {"!=": [inner, expected]}]});
            assert_eq!(run(&rule, &data), Ok(json!(true)), "{op}");
        }
        // A small haystack is fine.
        let rule = json!({"contains_any": [{"var": "groups"}, ["b", "z"]]});
        assert_eq!(run(&rule, &json!({"groups": ["a", "b"]})), Ok(json!(true)));
    }

    #[test]
    fn long_text_is_charged_on_every_read() {
        // Every comparison reads two 100 KB strings in full.
        let long = "a".repeat(100_000);
        let data = json!({"s": long, "t": long});
        let inner = json!({"some": [numbers(1_000), {"<": [{"var": "s"}, {"var": "t"}]}]});
        let rule = json!({"some": [numbers(1_000), inner]});
        assert_operations_exceeded(run(&rule, &data));
        // A long literal in the rule is charged the same way.
        let inner = json!({"some": [numbers(1_000), {"in": [{"var": "n"}, long]}]});
        let rule = json!({"some": [numbers(1_000), inner]});
        assert_operations_exceeded(run(&rule, &json!({"n": "zz"})));
        // Read once, it is nothing special.
        let rule = json!({"in": ["zz", {"var": "s"}]});
        assert_eq!(run(&rule, &data), Ok(json!(false)));
    }

    #[test]
    fn rules_from_the_context_pay_for_their_compilation() {
        let rule = json!({"if": [true, {"var": "x"}, null]});
        let data = json!({"x": {"in": [1, numbers(20_000)]}});
        assert_eq!(run(&rule, &data), Ok(json!(true)));
        let small = EvalBudget {
            max_operations: 10_000,
            ..EvalBudget::default()
        };
        assert_eq!(
            run_with(&rule, &data, small),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(10_000)))
        );
    }

    #[test]
    fn deep_rules_from_the_context_pay_for_every_level() {
        // Compiling looks through everything below each array level for rules: 20,000 values
        // under 50 levels are looked at 50 times each.
        let mut deep = json!([numbers(20_000), {"var": "a"}]);
        for _ in 0..49 {
            deep = json!([deep, {"var": "a"}]);
        }
        let rule = json!({"if": [true, {"var": "x"}, null]});
        let data = json!({"x": {"!": [deep]}});
        assert_operations_exceeded(run(&rule, &data));
        let shallow = json!({"x": {"!": [[numbers(20_000), {"var": "a"}]]}});
        assert_eq!(run(&rule, &shallow), Ok(json!(false)));
    }

    #[test]
    fn the_budget_is_configurable() {
        let rule = json!({"some": [[1, 2, 3], {"==": [{"var": ""}, 3]}]});
        assert_eq!(run(&rule, &json!({})), Ok(json!(true)));
        let tiny = EvalBudget {
            max_operations: 5,
            ..EvalBudget::default()
        };
        assert_eq!(
            run_with(&rule, &json!({}), tiny),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(5)))
        );
        // Without limits, work a small budget refuses completes.
        let rule = json!({"map": [numbers(110), {"map": [numbers(100), {"var": ""}]}]});
        let small = EvalBudget {
            max_operations: 10_000,
            ..EvalBudget::default()
        };
        assert_eq!(
            run_with(&rule, &json!({}), small),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(10_000)))
        );
        let out = run_with(&rule, &json!({}), EvalBudget::UNLIMITED).unwrap();
        assert_eq!(out.as_array().map(Vec::len), Some(110));
        // The memory bound on its own.
        let rule = json!({"map": [{"var": "big"}, {"var": ""}]});
        let lean = EvalBudget {
            max_operations: u64::MAX,
            max_bytes: 1 << 16,
        };
        assert_eq!(
            run_with(&rule, &json!({"big": numbers(10_000)}), lean),
            Err(EvalError::BudgetExceeded(Exceeded::Memory(1 << 16)))
        );
    }

    #[test]
    fn a_long_read_at_the_last_node_still_fails() {
        // The lookup cannot fail; the end of the evaluation reports the exhausted budget.
        let rule = json!({"var": "s"});
        let data = json!({"s": "a".repeat(10_000)});
        assert_eq!(run(&rule, &data), Ok(data["s"].clone()));
        let tiny = EvalBudget {
            max_operations: 100,
            ..EvalBudget::default()
        };
        assert_eq!(
            run_with(&rule, &data, tiny),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(100)))
        );
    }

    #[test]
    fn folding_stays_within_the_budget() {
        let rule = json!({"cat": ["a", "b", "c", "d"]});
        let compile = |budget| {
            let opts = CompileOptions {
                budget,
                ..CompileOptions::default()
            };
            Rule::compile(&rule, &opts).unwrap()
        };
        assert_eq!(
            compile(EvalBudget::default()).constant(),
            Some(&json!("abcd"))
        );
        let tiny = EvalBudget {
            max_operations: 3,
            ..EvalBudget::default()
        };
        // Too much work to fold: left to each evaluation, which fails the same way.
        assert_eq!(compile(tiny).constant(), None);
        assert_eq!(
            run_with(&rule, &json!({}), tiny),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(3)))
        );
    }

    #[test]
    fn meter_limits_and_exhaustion() {
        let m = Meter::new(EvalBudget {
            max_operations: 3,
            max_bytes: 100,
        });
        assert!(m.step().is_ok());
        assert!(m.spend(2).is_ok());
        assert_eq!(
            m.step(),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(3)))
        );
        assert_eq!(m.exceeded(), Some(Exceeded::Operations(3)));

        let m = Meter::new(EvalBudget {
            max_operations: 1_000,
            max_bytes: 100,
        });
        assert!(m.build(60).is_ok());
        assert_eq!(
            m.build(41),
            Err(EvalError::BudgetExceeded(Exceeded::Memory(100)))
        );
        // The first limit crossed is the one reported; every later step fails.
        assert_eq!(
            m.step(),
            Err(EvalError::BudgetExceeded(Exceeded::Memory(100)))
        );

        // A long read that does not fit exhausts the meter without failing on the spot.
        let m = Meter::new(EvalBudget {
            max_operations: 10,
            max_bytes: 100,
        });
        m.read_text(200);
        assert!(m.step().is_ok());
        m.read_text(10_000);
        assert_eq!(m.exceeded(), Some(Exceeded::Operations(10)));
        assert!(m.step().is_err());
    }

    #[test]
    fn copies_are_measured_and_refused_early() {
        let v = json!({"ab": ["xyz", 1, null]});
        let m = Meter::new(EvalBudget::UNLIMITED);
        m.copy(&v).unwrap();
        // Object, key, array, three elements; text "ab" + "xyz".
        assert_eq!(u64::MAX - m.bytes.get(), 6 * NODE_BYTES + 5);
        assert_eq!(u64::MAX - m.ops.get(), 6);

        let huge = numbers(100_000);
        let m = Meter::new(EvalBudget {
            max_operations: 1_000,
            max_bytes: u64::MAX,
        });
        assert_eq!(
            m.copy(&huge),
            Err(EvalError::BudgetExceeded(Exceeded::Operations(1_000)))
        );
        let m = Meter::new(EvalBudget {
            max_operations: u64::MAX,
            max_bytes: 1_000,
        });
        assert_eq!(
            m.copy(&huge),
            Err(EvalError::BudgetExceeded(Exceeded::Memory(1_000)))
        );
    }
}
