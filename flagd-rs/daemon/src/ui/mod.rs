//! The operators' dashboard, served on the admin port at `/ui/` (`/` redirects there).
//!
//! Server-rendered pages (maud templates, checked when the daemon compiles) over the same
//! published state the admin API reads, and changes made through the same [`Authority`] and
//! [`RolloutRunner`] methods its handlers call. Every page is a plain URL that works without
//! JavaScript: forms POST and redirect. A small script ([`assets`]) subscribes to
//! `/ui/events` (server-sent events, [`live`]) and updates the open page when a file reload,
//! an override or a rollout changes what it shows.
//!
//! | route | shows or does |
//! |---|---|
//! | `GET /ui/` | every flag, filterable, rows updated live |
//! | `GET /ui/flags/{key}?set=&context=` | one flag: file → override → effective, configured vs served split, evaluate box |
//! | `POST /ui/flags/{key}/override`, `/clear` | set or clear its override (readwrite) |
//! | `GET /ui/rollouts`, `GET\|POST /ui/rollouts/{flag}/{verb}` | rollouts with their gates; confirm and run promote, pause, resume, abort |
//! | `GET /ui/history?flag=&before=\|after=`, `/ui/history/{n}` | revisions, a revision's diff |
//! | `GET\|POST /ui/history/{n}/restore` | the diff against what is live, then the restore |
//! | `GET /ui/health` | sources, readiness, validation diagnostics |
//! | `GET\|POST /ui/login` | sign in with the admin token, when one is configured |
//! | `GET /ui/events` | the live feed |
//!
//! The dashboard costs evaluation nothing: it reads the snapshot, the authority's published
//! state and the impression counters (sampled on a timer, [`live::Served`]), and its evaluate
//! box evaluates without counting an impression.

pub mod access;
pub mod live;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::authority::Authority;
use crate::authority::admin::AdminToken;
use crate::authority::guard::Guard;
use crate::authority::rollout::runner::RolloutRunner;
use crate::metrics::Metrics;
use crate::state::ContextConfig;

pub use access::Access;

/// What the dashboard may do (`--ui`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum UiMode {
    /// Not served.
    Off,
    /// Pages only: no forms that change anything.
    #[default]
    Readonly,
    /// Pages and the forms that change overrides, rollouts and revisions (with the admin token
    /// when one is configured).
    Readwrite,
}

/// What every dashboard handler shares.
#[derive(Debug)]
pub struct Dashboard {
    /// The authority: overrides, revisions; shared with the admin API.
    pub authority: Arc<Authority>,
    /// The rollouts; shared with the admin API.
    pub rollouts: Arc<RolloutRunner>,
    /// Static evaluation context (`-X`), which the evaluate box adds as the servers do.
    pub context: Arc<ContextConfig>,
    /// The impression samples behind the served-share view.
    pub served: Arc<live::Served>,
    /// Sign-in, the form token and the write checks.
    pub access: Access,
    /// `--ui`.
    pub mode: UiMode,
    /// Turns true when the daemon shuts down; the live feeds end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--ui`.
    pub mode: UiMode,
    /// The admin token, when one is configured: pages then need a sign-in.
    pub token: Option<AdminToken>,
    /// Whether the admin port serves TLS (the session cookie is then `Secure`).
    pub tls: bool,
}

impl Dashboard {
    /// A dashboard over the daemon's parts; `shutdown` turns true when the daemon stops.
    pub fn new(
        authority: Arc<Authority>,
        rollouts: Arc<RolloutRunner>,
        metrics: Arc<Metrics>,
        context: Arc<ContextConfig>,
        settings: Settings,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            authority,
            rollouts,
            context,
            served: Arc::new(live::Served::new(metrics)),
            access: Access::new(settings.token, settings.tls),
            mode: settings.mode,
            shutdown,
        })
    }

    /// Whether pages offer the forms that change things.
    pub fn writable(&self) -> bool {
        self.mode == UiMode::Readwrite
    }
}

/// The dashboard's routes, behind the admin port's Host and Origin checks and its own write
/// checks ([`access::check`]). Merge them into the admin app (they carry no fallback).
pub fn router(dashboard: Arc<Dashboard>, guard: Guard) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::flags::page))
        .route("/ui/flags/{key}", get(pages::flag::page))
        .route(
            "/ui/flags/{key}/override",
            axum::routing::post(pages::flag::set_override),
        )
        .route(
            "/ui/flags/{key}/clear",
            axum::routing::post(pages::flag::clear_override),
        )
        .route("/ui/rollouts", get(pages::rollouts::page))
        .route(
            "/ui/rollouts/{flag}/{verb}",
            get(pages::rollouts::confirm).post(pages::rollouts::act),
        )
        .route("/ui/history", get(pages::history::page))
        .route("/ui/history/{revision}", get(pages::history::revision))
        .route(
            "/ui/history/{revision}/restore",
            get(pages::history::confirm_restore).post(pages::history::restore),
        )
        .route("/ui/health", get(pages::health::page))
        .route("/ui/login", get(access::login_page).post(access::login))
        .route("/ui/events", get(live::events))
        .route("/ui/assets/ui.css", get(css))
        .route("/ui/assets/ui.js", get(js))
        .layer(middleware::from_fn_with_state(
            (dashboard.clone(), guard),
            access::check,
        ))
        .with_state(dashboard)
}

/// The stylesheet and the script, compiled into the binary.
pub mod assets {
    /// The stylesheet.
    pub const CSS: &str = include_str!("assets/ui.css");
    /// The live-update script.
    pub const JS: &str = include_str!("assets/ui.js");
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", assets::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", assets::JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
