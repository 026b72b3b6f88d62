//! Rollouts: each flag's latest rollout with its step ladder, its gates and, when it stopped,
//! the banner saying why; the verbs its phase allows, each behind a confirmation page.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Live, UiError, actor, change_fields, done, done_banner, flag_href, frame, layout, pct,
};
use crate::authority::rollout::Phase;
use crate::authority::rollout::api::run_verb;
use crate::authority::rollout::runner::RolloutStatus;
use crate::authority::rollout::runner::{VerbKind, VerbRequest};
use crate::ui::Dashboard;

/// A rollout verb the dashboard offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Skip the rest of the hold.
    Promote,
    /// Stop the hold and the gate checks.
    Pause,
    /// Go on where the hold stopped.
    Resume,
    /// End it, putting the split back.
    Abort,
}

impl Verb {
    fn parse(text: &str) -> Option<Verb> {
        Some(match text {
            "promote" => Verb::Promote,
            "pause" => Verb::Pause,
            "resume" => Verb::Resume,
            "abort" => Verb::Abort,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Promote => "promote",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Abort => "abort",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verb::Promote => "Promote",
            Verb::Pause => "Pause",
            Verb::Resume => "Resume",
            Verb::Abort => "Abort",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Verb::Promote => "promoted",
            Verb::Pause => "paused",
            Verb::Resume => "resumed",
            Verb::Abort => "aborted",
        }
    }

    fn explains(self) -> &'static str {
        match self {
            Verb::Promote => {
                "skips the rest of the current hold: the next step's weights are served now (or the rollout completes after its last step)."
            }
            Verb::Pause => {
                "stops the hold and the gate checks; the split stays where it is until the rollout is resumed or aborted."
            }
            Verb::Resume => {
                "goes on where the hold stopped (a split changed by hand meanwhile is kept); gate counters start over."
            }
            Verb::Abort => {
                "ends the rollout now and puts back the override the flag had before it started."
            }
        }
    }
}

/// The verbs a rollout in `phase` takes.
pub fn allowed(phase: Phase) -> &'static [Verb] {
    match phase {
        Phase::Running => &[Verb::Promote, Verb::Pause, Verb::Abort],
        Phase::Paused => &[Verb::Resume, Verb::Abort],
        Phase::Completed | Phase::RolledBack | Phase::Aborted => &[],
    }
}

fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms.div_ceil(1000))).to_string()
}

fn banner(r: &RolloutStatus) -> Markup {
    let failing: Vec<String> = r
        .gates
        .iter()
        .filter_map(|g| {
            let last = g.last.as_ref()?;
            (last.verdict.as_str() != "pass").then(|| {
                let value = last.value.map(|v| format!(" = {v}")).unwrap_or_default();
                format!("{}{value}: {}", g.name, last.detail)
            })
        })
        .collect();
    let class = match r.phase {
        Phase::RolledBack | Phase::Aborted => "banner bad",
        Phase::Paused => "banner warn",
        _ => "banner good",
    };
    html! {
        @if r.phase != Phase::Running || r.problem.is_some() {
            div class=(class) role="status" {
                strong { (r.phase.as_str().replace('_', " ")) }
                @if let Some(reason) = &r.reason { " — " (reason) }
                @if let Some(p) = &r.problem { br; (p) }
                @if !failing.is_empty() && r.phase != Phase::Completed {
                    ul { @for f in &failing { li { (f) } } }
                }
            }
        }
    }
}

fn rollout(dashboard: &Dashboard, r: &RolloutStatus) -> Markup {
    let base = format!("/ui/rollouts/{}", super::path_segment(&r.flag));
    html! {
        article.rollout id={"rollout-" (r.flag)} aria-labelledby={"h-" (r.flag)} {
            h2 id={"h-" (r.flag)} {
                a href=(flag_href(&r.flag, None)) { (r.flag) }
                " " span class={"badge phase-" (r.phase.as_str())} { (r.phase.as_str()) }
            }
            (banner(r))
            p {
                (r.variant) " from " (r.baseline) ": step " (r.step) " of " (r.steps)
                ", serving " strong { (pct(r.weight)) } " (plan " (pct(r.plan_weight)) ")"
                @if !r.phase.is_terminal() {
                    " · in step since " (r.updated_at)
                    " · hold left " (duration(r.hold_remaining_ms))
                    @if r.phase == Phase::Paused { " (paused)" }
                }
            }
            ol.ladder aria-label="Steps" {
                @for (i, step) in r.plan.steps.iter().enumerate() {
                    @let n = i + 1;
                    @if n == r.step && !r.phase.is_terminal() {
                        li.current aria-current="step" { strong { (pct(step.weight)) } " hold " (humantime::format_duration(step.hold)) " ← now" }
                    } @else if n < r.step || r.phase == Phase::Completed {
                        li.done { (pct(step.weight)) " hold " (humantime::format_duration(step.hold)) " ✓" }
                    } @else {
                        li { (pct(step.weight)) " hold " (humantime::format_duration(step.hold)) }
                    }
                }
            }
            @if !r.gates.is_empty() {
                table.gates {
                    caption { "Gates" }
                    thead { tr {
                        th scope="col" { "Gate" } th scope="col" { "Query / webhook" } th scope="col" { "Condition" }
                        th scope="col" { "Last value" } th scope="col" { "Verdict" } th scope="col" { "When" } th scope="col" { "Failures" }
                    } }
                    tbody {
                        @for g in &r.gates {
                            @let spec = r.plan.gates.iter().find(|s| s.name == g.name);
                            tr {
                                th scope="row" { (g.name) " " span.muted.small { "(" (g.kind) ")" } }
                                td data-label="Query" { code { (spec.and_then(|s| s.query.clone().or_else(|| s.webhook.clone())).unwrap_or_default()) } }
                                td data-label="Condition" { (spec.and_then(|s| s.condition.clone()).unwrap_or_else(|| "—".into())) }
                                td data-label="Last value" { (g.last.as_ref().and_then(|l| l.value).map_or("—".into(), |v| v.to_string())) }
                                td data-label="Verdict" {
                                    @match g.last.as_ref().map(|l| l.verdict.as_str()) {
                                        Some("pass") => span.badge.good { "pass" },
                                        Some("fail") => span.badge.bad { "fail" },
                                        Some(other) => span.badge.warn { (other) },
                                        None => "not checked yet",
                                    }
                                }
                                td data-label="When" { (g.checked_at.as_deref().unwrap_or("—")) }
                                td data-label="Failures" { (g.failures) " / " (g.failure_limit) }
                            }
                        }
                    }
                }
            }
            @if dashboard.writable() && !allowed(r.phase).is_empty() {
                p.actions {
                    @for v in allowed(r.phase) {
                        a class={"button" @if *v == Verb::Abort { " danger" }} href={(base) "/" (v.name())} { (v.label()) "…" }
                    }
                }
            }
        }
    }
}

/// The query of the Rollouts page.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /ui/rollouts`.
pub async fn page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<DoneQuery>,
) -> Response {
    let mut list = dashboard.rollouts.list();
    // Rollouts in progress first, then the most recently changed.
    list.sort_by(|a, b| {
        a.phase
            .is_terminal()
            .cmp(&b.phase.is_terminal())
            .then(b.updated_at.cmp(&a.updated_at))
    });
    let body = html! {
        h1 { "Rollouts" }
        (done_banner(query.done.as_deref()))
        @if list.is_empty() {
            p { "No rollout has been started. Start one with " code { "flagd-rs rollout start" } " or the admin API." }
        }
        @for r in &list { (rollout(&dashboard, r)) }
    };
    frame(&dashboard, "Rollouts", "rollouts", Live::Page, body).into_response()
}

fn verb_of(text: &str) -> Result<Verb, UiError> {
    Verb::parse(text).ok_or_else(|| {
        UiError::not_found(format!(
            "No rollout verb `{text}`: promote, pause, resume or abort."
        ))
    })
}

/// `GET /ui/rollouts/{flag}/{verb}`: what the verb will do, and the form that does it.
pub async fn confirm(
    State(dashboard): State<Arc<Dashboard>>,
    Path((flag, verb)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let verb = verb_of(&verb)?;
    let status = dashboard.rollouts.status(&flag)?;
    let offered = allowed(status.phase).contains(&verb);
    let body = html! {
        p.crumbs { a href="/ui/rollouts" { "Rollouts" } " / " (flag) }
        h1 { (verb.label()) " the rollout of " (flag) "?" }
        (banner(&status))
        p { (verb.label()) " " (verb.explains()) }
        p { "Now: step " (status.step) " of " (status.steps) ", serving " (pct(status.weight)) " of " (status.variant) ", " (status.phase.as_str()) "." }
        @if !offered {
            p.banner.warn role="status" { "A rollout that is " (status.phase.as_str()) " cannot be " (verb.past()) "." }
        } @else if !dashboard.writable() {
            p.muted { "Read-only dashboard." }
        } @else {
            form method="post" action={"/ui/rollouts/" (super::path_segment(&flag)) "/" (verb.name())} class="stack" {
                (change_fields(&dashboard, "verb"))
                button class={@if verb == Verb::Abort { "danger" }} type="submit" { "Confirm: " (verb.label()) }
                a href="/ui/rollouts" { "Cancel" }
            }
        }
    };
    Ok(layout(&dashboard, verb.label(), "rollouts", body).into_response())
}

/// `POST /ui/rollouts/{flag}/{verb}`.
pub async fn act(
    State(dashboard): State<Arc<Dashboard>>,
    Path((flag, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let verb = verb_of(&verb)?;
    let form = dashboard.write_form(&headers, &body)?;
    let (who, why) = (actor(&form), form.get("reason").unwrap_or("").to_owned());
    // The same path as the API's verbs: here when this replica drives rollouts, otherwise
    // through the store to the fleet's controller.
    let request = VerbRequest {
        verb: match verb {
            Verb::Promote => VerbKind::Promote,
            Verb::Pause => VerbKind::Pause,
            Verb::Resume => VerbKind::Resume,
            Verb::Abort => VerbKind::Abort,
        },
        flag: flag.clone(),
        plan: None,
        actor: who,
        reason: why,
    };
    let answer = run_verb(&dashboard.rollouts, request).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if !status.is_success() {
        let message = answer.body["message"]
            .as_str()
            .map_or_else(|| answer.body.to_string(), str::to_owned);
        return Err(UiError::new(status, message));
    }
    Ok(done(
        "/ui/rollouts",
        &format!(
            "{} {}: now {} (revision {}).",
            verb.label(),
            flag,
            answer.body["phase"].as_str().unwrap_or("?"),
            answer.body["revision"].as_u64().unwrap_or(0)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_by_phase() {
        for (phase, verbs) in [
            (Phase::Running, &["promote", "pause", "abort"][..]),
            (Phase::Paused, &["resume", "abort"]),
            (Phase::Completed, &[]),
            (Phase::RolledBack, &[]),
            (Phase::Aborted, &[]),
        ] {
            let names: Vec<_> = allowed(phase).iter().map(|v| v.name()).collect();
            assert_eq!(names, verbs, "{phase:?}");
        }
        assert_eq!(Verb::parse("abort"), Some(Verb::Abort));
        assert_eq!(Verb::parse("start"), None);
        assert_eq!(Verb::Abort.past(), "aborted");
    }
}
