//! Wiring of the daemon: binds the ports, starts the store and the sources, serves every port and
//! shuts all of it down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use flagd_evaluator::Format;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;

use crate::authority::{Authority, AuthorityCollector, admin, rollout};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::otel::Telemetry;
use crate::server::http::{self, Listener, ServeOptions};
use crate::server::management::{self, ManagementState};
use crate::sources::{self, SourceSpec};
use crate::state::AppState;
use crate::store::{self, Store};

/// The bundled default flags, served when no source is configured.
pub const EMBEDDED_FLAGS: &[u8] = include_bytes!("../../../flags/default.flagd.json");

/// The source URI the bundled flags are known by (in selectors and sync payloads).
pub const EMBEDDED_SOURCE_URI: &str = "embedded:default.flagd.json";

/// Queue between the sources and the store task. Small: the store applies updates in order and a
/// slow store should slow the sources down rather than buffer stale documents.
const UPDATE_QUEUE: usize = 16;

/// How long sources get to stop after shutdown before their tasks are cancelled.
const SOURCE_STOP_GRACE: Duration = Duration::from_secs(2);

/// How long shutdown waits for the last OTLP metrics export.
const OTEL_FLUSH_GRACE: Duration = Duration::from_secs(5);

/// How long the sync port waits for every source to deliver its first document before it
/// serves whatever is loaded (flagd's behaviour), so chained daemons and in-process providers
/// do not start from a partial configuration.
const SYNC_START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client may take to send a request head to the evaluation port (flagd's
/// `ReadHeaderTimeout` there); a slower client is disconnected.
const EVALUATION_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The same for the OFREP, management and admin ports (flagd's value for OFREP and management).
const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The daemon's listeners, bound before [`run`] so that callers (tests) can bind port 0 and read
/// the ports actually chosen.
#[derive(Debug)]
pub struct Listeners {
    /// The evaluation service (8013): TCP, or the unix socket of `--socket-path`.
    pub eval: Listener,
    /// The management service (8014).
    pub management: TcpListener,
    /// The admin API (8017).
    pub admin: TcpListener,
    /// The sync service (8015): TCP, or the unix socket of `--sync-socket-path`.
    pub sync: Listener,
    /// The OFREP service (8016).
    pub ofrep: TcpListener,
}

/// The addresses the listeners are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPorts {
    /// The evaluation port; `None` when it listens on a unix socket.
    pub eval: Option<u16>,
    /// The management port.
    pub management: u16,
}

impl Listeners {
    /// Binds the configured addresses: `host:port` (or the unix socket `socket_path`),
    /// `host:management_port`, `host:sync_port` (or the unix socket `sync_socket_path`),
    /// `host:ofrep_port` and the admin address.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let eval = match &config.socket_path {
            Some(path) => Listener::Unix(bind_unix(path)?),
            None => Listener::Tcp(
                bind_tcp(SocketAddr::new(config.host, config.port), "evaluation").await?,
            ),
        };
        let management = bind_tcp(
            SocketAddr::new(config.host, config.management_port),
            "management",
        )
        .await?;
        let admin_addr = SocketAddr::new(config.admin_address, config.admin_port);
        admin::check_bind(
            &admin_addr,
            config.admin_token_file.is_some(),
            config.admin_tls.is_some() || config.tls.is_some(),
            config.admin_insecure,
        )?;
        let admin = bind_tcp(admin_addr, "admin").await?;
        let sync = match &config.sync_socket_path {
            Some(path) => Listener::Unix(bind_unix(path)?),
            None => Listener::Tcp(
                bind_tcp(SocketAddr::new(config.host, config.sync_port), "sync").await?,
            ),
        };
        let ofrep = bind_tcp(SocketAddr::new(config.host, config.ofrep_port), "OFREP").await?;
        Ok(Listeners {
            eval,
            management,
            admin,
            sync,
            ofrep,
        })
    }

    /// The port the admin API listens on.
    pub fn admin_port(&self) -> anyhow::Result<u16> {
        Ok(self.admin.local_addr()?.port())
    }

    /// The port the sync service listens on; `None` when it listens on a unix socket.
    pub fn sync_port(&self) -> anyhow::Result<Option<u16>> {
        Ok(match &self.sync {
            Listener::Tcp(l) => Some(l.local_addr()?.port()),
            Listener::Unix(_) => None,
        })
    }

    /// The port the OFREP service listens on.
    pub fn ofrep_port(&self) -> anyhow::Result<u16> {
        Ok(self.ofrep.local_addr()?.port())
    }

    /// The ports the listeners are bound to.
    pub fn ports(&self) -> anyhow::Result<BoundPorts> {
        let eval = match &self.eval {
            Listener::Tcp(l) => Some(l.local_addr()?.port()),
            Listener::Unix(_) => None,
        };
        Ok(BoundPorts {
            eval,
            management: self.management.local_addr()?.port(),
        })
    }
}

async fn bind_tcp(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} port on {addr}"))
}

/// Binds a unix socket, first removing a socket file a previous run left behind (but never a
/// regular file someone put there).
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt as _;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("binding the unix socket {}", path.display()))
}

/// Runs the daemon on already bound `listeners` until `shutdown` completes.
///
/// Starts the store task and one task per source (the bundled flags when `config.sources` is
/// empty), serves the evaluation API and the management port, and on shutdown: marks the daemon
/// not ready, tells streams to end (they send `provider_shutdown`), stops accepting connections,
/// lets in-flight requests finish (bounded by `config.shutdown_grace`) and returns `Ok`.
/// Returns an error when the configuration cannot be served (a TLS file that does not load, a
/// source that cannot start) or a server stops on its own.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let tls = match &config.tls {
        Some(paths) => Some(http::load_tls(&paths.cert, &paths.key)?),
        None => None,
    };
    let admin_tls = match &config.admin_tls {
        Some(paths) => Some(http::load_tls(&paths.cert, &paths.key)?),
        None => tls.clone(),
    };
    let ports = listeners.ports()?;
    let (sync_port, ofrep_port) = (listeners.sync_port()?, listeners.ofrep_port()?);

    // Every task below stops when this flag turns true (or its sender is dropped on an early
    // return), so an error path never leaves tasks behind.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let uris: Vec<String> = if config.sources.is_empty() {
        vec![EMBEDDED_SOURCE_URI.to_owned()]
    } else {
        config.sources.iter().map(SourceSpec::source_uri).collect()
    };
    tracing::info!(sources = ?uris, "starting flagd-rs {}", env!("CARGO_PKG_VERSION"));
    let store = Store::new(uris, config.load);
    // Overrides are replayed before any source loads, so no flag is ever served without them.
    // The state directory is proven writable first: an override during an incident must not be
    // the first write to find out that it is not.
    crate::authority::state_dir::prepare(&config.state_dir)?;
    let journal = crate::authority::FileOptions {
        compact_bytes: config.journal_compact_bytes,
    };
    // In fleet mode the overrides and their history live in etcd, and the state directory
    // keeps a cache of them.
    let fleet = match &config.store {
        Some(settings) => {
            Some(crate::fleet::start::open(settings, &config.state_dir, store.clone()).await?)
        }
        None => None,
    };
    let authority = match &fleet {
        Some(fleet) => fleet.authority.clone(),
        None => Authority::open_with(&config.state_dir, store.clone(), journal)?,
    };
    let replicas: Arc<dyn crate::fleet::replicas::Directory> = match (&fleet, &config.store) {
        (Some(fleet), Some(settings)) => {
            crate::fleet::registry::spawn(
                fleet.client.clone(),
                &fleet.prefix,
                settings.replica_id.clone(),
                authority.clone(),
                settings.lease_ttl,
                shutdown_rx.clone(),
            );
            Arc::new(crate::fleet::registry::EtcdDirectory::new(
                fleet.client.clone(),
                &fleet.prefix,
            ))
        }
        _ => Arc::new(crate::fleet::replicas::Single::new(
            crate::fleet::config::default_replica_id(),
            authority.clone(),
        )),
    };
    let admin_token = config
        .admin_token_file
        .as_deref()
        .map(admin::AdminToken::from_file)
        .transpose()?;
    let mut metrics = Metrics::new();
    // Nothing OpenTelemetry is built unless a collector is configured.
    let telemetry = Telemetry::start(&config.otel, &mut metrics)?;
    let (updates_tx, updates_rx) = mpsc::channel(UPDATE_QUEUE);
    let store_task = tokio::spawn(store::run_traced(
        store.clone(),
        updates_rx,
        telemetry.clone(),
    ));
    let mut source_tasks = Vec::with_capacity(config.sources.len().max(1));
    if config.sources.is_empty() {
        source_tasks.push(sources::spawn_embedded(
            EMBEDDED_FLAGS,
            Format::Json,
            0,
            updates_tx.clone(),
        )?);
    }
    for (index, spec) in config.sources.iter().enumerate() {
        let task = sources::spawn(spec, index, updates_tx.clone(), shutdown_rx.clone())
            .with_context(|| format!("starting source {}", spec.uri))?;
        source_tasks.push(task);
    }
    // The store task ends once every source has dropped its sender.
    drop(updates_tx);

    metrics.register_collector(Box::new(AuthorityCollector::new(authority.clone())));
    // Rollouts recorded in the journal resume here; each waits for the store to load its flag.
    // In a fleet only the elected controller drives them; the others show the journal's view
    // and relay verbs to it.
    let gates = Arc::new(rollout::HttpGates::new());
    let (rollouts, controller) = match (&fleet, &config.store) {
        (Some(fleet), Some(settings)) => {
            let (leading, leadership) = watch::channel(None);
            let runner = rollout::RolloutRunner::spawn_led(authority.clone(), gates, leadership);
            let controller = crate::fleet::controller::spawn(
                crate::fleet::controller::ControllerSettings::new(
                    fleet.client.clone(),
                    &fleet.prefix,
                    &settings.replica_id,
                    settings.lease_ttl,
                ),
                runner.clone(),
                leading,
                crate::fleet::controller::fence_setter(
                    fleet.fencing.clone(),
                    &fleet.controller_key,
                ),
            );
            (runner, Some(controller))
        }
        _ => (
            rollout::RolloutRunner::spawn(authority.clone(), gates),
            None,
        ),
    };
    metrics.register_collector(Box::new(rollout::RolloutCollector::new(rollouts.clone())));
    let metrics = Arc::new(metrics);
    let metrics_export = match &config.otel.metrics {
        Some(target) => Some(crate::otel::metrics::spawn(
            target,
            &config.otel.resource,
            config.otel.metrics_interval,
            metrics.clone(),
            shutdown_rx.clone(),
        )?),
        None => None,
    };
    let ui_metrics = metrics.clone();
    let max_header_bytes = config.limits.max_header_bytes;
    let state = AppState {
        store: store.clone(),
        context: Arc::new(config.context),
        metrics: metrics.clone(),
        shutdown: shutdown_rx.clone(),
        limits: config.limits,
        cors_origins: config.cors_origins.into(),
        telemetry: telemetry.clone(),
        revision: config
            .revision_metadata
            .then(|| authority.served_revision()),
    };

    let ui_context = state.context.clone();
    let serving = Arc::new(AtomicBool::new(false));
    let (health, health_routes) = management::health_service();
    let management_app = http::grpc_or_http(
        health_routes,
        management::router(ManagementState {
            store,
            metrics,
            serving: serving.clone(),
            fail_closed: config
                .store
                .as_ref()
                .is_some_and(|s| s.fail_closed)
                .then(|| authority.clone()),
        }),
    );

    let mut servers = JoinSet::new();
    let ofrep_streams = config.ofrep_sse.enabled.then(|| {
        crate::server::ofrep_sse::OfrepStreams::start_with_revision(
            state.store.clone(),
            config.ofrep_sse.clone(),
            state.revision.clone(),
            shutdown_rx.clone(),
        )
    });
    let ofrep_app = crate::server::ofrep::app(state.clone(), ofrep_streams);
    let sync_app = crate::server::sync::router(state.clone(), config.disable_sync_metadata);
    let sync_store = state.store.clone();
    let eval_app = crate::server::eval::app(state);
    let http = ServeOptions::http(max_header_bytes);
    spawn_server(
        &mut servers,
        Port {
            name: "evaluation",
            listener: listeners.eval,
            app: eval_app,
            tls: tls.clone(),
            options: http.header_read_timeout(EVALUATION_HEADER_READ_TIMEOUT),
        },
        shutdown_rx.clone(),
    );
    spawn_server(
        &mut servers,
        Port {
            name: "management",
            listener: Listener::Tcp(listeners.management),
            app: management_app,
            tls: None,
            options: http.header_read_timeout(HTTP_HEADER_READ_TIMEOUT),
        },
        shutdown_rx.clone(),
    );
    let guard = crate::authority::guard::Guard::new(crate::authority::guard::GuardConfig {
        allowed_hosts: config.admin_allowed_hosts.clone(),
        allowed_origins: config.admin_allowed_origins.clone(),
        tls: admin_tls.is_some(),
    });
    let dashboard = (config.ui != crate::ui::UiMode::Off).then(|| {
        crate::ui::Dashboard::new(
            authority.clone(),
            rollouts.clone(),
            ui_metrics,
            ui_context,
            crate::ui::Settings {
                mode: config.ui,
                token: admin_token.clone(),
                tls: admin_tls.is_some(),
            },
            shutdown_rx.clone(),
        )
    });
    let mut admin_app = admin::app(
        authority.clone(),
        rollout::router(rollouts.clone()),
        crate::fleet::api::router(replicas),
        admin_token,
        guard.clone(),
    );
    if let Some(dashboard) = dashboard {
        // The served-share samples are taken only while the dashboard is served.
        tokio::spawn(dashboard.served.clone().run(dashboard.shutdown.clone()));
        admin_app = admin_app.merge(crate::ui::router(dashboard, guard));
    }
    let head = authority.clone();
    let admin_app =
        crate::otel::spans::trace_writes(admin_app, &telemetry, Arc::new(move || head.head()));
    spawn_server(
        &mut servers,
        Port {
            name: "admin",
            listener: Listener::Tcp(listeners.admin),
            app: admin_app,
            tls: admin_tls,
            options: http.header_read_timeout(HTTP_HEADER_READ_TIMEOUT),
        },
        shutdown_rx.clone(),
    );
    // OFREP is plain HTTP, never TLS, as in flagd. Its event streams, when served, take the
    // lean connection path (`server::stream_get`).
    let mut ofrep_options = http.header_read_timeout(HTTP_HEADER_READ_TIMEOUT);
    if config.ofrep_sse.enabled {
        ofrep_options = ofrep_options.event_streams(crate::server::ofrep_sse::SSE_PATH);
    }
    spawn_server(
        &mut servers,
        Port {
            name: "OFREP",
            listener: Listener::Tcp(listeners.ofrep),
            app: ofrep_app,
            tls: None,
            options: ofrep_options,
        },
        shutdown_rx.clone(),
    );
    let sync = Port {
        name: "sync",
        listener: listeners.sync,
        app: sync_app,
        tls,
        options: ServeOptions::grpc_only(max_header_bytes, config.sync_keepalive),
    };
    let rx = shutdown_rx.clone();
    servers.spawn(async move {
        if !wait_for_sources(&sync_store, SYNC_START_TIMEOUT, rx.clone()).await {
            return (sync.name, Ok(()));
        }
        tracing::info!("serving the sync service");
        sync.serve(rx).await
    });
    serving.store(true, Ordering::Release);
    match sync_port {
        Some(port) => tracing::info!(
            sync_port = port,
            ofrep_port,
            "serving OFREP; sync opens once sources synced"
        ),
        None => tracing::info!(
            sync_socket = %config.sync_socket_path.as_deref().unwrap_or(Path::new("")).display(),
            ofrep_port,
            "serving OFREP; sync opens once sources synced"
        ),
    }
    match ports.eval {
        Some(port) => tracing::info!(port, management_port = ports.management, "serving"),
        None => tracing::info!(
            socket = %config.socket_path.as_deref().unwrap_or(Path::new("")).display(),
            management_port = ports.management,
            "serving"
        ),
    }

    // Run until asked to stop, or until a server ends by itself (which it only does on error).
    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(ended) = servers.join_next() => {
            failure = Some(server_ended(ended));
        }
    }

    serving.store(false, Ordering::Release);
    management::set_not_serving(&health).await;
    let _ = shutdown_tx.send(true);

    // `serve` bounds its own drain; the outer bound only guards against a server that hangs.
    let drained = tokio::time::timeout(config.shutdown_grace + Duration::from_secs(1), async {
        while let Some(ended) = servers.join_next().await {
            // A server that returns cleanly is exactly what shutdown asks for.
            if matches!(ended, Ok((_, Ok(())))) {
                continue;
            }
            if let Err(e) = server_ended(ended) {
                tracing::warn!(error = %e, "server stopped with an error during shutdown");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("servers did not stop within the shutdown grace period");
        servers.abort_all();
    }

    // File watchers stop on the shutdown flag; whatever is left is cancelled.
    let stop_sources = async {
        for task in &mut source_tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(SOURCE_STOP_GRACE, stop_sources)
        .await
        .is_err()
    {
        source_tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
    // The controller hands over at once instead of a lease later.
    if let Some(controller) = controller {
        controller.resign().await;
    }
    rollouts.stop().await;
    // The last metrics and spans go out after the servers stopped recording them.
    if let Some(mut task) = metrics_export
        && tokio::time::timeout(OTEL_FLUSH_GRACE, &mut task)
            .await
            .is_err()
    {
        tracing::warn!("the last metrics export did not finish in time");
        task.abort();
    }
    telemetry.shutdown().await;
    // Nothing writes any more: release the state directory even if a stray task still holds
    // the authority.
    authority.close();
    store_task.abort();
    tracing::info!("stopped");

    match failure {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// One port to serve: its listener, application, TLS and serving options.
struct Port<A = axum::Router> {
    /// The name errors and logs use.
    name: &'static str,
    listener: Listener,
    app: A,
    tls: Option<Arc<ServerConfig>>,
    options: ServeOptions,
}

impl<A: http::App> Port<A> {
    /// Serves the port until `shutdown`; the result names the port.
    async fn serve(self, shutdown: watch::Receiver<bool>) -> (&'static str, std::io::Result<()>) {
        let served =
            http::serve_with(self.listener, self.app, self.tls, self.options, shutdown).await;
        (self.name, served)
    }
}

/// Serves `port` in a task of `servers` until `shutdown`.
fn spawn_server<A: http::App>(
    servers: &mut JoinSet<(&'static str, std::io::Result<()>)>,
    port: Port<A>,
    shutdown: watch::Receiver<bool>,
) {
    servers.spawn(port.serve(shutdown));
}

/// Waits until every source has delivered its first document, or `timeout` has passed (then
/// logs which sources are missing). Returns `false` when shutdown starts first.
async fn wait_for_sources(
    store: &Store,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let mut revisions = store.watch_revision();
    let synced = async {
        // A source's first document publishes a revision, so each one is a reason to look again.
        while !store.is_ready() {
            if revisions.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let stopping = async {
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = synced => true,
        () = tokio::time::sleep(timeout) => {
            let waiting: Vec<_> = store
                .source_status()
                .into_iter()
                .filter(|s| !s.synced)
                .map(|s| s.uri)
                .collect();
            tracing::warn!(sources = ?waiting, "not every source has synced; serving the sync service anyway");
            true
        }
        () = stopping => false,
    }
}

/// Turns a server task's end into a result: any end before shutdown is a failure.
fn server_ended(
    ended: Result<(&'static str, std::io::Result<()>), tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match ended {
        Ok((name, Ok(()))) => Err(anyhow::anyhow!("the {name} server stopped unexpectedly")),
        Ok((name, Err(e))) => {
            Err(anyhow::Error::new(e).context(format!("the {name} server failed")))
        }
        Err(e) => Err(anyhow::Error::new(e).context("a server task failed")),
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_flags_load_without_warnings() {
        let loaded =
            flagd_evaluator::load(EMBEDDED_FLAGS, Format::Json, &Default::default()).unwrap();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let strict = flagd_evaluator::LoadOptions {
            strict: true,
            ..Default::default()
        };
        assert!(flagd_evaluator::load(EMBEDDED_FLAGS, Format::Json, &strict).is_ok());
        for key in [
            "canary-deployment",
            "progressive-rollout",
            "blue-green-deployment",
            "error-budget-enforcement",
            "monitoring-enhanced",
        ] {
            assert!(loaded.flags.flags().iter().any(|f| f.key() == key), "{key}");
        }
    }

    #[tokio::test]
    async fn binds_port_zero_and_reports_ports() {
        let config = Config {
            host: [127, 0, 0, 1].into(),
            port: 0,
            management_port: 0,
            ..Config::default()
        };
        let listeners = Listeners::bind(&config).await.unwrap();
        let ports = listeners.ports().unwrap();
        assert!(ports.eval.is_some_and(|p| p != 0) && ports.management != 0);
        assert_ne!(ports.eval, Some(ports.management));
        let sync = listeners.sync_port().unwrap();
        let ofrep = listeners.ofrep_port().unwrap();
        assert!(sync.is_some_and(|p| p != 0) && ofrep != 0);
        assert_ne!(sync, Some(ofrep));
    }

    #[tokio::test]
    async fn unix_socket_replaces_a_stale_socket_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flagd.sock");
        let config = Config {
            host: [127, 0, 0, 1].into(),
            management_port: 0,
            socket_path: Some(path.clone()),
            ..Config::default()
        };
        let first = Listeners::bind(&config).await.unwrap();
        assert_eq!(first.ports().unwrap().eval, None);
        drop(first);
        // The socket file stays behind after the listener is dropped; binding again removes it.
        assert!(Listeners::bind(&config).await.is_ok());
        let file = dir.path().join("regular");
        std::fs::write(&file, b"x").unwrap();
        let config = Config {
            socket_path: Some(file),
            ..config
        };
        assert!(Listeners::bind(&config).await.is_err());
    }
}
