//! Flags: one row per (flag set, key) with its source, type, state, default variant, override
//! (who, when, why), split, rollout step and last revision; filtered by the query, rows
//! replaced live.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Live, UiError, bar, blocking, done_banner, flag_href, flag_type, frame, pct};
use crate::authority::rollout::runner::RolloutStatus;
use crate::authority::{Cursor, EffectiveFlag, RevisionInfo};
use crate::ui::Dashboard;

/// Revisions read to find each flag's latest (flags with an override but no revision among
/// them are looked up one by one).
const RECENT: usize = 200;

/// The Flags filter (the page's query and the live feed's).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Text in the key, flag set or source.
    #[serde(default)]
    pub q: Option<String>,
    /// Only this flag set (`-` for flags in no set).
    #[serde(default)]
    pub set: Option<String>,
    /// Only flags with an override (`1`).
    #[serde(default, rename = "override")]
    pub has_override: Option<String>,
    /// Only flags with a rollout in progress (`1`).
    #[serde(default)]
    pub rollout: Option<String>,
    /// The note of a change just made.
    #[serde(default)]
    pub done: Option<String>,
}

fn on(flag: &Option<String>) -> bool {
    flag.as_deref().is_some_and(|v| !v.is_empty() && v != "0")
}

impl Filter {
    /// Whether `row` passes the filter.
    pub fn matches(&self, row: &Row) -> bool {
        let f = &row.flag;
        if let Some(q) = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let q = q.to_lowercase();
            let hit = f.key.to_lowercase().contains(&q)
                || f.source.to_lowercase().contains(&q)
                || f.flag_set_id
                    .as_deref()
                    .is_some_and(|s| s.to_lowercase().contains(&q));
            if !hit {
                return false;
            }
        }
        if let Some(set) = self.set.as_deref().filter(|s| !s.is_empty()) {
            let wanted = if set == "-" { None } else { Some(set) };
            if f.flag_set_id.as_deref() != wanted {
                return false;
            }
        }
        if on(&self.has_override) && f.override_patch.is_none() {
            return false;
        }
        if on(&self.rollout) && row.rollout.as_ref().is_none_or(|r| r.phase.is_terminal()) {
            return false;
        }
        true
    }
}

/// What one row shows.
#[derive(Debug, Clone)]
pub struct Row {
    /// The flag as served.
    pub flag: EffectiveFlag,
    /// Its latest rollout, if it had one.
    pub rollout: Option<RolloutStatus>,
    /// The latest revision about it.
    pub last: Option<RevisionInfo>,
}

/// Every flag's row. Blocking (reads the history).
pub fn rows(dashboard: &Dashboard) -> Vec<Row> {
    rows_for(dashboard, None)
}

/// The rows of the flags `only` names as (flag set, key), or every row. Blocking.
pub fn rows_for(dashboard: &Dashboard, only: Option<&[(Option<String>, String)]>) -> Vec<Row> {
    let wanted = |f: &EffectiveFlag| {
        only.is_none_or(|keys| {
            keys.iter()
                .any(|(set, key)| *key == f.key && *set == f.flag_set_id)
        })
    };
    let flags: Vec<EffectiveFlag> = dashboard
        .authority
        .effective_flags()
        .into_iter()
        .filter(|f| wanted(f))
        .collect();
    let rollouts: HashMap<String, RolloutStatus> = dashboard
        .rollouts
        .list()
        .into_iter()
        .map(|r| (r.flag.clone(), r))
        .collect();
    let mut last: HashMap<String, RevisionInfo> = HashMap::new();
    if only.is_none()
        && let Ok(page) = dashboard
            .authority
            .revisions_page(None, Cursor::Before(u64::MAX), RECENT)
    {
        for r in page.revisions {
            let mut keys: Vec<&str> = r.changes.iter().map(|c| c.flag.as_str()).collect();
            keys.extend(r.flag.as_deref());
            for key in keys {
                last.insert(key.to_owned(), r.clone());
            }
        }
    }
    for f in &flags {
        // A flag changed just now (a live row) or with an override set long ago.
        let look_up = only.is_some() || f.override_patch.is_some();
        if look_up
            && !last.contains_key(&f.key)
            && let Ok(page) =
                dashboard
                    .authority
                    .revisions_page(Some(&f.key), Cursor::Before(u64::MAX), 1)
            && let Some(r) = page.revisions.into_iter().next()
        {
            last.insert(f.key.clone(), r);
        }
    }
    flags
        .into_iter()
        .map(|flag| Row {
            rollout: rollouts.get(&flag.key).cloned(),
            last: last.get(&flag.key).cloned(),
            flag,
        })
        .collect()
}

/// The DOM id of a flag's row.
pub fn row_id(set: Option<&str>, key: &str) -> String {
    format!("row:{}:{key}", set.unwrap_or(""))
}

/// One row of the table.
pub fn row(r: &Row) -> Markup {
    let f = &r.flag;
    let set = f.flag_set_id.as_deref();
    let shares = f.split.as_deref().map(super::percentages);
    html! {
        tr id=(row_id(set, &f.key)) {
            td data-label="Flag" {
                a.key href=(flag_href(&f.key, set)) { (f.key) }
                br; span.source.muted { (f.source) }
            }
            td data-label="Flag set" { (set.unwrap_or("—")) }
            td data-label="Type" { (flag_type(f.variants.values())) }
            td data-label="State" {
                @match f.state {
                    flagd_evaluator::State::Enabled => span.badge.good { "ENABLED" },
                    flagd_evaluator::State::Disabled => span.badge.bad { "DISABLED" },
                }
            }
            td data-label="Default" { (f.default_variant.as_deref().unwrap_or("—")) }
            td data-label="Override" {
                @if let Some(p) = &f.override_patch {
                    span.badge.warn { "override" }
                    " " span.small { (super::patch_summary(Some(p))) }
                    @if let Some(last) = &r.last {
                        br;
                        span.small.muted { (last.actor) ", " (last.time) @if !last.reason.is_empty() { " — " (last.reason) } }
                    }
                    @if let Some(e) = &f.override_error {
                        br; span.small.bad-text { (e) }
                    }
                } @else { "—" }
            }
            td data-label="Split" {
                @if let Some(s) = &shares { (bar(s)) } @else { "—" }
            }
            td data-label="Rollout" {
                @if let Some(ro) = &r.rollout {
                    a href="/ui/rollouts" {
                        span class={"badge phase-" (ro.phase.as_str())} {
                            (ro.phase.as_str()) " · step " (ro.step) "/" (ro.steps) " · " (pct(ro.weight))
                        }
                    }
                } @else { "—" }
            }
            td data-label="Last revision" {
                @if let Some(last) = &r.last {
                    a href={"/ui/history/" (last.revision)} { "#" (last.revision) }
                } @else { "—" }
            }
        }
    }
}

/// `GET /ui/`.
pub async fn page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(filter): Query<Filter>,
) -> Result<Response, UiError> {
    let d = dashboard.clone();
    let all = blocking(move || Ok(rows(&d))).await?;
    let mut sets: Vec<&str> = all
        .iter()
        .filter_map(|r| r.flag.flag_set_id.as_deref())
        .collect();
    sets.sort_unstable();
    sets.dedup();
    let shown: Vec<&Row> = all.iter().filter(|r| filter.matches(r)).collect();
    let body = html! {
        h1 { "Flags" }
        (done_banner(filter.done.as_deref()))
        form.filters method="get" action="/ui/" role="search" {
            div.field {
                label for="q" { "Search" }
                input #q name="q" type="search" value=(filter.q.as_deref().unwrap_or("")) placeholder="key, set or source";
            }
            div.field {
                label for="set" { "Flag set" }
                select #set name="set" {
                    option value="" { "any" }
                    option value="-" selected[filter.set.as_deref() == Some("-")] { "no set" }
                    @for s in &sets {
                        option value=(s) selected[filter.set.as_deref() == Some(*s)] { (s) }
                    }
                }
            }
            div.check {
                input #has-override name="override" type="checkbox" value="1" checked[on(&filter.has_override)];
                label for="has-override" { "has override" }
            }
            div.check {
                input #in-rollout name="rollout" type="checkbox" value="1" checked[on(&filter.rollout)];
                label for="in-rollout" { "in rollout" }
            }
            button type="submit" { "Filter" }
        }
        p.muted { (shown.len()) " of " (all.len()) " flags" }
        table #flags.cards {
            caption.visually-hidden { "Flags as served, with their overrides, splits and rollouts" }
            thead {
                tr {
                    th scope="col" { "Flag and source" } th scope="col" { "Flag set" }
                    th scope="col" { "Type" } th scope="col" { "State" } th scope="col" { "Default" }
                    th scope="col" { "Override" } th scope="col" { "Split" } th scope="col" { "Rollout" }
                    th scope="col" { "Last revision" }
                }
            }
            tbody {
                @for r in &shown { (row(r)) }
            }
        }
    };
    Ok(frame(&dashboard, "Flags", "flags", Live::Rows, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagd_evaluator::{OverridePatch, SplitEntry, State};

    fn make(key: &str, set: Option<&str>, with_override: bool) -> Row {
        Row {
            flag: EffectiveFlag {
                key: key.into(),
                flag_set_id: set.map(Into::into),
                source: "file:/etc/flags/<prod>.json".into(),
                state: State::Enabled,
                default_variant: Some("on".into()),
                variants: serde_json::from_str(r#"{"on": true, "off": false}"#).unwrap(),
                split: Some(vec![
                    SplitEntry {
                        variant: "on".into(),
                        weight: Some(1),
                    },
                    SplitEntry {
                        variant: "off".into(),
                        weight: Some(3),
                    },
                ]),
                override_patch: with_override.then(|| OverridePatch {
                    state: Some(State::Disabled),
                    ..OverridePatch::default()
                }),
                stale_fields: Vec::new(),
                override_error: None,
            },
            rollout: None,
            last: None,
        }
    }

    #[track_caller]
    fn check(query: &str, r: &Row, expected: bool) {
        let filter: Filter = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(filter.matches(r), expected, "{query}");
    }

    #[test]
    fn filters() {
        let plain = make("new-checkout", None, false);
        let set = make("beta-search", Some("search"), true);
        check("", &plain, true);
        check("q=CHECK", &plain, true);
        check("q=prod", &plain, true);
        check("q=search", &set, true);
        check("q=search", &plain, false);
        check("set=search", &set, true);
        check("set=search", &plain, false);
        check("set=-", &plain, true);
        check("set=-", &set, false);
        check("override=1", &set, true);
        check("override=1", &plain, false);
        check("override=0", &plain, true);
        check("rollout=1", &plain, false);
    }

    #[test]
    fn rows_are_escaped_and_named() {
        let r = make("<script>alert(1)</script>", Some("s"), true);
        let html = row(&r).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;prod&gt;.json"), "{html}");
        assert!(
            html.contains(r#"href="/ui/flags/%3Cscript%3Ealert%281%29%3C%2Fscript%3E?set=s""#),
            "{html}"
        );
        assert!(
            html.contains("on 25%, off 75%") && html.contains("state DISABLED"),
            "{html}"
        );
        assert!(html.contains(">boolean<"), "{html}");
        assert_eq!(row_id(Some("s"), "k"), "row:s:k");
        assert_eq!(row_id(None, "k"), "row::k");
    }
}
