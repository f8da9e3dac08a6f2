//! The service stack and the accept loops.
//!
//! A request meets, in order: the connection (TLS, then the [`Guarded`] stream that checks
//! HTTP/1 framing and times heads and idle connections), hyper, then the service built by
//! [`edge_router`]: trusted-proxy resolution → access log → response headers → framing
//! verdict → static mounts or the app (compression → body limit → pool).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use flaskhost_config::{CompressionConfig, EdgeConfig};
use http::{HeaderValue, StatusCode, header};
use http_body::Frame;
use http_body_util::Limited;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service, ServiceExt};
use tower_http::compression::CompressionLayer;

use crate::access_log::{AccessLog, Entry};
use crate::app::{self, AppState, ClientBody, ConnInfo, EdgeBody, Upstream};
use crate::compression::Compressible;
use crate::conn::{ConnLimits, ConnState, Guarded, Verdict};
use crate::drain::{Drain, DrainWatcher};
use crate::forwarded::TrustedProxies;
use crate::headers::{HeaderError, ResponseHeaders};
use crate::idle::Connections;
use crate::listen::Listener;
use crate::metrics::{FrontMetrics, RouteKind};
use crate::static_files::{Asked, StaticError, StaticFiles};
use crate::tls::{Tls, TlsError};
use crate::zerocopy::SendFile;

/// What the front needs from the configuration.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub script_name: String,
    pub max_body_size: u64,
    /// How long a client may take to send its request head (nginx client_header_timeout).
    /// Used by [`serve`]; [`serve_edge`] takes it from [`Edge::limits`].
    pub header_read_timeout: Duration,
}

/// Everything the edge adds around the app, built once at start-up.
#[derive(Debug, Clone)]
pub struct Edge {
    pub tls: Option<Tls>,
    pub statics: Option<Arc<StaticFiles>>,
    pub headers: Arc<ResponseHeaders>,
    pub proxies: Arc<TrustedProxies>,
    pub access_log: Option<Arc<AccessLog>>,
    pub compression: Option<CompressionConfig>,
    pub limits: ConnLimits,
    pub max_connections: usize,
    /// HTTP/1 response header names in Title-Case (`title-case-headers`); lowercase when
    /// false, as HTTP/2 always sends them.
    pub title_case_headers: bool,
    /// Where every response is counted (`--metrics`); `None` records nothing.
    pub metrics: Option<Arc<FrontMetrics>>,
}

impl Default for Edge {
    /// No TLS, static files, log or compression; the built-in headers; nginx's limits.
    fn default() -> Self {
        Edge {
            tls: None,
            statics: None,
            headers: Arc::new(ResponseHeaders::default()),
            proxies: Arc::new(TrustedProxies::default()),
            access_log: None,
            compression: None,
            limits: ConnLimits::default(),
            max_connections: 1024,
            title_case_headers: false,
            metrics: None,
        }
    }
}

/// Why the edge could not start; each names the file or setting at fault.
#[derive(Debug, Error)]
pub enum EdgeError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Static(#[from] StaticError),
    #[error("access log: {0}")]
    AccessLog(#[source] std::io::Error),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

impl Edge {
    /// Loads certificates, checks static mounts and opens the access log.
    ///
    /// # Errors
    ///
    /// The first certificate, key, static path or log file that cannot be used.
    pub fn load(cfg: &EdgeConfig) -> Result<Edge, EdgeError> {
        let tls = cfg.tls.as_ref().map(Tls::load).transpose()?;
        let statics = if cfg.static_mounts.is_empty() {
            None
        } else {
            Some(Arc::new(StaticFiles::open(
                &cfg.static_mounts,
                cfg.static_cache_size,
                cfg.static_cache_max_file,
                cfg.static_cache_valid,
            )?))
        };
        let access_log = cfg
            .access_log
            .as_ref()
            .map(AccessLog::open)
            .transpose()
            .map_err(EdgeError::AccessLog)?;
        let l = &cfg.limits;
        Ok(Edge {
            tls,
            statics,
            headers: Arc::new(ResponseHeaders::from_config(&cfg.headers)?),
            proxies: Arc::new(TrustedProxies::new(
                cfg.forwarded_allow_ips.clone(),
                cfg.proxy_headers,
            )),
            access_log: access_log.map(Arc::new),
            compression: cfg.compression.clone(),
            limits: ConnLimits {
                max_request_line: usize::try_from(l.max_request_line).unwrap_or(usize::MAX),
                max_header_size: usize::try_from(l.max_header_size).unwrap_or(usize::MAX),
                max_header_count: l.max_header_count,
                header_timeout: l.header_timeout,
                keepalive_timeout: l.keepalive_timeout,
            },
            max_connections: l.max_connections,
            title_case_headers: cfg.title_case_headers,
            metrics: None,
        })
    }

    /// SIGHUP: re-reads the certificate files (open connections keep theirs) and reopens the
    /// access log file (after logrotate).
    pub fn reload(&self) {
        if let Some(tls) = &self.tls {
            match tls.store.reload() {
                Ok(n) => tracing::info!("TLS: {n} certificate(s) loaded"),
                Err(e) => {
                    tracing::error!("TLS: reload failed, keeping the current certificates: {e}")
                }
            }
        }
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }

    /// Writes out the access log; call once serving has ended.
    pub fn close(&self) {
        if let Some(log) = &self.access_log {
            log.close();
        }
    }

    /// The address of a listener for logs: `https://…` for TCP listeners under TLS.
    #[must_use]
    pub fn describe(&self, l: &Listener) -> String {
        match (l, &self.tls) {
            (Listener::Tcp(t), Some(_)) => match t.local_addr() {
                Ok(a) => format!("https://{a}"),
                Err(_) => "https://?".into(),
            },
            _ => l.describe(),
        }
    }
}

/// The app-only stack with the built-in edge defaults (see [`edge_router`]).
pub fn router(upstream: Arc<dyn Upstream>, opts: &FrontOptions) -> EdgeService {
    edge_router(upstream, opts, &Edge::default())
}

/// The whole request stack, as one service; the steps are listed in request order in
/// [`EdgeSteps::handle`] and, for the app, [`AppRoute::dispatch`].
pub fn edge_router(upstream: Arc<dyn Upstream>, opts: &FrontOptions, edge: &Edge) -> EdgeService {
    let app = AppRoute {
        state: AppState {
            upstream,
            script_name: opts.script_name.clone(),
        },
        // Only the access log reads the app's time; without it, no timing and no extension map.
        timed: edge.access_log.is_some(),
        max_body: usize::try_from(opts.max_body_size).unwrap_or(usize::MAX),
        compression: edge.compression.as_ref().map(crate::compression::layer),
    };
    with_edge_steps(
        Inner::Routes {
            statics: edge.statics.clone(),
            app,
        },
        edge,
    )
}

/// The plain-HTTP listeners' stack (`redirect-http`): every request is sent to https.
pub fn redirect_router(edge: &Edge, https_port: u16) -> EdgeService {
    with_edge_steps(Inner::Redirect(https_port), edge)
}

/// The steps every request and response pass, around `inner`. They run in one function, in
/// request order, rather than as one middleware layer each: a layer costs a service clone
/// and a boxed future per request, which on the app path was most of the front's
/// allocations.
fn with_edge_steps(inner: Inner, edge: &Edge) -> EdgeService {
    EdgeService(Arc::new(EdgeSteps {
        proxies: edge.proxies.clone(),
        access_log: edge.access_log.clone(),
        headers: edge.headers.clone(),
        inner,
    }))
}

/// The request stack: what hyper calls for every request of a connection (directly, with no
/// router or boxed future in between), and a tower `Service` for tests.
#[derive(Clone)]
pub struct EdgeService(Arc<EdgeSteps>);

impl<B> Service<http::Request<B>> for EdgeService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// The connection info and the guard's verdict are read from the request's extensions
    /// (absent: a Unix socket's connection, no refusal), and a response not from the app
    /// carries its [`RouteKind`] as an extension; hyper's path passes all three directly.
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let steps = self.0.clone();
        let conn = req
            .extensions()
            .get::<ConnInfo>()
            .copied()
            .unwrap_or_default();
        let verdict = req
            .extensions()
            .get::<Verdict>()
            .copied()
            .unwrap_or(Verdict::Ok);
        Box::pin(steps.handle(req, conn, verdict, |resp, kind| {
            Ok(kind.tag(resp.map(|body| match body {
                EdgeBody::Other(body) => body,
                pool => Body::new(pool),
            })))
        }))
    }
}

struct EdgeSteps {
    proxies: Arc<TrustedProxies>,
    access_log: Option<Arc<AccessLog>>,
    headers: Arc<ResponseHeaders>,
    inner: Inner,
}

/// What answers a request that passed the edge's checks.
enum Inner {
    /// Static mounts first, then the app (compression → body limit → pool).
    Routes {
        statics: Option<Arc<StaticFiles>>,
        app: AppRoute,
    },
    /// `redirect-http`: 301 to https on this port.
    Redirect(u16),
}

impl EdgeSteps {
    /// `conn`: the connection the request came on; `verdict`: the guard's on its head.
    /// `finish` gets the response and which route gave it (for the metrics), and makes what
    /// the caller returns.
    ///
    /// Written for a small future, as it is moved whole a few times per request: it owns the
    /// steps; `finish` spares the caller a future of its own around this one; the request is
    /// held once (an `async fn` would hold its argument and its own copy); and the routes'
    /// futures are awaited here directly, not through an `async fn` that would hold the
    /// request again, nor from a `match` on a value, which the future would also keep.
    fn handle<T, B: ClientBody>(
        self: Arc<Self>,
        mut req: http::Request<B>,
        conn: ConnInfo,
        verdict: Verdict,
        finish: impl FnOnce(http::Response<EdgeBody>, RouteKind) -> T,
    ) -> impl Future<Output = T> {
        // 1. Who the client is and which scheme it used, which the log, the headers and the app
        //    all need.
        let info = self.proxies.resolve(&mut req, conn);
        // 2. The access log sees the final status and every body byte, so it takes the
        //    response last, after every step that changes it.
        let entry = self.access_log.as_ref().map(|_| Entry::of(&req, info));
        async move {
            // 3. A request the connection guard refused (ambiguous framing, head too large) is
            //    answered here, before static files or the app can see it; then static mounts
            //    come first, then the app.
            let (mut resp, kind) = if let Some(resp) = refusal(&req, verdict) {
                (resp.map(EdgeBody::Other), RouteKind::Refused)
            } else {
                match &self.inner {
                    Inner::Routes { statics, app } => {
                        let hit = statics
                            .as_ref()
                            .and_then(|s| Some((s, s.lookup(req.uri().path())?)));
                        if let Some((statics, hit)) = hit {
                            // HTTP/2 frames body bytes itself (it would read a mapping);
                            // HTTP/1 hands them on.
                            let zero_copy =
                                info.sendfile && req.version() <= http::Version::HTTP_11;
                            let asked = Asked {
                                method: req.method(),
                                headers: req.headers(),
                                https: info.https,
                            };
                            let resp = statics.serve(hit, asked, &self.headers, zero_copy).await;
                            (resp.map(EdgeBody::Other), RouteKind::Static)
                        } else if let Some(c) = &app.compression {
                            (app.compressed(c, req, info).await, RouteKind::App)
                        } else {
                            // As `AppRoute::limited`.
                            let resp = 'app: {
                                let dispatch = match app.dispatch(req, info) {
                                    Ok(dispatch) => dispatch,
                                    Err(too_large) => break 'app too_large.response(),
                                };
                                dispatch.await
                            };
                            (resp, RouteKind::App)
                        }
                    }
                    Inner::Redirect(port) => (
                        redirect_to_https(*port, &req).map(EdgeBody::Other),
                        RouteKind::Redirect,
                    ),
                }
            };
            // 4. Security headers on everything, errors included (nginx `always`); static
            //    answers come with them.
            if kind != RouteKind::Static {
                self.headers.apply(resp.headers_mut(), info.https);
            }
            let resp = match (&self.access_log, entry) {
                (Some(log), Some(entry)) => log.track(entry, resp),
                _ => resp,
            };
            finish(resp, kind)
        }
    }
}

/// The app: compression → body limit → the pool.
///
/// This path is written for small futures: each `async fn` level keeps the request it was
/// given in its future, and every future around it is moved a few times per request, so
/// the body limit is a plain function and the compression layer's path is boxed (only
/// with compression on).
struct AppRoute {
    state: AppState,
    timed: bool,
    max_body: usize,
    compression: Option<CompressionLayer<Compressible>>,
}

impl AppRoute {
    /// With compression: the body limit and the pool inside tower-http's compression layer.
    /// Boxed, so that its larger future is not part of every request's.
    async fn compressed<B: ClientBody>(
        &self,
        c: &CompressionLayer<Compressible>,
        req: http::Request<B>,
        info: ConnInfo,
    ) -> http::Response<EdgeBody> {
        // Outside the body limit so a 413 is compressed like any response (it is tiny, so it
        // is not); inside the headers so added headers are not counted as the app's.
        let limited = tower::service_fn(|req: http::Request<B>| async move {
            Ok::<_, Infallible>(self.limited(req, info).await)
        });
        match Box::pin(c.layer(limited).oneshot(req)).await {
            Ok(resp) => resp.map(|body| EdgeBody::Other(Body::new(body))),
            Err(never) => match never {},
        }
    }

    /// The body limit, then the pool: [`AppRoute::dispatch`], awaited.
    async fn limited<B: ClientBody>(
        &self,
        req: http::Request<B>,
        info: ConnInfo,
    ) -> http::Response<EdgeBody> {
        // Not `match self.dispatch(..) { Ok(d) => d.await, .. }`: the matched value would
        // stay in the future beside the one awaited.
        let dispatch = match self.dispatch(req, info) {
            Ok(dispatch) => dispatch,
            Err(too_large) => return too_large.response(),
        };
        dispatch.await
    }

    /// The body limit, then the pool's future (timed for the access log when it is on; a 413
    /// from the limit never reached the app). Not an `async fn`, so that the caller's future
    /// holds the pool's future and not also the request.
    fn dispatch<B: ClientBody>(
        &self,
        req: http::Request<B>,
        info: ConnInfo,
    ) -> Result<impl Future<Output = http::Response<EdgeBody>> + Send + '_, TooLarge> {
        let req = limit(req, self.max_body)?;
        Ok(app::handle(&self.state, req, info, self.timed))
    }
}

/// The body limit (nginx client_max_body_size), as tower-http's `RequestBodyLimit` sets it
/// (without its service and future wrappers): a declared Content-Length over the limit is
/// refused with 413 before the app runs; a body is cut at the limit while it streams (the
/// pool's read of it fails, and `rescue` answers 413).
fn limit<B>(req: http::Request<B>, max: usize) -> Result<http::Request<Limited<B>>, TooLarge> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let limit = match declared {
        Some(len) if len > max => return Err(TooLarge),
        Some(len) => max.min(len),
        None => max,
    };
    Ok(req.map(|b| Limited::new(b, limit)))
}

/// A declared body over the limit.
struct TooLarge;

impl TooLarge {
    /// The 413, byte for byte tower-http's `RequestBodyLimit` answer.
    fn response(self) -> http::Response<EdgeBody> {
        let body = Body::from(Bytes::from_static(b"length limit exceeded"));
        let mut resp = http::Response::new(EdgeBody::Other(body));
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// The answer to a request the connection guard refused, if it did.
fn refusal<B>(req: &http::Request<B>, verdict: Verdict) -> Option<Response> {
    match verdict {
        Verdict::Reject(status, why) => {
            tracing::info!(method = %req.method(), path = %req.uri().path(), status = status.as_u16(), "request refused: {why}");
            let mut resp = plain_error(status, Some(why));
            // The bytes after this head cannot be trusted to be a next request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Some(resp)
        }
        Verdict::Ok => None,
    }
}

/// 301 to the same host and URI over https, as the seed's `return 301 https://...`.
fn redirect_to_https<B>(https_port: u16, req: &http::Request<B>) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(strip_port)
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b))
        });
    let Some(host) = host else {
        return plain_error(
            StatusCode::BAD_REQUEST,
            Some("no valid Host to redirect to"),
        );
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{target}");
    let mut resp = plain_error(StatusCode::MOVED_PERMANENTLY, None);
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => plain_error(
            StatusCode::BAD_REQUEST,
            Some("the URL cannot be redirected"),
        ),
    }
}

/// `example.com:80` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.rfind(']') {
        return &host[..=end];
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A short text response: `400 Bad Request: why`.
pub(crate) fn plain_error(status: StatusCode, why: Option<&str>) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = match why {
        Some(why) => format!("{} {reason}: {why}\n", status.as_u16()),
        None => format!("{} {reason}\n", status.as_u16()),
    };
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Accepts connections on every listener until `shutdown` resolves, then lets open
/// connections finish for up to the grace period `shutdown` resolved to. Returns true when
/// all finished in time. The edge's defaults apply (no TLS, no redirect).
pub async fn serve(
    listeners: Vec<Listener>,
    router: EdgeService,
    opts: &FrontOptions,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let mut edge = Edge::default();
    edge.limits.header_timeout = opts.header_read_timeout;
    serve_edge(listeners, Vec::new(), router, &edge, shutdown).await
}

/// Like [`serve`], with the edge: TLS on the TCP `listeners`, the `redirect` listeners
/// answering with [`redirect_router`], and the edge's connection limits.
pub async fn serve_edge(
    listeners: Vec<Listener>,
    redirect: Vec<Listener>,
    router: EdgeService,
    edge: &Edge,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let limits = Arc::new(edge.limits.clone());
    let builder = Arc::new(http_builder(&edge.limits, edge.title_case_headers));
    // Shared with the accept loops, which hand each connection its own watcher.
    let graceful = Arc::new(Drain::default());
    let slots = Arc::new(Semaphore::new(
        edge.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connections = Arc::new(Connections::default());

    // The https port the redirect points to: the first TLS listener's (port 0 in tests).
    let https_port = listeners
        .iter()
        .find_map(|l| match l {
            Listener::Tcp(t) if edge.tls.is_some() => t.local_addr().ok().map(|a| a.port()),
            _ => None,
        })
        .unwrap_or(443);
    let redirect_router = redirect_router(edge, https_port);

    let mut accept_tasks = Vec::new();
    let mut keep = Vec::new();
    let roles = listeners
        .into_iter()
        .map(|l| (l, router.clone(), edge.tls.clone()))
        .chain(
            redirect
                .into_iter()
                .map(|l| (l, redirect_router.clone(), None)),
        );
    for (l, router, tls) in roles {
        let ctx = ConnCtx {
            builder: builder.clone(),
            limits: limits.clone(),
            router,
            metrics: edge.metrics.clone(),
            connections: connections.clone(),
        };
        let (slots, mut stop, graceful) = (slots.clone(), stop_rx.clone(), graceful.clone());
        match l {
            Listener::Tcp(tcp) => {
                let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
                accept_tasks.push(tokio::spawn(async move {
                    while let Some(permit) = acquire(&slots, &mut stop).await {
                        let (stream, peer) = tokio::select! {
                            r = tcp.accept() => match r {
                                Ok(x) => x,
                                Err(e) => { accept_error(e).await; continue; }
                            },
                            _ = stop.changed() => break,
                        };
                        let _ = stream.set_nodelay(true);
                        let info = ConnInfo {
                            remote: Some(peer),
                            local_port: port,
                            https: tls.is_some(),
                            sendfile: false,
                        };
                        let (ctx, watcher, tls) = (ctx.clone(), graceful.watcher(), tls.clone());
                        tokio::spawn(async move {
                            match tls {
                                Some(tls) => {
                                    ctx.serve_tls(stream, peer, tls, info, watcher, permit)
                                        .await
                                }
                                None => ctx.serve_conn(stream, info, watcher, permit).await,
                            }
                        });
                    }
                }));
            }
            Listener::Unix {
                listener,
                path,
                remove_on_exit,
            } => {
                if remove_on_exit {
                    keep.push(path);
                }
                accept_tasks.push(tokio::spawn(async move {
                    while let Some(permit) = acquire(&slots, &mut stop).await {
                        let stream = tokio::select! {
                            r = listener.accept() => match r {
                                Ok((s, _)) => s,
                                Err(e) => { accept_error(e).await; continue; }
                            },
                            _ = stop.changed() => break,
                        };
                        let info = ConnInfo {
                            remote: None,
                            local_port: 0,
                            https: false,
                            sendfile: false,
                        };
                        let (ctx, watcher) = (ctx.clone(), graceful.watcher());
                        tokio::spawn(
                            async move { ctx.serve_conn(stream, info, watcher, permit).await },
                        );
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
    tokio::time::timeout(grace, graceful.finish()).await.is_ok()
}

/// hyper's settings. The head limits here are only a backstop: the guard refuses a head
/// over the configured limits first, with a precise status.
fn http_builder(limits: &ConnLimits, title_case_headers: bool) -> auto::Builder<TokioExecutor> {
    /// hyper's default read buffer: 8 KiB plus 100 × 4 KiB.
    const HYPER_DEFAULT_BUF: usize = 8192 + 4096 * 100;
    /// hyper's header count limit when none is set.
    const HYPER_DEFAULT_MAX_HEADERS: usize = 100;
    let head = limits
        .max_request_line
        .saturating_add(limits.max_header_size);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The guard times request heads (and idle connections) itself; hyper's timer would
        // also run while a kept-alive connection waits, closing it after the header timeout.
        .header_read_timeout(None)
        // Header names are case-insensitive (RFC 9110), so they go out lowercase as HTTP/2
        // sends them (Envoy, granian and uvicorn do the same); hyper's Title-Case writer
        // costs ~3k instructions per response, so it is only for clients that need it.
        .title_case_headers(title_case_headers)
        .max_buf_size(HYPER_DEFAULT_BUF.max(head.saturating_add(16 * 1024)))
        .keep_alive(!limits.keepalive_timeout.is_zero());
    // hyper's own limit is 100 headers, on the stack; set explicitly, it fills a heap array of
    // that many entries for every request. The guard enforces the configured count, so hyper
    // needs it only when it is above its own.
    if limits.max_header_count > HYPER_DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(limits.max_header_count);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    builder
}

/// Waits for a free connection slot (`max-connections`); while none is free, new
/// connections wait in the listen backlog, as in nginx. `None` when stopping.
async fn acquire(
    slots: &Arc<Semaphore>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        p = slots.clone().acquire_owned() => p.ok(),
        _ = stop.changed() => None,
    }
}

/// Running out of file descriptors makes accept fail at once, again and again; pausing keeps
/// that from spinning a core while connections close.
async fn accept_error(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct ConnCtx {
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<ConnLimits>,
    router: EdgeService,
    metrics: Option<Arc<FrontMetrics>>,
    /// Every listener's open connections (freed memory is released when none is left).
    connections: Arc<Connections>,
}

impl ConnCtx {
    async fn serve_tls(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        tls: Tls,
        info: ConnInfo,
        watcher: DrainWatcher,
        permit: OwnedSemaphorePermit,
    ) {
        // A handshake gets as long as a request head: a client that opens connections and
        // never finishes handshaking is cut off like a slow request.
        match tokio::time::timeout(self.limits.header_timeout, tls.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_conn(stream, info, watcher, permit).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve_conn<S>(
        &self,
        stream: S,
        info: ConnInfo,
        watcher: DrainWatcher,
        permit: OwnedSemaphorePermit,
    ) where
        S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
    {
        // Dropped last, once hyper's connection and its buffers are gone.
        let _open = self.connections.open();
        // Held until the connection ends: it is one of `max-connections`.
        let _permit = permit;
        let info = ConnInfo {
            sendfile: S::CAPABLE,
            ..info
        };
        let state = ConnState::new();
        let io = TokioIo::new(Guarded::new(stream, state.clone(), self.limits.clone()));
        let router = self.router.clone();
        let metrics = self.metrics.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let start = metrics.as_ref().map(|m| (m.clone(), Instant::now()));
            // HTTP/2 frames its messages itself; the guard only judges HTTP/1 heads.
            let verdict = if req.version() == http::Version::HTTP_2 {
                Verdict::Ok
            } else {
                state.next_verdict()
            };
            let in_flight = InFlight::start(state.clone());
            // hyper's body goes on as it is, to be boxed once where the pool takes it.
            router
                .0
                .clone()
                .handle(req, info, verdict, move |resp, kind| {
                    let finished = start.map(|(metrics, start)| Finished {
                        metrics,
                        start,
                        kind,
                        status: resp.status(),
                    });
                    Ok::<_, Infallible>(
                        resp.map(|body| TrackedBody::new(body, in_flight, finished)),
                    )
                })
        });
        let conn = self.builder.serve_connection(io, svc).into_owned();
        if let Err(e) = watcher.watch(conn).await {
            // hyper answers a head it cannot parse itself (400, or 431/414 past its own
            // limits) and closes: no request ever reached the routes.
            if let Some(m) = &self.metrics
                && e.downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_parse)
            {
                m.record_malformed();
            }
            tracing::debug!("connection ended with an error: {e}");
        }
    }
}

/// One request in progress, for the keep-alive timer: the connection is idle only when none
/// is. Dropped with the response body, or with the request if it is abandoned.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> InFlight {
        state.request_started();
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response whose end is to be counted in the metrics (when its body is dropped: sent,
/// failed, or abandoned by the client), timed as the access log times it.
struct Finished {
    metrics: Arc<FrontMetrics>,
    start: Instant,
    kind: RouteKind,
    status: StatusCode,
}

/// The response body, holding its request's [`InFlight`] until hyper is done with it, and
/// counting the response in the metrics when it is dropped.
///
/// It also makes sure that bytes the app produced before failing reach the client (PEP
/// 3333): hyper drops what it has buffered but not yet written when a body fails, so an
/// error is held back for one turn, during which hyper flushes, and given out after.
struct TrackedBody {
    inner: EdgeBody,
    _in_flight: InFlight,
    /// An error waiting for hyper to flush the data before it.
    held: Option<axum::Error>,
    sent_data: bool,
    finished: Option<Finished>,
}

impl TrackedBody {
    fn new(inner: EdgeBody, in_flight: InFlight, finished: Option<Finished>) -> TrackedBody {
        TrackedBody {
            inner,
            _in_flight: in_flight,
            held: None,
            sent_data: false,
            finished,
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(f) = self.finished.take() {
            f.metrics.record(f.kind, f.status, f.start.elapsed());
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(e) = this.held.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) if this.sent_data => {
                this.held = Some(e);
                // Pending makes hyper flush its buffer; the wake brings it straight back.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.sent_data |= frame.is_data();
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that never answers.
    struct Silent;

    impl Upstream for Silent {
        fn dispatch<'a>(
            &'a self,
            _: &'a flaskhost_ipc::request::RequestMeta<'a>,
            _: &'a http::HeaderMap,
            _: flaskhost_pool::RequestBody,
        ) -> app::DispatchFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    /// A request body as large as hyper's `Incoming`, which cannot be made outside hyper.
    struct IncomingSized {
        _size: [u64; 5],
    }

    impl http_body::Body for IncomingSized {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(None)
        }
    }

    /// A request's future is moved whole a few times per request (into hyper's connection,
    /// among others), so its size is part of every request's cost: it was 3,136 bytes before
    /// `EdgeSteps::handle` and the app route were written for size, 960 after (~2,000
    /// instructions less per Flask hello request); 1,000 since it holds hyper's body unboxed.
    #[test]
    fn the_request_future_stays_small() {
        assert!(
            std::mem::size_of::<IncomingSized>() >= std::mem::size_of::<hyper::body::Incoming>()
        );
        let opts = FrontOptions {
            script_name: String::new(),
            max_body_size: 1024,
            header_read_timeout: Duration::from_secs(1),
        };
        let service = router(Arc::new(Silent), &opts);
        let future = service.0.clone().handle(
            http::Request::new(IncomingSized { _size: [0; 5] }),
            ConnInfo::default(),
            Verdict::Ok,
            |resp, kind| (resp, kind),
        );
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1280, "the request's future grew to {size} bytes");
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
