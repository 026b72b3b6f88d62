//! Compiled JSONLogic: rules are compiled once into a typed tree and evaluated over a borrowed
//! context.
//!
//! The semantics are those of the engine flagd embeds (diegoholiveira/jsonlogic v3), including
//! its quirks, plus flagd's operators `fractional`, `sem_ver`, `starts_with` and `ends_with`.
//! Where that engine panics, evaluation returns an [`EvalError`] (flagd answers `PARSE_ERROR`);
//! flagd's own operators never fail, they return `null` on bad input.
//!
//! Choices where the reference engine gives no usable answer:
//! - Arithmetic is float64 as in Go; a result with no JSON form (division by zero, `x % 0`) is
//!   `null` once it leaves the engine, while comparisons inside the rule still see the
//!   infinity (`{">": [{"/": [1, 0]}, 5]}` is `true`).
//! - `max`/`min` of an empty list are `null`.
//! - Rules are never read from the context, except that an `if` branch whose value is a
//!   single-key object is evaluated again as a rule, as flagd does; such re-reading is capped
//!   per evaluation, where flagd would recurse until its stack overflows.
//! - Every evaluation works within an [`EvalBudget`] of operations and memory (see
//!   [`budget`](self::budget)); past it, evaluation fails with [`EvalError::BudgetExceeded`]
//!   where flagd would keep going.
//! - `contains_all`/`contains_any`/`contains_none` take `[array, array]` and compare elements
//!   with loose equality; other shapes give `false`.
//!
//! ```
//! use flagd_evaluator::{CompileOptions, EvalContext, Rule};
//! use serde_json::json;
//!
//! let rule = json!({"if": [{"in": ["@acme.com", {"var": "email"}]}, "on", "off"]});
//! let rule = Rule::compile(&rule, &CompileOptions::default()).unwrap();
//! let data = json!({"email": "ann@acme.com"});
//! let ctx = EvalContext { data: &data, flag_key: "email-domain", timestamp: 0 };
//! assert_eq!(*rule.evaluate(&ctx).unwrap(), json!("on"));
//! ```

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ops::fractional::HashGeneration;

pub use budget::{BudgetLimit, EvalBudget, Exceeded};
pub use context::{Context, ContextBuilder, ContextRef};

pub mod budget;
mod compile;
pub mod context;
mod eval;
pub(crate) mod input;
mod tree;
pub(crate) mod value;

#[cfg(test)]
mod tests;

/// Options for compiling one targeting rule.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions<'a> {
    /// Shared rules (`$evaluators`) that `{"$ref": "name"}` refers to.
    pub evaluators: Option<&'a Map<String, Value>>,
    /// Which hash generation `fractional` uses.
    pub hash: HashGeneration,
    /// Deepest nesting of rule objects/arrays accepted.
    pub max_depth: usize,
    /// The work each evaluation of the rule may do.
    pub budget: EvalBudget,
}

impl Default for CompileOptions<'_> {
    fn default() -> Self {
        Self {
            evaluators: None,
            hash: HashGeneration::default(),
            max_depth: 128,
            budget: EvalBudget::default(),
        }
    }
}

/// The data a rule is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The caller's evaluation context (normally an object).
    pub data: &'a Value,
    /// `$flagd.flagKey`.
    pub flag_key: &'a str,
    /// `$flagd.timestamp`, Unix seconds.
    pub timestamp: i64,
}

/// A problem found while compiling a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The rule nests deeper than allowed.
    #[error("rule nests deeper than {max} levels at {pointer}")]
    TooDeep {
        /// The limit.
        max: usize,
        /// JSON pointer (relative to the rule) where the limit was crossed.
        pointer: String,
    },
    /// The rule, with its `$ref`s expanded, is larger than any real rule (evaluators that
    /// reference each other many times over).
    #[error("rule expands to more than {max} nodes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}

/// A failure while evaluating a rule; flag resolution reports it as `PARSE_ERROR`, except an
/// exceeded budget, which is `GENERAL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The rule uses an operator that is not supported (including an unresolved `$ref`).
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    /// An operator got arguments it cannot work with.
    #[error("invalid arguments for `{0}`")]
    InvalidArguments(&'static str),
    /// The evaluation needed more work or memory than its [`EvalBudget`] allows. flagd has no
    /// such limit; flagd-rs reports it as a `GENERAL` error.
    #[error("evaluation budget exceeded: {0}")]
    BudgetExceeded(Exceeded),
}

/// What a constant result of a rule's top-level `if` selects among the variants of the flag the
/// rule belongs to, worked out once when the flag is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Not a constant result (a rule, or a condition): evaluated and matched as usual.
    Unbound,
    /// The constant names this variant (its position among the flag's variants).
    Variant(u32),
    /// The constant is `null`: the flag's default applies.
    Default,
    /// The constant names no variant of the flag.
    NoVariant,
}

/// What evaluating a rule for a flag gave.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// A constant result bound to a variant (its position among the flag's variants).
    Variant(u32),
    /// A constant `null` result.
    Default,
    /// A constant result that names no variant.
    NoVariant,
    /// Any other result, to be matched against the variants.
    Value(value::Val<'a>),
}

/// A compiled targeting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    root: tree::Node,
    /// For a rule whose top is an `if`: per argument, what it selects when it is a constant
    /// result; for a top-level `fractional` of constant entries: per entry (empty until the
    /// rule is bound to its flag's variants).
    picks: Box<[Pick]>,
    /// Kept for rules met at evaluation time (flagd re-reads some results as rules).
    hash: HashGeneration,
    max_depth: usize,
    budget: EvalBudget,
}

impl Rule {
    /// Compiles `rule`, inlining the `$ref`s it makes to `opts.evaluators`.
    ///
    /// Only the nesting depth and the expanded size are checked here: unknown operators and
    /// ill-shaped arguments compile to nodes that fail when (and only if) they are evaluated,
    /// as in flagd.
    pub fn compile(rule: &Value, opts: &CompileOptions<'_>) -> Result<Rule, RuleError> {
        Self::compile_input(rule, opts)
    }

    /// [`Rule::compile`] for any rule input, such as a rule read straight from its text.
    pub(crate) fn compile_input<I: input::RuleInput>(
        rule: &I,
        opts: &CompileOptions<'_>,
    ) -> Result<Rule, RuleError> {
        let root = compile::Compiler::new(opts).compile(rule, 0)?;
        Ok(Rule {
            root,
            picks: Box::default(),
            hash: opts.hash,
            max_depth: opts.max_depth,
            budget: opts.budget,
        })
    }

    /// Evaluates the rule against `ctx`.
    ///
    /// `$flagd.flagKey` and `$flagd.timestamp` are served from `ctx` (a `$flagd` key in the
    /// data is shadowed). The result borrows from the rule or the context where it can.
    pub fn evaluate<'a>(&'a self, ctx: &EvalContext<'a>) -> Result<Cow<'a, Value>, EvalError> {
        Ok(self.evaluate_val(ctx)?.into_cow())
    }

    /// [`Rule::evaluate`] without turning the result into JSON, for the flag resolver.
    #[inline]
    pub(crate) fn evaluate_val<'a>(
        &'a self,
        ctx: &EvalContext<'a>,
    ) -> Result<value::Val<'a>, EvalError> {
        self.evaluate_in(ContextRef::Json(ctx.data), ctx.flag_key, ctx.timestamp)
    }

    /// Evaluates the rule against `data`, with `$flagd.flagKey` `flag_key` and
    /// `$flagd.timestamp` `timestamp`.
    pub fn evaluate_with<'a>(
        &'a self,
        data: impl Into<ContextRef<'a>>,
        flag_key: &'a str,
        timestamp: i64,
    ) -> Result<Cow<'a, Value>, EvalError> {
        Ok(self
            .evaluate_in(data.into(), flag_key, timestamp)?
            .into_cow())
    }

    /// [`Rule::evaluate_with`] without turning the result into JSON, for the flag resolver.
    #[inline]
    pub(crate) fn evaluate_in<'a>(
        &'a self,
        data: ContextRef<'a>,
        flag_key: &'a str,
        timestamp: i64,
    ) -> Result<value::Val<'a>, EvalError> {
        let rt = eval::Runtime::new(self.hash, self.max_depth, self.budget);
        let flagd = eval::Flagd {
            key: flag_key,
            timestamp,
        };
        let env = eval::Env::root(data, Some(flagd), &rt);
        let out = eval::eval(&self.root, &env);
        // A limit crossed where no error could be returned, or whose error another one
        // replaced on the way up, still ends the evaluation.
        match rt.exceeded() {
            Some(what) => Err(EvalError::BudgetExceeded(what)),
            None => out,
        }
    }

    /// Works out, with `pick_of`, what each constant result of the top-level `if` (or each
    /// constant variant of a top-level `fractional` split) selects, so that evaluating the rule
    /// for its flag needs no variant-name matching for them.
    pub(crate) fn bind(&mut self, pick_of: impl Fn(&Value) -> Pick) {
        self.picks = match &self.root {
            tree::Node::If(args) => {
                let n = args.len();
                args.iter()
                    .enumerate()
                    .map(|(j, arg)| {
                        // Results follow their conditions (odd positions); an odd count ends
                        // in the else result.
                        let result = j % 2 == 1 || (n % 2 == 1 && j == n - 1);
                        match (result, arg) {
                            (true, tree::Node::Const(v)) => pick_of(v),
                            _ => Pick::Unbound,
                        }
                    })
                    .collect()
            }
            // A split of constant entries bucketed by the targeting key: per entry.
            tree::Node::Fractional(f) if f.first.is_none() && matches!(f.table, Some(Some(_))) => f
                .entries
                .iter()
                .map(|e| match e {
                    tree::Entry::Pair(tree::Node::Const(v), _) => pick_of(v),
                    _ => Pick::Unbound,
                })
                .collect(),
            _ => Box::default(),
        };
    }

    /// This rule without its binding to a flag's variants, so that tests can compare the bound
    /// evaluation with the general one.
    #[cfg(test)]
    pub(crate) fn unbound(&self) -> Rule {
        Rule {
            picks: Box::default(),
            ..self.clone()
        }
    }

    /// Replaces the rule's evaluation budget.
    #[cfg(test)]
    pub(crate) fn set_budget(&mut self, budget: EvalBudget) {
        self.budget = budget;
    }

    /// Whether the rule is bound to its flag's variants (see [`Rule::bind`]).
    #[cfg(test)]
    pub(crate) fn is_bound(&self) -> bool {
        !self.picks.is_empty()
    }

    /// [`Rule::evaluate_in`] for a rule bound to its flag's variants ([`Rule::bind`]): a
    /// constant result of the top-level `if` comes back as what it selects.
    #[inline]
    pub(crate) fn evaluate_outcome<'a>(
        &'a self,
        data: ContextRef<'a>,
        flag_key: &'a str,
        timestamp: i64,
    ) -> Result<Outcome<'a>, EvalError> {
        let rt = eval::Runtime::new(self.hash, self.max_depth, self.budget);
        let flagd = eval::Flagd {
            key: flag_key,
            timestamp,
        };
        let env = eval::Env::root(data, Some(flagd), &rt);
        let out = match &self.root {
            tree::Node::If(args) if !self.picks.is_empty() => {
                eval::eval_top_if(args, &self.picks, &env)
            }
            tree::Node::Fractional(f) if !self.picks.is_empty() => {
                eval::eval_top_fractional(f, &self.picks, &env)
            }
            root => eval::eval(root, &env).map(Outcome::Value),
        };
        match rt.exceeded() {
            Some(what) => Err(EvalError::BudgetExceeded(what)),
            None => out,
        }
    }

    /// The work each evaluation of the rule may do.
    pub fn budget(&self) -> EvalBudget {
        self.budget
    }

    /// The rule's value when it does not depend on the context (a literal, or operators over
    /// literals).
    pub fn constant(&self) -> Option<&Value> {
        self.root.as_const()
    }
}
