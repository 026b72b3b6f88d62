//! The compiled form of a rule: a tree of typed nodes, one variant per operator family.
//!
//! Operators that hot rules use (`if`, `==`, `in`, `var`, the flagd operators) get their own
//! variants with fixed arity and pre-computed constant parts; everything else goes through
//! [`Node::Op`], which reproduces the reference engine's argument-shape dispatch.

use rustc_hash::FxHashSet;
use serde_json::Value;

use super::EvalError;
use super::context::Probe;
use super::value::Needle;
use crate::ops::fractional::HashGeneration;
use crate::ops::semver::Version;

/// One compiled rule node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A literal, or a folded constant sub-rule.
    Const(Value),
    /// A literal array with rules among its elements; evaluates each element.
    Array(Box<[Node]>),
    /// `var`.
    Var(Box<VarNode>),
    /// `if` with a literal argument list.
    If(Box<[Node]>),
    /// `and` with a literal argument list.
    And(Box<[Node]>),
    /// `or` with a literal argument list.
    Or(Box<[Node]>),
    /// A comparison with exactly two arguments.
    Cmp(Cmp, Box<[Node; 2]>),
    /// `!` with exactly one argument.
    Not(Box<Node>),
    /// `in` with at least two arguments.
    In(Box<InNode>),
    /// `starts_with` with exactly two arguments.
    StartsWith(Box<[Node; 2]>),
    /// `ends_with` with exactly two arguments.
    EndsWith(Box<[Node; 2]>),
    /// `starts_with` or `ends_with` of a rule's value and a literal string.
    Affix(Box<AffixNode>),
    /// `sem_ver` with exactly three arguments.
    SemVer(Box<SemVerNode>),
    /// `fractional` with a literal argument list.
    Fractional(Box<FractionalNode>),
    /// `map`, `filter`, `reduce`, `all`, `none`, `some`.
    Iter(Box<IterNode>),
    /// Any other operator, or a hot one whose arguments have an unusual shape.
    Op(Op, Box<Args>),
    /// A node that reads long text (a long string literal, a long `var` path), charged to the
    /// evaluation's budget by its length on every visit.
    Costly(Box<Costly>),
    /// An operator the engine does not know (including an unresolved `$ref`); fails when
    /// evaluated.
    Unknown(Box<str>),
    /// A sub-rule known at compile time to fail when evaluated.
    Fail(Box<EvalError>),
}

/// The arguments of a generic operator, in the shape the rule wrote them.
#[derive(Debug, Clone)]
pub(crate) enum Args {
    /// A literal array of arguments.
    List(Box<[Node]>),
    /// A single non-array argument: a scalar, or a rule whose result decides the shape.
    One(Node),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Operators evaluated through the generic path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Cmp(Cmp),
    Not,
    NotNot,
    Ternary,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Abs,
    Max,
    Min,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Set,
    ContainsAll,
    ContainsAny,
    ContainsNone,
    StartsWith,
    EndsWith,
    SemVer,
    Fractional,
}

impl Op {
    /// The operator's name in rules.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Cmp(c) => c.name(),
            Op::Not => "!",
            Op::NotNot => "!!",
            Op::Ternary => "?:",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Abs => "abs",
            Op::Max => "max",
            Op::Min => "min",
            Op::In => "in",
            Op::Cat => "cat",
            Op::Substr => "substr",
            Op::Merge => "merge",
            Op::Missing => "missing",
            Op::MissingSome => "missing_some",
            Op::Set => "set",
            Op::ContainsAll => "contains_all",
            Op::ContainsAny => "contains_any",
            Op::ContainsNone => "contains_none",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::SemVer => "sem_ver",
            Op::Fractional => "fractional",
        }
    }

    /// Whether the operator's result depends only on its arguments (so it can be folded).
    pub(crate) fn is_pure(self) -> bool {
        !matches!(self, Op::Missing | Op::MissingSome | Op::Fractional)
    }
}

impl Cmp {
    /// The operator's name in rules.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::StrictEq => "===",
            Cmp::StrictNe => "!==",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// A compiled `var`.
#[derive(Debug, Clone)]
pub(crate) struct VarNode {
    /// Where to look.
    pub(crate) path: VarPath,
    /// The value used when nothing is found (the `["path", default]` form).
    pub(crate) default: Option<Node>,
    /// Whether, inside `filter`/`none`/`some`, the enclosing data is searched first (the
    /// reference engine substitutes such variables before iterating).
    pub(crate) outer_first: bool,
}

/// The path of a `var`.
#[derive(Debug, Clone)]
pub(crate) enum VarPath {
    /// Known at compile time.
    Static(Path),
    /// Computed by a rule at evaluation time.
    Dynamic(Node),
}

/// A resolved variable path.
#[derive(Debug, Clone)]
pub(crate) enum Path {
    /// `{"var": null}`: the data itself when it is a scalar, else `null`.
    Null,
    /// `""`, `[]` or a path of only dots: the whole data.
    Whole,
    /// Dotted segments, empty ones removed.
    Segs(Box<[Seg]>),
    /// Segments starting with `$flagd`, which the root scope serves from the evaluation
    /// context instead of the data.
    Flagd(Box<[Seg]>),
}

/// One path segment: an object key, and the array index it means when the container is an
/// array.
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    /// The key, verbatim.
    pub(crate) key: Box<str>,
    /// The array index (`None` when the key reads as a negative or absurd index).
    pub(crate) index: Option<usize>,
    /// How the key is compared in a built context.
    pub(crate) probe: Probe,
}

/// A compiled `in`.
#[derive(Debug, Clone)]
pub(crate) struct InNode {
    /// What is looked for.
    pub(crate) needle: Node,
    /// Where it is looked for.
    pub(crate) haystack: Node,
    /// Other arguments, evaluated only for their errors.
    pub(crate) rest: Box<[Node]>,
    /// For a large constant array of strings: the strings, for O(1) string lookups.
    pub(crate) set: Option<FxHashSet<Box<str>>>,
    /// For a literal string needle and no other arguments: the needle, prepared for searching.
    pub(crate) finder: Option<Needle>,
}

/// A compiled `starts_with` / `ends_with` whose second argument is a literal string.
#[derive(Debug, Clone)]
pub(crate) struct AffixNode {
    /// The string tested.
    pub(crate) subject: Node,
    /// The literal prefix or suffix.
    pub(crate) affix: Needle,
    /// `starts_with` (else `ends_with`).
    pub(crate) prefix: bool,
}

/// A compiled `sem_ver`.
#[derive(Debug, Clone)]
pub(crate) struct SemVerNode {
    /// `[actual, operator, target]`.
    pub(crate) args: [Node; 3],
    /// When operator and target are constants: the operator and the parsed target (`None` when
    /// the target is not a valid version, so the result is always `null`).
    pub(crate) fixed: Option<(Box<str>, Option<Version>)>,
}

/// A compiled `fractional`.
#[derive(Debug, Clone)]
pub(crate) struct FractionalNode {
    /// Which hash to bucket with.
    pub(crate) hash: HashGeneration,
    /// The first argument when it is not a literal array (a bucketing value, or a rule whose
    /// result decides how it is used).
    pub(crate) first: Option<Node>,
    /// The distribution entries that follow.
    pub(crate) entries: Box<[Entry]>,
    /// When every entry is constant: the cumulative weights of `entries` (`None` when they are
    /// invalid, so the result is always `null`).
    pub(crate) table: Option<Option<Box<[u64]>>>,
}

/// One compiled distribution entry.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A literal `[variant]` or `[variant, weight]`.
    Pair(Node, Option<Node>),
    /// Anything else; evaluated, then read as an entry.
    Other(Node),
}

/// A node and the operations each of its visits costs beyond the first.
#[derive(Debug, Clone)]
pub(crate) struct Costly {
    /// The node.
    pub(crate) node: Node,
    /// The extra operations.
    pub(crate) cost: u64,
}

/// A compiled array operator.
#[derive(Debug, Clone)]
pub(crate) struct IterNode {
    /// Which operator.
    pub(crate) kind: IterKind,
    /// Where the array comes from.
    pub(crate) subject: Subject,
    /// The per-element rule.
    pub(crate) logic: Option<Node>,
    /// Whether the per-element rule was an object (required by `all`, `none`, `some`, `reduce`).
    pub(crate) logic_is_rule: bool,
    /// `reduce`'s initial accumulator.
    pub(crate) init: Option<Node>,
    /// How many arguments the rule gave.
    pub(crate) arity: usize,
}

/// The array operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IterKind {
    Map,
    Filter,
    Reduce,
    All,
    None,
    Some,
}

/// The array an array operator walks.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// A literal array, used as written (the reference engine does not evaluate it).
    Literal(Value),
    /// A rule producing the array.
    Rule(Node),
    /// Anything else: no array.
    Absent,
}

impl Node {
    /// Whether this node is a constant.
    #[inline]
    pub(crate) fn as_const(&self) -> Option<&Value> {
        match self {
            Node::Const(v) => Some(v),
            _ => None,
        }
    }

    /// Whether every direct input of this node is constant and the operator is pure, so that
    /// evaluating it once at compile time gives its value for every context.
    pub(crate) fn is_foldable(&self) -> bool {
        fn all(nodes: &[Node]) -> bool {
            nodes.iter().all(|n| n.as_const().is_some())
        }
        match self {
            Node::Array(items) | Node::If(items) | Node::And(items) | Node::Or(items) => all(items),
            Node::Cmp(_, args) | Node::StartsWith(args) | Node::EndsWith(args) => all(&args[..]),
            Node::Not(arg) => arg.as_const().is_some(),
            Node::In(n) => {
                n.needle.as_const().is_some() && n.haystack.as_const().is_some() && all(&n.rest)
            }
            Node::SemVer(n) => all(&n.args),
            Node::Op(op, args) => {
                op.is_pure()
                    && match &**args {
                        Args::List(items) => all(items),
                        Args::One(arg) => arg.as_const().is_some(),
                    }
            }
            Node::Const(_)
            | Node::Var(_)
            | Node::Fractional(_)
            | Node::Iter(_)
            | Node::Costly(_)
            | Node::Affix(_)
            | Node::Unknown(_)
            | Node::Fail(_) => false,
        }
    }
}
