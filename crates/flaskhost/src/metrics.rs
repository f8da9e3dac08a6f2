//! `--metrics ADDR`: Prometheus' text exposition at `GET /metrics`, on a listener of its own
//! (never the public one; any other path is a 404). Each scrape renders the front's response
//! counters, the pool's histograms and a fresh `Pool::stats()`; nothing is computed between
//! scrapes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flaskhost_front::{FrontMetrics, Listener, RouteKind};
use flaskhost_pool::{Pool, WorkerStatus, rss_bytes};
use flaskhost_telemetry::{Exposition, Type};

/// The listener's address for the log: `http://127.0.0.1:9100/metrics` or `unix:/path`.
pub fn describe(l: &Listener) -> String {
    match l {
        Listener::Tcp(_) => format!("{}/metrics", l.describe()),
        Listener::Unix { .. } => l.describe(),
    }
}

/// Serves `/metrics` on `listener` until the task is dropped (a Unix socket file is removed
/// then).
pub async fn serve(listener: Listener, pool: Pool, front: Arc<FrontMetrics>) {
    let scrape = move || {
        let text = render(&pool, &front);
        async move { ([(header::CONTENT_TYPE, Exposition::CONTENT_TYPE)], text) }
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "404 Not Found: the metrics are at /metrics\n",
            )
                .into_response()
        });
    let result = match listener {
        Listener::Tcp(l) => axum::serve(l, app).await,
        Listener::Unix {
            listener,
            path,
            remove_on_exit,
        } => {
            let _remove = remove_on_exit.then(|| RemoveOnDrop(path));
            axum::serve(listener, app).await
        }
    };
    if let Err(e) = result {
        tracing::error!("metrics: the listener failed: {e}");
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Index of a worker state in [`STATES`]; a new state fails to compile here until listed.
fn state_index(s: WorkerStatus) -> usize {
    match s {
        WorkerStatus::Starting => 0,
        WorkerStatus::Idle => 1,
        WorkerStatus::Busy => 2,
        WorkerStatus::Retiring => 3,
    }
}

const STATES: [WorkerStatus; 4] = [
    WorkerStatus::Starting,
    WorkerStatus::Idle,
    WorkerStatus::Busy,
    WorkerStatus::Retiring,
];

/// The exposition. Families with a fixed label set list every value, zeros included, so a
/// series never appears out of nowhere; responses list the (kind, status) pairs seen.
pub fn render(pool: &Pool, front: &FrontMetrics) -> String {
    let mut e = Exposition::new();

    let name = "flaskhost_requests_total";
    e.family(
        name,
        Type::Counter,
        "Responses sent, by route kind (app, static, redirect, refused) and status code.",
    );
    for (kind, status, n) in front.responses() {
        let status = status.to_string();
        e.sample(name, &[("kind", kind.as_str()), ("status", &status)], n);
    }

    let name = "flaskhost_request_duration_seconds";
    e.family(
        name,
        Type::Histogram,
        "From the request reaching flaskhost to the end of its response body, by route kind.",
    );
    for kind in RouteKind::ALL {
        e.histogram(name, &[("kind", kind.as_str())], &front.duration(kind));
    }

    if let Some(h) = pool.histograms() {
        let name = "flaskhost_app_duration_seconds";
        e.family(
            name,
            Type::Histogram,
            "From a request handed to a worker to the app's response head (or its exception).",
        );
        e.histogram(name, &[], &h.app);
        let name = "flaskhost_queue_wait_seconds";
        e.family(
            name,
            Type::Histogram,
            "Time waiting for a free worker slot (0 when one was idle); refused requests are not included.",
        );
        e.histogram(name, &[], &h.queue_wait);
    }

    let stats = pool.stats();
    let name = "flaskhost_workers";
    e.family(
        name,
        Type::Gauge,
        "Worker processes by state (retiring: replaced, finishing its requests).",
    );
    let mut by_state = [0u64; STATES.len()];
    for w in &stats.workers {
        by_state[state_index(w.status)] += 1;
    }
    for s in STATES {
        e.sample(name, &[("state", s.as_str())], by_state[state_index(s)]);
    }

    let name = "flaskhost_worker_restarts_total";
    e.family(
        name,
        Type::Counter,
        "Workers started to replace another, by reason.",
    );
    for (reason, n) in &stats.restarts {
        e.sample(name, &[("reason", reason.as_str())], n);
    }

    let name = "flaskhost_worker_rss_bytes";
    e.family(name, Type::Gauge, "Resident memory of each worker process.");
    for w in &stats.workers {
        let (id, pid) = (w.id.to_string(), w.pid.to_string());
        e.sample(name, &[("worker", &id), ("pid", &pid)], rss_bytes(w.pid));
    }

    let gauges: [(&str, &str, usize); 2] = [
        (
            "flaskhost_queue_length",
            "Requests waiting for a free worker slot.",
            stats.queue_length,
        ),
        (
            "flaskhost_idle_slots",
            "Worker slots (threads) free to take a request.",
            stats.idle_slots,
        ),
    ];
    for (name, help, v) in gauges {
        e.family(name, Type::Gauge, help);
        e.sample(name, &[], v);
    }
    let counters: [(&str, &str, u64); 6] = [
        (
            "flaskhost_malformed_requests_total",
            "Request heads the HTTP parser rejected itself (400, connection closed); not in flaskhost_requests_total.",
            front.malformed(),
        ),
        (
            "flaskhost_queue_rejections_total",
            "Requests refused with 503 because the queue was full.",
            stats.queue_rejections,
        ),
        (
            "flaskhost_queue_timeouts_total",
            "Requests answered 503 after waiting queue-timeout for a worker.",
            stats.queue_timeouts,
        ),
        (
            "flaskhost_exceptions_total",
            "Requests where the app raised (500, or a cut streamed response).",
            stats.exceptions,
        ),
        (
            "flaskhost_harakiri_total",
            "Requests whose worker was killed for overrunning timeout (504).",
            stats.harakiri,
        ),
        (
            "flaskhost_retries_total",
            "Idempotent requests sent to a second worker because the first died before answering.",
            stats.retries,
        ),
    ];
    for (name, help, v) in counters {
        e.family(name, Type::Counter, help);
        e.sample(name, &[], v);
    }
    e.finish()
}
