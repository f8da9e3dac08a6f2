//! A snapshot of the pool for the stats socket and metrics (uWSGI's stats server).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::slot::WorkerInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    Idle,
    Busy,
    /// Replaced, finishing what it holds.
    Retiring,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
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
    }
}
