//! Loading a flag document: parse, validate, reject what flagd rejects, compile every rule.
//!
//! A JSON document takes the typed way first ([`typed`]): no tree of the whole document, rules
//! compiled from their own text, flags of a previous load reused when their inputs are the same
//! ([`reuse`]). Whatever that way does not accept as it stands (a schema violation, a flag flagd
//! rejects, a rule that does not compile, anything the typed decode cannot judge exactly), and
//! every YAML document, goes the full way: parse into a value, validate against the schema,
//! check and compile each flag, and report every problem.

mod digest;
pub(crate) mod raw;
mod read;
pub(crate) mod reuse;
mod typed;

pub use raw::closed;
pub(crate) use reuse::Provenance;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Diagnostic, LoadError, Severity, pointer_token};
use crate::intern::Interner;
use crate::logic::{CompileOptions, EvalBudget, Rule};
use crate::metadata::{Metadata, SetMetadata};
use crate::model::{Flag, FlagSet, State};
use crate::ops::fractional::HashGeneration;
use crate::schema::SchemaValidator;

/// The syntax of a flag document. Both carry the same structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Format {
    /// Picks the format from a file name or URL path: `.yaml`/`.yml` is YAML, anything else JSON.
    pub fn from_path(path: &str) -> Format {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Json
        }
    }

    /// Picks the format from an HTTP `Content-Type`, if it names one.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Some(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

/// How to load a document.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// The hash generation `fractional` uses (v3 by default).
    pub hash: HashGeneration,
    /// Reject the document on any schema violation, not only on what flagd rejects.
    pub strict: bool,
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting accepted inside one targeting rule.
    pub max_rule_depth: usize,
    /// The work each evaluation of a targeting rule may do.
    pub budget: EvalBudget,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            hash: HashGeneration::default(),
            strict: false,
            max_document_bytes: 64 * 1024 * 1024,
            max_rule_depth: 64,
            budget: EvalBudget::default(),
        }
    }
}

/// A loaded document and the warnings found while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled flags.
    pub flags: FlagSet,
    /// Schema warnings (never errors: errors reject the document).
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses, validates and compiles a flag document.
///
/// Follows flagd: a document that does not parse, whose structure cannot be decoded, or with a
/// `defaultVariant` that names no variant is rejected as a whole; a schema violation is only a
/// warning, unless `strict` is set.
pub fn load(bytes: &[u8], format: Format, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    load_after(bytes, format, opts, None)
}

/// Like [`load`], for a new version of the document `previous` was loaded from: flags whose
/// inputs are unchanged (the flag's definition bytes, the flag-set metadata, the load options
/// and the `$evaluators` its rule refers to) are taken from `previous` as they are, the same
/// `Arc`, instead of being compiled again. The result is the same as [`load`]'s.
pub fn reload(
    bytes: &[u8],
    format: Format,
    opts: &LoadOptions,
    previous: &FlagSet,
) -> Result<Loaded, LoadError> {
    load_after(bytes, format, opts, Some(previous))
}

fn load_after(
    bytes: &[u8],
    format: Format,
    opts: &LoadOptions,
    previous: Option<&FlagSet>,
) -> Result<Loaded, LoadError> {
    if bytes.len() > opts.max_document_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit: opts.max_document_bytes,
        });
    }
    if format == Format::Json
        && let Some(flags) = typed::load_json(bytes, opts, previous)
    {
        return Ok(Loaded {
            flags,
            diagnostics: Vec::new(),
        });
    }
    let document = parse(bytes, format)?;
    load_value(document, opts)
}

/// Like [`load`], for a document that is already parsed. The document is taken apart as the
/// flags are built, so that its parts are not copied.
pub fn load_value(document: Value, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut diagnostics: Vec<Diagnostic> = SchemaValidator::shared()
        .validate(&document)
        .into_iter()
        .map(|v| {
            let severity = if opts.strict {
                Severity::Error
            } else {
                Severity::Warning
            };
            Diagnostic {
                severity,
                flag: v.flag,
                pointer: v.pointer,
                message: format!("schema: {}", v.message),
            }
        })
        .collect();

    let Value::Object(mut root) = document else {
        diagnostics.push(Diagnostic::error(
            None,
            String::new(),
            "a flag document must be an object",
        ));
        return Err(rejected(diagnostics));
    };

    let set_metadata = match root.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            diagnostics.push(Diagnostic::error(
                None,
                "/metadata".into(),
                "metadata must be an object",
            ));
            Map::new()
        }
    };

    let evaluators = match root.remove("$evaluators") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            for (name, rule) in &m {
                if is_empty_evaluator(rule) {
                    diagnostics.push(Diagnostic::error(
                        None,
                        format!("/$evaluators/{}", pointer_token(name)),
                        format!("evaluator `{name}` is empty"),
                    ));
                }
            }
            m
        }
        Some(_) => {
            diagnostics.push(Diagnostic::error(
                None,
                "/$evaluators".into(),
                "$evaluators must be an object of named rules",
            ));
            Map::new()
        }
    };

    let compile = CompileOptions {
        evaluators: Some(&evaluators),
        hash: opts.hash,
        max_depth: opts.max_rule_depth,
        budget: opts.budget,
    };

    let mut interner = Interner::default();
    let shared = Shared {
        metadata: SetMetadata::from_map(&set_metadata, &mut interner),
        compile: &compile,
    };
    let mut flags = Vec::new();
    match root.remove("flags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            flags.reserve(map.len());
            for (key, def) in map {
                let pointer = format!("/flags/{}", pointer_token(&key));
                if let Some(flag) = decode_flag(
                    &key,
                    def,
                    &pointer,
                    &shared,
                    &mut interner,
                    &mut diagnostics,
                ) {
                    flags.push(flag);
                }
            }
        }
        Some(Value::Array(list)) => {
            flags.reserve(list.len());
            for (i, def) in list.into_iter().enumerate() {
                let pointer = format!("/flags/{i}");
                match def.get("key").and_then(Value::as_str).map(str::to_owned) {
                    Some(key) => {
                        if let Some(flag) = decode_flag(
                            &key,
                            def,
                            &pointer,
                            &shared,
                            &mut interner,
                            &mut diagnostics,
                        ) {
                            flags.push(flag);
                        }
                    }
                    None => diagnostics.push(Diagnostic::error(
                        None,
                        format!("{pointer}/key"),
                        "a flag in the array form needs a string `key`",
                    )),
                }
            }
        }
        Some(_) => diagnostics.push(Diagnostic::error(
            None,
            "/flags".into(),
            "flags must be an object (key -> flag) or an array of flags with `key`",
        )),
    }

    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(rejected(diagnostics));
    }
    Ok(Loaded {
        flags: FlagSet::from_flags(flags, set_metadata, evaluators),
        diagnostics,
    })
}

/// Parses bytes as JSON or YAML into a JSON value.
pub fn parse(bytes: &[u8], format: Format) -> Result<Value, LoadError> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| LoadError::Syntax {
            format,
            message: e.to_string(),
        }),
        Format::Yaml => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(LoadError::Syntax {
                    format,
                    message: "the document is empty".into(),
                });
            }
            serde_yaml_ng::from_slice(bytes).map_err(|e| LoadError::Syntax {
                format,
                message: e.to_string(),
            })
        }
    }
}

fn rejected(mut diagnostics: Vec<Diagnostic>) -> LoadError {
    diagnostics.sort_by_key(|d| std::cmp::Reverse(d.severity));
    LoadError::Rejected { diagnostics }
}

/// flagd refuses an evaluator whose compact JSON is shorter than three characters (`{}`, `[]`).
fn is_empty_evaluator(rule: &Value) -> bool {
    rule.to_string().len() < 3
}

/// What every flag of a document is decoded with.
struct Shared<'a> {
    /// The flag-set metadata, as the flags share it.
    metadata: Option<Arc<SetMetadata>>,
    compile: &'a CompileOptions<'a>,
}

fn decode_flag(
    key: &str,
    def: Value,
    pointer: &str,
    shared: &Shared<'_>,
    interner: &mut Interner,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<Flag>> {
    let errors_before = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let mut error = |at: &str, message: String| {
        diagnostics.push(Diagnostic::error(
            Some(key),
            format!("{pointer}{at}"),
            message,
        ));
    };
    let Value::Object(mut obj) = def else {
        error("", "a flag must be an object".into());
        return None;
    };

    // flagd treats exactly "DISABLED" as disabled and any other string as enabled.
    let state = match obj.get("state") {
        Some(Value::String(s)) if s == "DISABLED" => State::Disabled,
        Some(Value::String(_)) | None | Some(Value::Null) => State::Enabled,
        Some(_) => {
            error("/state", "state must be \"ENABLED\" or \"DISABLED\"".into());
            State::Enabled
        }
    };

    let mut variants: Vec<(Arc<str>, Arc<Value>)> = match obj.remove("variants") {
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (interner.name(&k), interner.value(v)))
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            error(
                "/variants",
                "variants must be an object of name -> value".into(),
            );
            Vec::new()
        }
    };
    variants.sort_by(|a, b| a.0.cmp(&b.0));

    let default_variant = match obj.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => match variants
            .binary_search_by(|(k, _)| (**k).cmp(s.as_str()))
            .ok()
            .and_then(|i| u32::try_from(i).ok())
        {
            Some(i) => Some(i),
            None => {
                error(
                    "/defaultVariant",
                    format!("default variant '{s}' isn't a valid variant of flag '{key}'"),
                );
                None
            }
        },
        Some(_) => {
            error(
                "/defaultVariant",
                "defaultVariant must be a string or null".into(),
            );
            None
        }
    };

    let own = match obj.remove("metadata") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (interner.name(&k), interner.value(v)))
            .collect(),
        Some(_) => {
            error("/metadata", "metadata must be an object".into());
            Vec::new()
        }
    };
    let metadata = Metadata::new(shared.metadata.as_ref(), own);

    let (targeting, targeting_source) = match obj.get("targeting") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(m)) if m.is_empty() => (None, None),
        Some(rule) => match Rule::compile(rule, shared.compile) {
            Ok(compiled) => (Some(compiled), Some(rule.to_string().into_boxed_str())),
            Err(e) => {
                error("/targeting", format!("invalid targeting rule: {e}"));
                (None, None)
            }
        },
    };

    let errors_after = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors_after == errors_before).then(|| {
        Arc::new(Flag {
            key: key.into(),
            state,
            default_variant,
            variants: variants.into_boxed_slice(),
            targeting,
            targeting_source,
            metadata,
            provenance: Default::default(),
            evaluators_digest: 0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_json(doc: &str) -> Result<Loaded, LoadError> {
        load(doc.as_bytes(), Format::Json, &LoadOptions::default())
    }

    #[track_caller]
    fn rejects(doc: &str, flag: Option<&str>, pointer: &str, needle: &str) {
        let err = load_json(doc).expect_err("document should be rejected");
        let diags = err.diagnostics();
        assert!(
            diags.iter().any(|d| d.severity == Severity::Error
                && d.flag.as_deref() == flag
                && d.pointer == pointer
                && d.message.contains(needle)),
            "no error {flag:?} {pointer} {needle:?} in {diags:#?}"
        );
    }

    #[test]
    fn loads_map_and_array_forms() {
        let map = load_json(
            r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}"#,
        )
        .unwrap();
        assert_eq!(map.flags.len(), 1);
        let arr = load_json(r#"{"flags":[{"key":"a","state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}]}"#)
            .unwrap();
        assert_eq!(
            arr.flags.get("a").unwrap().default_variant().unwrap().0,
            "on"
        );
    }

    #[test]
    fn yaml_is_the_same_structure() {
        let yaml = "flags:\n  a:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: 'off'\n";
        let loaded = load(yaml.as_bytes(), Format::Yaml, &LoadOptions::default()).unwrap();
        assert_eq!(
            loaded.flags.get("a").unwrap().default_variant().unwrap().0,
            "off"
        );
    }

    #[test]
    fn rejections_name_flag_and_pointer() {
        rejects(
            r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"off"}}}"#,
            Some("a"),
            "/flags/a/defaultVariant",
            "isn't a valid variant",
        );
        rejects(
            r#"{"flags":{"a":{"state":1,"variants":{"on":true}}}}"#,
            Some("a"),
            "/flags/a/state",
            "state",
        );
        rejects(
            r#"{"flags":{"a/b":{"state":"ENABLED","variants":[]}}}"#,
            Some("a/b"),
            "/flags/a~1b/variants",
            "variants",
        );
        rejects(
            r#"{"flags":[{"state":"ENABLED","variants":{"on":true}}]}"#,
            None,
            "/flags/0/key",
            "key",
        );
        rejects(r#"{"flags":"nope"}"#, None, "/flags", "flags must be");
        rejects(
            r#"{"$evaluators":{"e":{}},"flags":{}}"#,
            None,
            "/$evaluators/e",
            "empty",
        );
        rejects(r#"[1,2]"#, None, "", "must be an object");
    }

    #[test]
    fn syntax_errors_and_limits() {
        assert!(matches!(
            load_json(r#"{"flags": {"#),
            Err(LoadError::Syntax { .. })
        ));
        let small = LoadOptions {
            max_document_bytes: 8,
            ..LoadOptions::default()
        };
        assert!(matches!(
            load(b"{\"flags\":{}}", Format::Json, &small),
            Err(LoadError::TooLarge { .. })
        ));
        assert!(matches!(
            load(b"", Format::Yaml, &LoadOptions::default()),
            Err(LoadError::Syntax { .. })
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(load_json(&deep), Err(LoadError::Syntax { .. })));
    }

    #[test]
    fn schema_violation_is_a_warning_unless_strict() {
        let doc = r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"n":1},"defaultVariant":"on"}}}"#;
        let loaded = load_json(doc).unwrap();
        assert!(
            loaded
                .diagnostics
                .iter()
                .all(|d| d.severity == Severity::Warning)
        );
        assert!(
            !loaded.diagnostics.is_empty(),
            "mixed variant types should warn"
        );
        let strict = LoadOptions {
            strict: true,
            ..LoadOptions::default()
        };
        assert!(load(doc.as_bytes(), Format::Json, &strict).is_err());
    }

    #[test]
    fn metadata_merges_and_sets_flag_set() {
        let doc = r#"{"metadata":{"flagSetId":"set","team":"a"},"flags":{
            "x":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","metadata":{"team":"b"}},
            "y":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on","metadata":{"flagSetId":"other"}}}}"#;
        let loaded = load_json(doc).unwrap();
        let x = loaded.flags.get("x").unwrap();
        assert_eq!(x.metadata().get("team").unwrap(), "b");
        assert_eq!(x.flag_set_id(), Some("set"));
        let y = loaded.flags.get("y").unwrap();
        assert_eq!(y.flag_set_id(), Some("other"));
        assert_eq!(y.state(), State::Disabled);
    }

    #[test]
    fn format_detection() {
        assert_eq!(Format::from_path("/etc/flags.YAML"), Format::Yaml);
        assert_eq!(Format::from_path("https://x/f.yml?x=1"), Format::Yaml);
        assert_eq!(Format::from_path("flags.json"), Format::Json);
        assert_eq!(
            Format::from_content_type("application/x-yaml; charset=utf-8"),
            Some(Format::Yaml)
        );
        assert_eq!(Format::from_content_type("text/html"), None);
    }
}
