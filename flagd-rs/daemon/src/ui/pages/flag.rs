//! Flag detail: the file's definition, the override and the effective flag side by side; the
//! configured split against the share actually served; the targeting rule; an evaluate box;
//! the override form.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flagd_evaluator::{Flag, OverridePatch};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Live, UiError, actor, blocking, change_fields, done, done_banner, flag_href, frame,
    patch_summary, pct, percentages, pretty, short, state_name,
};
use crate::authority::EffectiveFlag;
use crate::selector::Selector;
use crate::ui::Dashboard;
use crate::ui::live::Share;

/// The detail page's query.
#[derive(Debug, Default, Deserialize)]
pub struct FlagQuery {
    /// The flag set, when the key is in several.
    #[serde(default)]
    set: Option<String>,
    /// The evaluate box's context (JSON object).
    #[serde(default)]
    context: Option<String>,
    /// The note of a change just made.
    #[serde(default)]
    done: Option<String>,
}

fn selector(set: Option<&str>) -> Selector {
    match set {
        Some(s) => Selector::FlagSet(s.into()),
        None => Selector::All,
    }
}

/// What the evaluate box answers.
#[derive(Debug, PartialEq)]
pub struct Evaluated {
    /// The value, as JSON (`None`: no value).
    pub value: Option<Value>,
    /// The variant.
    pub variant: Option<String>,
    /// The reason.
    pub reason: &'static str,
    /// The error code, if any.
    pub error: Option<&'static str>,
}

/// Evaluates `flag` in `context` (a JSON object; the static `-X` context is added as the
/// servers add it) with the evaluator the servers use. No impression is counted, so the
/// served share stays what clients were served.
pub fn evaluate(dashboard: &Dashboard, flag: &Flag, context: &str) -> Result<Evaluated, String> {
    let request: Map<String, Value> = match serde_json::from_str::<Value>(context) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(
                "the context must be a JSON object, e.g. {\"targetingKey\": \"user-1\"}".into(),
            );
        }
        Err(e) => return Err(format!("the context is not valid JSON: {e}")),
    };
    let context = crate::context::assemble_from(request, &dashboard.context, None);
    let evaluation = flag.evaluate_with(|| &context, flagd_evaluator::now_unix_seconds());
    Ok(Evaluated {
        value: evaluation.value.cloned(),
        variant: evaluation.variant.map(str::to_owned),
        reason: evaluation.reason.as_str(),
        error: evaluation.error.map(|e| e.as_str()),
    })
}

/// The three columns' rows: (field, file, override, effective).
/// A split as "variant weight / variant weight" (a bare variant weighs 1).
fn split_text(split: &[flagd_evaluator::SplitEntry]) -> String {
    split
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.variant,
                e.weight.map_or("1".into(), |w| w.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn comparison(
    file: Option<&Flag>,
    patch: Option<&OverridePatch>,
    eff: &EffectiveFlag,
    file_split: Option<String>,
) -> Vec<(&'static str, String, String, String)> {
    let dash = || "—".to_owned();
    vec![
        (
            "State",
            file.map_or_else(dash, |f| state_name(f.state()).to_owned()),
            patch
                .and_then(|p| p.state)
                .map_or_else(dash, |s| state_name(s).to_owned()),
            state_name(eff.state).to_owned(),
        ),
        (
            "Default variant",
            file.and_then(|f| f.default_variant())
                .map_or_else(dash, |(n, _)| n.to_owned()),
            patch
                .and_then(|p| p.default_variant.clone())
                .unwrap_or_else(dash),
            eff.default_variant.clone().unwrap_or_else(dash),
        ),
        (
            "Split weights",
            file_split.unwrap_or_else(dash),
            patch
                .and_then(|p| p.weights.as_ref())
                .map_or_else(dash, |w| {
                    w.iter()
                        .map(|(n, w)| format!("{n} {w}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                }),
            eff.split.as_deref().map_or_else(dash, split_text),
        ),
    ]
}

fn share_cell(share: Option<&Share>, variant: &str) -> Markup {
    let Some(share) = share else {
        return html! { "—" };
    };
    let total = share.total();
    let n = share
        .counts
        .iter()
        .find(|(v, _)| v == variant)
        .map_or(0, |(_, n)| *n);
    html! {
        @if total == 0 { "no evaluations" } @else {
            (pct(n as f64 * 100.0 / total as f64)) " " span.muted.small { "(" (n) ")" }
        }
    }
}

/// The column heading of a served-share window: `last minute`, or the shorter span the
/// samples cover while the daemon is young.
fn window_label(share: Option<&Share>, asked: Duration, name: &str) -> String {
    match share {
        Some(s) if s.span + crate::ui::live::SAMPLE_EVERY / 2 < asked => {
            format!(
                "Served, last {} s (since sampling began)",
                s.span.as_secs().max(1)
            )
        }
        _ => format!("Served, {name}"),
    }
}

/// `GET /ui/flags/{key}`.
pub async fn page(
    State(dashboard): State<Arc<Dashboard>>,
    Path(key): Path<String>,
    Query(query): Query<FlagQuery>,
) -> Result<Response, UiError> {
    let d = dashboard.clone();
    let (k, set) = (key.clone(), query.set.clone());
    let (eff, file) = blocking(move || {
        let eff = d
            .authority
            .effective_flags()
            .into_iter()
            .filter(|f| f.key == k)
            .find(|f| set.is_none() || f.flag_set_id == set)
            .ok_or_else(|| UiError::not_found(format!("No flag '{k}' is served.")))?;
        // The file's definition: the document as loaded, before overrides.
        let snapshot = d.authority.store().snapshot_full();
        let file = snapshot
            .get(&k, &selector(eff.flag_set_id.as_deref()))
            .and_then(|r| d.authority.store().defined_document(r.priority as usize))
            .map(|doc| (doc.get(&k).cloned(), doc.evaluators().clone()));
        Ok((eff, file))
    })
    .await?;
    let set = eff.flag_set_id.as_deref();
    let snapshot = dashboard.authority.store().snapshot_full();
    let served = snapshot.get(&key, &selector(set)).map(|r| r.flag.clone());
    let (file_flag, evaluators) = match file {
        Some((f, e)) => (f, e),
        None => (None, Map::new()),
    };
    let file_split = file_flag
        .as_ref()
        .and_then(|f| f.fractional_split(&evaluators).ok())
        .map(|s| split_text(&s));
    let rows = comparison(
        file_flag.as_ref(),
        eff.override_patch.as_ref(),
        &eff,
        file_split,
    );
    let minute = dashboard.served.share(&key, Duration::from_secs(60));
    let hour = dashboard.served.share(&key, Duration::from_secs(3600));
    let evaluated = match (&served, query.context.as_deref()) {
        (Some(flag), Some(ctx)) if !ctx.trim().is_empty() => Some(evaluate(&dashboard, flag, ctx)),
        _ => None,
    };
    let rule = served
        .as_ref()
        .and_then(|f| f.targeting_source())
        .map(|src| {
            serde_json::from_str::<Value>(src).map_or_else(|_| src.to_owned(), |v| pretty(&v))
        });
    let here = flag_href(&key, set);
    let post_base = format!("/ui/flags/{}", super::path_segment(&key));
    let set_query = set
        .map(|s| {
            format!(
                "?{}",
                serde_urlencoded::to_string([("set", s)]).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let body = html! {
        p.crumbs { a href="/ui/" { "Flags" } " / " (key) @if let Some(s) = set { " (" (s) ")" } }
        h1 { (key) }
        (done_banner(query.done.as_deref()))
        p.muted { "Source " span.source { (eff.source) } }
        @if let Some(e) = &eff.override_error { p.banner.warn role="status" { "Override fields not applied: " (e) } }
        section aria-labelledby="layers" {
            h2 #layers { "File → override → effective" }
            table.compare {
                thead { tr { th scope="col" { "Field" } th scope="col" { "File" } th scope="col" { "Override" } th scope="col" { "Effective" } } }
                tbody {
                    @for (field, f, o, e) in &rows {
                        tr {
                            th scope="row" { (field) }
                            td data-label="File" { (f) }
                            td data-label="Override" { (o) }
                            td data-label="Effective" { strong { (e) } }
                        }
                    }
                }
            }
            h3 { "Variants" }
            dl.variants {
                @for (name, value) in &eff.variants {
                    dt { (name) } dd { code { (short(value)) } }
                }
            }
        }
        section aria-labelledby="served" {
            h2 #served { "Configured split vs served" }
            @if let Some(split) = &eff.split {
                table {
                    thead { tr { th scope="col" { "Variant" } th scope="col" { "Configured" } th scope="col" { (window_label(minute.as_ref(), Duration::from_secs(60), "last minute")) }
                        th scope="col" { (window_label(hour.as_ref(), Duration::from_secs(3600), "last hour")) } } }
                    tbody {
                        @for (variant, configured) in percentages(split) {
                            tr {
                                th scope="row" { (variant) }
                                td data-label="Configured" { (pct(configured)) }
                                td data-label="Last minute" { (share_cell(minute.as_ref(), &variant)) }
                                td data-label="Last hour" { (share_cell(hour.as_ref(), &variant)) }
                            }
                        }
                    }
                }
                p.muted.small {
                    "Served shares count the evaluations clients were answered with (the impression \
                     counters, sampled every " (crate::ui::live::SAMPLE_EVERY.as_secs()) " s); \
                     the evaluate box below does not count."
                }
            } @else {
                p { "This flag has no single fractional split." }
            }
        }
        section aria-labelledby="rule" {
            h2 #rule { "Targeting" }
            @if let Some(rule) = &rule { pre.code { code { (rule) } } } @else { p { "No targeting rule: the default variant is served." } }
        }
        section aria-labelledby="evaluate" {
            h2 #evaluate { "Evaluate" }
            form method="get" action=(here) class="stack" {
                @if let Some(s) = set { input type="hidden" name="set" value=(s); }
                label for="context" { "Evaluation context (JSON object)" }
                textarea #context name="context" rows="4" spellcheck="false" { (query.context.as_deref().unwrap_or("{\"targetingKey\": \"user-1\"}")) }
                button type="submit" { "Evaluate" }
            }
            @match &evaluated {
                Some(Ok(r)) => {
                    dl.result #evaluation {
                        dt { "Value" } dd { code { (r.value.as_ref().map_or("—".to_owned(), short)) } }
                        dt { "Variant" } dd { (r.variant.as_deref().unwrap_or("—")) }
                        dt { "Reason" } dd { (r.reason) }
                        @if let Some(e) = r.error { dt { "Error" } dd { (e) } }
                    }
                },
                Some(Err(e)) => { p.banner.bad role="alert" { (e) } },
                None => {},
            }
        }
        section aria-labelledby="override" {
            h2 #override { "Override" }
            p { "Current override: " strong { (patch_summary(eff.override_patch.as_ref())) } }
            @if dashboard.writable() {
                form method="post" action={(post_base) "/override" (set_query)} class="stack" {
                    label for="state" { "State" }
                    select #state name="state" {
                        option value="" { "unchanged" }
                        option value="ENABLED" { "ENABLED" }
                        option value="DISABLED" { "DISABLED" }
                    }
                    label for="default-variant" { "Default variant" }
                    select #default-variant name="defaultVariant" {
                        option value="" { "unchanged" }
                        @for name in eff.variants.keys() { option value=(name) { (name) } }
                    }
                    @if let Some(split) = &eff.split {
                        fieldset {
                            legend { "Split weights (leave all empty to keep them)" }
                            @for e in split {
                                label for={"w-" (e.variant)} { (e.variant) }
                                input id={"w-" (e.variant)} name={"w_" (e.variant)} type="number" min="0" step="1" inputmode="numeric" placeholder=(e.weight.map_or("1".into(), |w| w.to_string()));
                            }
                        }
                    }
                    (change_fields(&dashboard, "set"))
                    button type="submit" { "Set override" }
                }
                @if eff.override_patch.is_some() {
                    form method="post" action={(post_base) "/clear" (set_query)} class="stack" {
                        (change_fields(&dashboard, "clear"))
                        button.danger type="submit" { "Clear override" }
                    }
                }
            } @else {
                p.muted { "Read-only dashboard: overrides are changed with the admin API, the CLI, or a dashboard started with --ui readwrite." }
            }
        }
    };
    Ok(frame(&dashboard, &key, "flags", Live::Page, body).into_response())
}

/// The override a form asks for.
pub fn patch_from(form: &crate::ui::access::Form) -> Result<OverridePatch, UiError> {
    let state = match form.get("state") {
        None => None,
        Some("ENABLED") => Some(flagd_evaluator::State::Enabled),
        Some("DISABLED") => Some(flagd_evaluator::State::Disabled),
        Some(other) => return Err(UiError::bad_request(format!("unknown state `{other}`"))),
    };
    let mut weights = Vec::new();
    for (variant, text) in form.with_prefix("w_") {
        if text.is_empty() {
            continue;
        }
        let w: u32 = text.parse().map_err(|_| {
            UiError::bad_request(format!(
                "the weight of `{variant}` must be a whole number, got `{text}`"
            ))
        })?;
        weights.push((variant.to_owned(), w));
    }
    Ok(OverridePatch {
        state,
        default_variant: form.get("defaultVariant").map(str::to_owned),
        weights: (!weights.is_empty()).then_some(weights),
    })
}

/// `POST /ui/flags/{key}/override`.
pub async fn set_override(
    State(dashboard): State<Arc<Dashboard>>,
    Path(key): Path<String>,
    Query(query): Query<FlagQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = dashboard.write_form(&headers, &body)?;
    let patch = patch_from(&form)?;
    if patch.is_empty() {
        return Err(UiError::bad_request(
            "The override sets nothing: choose a state, a default variant or weights.",
        ));
    }
    let (who, why) = (actor(&form), form.get("reason").unwrap_or("").to_owned());
    let d = dashboard.clone();
    let k = key.clone();
    let info = blocking(move || Ok(d.authority.set_override(&k, patch, &who, &why, None)?)).await?;
    Ok(done(
        &flag_href(&key, query.set.as_deref()),
        &format!("Override set (revision {}).", info.revision),
    ))
}

/// `POST /ui/flags/{key}/clear`.
pub async fn clear_override(
    State(dashboard): State<Arc<Dashboard>>,
    Path(key): Path<String>,
    Query(query): Query<FlagQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = dashboard.write_form(&headers, &body)?;
    let (who, why) = (actor(&form), form.get("reason").unwrap_or("").to_owned());
    let d = dashboard.clone();
    let k = key.clone();
    let info = blocking(move || Ok(d.authority.clear_override(&k, &who, &why, None)?)).await?;
    Ok(done(
        &flag_href(&key, query.set.as_deref()),
        &format!("Override cleared (revision {}).", info.revision),
    ))
}
