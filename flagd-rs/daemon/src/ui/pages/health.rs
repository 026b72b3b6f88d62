//! Health: readiness, every source with its last sync and last error, the current validation
//! diagnostics (file and JSON pointer), and override fields a file edit made stale.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use flagd_evaluator::Severity;
use maud::html;

use super::{Live, frame};
use crate::ui::Dashboard;

/// `GET /ui/health`.
pub async fn page(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let store = dashboard.authority.store();
    let ready = store.is_ready();
    let sources = store.source_status();
    let stale = store.override_failures();
    let dangling = dashboard.authority.dangling_overrides();
    let snapshot = store.snapshot();
    let body = html! {
        h1 { "Health" }
        @if ready {
            p.banner.good role="status" { "Ready: every source has loaded. Serving " (snapshot.len()) " flags (store revision " (snapshot.revision) ")." }
        } @else {
            p.banner.bad role="status" { "Not ready: a source has not delivered a valid document yet." }
        }
        table #sources.cards {
            caption { "Sources" }
            thead { tr {
                th scope="col" { "Source" } th scope="col" { "Synced" } th scope="col" { "Last successful sync" } th scope="col" { "Last error" }
            } }
            tbody {
                @for s in &sources {
                    tr {
                        td data-label="Source" { span.source { (s.uri) } }
                        td data-label="Synced" {
                            @if s.synced { span.badge.good { "yes" } } @else { span.badge.bad { "no" } }
                        }
                        td data-label="Last sync" {
                            (s.last_sync.map_or("never".to_owned(), |t| humantime::format_rfc3339_seconds(t).to_string()))
                        }
                        td data-label="Last error" { (s.last_error.as_deref().unwrap_or("—")) }
                    }
                }
            }
        }
        h2 { "Validation diagnostics" }
        @let any = sources.iter().any(|s| !s.diagnostics.is_empty());
        @if !any {
            p { "No diagnostics: every source's last document validated cleanly." }
        } @else {
            table #diagnostics.cards {
                caption.visually-hidden { "Diagnostics of each source's last document" }
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "Outcome" } th scope="col" { "Flag" }
                    th scope="col" { "JSON pointer" } th scope="col" { "Problem" }
                } }
                tbody {
                    @for s in &sources {
                        @for d in &s.diagnostics {
                            tr {
                                td data-label="Source" { span.source { (s.uri) } }
                                td data-label="Outcome" {
                                    @if d.severity == Severity::Error {
                                        span.badge.bad { "rejected, last good kept" }
                                    } @else {
                                        span.badge.warn { "warning" }
                                    }
                                }
                                td data-label="Flag" { (d.flag.as_deref().unwrap_or("—")) }
                                td data-label="Pointer" { code { (if d.pointer.is_empty() { "/" } else { &d.pointer }) } }
                                td data-label="Problem" { (d.message) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Overrides" }
        @if stale.is_empty() && dangling.is_empty() {
            p { "Every override applies." }
        }
        @if !stale.is_empty() {
            ul {
                @for f in stale.iter() {
                    li { strong { (f.key) } ": " (f.field) " not applied — " (f.error) }
                }
            }
        }
        @if !dangling.is_empty() {
            p { "Overrides of flags no source defines (kept until cleared):" }
            ul { @for d in &dangling { li { strong { (d.key) } ": " (super::patch_summary(Some(&d.override_patch))) } } }
        }
    };
    frame(&dashboard, "Health", "health", Live::Page, body).into_response()
}
