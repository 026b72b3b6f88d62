//! History: the revisions, newest first, a page at a time; one revision's diff; restoring the
//! override set of a revision after seeing what it changes against what is live.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flagd_evaluator::OverridePatch;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Live, UiError, actor, blocking, change_fields, done, done_banner, frame, layout, patch_summary,
};
use crate::authority::{Cursor, RevisionInfo, RevisionKind};
use crate::ui::Dashboard;

/// Revisions per page.
const PAGE: usize = 25;

/// The History page's query.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    flag: Option<String>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    done: Option<String>,
}

fn kind(r: &RevisionInfo) -> String {
    match r.kind {
        RevisionKind::Set => "set".into(),
        RevisionKind::Clear => "clear".into(),
        RevisionKind::Restore => match r.restored {
            Some(n) => format!("restore #{n}"),
            None => "restore".into(),
        },
        RevisionKind::Rollout => {
            let what = r
                .event
                .as_ref()
                .and_then(|e| e.get("event").or_else(|| e.get("type")))
                .and_then(|v| v.as_str())
                .map(|s| format!("rollout {s}"));
            what.unwrap_or_else(|| "rollout".into())
        }
    }
}

fn flags_of(r: &RevisionInfo) -> String {
    let mut keys: Vec<&str> = r.changes.iter().map(|c| c.flag.as_str()).collect();
    if let Some(f) = r.flag.as_deref()
        && !keys.contains(&f)
    {
        keys.insert(0, f);
    }
    keys.join(", ")
}

fn query_of(flag: Option<&str>, cursor: (&str, u64)) -> String {
    let mut pairs = vec![(cursor.0, cursor.1.to_string())];
    if let Some(f) = flag {
        pairs.push(("flag", f.to_owned()));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `GET /ui/history`.
pub async fn page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, UiError> {
    let cursor = match (query.before, query.after) {
        (_, Some(after)) => Cursor::After(after),
        (Some(before), None) => Cursor::Before(before),
        (None, None) => Cursor::Before(u64::MAX),
    };
    let flag = query.flag.clone().filter(|f| !f.is_empty());
    let d = dashboard.clone();
    let f = flag.clone();
    let page =
        blocking(move || Ok(d.authority.revisions_page(f.as_deref(), cursor, PAGE)?)).await?;
    let newest = page.revisions.last().map(|r| r.revision);
    let oldest = page.revisions.first().map(|r| r.revision);
    let older = match cursor {
        Cursor::Before(_) => page.next.and(oldest),
        Cursor::After(_) => oldest.filter(|o| *o > 1),
    };
    let newer = match cursor {
        Cursor::Before(u64::MAX) => None,
        Cursor::Before(_) => newest.filter(|n| *n < page.head),
        Cursor::After(_) => page.next.and(newest),
    };
    let body = html! {
        h1 { "History" }
        (done_banner(query.done.as_deref()))
        form.filters method="get" action="/ui/history" role="search" {
            div.field {
                label for="flag" { "Flag" }
                input #flag name="flag" type="search" value=(flag.as_deref().unwrap_or("")) placeholder="every flag";
            }
            button type="submit" { "Show" }
        }
        p.muted { "Head: revision " (page.head) }
        @if page.revisions.is_empty() {
            p { "No revisions." }
        } @else {
            table #revisions.cards {
                caption.visually-hidden { "Revisions, newest first" }
                thead { tr {
                    th scope="col" { "Revision" } th scope="col" { "Time" } th scope="col" { "Actor" }
                    th scope="col" { "Action" } th scope="col" { "Flags" } th scope="col" { "Reason" }
                } }
                tbody {
                    @for r in page.revisions.iter().rev() {
                        tr {
                            td data-label="Revision" { a href={"/ui/history/" (r.revision)} { "#" (r.revision) } }
                            td data-label="Time" { (r.time) }
                            td data-label="Actor" { (r.actor) }
                            td data-label="Action" { (kind(r)) }
                            td data-label="Flags" { (flags_of(r)) }
                            td data-label="Reason" { (r.reason) }
                        }
                    }
                }
            }
        }
        nav.paging aria-label="Pages" {
            @if let Some(n) = newer { a href={"/ui/history?" (query_of(flag.as_deref(), ("after", n)))} { "← Newer" } }
            @if let Some(o) = older { a href={"/ui/history?" (query_of(flag.as_deref(), ("before", o)))} { "Older →" } }
        }
    };
    Ok(frame(&dashboard, "History", "history", Live::Page, body).into_response())
}

/// One override change as a before/after table row.
fn change_row(flag: &str, before: Option<&OverridePatch>, after: Option<&OverridePatch>) -> Markup {
    html! {
        tr {
            th scope="row" { (flag) }
            td { del { (patch_summary(before)) } }
            td { ins { (patch_summary(after)) } }
        }
    }
}

fn diff_table(caption: &str, columns: (&str, &str), rows: Markup) -> Markup {
    html! {
        table.diff {
            caption { (caption) }
            thead { tr { th scope="col" { "Flag" } th scope="col" { (columns.0) } th scope="col" { (columns.1) } } }
            tbody { (rows) }
        }
    }
}

/// `GET /ui/history/{n}`.
pub async fn revision(
    State(dashboard): State<Arc<Dashboard>>,
    Path(revision): Path<u64>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, UiError> {
    let d = dashboard.clone();
    let info = blocking(move || {
        d.authority
            .revision(revision)?
            .ok_or_else(|| UiError::not_found(format!("No revision {revision}.")))
    })
    .await?;
    let body = html! {
        p.crumbs { a href="/ui/history" { "History" } " / #" (info.revision) }
        h1 { "Revision " (info.revision) }
        (done_banner(query.done.as_deref()))
        dl.result {
            dt { "Time" } dd { (info.time) }
            dt { "Actor" } dd { (info.actor) }
            dt { "Action" } dd { (kind(&info)) }
            dt { "Flags" } dd { (flags_of(&info)) }
            dt { "Reason" } dd { @if info.reason.is_empty() { "—" } @else { (info.reason) } }
        }
        @if info.changes.is_empty() {
            p { "This revision changed no override." }
        } @else {
            (diff_table("What it changed", ("Before", "After"), html! {
                @for c in &info.changes { (change_row(&c.flag, c.before.as_ref(), c.after.as_ref())) }
            }))
        }
        @if let Some(event) = &info.event {
            details { summary { "Rollout record" } pre.code { code { (super::pretty(event)) } } }
        }
        @if dashboard.writable() {
            p.actions { a.button href={"/ui/history/" (info.revision) "/restore"} { "Restore this revision…" } }
        }
    };
    Ok(frame(
        &dashboard,
        &format!("Revision {revision}"),
        "history",
        Live::Off,
        body,
    )
    .into_response())
}

/// The changes a restore of a recorded override set would make to the live one.
pub fn restore_diff(
    live: &BTreeMap<String, OverridePatch>,
    target: &BTreeMap<String, OverridePatch>,
) -> Vec<(String, Option<OverridePatch>, Option<OverridePatch>)> {
    let mut keys: Vec<&String> = live.keys().chain(target.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| live.get(*k) != target.get(*k))
        .map(|k| (k.clone(), live.get(k).cloned(), target.get(k).cloned()))
        .collect()
}

/// `GET /ui/history/{n}/restore`: the diff against what is live, and the confirmation.
pub async fn confirm_restore(
    State(dashboard): State<Arc<Dashboard>>,
    Path(revision): Path<u64>,
) -> Result<Response, UiError> {
    let d = dashboard.clone();
    let (head, live, target) = blocking(move || {
        let head = d.authority.head();
        let live: BTreeMap<String, OverridePatch> = d.authority.overrides().into_iter().collect();
        Ok((head, live, d.authority.overrides_at(revision)?))
    })
    .await?;
    let diff = restore_diff(&live, &target);
    let body = html! {
        p.crumbs { a href="/ui/history" { "History" } " / " a href={"/ui/history/" (revision)} { "#" (revision) } " / restore" }
        h1 { "Restore revision " (revision) "?" }
        p { "Restoring makes the overrides what they were right after revision " (revision) ", as a new revision (the authority is at " (head) ")." }
        @if diff.is_empty() {
            p.banner.good role="status" { "The live overrides already equal that state: restoring changes nothing." }
        } @else {
            (diff_table("Live now → after the restore", ("Live now", "After the restore"), html! {
                @for (flag, before, after) in &diff { (change_row(flag, before.as_ref(), after.as_ref())) }
            }))
        }
        @if dashboard.writable() {
            form method="post" action={"/ui/history/" (revision) "/restore"} class="stack" {
                input type="hidden" name="head" value=(head);
                (change_fields(&dashboard, "restore"))
                button type="submit" { "Confirm: restore revision " (revision) }
                a href={"/ui/history/" (revision)} { "Cancel" }
            }
        } @else {
            p.muted { "Read-only dashboard." }
        }
    };
    Ok(layout(&dashboard, "Restore", "history", body).into_response())
}

/// `POST /ui/history/{n}/restore`: restores, unless the authority moved on since the
/// confirmation was shown (then the operator sees the new diff first).
pub async fn restore(
    State(dashboard): State<Arc<Dashboard>>,
    Path(revision): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = dashboard.write_form(&headers, &body)?;
    let expected = match form.get("head") {
        Some(h) => Some(
            h.parse::<u64>()
                .map_err(|_| UiError::bad_request("`head` must be a revision number"))?,
        ),
        None => None,
    };
    let (who, why) = (actor(&form), form.get("reason").unwrap_or("").to_owned());
    let d = dashboard.clone();
    let info = blocking(move || Ok(d.authority.restore_if(revision, &who, &why, expected)?))
        .await
        .map_err(|e| {
            if e.status == StatusCode::CONFLICT {
                UiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "The overrides changed since the confirmation was shown ({}). Review the \
                         restore again: /ui/history/{revision}/restore",
                        e.message
                    ),
                )
            } else {
                e
            }
        })?;
    Ok(done(
        &format!("/ui/history/{}", info.revision),
        &format!(
            "Restored revision {revision} as revision {}.",
            info.revision
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_diff_lists_only_what_changes() {
        let p = |w: u32| OverridePatch {
            weights: Some(vec![("a".into(), w), ("b".into(), 100 - w)]),
            ..OverridePatch::default()
        };
        let live = BTreeMap::from([("x".to_owned(), p(10)), ("y".to_owned(), p(20))]);
        let target = BTreeMap::from([("y".to_owned(), p(20)), ("z".to_owned(), p(30))]);
        let diff = restore_diff(&live, &target);
        assert_eq!(
            diff,
            [
                ("x".to_owned(), Some(p(10)), None),
                ("z".to_owned(), None, Some(p(30))),
            ]
        );
        assert!(restore_diff(&live, &live).is_empty());
    }
}
