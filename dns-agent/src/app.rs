//! Wiring: snapshot or API watchers → records → kernel dataplane → listeners and metrics, and the orderly stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::{Config, CorefileSource, KernelConfig, SnapshotSource};
use crate::cluster::Cluster;
use crate::config;
use crate::corefile;
use crate::dataplane::{Dataplane, DataplaneConfig, DataplaneError};
use crate::k8s::ApiSource;
use crate::k8s::{self, K8sError, WatchConfig};
use crate::metrics::{KernelStatsFn, Metrics, MetricsError, MetricsHandle, MetricsServer};
use crate::plugin::cache::KernelCache;
use crate::plugin::{Router, SharedRouter};
use crate::records::{self, Changes, PodMode, Records, SharedRecords};
use crate::server::{DnsServer, ServerConfig, ServerError, ServerHandle};
use crate::snapshot::{self, SnapshotError};

/// Why the agent could not start or update.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("kernel path: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Kubernetes(#[from] K8sError),
    #[error("{0}")]
    Corefile(String),
    #[error("the records come from the API server: there is no snapshot to reload")]
    NoSnapshot,
}

/// The kernel dataplane, shared with the metrics endpoint that reads its counters.
type SharedDataplane = Arc<Mutex<Dataplane>>;

/// A running agent.
pub struct App {
    /// `None` when the API server is the source.
    snapshot: Option<SnapshotSource>,
    updater: Arc<Updater>,
    records: SharedRecords,
    metrics: Arc<Metrics>,
    dns: Vec<ServerHandle>,
    dns_addrs: Vec<SocketAddr>,
    metrics_server: Option<(MetricsHandle, SocketAddr)>,
    /// `health` and `ready` listeners of the Corefile (when not the metrics listener).
    http: Vec<(MetricsHandle, SocketAddr, &'static str)>,
    /// `health { lameduck }`: how long to go on serving after a stop is asked.
    lameduck: Duration,
    dataplane: Option<SharedDataplane>,
    watch: Option<tokio::task::JoinHandle<()>>,
    reload: Option<tokio::task::JoinHandle<()>>,
}

/// What turns a cluster state into served records; shared with the API watchers.
struct Updater {
    settings: records::Settings,
    records: SharedRecords,
    metrics: Arc<Metrics>,
    dataplane: Option<SharedDataplane>,
    /// Names with A records being served (the `dns_agent_records_a` gauge).
    a_names: AtomicUsize,
}

/// Reads the Corefile `config` names and checks it (`None` without one).
fn load_corefile(
    config: &Config,
) -> Result<Option<(config::Plan, Option<PathBuf>, String)>, AppError> {
    let (origin, text, path) = match &config.corefile {
        CorefileSource::None => return Ok(None),
        CorefileSource::Embedded => {
            let metrics = config
                .metrics_addr
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], config::PROMETHEUS_PORT)));
            (
                "embedded Corefile".to_owned(),
                config::embedded(&config.zone, config.ttl, metrics),
                None,
            )
        }
        CorefileSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AppError::Corefile(format!("{}: cannot read the Corefile: {e}", path.display()))
            })?;
            (path.display().to_string(), text, Some(path.clone()))
        }
        CorefileSource::Text { origin, text } => (origin.clone(), text.clone(), None),
    };
    let plan = plan_text(&origin, &text, path.as_deref(), config.dns_port)?;
    Ok(Some((plan, path, text)))
}

fn plan_text(
    origin: &str,
    text: &str,
    path: Option<&Path>,
    port: u16,
) -> Result<config::Plan, AppError> {
    let dir = path
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let parsed = match path {
        Some(p) => corefile::parse_file(p),
        None => corefile::parse(origin, text),
    }
    .map_err(|e| AppError::Corefile(e.to_string()))?;
    config::plan(&parsed, port, &dir).map_err(|e| AppError::Corefile(e.to_string()))
}

/// Runs the agent described by `config` until `shutdown` completes, then stops it: the
/// listeners close and the kernel programs are detached. What `main` does, and what a test
/// calls with its own shutdown future.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let app = App::start(config).await?;
    shutdown.await;
    log::info!("shutting down");
    app.stop().await;
    Ok(())
}

impl App {
    /// Reads and checks the Corefile, loads the snapshot, binds every socket, attaches the
    /// kernel program (when configured) and fills its map, then starts serving. Every socket
    /// is bound before anything is attached; an error after attaching detaches again before
    /// returning.
    pub async fn start(config: Config) -> Result<App, AppError> {
        let corefile = load_corefile(&config)?;
        let plan = corefile.as_ref().map(|(p, _, _)| p);
        let kube = plan.and_then(|p| p.kubernetes.clone());
        let mut settings = match &kube {
            Some(k) => k.settings.clone(),
            None => records::Settings::new(&config.zone, config.ttl),
        };
        settings.dns_ips = config.service_ips.clone();
        // The flags win; else the Corefile's kubeconfig/endpoint, unless a snapshot is given.
        let api = config.api.clone().or_else(|| {
            let k = kube.as_ref()?;
            let from_corefile = k.kubeconfig.is_some() || k.apiserver.is_some();
            (from_corefile && config.snapshot == SnapshotSource::Embedded).then(|| ApiSource {
                kubeconfig: k.kubeconfig.as_ref().map(|(p, _)| p.clone()),
                context: k.kubeconfig.as_ref().and_then(|(_, c)| c.clone()),
                apiserver: k.apiserver.clone(),
            })
        });

        // A snapshot is complete at once; the API server's objects arrive after the start.
        let (cluster, client) = match &api {
            None => (snapshot::load(&config.snapshot)?.cluster, None),
            Some(source) => (Cluster::default(), Some(k8s::client(source).await?)),
        };
        let synced = client.is_none();
        let (mut records, notes) = records::build(&cluster, &settings, unix_now());
        records.synced = synced;
        for note in notes {
            log::warn!("{note}");
        }

        // The chains first: a broken Corefile stops the start before any socket is bound.
        let metrics = Arc::new(Metrics::default());
        let a_names = records.a_count();
        let records = SharedRecords::new(records);
        let routers = match plan {
            None => None,
            Some(p) => {
                let ctx = config::BuildCtx {
                    records: records.clone(),
                    metrics: &metrics,
                };
                Some(config::build(p, &ctx).map_err(|e| AppError::Corefile(e.to_string()))?)
            }
        };

        // One set of listeners per port of the Corefile (the service addresses on each).
        let ports: Vec<u16> = match plan {
            Some(p) => p.ports.keys().copied().collect(),
            None => vec![config.dns_port],
        };
        let mut bound = Vec::new();
        for port in &ports {
            let server_cfg = ServerConfig {
                addrs: config.service_ips.clone(),
                port: *port,
                tcp_idle_timeout: config.tcp_idle_timeout,
            };
            bound.push((*port, DnsServer::bind(&server_cfg).await?));
        }
        // The kernel answers on the port of the block that runs `kubernetes`.
        let kernel_port = plan
            .and_then(|p| {
                p.ports
                    .iter()
                    .find(|(_, blocks)| {
                        blocks
                            .iter()
                            .any(|b| b.directives.iter().any(|d| d.name.text == "kubernetes"))
                    })
                    .map(|(port, _)| *port)
            })
            .unwrap_or(ports[0]);
        // ... and rotates its answers when that block runs `loadbalance` too; it answers
        // negatively only where `kubernetes` alone would.
        let kernel_rotates = plan.is_some_and(|p| {
            p.ports.get(&kernel_port).is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.runs("kubernetes") && b.runs("loadbalance"))
            })
        });
        let kernel_denies =
            plan.is_none_or(|p| p.kernel_may_deny(kernel_port, &records.load().zone));
        // The caches whose answers the kernel repeats: those of that port's chains.
        let kernel_router = routers.as_ref().and_then(|r| r.get(&kernel_port)).cloned();
        let kernel_plan_port = kernel_port;
        let kernel_port = bound
            .iter()
            .find(|(planned, _)| *planned == kernel_port)
            .map_or(0, |(_, s)| s.port());
        let dns_addrs: Vec<SocketAddr> = bound.iter().flat_map(|(_, s)| s.local_addrs()).collect();

        let metrics_addr = plan.and_then(|p| p.prometheus).or(config.metrics_addr);
        let metrics_listener = match metrics_addr {
            Some(addr) => Some(MetricsServer::bind(addr).await?),
            None => None,
        };
        let mut http_listeners = Vec::new();
        if let Some(p) = plan {
            let wanted = [
                (p.health.as_ref().map(|h| h.addr), "health"),
                (p.ready, "ready"),
            ];
            for (addr, what) in wanted {
                let Some(addr) = addr else { continue };
                if Some(addr) == metrics_addr || http_listeners.iter().any(|(_, a, _)| *a == addr) {
                    continue;
                }
                let listener = MetricsServer::bind(addr).await.map_err(|e| {
                    let source = match e {
                        MetricsError::Bind { source, .. } => source,
                    };
                    AppError::Corefile(format!(
                        "{what}: cannot listen on {addr}: {source} (give the Corefile's {what} line another address)"
                    ))
                })?;
                http_listeners.push((listener, addr, what));
            }
        }
        metrics.set_records_a(a_names);
        metrics.set_ready(synced);

        let dataplane = match &config.kernel {
            Some(kernel) => Some(start_dataplane(
                kernel,
                &config,
                kernel_port,
                (kernel_rotates, kernel_denies),
                &records.load(),
                kernel_router.as_deref(),
                &metrics,
            )?),
            None => None,
        };
        if let Some(dp) = &dataplane {
            let attachments = lock(dp).attachments();
            metrics.set_kernel_attachments(attachments.len());
            for (iface, how) in attachments {
                log::info!("kernel program attached to {iface} ({how})");
            }
        } else {
            log::info!("kernel path off: answering in userspace only");
        }

        let kernel_stats = dataplane.as_ref().map(|dp| {
            let dp = Arc::clone(dp);
            let read: KernelStatsFn =
                Arc::new(move || lock(&dp).stats().map_err(|e| e.to_string()));
            read
        });
        let metrics_server = metrics_listener.map(|listener| {
            let addr = listener
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            log::info!("metrics on http://{addr}/metrics");
            (
                listener.spawn(Arc::clone(&metrics), kernel_stats.clone()),
                addr,
            )
        });
        let http: Vec<(MetricsHandle, SocketAddr, &'static str)> = http_listeners
            .into_iter()
            .map(|(listener, addr, what)| {
                let addr = listener.local_addr().unwrap_or(addr);
                log::info!("{what} on http://{addr}/{what}");
                (listener.spawn(Arc::clone(&metrics), None), addr, what)
            })
            .collect();
        let (zone, serial) = {
            let r = records.load();
            (r.zone.clone(), r.serial)
        };
        log::info!(
            "serving {} ({} A records, serial {}) on UDP and TCP {}",
            zone,
            a_names,
            serial,
            dns_addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );

        let mut dns = Vec::new();
        let mut routers_of_ports = BTreeMap::new();
        match routers {
            None => {
                for (_, server) in bound {
                    dns.push(server.spawn(records.clone(), Arc::clone(&metrics))?);
                }
            }
            Some(routers) => {
                let mut shared = BTreeMap::new();
                for (port, server) in bound {
                    // `loop`: probe ourselves through each port once it listens.
                    if let Some(addr) = server.local_addrs().first() {
                        crate::plugin::loop_detect::probe(&format!("dns://:{port}"), *addr);
                    }
                    let Some(router) = routers.get(&port) else {
                        continue;
                    };
                    let router: SharedRouter = Arc::new(RwLock::new(Arc::clone(router)));
                    shared.insert(port, Arc::clone(&router));
                    dns.push(server.serve(router, Arc::clone(&metrics))?);
                }
                routers_of_ports = shared;
            }
        }
        let updater = Arc::new(Updater {
            settings,
            records: records.clone(),
            metrics: Arc::clone(&metrics),
            dataplane: dataplane.clone(),
            a_names: AtomicUsize::new(a_names),
        });
        let watch = client.map(|client| {
            log::info!("watching the API server; not ready until every kind is listed");
            let up = Arc::clone(&updater);
            let sink: k8s::Sink = Arc::new(move |cluster: &Cluster, changes, synced| {
                if let Err(e) = up.apply(cluster, changes, synced) {
                    log::error!("{e}; still serving the previous records");
                }
            });
            k8s::spawn(
                client,
                &WatchConfig {
                    pods: updater.settings.pods == PodMode::Verified,
                },
                sink,
            )
        });
        let reload = match (&config.corefile, &corefile) {
            (CorefileSource::File(path), Some((plan, _, text))) => {
                plan.reload.map(|(every, jitter)| {
                    let watcher = Reloader {
                        path: path.clone(),
                        text: text.clone(),
                        plan: plan.clone(),
                        default_port: config.dns_port,
                        routers: routers_of_ports.clone(),
                        records: records.clone(),
                        metrics: Arc::clone(&metrics),
                        kernel_cache: dataplane.as_ref().map(|dp| {
                            let sink: Arc<dyn KernelCache> = lock(dp).kernel_cache();
                            (kernel_plan_port, sink)
                        }),
                    };
                    tokio::spawn(watcher.run(every, jitter))
                })
            }
            _ => None,
        };
        Ok(App {
            snapshot: api.is_none().then_some(config.snapshot),
            updater,
            records,
            metrics,
            dns,
            dns_addrs,
            metrics_server,
            http,
            lameduck: plan
                .and_then(|p| p.health.as_ref())
                .map_or(Duration::ZERO, |h| h.lameduck),
            dataplane,
            watch,
            reload,
        })
    }

    /// The DNS listeners' addresses (UDP and TCP), one per service IP.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The metrics endpoint's address, when it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(_, addr)| *addr)
    }

    /// The records being served (a handle: it follows updates).
    pub fn records(&self) -> SharedRecords {
        self.records.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Interfaces the kernel program is attached to, and how (`"xdp"` or `"tc"`).
    pub fn kernel_attachments(&self) -> Vec<(String, &'static str)> {
        self.dataplane
            .as_ref()
            .map(|dp| lock(dp).attachments())
            .unwrap_or_default()
    }

    /// Recomputes the records from `cluster` and serves them: the kernel map first, then
    /// userspace. Returns whether anything changed (the serial moves only then).
    pub fn update(&self, cluster: &Cluster) -> Result<bool, AppError> {
        self.update_synced(cluster, true)
    }

    /// Like [`App::update`], with `synced` false while a live source has not completed its
    /// first list (answers that would be NXDOMAIN are then SERVFAIL, and `/ready` says 503).
    pub fn update_synced(&self, cluster: &Cluster, synced: bool) -> Result<bool, AppError> {
        self.updater.update(cluster, synced)
    }

    /// Reads the snapshot again (SIGHUP) and serves what it yields; on error the previous
    /// records stay in service. Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, AppError> {
        let source = self.snapshot.as_ref().ok_or(AppError::NoSnapshot)?;
        let loaded = snapshot::load(source)?;
        self.update(&loaded.cluster)
    }

    /// Stops the API watchers, the metrics endpoint and the listeners, then detaches the
    /// kernel programs. With `health { lameduck D }` everything goes on serving for D first.
    pub async fn stop(self) {
        if !self.lameduck.is_zero() {
            log::info!("lame duck for {:?}: still serving", self.lameduck);
            tokio::time::sleep(self.lameduck).await;
        }
        if let Some(reload) = self.reload {
            reload.abort();
        }
        if let Some(watch) = self.watch {
            watch.abort();
            let _ = watch.await;
        }
        drop(self.updater);
        if let Some((handle, _)) = self.metrics_server {
            handle.stop().await;
        }
        for (handle, _, _) in self.http {
            handle.stop().await;
        }
        for dns in self.dns {
            dns.stop().await;
        }
        if let Some(dp) = self.dataplane {
            match Arc::try_unwrap(dp) {
                Ok(dp) => {
                    drop(dp.into_inner().unwrap_or_else(PoisonError::into_inner));
                    log::info!("kernel programs detached");
                }
                Err(_) => {
                    log::warn!("kernel dataplane still referenced: it detaches when released")
                }
            }
        }
    }
}

impl Updater {
    /// Recomputes the records from `cluster` and serves them: the kernel map first, then
    /// userspace. `synced`: the cluster is complete (readiness). Returns whether anything
    /// changed (the serial moves only then).
    fn update(&self, cluster: &Cluster, synced: bool) -> Result<bool, AppError> {
        let result = self.rebuild(cluster, synced);
        if result.is_ok() {
            // Ready once records built from a complete cluster are served.
            self.metrics.set_ready(synced);
        }
        result
    }

    /// Brings the served records up to date after `changes`: a full rebuild after a complete
    /// list, else only the services, namespaces and pods named, in place, with the kernel maps
    /// changed name by name.
    fn apply(&self, cluster: &Cluster, changes: &Changes, synced: bool) -> Result<bool, AppError> {
        if changes.full {
            return self.update(cluster, synced);
        }
        let result = self.apply_changes(cluster, changes, synced);
        if result.is_ok() {
            self.metrics.set_ready(synced);
        }
        result
    }

    fn apply_changes(
        &self,
        cluster: &Cluster,
        changes: &Changes,
        synced: bool,
    ) -> Result<bool, AppError> {
        // Readers wait while one batch is applied: microseconds to a few milliseconds.
        let mut records = self.records.write();
        let applied = records.apply(cluster, &self.settings, changes);
        for note in &applied.notes {
            log::warn!("{note}");
        }
        let mut changed = applied.changed;
        if records.synced != synced {
            records.synced = synced;
            changed = true;
        }
        if !changed {
            return Ok(false);
        }
        records.serial = unix_now().max(records.serial.wrapping_add(1));
        if let Some(dp) = &self.dataplane {
            let mut dp = lock(dp);
            dp.set_soa_of(&records)?;
            if !applied.names.is_empty() {
                let names: Vec<&str> = applied.names.iter().map(String::as_str).collect();
                let (a, aaaa) = records.address_maps_of(names.iter().copied());
                let (report, aaaa_report) =
                    dp.sync_addresses_names(&a, &aaaa, names.iter().copied())?;
                log::debug!("kernel A map: {report:?}");
                log::debug!("kernel AAAA map: {aaaa_report:?}");
            }
            // The tree nodes above every name that may have appeared or gone.
            let zone = records.zone.clone();
            let services = changes
                .services
                .iter()
                .map(|k| format!("{}.{}.svc.{zone}", k.name, k.namespace).to_ascii_lowercase());
            let namespaces = changes
                .namespaces
                .iter()
                .map(|ns| format!("{ns}.svc.{zone}").to_ascii_lowercase());
            let touched: Vec<String> = services
                .chain(namespaces)
                .chain(applied.names.iter().cloned())
                .collect();
            let report = dp.sync_tree_names(&records, touched.iter().map(String::as_str))?;
            log::debug!("kernel tree: {report:?}");
        }
        let count = self.a_names.load(Ordering::Relaxed);
        let count = count.saturating_add_signed(applied.a_delta);
        self.a_names.store(count, Ordering::Relaxed);
        self.metrics.set_records_a(count);
        log::debug!(
            "applied {} changed service(s): {} names, serial {}",
            changes.services.len(),
            applied.names.len(),
            records.serial
        );
        Ok(true)
    }

    fn rebuild(&self, cluster: &Cluster, synced: bool) -> Result<bool, AppError> {
        let (mut new, notes) = records::build(cluster, &self.settings, 0);
        new.synced = synced;
        for note in notes {
            log::warn!("{note}");
        }
        {
            let prev = self.records.load();
            new.serial = prev.serial;
            if prev.same_content(&new) {
                return Ok(false);
            }
            new.serial = records::next_serial(&prev, &new, unix_now());
        }
        // The kernel's A map is the full A record set: its size is the count.
        let mut count = None;
        if let Some(dp) = &self.dataplane {
            let mut dp = lock(dp);
            let a = new.a_map();
            count = Some(a.len());
            dp.set_soa_of(&new)?;
            let (report, aaaa_report) = dp.sync_addresses(&a, &new.aaaa_map())?;
            log::info!(
                "kernel map synced: {} inserted, {} updated, {} removed, {} userspace only",
                report.inserted,
                report.updated,
                report.removed,
                report.userspace_only
            );
            let report = aaaa_report;
            log::info!(
                "kernel AAAA map synced: {} inserted, {} updated, {} removed, {} userspace only",
                report.inserted,
                report.updated,
                report.removed,
                report.userspace_only
            );
            let report = dp.sync_tree(&new)?;
            log::info!(
                "kernel tree synced: {} written, {} removed, {} missing",
                report.written,
                report.removed,
                report.missing
            );
        }
        let count = count.unwrap_or_else(|| new.a_count());
        self.a_names.store(count, Ordering::Relaxed);
        self.metrics.set_records_a(count);
        log::info!("serving {count} A records, serial {}", new.serial);
        drop(self.records.store(new));
        release_free_memory();
        Ok(true)
    }
}

/// `reload`: watches the Corefile and swaps in the chains of a changed one that is valid.
struct Reloader {
    path: PathBuf,
    /// The text being served.
    text: String,
    plan: config::Plan,
    default_port: u16,
    routers: BTreeMap<u16, SharedRouter>,
    records: SharedRecords,
    metrics: Arc<Metrics>,
    /// The port the kernel serves and its `DNS_CACHE`: the new chains' caches write there.
    kernel_cache: Option<(u16, Arc<dyn KernelCache>)>,
}

impl Reloader {
    async fn run(mut self, every: Duration, jitter: Duration) {
        let failed = self.metrics.registry.counter(
            "coredns_reload_failed_total",
            "Counter of the number of failed reload attempts.",
            &[],
        );
        loop {
            tokio::time::sleep(every + random_below(jitter)).await;
            let text = match std::fs::read_to_string(&self.path) {
                Ok(t) => t,
                Err(e) => {
                    log::error!(
                        "reload: cannot read {}: {e}; the running Corefile stays",
                        self.path.display()
                    );
                    failed.inc();
                    continue;
                }
            };
            if text == self.text {
                continue;
            }
            match self.apply(&text) {
                Ok(()) => log::info!("reload: {} applied", self.path.display()),
                Err(e) => {
                    log::error!("reload: {e}; the running Corefile stays");
                    failed.inc();
                }
            }
            // A broken text is reported once, not at every check.
            self.text = text;
        }
    }

    /// Checks and sets up `text`, then swaps the chains of every port. What cannot change
    /// without new sockets or a new record model is refused.
    fn apply(&mut self, text: &str) -> Result<(), String> {
        let origin = self.path.display().to_string();
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let parsed = corefile::parse(&origin, text).map_err(|e| e.to_string())?;
        let plan = config::plan(&parsed, self.default_port, &dir).map_err(|e| e.to_string())?;
        let restart =
            |what: &str| format!("{origin}: {what} changed: restart the agent to apply it");
        if plan.ports.keys().ne(self.plan.ports.keys()) {
            return Err(restart("the server ports"));
        }
        if plan.kubernetes != self.plan.kubernetes {
            return Err(restart("the kubernetes block"));
        }
        if (
            plan.health.as_ref().map(|h| h.addr),
            plan.ready,
            plan.prometheus,
        ) != (
            self.plan.health.as_ref().map(|h| h.addr),
            self.plan.ready,
            self.plan.prometheus,
        ) {
            return Err(restart("a health, ready or prometheus address"));
        }
        let ctx = config::BuildCtx {
            records: self.records.clone(),
            metrics: &self.metrics,
        };
        let routers = config::build(&plan, &ctx).map_err(|e| e.to_string())?;
        if let Some((port, sink)) = &self.kernel_cache {
            // The old chains' caches take their answers out of the kernel as they go.
            if let Some(router) = routers.get(port) {
                router.link_kernel_cache(sink);
            }
        }
        for (port, router) in routers {
            if let Some(shared) = self.routers.get(&port) {
                *shared.write().unwrap_or_else(PoisonError::into_inner) = router;
            }
        }
        self.plan = plan;
        Ok(())
    }
}

/// A random duration below `max` (the reload jitter).
fn random_below(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_now().into());
    Duration::from_nanos(h.finish() % nanos)
}

/// Hands memory freed by a full rebuild back to the system (glibc keeps freed heap pages
/// resident otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Capacity of `DNS_CACHE`: the success capacities of the caches whose answers the kernel
/// repeats (at least 1).
fn kernel_cache_entries(router: Option<&Router>) -> u32 {
    let total: usize = router
        .map(|r| {
            r.kernel_caches()
                .iter()
                .map(|(c, _)| c.config().success.capacity)
                .sum()
        })
        .unwrap_or(0);
    u32::try_from(total).unwrap_or(u32::MAX).max(1)
}

/// Loads and attaches the kernel program, fills its maps from `records` and links the caches
/// of `router` (the port the kernel serves) to its `DNS_CACHE`.
fn start_dataplane(
    kernel: &KernelConfig,
    config: &Config,
    port: u16,
    (rotate, deny): (bool, bool),
    records: &Records,
    router: Option<&Router>,
    metrics: &Metrics,
) -> Result<SharedDataplane, AppError> {
    let cfg = DataplaneConfig {
        interfaces: kernel.interfaces.clone(),
        service_ips: config.service_ips.clone(),
        port,
        mode: kernel.mode.into(),
        program: kernel.program.into(),
        map_entries: kernel.map_entries,
        cache_entries: kernel_cache_entries(router),
    };
    // On error `dp` is dropped here, which detaches whatever was attached.
    let mut dp = Dataplane::start(&cfg)?;
    dp.set_rotation(rotate)?;
    dp.set_negative_allowed(deny);
    if !deny {
        log::info!(
            "kernel answers no NXDOMAIN: a plugin before kubernetes (hosts, rewrite) or another \
             server block could answer names of the zone"
        );
    }
    if rotate {
        log::info!("kernel answers rotated, as loadbalance rotates them");
    }
    let answers = dp.kernel_cache();
    answers.report_to(&metrics.registry);
    if let Some(router) = router {
        let sink: Arc<dyn KernelCache> = answers;
        let linked = router.link_kernel_cache(&sink);
        if linked > 0 {
            log::info!(
                "kernel cache: {linked} cache(s) write their answers to {} ({} entries)",
                dns_common::cache::MAP_NAME,
                cfg.cache_entries
            );
        }
    }
    let (report, aaaa_report) = dp.sync_records(records)?;
    log::info!(
        "kernel map filled: {} names ({} left to userspace)",
        report.inserted + report.updated,
        report.userspace_only
    );
    let report = aaaa_report;
    log::info!(
        "kernel AAAA map filled: {} names ({} left to userspace)",
        report.inserted + report.updated,
        report.userspace_only
    );
    Ok(Arc::new(Mutex::new(dp)))
}

fn lock(dp: &SharedDataplane) -> std::sync::MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}
