//! Compiles JSONLogic (as JSON) into the typed tree of [`super::tree`].
//!
//! Compilation resolves everything that does not depend on the context: `$ref`s are replaced by
//! their compiled evaluators, `var` paths are split, pure operators over constants are folded,
//! and the constant parts of the flagd operators (a `sem_ver` target, a `fractional`
//! distribution) are parsed once.

use std::fmt::Display;

use rustc_hash::FxHashSet;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::budget::{self, EvalBudget};
use super::context::Probe;
use super::eval::{self, Env, Runtime};
use super::input::{RuleInput, Shape};
use super::tree::{
    AffixNode, Args, Cmp, Costly, Entry, FractionalNode, InNode, IterKind, IterNode, Node, Op,
    Path, Seg, SemVerNode, Subject, VarNode, VarPath,
};
use super::value::{Needle, Val, View, format_number, go_int, parse_go_float, view_of};
use super::{CompileOptions, EvalError, RuleError};
use crate::ops::fractional;
use crate::ops::semver;

/// Most nodes one rule may compile to. Only reached by `$ref` chains that multiply (an
/// evaluator referencing another one several times, over and over); real rules stay far below.
pub(crate) const MAX_NODES: usize = 1 << 18;

/// Constant arrays of strings longer than this get a hash set for `in`.
const SET_THRESHOLD: usize = 8;

/// Compilation state for one rule.
pub(crate) struct Compiler<'o> {
    opts: &'o CompileOptions<'o>,
    /// Evaluators being expanded, innermost last, to detect reference cycles (a few deep at
    /// most in real rules: kept in place until then).
    expanding: SmallVec<[&'o str; 4]>,
    /// Nodes created so far.
    nodes: usize,
    /// Whether constant sub-rules are evaluated once, here.
    folding: bool,
}

/// Adds `segment` in front of the JSON pointer of a depth error raised below it.
#[inline(always)]
fn at<T>(r: Result<T, RuleError>, segment: impl Display) -> Result<T, RuleError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(prefixed(e, &segment)),
    }
}

/// [`at`]'s error path, kept out of line.
#[cold]
#[inline(never)]
fn prefixed(e: RuleError, segment: &dyn Display) -> RuleError {
    match e {
        RuleError::TooDeep { max, pointer } => {
            let token = segment.to_string().replace('~', "~0").replace('/', "~1");
            RuleError::TooDeep {
                max,
                pointer: format!("/{token}{pointer}"),
            }
        }
        other => other,
    }
}

impl<'o> Compiler<'o> {
    /// A compiler using `opts`.
    pub(crate) fn new(opts: &'o CompileOptions<'o>) -> Self {
        Compiler {
            opts,
            expanding: SmallVec::new(),
            nodes: 0,
            folding: true,
        }
    }

    /// A compiler for a rule that is evaluated once (a rule read from the context): folding
    /// would only move work out of the evaluation's budget.
    pub(crate) fn for_one_evaluation(opts: &'o CompileOptions<'o>) -> Self {
        Compiler {
            folding: false,
            ..Compiler::new(opts)
        }
    }

    /// [`fold`], when folding.
    fn fold(&self, node: Node) -> Node {
        if self.folding {
            fold(node, self.opts.budget)
        } else {
            node
        }
    }

    fn too_deep(&self) -> RuleError {
        RuleError::TooDeep {
            max: self.opts.max_depth,
            pointer: String::new(),
        }
    }

    fn count(&mut self) -> Result<(), RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(RuleError::TooLarge { max: MAX_NODES });
        }
        Ok(())
    }

    /// Compiles `v`, found `depth` containers deep (the rule itself being at depth 0).
    pub(crate) fn compile<I: RuleInput>(&mut self, v: &I, depth: usize) -> Result<Node, RuleError> {
        self.count()?;
        match v.shape() {
            Shape::Obj(1) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                let Some((key, args)) = v.members().next() else {
                    return Ok(Node::Const(v.to_value()));
                };
                at(self.operator(key, args, depth + 1), key)
            }
            Shape::Obj(_) => {
                // Several keys make a literal; no key makes `{}`, which evaluates to itself.
                self.check_literal(v, depth)?;
                Ok(Node::Const(v.to_value()))
            }
            Shape::Arr(items) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                if !contains_rule(v, self.opts.max_depth.saturating_sub(depth)) {
                    self.check_literal(v, depth)?;
                    return Ok(Node::Const(v.to_value()));
                }
                let nodes = self.list(items, depth + 1)?;
                Ok(self.fold(Node::Array(nodes)))
            }
            Shape::Str(s) => Ok(costly(Node::Const(Value::String(s.to_owned())), s.len())),
            _ => Ok(Node::Const(v.to_value())),
        }
    }

    /// Compiles each element of an argument list.
    fn list<I: RuleInput>(&mut self, items: &[I], depth: usize) -> Result<Box<[Node]>, RuleError> {
        // Sized up front: collecting through `Result` would grow the list and then shrink it.
        let mut nodes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            nodes.push(at(self.compile(item, depth), i)?);
        }
        Ok(nodes.into_boxed_slice())
    }

    /// Rejects literal containers nested deeper than allowed.
    fn check_literal<I: RuleInput>(&self, v: &I, depth: usize) -> Result<(), RuleError> {
        match v.shape() {
            Shape::Arr(items) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                for (i, child) in items.iter().enumerate() {
                    if matches!(child.shape(), Shape::Arr(_) | Shape::Obj(_)) {
                        at(self.check_literal(child, depth + 1), i)?;
                    }
                }
            }
            Shape::Obj(_) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                for (k, child) in v.members() {
                    if matches!(child.shape(), Shape::Arr(_) | Shape::Obj(_)) {
                        at(self.check_literal(child, depth + 1), k)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Compiles `{key: args}`; `depth` is the depth of `args`.
    fn operator<I: RuleInput>(
        &mut self,
        key: &str,
        args: &I,
        depth: usize,
    ) -> Result<Node, RuleError> {
        let op = match key {
            "$ref" => return self.reference(args, depth),
            "var" => return self.var(args, depth),
            "if" => return self.lazy("if", args, depth),
            "and" => return self.lazy("and", args, depth),
            "or" => return self.lazy("or", args, depth),
            "map" => return self.iter(IterKind::Map, args, depth),
            "filter" => return self.iter(IterKind::Filter, args, depth),
            "reduce" => return self.iter(IterKind::Reduce, args, depth),
            "all" => return self.iter(IterKind::All, args, depth),
            "none" => return self.iter(IterKind::None, args, depth),
            "some" => return self.iter(IterKind::Some, args, depth),
            "fractional" => return self.fractional(args, depth),
            "==" => Op::Cmp(Cmp::Eq),
            "!=" => Op::Cmp(Cmp::Ne),
            "===" => Op::Cmp(Cmp::StrictEq),
            "!==" => Op::Cmp(Cmp::StrictNe),
            "<" => Op::Cmp(Cmp::Lt),
            "<=" => Op::Cmp(Cmp::Le),
            ">" => Op::Cmp(Cmp::Gt),
            ">=" => Op::Cmp(Cmp::Ge),
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "?:" => Op::Ternary,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "abs" => Op::Abs,
            "max" => Op::Max,
            "min" => Op::Min,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "merge" => Op::Merge,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "set" => Op::Set,
            "contains_all" => Op::ContainsAll,
            "contains_any" => Op::ContainsAny,
            "contains_none" => Op::ContainsNone,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "sem_ver" => Op::SemVer,
            _ => return Ok(Node::Unknown(key.into())),
        };
        let args = match args.shape() {
            Shape::Arr(items) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                Args::List(self.list(items, depth + 1)?)
            }
            _ => Args::One(self.compile(args, depth)?),
        };
        Ok(self.fold(specialize(op, args)))
    }

    /// Inlines the evaluator `{"$ref": name}` names; a missing one, or one that refers back to
    /// itself, compiles to an unknown operator as the reference engine reports it.
    fn reference<I: RuleInput>(&mut self, args: &I, depth: usize) -> Result<Node, RuleError> {
        let unknown = || Ok(Node::Unknown("$ref".into()));
        let Shape::Str(name) = args.shape() else {
            return unknown();
        };
        let Some((name, rule)) = self.opts.evaluators.and_then(|e| e.get_key_value(name)) else {
            return unknown();
        };
        if self.expanding.contains(&name.as_str()) {
            return unknown();
        }
        self.expanding.push(name);
        // The evaluator takes the place of the reference object, one level up.
        let node = self.compile(rule, depth.saturating_sub(1));
        self.expanding.pop();
        node
    }

    /// `if`, `and`, `or`: arguments are evaluated lazily, from a literal list; anything else
    /// makes the reference engine panic.
    fn lazy<I: RuleInput>(
        &mut self,
        op: &'static str,
        args: &I,
        depth: usize,
    ) -> Result<Node, RuleError> {
        let Shape::Arr(items) = args.shape() else {
            return Ok(Node::Fail(Box::new(EvalError::InvalidArguments(op))));
        };
        if depth >= self.opts.max_depth {
            return Err(self.too_deep());
        }
        let nodes = self.list(items, depth + 1)?;
        let node = match op {
            "and" => Node::And(nodes),
            "or" => Node::Or(nodes),
            _ => Node::If(nodes),
        };
        Ok(self.fold(node))
    }

    /// `var`; a long static path is charged by its length on every lookup.
    fn var<I: RuleInput>(&mut self, args: &I, depth: usize) -> Result<Node, RuleError> {
        let node = self.var_node(args, depth)?;
        Ok(match args.shape() {
            Shape::Str(s) => costly(node, s.len()),
            Shape::Arr(items) => match items.first().map(RuleInput::shape) {
                Some(Shape::Str(s)) => costly(node, s.len()),
                _ => node,
            },
            _ => node,
        })
    }

    /// The node of a `var`.
    fn var_node<I: RuleInput>(&mut self, args: &I, depth: usize) -> Result<Node, RuleError> {
        let fail = || Ok(Node::Fail(Box::new(EvalError::InvalidArguments("var"))));
        let node = match args.shape() {
            Shape::Null => VarNode {
                path: VarPath::Static(Path::Null),
                default: None,
                outer_first: true,
            },
            Shape::Str(s) => VarNode {
                path: VarPath::Static(parse_path(s)),
                default: None,
                outer_first: !s.is_empty() && !s.starts_with('.'),
            },
            Shape::Num(n) => VarNode {
                path: VarPath::Static(parse_path(&format_number(super::value::number_f64(n)))),
                default: None,
                outer_first: true,
            },
            Shape::Arr(items) => {
                if depth >= self.opts.max_depth {
                    return Err(self.too_deep());
                }
                let Some(first) = items.first() else {
                    return Ok(Node::Var(Box::new(VarNode {
                        path: VarPath::Static(Path::Whole),
                        default: None,
                        outer_first: false,
                    })));
                };
                let path = match first.shape() {
                    Shape::Str(s) => VarPath::Static(parse_path(s)),
                    Shape::Obj(1) => VarPath::Dynamic(at(self.compile(first, depth + 1), 0)?),
                    // The reference engine asserts the first element is a string.
                    _ => return fail(),
                };
                let default = match items.get(1) {
                    Some(d) if items.len() == 2 => Some(at(self.compile(d, depth + 1), 1)?),
                    _ => None,
                };
                let all_falsy = items.iter().all(|i| !i.truthy());
                VarNode {
                    path,
                    default,
                    outer_first: !all_falsy,
                }
            }
            Shape::Obj(1) => VarNode {
                path: VarPath::Dynamic(self.compile(args, depth)?),
                default: None,
                outer_first: false,
            },
            Shape::Bool(_) | Shape::Obj(_) => return fail(),
        };
        Ok(Node::Var(Box::new(node)))
    }

    /// `fractional`.
    fn fractional<I: RuleInput>(&mut self, args: &I, depth: usize) -> Result<Node, RuleError> {
        let Shape::Arr(items) = args.shape() else {
            let one = self.compile(args, depth)?;
            return Ok(Node::Op(Op::Fractional, Box::new(Args::One(one))));
        };
        if depth >= self.opts.max_depth {
            return Err(self.too_deep());
        }
        let depth = depth + 1;
        // A literal array first is a distribution (the shorthand form); anything else is the
        // bucketing value or a rule deciding at run time.
        let (first, rest_at) = match items.first() {
            Some(v) if matches!(v.shape(), Shape::Arr(_)) => (None, 0),
            None => (None, 0),
            Some(v) => (Some(at(self.compile(v, depth), 0)?), 1),
        };
        let mut entries = Vec::with_capacity(items.len().saturating_sub(rest_at));
        for (i, item) in items.iter().enumerate().skip(rest_at) {
            let entry = match item.shape() {
                Shape::Arr(pair) if (1..=2).contains(&pair.len()) => {
                    if depth >= self.opts.max_depth {
                        return at(Err(self.too_deep()), i);
                    }
                    let variant = at(at(self.compile(&pair[0], depth + 1), 0), i)?;
                    let weight = match pair.get(1) {
                        Some(w) => Some(at(at(self.compile(w, depth + 1), 1), i)?),
                        None => None,
                    };
                    Entry::Pair(variant, weight)
                }
                _ => Entry::Other(at(self.compile(item, depth), i)?),
            };
            entries.push(entry);
        }
        let table = constant_table(&entries);
        Ok(Node::Fractional(Box::new(FractionalNode {
            hash: self.opts.hash,
            first,
            entries: entries.into_boxed_slice(),
            table,
        })))
    }

    /// `map`, `filter`, `reduce`, `all`, `none`, `some`: their arguments are not evaluated up
    /// front; the per-element rule runs against each element.
    fn iter<I: RuleInput>(
        &mut self,
        kind: IterKind,
        args: &I,
        depth: usize,
    ) -> Result<Node, RuleError> {
        let Shape::Arr(items) = args.shape() else {
            return Ok(Node::Fail(Box::new(EvalError::InvalidArguments(
                iter_name(kind),
            ))));
        };
        if depth >= self.opts.max_depth {
            return Err(self.too_deep());
        }
        let depth = depth + 1;
        let subject = match items.first() {
            Some(v) if matches!(v.shape(), Shape::Arr(_)) => {
                at(self.check_literal(v, depth), 0)?;
                Subject::Literal(v.to_value())
            }
            Some(v) if v.is_object() => Subject::Rule(at(self.compile(v, depth), 0)?),
            _ => Subject::Absent,
        };
        let (logic, logic_is_rule) = match items.get(1) {
            Some(v) => (Some(at(self.compile(v, depth), 1)?), v.is_object()),
            None => (None, false),
        };
        let init = match items.get(2) {
            Some(v) if kind == IterKind::Reduce => Some(at(self.compile(v, depth), 2)?),
            _ => None,
        };
        Ok(Node::Iter(Box::new(IterNode {
            kind,
            subject,
            logic,
            logic_is_rule,
            init,
            arity: items.len(),
        })))
    }
}

/// The name of an array operator.
pub(crate) fn iter_name(kind: IterKind) -> &'static str {
    match kind {
        IterKind::Map => "map",
        IterKind::Filter => "filter",
        IterKind::Reduce => "reduce",
        IterKind::All => "all",
        IterKind::None => "none",
        IterKind::Some => "some",
    }
}

/// Whether `v` contains an object anywhere (an operator, or a literal the engine would still
/// look into). Nesting beyond `depth` levels also answers yes, leaving the depth error to the
/// compiler.
fn contains_rule<I: RuleInput>(v: &I, depth: usize) -> bool {
    match v.shape() {
        Shape::Obj(_) => true,
        Shape::Arr(items) => depth == 0 || items.iter().any(|i| contains_rule(i, depth - 1)),
        _ => false,
    }
}

/// Splits a `var` path into segments as the reference engine walks it.
pub(crate) fn parse_path(s: &str) -> Path {
    let seg = |p: &str| Seg {
        key: p.into(),
        index: segment_index(p),
        probe: Probe::of(p),
    };
    // Built at its final size: most paths are one key.
    let segs: Box<[Seg]> = if !s.contains('.') {
        if s.is_empty() {
            Box::default()
        } else {
            Box::new([seg(s)])
        }
    } else {
        let mut segs = Vec::with_capacity(s.split('.').filter(|p| !p.is_empty()).count());
        segs.extend(s.split('.').filter(|p| !p.is_empty()).map(seg));
        segs.into_boxed_slice()
    };
    match segs.first() {
        None => Path::Whole,
        Some(first) if &*first.key == "$flagd" => Path::Flagd(segs),
        Some(_) => Path::Segs(segs),
    }
}

/// The array index a path segment selects: the engine converts it to a number (0 when it does
/// not read as one) and truncates.
pub(crate) fn segment_index(p: &str) -> Option<usize> {
    // Only a digit, a sign, a point or the start of `inf`/`nan` can begin a number; anything
    // else reads as 0 without a parse.
    if !matches!(
        p.as_bytes().first(),
        Some(b'0'..=b'9' | b'+' | b'-' | b'.' | b'i' | b'I' | b'n' | b'N')
    ) {
        return Some(0);
    }
    let i = go_int(parse_go_float(p).unwrap_or(0.0));
    usize::try_from(i).ok()
}

/// Picks the specialised node for common operators with the usual argument shapes.
fn specialize(op: Op, args: Args) -> Node {
    match (op, args) {
        (Op::Cmp(c), Args::List(items)) if items.len() == 2 => match pair(items) {
            Ok(p) => Node::Cmp(c, p),
            Err(items) => Node::Op(op, Box::new(Args::List(items))),
        },
        (Op::Not, Args::List(items)) if items.len() == 1 => {
            let mut items = items.into_vec();
            match items.pop() {
                Some(arg) => Node::Not(Box::new(arg)),
                None => Node::Op(op, Box::new(Args::List(Box::default()))),
            }
        }
        (Op::In, Args::List(items)) if items.len() >= 2 => {
            let mut it = items.into_vec().into_iter();
            match (it.next(), it.next()) {
                (Some(needle), Some(haystack)) => {
                    let set = haystack.as_const().and_then(string_set);
                    let rest: Box<[Node]> = it.collect();
                    let finder = match (&needle, rest.is_empty()) {
                        (Node::Const(Value::String(s)), true) => Some(Needle::new(s)),
                        _ => None,
                    };
                    Node::In(Box::new(InNode {
                        needle,
                        haystack,
                        rest,
                        set,
                        finder,
                    }))
                }
                _ => Node::Op(op, Box::new(Args::List(Box::default()))),
            }
        }
        (Op::StartsWith, Args::List(items)) if items.len() == 2 => match pair(items) {
            Ok(p) => affix(true, *p),
            Err(items) => Node::Op(op, Box::new(Args::List(items))),
        },
        (Op::EndsWith, Args::List(items)) if items.len() == 2 => match pair(items) {
            Ok(p) => affix(false, *p),
            Err(items) => Node::Op(op, Box::new(Args::List(items))),
        },
        (Op::SemVer, Args::List(items)) if items.len() == 3 => {
            match <Box<[Node; 3]>>::try_from(items) {
                Ok(three) => {
                    let args = *three;
                    let fixed = fixed_semver(&args);
                    Node::SemVer(Box::new(SemVerNode { args, fixed }))
                }
                Err(items) => Node::Op(op, Box::new(Args::List(items))),
            }
        }
        (op, args) => Node::Op(op, Box::new(args)),
    }
}

/// Two nodes as a fixed-size pair.
fn pair(items: Box<[Node]>) -> Result<Box<[Node; 2]>, Box<[Node]>> {
    items.try_into()
}

/// A hash set of the strings of a large constant array made only of strings.
fn string_set(v: &Value) -> Option<FxHashSet<Box<str>>> {
    let Value::Array(items) = v else { return None };
    if items.len() <= SET_THRESHOLD {
        return None;
    }
    items.iter().map(|i| i.as_str().map(Box::from)).collect()
}

/// Parses a constant `sem_ver` operator and target once.
fn fixed_semver(args: &[Node; 3]) -> Option<(Box<str>, Option<semver::Version>)> {
    let Some(Value::String(op)) = args[1].as_const() else {
        return None;
    };
    let target = args[2].as_const()?;
    let version = semver::coerce(target).and_then(|s| semver::Version::parse(&s));
    Some((op.as_str().into(), version))
}

/// The cumulative weights of a distribution whose entries are all constant.
fn constant_table(entries: &[Entry]) -> Option<Option<Box<[u64]>>> {
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Entry::Pair(variant, weight) => {
                let variant = view_of(variant.as_const()?);
                let weight = match weight {
                    Some(w) => Some(view_of(w.as_const()?)),
                    None => None,
                };
                views.push((variant, weight));
            }
            Entry::Other(node) => match view_of(node.as_const()?) {
                View::Arr(items) if !items.is_empty() => {
                    views.push((view_of(&items[0]), items.get(1).map(view_of)));
                }
                _ => return Some(None),
            },
        }
    }
    Some(fractional::cumulative(views.into_iter()).map(Vec::into_boxed_slice))
}

/// `node`, wrapped so that each visit is charged for reading `len` bytes of text when that is
/// long.
fn costly(node: Node, len: usize) -> Node {
    match budget::read_cost(len) {
        0 => node,
        cost => Node::Costly(Box::new(Costly { node, cost })),
    }
}

/// Evaluates `node` once when its value cannot depend on the context, within the budget of one
/// evaluation.
pub(crate) fn fold(node: Node, budget: EvalBudget) -> Node {
    if !node.is_foldable() {
        return node;
    }
    let rt = Runtime::for_folding(budget);
    let empty = Value::Object(Map::new());
    let env = Env::root(&empty, None, &rt);
    let result = eval::eval(&node, &env);
    // A computation too large to fold is left to each evaluation, whose own budget decides.
    if rt.touched_context() || rt.exceeded().is_some() {
        return node;
    }
    match result {
        Ok(v) => match v {
            // Objects may be re-read as rules by `if`, and non-finite numbers have no JSON
            // form; keep those as computations.
            Val::Num(n) if !n.is_finite() => node,
            v if matches!(v.view(), View::Obj(_)) => node,
            v => Node::Const(v.into_value()),
        },
        Err(e) => Node::Fail(Box::new(e)),
    }
}

/// `starts_with` (`prefix`) or `ends_with` over two compiled arguments: a rule's value tested
/// against a literal string gets its own node, everything else the general one.
fn affix(prefix: bool, args: [Node; 2]) -> Node {
    match args {
        [subject, Node::Const(Value::String(affix))] if subject.as_const().is_none() => {
            Node::Affix(Box::new(AffixNode {
                subject,
                affix: Needle::new(&affix),
                prefix,
            }))
        }
        args if prefix => Node::StartsWith(Box::new(args)),
        args => Node::EndsWith(Box::new(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segments of `s` as splitting on every point gives them.
    fn split_path(s: &str) -> Vec<(String, Option<usize>)> {
        s.split('.')
            .filter(|p| !p.is_empty())
            .map(|p| {
                (
                    p.to_owned(),
                    go_int(parse_go_float(p).unwrap_or(0.0)).try_into().ok(),
                )
            })
            .collect()
    }

    #[test]
    fn paths_split_as_every_point_splits_them() {
        for s in [
            "",
            ".",
            "..",
            "a",
            "email",
            ".a",
            "a.",
            "a.b",
            "a..b",
            "a.0.b",
            "$flagd.flagKey",
            "$flagd",
            "0",
            "-1",
            "1e3",
            "+2",
            "inf",
            "NaN",
            "Infinity",
            "nope",
            "é.ü",
        ] {
            let segs: Vec<(String, Option<usize>)> = match parse_path(s) {
                Path::Whole | Path::Null => Vec::new(),
                Path::Segs(segs) | Path::Flagd(segs) => {
                    assert_eq!(segs.len(), split_path(s).len(), "{s}");
                    segs.iter()
                        .map(|seg| {
                            assert_eq!(seg.probe, Probe::of(&seg.key), "{s}");
                            (seg.key.to_string(), seg.index)
                        })
                        .collect()
                }
            };
            assert_eq!(segs, split_path(s), "{s}");
            let flagd = matches!(parse_path(s), Path::Flagd(_));
            assert_eq!(
                flagd,
                s.split('.').find(|p| !p.is_empty()) == Some("$flagd")
            );
        }
    }

    #[test]
    fn a_segment_reads_as_an_index_as_a_parse_reads_it() {
        for p in [
            "",
            "a",
            "x1",
            "0",
            "7",
            "007",
            "1.9",
            "-0",
            "-1",
            "+3",
            ".5",
            "1e2",
            "1E2",
            "inf",
            "-inf",
            "+Infinity",
            "nan",
            "NaN",
            "n",
            "i",
            "In",
            "12345678901234567890",
            "9e99",
            "_1",
            " 1",
            "1 ",
            "é",
        ] {
            let parsed = usize::try_from(go_int(parse_go_float(p).unwrap_or(0.0))).ok();
            assert_eq!(segment_index(p), parsed, "{p:?}");
        }
    }
}
