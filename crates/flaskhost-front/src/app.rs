//! The app route: turns an HTTP request into a pool dispatch.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use flaskhost_ipc::request::{RequestMeta, Version};
use flaskhost_pool::{DispatchError, Pool, RequestBody, ResponseBody};
use http::header;
use http_body_util::BodyExt;

use crate::access_log::AppTime;
use crate::rescue::rescue;

/// What the front knows about a connection, given to each of its requests. The default is a
/// Unix socket's (no client address, port 0, no TLS).
///
/// hyper's requests get it as an argument; a request given to [`crate::EdgeService`] as a
/// tower `Service` may carry it as an extension (tests do), else the default applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnInfo {
    /// The client; `None` over a Unix socket.
    pub remote: Option<SocketAddr>,
    /// The port the connection arrived on (0 for Unix sockets).
    pub local_port: u16,
    pub https: bool,
    /// The connection's writer sends mapped file bodies with `sendfile` (plain TCP; see
    /// `zerocopy.rs`). Set by the connection, whatever the caller put here.
    pub sendfile: bool,
}

/// A request body as the edge takes it: hyper's own from a connection, or any body from a
/// caller of [`crate::EdgeService`]. It is boxed once, where the pool takes it.
pub(crate) trait ClientBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<axum::BoxError>> + Send + 'static
{
}

impl<B> ClientBody for B
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
}

/// The answer to one dispatch: the app's response, or why there is none.
pub type DispatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, DispatchError>> + Send + 'a>>;

/// Where app requests go. The pool implements it; service tests use a fake.
pub trait Upstream: Send + Sync + 'static {
    fn dispatch<'a>(
        &'a self,
        meta: &'a RequestMeta<'a>,
        headers: &'a http::HeaderMap,
        body: RequestBody,
    ) -> DispatchFuture<'a>;
}

impl Upstream for Pool {
    fn dispatch<'a>(
        &'a self,
        meta: &'a RequestMeta<'a>,
        headers: &'a http::HeaderMap,
        body: RequestBody,
    ) -> DispatchFuture<'a> {
        Box::pin(Pool::dispatch(self, meta, headers, body))
    }
}

pub(crate) struct AppState {
    pub(crate) upstream: Arc<dyn Upstream>,
    pub(crate) script_name: String,
}

/// A response body as the edge hands it to hyper: the pool's, unboxed (an app response), or
/// any other, boxed (static files, the edge's own answers, the access log's and the
/// compression layer's wrappers). Boxing the app's body cost an allocation per request.
pub(crate) enum EdgeBody {
    Pool(ResponseBody),
    Other(Body),
}

impl From<Body> for EdgeBody {
    fn from(body: Body) -> EdgeBody {
        EdgeBody::Other(body)
    }
}

impl http_body::Body for EdgeBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        match self.get_mut() {
            EdgeBody::Pool(b) => Pin::new(b).poll_frame(cx).map_err(axum::Error::new),
            EdgeBody::Other(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Pool(b) => b.is_end_stream(),
            EdgeBody::Other(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            EdgeBody::Pool(b) => b.size_hint(),
            EdgeBody::Other(b) => b.size_hint(),
        }
    }
}

/// `conn`: the connection as the app sees it (after trusted proxies). `timed`: the response
/// carries the app's time ([`AppTime`]) for the access log.
///
/// The request is taken apart before the future is made: an `async fn` would hold the
/// request it was given as well as its parts, and the future is moved several times per
/// request by every future around it.
pub(crate) fn handle<B: ClientBody>(
    state: &AppState,
    req: http::Request<B>,
    conn: ConnInfo,
    timed: bool,
) -> impl Future<Output = http::Response<EdgeBody>> + Send + '_ {
    let start = timed.then(Instant::now);
    let (parts, body) = req.into_parts();
    // A request known to have no body (a GET's) gets an empty one that is zero-sized, so
    // boxing it allocates nothing.
    let body: RequestBody = if body.is_end_stream() {
        drop(body);
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        body.map_err(Into::into).boxed_unsync()
    };
    async move {
        let (host, host_from_uri) = match parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) => (Some(h), false),
            None => (parts.uri.authority().map(|a| a.as_str()), true),
        };
        let version = match parts.version {
            http::Version::HTTP_10 | http::Version::HTTP_09 => Version::Http10,
            http::Version::HTTP_2 | http::Version::HTTP_3 => Version::Http2,
            _ => Version::Http11,
        };
        let meta = RequestMeta {
            method: parts.method.as_str(),
            https: conn.https,
            version,
            raw_path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            script_name: &state.script_name,
            host,
            host_from_uri,
            local_port: conn.local_port,
            remote: conn.remote,
        };
        let mut resp = match state.upstream.dispatch(&meta, &parts.headers, body).await {
            Ok(resp) => resp.map(EdgeBody::Pool),
            Err(e) => rescue(&e, parts.method.as_str(), parts.uri.path()).map(EdgeBody::Other),
        };
        if let Some(start) = start {
            resp.extensions_mut().insert(AppTime(start.elapsed()));
        }
        resp
    }
}
