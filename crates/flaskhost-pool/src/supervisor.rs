//! The supervisor: starts the workers, replaces the ones that exit (backing off when they keep
//! dying young), and stops them all at shutdown.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flaskhost_ipc::frame::Kind;
use thiserror::Error;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::Shared;
use crate::slot::{Slot, WorkerInfo};
use crate::spawn::{self, ForkServer, Registry, SpawnMode, Started};
use crate::stats::RestartReason;

#[derive(Debug, Error)]
pub enum StartError {
    /// The app failed to import; the message holds Python's traceback.
    #[error("{0}")]
    AppLoad(String),
    #[error("the fork server exited before loading the app ({0})")]
    ForkServer(String),
    #[error("worker {id} failed to start: {reason}")]
    Worker { id: u32, reason: String },
    #[error("cannot start worker processes: {0}")]
    Io(#[from] std::io::Error),
}

/// What the supervisor reacts to.
pub enum WorkerEvent {
    Exited {
        pid: u32,
        status: String,
    },
    /// A worker is ready; `replaces` is the worker it takes over from (recycling), which now
    /// stops taking work.
    Started {
        id: u32,
        info: Arc<WorkerInfo>,
        slots: Vec<Slot>,
        replaces: Option<Arc<WorkerInfo>>,
        /// Told once the worker takes requests (a reload waits for it).
        ack: Option<tokio::sync::oneshot::Sender<()>>,
    },
    StartFailed {
        id: u32,
        reason: String,
        replaces: Option<Arc<WorkerInfo>>,
    },
    /// A worker has done its share (max-requests, lifetime, memory): start its replacement.
    Recycle {
        info: Arc<WorkerInfo>,
        kind: RestartReason,
        reason: String,
    },
    /// The fork server of app generation `generation` exited.
    ForkServerGone {
        generation: u64,
    },
}

enum Spawner {
    Fork(Arc<ForkServer>),
    Exec,
}

/// One import of the app: what new workers are made from. A reload makes the next one.
struct Generation {
    number: u64,
    spawner: Spawner,
}

pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    /// The generation new workers come from.
    current: std::sync::Mutex<Arc<Generation>>,
    /// Fork servers still running: the current one, and older ones until their last worker
    /// has exited (they are the workers' parents, and the workers die with them).
    fork_servers: std::sync::Mutex<Vec<Arc<ForkServer>>>,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// The worker ids in use (adaptive workers add and remove ids; a fixed pool keeps
    /// 1..=workers).
    ids: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    shutting_down: AtomicBool,
    /// Set to a reason when the pool can no longer serve (the fork server died).
    fatal: watch::Sender<Option<String>>,
    /// Replacements started per worker id (recycling included).
    respawns: std::sync::Mutex<HashMap<u32, u64>>,
    /// Workers killed for overrunning the timeout, per worker id.
    harakiri: std::sync::Mutex<HashMap<u32, u64>>,
}

impl Supervisor {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        rx: mpsc::UnboundedReceiver<WorkerEvent>,
    ) -> Result<Arc<Supervisor>, StartError> {
        let opts = &shared.opts;
        let spawner = match opts.mode {
            SpawnMode::Preload => {
                match ForkServer::start(&opts.command, opts.start_timeout, 0).await? {
                    Started::Ready(fs) => Spawner::Fork(fs),
                    Started::LoadFailed(msg) => return Err(StartError::AppLoad(msg)),
                    Started::Exited(status) => return Err(StartError::ForkServer(status)),
                }
            }
            SpawnMode::Lazy => Spawner::Exec,
        };
        let events = shared.events.clone();
        let fork_servers = match &spawner {
            Spawner::Fork(fs) => vec![fs.clone()],
            Spawner::Exec => Vec::new(),
        };
        let sup = Arc::new(Supervisor {
            shared: shared.clone(),
            registry: Arc::new(Registry::default()),
            current: std::sync::Mutex::new(Arc::new(Generation { number: 0, spawner })),
            fork_servers: std::sync::Mutex::new(fork_servers),
            reload_lock: tokio::sync::Mutex::new(()),
            ids: std::sync::Mutex::new((1..=opts.workers as u32).collect()),
            events,
            shutting_down: AtomicBool::new(false),
            fatal: watch::channel(None).0,
            respawns: std::sync::Mutex::new(HashMap::new()),
            harakiri: std::sync::Mutex::new(HashMap::new()),
        });
        if let Spawner::Fork(fs) = &sup.current().spawner {
            sup.watch_fork_server(fs.clone());
        }

        // Start every worker at once and wait for all of them.
        let mut set = tokio::task::JoinSet::new();
        for id in 1..=opts.workers as u32 {
            let sup = sup.clone();
            set.spawn(async move { (id, sup.spawn_worker(id).await) });
        }
        let mut failure = None;
        let mut started = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok((_, Ok((info, slots)))) => started.push((info, slots)),
                Ok((id, Err(reason))) => {
                    failure.get_or_insert(StartError::Worker { id, reason });
                }
                Err(e) => {
                    failure.get_or_insert(StartError::Io(std::io::Error::other(e.to_string())));
                }
            }
        }
        if let Some(e) = failure {
            sup.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
        started.sort_by_key(|(i, _)| i.id);
        for (info, slots) in started {
            tracing::info!(id = info.id, pid = info.pid, "worker started");
            info.mark_ready();
            for s in slots {
                shared.queue.release(s);
            }
        }
        tokio::spawn(sup.clone().run(rx));
        if sup.shared.opts.recycle.watches_memory_or_age() {
            tokio::spawn(sup.clone().watch());
        }
        if sup.shared.opts.workers_max > sup.shared.opts.workers {
            tokio::spawn(sup.clone().scale_up());
            tokio::spawn(sup.clone().scale_down());
        }
        Ok(sup)
    }

    fn current(&self) -> Arc<Generation> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Relays a fork server's reports (its workers' pids and exits) to the supervisor.
    fn watch_fork_server(&self, fs: Arc<ForkServer>) {
        let (registry, tx) = (self.registry.clone(), self.events.clone());
        tokio::spawn(async move {
            let tx2 = tx.clone();
            fs.read_reports(&registry, move |pid, status| {
                let _ = tx2.send(WorkerEvent::Exited { pid, status });
            })
            .await;
            let _ = tx.send(WorkerEvent::ForkServerGone {
                generation: fs.generation,
            });
        });
    }

    /// The workers that take requests (alive, not retiring).
    fn live_workers(&self) -> Vec<Arc<WorkerInfo>> {
        let mut v = self.registry.all();
        v.retain(|w| w.is_alive());
        v
    }

    /// Stops the fork servers of past generations that no longer have workers.
    fn stop_idle_fork_servers(&self) {
        let current = self.current().number;
        let live: std::collections::HashSet<u64> =
            self.registry.all().iter().map(|w| w.generation).collect();
        let mut list = self.fork_servers.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|fs| {
            if fs.generation == current || live.contains(&fs.generation) {
                return true;
            }
            tracing::info!(
                generation = fs.generation,
                "the last worker of the previous app generation has exited; stopping its fork server"
            );
            fs.stop();
            let fs = fs.clone();
            tokio::spawn(async move {
                let mut child = fs.child.lock().await;
                if tokio::time::timeout(Duration::from_secs(5), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            });
            false
        });
    }

    /// Starts worker `id` from the current generation and waits until each of its slots has
    /// reported ready.
    async fn spawn_worker(&self, id: u32) -> Result<(Arc<WorkerInfo>, Vec<Slot>), String> {
        let generation = self.current();
        self.spawn_worker_from(&generation, id).await
    }

    async fn spawn_worker_from(
        &self,
        generation: &Generation,
        id: u32,
    ) -> Result<(Arc<WorkerInfo>, Vec<Slot>), String> {
        let opts = &self.shared.opts;
        let mut ours = Vec::with_capacity(opts.threads);
        let mut theirs: Vec<OwnedFd> = Vec::with_capacity(opts.threads);
        for _ in 0..opts.threads {
            let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
            ours.push(a);
            theirs.push(b.into());
        }
        let info = match &generation.spawner {
            Spawner::Fork(fs) => fs.spawn(id, theirs).await?,
            Spawner::Exec => {
                let mut child =
                    spawn::exec_worker(&opts.command, id, &theirs).map_err(|e| e.to_string())?;
                drop(theirs);
                let pid = child.id().ok_or("the worker exited at once")?;
                let info = WorkerInfo::new(id, pid, generation.number);
                self.registry.insert(info.clone());
                let tx = self.events.clone();
                tokio::spawn(async move {
                    let status = match child.wait().await {
                        Ok(s) => spawn::describe_exit(s),
                        Err(e) => format!("unknown ({e})"),
                    };
                    let _ = tx.send(WorkerEvent::Exited { pid, status });
                });
                info
            }
        };
        let mut slots = Vec::with_capacity(ours.len());
        for s in ours {
            let ready = async {
                s.set_nonblocking(true)?;
                let mut slot = Slot::new(
                    info.clone(),
                    UnixStream::from_std(s)?,
                    self.shared.sweeper.new_watch(),
                );
                let f = slot.read_frame().await?;
                if f.kind != Kind::Ready {
                    return Err(std::io::Error::other(format!(
                        "sent {:?} before Ready",
                        f.kind
                    )));
                }
                Ok(slot)
            };
            match tokio::time::timeout(opts.start_timeout, ready).await {
                Ok(Ok(slot)) => slots.push(slot),
                Ok(Err(e)) => {
                    info.kill();
                    return Err(format!(
                        "pid {} exited before it was ready ({e}); see its error above",
                        info.pid
                    ));
                }
                Err(_) => {
                    info.kill();
                    return Err(format!(
                        "pid {} was not ready within {:?}",
                        info.pid, opts.start_timeout
                    ));
                }
            }
        }
        Ok((info, slots))
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<WorkerEvent>) {
        // Per worker id: when its current process started, and how many times in a row it
        // died young or failed to start.
        let mut history: HashMap<u32, (Instant, u32)> = HashMap::new();
        let mut last_fork_server_loss: Option<Instant> = None;
        while let Some(ev) = rx.recv().await {
            let stopping = self.shutting_down.load(Ordering::Relaxed);
            match ev {
                WorkerEvent::Exited { pid, status } => {
                    let Some(info) = self.registry.remove(pid) else {
                        continue;
                    };
                    if info.harakiri.load(Ordering::Relaxed) {
                        *self
                            .harakiri
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(info.id)
                            .or_insert(0) += 1;
                    }
                    info.mark_dead();
                    self.shared.queue.purge_dead();
                    if stopping {
                        tracing::debug!(id = info.id, pid, "worker exited: {status}");
                        continue;
                    }
                    if info.is_being_replaced() {
                        // Recycled: its replacement was started before it left.
                        tracing::info!(
                            id = info.id,
                            pid,
                            served = info.served(),
                            "worker retired ({status})"
                        );
                        self.stop_idle_fork_servers();
                        continue;
                    }
                    let entry = history.entry(info.id).or_insert((Instant::now(), 0));
                    // A worker that lived less than this counts as a crash at start-up.
                    entry.1 = if entry.0.elapsed() < Duration::from_secs(10) {
                        entry.1 + 1
                    } else {
                        0
                    };
                    tracing::warn!(
                        id = info.id,
                        pid,
                        "worker exited ({status}); starting a replacement"
                    );
                    let cause = if info.harakiri.load(Ordering::Relaxed) {
                        RestartReason::Harakiri
                    } else {
                        RestartReason::from_u8(info.killed_for.load(Ordering::Relaxed))
                            .unwrap_or(RestartReason::Crash)
                    };
                    self.schedule(info.id, entry.1, None, Some(cause));
                    self.stop_idle_fork_servers();
                }
                WorkerEvent::Started {
                    id,
                    info,
                    slots,
                    replaces,
                    ack,
                } => {
                    if stopping {
                        info.kill();
                        continue;
                    }
                    history.entry(id).or_insert((Instant::now(), 0)).0 = Instant::now();
                    tracing::info!(id, pid = info.pid, "worker started");
                    info.mark_ready();
                    for s in slots {
                        self.shared.queue.release(s);
                    }
                    if let Some(old) = replaces {
                        // Only now does the old worker stop taking work: no dip in capacity.
                        old.retire();
                        self.shared.queue.purge_dead();
                    }
                    // Started from the app generation before a reload (it was on its way when
                    // the reload began): replace it too.
                    if info.generation < self.current().number && info.claim_replacement() {
                        self.schedule(id, 0, Some(info), Some(RestartReason::Reload));
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                WorkerEvent::StartFailed {
                    id,
                    reason,
                    replaces,
                } => {
                    if stopping {
                        continue;
                    }
                    let entry = history.entry(id).or_insert((Instant::now(), 0));
                    entry.1 += 1;
                    tracing::error!(id, "worker failed to start: {reason}");
                    match replaces {
                        // The old worker keeps serving; try its replacement again later.
                        Some(old) if old.is_alive() => {
                            self.schedule(id, entry.1.max(2), Some(old), None);
                        }
                        _ => self.schedule(id, entry.1, None, None),
                    }
                }
                WorkerEvent::Recycle { info, kind, reason } => {
                    if stopping || !info.is_alive() {
                        continue;
                    }
                    tracing::info!(
                        id = info.id,
                        pid = info.pid,
                        "worker {reason}; starting its replacement"
                    );
                    self.schedule(info.id, 0, Some(info), Some(kind));
                }
                WorkerEvent::ForkServerGone { generation } => {
                    if !stopping && generation == self.current().number {
                        // Its workers died with it (PDEATHSIG); their exits will never be
                        // reported, so they are forgotten here.
                        for w in self.registry.all() {
                            if w.generation == generation {
                                w.mark_dead();
                                self.registry.remove(w.pid);
                            }
                        }
                        self.shared.queue.purge_dead();
                        let young = last_fork_server_loss
                            .replace(Instant::now())
                            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                        if young {
                            let msg = "the fork server died twice within a minute; giving up";
                            tracing::error!("{msg}");
                            let _ = self.fatal.send(Some(msg.into()));
                            continue;
                        }
                        tracing::error!(
                            "the fork server exited, and its workers with it; starting a new one"
                        );
                        let sup = self.clone();
                        tokio::spawn(async move { sup.recover_fork_server().await });
                    }
                }
            }
        }
    }

    /// Starts a replacement for worker `id` after a delay that grows while it keeps dying
    /// young (0, 0.25 s, 0.5 s, … up to 30 s), so a crash loop never spins the CPU.
    /// `cause` is counted as a restart (a retry after a failed start is not).
    fn schedule(
        self: &Arc<Self>,
        id: u32,
        failures: u32,
        replaces: Option<Arc<WorkerInfo>>,
        cause: Option<RestartReason>,
    ) {
        let delay = match failures {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(250u64.saturating_mul(1 << (n - 2).min(7)))
                .min(Duration::from_secs(30)),
        };
        if failures >= 3 {
            tracing::error!(
                id,
                failures,
                "worker keeps dying right after start; next attempt in {delay:?}"
            );
        }
        *self
            .respawns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(0) += 1;
        if let Some(cause) = cause {
            self.shared.counters.restart(cause);
        }
        let sup = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if sup.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            let ev = match sup.spawn_worker(id).await {
                Ok((info, slots)) => WorkerEvent::Started {
                    id,
                    info,
                    slots,
                    replaces,
                    ack: None,
                },
                Err(reason) => WorkerEvent::StartFailed {
                    id,
                    reason,
                    replaces,
                },
            };
            let _ = sup.events.send(ev);
        });
    }

    /// After the fork server died: a new one imports the app (a new generation) and forks every
    /// worker again. If the app no longer imports, the pool cannot serve and says so.
    async fn recover_fork_server(self: Arc<Self>) {
        let _one = self.reload_lock.lock().await;
        let opts = &self.shared.opts;
        let number = self.current().number + 1;
        let fs = match ForkServer::start(&opts.command, opts.start_timeout, number).await {
            Ok(Started::Ready(fs)) => fs,
            Ok(Started::LoadFailed(msg)) => {
                tracing::error!("{msg}");
                let _ = self.fatal.send(Some(
                    "the fork server died and the app no longer imports".into(),
                ));
                return;
            }
            Ok(Started::Exited(status)) => {
                let _ = self.fatal.send(Some(format!(
                    "the fork server died and a new one exited ({status})"
                )));
                return;
            }
            Err(e) => {
                let _ = self.fatal.send(Some(format!(
                    "the fork server died and a new one cannot start: {e}"
                )));
                return;
            }
        };
        self.watch_fork_server(fs.clone());
        self.fork_servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fs.clone());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Generation {
            number,
            spawner: Spawner::Fork(fs),
        });
        self.stop_idle_fork_servers();
        let ids: Vec<u32> = self
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for id in ids {
            self.schedule(id, 0, None, Some(RestartReason::Crash));
        }
    }

    /// Gives a new worker's slots to the queue (through the event loop, which also retires the
    /// worker it `replaces`) and waits until that is done.
    async fn hand_over(
        &self,
        id: u32,
        info: Arc<WorkerInfo>,
        slots: Vec<Slot>,
        replaces: Option<Arc<WorkerInfo>>,
    ) {
        let (ack, acked) = tokio::sync::oneshot::channel();
        let _ = self.events.send(WorkerEvent::Started {
            id,
            info,
            slots,
            replaces,
            ack: Some(ack),
        });
        let _ = acked.await;
    }

    /// Re-imports the app and replaces every worker with zero failed requests: a new
    /// generation is loaded (in preload mode a new fork server imports the app, and a failure
    /// there leaves the old workers serving), then each old worker is replaced by a new one and
    /// stops taking work only once its replacement is ready; it finishes what it holds and
    /// exits. Returns once every new worker serves, with a summary for the log.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<String, String> {
        let _one = self.reload_lock.lock().await;
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("the server is shutting down".into());
        }
        let opts = &self.shared.opts;
        let started = Instant::now();
        let old = self.current();
        let number = old.number + 1;
        let spawner = match opts.mode {
            SpawnMode::Preload => {
                match ForkServer::start(&opts.command, opts.start_timeout, number).await {
                    Ok(Started::Ready(fs)) => {
                        self.watch_fork_server(fs.clone());
                        self.fork_servers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(fs.clone());
                        Spawner::Fork(fs)
                    }
                    Ok(Started::LoadFailed(msg)) => {
                        return Err(format!("the app could not be imported:\n{msg}"));
                    }
                    Ok(Started::Exited(status)) => {
                        return Err(format!("the new fork server exited ({status})"));
                    }
                    Err(e) => return Err(format!("cannot start a new fork server: {e}")),
                }
            }
            SpawnMode::Lazy => Spawner::Exec,
        };
        let generation = Arc::new(Generation { number, spawner });

        // The workers to replace: one per id, alive, not already on its way out.
        let mut olds: Vec<Arc<WorkerInfo>> = self
            .registry
            .all()
            .into_iter()
            .filter(|w| w.generation < number && w.is_alive())
            .collect();
        olds.sort_by_key(|w| w.id);
        olds.retain(|w| w.claim_replacement());

        // The first replacement alone: it proves the new code starts before anything else
        // changes. If it does not, the old workers go on as if nothing happened.
        let count = olds.len();
        let mut olds = olds.into_iter();
        if let Some(first) = olds.next() {
            match self.spawn_worker_from(&generation, first.id).await {
                Ok((info, slots)) => {
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) = generation.clone();
                    self.shared.counters.restart(RestartReason::Reload);
                    self.hand_over(first.id, info, slots, Some(first)).await;
                }
                Err(reason) => {
                    first.release_claim();
                    for w in olds {
                        w.release_claim();
                    }
                    if let Spawner::Fork(fs) = &generation.spawner {
                        self.fork_servers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .retain(|f| !Arc::ptr_eq(f, fs));
                        fs.stop();
                    }
                    return Err(format!("a worker of the new app failed to start: {reason}"));
                }
            }
        } else {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = generation.clone();
        }

        // The rest together.
        let mut set = tokio::task::JoinSet::new();
        for old in olds {
            let (sup, generation) = (self.clone(), generation.clone());
            set.spawn(async move {
                let r = sup.spawn_worker_from(&generation, old.id).await;
                (old, r)
            });
        }
        let mut failed = 0;
        while let Some(r) = set.join_next().await {
            let Ok((old, r)) = r else { continue };
            self.shared.counters.restart(RestartReason::Reload);
            match r {
                Ok((info, slots)) => {
                    self.hand_over(old.id, info, slots, Some(old)).await;
                }
                Err(reason) => {
                    // The old worker keeps serving; the supervisor tries again with back-off.
                    failed += 1;
                    let _ = self.events.send(WorkerEvent::StartFailed {
                        id: old.id,
                        reason,
                        replaces: Some(old),
                    });
                }
            }
        }
        self.stop_idle_fork_servers();
        if failed > 0 {
            return Err(format!(
                "{failed} of {count} new workers failed to start; their old workers keep serving and they are retried"
            ));
        }
        Ok(format!(
            "app generation {number}: {count} new workers serving after {} ms; the old ones finish their requests and exit",
            started.elapsed().as_millis()
        ))
    }

    /// Adaptive workers, growing: whenever a request has to wait for a slot and fewer than
    /// `workers_max` workers exist, one more is started (one at a time; while requests still
    /// wait once it is ready, another).
    async fn scale_up(self: Arc<Self>) {
        let opts = &self.shared.opts;
        let Some(pressure) = &self.shared.queue.pressure else {
            return;
        };
        loop {
            pressure.notified().await;
            loop {
                if self.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                if self.shared.queue.lengths().1 == 0 {
                    break;
                }
                let id = {
                    let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
                    if ids.len() >= opts.workers_max {
                        break;
                    }
                    let Some(id) = (1..=opts.workers_max as u32).find(|i| !ids.contains(i)) else {
                        break;
                    };
                    ids.insert(id);
                    (id, ids.len())
                };
                let (id, count) = id;
                tracing::info!(
                    id,
                    "requests are waiting for a worker: starting worker {count} of at most {}",
                    opts.workers_max
                );
                match self.spawn_worker(id).await {
                    Ok((info, slots)) => {
                        self.hand_over(id, info, slots, None).await;
                    }
                    Err(reason) => {
                        self.ids
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        tracing::error!(id, "an extra worker failed to start: {reason}");
                        // Not at once again: a broken start would spin.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Adaptive workers, shrinking: once a second, a worker that has served nothing for
    /// `idle_timeout` is stopped while more than `workers` exist (the most recently added
    /// first). It takes no new work, and exits as its slots close.
    async fn scale_down(self: Arc<Self>) {
        let opts = &self.shared.opts;
        // Per pid: requests served when last seen, and since when that number has not moved.
        let mut seen: HashMap<u32, (u64, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            let mut workers = self.live_workers();
            workers.retain(|w| w.is_ready() && !w.is_being_replaced());
            seen.retain(|pid, _| workers.iter().any(|w| w.pid == *pid));
            let now = Instant::now();
            let mut idle = Vec::new();
            for w in &workers {
                let served = w.served();
                let entry = seen.entry(w.pid).or_insert((served, now));
                if entry.0 != served || w.busy.load(Ordering::Relaxed) > 0 {
                    *entry = (served, now);
                } else if now - entry.1 >= opts.idle_timeout {
                    idle.push(w.clone());
                }
            }
            idle.sort_by_key(|w| std::cmp::Reverse(w.id));
            let mut count = self.ids.lock().unwrap_or_else(|p| p.into_inner()).len();
            for w in idle {
                if count <= opts.workers || !w.claim_replacement() {
                    break;
                }
                self.ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&w.id);
                count -= 1;
                tracing::info!(
                    id = w.id,
                    pid = w.pid,
                    "worker idle for {:?}: stopping it ({count} left, at least {})",
                    opts.idle_timeout,
                    opts.workers
                );
                w.retire();
                self.shared.queue.purge_dead();
                seen.remove(&w.pid);
            }
        }
    }

    /// Once a second: replace workers that are too old or too big, kill the ones far too big.
    async fn watch(self: Arc<Self>) {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
        let rules = self.shared.opts.recycle.clone();
        let mut sys = match System::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "cannot read worker memory (sysinfo: {e}); max-worker-lifetime and the RSS limits are off"
                );
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            let workers = self.live_workers();
            if rules.reload_on_rss.is_some() || rules.evil_reload_on_rss.is_some() {
                let pids: Vec<Pid> = workers.iter().map(|w| Pid::from_u32(w.pid)).collect();
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&pids),
                    true,
                    ProcessRefreshKind::nothing().with_memory(),
                );
            }
            for w in workers {
                let rss = sys.process(Pid::from_u32(w.pid)).map_or(0, |p| p.memory());
                let mib = rss / (1024 * 1024);
                if let Some(limit) = rules.evil_reload_on_rss.filter(|l| rss > *l) {
                    tracing::warn!(
                        id = w.id,
                        pid = w.pid,
                        "worker RSS {mib} MiB is over evil-reload-on-rss ({} MiB): killing it",
                        limit / (1024 * 1024)
                    );
                    w.killed_for
                        .store(RestartReason::EvilReloadOnRss as u8, Ordering::Relaxed);
                    w.kill();
                    continue;
                }
                let (kind, reason) = if let Some(limit) = rules.reload_on_rss.filter(|l| rss > *l) {
                    let why = format!(
                        "uses {mib} MiB RSS (reload-on-rss {} MiB)",
                        limit / (1024 * 1024)
                    );
                    (RestartReason::ReloadOnRss, why)
                } else if let Some(life) = rules.max_lifetime.filter(|l| {
                    let extra = crate::jitter(w.pid, l.as_secs() / 10);
                    w.started.elapsed() > *l + Duration::from_secs(extra)
                }) {
                    let why = format!("is older than max-worker-lifetime ({life:?})");
                    (RestartReason::MaxLifetime, why)
                } else {
                    continue;
                };
                if w.claim_replacement() {
                    let _ = self.events.send(WorkerEvent::Recycle {
                        info: w.clone(),
                        kind,
                        reason,
                    });
                }
            }
        }
    }

    pub(crate) fn worker_stats(&self) -> Vec<crate::stats::WorkerStats> {
        let respawns = self
            .respawns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let harakiri = self
            .harakiri
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut v: Vec<_> = self
            .registry
            .all()
            .iter()
            .map(|w| {
                let mut s =
                    crate::stats::worker_stats(w, respawns.get(&w.id).copied().unwrap_or(0));
                s.harakiri = harakiri.get(&w.id).copied().unwrap_or(0);
                s
            })
            .collect();
        v.sort_by_key(|w| (w.id, w.pid));
        v
    }

    pub(crate) fn worker_pids(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.registry.all().iter().map(|w| (w.id, w.pid)).collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    pub(crate) async fn shutdown(&self, deadline: Duration) {
        self.shutting_down.store(true, Ordering::Relaxed);
        // Idle slots close now (their threads see the end and the worker exits); busy ones
        // close when their exchange ends.
        self.shared.queue.close();
        let until = tokio::time::Instant::now() + deadline;
        while !self.registry.is_empty() {
            let changed = self.registry.changed.notified();
            if tokio::time::timeout_at(until, changed).await.is_err() {
                break;
            }
        }
        let left = self.registry.all();
        if !left.is_empty() {
            tracing::warn!(
                count = left.len(),
                "workers still busy at the deadline; killing them"
            );
            for w in &left {
                w.kill();
            }
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            while !self.registry.is_empty() {
                let changed = self.registry.changed.notified();
                if tokio::time::timeout_at(until, changed).await.is_err() {
                    break;
                }
            }
        }
        // Workers are children of the fork server and die with it, so it goes last.
        let fork_servers =
            std::mem::take(&mut *self.fork_servers.lock().unwrap_or_else(|p| p.into_inner()));
        for fs in fork_servers {
            fs.stop();
            let mut child = fs.child.lock().await;
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
