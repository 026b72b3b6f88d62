//! Evaluates a compiled rule over a borrowed context.
//!
//! The semantics are those of the JSONLogic engine flagd embeds, quirks included; where that
//! engine panics (and flagd reports `PARSE_ERROR`) evaluation returns an [`EvalError`].

use std::cell::Cell;
use std::sync::LazyLock;

use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::budget::{EvalBudget, Exceeded, Meter};
use super::compile::{Compiler, iter_name, parse_path};
use super::context::{ContextRef, Found};
use super::tree::{
    AffixNode, Args, Cmp, Costly, Entry, FractionalNode, InNode, IterKind, IterNode, Node, Op,
    Path, Seg, SemVerNode, Subject, VarNode, VarPath,
};
use super::value::{
    Val, View, equals, format_number, go_int, go_interface_eq, less, str_contains, strict_equals,
    view_of,
};
use super::{CompileOptions, EvalError, Outcome, Pick};
use crate::ops::fractional::{self, HashGeneration};
use crate::ops::semver;

/// How many times one evaluation may compile and run a rule found in the context (see
/// [`dynamic`]). Each such rule can lead to another only through data the caller sent, so a
/// small number never limits a real rule; the work of each is charged to the evaluation's
/// budget.
const DYNAMIC_RULES: u32 = 64;

/// How deeply rules read from the context may nest inside each other. Each level may nest as
/// deep as a compiled rule, so this keeps the stack bounded.
const DYNAMIC_NESTING: u32 = 4;

/// An empty object, standing in for a context that is not an object (flagd always evaluates
/// against an object).
static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));

/// State shared by one evaluation.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// What is left of the evaluation's budget.
    pub(crate) meter: Meter,
    /// Remaining compilations of rules read from the context.
    dynamic_left: Cell<u32>,
    /// Rules read from the context currently being evaluated, one inside the other.
    nesting: Cell<u32>,
    /// Set when evaluation reached into the context behind a rule's back (a rule read from
    /// data); constant folding then keeps the node.
    touched: Cell<bool>,
    /// Options for rules compiled at evaluation time.
    hash: HashGeneration,
    max_depth: usize,
}

impl Runtime {
    /// State for evaluating a rule compiled with these options.
    pub(crate) fn new(hash: HashGeneration, max_depth: usize, budget: EvalBudget) -> Self {
        Runtime {
            meter: Meter::new(budget),
            dynamic_left: Cell::new(DYNAMIC_RULES),
            nesting: Cell::new(0),
            touched: Cell::new(false),
            hash,
            max_depth,
        }
    }

    /// State for evaluating a constant sub-rule at compile time.
    pub(crate) fn for_folding(budget: EvalBudget) -> Self {
        Runtime::new(HashGeneration::default(), 0, budget)
    }

    /// The budget limit crossed, if any.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.meter.exceeded()
    }

    /// Whether evaluation depended on the context in a way the tree does not show.
    pub(crate) fn touched_context(&self) -> bool {
        self.touched.get()
    }
}

/// The flagd enrichment of the root context (`$flagd`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flagd<'a> {
    /// `$flagd.flagKey`.
    pub(crate) key: &'a str,
    /// `$flagd.timestamp`.
    pub(crate) timestamp: i64,
}

/// Where `var` looks, and the shared state: the root context, or an element inside an array
/// operator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a, 'r> {
    /// The data `var` paths start from.
    data: ContextRef<'a>,
    /// Present only at the root, where `$flagd` exists.
    flagd: Option<Flagd<'a>>,
    /// The enclosing scope, searched first by `filter`, `none` and `some` bodies.
    outer: Option<&'r Env<'a, 'r>>,
    rt: &'r Runtime,
}

impl<'a, 'r> Env<'a, 'r> {
    /// The root scope.
    pub(crate) fn root(
        data: impl Into<ContextRef<'a>>,
        flagd: Option<Flagd<'a>>,
        rt: &'r Runtime,
    ) -> Self {
        let data = match data.into() {
            ContextRef::Json(v) if !v.is_object() => ContextRef::Json(&EMPTY_OBJECT),
            other => other,
        };
        Env {
            data,
            flagd,
            outer: None,
            rt,
        }
    }

    /// The scope of one array element.
    fn element(data: &'a Value, outer: Option<&'r Env<'a, 'r>>, rt: &'r Runtime) -> Self {
        Env {
            data: ContextRef::Json(data),
            flagd: None,
            outer,
            rt,
        }
    }
}

type Res<'a> = Result<Val<'a>, EvalError>;

/// Evaluates `node`.
#[inline]
pub(crate) fn eval<'a>(node: &'a Node, env: &Env<'a, '_>) -> Res<'a> {
    // A thin dispatcher: every operator lives in its own function so that this one, entered at
    // every node, stays small (no large stack frame to set up for a constant).
    env.rt.meter.step()?;
    match node {
        Node::Const(v) => Ok(Val::Ref(v)),
        // The common `var`: a plain path at the root or in `map`/`all`.
        Node::Var(v) if v.default.is_none() && env.outer.is_none() => match &v.path {
            VarPath::Static(Path::Segs(segs)) => Ok(walk(segs, env).unwrap_or(Val::Null)),
            _ => eval_var(v, env),
        },
        Node::Var(v) => eval_var(v, env),
        Node::If(args) => eval_if(args, env),
        Node::And(args) => eval_and(args, env),
        Node::Or(args) => eval_or(args, env),
        Node::Cmp(c, args) => eval_cmp(*c, args, env),
        Node::Not(arg) => eval_not(arg, env),
        Node::In(n) => eval_in(n, env),
        Node::StartsWith(args) => eval_affix(true, args, env),
        Node::EndsWith(args) => eval_affix(false, args, env),
        Node::Affix(n) => eval_affix_literal(n, env),
        Node::SemVer(n) => eval_semver(n, env),
        Node::Fractional(n) => eval_fractional(n, env),
        Node::Iter(n) => eval_iter(n, env),
        Node::Array(items) => eval_array(items, env),
        Node::Op(op, args) => eval_op(*op, args, env),
        Node::Costly(c) => eval_costly(c, env),
        Node::Unknown(name) => Err(EvalError::UnknownOperator(name.to_string())),
        Node::Fail(e) => Err((**e).clone()),
    }
}

/// A node whose every visit costs more than one operation (it reads long text).
#[inline(never)]
fn eval_costly<'a>(c: &'a Costly, env: &Env<'a, '_>) -> Res<'a> {
    env.rt.meter.spend(c.cost)?;
    eval(&c.node, env)
}

/// `v` as owned JSON, charging the copy or the slot it takes.
fn owned(v: Val<'_>, meter: &Meter) -> Result<Value, EvalError> {
    match &v {
        Val::Ref(r) => meter.copy(r)?,
        Val::Str(s) => meter.build_text(s.len())?,
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::Owned(_) => meter.build_slot()?,
    }
    Ok(v.into_value())
}

/// `or`: the first truthy operand, else the last one (`null` for none).
#[inline(never)]
fn eval_or<'a>(args: &'a [Node], env: &Env<'a, '_>) -> Res<'a> {
    let mut last = Val::Null;
    for arg in args {
        last = eval(arg, env)?;
        if last.truthy() {
            break;
        }
    }
    Ok(last)
}

/// A two-operand comparison.
#[inline(never)]
fn eval_cmp<'a>(c: Cmp, args: &'a [Node; 2], env: &Env<'a, '_>) -> Res<'a> {
    let a = eval(&args[0], env)?;
    let b = eval(&args[1], env)?;
    Ok(Val::Bool(compare(c, a.view(), b.view())))
}

/// `!` of one operand.
#[inline(never)]
fn eval_not<'a>(arg: &'a Node, env: &Env<'a, '_>) -> Res<'a> {
    Ok(Val::Bool(!eval(arg, env)?.truthy()))
}

/// `starts_with` (`prefix`) or `ends_with`: both operands must be strings, else `null`.
#[inline(never)]
fn eval_affix<'a>(prefix: bool, args: &'a [Node; 2], env: &Env<'a, '_>) -> Res<'a> {
    let a = eval(&args[0], env)?;
    let b = eval(&args[1], env)?;
    // A context string against a rule literal is the usual case; it needs no general view.
    if let (Some(s), Some(p)) = (a.as_text(), b.as_text()) {
        return Ok(Val::Bool(if prefix {
            s.starts_with(p)
        } else {
            s.ends_with(p)
        }));
    }
    Ok(match (a.view(), b.view()) {
        (View::Str(s), View::Str(p)) => Val::Bool(if prefix {
            s.starts_with(p)
        } else {
            s.ends_with(p)
        }),
        _ => Val::Null,
    })
}

/// `starts_with` / `ends_with` against a literal string.
#[inline(never)]
fn eval_affix_literal<'a>(n: &'a AffixNode, env: &Env<'a, '_>) -> Res<'a> {
    if let Some(s) = top_text(&n.subject, env)? {
        // The visit of the literal argument, as the general node counts it.
        env.rt.meter.step()?;
        return Ok(Val::Bool(if n.prefix {
            n.affix.prefix_of(s)
        } else {
            n.affix.suffix_of(s)
        }));
    }
    let subject = eval(&n.subject, env)?;
    // The visit of the literal argument, as the general node counts it.
    env.rt.meter.step()?;
    let s = match subject.as_text() {
        Some(s) => s,
        None => match subject.view() {
            View::Str(s) => s,
            _ => return Ok(Val::Null),
        },
    };
    Ok(Val::Bool(if n.prefix {
        n.affix.prefix_of(s)
    } else {
        n.affix.suffix_of(s)
    }))
}

/// A literal array with rules inside.
#[inline(never)]
fn eval_array<'a>(items: &'a [Node], env: &Env<'a, '_>) -> Res<'a> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(owned(eval(item, env)?, &env.rt.meter)?);
    }
    Ok(Val::Owned(Value::Array(out)))
}

/// Compiles and evaluates a rule found in the data (flagd's engine re-reads some results as
/// rules), detached from the temporary tree.
fn dynamic<'a>(rule: &Value, env: &Env<'a, '_>, op: &'static str) -> Res<'a> {
    env.rt.touched.set(true);
    let left = env.rt.dynamic_left.get();
    let nesting = env.rt.nesting.get();
    if left == 0 || nesting >= DYNAMIC_NESTING {
        return Err(EvalError::InvalidArguments(op));
    }
    env.rt.dynamic_left.set(left - 1);
    env.rt.meter.compile(rule)?;
    let opts = CompileOptions {
        evaluators: None,
        hash: env.rt.hash,
        max_depth: env.rt.max_depth,
        budget: env.rt.meter.limits(),
    };
    let node = Compiler::for_one_evaluation(&opts)
        .compile(rule, 0)
        .map_err(|_| EvalError::InvalidArguments(op))?;
    env.rt.nesting.set(nesting + 1);
    let out = eval(&node, env).and_then(|v| detach(v, &env.rt.meter));
    env.rt.nesting.set(nesting);
    out
}

/// [`Val::detach`], charging the copy.
fn detach(v: Val<'_>, meter: &Meter) -> Result<Val<'static>, EvalError> {
    match &v {
        Val::Ref(r) => meter.copy(r)?,
        Val::Str(s) => meter.build_text(s.len())?,
        Val::Null | Val::Bool(_) | Val::Num(_) | Val::Owned(_) => {}
    }
    Ok(v.detach())
}

/// `if`: condition/result pairs, then an optional else.
#[inline(never)]
fn eval_if<'a>(args: &'a [Node], env: &Env<'a, '_>) -> Res<'a> {
    let n = args.len();
    let mut i = 0;
    while i + 1 < n {
        if eval(&args[i], env)?.truthy() {
            return clause(&args[i + 1], env);
        }
        i += 2;
    }
    match args.last() {
        Some(last) if n % 2 == 1 => clause(last, env),
        _ => Ok(Val::Null),
    }
}

/// The top-level `if` of a rule bound to its flag's variants: as [`eval`] of the node, except
/// that a constant result with a bound pick comes back as that pick.
#[inline]
pub(crate) fn eval_top_if<'a>(
    args: &'a [Node],
    picks: &[Pick],
    env: &Env<'a, '_>,
) -> Result<Outcome<'a>, EvalError> {
    // The visit of the `if` node itself, as `eval` counts it.
    env.rt.meter.step()?;
    let n = args.len();
    let mut i = 0;
    let chosen = loop {
        if i + 1 >= n {
            if n % 2 == 1 {
                break n - 1;
            }
            return Ok(Outcome::Value(Val::Null));
        }
        let cond = &args[i];
        let truthy = match cond {
            Node::And(items) => all_truthy(items, true, env)?,
            _ => eval(cond, env)?.truthy(),
        };
        if truthy {
            break i + 1;
        }
        i += 2;
    };
    match picks.get(chosen) {
        Some(Pick::Variant(v)) => Ok(Outcome::Variant(*v)),
        Some(Pick::Default) => Ok(Outcome::Default),
        Some(Pick::NoVariant) => Ok(Outcome::NoVariant),
        Some(Pick::Unbound) | None => match args.get(chosen) {
            Some(node) => clause(node, env).map(Outcome::Value),
            None => Ok(Outcome::Value(Val::Null)),
        },
    }
}

/// An `if` branch: a result that is a single-key object is evaluated again as a rule.
#[inline]
fn clause<'a>(node: &'a Node, env: &Env<'a, '_>) -> Res<'a> {
    // A constant is never a single-key object (that would have compiled as an operator).
    if let Node::Const(v) = node {
        return Ok(Val::Ref(v));
    }
    let v = eval(node, env)?;
    match v.view() {
        View::Obj(m) if m.len() == 1 => dynamic(&v.as_json(), env, "if"),
        _ => Ok(v),
    }
}

/// Whether `node` evaluates to a truthy value: [`eval`] then [`Val::truthy`], except that an
/// `and`/`or` is not asked for its value, only whether its operands are truthy (the value of
/// `and` is truthy exactly when every operand is, that of `or` when one is), with the same
/// operands evaluated in the same order and the same visits counted.
#[inline(always)]
fn eval_truthy<'a>(node: &'a Node, env: &Env<'a, '_>) -> Result<bool, EvalError> {
    match node {
        Node::And(args) => all_truthy(args, true, env),
        Node::Or(args) => all_truthy(args, false, env),
        _ => Ok(eval(node, env)?.truthy()),
    }
}

/// [`eval_truthy`] of an `and` (`every`) or an `or` (not `every`) with operands `args`.
#[inline(never)]
fn all_truthy<'a>(args: &'a [Node], every: bool, env: &Env<'a, '_>) -> Result<bool, EvalError> {
    // The visit of the `and`/`or` node itself, as `eval` counts it.
    env.rt.meter.step()?;
    for arg in args {
        // `and` stops at the first falsy operand, `or` at the first truthy one.
        if eval_truthy(arg, env)? != every {
            return Ok(!every);
        }
    }
    // Every operand of an `and` was truthy (none: `null`); no operand of an `or` was.
    Ok(every && !args.is_empty())
}

/// `and`: the first falsy operand, else the last one (`null` for none).
#[inline(never)]
fn eval_and<'a>(args: &'a [Node], env: &Env<'a, '_>) -> Res<'a> {
    let mut last = Val::Null;
    for arg in args {
        last = eval(arg, env)?;
        if !last.truthy() {
            break;
        }
    }
    Ok(last)
}

/// A two-operand comparison.
#[inline]
fn compare(c: Cmp, a: View<'_>, b: View<'_>) -> bool {
    match c {
        Cmp::Eq => equals(a, b),
        Cmp::Ne => !equals(a, b),
        Cmp::StrictEq => strict_equals(a, b),
        Cmp::StrictNe => !strict_equals(a, b),
        Cmp::Lt => less(a, b),
        Cmp::Gt => less(b, a),
        Cmp::Le => less(a, b) || equals(a, b),
        Cmp::Ge => less(b, a) || equals(a, b),
    }
}

/// The three-operand form every comparison accepts: `<` and `<=` test `a < b < c`, `>=` tests
/// `c <= b <= a`, and the others test `c < b < a`.
fn between(op: Op, a: View<'_>, b: View<'_>, c: View<'_>) -> bool {
    let le = |x, y| less(x, y) || equals(x, y);
    match op {
        Op::Cmp(Cmp::Lt) => less(a, b) && less(b, c),
        Op::Cmp(Cmp::Le) => le(a, b) && le(b, c),
        Op::Cmp(Cmp::Ge) => le(c, b) && le(b, a),
        _ => less(c, b) && less(b, a),
    }
}

/// `in`.
#[inline(never)]
fn eval_in<'a>(n: &'a InNode, env: &Env<'a, '_>) -> Res<'a> {
    // A literal string looked for in a context string (`{"in": ["@acme.com", {"var": ..}]}`)
    // skips the general membership dispatch; a constant needle cannot fail, so evaluating the
    // haystack first changes nothing.
    if let (Node::Const(Value::String(needle)), true) = (&n.needle, n.rest.is_empty()) {
        if let Some(h) = top_text(&n.haystack, env)? {
            return Ok(Val::Bool(match &n.finder {
                Some(finder) => finder.found_in(h),
                None => str_contains(h, needle),
            }));
        }
        let haystack = eval(&n.haystack, env)?;
        if let Some(h) = haystack.as_text() {
            return Ok(Val::Bool(match &n.finder {
                Some(finder) => finder.found_in(h),
                None => str_contains(h, needle),
            }));
        }
        if let Some(set) = &n.set {
            return Ok(Val::Bool(set.contains(needle.as_str())));
        }
        return in_check(View::Str(needle), haystack.view(), &env.rt.meter).map(Val::Bool);
    }
    let needle = eval(&n.needle, env)?;
    let haystack = eval(&n.haystack, env)?;
    for extra in n.rest.iter() {
        eval(extra, env)?;
    }
    if let (Some(set), View::Str(s)) = (&n.set, needle.view()) {
        return Ok(Val::Bool(set.contains(s)));
    }
    in_check(needle.view(), haystack.view(), &env.rt.meter).map(Val::Bool)
}

/// Membership: substring for a string haystack (the needle must be a string), element or
/// inclusive numeric range (`[lo, hi]` elements) for an array, `false` otherwise.
fn in_check(needle: View<'_>, haystack: View<'_>, meter: &Meter) -> Result<bool, EvalError> {
    let bad = || EvalError::InvalidArguments("in");
    match haystack {
        View::Str(h) => match needle {
            View::Str(s) => Ok(str_contains(h, s)),
            _ => Err(bad()),
        },
        View::Arr(items) => {
            meter.spend(items.len() as u64)?;
            for item in items {
                match view_of(item) {
                    View::Arr(range) => {
                        let (Some(lo), Some(hi)) = (range.first(), range.get(1)) else {
                            return Err(bad());
                        };
                        let x = needle.arith_number().ok_or_else(bad)?;
                        read_scalar(lo, meter)?;
                        read_scalar(hi, meter)?;
                        let lo = view_of(lo).arith_number().ok_or_else(bad)?;
                        let hi = view_of(hi).arith_number().ok_or_else(bad)?;
                        if x >= lo && hi >= x {
                            return Ok(true);
                        }
                    }
                    element => {
                        read_scalar(item, meter)?;
                        let hit = match needle {
                            View::Num(x) => element.arith_number().ok_or_else(bad)? == x,
                            _ => go_interface_eq(element, needle).ok_or_else(bad)?,
                        };
                        if hit {
                            return Ok(true);
                        }
                    }
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Charges reading a scalar that no node read (an array element): its text, when long.
#[inline]
fn read_scalar(v: &Value, meter: &Meter) -> Result<(), EvalError> {
    match v {
        Value::String(s) => meter.read_str(s),
        _ => Ok(()),
    }
}

/// `var`.
#[inline(never)]
fn eval_var<'a>(v: &'a VarNode, env: &Env<'a, '_>) -> Res<'a> {
    if let (true, Some(outer)) = (v.outer_first, env.outer) {
        env.rt.meter.step()?;
        let found = eval_var(v, outer)?;
        if !found.is_null() {
            return Ok(found);
        }
    }
    let default = match &v.default {
        Some(d) => Some(eval(d, env)?),
        None => None,
    };
    let (found, dynamic_default) = match &v.path {
        VarPath::Static(path) => (lookup(path, env)?, None),
        VarPath::Dynamic(node) => {
            let p = eval(node, env)?;
            resolve(p.view(), env)?
        }
    };
    Ok(found.or(dynamic_default).or(default).unwrap_or(Val::Null))
}

/// Interprets an evaluated `var` argument (or a `missing` entry) and looks it up; also returns
/// the default the argument carries in the `[path, default]` form.
fn resolve<'a>(
    p: View<'_>,
    env: &Env<'a, '_>,
) -> Result<(Option<Val<'a>>, Option<Val<'a>>), EvalError> {
    let bad = || EvalError::InvalidArguments("var");
    Ok(match p {
        View::Null => (lookup(&Path::Null, env)?, None),
        View::Str(s) => (lookup(&parse_path(s), env)?, None),
        View::Num(n) => (lookup(&parse_path(&format_number(n)), env)?, None),
        View::Arr(items) => {
            let Some(first) = items.first() else {
                return Ok((lookup(&Path::Whole, env)?, None));
            };
            let Value::String(s) = first else {
                return Err(bad());
            };
            env.rt.meter.read_str(s)?;
            let default = match items.get(1) {
                Some(d) if items.len() == 2 => {
                    env.rt.meter.copy(d)?;
                    Some(Val::Owned(d.clone()))
                }
                _ => None,
            };
            (lookup(&parse_path(s), env)?, default)
        }
        View::Bool(_) | View::Obj(_) => return Err(bad()),
    })
}

/// Looks a path up in the scope; `None` when it is absent or `null`.
fn lookup<'a>(path: &Path, env: &Env<'a, '_>) -> Result<Option<Val<'a>>, EvalError> {
    let meter = &env.rt.meter;
    Ok(match path {
        Path::Null => match env.data {
            ContextRef::Json(data @ Value::String(s)) => {
                meter.read_str(s)?;
                Some(Val::Ref(data))
            }
            ContextRef::Json(data @ (Value::Bool(_) | Value::Number(_))) => Some(Val::Ref(data)),
            // A built context is an object.
            _ => None,
        },
        Path::Whole => Some(match (env.flagd, env.data) {
            (Some(f), ContextRef::Json(data)) => {
                // The data is copied to add `$flagd` to it.
                meter.copy(data)?;
                meter.build_text(f.key.len())?;
                let mut m = data.as_object().cloned().unwrap_or_default();
                m.insert("$flagd".into(), flagd_object(f));
                Val::Owned(Value::Object(m))
            }
            (flagd, ContextRef::Flat(c)) => {
                // The built context is turned into JSON (and `$flagd` added at the root).
                let data = c.to_json();
                meter.copy(&data)?;
                match (flagd, data) {
                    (Some(f), Value::Object(mut m)) => {
                        meter.build_text(f.key.len())?;
                        m.insert("$flagd".into(), flagd_object(f));
                        Val::Owned(Value::Object(m))
                    }
                    (_, data) => Val::Owned(data),
                }
            }
            (None, ContextRef::Json(data)) => {
                read_scalar(data, meter)?;
                Val::Ref(data)
            }
        }),
        Path::Segs(segs) => walk(segs, env),
        Path::Flagd(segs) => match env.flagd {
            Some(f) => match segs.get(1..).unwrap_or_default() {
                [] => {
                    meter.build_text(f.key.len())?;
                    Some(Val::Owned(flagd_object(f)))
                }
                [k] if &*k.key == "flagKey" => {
                    meter.read_str(f.key)?;
                    Some(Val::Str(f.key))
                }
                // Numbers travel through flagd's engine as float64.
                [k] if &*k.key == "timestamp" => Some(Val::Num(f.timestamp as f64)),
                _ => None,
            },
            None => walk(segs, env),
        },
    })
}

/// The `$flagd` object.
fn flagd_object(f: Flagd<'_>) -> Value {
    let mut m = Map::new();
    m.insert("flagKey".into(), Value::String(f.key.to_owned()));
    m.insert("timestamp".into(), Value::from(f.timestamp));
    Value::Object(m)
}

/// Walks path segments from the scope's data.
#[inline(never)]
fn walk<'a>(segs: &[Seg], env: &Env<'a, '_>) -> Option<Val<'a>> {
    let (first, rest) = segs.split_first()?;
    let mut cur = match env.data {
        ContextRef::Json(data) => match data {
            Value::Object(m) => get_key(m, &first.key)?,
            Value::Array(a) => a.get(first.index?)?,
            _ => return None,
        },
        ContextRef::Flat(c) => match c.lookup(first.probe, &first.key)? {
            Found::Json(v) => v,
            found if rest.is_empty() => return found_val(found, &env.rt.meter),
            _ => return None,
        },
    };
    if cur.is_null() {
        return None;
    }
    for seg in rest {
        cur = match cur {
            Value::Object(m) => get_key(m, &seg.key)?,
            Value::Array(a) => a.get(seg.index?)?,
            _ => return None,
        };
        if cur.is_null() {
            return None;
        }
    }
    if let Value::String(s) = cur {
        // Reported by the next step, or at the end of the evaluation.
        env.rt.meter.read_text(s.len());
    }
    Some(Val::Ref(cur))
}

/// The string a `{"var": "name"}` of one segment reads from a built context, visited and
/// charged as [`eval`] would; `None`, with nothing charged, when the node is something else or
/// finds no string there, so that the caller evaluates it the general way.
#[inline(always)]
fn top_text<'a>(node: &'a Node, env: &Env<'a, '_>) -> Result<Option<&'a str>, EvalError> {
    let (Node::Var(v), ContextRef::Flat(c), None) = (node, env.data, env.outer) else {
        return Ok(None);
    };
    let (VarPath::Static(Path::Segs(segs)), None) = (&v.path, &v.default) else {
        return Ok(None);
    };
    let [seg] = &**segs else {
        return Ok(None);
    };
    let Some(Found::Str(s)) = c.lookup(seg.probe, &seg.key) else {
        return Ok(None);
    };
    env.rt.meter.step()?;
    env.rt.meter.read_text(s.len());
    Ok(Some(s))
}

/// A value found at the top of a built context, as [`walk`] returns it.
#[inline]
fn found_val<'a>(found: Found<'a>, meter: &Meter) -> Option<Val<'a>> {
    Some(match found {
        Found::Null => return None,
        Found::Bool(b) => Val::Bool(b),
        Found::Num(n) => Val::Num(n),
        Found::Str(s) => {
            // Reported by the next step, or at the end of the evaluation.
            meter.read_text(s.len());
            Val::Str(s)
        }
        Found::Json(v) => Val::Ref(v),
    })
}

/// A key's value in an object.
///
/// Contexts are small objects: scanning a few entries, comparing lengths before bytes, costs
/// less than the tree search, whose every step is a full string comparison.
#[inline]
fn get_key<'m>(m: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    if m.len() <= 8 {
        m.iter()
            .find(|(k, _)| k.len() == key.len() && k.as_bytes() == key.as_bytes())
            .map(|(_, v)| v)
    } else {
        m.get(key)
    }
}

/// `sem_ver`.
#[inline(never)]
fn eval_semver<'a>(n: &'a SemVerNode, env: &Env<'a, '_>) -> Res<'a> {
    let actual = eval(&n.args[0], env)?;
    match &n.fixed {
        Some((op, target)) => Ok(match target {
            Some(target) => semver_against(&actual, op, target),
            None => Val::Null,
        }),
        None => {
            let op = eval(&n.args[1], env)?;
            let target = eval(&n.args[2], env)?;
            Ok(semver_values(&actual, &op, &target))
        }
    }
}

/// `sem_ver` over evaluated arguments; `null` for anything invalid.
fn semver_values(actual: &Val<'_>, op: &Val<'_>, target: &Val<'_>) -> Val<'static> {
    let View::Str(op) = op.view() else {
        return Val::Null;
    };
    let target = semver::coerce(&target.as_json()).and_then(|s| semver::Version::parse(&s));
    match target {
        Some(t) => semver_against(actual, op, &t),
        None => Val::Null,
    }
}

/// Compares `actual` with a parsed target.
fn semver_against(actual: &Val<'_>, op: &str, target: &semver::Version) -> Val<'static> {
    let parsed = match actual {
        Val::Ref(Value::String(s)) => semver::Version::parse(s),
        Val::Str(s) => semver::Version::parse(s),
        other => semver::coerce(&other.as_json()).and_then(|s| semver::Version::parse(&s)),
    };
    match parsed.and_then(|a| semver::compare(&a, op, target)) {
        Some(b) => Val::Bool(b),
        None => Val::Null,
    }
}

/// An evaluated distribution entry.
enum EntryVal<'a> {
    /// Variant and optional weight, evaluated separately.
    Pair(Val<'a>, Option<Val<'a>>),
    /// A value that should be a `[variant, weight?]` array.
    Whole(Val<'a>),
}

impl<'a> EntryVal<'a> {
    /// Variant and weight views; an unusable entry yields an invalid variant.
    fn views(&self) -> (View<'_>, Option<View<'_>>) {
        match self {
            EntryVal::Pair(v, w) => (v.view(), w.as_ref().map(Val::view)),
            EntryVal::Whole(v) => match v.view() {
                View::Arr(items) if !items.is_empty() => {
                    (view_of(&items[0]), items.get(1).map(view_of))
                }
                _ => (View::Arr(&[]), None),
            },
        }
    }

    /// The variant, consuming the entry.
    fn into_variant(self) -> Val<'a> {
        match self {
            EntryVal::Pair(v, _) => v,
            EntryVal::Whole(v) => first_element(v),
        }
    }
}

/// The first element of an array value (`null` otherwise).
fn first_element(v: Val<'_>) -> Val<'_> {
    match v {
        Val::Ref(Value::Array(a)) => a.first().map_or(Val::Null, Val::Ref),
        Val::Owned(Value::Array(mut a)) if !a.is_empty() => Val::Owned(a.swap_remove(0)),
        _ => Val::Null,
    }
}

/// What the bucketing argument decided.
enum Bucketing<'a> {
    /// No bucketing is possible: the result is `null`.
    Null,
    /// The hash, and an extra entry to put before the others (a first argument that turned out
    /// to be a distribution entry).
    Hash(u32, Option<Val<'a>>),
}

/// Reads the first argument (absent when it was a literal array) as flagd does.
///
/// A string is the bucketing value. V2: `null` is dropped and any other value is an entry,
/// both falling back to the shorthand key (flag key and targeting key). V3: an array is an
/// entry (shorthand), `null` is refused, and any other value is hashed as CBOR.
fn bucketing<'a>(
    generation: HashGeneration,
    first: Option<Val<'a>>,
    env: &Env<'a, '_>,
) -> Bucketing<'a> {
    // The reference operator requires object data; the root always is one.
    if !env.data.is_object() {
        return Bucketing::Null;
    }
    let (explicit, lead) = match (generation, first) {
        (_, None) => (None, None),
        (_, Some(f)) if matches!(f.view(), View::Str(_)) => (Some(f), None),
        (HashGeneration::V2, Some(f)) if f.is_null() => (None, None),
        (HashGeneration::V3, Some(f)) if f.is_null() => return Bucketing::Null,
        (HashGeneration::V2, Some(f)) => (None, Some(f)),
        (HashGeneration::V3, Some(f)) if matches!(f.view(), View::Arr(_)) => (None, Some(f)),
        (HashGeneration::V3, Some(f)) => (Some(f), None),
    };
    let hash = match explicit {
        Some(v) => match v.view() {
            View::Str(s) => Some(fractional::hash_str(generation, s)),
            _ => {
                let json = v.as_json();
                // Hashing encodes the whole value (reported by the next step, or at the end of
                // the evaluation).
                env.rt.meter.read_value(&json);
                fractional::hash_value(generation, &json)
            }
        },
        None => match (env.flagd, env.data.targeting_key()) {
            (Some(flagd), Some(tk)) if !tk.is_empty() => {
                env.rt.meter.read_text(tk.len());
                Some(fractional::hash_shorthand(generation, flagd.key, tk))
            }
            _ => None,
        },
    };
    match hash {
        Some(h) => Bucketing::Hash(h, lead),
        None => Bucketing::Null,
    }
}

/// `fractional` with a literal argument list.
#[inline(never)]
fn eval_fractional<'a>(n: &'a FractionalNode, env: &Env<'a, '_>) -> Res<'a> {
    if n.first.is_none() && n.entries.is_empty() {
        return Ok(Val::Null);
    }
    // A `cat` bucketing value (the usual "seed + user" form) is hashed piece by piece instead of
    // being built.
    let mut cat_hash = None;
    let first = match &n.first {
        Some(Node::Op(Op::Cat, args)) if matches!(&**args, Args::List(items) if items.len() >= 2) =>
        {
            if let Args::List(items) = &**args {
                cat_hash = Some(hash_cat(n.hash, items, env)?);
            }
            None
        }
        Some(f) => Some(eval(f, env)?),
        None => None,
    };
    let decided = match cat_hash {
        Some(h) if env.data.is_object() => Bucketing::Hash(h, None),
        Some(_) => Bucketing::Null,
        None => bucketing(n.hash, first, env),
    };
    match &n.table {
        // Constant entries: the weights were summed at compile time.
        Some(table) => match decided {
            Bucketing::Null => Ok(Val::Null),
            Bucketing::Hash(h, None) => {
                let Some(i) = table.as_deref().and_then(|cum| fractional::pick(cum, h)) else {
                    return Ok(Val::Null);
                };
                Ok(match n.entries.get(i) {
                    Some(Entry::Pair(Node::Const(v), _)) => Val::Ref(v),
                    Some(Entry::Other(Node::Const(v))) => first_element(Val::Ref(v)),
                    _ => Val::Null,
                })
            }
            Bucketing::Hash(h, Some(lead)) => {
                let mut entries = SmallVec::new();
                entries.push(EntryVal::Whole(lead));
                for e in n.entries.iter() {
                    entries.push(eval_entry(e, env)?);
                }
                Ok(pick_entry(entries, h))
            }
        },
        None => {
            // Every argument is evaluated before the operator runs, so errors inside entries
            // surface even when no bucketing is possible.
            let mut entries: SmallVec<[EntryVal<'a>; 8]> = SmallVec::new();
            for e in n.entries.iter() {
                entries.push(eval_entry(e, env)?);
            }
            match decided {
                Bucketing::Null => Ok(Val::Null),
                Bucketing::Hash(h, lead) => {
                    if let Some(lead) = lead {
                        entries.insert(0, EntryVal::Whole(lead));
                    }
                    Ok(pick_entry(entries, h))
                }
            }
        }
    }
}

/// A top-level `fractional` of constant entries bucketed by the targeting key, in a rule bound
/// to its flag's variants: as [`eval`] of the node, except that an entry with a bound pick
/// comes back as that pick.
#[inline]
pub(crate) fn eval_top_fractional<'a>(
    n: &'a FractionalNode,
    picks: &[Pick],
    env: &Env<'a, '_>,
) -> Result<Outcome<'a>, EvalError> {
    // The visit of the `fractional` node itself, as `eval` counts it.
    env.rt.meter.step()?;
    let (None, Some(Some(cum)), false) = (&n.first, &n.table, n.entries.is_empty()) else {
        return eval_fractional(n, env).map(Outcome::Value);
    };
    let Bucketing::Hash(h, None) = bucketing(n.hash, None, env) else {
        return Ok(Outcome::Value(Val::Null));
    };
    let Some(i) = fractional::pick(cum, h) else {
        return Ok(Outcome::Value(Val::Null));
    };
    Ok(match (picks.get(i), n.entries.get(i)) {
        (Some(Pick::Variant(v)), _) => Outcome::Variant(*v),
        (Some(Pick::Default), _) => Outcome::Default,
        (Some(Pick::NoVariant), _) => Outcome::NoVariant,
        (_, Some(Entry::Pair(Node::Const(v), _))) => Outcome::Value(Val::Ref(v)),
        (_, Some(Entry::Other(Node::Const(v)))) => Outcome::Value(first_element(Val::Ref(v))),
        _ => Outcome::Value(Val::Null),
    })
}

/// The bucketing hash of `{"cat": items}` (two or more operands), computed without building
/// the string.
fn hash_cat<'a>(
    generation: HashGeneration,
    items: &'a [Node],
    env: &Env<'a, '_>,
) -> Result<u32, EvalError> {
    let mut vals: SmallVec<[Val<'a>; 4]> = SmallVec::with_capacity(items.len());
    for item in items {
        vals.push(eval(item, env)?);
    }
    let mut parts: SmallVec<[std::borrow::Cow<'_, str>; 4]> = SmallVec::with_capacity(vals.len());
    for v in &vals {
        parts.push(
            v.view()
                .go_string()
                .ok_or(EvalError::InvalidArguments("cat"))?,
        );
    }
    Ok(fractional::hash_trimmed_concat(generation, &parts))
}

/// Evaluates one distribution entry.
fn eval_entry<'a>(e: &'a Entry, env: &Env<'a, '_>) -> Result<EntryVal<'a>, EvalError> {
    Ok(match e {
        Entry::Pair(v, w) => EntryVal::Pair(
            eval(v, env)?,
            match w {
                Some(w) => Some(eval(w, env)?),
                None => None,
            },
        ),
        Entry::Other(node) => EntryVal::Whole(eval(node, env)?),
    })
}

/// The variant of the entry hash `h` selects, `null` when the distribution is unusable.
fn pick_entry<'a>(entries: SmallVec<[EntryVal<'a>; 8]>, h: u32) -> Val<'a> {
    let cum = fractional::cumulative(entries.iter().map(EntryVal::views));
    match cum.and_then(|cum| fractional::pick(&cum, h)) {
        Some(i) => entries
            .into_iter()
            .nth(i)
            .map_or(Val::Null, EntryVal::into_variant),
        None => Val::Null,
    }
}

/// `fractional` over evaluated arguments (for arguments computed by a single rule).
fn fractional_values<'a>(
    generation: HashGeneration,
    args: SmallVec<[Val<'a>; 4]>,
    env: &Env<'a, '_>,
) -> Res<'a> {
    let mut it = args.into_iter();
    let Some(first) = it.next() else {
        return Ok(Val::Null);
    };
    let mut entries: SmallVec<[EntryVal<'a>; 8]> = SmallVec::new();
    // A literal-array first argument is an entry of the shorthand form.
    let first = if matches!(first.view(), View::Arr(_)) {
        entries.push(EntryVal::Whole(first));
        None
    } else {
        Some(first)
    };
    entries.extend(it.map(EntryVal::Whole));
    if entries.is_empty() && first.is_none() {
        return Ok(Val::Null);
    }
    Ok(match bucketing(generation, first, env) {
        Bucketing::Null => Val::Null,
        Bucketing::Hash(h, lead) => {
            if let Some(lead) = lead {
                entries.insert(0, EntryVal::Whole(lead));
            }
            pick_entry(entries, h)
        }
    })
}

/// `map`, `filter`, `reduce`, `all`, `none`, `some`.
#[inline(never)]
fn eval_iter<'a>(n: &'a IterNode, env: &Env<'a, '_>) -> Res<'a> {
    let name = iter_name(n.kind);
    let bad = || EvalError::InvalidArguments(name);
    match n.kind {
        IterKind::Map | IterKind::Filter if n.arity < 2 => {
            return Ok(Val::Owned(Value::Array(Vec::new())));
        }
        IterKind::Reduce if n.arity < 3 => return Ok(Val::Num(0.0)),
        IterKind::All | IterKind::None | IterKind::Some if n.arity == 0 => return Err(bad()),
        _ => {}
    }
    // `reduce` types its accumulator by the initial value, which must be a scalar.
    let mut acc = match (&n.init, n.kind) {
        (Some(init), IterKind::Reduce) => {
            let v = eval(init, env)?;
            match v.view() {
                View::Bool(b) => Acc::Bool(b),
                View::Num(x) => Acc::Num(x),
                View::Str(s) => {
                    env.rt.meter.build_text(s.len())?;
                    Acc::Str(s.to_owned())
                }
                _ => return Err(bad()),
            }
        }
        _ => Acc::Num(0.0),
    };
    let subject = match &n.subject {
        Subject::Literal(v) => Val::Ref(v),
        Subject::Rule(node) => eval(node, env)?,
        Subject::Absent => Val::Null,
    };
    let items: &[Value] = match subject.view() {
        View::Arr(items) => items,
        View::Null => {
            return Ok(match n.kind {
                IterKind::Map | IterKind::Filter => Val::Owned(Value::Array(Vec::new())),
                IterKind::Reduce => Val::Num(0.0),
                IterKind::All | IterKind::Some => Val::Bool(false),
                IterKind::None => Val::Bool(true),
            });
        }
        other => {
            return match n.kind {
                IterKind::All | IterKind::Some if !other.truthy() => Ok(Val::Bool(false)),
                IterKind::None if !other.truthy() => Ok(Val::Bool(true)),
                _ => Err(bad()),
            };
        }
    };
    match n.kind {
        IterKind::All if items.is_empty() => return Ok(Val::Bool(false)),
        IterKind::Some if items.is_empty() => return Ok(Val::Bool(false)),
        IterKind::None if items.is_empty() => return Ok(Val::Bool(true)),
        _ => {}
    }
    let Some(logic) = &n.logic else {
        return Err(bad());
    };
    if !n.logic_is_rule && !matches!(n.kind, IterKind::Map | IterKind::Filter) {
        return Err(bad());
    }
    let outer = matches!(n.kind, IterKind::Filter | IterKind::None | IterKind::Some).then_some(env);
    let meter = &env.rt.meter;
    let mut out = Vec::new();
    for item in items {
        meter.step()?;
        match n.kind {
            IterKind::Reduce => {
                if item.is_null() {
                    continue;
                }
                // The scope holds copies of the element and of the accumulator.
                meter.copy(item)?;
                if let Acc::Str(s) = &acc {
                    meter.build_text(s.len())?;
                }
                let mut scope = Map::new();
                scope.insert("current".into(), item.clone());
                scope.insert("accumulator".into(), acc.to_value());
                scope.insert("valueType".into(), Value::String(acc.type_name().into()));
                let scope = Value::Object(scope);
                let inner = Env::element(&scope, None, env.rt);
                let v = eval(logic, &inner)?;
                acc = match acc {
                    Acc::Bool(_) => Acc::Bool(v.truthy()),
                    Acc::Num(_) => Acc::Num(v.view().arith_number().ok_or_else(bad)?),
                    Acc::Str(_) => {
                        let s = v.view().go_string().ok_or_else(bad)?;
                        meter.build_text(s.len())?;
                        Acc::Str(s.into_owned())
                    }
                };
            }
            kind => {
                let inner = Env::element(item, outer, env.rt);
                let v = eval(logic, &inner)?;
                match kind {
                    IterKind::Map => out.push(owned(v, meter)?),
                    IterKind::Filter if v.truthy() => {
                        meter.copy(item)?;
                        out.push(item.clone());
                    }
                    IterKind::All if !v.truthy() => return Ok(Val::Bool(false)),
                    IterKind::None if v.truthy() => return Ok(Val::Bool(false)),
                    IterKind::Some if v.truthy() => return Ok(Val::Bool(true)),
                    _ => {}
                }
            }
        }
    }
    Ok(match n.kind {
        IterKind::Map | IterKind::Filter => Val::Owned(Value::Array(out)),
        IterKind::Reduce => match acc {
            Acc::Bool(b) => Val::Bool(b),
            Acc::Num(x) => Val::Num(x),
            Acc::Str(s) => Val::Owned(Value::String(s)),
        },
        IterKind::All | IterKind::None => Val::Bool(true),
        IterKind::Some => Val::Bool(false),
    })
}

/// `reduce`'s accumulator, typed by the initial value.
enum Acc {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Acc {
    fn to_value(&self) -> Value {
        match self {
            Acc::Bool(b) => Value::Bool(*b),
            Acc::Num(x) => super::value::num_value(*x),
            Acc::Str(s) => Value::String(s.clone()),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Acc::Bool(_) => "bool",
            Acc::Num(_) => "number",
            Acc::Str(_) => "string",
        }
    }
}

/// Evaluated arguments of a generic operator.
enum Shape<'a> {
    /// A list (from a literal array, or a rule that produced an array).
    List(SmallVec<[Val<'a>; 4]>),
    /// A single non-array value.
    One(Val<'a>),
}

/// A generic operator: evaluates the arguments, then dispatches on their shape.
#[inline(never)]
fn eval_op<'a>(op: Op, args: &'a Args, env: &Env<'a, '_>) -> Res<'a> {
    let shape = match args {
        Args::List(items) => {
            let mut vals = SmallVec::with_capacity(items.len());
            for item in items.iter() {
                vals.push(eval(item, env)?);
            }
            Shape::List(vals)
        }
        Args::One(node) => {
            let v = eval(node, env)?;
            match v {
                Val::Ref(Value::Array(a)) => {
                    // The elements become arguments no node has read.
                    let meter = &env.rt.meter;
                    meter.spend(a.len() as u64)?;
                    for item in a {
                        read_scalar(item, meter)?;
                    }
                    Shape::List(a.iter().map(Val::Ref).collect())
                }
                Val::Owned(Value::Array(a)) => {
                    env.rt.meter.spend(a.len() as u64)?;
                    Shape::List(a.into_iter().map(Val::Owned).collect())
                }
                v => Shape::One(v),
            }
        }
    };
    apply(op, shape, env)
}

/// Applies a generic operator to evaluated arguments, following the reference engine's order
/// of checks (which decides, for example, that `{"==": [x]}` is the truthiness of `x`).
fn apply<'a>(op: Op, shape: Shape<'a>, env: &Env<'a, '_>) -> Res<'a> {
    let bad = || EvalError::InvalidArguments(op.name());
    match op {
        Op::Missing => return missing(shape, env),
        Op::MissingSome => return missing_some(shape, env),
        Op::Set => return set(shape, &env.rt.meter),
        Op::Cat => return cat(shape, &env.rt.meter),
        Op::Substr => return substr(shape, &env.rt.meter),
        Op::Merge => return merge(shape, &env.rt.meter),
        Op::StartsWith
        | Op::EndsWith
        | Op::SemVer
        | Op::Fractional
        | Op::ContainsAll
        | Op::ContainsAny
        | Op::ContainsNone => return custom(op, shape, env),
        Op::Not => {
            return Ok(Val::Bool(match &shape {
                Shape::List(l) => !l.first().is_some_and(Val::truthy),
                Shape::One(v) => !v.truthy(),
            }));
        }
        _ => {}
    }
    let list = match shape {
        Shape::One(v) => {
            let view = v.view();
            return if view.is_primitive() {
                unary(op, view)
            } else if view.kind() == super::value::Kind::Null && !matches!(op, Op::Max | Op::Min) {
                Ok(Val::Null)
            } else {
                Err(bad())
            };
        }
        Shape::List(l) => l,
    };
    if matches!(op, Op::Max | Op::Min) {
        let mut acc: Option<f64> = None;
        for v in &list {
            let x = v.view().arith_number().ok_or_else(bad)?;
            acc = Some(match acc {
                None => x,
                Some(a) if op == Op::Max => a.max(x),
                Some(a) => a.min(x),
            });
        }
        return Ok(acc.map_or(Val::Null, Val::Num));
    }
    if op != Op::In && list.len() == 1 {
        return unary(op, list[0].view());
    }
    let num = |v: &Val<'_>| v.view().arith_number().ok_or_else(bad);
    match op {
        Op::Ternary => {
            let cond = match list.first().map(Val::view) {
                Some(View::Bool(b)) => b,
                _ => return Err(bad()),
            };
            list.into_iter()
                .nth(if cond { 1 } else { 2 })
                .ok_or_else(bad)
        }
        Op::Add => list
            .iter()
            .try_fold(0.0, |s, v| Ok(s + num(v)?))
            .map(Val::Num),
        Op::Mul => list
            .iter()
            .try_fold(1.0, |s, v| Ok(s * num(v)?))
            .map(Val::Num),
        Op::Sub | Op::Div => {
            let Some((head, tail)) = list.split_first() else {
                return Ok(Val::Num(0.0));
            };
            let mut acc = num(head)?;
            for v in tail {
                let x = num(v)?;
                acc = if op == Op::Sub { acc - x } else { acc / x };
            }
            Ok(Val::Num(acc))
        }
        Op::In => {
            let needle = list.first().ok_or_else(bad)?;
            let haystack = list.get(1).map_or(View::Null, Val::view);
            in_check(needle.view(), haystack, &env.rt.meter).map(Val::Bool)
        }
        Op::Mod => match (list.first(), list.get(1)) {
            (Some(a), Some(b)) => Ok(Val::Num(num(a)? % num(b)?)),
            _ => Err(bad()),
        },
        _ if list.len() == 3 => Ok(Val::Bool(between(
            op,
            list[0].view(),
            list[1].view(),
            list[2].view(),
        ))),
        Op::Cmp(c) => Ok(Val::Bool(match (list.first(), list.get(1)) {
            (Some(a), Some(b)) => compare(c, a.view(), b.view()),
            // Missing operands are `undefined`, which equals and orders against nothing.
            _ => matches!(c, Cmp::Ne | Cmp::StrictNe),
        })),
        _ => Err(bad()),
    }
}

/// An operator applied to a single scalar (or a one-element list).
fn unary<'a>(op: Op, v: View<'_>) -> Res<'a> {
    let bad = || EvalError::InvalidArguments(op.name());
    Ok(match op {
        Op::Add | Op::Mul | Op::Div => Val::Num(v.arith_number().ok_or_else(bad)?),
        Op::Sub => Val::Num(-v.arith_number().ok_or_else(bad)?),
        Op::Abs => Val::Num(v.arith_number().ok_or_else(bad)?.abs()),
        Op::Not => Val::Bool(!v.truthy()),
        // Every other operator answers the truthiness of a lone operand.
        _ => Val::Bool(v.truthy()),
    })
}

/// The flagd operators and the `contains_*` extras over evaluated arguments: bad input gives
/// `null` (or `false` for the extras), never an error.
fn custom<'a>(op: Op, shape: Shape<'a>, env: &Env<'a, '_>) -> Res<'a> {
    let Shape::List(list) = shape else {
        return Ok(
            if matches!(op, Op::ContainsAll | Op::ContainsAny | Op::ContainsNone) {
                Val::Bool(false)
            } else {
                Val::Null
            },
        );
    };
    Ok(match op {
        Op::StartsWith | Op::EndsWith => match list.as_slice() {
            [a, b] => match (a.view(), b.view()) {
                (View::Str(s), View::Str(p)) => Val::Bool(if op == Op::StartsWith {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                }),
                _ => Val::Null,
            },
            _ => Val::Null,
        },
        Op::SemVer => match list.as_slice() {
            [a, o, t] => semver_values(a, o, t),
            _ => Val::Null,
        },
        Op::Fractional => return fractional_values(env.rt.hash, list, env),
        _ => match (list.first().map(Val::view), list.get(1).map(Val::view)) {
            (Some(View::Arr(hay)), Some(View::Arr(needles))) => {
                Val::Bool(contains(op, hay, needles, &env.rt.meter)?)
            }
            _ => Val::Bool(false),
        },
    })
}

/// `contains_all`, `contains_any` or `contains_none` over two arrays: each needle is looked
/// for in the whole haystack, so the cost of one haystack pass is charged per needle.
fn contains(op: Op, hay: &[Value], needles: &[Value], meter: &Meter) -> Result<bool, EvalError> {
    // The answer when no needle decides it.
    let undecided = !matches!(op, Op::ContainsAny);
    if needles.is_empty() {
        return Ok(undecided);
    }
    let mut pass = hay.len() as u64;
    for h in hay {
        if let Value::String(s) = h {
            pass = pass.saturating_add((s.len() / 64) as u64);
        }
    }
    for n in needles {
        meter.spend(pass)?;
        read_scalar(n, meter)?;
        let found = hay.iter().any(|h| equals(view_of(h), view_of(n)));
        match op {
            Op::ContainsAll if !found => return Ok(false),
            Op::ContainsAny if found => return Ok(true),
            Op::ContainsNone if found => return Ok(false),
            _ => {}
        }
    }
    Ok(undecided)
}

/// `missing`: the listed paths that are absent.
fn missing<'a>(shape: Shape<'a>, env: &Env<'a, '_>) -> Res<'a> {
    let list = match shape {
        Shape::One(v) if matches!(v.view(), View::Str(_)) => SmallVec::from_iter([v]),
        Shape::One(_) => return Err(EvalError::InvalidArguments("missing")),
        Shape::List(l) => l,
    };
    let mut out = Vec::new();
    for item in list {
        let (found, default) = resolve(item.view(), env)?;
        if found.is_none() && default.is_none_or(|d| d.is_null()) {
            out.push(owned(item, &env.rt.meter)?);
        }
    }
    Ok(Val::Owned(Value::Array(out)))
}

/// `missing_some`: the absent paths, unless at least the required number is present.
fn missing_some<'a>(shape: Shape<'a>, env: &Env<'a, '_>) -> Res<'a> {
    let bad = || EvalError::InvalidArguments("missing_some");
    let Shape::List(list) = shape else {
        return Err(bad());
    };
    let (Some(need), Some(paths)) = (list.first(), list.get(1)) else {
        return Err(bad());
    };
    let need = go_int(need.view().arith_number().ok_or_else(bad)?);
    let View::Arr(paths) = paths.view() else {
        return Err(bad());
    };
    let meter = &env.rt.meter;
    let mut absent = Vec::new();
    let mut found = 0_i64;
    for p in paths {
        meter.step()?;
        read_scalar(p, meter)?;
        let (hit, default) = resolve(view_of(p), env)?;
        if hit.is_some() || default.is_some_and(|d| !d.is_null()) {
            found += 1;
        } else {
            meter.copy(p)?;
            absent.push(p.clone());
        }
    }
    Ok(Val::Owned(Value::Array(if need > found {
        absent
    } else {
        Vec::new()
    })))
}

/// `set`: a copy of an object with one property replaced.
fn set<'a>(shape: Shape<'a>, meter: &Meter) -> Res<'a> {
    let Shape::List(list) = shape else {
        return Ok(Val::Null);
    };
    let mut it = list.into_iter();
    let Some(object) = it.next() else {
        return Ok(Val::Null);
    };
    let (Some(key), Some(value)) = (it.next(), it.next()) else {
        return Ok(object);
    };
    let View::Obj(m) = object.view() else {
        return Ok(object);
    };
    let View::Str(key) = key.view() else {
        return Err(EvalError::InvalidArguments("set"));
    };
    meter.copy(object.as_json().as_ref())?;
    meter.build_text(key.len())?;
    let value = owned(value, meter)?;
    let mut m = m.clone();
    m.insert(key.to_owned(), value);
    Ok(Val::Owned(Value::Object(m)))
}

/// `cat`: concatenation; with two or more operands the result is whitespace-trimmed.
fn cat<'a>(shape: Shape<'a>, meter: &Meter) -> Res<'a> {
    let bad = || EvalError::InvalidArguments("cat");
    let list = match shape {
        Shape::One(v) if matches!(v.view(), View::Str(_)) => return Ok(v),
        Shape::One(_) => return Err(bad()),
        Shape::List(l) => l,
    };
    match list.len() {
        0 => Ok(Val::Str("")),
        1 => {
            let v = list.into_iter().next().unwrap_or(Val::Null);
            if matches!(v.view(), View::Str(_)) {
                return Ok(v);
            }
            let s = v.view().go_string().ok_or_else(bad)?.into_owned();
            meter.build_text(s.len())?;
            Ok(Val::Owned(Value::String(s)))
        }
        _ => {
            let mut parts: SmallVec<[std::borrow::Cow<'_, str>; 4]> = SmallVec::new();
            let mut len = 0_usize;
            for v in &list {
                let part = v.view().go_string().ok_or_else(bad)?;
                len = len.saturating_add(part.len());
                parts.push(part);
            }
            meter.build_text(len)?;
            Ok(Val::Owned(Value::String(concat_trimmed(&parts))))
        }
    }
}

/// The concatenation of `parts` with surrounding whitespace removed, built in one allocation.
pub(crate) fn concat_trimmed<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.as_ref().len()).sum());
    for p in parts {
        out.push_str(p.as_ref());
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_owned()
    }
}

/// `substr`: by characters, with negative start (from the end) and negative length (an end
/// position counted from the end).
fn substr<'a>(shape: Shape<'a>, meter: &Meter) -> Res<'a> {
    let bad = || EvalError::InvalidArguments("substr");
    let Shape::List(list) = shape else {
        return Err(bad());
    };
    let (Some(s), Some(start)) = (list.first(), list.get(1)) else {
        return Err(bad());
    };
    let s = s.view().go_string().ok_or_else(bad)?;
    let n = s.chars().count() as i64;
    let mut from = go_int(start.view().arith_number().ok_or_else(bad)?);
    if from < 0 {
        from = from.saturating_add(n);
    }
    if from < 0 || from > n {
        meter.build_text(s.len())?;
        return Ok(Val::Owned(Value::String(s.into_owned())));
    }
    let length = match list.get(2) {
        Some(l) if list.len() == 3 => go_int(l.view().arith_number().ok_or_else(bad)?),
        _ => n,
    };
    let mut to = if length < 0 {
        n.saturating_add(length)
    } else {
        from.saturating_add(length)
    };
    if to > n {
        to = n;
    }
    if to < from {
        return Err(bad());
    }
    let out: String = s
        .chars()
        .skip(from as usize)
        .take((to - from) as usize)
        .collect();
    meter.build_text(out.len())?;
    Ok(Val::Owned(Value::String(out)))
}

/// `merge`: one level of array flattening.
fn merge<'a>(shape: Shape<'a>, meter: &Meter) -> Res<'a> {
    let list = match shape {
        Shape::One(v) if v.view().is_primitive() => {
            meter.build_slot()?;
            return Ok(Val::Owned(Value::Array(vec![owned(v, meter)?])));
        }
        Shape::One(_) => return Err(EvalError::InvalidArguments("merge")),
        Shape::List(l) => l,
    };
    meter.build_slot()?;
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match v {
            Val::Ref(Value::Array(a)) => {
                for item in a {
                    meter.copy(item)?;
                }
                out.extend(a.iter().cloned());
            }
            Val::Owned(Value::Array(a)) => {
                meter.spend(a.len() as u64)?;
                out.extend(a);
            }
            other => out.push(owned(other, meter)?),
        }
    }
    Ok(Val::Owned(Value::Array(out)))
}
