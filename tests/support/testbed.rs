//! Access to the official flagd testbed: its location and a reader for its Gherkin features.
//!
//! The testbed is never copied into the repository; tests read it from the directory named by
//! `FLAGD_TESTBED` (relative paths are taken from the workspace root), by default
//! `<workspace root>/../shared/testbed`.
//!
//! The reader covers the Gherkin subset the testbed uses (tags, `Feature`, `Background`,
//! `Scenario`, `Scenario Outline` with tagged `Examples`, steps with data tables and doc strings).
//! The `gherkin` crate cannot be used here: it rejects table cells holding a backslash followed by
//! a character other than `n`, `|` or `\`, and the testbed writes JSON cells as `{\"a\": 1}`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the virtual manifest).
pub fn workspace_root() -> PathBuf {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_dir.parent().unwrap_or(tests_dir).to_path_buf()
}

/// The testbed directory: `FLAGD_TESTBED`, or `<workspace root>/../shared/testbed`.
pub fn testbed_dir() -> PathBuf {
    match std::env::var_os("FLAGD_TESTBED") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("..").join("shared").join("testbed"),
    }
}

/// Deep equality of JSON values where numbers compare by value (`1`, `1.0` and `1e0` are equal),
/// as they do in flagd, which reads every number as a float64.
pub fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// One step of a scenario, with `<placeholders>` already replaced for outline examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `Given`, `When`, `Then`, `And`, `But` or `*`.
    pub keyword: String,
    /// The text after the keyword.
    pub text: String,
    /// The data table under the step, row by row, cells unescaped and trimmed.
    pub table: Option<Vec<Vec<String>>>,
    /// The doc string under the step.
    pub docstring: Option<String>,
    /// 1-based line in the feature file.
    pub line: usize,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (line {})", self.keyword, self.text, self.line)
    }
}

/// A tagged block of example rows of a scenario outline.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// Tags written above `Examples:`, without `@`.
    pub tags: Vec<String>,
    /// The name after `Examples:`.
    pub name: String,
    /// Header row followed by data rows.
    pub table: Vec<Vec<String>>,
    /// 1-based line of `Examples:`.
    pub line: usize,
}

/// A scenario or scenario outline as written.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Tags written above the scenario, without `@`.
    pub tags: Vec<String>,
    /// The scenario's name.
    pub name: String,
    /// Its own steps (the background is kept on the feature).
    pub steps: Vec<Step>,
    /// Example blocks; non-empty for an outline.
    pub examples: Vec<Examples>,
    /// 1-based line of the `Scenario` keyword.
    pub line: usize,
}

/// A parsed feature file.
#[derive(Debug, Clone, Default)]
pub struct Feature {
    /// Tags written above `Feature:`, without `@`.
    pub tags: Vec<String>,
    /// The feature's name.
    pub name: String,
    /// The file the feature was read from, if any.
    pub path: Option<PathBuf>,
    /// Steps run before every scenario.
    pub background: Vec<Step>,
    /// Scenarios in file order.
    pub scenarios: Vec<Scenario>,
}

/// One runnable case: a plain scenario, or one example row of an outline.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file.feature:line: scenario name [examples name #row]`, for messages.
    pub name: String,
    /// Feature, scenario and examples tags together, without `@`.
    pub tags: Vec<String>,
    /// Background steps followed by the scenario's steps.
    pub steps: Vec<Step>,
}

impl Case {
    /// Whether the case carries `tag` (given without `@`).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl Feature {
    /// Reads and parses a feature file.
    pub fn read(path: &Path) -> Result<Feature, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut feature = parse_feature(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        feature.path = Some(path.to_path_buf());
        Ok(feature)
    }

    /// Expands the feature into runnable cases: each outline yields one case per example row.
    pub fn cases(&self) -> Vec<Case> {
        let file = self
            .path
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone());
        let mut cases = Vec::new();
        for scenario in &self.scenarios {
            let base_tags: Vec<String> = self.tags.iter().chain(&scenario.tags).cloned().collect();
            if scenario.examples.is_empty() {
                cases.push(Case {
                    name: format!("{file}:{}: {}", scenario.line, scenario.name),
                    tags: base_tags,
                    steps: self
                        .background
                        .iter()
                        .chain(&scenario.steps)
                        .cloned()
                        .collect(),
                });
                continue;
            }
            for examples in &scenario.examples {
                let Some((header, rows)) = examples.table.split_first() else {
                    continue;
                };
                for (i, row) in rows.iter().enumerate() {
                    let bind = |s: &str| substitute(s, header, row);
                    let steps = self
                        .background
                        .iter()
                        .cloned()
                        .chain(scenario.steps.iter().map(|step| Step {
                            keyword: step.keyword.clone(),
                            text: bind(&step.text),
                            table: step.table.as_ref().map(|t| {
                                t.iter()
                                    .map(|r| r.iter().map(|c| bind(c)).collect())
                                    .collect()
                            }),
                            docstring: step.docstring.as_deref().map(bind),
                            line: step.line,
                        }))
                        .collect();
                    let label = if examples.name.is_empty() {
                        format!("#{}", i + 1)
                    } else {
                        format!("{} #{}", examples.name, i + 1)
                    };
                    cases.push(Case {
                        name: format!(
                            "{file}:{}: {} [{label}: {}]",
                            scenario.line,
                            scenario.name,
                            row.join(" | ")
                        ),
                        tags: base_tags.iter().chain(&examples.tags).cloned().collect(),
                        steps,
                    });
                }
            }
        }
        cases
    }
}

/// Replaces every `<name>` of the header with the row's value.
fn substitute(text: &str, header: &[String], row: &[String]) -> String {
    let mut out = text.to_owned();
    for (name, value) in header.iter().zip(row) {
        out = out.replace(&format!("<{name}>"), value);
    }
    out
}

/// Where table rows and steps currently go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    None,
    Feature,
    Background,
    Scenario,
    Examples,
}

const STEP_KEYWORDS: [&str; 6] = ["Given ", "When ", "Then ", "And ", "But ", "* "];

/// Parses the text of a feature file.
pub fn parse_feature(text: &str) -> Result<Feature, String> {
    let mut feature = Feature::default();
    let mut block = Block::None;
    let mut pending_tags: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines.get(i).copied().unwrap_or("").trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |msg: &str| Err(format!("line {line_no}: {msg}: {line:?}"));
        if line.starts_with('@') {
            for tag in line.split_whitespace() {
                if tag.starts_with('#') {
                    break;
                }
                match tag.strip_prefix('@') {
                    Some(t) if !t.is_empty() => pending_tags.push(t.to_owned()),
                    _ => return fail("malformed tag"),
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Feature:") {
            feature.name = rest.trim().to_owned();
            feature.tags = std::mem::take(&mut pending_tags);
            block = Block::Feature;
            continue;
        }
        if line.starts_with("Background:") {
            block = Block::Background;
            continue;
        }
        if let Some(rest) = [
            "Scenario Outline:",
            "Scenario Template:",
            "Scenario:",
            "Example:",
        ]
        .iter()
        .find_map(|k| line.strip_prefix(k))
        {
            feature.scenarios.push(Scenario {
                tags: std::mem::take(&mut pending_tags),
                name: rest.trim().to_owned(),
                line: line_no,
                ..Scenario::default()
            });
            block = Block::Scenario;
            continue;
        }
        if let Some(rest) = ["Examples:", "Scenarios:"]
            .iter()
            .find_map(|k| line.strip_prefix(k))
        {
            let Some(scenario) = feature.scenarios.last_mut() else {
                return fail("Examples outside a scenario");
            };
            scenario.examples.push(Examples {
                tags: std::mem::take(&mut pending_tags),
                name: rest.trim().to_owned(),
                table: Vec::new(),
                line: line_no,
            });
            block = Block::Examples;
            continue;
        }
        if line.starts_with("Rule:") {
            return fail("`Rule` blocks are not supported by this reader");
        }
        if line.starts_with('|') {
            let row = parse_row(line).ok_or_else(|| format!("line {line_no}: bad table row"))?;
            match block {
                Block::Examples => {
                    if let Some(ex) = feature
                        .scenarios
                        .last_mut()
                        .and_then(|s| s.examples.last_mut())
                    {
                        ex.table.push(row);
                    }
                }
                Block::Background | Block::Scenario => {
                    let Some(step) = current_steps(&mut feature, block).and_then(|s| s.last_mut())
                    else {
                        return fail("table without a step");
                    };
                    step.table.get_or_insert_with(Vec::new).push(row);
                }
                Block::None | Block::Feature => return fail("table outside a scenario"),
            }
            continue;
        }
        if line.starts_with("\"\"\"") || line.starts_with("```") {
            let fence = if line.starts_with("```") {
                "```"
            } else {
                "\"\"\""
            };
            let indent = lines
                .get(i - 1)
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or(0);
            let mut body = Vec::new();
            let mut closed = false;
            while i < lines.len() {
                let raw = lines.get(i).copied().unwrap_or("");
                i += 1;
                if raw.trim() == fence {
                    closed = true;
                    break;
                }
                let strip = raw.len() - raw.trim_start().len();
                body.push(raw.get(strip.min(indent)..).unwrap_or(""));
            }
            if !closed {
                return fail("unterminated doc string");
            }
            // A doc string in a feature's description (config.feature holds its option table
            // in one) is description text.
            if matches!(block, Block::None | Block::Feature) {
                continue;
            }
            let Some(step) = current_steps(&mut feature, block).and_then(|s| s.last_mut()) else {
                return fail("doc string without a step");
            };
            step.docstring = Some(body.join("\n"));
            continue;
        }
        if let Some(keyword) = STEP_KEYWORDS.iter().find(|k| line.starts_with(**k)) {
            let step = Step {
                keyword: keyword.trim().to_owned(),
                text: line.get(keyword.len()..).unwrap_or("").trim().to_owned(),
                table: None,
                docstring: None,
                line: line_no,
            };
            match current_steps(&mut feature, block) {
                Some(steps) => steps.push(step),
                None => return fail("step outside a scenario or background"),
            }
            continue;
        }
        // Free text under a header is its description, which carries no meaning for a run.
        let has_steps = match block {
            Block::Scenario => feature
                .scenarios
                .last()
                .is_some_and(|s| !s.steps.is_empty()),
            Block::Background => !feature.background.is_empty(),
            Block::Examples => feature
                .scenarios
                .last()
                .and_then(|s| s.examples.last())
                .is_some_and(|e| !e.table.is_empty()),
            Block::Feature => false,
            Block::None => true,
        };
        if has_steps {
            return fail("unrecognised line");
        }
    }
    if !pending_tags.is_empty() {
        return Err(format!(
            "tags {pending_tags:?} at the end of the file tag nothing"
        ));
    }
    Ok(feature)
}

fn current_steps(feature: &mut Feature, block: Block) -> Option<&mut Vec<Step>> {
    match block {
        Block::Background => Some(&mut feature.background),
        Block::Scenario => feature.scenarios.last_mut().map(|s| &mut s.steps),
        Block::None | Block::Feature | Block::Examples => None,
    }
}

/// Splits `| a | b\|c |` into cells. Gherkin escapes are `\|`, `\\` and `\n`; any other
/// backslash is kept as written.
fn parse_row(line: &str) -> Option<Vec<String>> {
    let inner = line.strip_prefix('|')?;
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars();
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cell.push('|'),
                Some('\\') => cell.push('\\'),
                Some('n') => cell.push('\n'),
                Some(other) => {
                    cell.push('\\');
                    cell.push(other);
                }
                None => cell.push('\\'),
            },
            '|' => {
                cells.push(cell.trim_matches([' ', '\t']).to_owned());
                cell.clear();
                closed = true;
                continue;
            }
            c => cell.push(c),
        }
        closed = false;
    }
    (closed && cell.trim().is_empty()).then_some(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_unknown_escapes() {
        assert_eq!(
            parse_row(r#"| {\"a\": 1} | x\|y | a\\b | \u00e9 |"#),
            Some(vec![
                r#"{\"a\": 1}"#.into(),
                "x|y".into(),
                r"a\b".into(),
                r"\u00e9".into()
            ])
        );
        assert_eq!(parse_row("| a | b"), None);
        assert_eq!(parse_row("| |"), Some(vec![String::new()]));
    }

    #[test]
    fn outlines_expand_with_tags() {
        let text = "@f\nFeature: F\n  Background:\n    Given an evaluator\n\n  @s\n  Scenario Outline: O\n    Given a <x>\n      | k | <x> |\n\n    @e1\n    Examples: one\n      | x |\n      | 1 |\n      | 2 |\n\n    Examples:\n      | x |\n      | 3 |\n\n  Scenario: Plain\n    Then done\n";
        let feature = parse_feature(text).unwrap();
        let cases = feature.cases();
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].tags, ["f", "s", "e1"]);
        assert_eq!(cases[1].steps[1].text, "a 2");
        assert_eq!(
            cases[1].steps[1].table,
            Some(vec![vec!["k".into(), "2".into()]])
        );
        assert_eq!(cases[2].tags, ["f", "s"]);
        assert_eq!(cases[3].steps.len(), 2);
        assert_eq!(cases[3].steps[0].text, "an evaluator");
    }
}
