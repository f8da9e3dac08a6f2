//! The pool: a bounded queue in front of worker slots, and the supervisor that keeps the
//! workers running.
//!
//! **Architecture invariants:** this crate never links Python (it starts workers as processes
//! and talks to them only through `flaskhost-ipc`), never blocks a tokio thread, and never
//! queues a request behind a busy slot: a request either takes an idle slot, waits in the
//! bounded queue for the next free one, or is refused at once.

mod body;
mod error;
mod exchange;
mod metrics;
mod queue;
mod slot;
mod spawn;
mod stats;
mod supervisor;
mod sweep;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use flaskhost_ipc::request::RequestMeta;
use http::{HeaderMap, Response};

pub use body::ResponseBody;
pub use error::{BoxError, DispatchError, StreamError};
pub use metrics::PoolHistograms;
pub use spawn::{SpawnMode, WorkerCommand};
pub use stats::{PoolStats, RestartReason, WorkerStats, WorkerStatus, rss_bytes};
pub use supervisor::{StartError, WorkerEvent};

/// The request body as the pool takes it (the front boxes whatever hyper gives it).
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// How the pool runs. Built by the binary from the validated configuration.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Workers started at once (and, with adaptive workers, always kept).
    pub workers: usize,
    /// Adaptive workers: another worker is started (up to this many) whenever a request has to
    /// wait for a slot, and one idle for `idle_timeout` is stopped (down to `workers`).
    /// Equal to `workers` for a fixed pool.
    pub workers_max: usize,
    pub idle_timeout: Duration,
    pub threads: usize,
    pub mode: SpawnMode,
    pub command: WorkerCommand,
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// Longest wait for the app's response head, and between two pieces of a streamed body.
    pub timeout: Duration,
    /// Longest wait for the next piece of a request body from the client.
    pub body_timeout: Duration,
    /// Bodies up to this size are read whole before a slot is taken.
    pub post_buffering: usize,
    /// Longest a new worker may take to import the app and report ready.
    pub start_timeout: Duration,
    pub recycle: Recycle,
    /// Keep the latency histograms of [`Pool::histograms`] (`--metrics`).
    pub metrics: bool,
}

/// When a worker is replaced although nothing is wrong with it (uWSGI's max-requests,
/// max-worker-lifetime, reload-on-rss, evil-reload-on-rss). Except for the evil limit, the
/// replacement is started first and the old worker stops taking work only once it is ready, so
/// capacity never dips; the old worker finishes what it holds and exits.
#[derive(Debug, Clone, Default)]
pub struct Recycle {
    /// Replace a worker after this many requests…
    pub max_requests: Option<u64>,
    /// …plus a per-worker extra of up to this many, so workers do not recycle together.
    pub max_requests_delta: u64,
    /// Replace a worker older than this (plus up to 10% per-worker jitter).
    pub max_lifetime: Option<Duration>,
    /// Replace a worker whose resident memory exceeds this many bytes (after its request).
    pub reload_on_rss: Option<u64>,
    /// Kill a worker whose resident memory exceeds this many bytes, even mid-request.
    pub evil_reload_on_rss: Option<u64>,
}

impl Recycle {
    fn watches_memory_or_age(&self) -> bool {
        self.max_lifetime.is_some()
            || self.reload_on_rss.is_some()
            || self.evil_reload_on_rss.is_some()
    }
}

/// A per-worker spread in `0..=span`, so that workers started together do not all recycle
/// together (gunicorn's max-requests-jitter). Derived from the pid: stable for a worker,
/// different between workers.
pub(crate) fn jitter(pid: u32, span: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15) % (span + 1)
}

pub(crate) struct Shared {
    pub(crate) opts: PoolOptions,
    pub(crate) queue: queue::Queue,
    /// To the supervisor (recycling requests from the request path).
    pub(crate) events: tokio::sync::mpsc::UnboundedSender<WorkerEvent>,
    pub(crate) counters: Counters,
    /// Latency histograms, when metrics are on.
    pub(crate) metrics: Option<metrics::PoolMetrics>,
    /// Enforces `timeout` and `queue_timeout` (see `sweep.rs`).
    pub(crate) sweeper: Arc<sweep::Sweeper>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Ends the sweeper task if it sleeps.
        self.sweeper.stop();
    }
}

/// Pool-wide totals, kept across worker replacements.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) exceptions: AtomicU64,
    pub(crate) harakiri: AtomicU64,
    pub(crate) respawns: AtomicU64,
    pub(crate) queue_rejections: AtomicU64,
    pub(crate) queue_timeouts: AtomicU64,
    /// Requests sent to a second worker because the first died before answering.
    pub(crate) retries: AtomicU64,
    /// Replacements started, indexed by `RestartReason as usize - 1`.
    pub(crate) restarts: [AtomicU64; RestartReason::ALL.len()],
}

impl Counters {
    pub(crate) fn restart(&self, reason: RestartReason) {
        self.respawns.fetch_add(1, Relaxed);
        self.restarts[reason as usize - 1].fetch_add(1, Relaxed);
    }
}

impl Shared {
    /// Counts a finished request on `worker` and asks for its replacement once it has served
    /// its share (max-requests).
    pub(crate) fn request_done(&self, worker: &std::sync::Arc<slot::WorkerInfo>) {
        let served = worker.count_request();
        self.counters.requests.fetch_add(1, Relaxed);
        let Some(max) = self.opts.recycle.max_requests else {
            return;
        };
        if served >= max + jitter(worker.pid, self.opts.recycle.max_requests_delta)
            && worker.claim_replacement()
        {
            let _ = self.events.send(WorkerEvent::Recycle {
                info: worker.clone(),
                kind: RestartReason::MaxRequests,
                reason: format!("served {served} requests (max-requests {max})"),
            });
        }
    }
}

/// A running pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Arc<supervisor::Supervisor>,
}

impl Pool {
    /// Starts the fork server (in preload mode) and every worker, and returns once all are
    /// ready. An app that fails to import is reported here, before anything listens.
    pub async fn start(opts: PoolOptions) -> Result<Pool, StartError> {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: queue::Queue::new(
                opts.queue_size,
                opts.queue_timeout,
                opts.workers_max > opts.workers,
            ),
            metrics: opts.metrics.then(metrics::PoolMetrics::default),
            sweeper: Arc::new(sweep::Sweeper::new()),
            opts,
            events,
            counters: Counters::default(),
        });
        tokio::spawn(sweep::run(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
            sweep::period(shared.opts.timeout, shared.opts.queue_timeout),
        ));
        let supervisor = supervisor::Supervisor::start(shared.clone(), rx).await?;
        Ok(Pool { shared, supervisor })
    }

    /// Runs one request on a worker.
    pub async fn dispatch(
        &self,
        meta: &RequestMeta<'_>,
        headers: &HeaderMap,
        body: RequestBody,
    ) -> Result<Response<ResponseBody>, DispatchError> {
        exchange::dispatch(&self.shared, meta, headers, body).await
    }

    /// The pids of the live workers, by worker id.
    pub fn worker_pids(&self) -> Vec<(u32, u32)> {
        self.supervisor.worker_pids()
    }

    /// Every live worker and the pool's totals.
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        let (idle_slots, queue_length) = self.shared.queue.lengths();
        PoolStats {
            workers: self.supervisor.worker_stats(),
            idle_slots,
            queue_length,
            queue_rejections: c.queue_rejections.load(Relaxed),
            queue_timeouts: c.queue_timeouts.load(Relaxed),
            requests: c.requests.load(Relaxed),
            exceptions: c.exceptions.load(Relaxed),
            harakiri: c.harakiri.load(Relaxed),
            respawns: c.respawns.load(Relaxed),
            retries: c.retries.load(Relaxed),
            restarts: RestartReason::ALL
                .iter()
                .map(|r| (*r, c.restarts[*r as usize - 1].load(Relaxed)))
                .collect(),
        }
    }

    /// The app-time and queue-wait histograms (`None` unless [`PoolOptions::metrics`]).
    pub fn histograms(&self) -> Option<PoolHistograms> {
        self.shared
            .metrics
            .as_ref()
            .map(metrics::PoolMetrics::snapshot)
    }

    /// (idle slots, waiting requests).
    pub fn queue_lengths(&self) -> (usize, usize) {
        self.shared.queue.lengths()
    }

    /// Resolves when the pool can no longer serve (the fork server died), with the reason.
    pub async fn failed(&self) -> String {
        let mut rx = self.supervisor.fatal();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Re-imports the app and replaces every worker, with zero failed requests (SIGHUP,
    /// `--touch-reload`). On error the old workers keep serving.
    pub async fn reload(&self) -> Result<String, String> {
        self.supervisor.reload().await
    }

    /// Stops the pool: no new requests, idle workers stop now, and any still running after
    /// `deadline` are killed. Call after the front has drained its connections.
    pub async fn shutdown(&self, deadline: Duration) {
        self.supervisor.shutdown(deadline).await;
    }
}
