//! The front: everything between a client's socket and the pool, and the edge that nginx
//! used to be: TLS, static files, response headers, limits and timeouts, the client's real
//! address, the access log and compression.
//!
//! **Architecture invariants:** the front never links Python and never blocks: every app
//! request becomes a call to an [`Upstream`] (the pool in production, a fake in tests), and
//! every way that call can fail becomes a response in one place, [`rescue::rescue`]. The
//! request stack is built in one place, [`edge_router`], in request order.

mod access_log;
mod app;
mod compression;
mod conn;
mod drain;
mod forwarded;
mod headers;
mod idle;
mod listen;
mod metrics;
pub mod rescue;
mod server;
mod static_files;
mod tls;
mod zerocopy;

pub use access_log::AccessLog;
pub use app::{ConnInfo, DispatchFuture, Upstream};
pub use conn::{ConnLimits, Verdict};
pub use forwarded::TrustedProxies;
pub use headers::{HeaderError, ResponseHeaders, SECURITY_HEADERS};
pub use listen::{InheritedSocket, Listener, adopt, bind};
pub use metrics::{FrontMetrics, RouteKind};
pub use server::{
    Edge, EdgeError, EdgeService, FrontOptions, edge_router, redirect_router, router, serve,
    serve_edge,
};
pub use static_files::{StaticError, StaticFiles};
pub use tls::{CertStore, Tls, TlsError};
