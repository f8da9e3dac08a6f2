//! The pool's latency histograms for `--metrics` (the counters and gauges are in
//! [`crate::PoolStats`]). Kept only when [`crate::PoolOptions::metrics`] is set; otherwise the
//! request path records nothing.

use flaskhost_telemetry::{Histogram, HistogramSnapshot};

#[derive(Debug, Default)]
pub(crate) struct PoolMetrics {
    /// From the request written to a slot to the app's response head (or its failure).
    pub(crate) app: Histogram,
    /// Taking a slot: zero when one was idle, else the time spent in the queue. Requests
    /// refused by the queue (full, timed out) are counted in `PoolStats`, not here.
    pub(crate) queue_wait: Histogram,
}

/// The pool's histograms read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolHistograms {
    pub app: HistogramSnapshot,
    pub queue_wait: HistogramSnapshot,
}

impl PoolMetrics {
    pub(crate) fn snapshot(&self) -> PoolHistograms {
        PoolHistograms {
            app: self.app.snapshot(),
            queue_wait: self.queue_wait.snapshot(),
        }
    }
}
