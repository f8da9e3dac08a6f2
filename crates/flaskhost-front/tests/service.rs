#![allow(clippy::unwrap_used)] // test code: a panic is the failure report.
//! Service tests of the front's router with a fake upstream: what reaches the pool, and how
//! every pool failure is answered. No sockets, no workers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use flaskhost_front::{ConnInfo, DispatchFuture, Edge, FrontOptions, RouteKind, Upstream, Verdict};
use flaskhost_ipc::request::{RequestMeta, Version};
use flaskhost_pool::{DispatchError, RequestBody, ResponseBody};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// What the fake saw of one request.
#[derive(Debug, Default, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    host: Option<String>,
    host_from_uri: bool,
    version: Option<Version>,
    https: bool,
    body: Vec<u8>,
}

type Reply = Box<dyn Fn() -> Result<http::Response<ResponseBody>, DispatchError> + Send + Sync>;

struct Fake {
    seen: Mutex<Vec<Seen>>,
    reply: Reply,
}

impl Upstream for Fake {
    fn dispatch<'a>(
        &'a self,
        meta: &'a RequestMeta<'a>,
        _headers: &'a http::HeaderMap,
        body: RequestBody,
    ) -> DispatchFuture<'a> {
        Box::pin(async move {
            let collected = body.collect().await;
            let body = match collected {
                Ok(c) => c.to_bytes().to_vec(),
                Err(source) => return Err(DispatchError::RequestBody { source }),
            };
            self.seen.lock().unwrap().push(Seen {
                method: meta.method.to_string(),
                path: meta.raw_path.to_string(),
                query: meta.query.to_string(),
                host: meta.host.map(str::to_string),
                host_from_uri: meta.host_from_uri,
                version: Some(meta.version),
                https: meta.https,
                body,
            });
            (self.reply)()
        })
    }
}

fn ok_reply() -> Reply {
    Box::new(|| {
        Ok(http::Response::new(ResponseBody::Full(Some(
            Bytes::from_static(b"hi"),
        ))))
    })
}

fn front(reply: Reply, max_body: u64) -> (flaskhost_front::EdgeService, Arc<Fake>) {
    let fake = Arc::new(Fake {
        seen: Mutex::new(Vec::new()),
        reply,
    });
    let opts = FrontOptions {
        script_name: String::new(),
        max_body_size: max_body,
        header_read_timeout: Duration::from_secs(5),
    };
    (flaskhost_front::router(fake.clone(), &opts), fake)
}

#[tokio::test]
async fn request_meta_reaches_the_upstream() {
    let (router, fake) = front(ok_reply(), 1024);
    let mut req = Request::post("/p%20ath?a=1&b")
        .header("host", "example.com:81")
        .body(Body::from("data"))
        .unwrap();
    req.extensions_mut().insert(ConnInfo {
        remote: Some("10.0.0.1:999".parse().unwrap()),
        local_port: 80,
        https: true,
        sendfile: false,
    });
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "hi");
    let seen = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (
            seen.method.as_str(),
            seen.path.as_str(),
            seen.query.as_str()
        ),
        ("POST", "/p%20ath", "a=1&b")
    );
    assert_eq!(seen.host.as_deref(), Some("example.com:81"));
    assert!(!seen.host_from_uri);
    assert!(seen.https);
    assert_eq!(seen.body, b"data");
}

#[tokio::test]
async fn http2_authority_stands_in_for_host() {
    let (router, fake) = front(ok_reply(), 1024);
    let req = Request::get("https://h2.example:8443/x")
        .version(http::Version::HTTP_2)
        .body(Body::empty())
        .unwrap();
    router.oneshot(req).await.unwrap();
    let seen = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.host.as_deref(), Some("h2.example:8443"));
    assert!(seen.host_from_uri);
    assert_eq!(seen.version, Some(Version::Http2));
}

#[tokio::test]
async fn declared_oversized_body_is_413_without_reaching_the_app() {
    let (router, fake) = front(ok_reply(), 10);
    let req = Request::post("/")
        .header("content-length", "11")
        .body(Body::from("x".repeat(11)))
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn streamed_oversized_body_is_413() {
    let (router, _fake) = front(ok_reply(), 10);
    let chunks = futures_like_stream(vec![b"12345".to_vec(), b"67890".to_vec(), b"X".to_vec()]);
    let req = Request::post("/").body(chunks).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A body without a declared length (like a chunked upload), from pieces.
fn futures_like_stream(pieces: Vec<Vec<u8>>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(8);
    tokio::spawn(async move {
        for p in pieces {
            let _ = tx.send(Ok(http_body::Frame::data(Bytes::from(p)))).await;
        }
    });
    Body::new(http_body_util::StreamBody::new(ReceiverStream(rx)))
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);
impl<T> futures_core_like::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
mod futures_core_like {
    pub use futures_core::Stream;
}

#[tokio::test]
async fn each_failure_has_its_status() {
    let cases: Vec<(fn() -> DispatchError, StatusCode)> = vec![
        (
            || DispatchError::QueueFull { size: 3 },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            || DispatchError::QueueTimeout {
                waited: Duration::from_secs(1),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            || DispatchError::ShuttingDown,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            || DispatchError::Timeout {
                worker: 1,
                pid: 2,
                timeout: Duration::from_secs(1),
            },
            StatusCode::GATEWAY_TIMEOUT,
        ),
        (
            || DispatchError::WorkerDied {
                worker: 1,
                pid: 2,
                source: std::io::Error::other("eof"),
            },
            StatusCode::BAD_GATEWAY,
        ),
        (
            || DispatchError::AppFailed {
                worker: 1,
                pid: 2,
                message: "boom".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            || DispatchError::BadResponse {
                worker: 1,
                reason: "header".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            || DispatchError::RequestBody {
                source: "client stalled".into(),
            },
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (make, want) in cases {
        let (router, _) = front(Box::new(move || Err(make())), 1024);
        let resp = router
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), want);
        let retry = resp.headers().get("retry-after").is_some();
        assert_eq!(
            retry,
            want == StatusCode::SERVICE_UNAVAILABLE,
            "Retry-After only on 503"
        );
    }
}

#[tokio::test]
async fn responses_carry_their_route_kind_for_the_metrics() {
    let kind = |resp: &http::Response<Body>| {
        resp.extensions()
            .get::<RouteKind>()
            .copied()
            .unwrap_or(RouteKind::App)
    };
    // The app's responses, and the edge's answers on its behalf, are untagged: the app path
    // inserts nothing.
    let (router, _) = front(ok_reply(), 10);
    let resp = router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(resp.extensions().get::<RouteKind>().is_none());
    let req = Request::post("/")
        .header("content-length", "11")
        .body(Body::from("x".repeat(11)))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(
        (resp.status(), kind(&resp)),
        (StatusCode::PAYLOAD_TOO_LARGE, RouteKind::App)
    );

    // A head the connection guard refused.
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(Verdict::Reject(
        StatusCode::BAD_REQUEST,
        "ambiguous framing",
    ));
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(
        (resp.status(), kind(&resp)),
        (StatusCode::BAD_REQUEST, RouteKind::Refused)
    );

    // The redirect listener's answers, the 400 for a missing Host included.
    let redirect = flaskhost_front::redirect_router(&Edge::default(), 8443);
    let req = Request::get("/x")
        .header("host", "example.com")
        .body(Body::empty())
        .unwrap();
    let resp = redirect.clone().oneshot(req).await.unwrap();
    assert_eq!(
        (resp.status(), kind(&resp)),
        (StatusCode::MOVED_PERMANENTLY, RouteKind::Redirect)
    );
    let resp = redirect
        .oneshot(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (resp.status(), kind(&resp)),
        (StatusCode::BAD_REQUEST, RouteKind::Redirect)
    );
}
