//! A snapshot of the pool for the stats socket and metrics (uWSGI's stats server).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::slot::WorkerInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Started, importing the app or not yet handed work.
    Starting,
    Idle,
    Busy,
    /// Replaced, finishing what it holds.
    Retiring,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Starting => "starting",
            WorkerStatus::Idle => "idle",
            WorkerStatus::Busy => "busy",
            WorkerStatus::Retiring => "retiring",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub id: u32,
    pub pid: u32,
    pub status: WorkerStatus,
    /// Requests in flight on this worker.
    pub busy_slots: u32,
    pub requests: u64,
    pub exceptions: u64,
    /// Mean time from dispatch to the response head.
    pub avg_response: Duration,
    /// When this process started (seconds since the epoch).
    pub started_unix: u64,
    pub uptime: Duration,
    /// Times a worker with this id has been started after the first.
    pub respawns: u64,
    /// Times a worker with this id was killed for overrunning the timeout.
    pub harakiri: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub workers: Vec<WorkerStats>,
    pub idle_slots: usize,
    pub queue_length: usize,
    pub queue_rejections: u64,
    pub queue_timeouts: u64,
    pub requests: u64,
    pub exceptions: u64,
    pub harakiri: u64,
    pub respawns: u64,
    /// Requests sent again to another worker after theirs died before answering.
    pub retries: u64,
    /// Workers started to replace another, by reason (every reason listed, zeros included).
    pub restarts: Vec<(RestartReason, u64)>,
}

/// Why a worker was replaced (the `reason` label of the restart counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RestartReason {
    /// It died on its own (exit, signal, crash).
    Crash = 1,
    /// It overran the request timeout and was killed.
    Harakiri,
    MaxRequests,
    MaxLifetime,
    ReloadOnRss,
    EvilReloadOnRss,
    /// The app was reloaded (SIGHUP, `flaskhost reload`, touch-reload).
    Reload,
}

impl RestartReason {
    pub const ALL: [RestartReason; 7] = [
        RestartReason::Crash,
        RestartReason::Harakiri,
        RestartReason::MaxRequests,
        RestartReason::MaxLifetime,
        RestartReason::ReloadOnRss,
        RestartReason::EvilReloadOnRss,
        RestartReason::Reload,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Harakiri => "harakiri",
            RestartReason::MaxRequests => "max_requests",
            RestartReason::MaxLifetime => "max_worker_lifetime",
            RestartReason::ReloadOnRss => "reload_on_rss",
            RestartReason::EvilReloadOnRss => "evil_reload_on_rss",
            RestartReason::Reload => "reload",
        }
    }
    pub(crate) fn from_u8(v: u8) -> Option<RestartReason> {
        RestartReason::ALL.into_iter().find(|r| *r as u8 == v)
    }
}

pub(crate) fn worker_stats(w: &WorkerInfo, respawns: u64) -> WorkerStats {
    let requests = w.served();
    let busy_slots = w.busy.load(Ordering::Relaxed);
    let micros = w.busy_micros.load(Ordering::Relaxed);
    let uptime = w.started.elapsed();
    let started_unix = SystemTime::now()
        .checked_sub(uptime)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    WorkerStats {
        id: w.id,
        pid: w.pid,
        status: if w.is_retiring() {
            WorkerStatus::Retiring
        } else if !w.is_ready() {
            WorkerStatus::Starting
        } else if busy_slots > 0 {
            WorkerStatus::Busy
        } else {
            WorkerStatus::Idle
        },
        busy_slots,
        requests,
        exceptions: w.exceptions.load(Ordering::Relaxed),
        avg_response: Duration::from_micros(micros.checked_div(requests).unwrap_or(0)),
        started_unix,
        uptime,
        respawns,
        harakiri: 0,
    }
}

/// Resident memory of a process in bytes, from `/proc/<pid>/statm` (0 when it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

impl PoolStats {
    /// The stats document served on the stats socket (uWSGI's stats server, as JSON). Written
    /// by hand: every value is a number or one of a few fixed words, so nothing needs escaping.
    pub fn to_json(&self, server_pid: u32, uptime: Duration) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(256 + 256 * self.workers.len());
        let _ = write!(
            s,
            "{{\"version\":\"{}\",\"pid\":{server_pid},\"uptime_seconds\":{},\
             \"requests\":{},\"exceptions\":{},\"harakiri\":{},\"respawns\":{},\"retries\":{},\
             \"idle_slots\":{},\"queue\":{{\"length\":{},\"rejections\":{},\"timeouts\":{}}},\"workers\":[",
            env!("CARGO_PKG_VERSION"),
            uptime.as_secs(),
            self.requests,
            self.exceptions,
            self.harakiri,
            self.respawns,
            self.retries,
            self.idle_slots,
            self.queue_length,
            self.queue_rejections,
            self.queue_timeouts,
        );
        for (i, w) in self.workers.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"id\":{},\"pid\":{},\"status\":\"{}\",\"busy_slots\":{},\"requests\":{},\
                 \"exceptions\":{},\"avg_response_ms\":{:.3},\"rss_bytes\":{},\"started\":{},\
                 \"uptime_seconds\":{},\"respawns\":{},\"harakiri_count\":{}}}",
                w.id,
                w.pid,
                w.status.as_str(),
                w.busy_slots,
                w.requests,
                w.exceptions,
                w.avg_response.as_secs_f64() * 1000.0,
                rss_bytes(w.pid),
                w.started_unix,
                w.uptime.as_secs(),
                w.respawns,
                w.harakiri,
            );
        }
        s.push_str("],\"restarts\":{");
        for (i, (reason, n)) in self.restarts.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{}\":{n}", reason.as_str());
        }
        s.push_str("}}\n");
        s
    }
}
