//! `flaskhost serve`: the lifecycle of the main process.
//!
//! config (validated, users looked up, pidfile checked; nothing bound) → tracing → workers
//! started (the app is imported before anything listens, so a broken app never accepts a
//! connection; with `uid` they switch users first) → bind (or take systemd's sockets) →
//! pidfile → switch users → serve → signal → drain with a deadline (SIGTERM) or not
//! (SIGINT, SIGQUIT) → stop workers → remove the pidfile → exit.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flaskhost_config::{ServeConfig, Sources};
use flaskhost_front::{Edge, FrontOptions};
use flaskhost_pool::{Pool, PoolOptions, SpawnMode, StartError, WorkerCommand};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::ServeArgs;

/// How long a worker may take to import the app and report ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Listen backlog (nginx and gunicorn use 511/2048; the kernel caps it at somaxconn).
const BACKLOG: u32 = 1024;

pub fn run(args: &ServeArgs) -> ExitCode {
    let env = flaskhost_config::process_env();
    let cfg = match flaskhost_config::load(Sources {
        file: args.config.as_deref(),
        env: &env,
        cli: flaskhost_config::Options::default(),
        cli_text: args.pairs(),
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flaskhost: configuration error: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    crate::init_tracing(&cfg.log_level);
    let slots = cfg
        .lifecycle
        .workers_max
        .map_or(cfg.workers.get(), |m| m.get())
        .saturating_mul(cfg.threads.get());
    crate::fdlimit::raise(cfg.edge.limits.max_connections as u64, slots as u64);
    // `uid`/`gid` are looked up, and the switch checked to be possible, before anything
    // starts; a wrong user is a configuration error like any other.
    let run_as = match crate::privileges::resolve(&cfg.run_as)
        .and_then(|c| c.map(|c| c.check().map(|()| c)).transpose())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flaskhost: configuration error: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    // Absolute before `chdir`, so that `flaskhost reload --pidfile` run from the same
    // directory finds it.
    let pidfile = match cfg.pidfile.as_deref().map(std::path::absolute).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("flaskhost: configuration error: `pidfile`: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    if let Some(Err(e)) = pidfile.as_deref().map(crate::pidfile::check_free) {
        eprintln!("flaskhost: {e}");
        return ExitCode::FAILURE;
    }
    // Before any thread exists: this edits the environment.
    let activated = match crate::activation::take() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flaskhost: socket activation: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    if let Some((dir, Err(e))) = cfg
        .chdir
        .as_ref()
        .map(|d| (d, std::env::set_current_dir(d)))
    {
        eprintln!(
            "flaskhost: configuration error: `chdir`: cannot enter {}: {e}",
            dir.display()
        );
        return ExitCode::from(crate::EXIT_USAGE);
    }
    // On one core (affinity or CPU quota), tokio's multi-thread runtime would run one worker
    // thread beside the main thread, paying for work stealing and cross-thread wake-ups that
    // cannot help; the current-thread runtime runs the same tasks for fewer instructions.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let rt = match if one_core {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flaskhost: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(lifecycle(
        cfg,
        Process {
            run_as,
            pidfile,
            activated,
        },
    ))
}

/// What `run` prepared about the process itself, before the runtime started.
struct Process {
    /// The user and group to switch to after binding (`uid`, `gid`).
    run_as: Option<crate::privileges::Credentials>,
    /// Where to write the pid (absolute).
    pidfile: Option<std::path::PathBuf>,
    /// Listening sockets handed over by systemd; when there are any, `bind` is not used.
    activated: Vec<crate::activation::Activated>,
}

fn pool_options(
    cfg: &ServeConfig,
    run_as: Option<&crate::privileges::Credentials>,
) -> std::io::Result<PoolOptions> {
    let program = std::env::current_exe()?;
    let app_dir = std::env::current_dir()?;
    let mut args: Vec<std::ffi::OsString> = vec![
        "worker".into(),
        "--module".into(),
        cfg.app.module.clone().into(),
        "--attr".into(),
        cfg.app.attr.clone().into(),
        "--app-dir".into(),
        app_dir.into_os_string(),
        "--log-level".into(),
        cfg.log_level.clone().into(),
    ];
    if let Some(call) = &cfg.app.call_args {
        args.push("--call".into());
        args.push(call.clone().into());
    }
    if let Some(venv) = &cfg.venv {
        args.push("--venv".into());
        args.push(venv.clone().into_os_string());
    }
    if cfg.threads.get() > 1 {
        args.push("--multithread".into());
    }
    let workers_max = cfg
        .lifecycle
        .workers_max
        .map_or(cfg.workers.get(), |m| m.get());
    if workers_max > 1 {
        args.push("--multiprocess".into());
    }
    // Only the fork server reads it.
    if cfg.preload_immortal && !cfg.lazy_apps {
        args.push("--immortal".into());
    }
    // Workers start before anything is bound, so they switch users themselves, before the
    // app is imported.
    if let Some(c) = run_as {
        args.extend(c.worker_args().into_iter().map(Into::into));
    }
    Ok(PoolOptions {
        workers: cfg.workers.get(),
        workers_max,
        idle_timeout: cfg.lifecycle.workers_idle_timeout,
        threads: cfg.threads.get(),
        mode: if cfg.lazy_apps {
            SpawnMode::Lazy
        } else {
            SpawnMode::Preload
        },
        command: WorkerCommand { program, args },
        queue_size: cfg.queue_size,
        queue_timeout: cfg.queue_timeout,
        timeout: cfg.timeout,
        // How long the client may pause while sending a body (nginx client_body_timeout).
        body_timeout: cfg.edge.limits.body_timeout,
        post_buffering: usize::try_from(cfg.post_buffering).unwrap_or(usize::MAX),
        start_timeout: START_TIMEOUT,
        recycle: flaskhost_pool::Recycle {
            max_requests: cfg.lifecycle.max_requests,
            max_requests_delta: cfg.lifecycle.max_requests_delta,
            max_lifetime: cfg.lifecycle.max_worker_lifetime,
            reload_on_rss: cfg.lifecycle.reload_on_rss,
            evil_reload_on_rss: cfg.lifecycle.evil_reload_on_rss,
        },
        metrics: cfg.lifecycle.metrics.is_some(),
    })
}

/// What ended serving.
enum Stop {
    Graceful(&'static str),
    Fast(&'static str),
    Failed(String),
}

/// The signals the main process handles. Registered before anything starts, so that a
/// signal arriving at any point after start-up (systemd or Kubernetes may stop the server the
/// moment it says it listens) is handled, never fatal by default action.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// Run on SIGHUP (the edge: certificates re-read, access log reopened).
    reload_hooks: Vec<Box<dyn Fn() + Send + Sync>>,
    /// Where SIGHUP asks for an app reload (the reloader task).
    reload_app: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            reload_hooks: Vec::new(),
            reload_app: None,
        })
    }

    async fn wait_for_stop(&mut self, pool: &Pool) -> Stop {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Stop::Graceful("SIGTERM"),
                // SIGINT stops fast, as in gunicorn, uWSGI and nginx: Ctrl-C means "now".
                _ = self.int.recv() => return Stop::Fast("SIGINT"),
                _ = self.quit.recv() => return Stop::Fast("SIGQUIT"),
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: re-reading TLS certificates, reopening the access log, reloading the app");
                    for hook in &self.reload_hooks {
                        hook();
                    }
                    if let Some(tx) = &self.reload_app {
                        let _ = tx.send("SIGHUP");
                    }
                }
                reason = pool.failed() => return Stop::Failed(reason),
            }
        }
    }
}

async fn lifecycle(cfg: ServeConfig, process: Process) -> ExitCode {
    let started = Instant::now();
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = match pool_options(&cfg, process.run_as.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("cannot find this executable to start workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = match &cfg.app.call_args {
        Some(a) => format!("{}:{}({a})", cfg.app.module, cfg.app.attr),
        None => format!("{}:{}", cfg.app.module, cfg.app.attr),
    };
    tracing::info!(
        app = %spec,
        workers = cfg.workers.get(),
        workers_max = opts.workers_max,
        threads = cfg.threads.get(),
        mode = if cfg.lazy_apps { "lazy" } else { "preload" },
        "starting"
    );
    // The edge's files (certificates, static mounts, access log) are checked before any
    // worker starts, so a wrong path fails fast with nothing to clean up.
    let mut edge = match Edge::load(&cfg.edge) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("flaskhost: configuration error: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    edge.metrics = cfg
        .lifecycle
        .metrics
        .as_ref()
        .map(|_| Arc::new(flaskhost_front::FrontMetrics::new()));
    {
        let edge = edge.clone();
        signals.reload_hooks.push(Box::new(move || edge.reload()));
    }
    let pool = match Pool::start(opts).await {
        Ok(p) => p,
        Err(StartError::AppLoad(msg)) => {
            tracing::error!("{msg}");
            eprintln!("flaskhost: the app could not be loaded; nothing was started");
            return ExitCode::from(3);
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };

    let front_opts = FrontOptions {
        script_name: cfg.script_name.clone(),
        max_body_size: cfg.max_body_size,
        header_read_timeout: cfg.edge.limits.header_timeout,
    };
    let from_systemd = !process.activated.is_empty();
    let names: Vec<Option<String>> = process.activated.iter().map(|a| a.name.clone()).collect();
    let bound = if from_systemd {
        tracing::info!(
            sockets = names.len(),
            "socket activation: serving the sockets systemd passed (`bind` is not used)"
        );
        flaskhost_front::adopt(process.activated.into_iter().map(|a| a.socket).collect())
    } else {
        flaskhost_front::bind(&cfg.binds, cfg.socket_mode, BACKLOG)
    };
    let listeners = match bound {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            pool.shutdown(Duration::from_secs(5)).await;
            return ExitCode::FAILURE;
        }
    };
    let redirect_binds: Vec<flaskhost_config::Bind> = cfg
        .edge
        .redirect_http
        .iter()
        .map(|a| flaskhost_config::Bind::Tcp(*a))
        .collect();
    let redirects = match flaskhost_front::bind(&redirect_binds, None, BACKLOG) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("redirect-http: {e}");
            pool.shutdown(Duration::from_secs(5)).await;
            return ExitCode::FAILURE;
        }
    };
    // The metrics listener is bound with the others: a scrape target that silently is not
    // there is worse than a server that does not start.
    let metrics_binds: Vec<flaskhost_config::Bind> =
        cfg.lifecycle.metrics.iter().cloned().collect();
    let metrics_listener = match flaskhost_front::bind(&metrics_binds, None, BACKLOG) {
        Ok(mut l) => l.pop(),
        Err(e) => {
            tracing::error!("metrics: {e}");
            pool.shutdown(Duration::from_secs(5)).await;
            return ExitCode::FAILURE;
        }
    };
    let stats_listener = match cfg.lifecycle.stats.clone() {
        Some(bind) => crate::stats::bind(bind).await,
        None => None,
    };
    // Written as root if started as root (so /run works), before the switch below.
    let pidfile = match process.pidfile.as_deref() {
        None => None,
        Some(path) => match crate::pidfile::PidFile::write(path) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("pidfile: cannot write {}: {e}", path.display());
                pool.shutdown(Duration::from_secs(5)).await;
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(run_as) = &process.run_as {
        // The Unix sockets flaskhost created belong to the user it runs as, as gunicorn does,
        // so `socket-mode` means what it says for that user and group.
        // The metrics and stats sockets too, so they can be removed and rebound as that user.
        let created = listeners
            .iter()
            .chain(metrics_listener.iter())
            .filter_map(|l| match l {
                flaskhost_front::Listener::Unix {
                    path,
                    remove_on_exit: true,
                    ..
                } => Some(path.as_path()),
                _ => None,
            })
            .chain(match &cfg.lifecycle.stats {
                Some(flaskhost_config::Bind::Unix(path)) if stats_listener.is_some() => {
                    Some(path.as_path())
                }
                _ => None,
            });
        for path in created {
            if let Err(e) = std::os::unix::fs::chown(path, run_as.uid, Some(run_as.gid)) {
                tracing::warn!("cannot hand {} to {}: {e}", path.display(), run_as.label);
            }
        }
        if let Err(e) = run_as.switch() {
            tracing::error!("cannot switch to {}: {e}", run_as.label);
            pool.shutdown(Duration::ZERO).await;
            return ExitCode::FAILURE;
        }
        tracing::info!(
            groups = ?run_as.groups,
            "running as {} from now on",
            run_as.label
        );
    }
    for (i, l) in listeners.iter().enumerate() {
        if from_systemd {
            match names.get(i).cloned().flatten() {
                Some(name) => {
                    tracing::info!("listening on {} (systemd socket {name})", edge.describe(l));
                }
                None => tracing::info!("listening on {} (systemd socket)", edge.describe(l)),
            }
        } else {
            tracing::info!("listening on {}", edge.describe(l));
        }
    }
    for l in &redirects {
        tracing::info!("listening on {} (redirects to https)", l.describe());
    }
    let pids: Vec<String> = pool
        .worker_pids()
        .iter()
        .map(|(id, pid)| format!("{id}:{pid}"))
        .collect();
    tracing::info!(
        workers = %pids.join(","),
        "ready in {} ms",
        started.elapsed().as_millis()
    );
    let notifier = Arc::new(crate::notify::Notifier::from_env());
    notifier.send(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving {} with {} workers",
        std::process::id(),
        spec,
        pids.len()
    ));
    let watchdog = crate::notify::Notifier::watchdog_interval()
        .map(|every| tokio::spawn(notifier.clone().watchdog(every)));

    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let reloader = tokio::spawn(reloader(pool.clone(), notifier.clone(), reload_rx));
    let touch_task = (!cfg.lifecycle.touch_reload.is_empty()).then(|| {
        tokio::spawn(watch_touch_reload(
            cfg.lifecycle.touch_reload.clone(),
            reload_tx.clone(),
        ))
    });
    signals.reload_app = Some(reload_tx);
    let stats_task =
        stats_listener.map(|l| tokio::spawn(crate::stats::serve(l, pool.clone(), started)));
    let metrics_task = metrics_listener
        .zip(edge.metrics.clone())
        .map(|(l, front)| {
            tracing::info!("metrics on {}", crate::metrics::describe(&l));
            tokio::spawn(crate::metrics::serve(l, pool.clone(), front))
        });
    let router = flaskhost_front::edge_router(Arc::new(pool.clone()), &front_opts, &edge);
    let stop = Arc::new(std::sync::Mutex::new(None::<Stop>));
    let shutdown = {
        let stopping = notifier.clone();
        let (pool, stop, grace) = (pool.clone(), stop.clone(), cfg.graceful_timeout);
        async move {
            let s = signals.wait_for_stop(&pool).await;
            let grace = match &s {
                Stop::Graceful(sig) => {
                    tracing::info!("{sig}: no longer accepting; draining for up to {grace:?}");
                    grace
                }
                Stop::Fast(sig) => {
                    tracing::info!("{sig}: stopping now (connections closed, workers killed)");
                    Duration::ZERO
                }
                Stop::Failed(reason) => {
                    tracing::error!("stopping: {reason}");
                    Duration::ZERO
                }
            };
            *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
            stopping.send("STOPPING=1\nSTATUS=draining");
            grace
        }
    };
    let drained = flaskhost_front::serve_edge(listeners, redirects, router, &edge, shutdown).await;
    edge.close();
    if !drained {
        tracing::warn!("connections still open at the deadline were closed");
    }
    if let Some(t) = stats_task {
        t.abort();
    }
    if let Some(t) = metrics_task {
        t.abort();
        // Dropping the task removes its Unix socket file.
        let _ = t.await;
    }
    if let Some(t) = watchdog {
        t.abort();
    }
    if let Some(t) = touch_task {
        t.abort();
    }
    reloader.abort();
    let (failed, fast) = match *stop.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(Stop::Failed(_)) => (true, false),
        Some(Stop::Fast(_)) => (false, true),
        _ => (false, false),
    };
    // A fast stop kills busy workers at once; otherwise idle workers exit on their own and a
    // request still running past the drain gets a little longer before its worker is killed.
    pool.shutdown(if fast {
        Duration::ZERO
    } else {
        Duration::from_secs(5)
    })
    .await;
    drop(pidfile);
    tracing::info!("stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs app reloads one after another, as SIGHUP and touch-reload ask for them. Requests for a
/// reload that arrive while one runs are merged into one more reload after it. systemd hears
/// `RELOADING=1` before and `READY=1` after (Type=notify-reload's protocol).
async fn reloader(
    pool: Pool,
    notifier: Arc<crate::notify::Notifier>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) {
    while let Some(why) = rx.recv().await {
        while rx.try_recv().is_ok() {}
        notifier.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the app ({why})",
            crate::notify::monotonic_usec()
        ));
        tracing::info!(
            "{why}: reloading the app: new workers start, old ones stop taking work as each new one is ready"
        );
        match pool.reload().await {
            Ok(summary) => tracing::info!("reload done: {summary}"),
            Err(reason) => {
                tracing::error!("reload failed, the running workers keep serving: {reason}");
            }
        }
        let workers = pool.worker_pids().len();
        notifier.send(&format!("READY=1\nSTATUS=serving with {workers} workers"));
    }
}

/// Asks for a reload whenever one of `files` gets a new modification time (or appears),
/// checking once a second like uWSGI's touch-reload. A file missing at start counts once it
/// is created.
async fn watch_touch_reload(
    files: Vec<std::path::PathBuf>,
    tx: tokio::sync::mpsc::UnboundedSender<&'static str>,
) {
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Vec<_> = files.iter().map(|f| mtime(f)).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (file, last) in files.iter().zip(seen.iter_mut()) {
            let now = mtime(file);
            if now.is_some() && now != *last {
                tracing::info!("{} was touched", file.display());
                if tx.send("touch-reload").is_err() {
                    return;
                }
            }
            *last = now;
        }
    }
}
