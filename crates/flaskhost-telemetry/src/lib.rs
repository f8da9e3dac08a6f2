//! Metrics: what the request path records, and the text `--metrics` serves.
//!
//! Recording is lock-free and allocation-free: a [`Histogram`] is a fixed array of atomic
//! bucket counters and an atomic sum, so observing a duration is a search through 13 bounds and
//! two relaxed atomic adds. Reading takes a [`HistogramSnapshot`]; [`Exposition`] writes
//! snapshots and plain values in Prometheus' text format (version 0.0.4).
//!
//! **Architecture invariant:** this crate depends on nothing. The front and the pool record
//! into its types without knowing about each other; only the binary renders.

use std::fmt::{Display, Write as _};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Upper bounds of the latency buckets in seconds, 1 ms to 10 s (`+Inf` follows).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`BUCKETS`] in microseconds, the unit observations are counted in.
const BOUNDS_MICROS: [u64; BUCKETS.len()] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// A latency histogram with the fixed [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // Prometheus buckets are `le`: a value equal to a bound belongs to that bound.
        let i = BOUNDS_MICROS.partition_point(|b| *b < micros);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum: Duration::from_micros(self.sum_micros.load(Relaxed)),
        }
    }
}

/// A histogram read at one moment. Its count is the sum of its buckets, so the exposition's
/// `+Inf` bucket and `_count` always agree even while requests are being recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), as in [`Histogram`].
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum: Duration,
}

impl HistogramSnapshot {
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The kind of a metric family (its `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// A Prometheus text exposition being written: call [`Exposition::family`], then that
/// family's samples, then the next family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// The `Content-Type` of the text format.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    #[must_use]
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Type, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of a counter or gauge.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of one histogram series: cumulative `_bucket`s ending with `+Inf`, then
    /// `_sum` (seconds) and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.sum.as_secs_f64());
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_le_buckets() {
        let h = Histogram::default();
        h.observe(Duration::ZERO);
        h.observe(Duration::from_millis(1)); // on a bound: that bound
        h.observe(Duration::from_micros(1_001));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(60)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[8], 1); // le 0.5
        assert_eq!(s.counts[BUCKETS.len()], 1);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum, Duration::from_micros(60_302_001));
    }

    #[test]
    fn exposition_text() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_secs(20));
        let mut e = Exposition::new();
        e.family("x_total", Type::Counter, "Things.");
        e.sample("x_total", &[("kind", "a\"b"), ("status", "200")], 3);
        e.sample("x_total", &[], 4);
        e.family("d_seconds", Type::Histogram, "Time.");
        e.histogram("d_seconds", &[("kind", "app")], &h.snapshot());
        let text = e.finish();
        let expected_start = "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{kind=\"a\\\"b\",status=\"200\"} 3\nx_total 4\n\
             # HELP d_seconds Time.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{kind=\"app\",le=\"0.001\"} 0\n\
             d_seconds_bucket{kind=\"app\",le=\"0.0025\"} 1\n";
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains("d_seconds_bucket{kind=\"app\",le=\"10\"} 1\n"));
        assert!(text.ends_with(
            "d_seconds_bucket{kind=\"app\",le=\"+Inf\"} 2\n\
             d_seconds_sum{kind=\"app\"} 20.002\n\
             d_seconds_count{kind=\"app\"} 2\n"
        ));
    }
}
