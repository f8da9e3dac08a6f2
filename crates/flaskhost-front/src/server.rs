//! The service stack and the accept loops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::Service;
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::{self, AppState, ConnInfo, Upstream};
use crate::listen::Listener;

/// What the front needs from the configuration.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub script_name: String,
    pub max_body_size: u64,
    /// How long a client may take to send its request head (nginx client_header_timeout).
    pub header_read_timeout: Duration,
}

/// The whole request stack, outermost layer first, as a request meets it.
pub fn router(upstream: Arc<dyn Upstream>, opts: &FrontOptions) -> Router {
    let state = Arc::new(AppState { upstream, script_name: opts.script_name.clone() });
    Router::new()
        // Everything not handled above goes to the app.
        .fallback(app::handle)
        .with_state(state)
        // A declared Content-Length over the limit is refused with 413 before the app runs;
        // a chunked body is cut at the limit while it streams (nginx client_max_body_size).
        .layer(RequestBodyLimitLayer::new(usize::try_from(opts.max_body_size).unwrap_or(usize::MAX)))
}

/// Accepts connections on every listener until `shutdown` resolves, then lets open
/// connections finish for up to the grace period `shutdown` resolved to. Returns true when
/// all finished in time.
pub async fn serve(
    listeners: Vec<Listener>,
    router: Router,
    opts: &FrontOptions,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        // HTTP/1 header names are case-insensitive, but people and some clients read them
        // as written: send `Content-Type` like nginx does, not `content-type`.
        .title_case_headers(true)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_tasks = Vec::new();
    let mut keep = Vec::new();
    for l in listeners {
        let (router, builder, graceful, mut stop) =
            (router.clone(), builder.clone(), graceful.clone(), stop_rx.clone());
        match l {
            Listener::Tcp(tcp) => {
                let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
                accept_tasks.push(tokio::spawn(async move {
                    loop {
                        let (stream, peer) = tokio::select! {
                            r = tcp.accept() => match r {
                                Ok(x) => x,
                                Err(e) => { accept_error(e).await; continue; }
                            },
                            _ = stop.changed() => break,
                        };
                        let _ = stream.set_nodelay(true);
                        let info = ConnInfo { remote: Some(peer), local_port: port, https: false };
                        spawn_conn(&builder, &graceful, &router, TokioIo::new(stream), info);
                    }
                }));
            }
            Listener::Unix { listener, path } => {
                keep.push(path);
                accept_tasks.push(tokio::spawn(async move {
                    loop {
                        let stream = tokio::select! {
                            r = listener.accept() => match r {
                                Ok((s, _)) => s,
                                Err(e) => { accept_error(e).await; continue; }
                            },
                            _ = stop.changed() => break,
                        };
                        let info = ConnInfo { remote: None, local_port: 0, https: false };
                        spawn_conn(&builder, &graceful, &router, TokioIo::new(stream), info);
                    }
                }));
            }
        }
    }
    let grace = shutdown.await;
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    for p in keep {
        let _ = std::fs::remove_file(p);
    }
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    tokio::time::timeout(grace, graceful.shutdown()).await.is_ok()
}

/// Running out of file descriptors makes accept fail at once, again and again; pausing keeps
/// that from spinning a core while connections close.
async fn accept_error(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn spawn_conn<I>(
    builder: &Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    router: &Router,
    io: I,
    info: ConnInfo,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let router = router.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info);
        let mut router = router.clone();
        async move { router.call(req.map(axum::body::Body::new)).await }
    });
    let builder = builder.clone();
    let conn = builder.serve_connection(io, svc).into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended with an error: {e}");
        }
    });
}
