//! flagd flag definitions, loaded and validated once and evaluated many times.
//!
//! `flagd-evaluator` is the pure core of flagd-rs: it parses a flag document (JSON or YAML),
//! validates it against the flag-file JSON schema, compiles every targeting rule into a typed
//! tree, and resolves flags against an evaluation context with flagd's exact semantics.
//! It performs no IO and needs no async runtime.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod logic;
pub mod ops;
pub mod patch;
pub mod schema;

mod error;
mod index;
mod load;
mod model;
mod resolve;
#[cfg(test)]
mod testbed;

pub use error::{Diagnostic, LoadError, Severity};
pub use load::{Format, LoadOptions, Loaded, closed, load, load_value, parse, reload};
pub use logic::{
    BudgetLimit, CompileOptions, Context, ContextBuilder, ContextRef, EvalBudget, EvalContext,
    EvalError, Exceeded, Rule, RuleError,
};
pub use model::{Flag, FlagSet, State};
pub use ops::fractional::HashGeneration;
pub use patch::{OverridePatch, PatchError, PatchFailure, PatchField, SplitEntry};
pub use resolve::{
    ErrorCode, ErrorDetail, Evaluation, FlagType, Reason, Resolution, go_float, now_unix_seconds,
    variant_name,
};
