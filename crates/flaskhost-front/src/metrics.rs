//! What the front counts for `--metrics`: every response it sends, by route kind and status,
//! and how long each took, from the request reaching the service to its body's end (or the
//! client leaving), as the access log measures it.
//!
//! Recording is a handful of relaxed atomic adds into fixed arrays, with no lock and no
//! allocation; it happens only when [`crate::Edge::metrics`] is set.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use flaskhost_telemetry::{Histogram, HistogramSnapshot};
use http::StatusCode;

/// Which route answered a request. The edge's service hands it to hyper's side along with the
/// response; through [`crate::EdgeService`] as a tower `Service`, a response not from the app
/// carries it as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// The app (through the pool), including the edge's answers on its behalf: 413, 503 when
    /// the queue is full, 502/504 when a worker fails.
    App,
    /// A static mount.
    Static,
    /// A `redirect-http` listener's answer.
    Redirect,
    /// A request the connection guard refused before any route (ambiguous framing, a head
    /// over the limits).
    Refused,
}

impl RouteKind {
    pub const ALL: [RouteKind; 4] = [
        RouteKind::App,
        RouteKind::Static,
        RouteKind::Redirect,
        RouteKind::Refused,
    ];

    /// Tags a response that is not the app's (app responses carry no extension).
    pub(crate) fn tag<B>(self, mut resp: http::Response<B>) -> http::Response<B> {
        if self != RouteKind::App {
            resp.extensions_mut().insert(self);
        }
        resp
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::App => "app",
            RouteKind::Static => "static",
            RouteKind::Redirect => "redirect",
            RouteKind::Refused => "refused",
        }
    }
}

/// Status codes are 100..=999 (`http::StatusCode`): one counter each.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 900;

/// The front's counters.
#[derive(Debug)]
pub struct FrontMetrics {
    /// Responses, indexed by `kind * STATUSES + status - 100`.
    responses: Box<[AtomicU64]>,
    /// Request durations by kind (`RouteKind as usize`).
    durations: [Histogram; RouteKind::ALL.len()],
    /// Heads hyper could not parse (answered by hyper itself, not counted in `responses`).
    malformed: AtomicU64,
}

impl Default for FrontMetrics {
    fn default() -> Self {
        FrontMetrics {
            responses: (0..RouteKind::ALL.len() * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            durations: Default::default(),
            malformed: AtomicU64::new(0),
        }
    }
}

impl FrontMetrics {
    #[must_use]
    pub fn new() -> FrontMetrics {
        FrontMetrics::default()
    }

    pub(crate) fn record(&self, kind: RouteKind, status: StatusCode, took: Duration) {
        let i =
            kind as usize * STATUSES + usize::from(status.as_u16().saturating_sub(FIRST_STATUS));
        if let Some(c) = self.responses.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.durations[kind as usize].observe(took);
    }

    pub(crate) fn record_malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    /// Request heads so malformed that hyper answered them itself (400) and closed the
    /// connection; they are not in [`FrontMetrics::responses`].
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Relaxed)
    }

    /// Every (kind, status) that has been sent at least once, with its count.
    #[must_use]
    pub fn responses(&self) -> Vec<(RouteKind, u16, u64)> {
        let mut out = Vec::new();
        for (k, kind) in RouteKind::ALL.iter().enumerate() {
            for s in 0..STATUSES {
                let n = self.responses[k * STATUSES + s].load(Relaxed);
                if n > 0 {
                    let status = FIRST_STATUS + u16::try_from(s).unwrap_or(0);
                    out.push((*kind, status, n));
                }
            }
        }
        out
    }

    /// The durations of the requests of one kind.
    #[must_use]
    pub fn duration(&self, kind: RouteKind) -> HistogramSnapshot {
        self.durations[kind as usize].snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_status() {
        let m = FrontMetrics::new();
        m.record(RouteKind::App, StatusCode::OK, Duration::from_millis(3));
        m.record(RouteKind::App, StatusCode::OK, Duration::from_millis(4));
        m.record(RouteKind::Static, StatusCode::NOT_MODIFIED, Duration::ZERO);
        let odd = StatusCode::from_u16(999).expect("valid status");
        m.record(RouteKind::Refused, odd, Duration::ZERO);
        assert_eq!(
            m.responses(),
            vec![
                (RouteKind::App, 200, 2),
                (RouteKind::Static, 304, 1),
                (RouteKind::Refused, 999, 1),
            ]
        );
        assert_eq!(m.duration(RouteKind::App).count(), 2);
        assert_eq!(m.duration(RouteKind::Redirect).count(), 0);
    }
}
