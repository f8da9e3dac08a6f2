//! One request's conversation with a worker slot: send the head (and the body, in pieces, as
//! the app reads it), receive the response head, then stream or hand over the body.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flaskhost_ipc::frame::Kind;
use flaskhost_ipc::request::{self, BodyMode, RequestMeta};
use flaskhost_ipc::response;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::error::Elapsed;

use crate::body::ResponseBody;
use crate::error::{BoxError, DispatchError, StreamError};
use crate::slot::{Frame, Slot};
use crate::{RequestBody, Shared};

/// Response headers that describe one connection and are HTTP's business, not the app's
/// (PEP 3333 forbids apps to send them; HTTP/2 forbids them outright).
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == header::TRAILER
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// A slot in use by one request, with the rest of the request body. Dropping it before the
/// exchange finished (the client went away) hands the slot to a task that tells the worker to
/// stop and waits for it to do so, so the slot comes back clean.
pub(crate) struct Exchange {
    slot: Option<Slot>,
    body: Option<RequestBody>,
    body_error: Option<BoxError>,
    shared: Arc<Shared>,
    /// The worker has said the exchange is over (end, failure, or a whole response).
    finished: bool,
    /// A write to the slot was started and may not have completed; the stream can no longer
    /// be trusted if we stop here.
    dirty: bool,
    /// Answer `ReadBody` with `Abort`: the client is gone.
    aborting: bool,
    /// The worker whose busy count this exchange holds (released on drop).
    busy: Option<Arc<crate::slot::WorkerInfo>>,
}

impl Exchange {
    fn slot(&mut self) -> &mut Slot {
        // The slot is only taken out by `Drop` or when the exchange gives up on the worker,
        // after which no method is called.
        self.slot.as_mut().expect("exchange without a slot")
    }

    fn worker_ids(&self) -> (u32, u32) {
        self.slot
            .as_ref()
            .map_or((0, 0), |s| (s.worker.id, s.worker.pid))
    }

    /// Gives up on the worker: it is killed (and replaced by the supervisor).
    fn kill_worker(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.worker.kill();
        }
    }

    /// Gives up on a worker that is stuck: it logs its tracebacks, then is killed.
    fn harakiri(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.worker.dump_and_kill();
        }
    }

    /// Reads the next frame that is not a `ReadBody`, answering those on the way.
    async fn next_frame(&mut self) -> io::Result<Frame> {
        loop {
            let f = self.slot().read_frame().await?;
            if f.kind != Kind::ReadBody {
                return Ok(f);
            }
            self.answer_read_body().await?;
        }
    }

    async fn answer_read_body(&mut self) -> io::Result<()> {
        if self.aborting {
            return self.send(Kind::Abort, b"").await;
        }
        let timeout = self.shared.opts.body_timeout;
        loop {
            let Some(body) = self.body.as_mut() else {
                return self.send(Kind::BodyEnd, b"").await;
            };
            match within(timeout, body.frame()).await {
                Ok(Some(Ok(f))) => match f.into_data() {
                    Ok(data) if !data.is_empty() => return self.send(Kind::Body, &data).await,
                    // Empty data and trailers carry nothing for WSGI.
                    _ => continue,
                },
                Ok(None) => {
                    self.body = None;
                }
                Ok(Some(Err(e))) => {
                    self.body = None;
                    self.body_error = Some(e);
                    return self.send(Kind::Abort, b"").await;
                }
                Err(_) => {
                    self.body = None;
                    self.body_error =
                        Some(format!("the client sent no body data for {timeout:?}").into());
                    return self.send(Kind::Abort, b"").await;
                }
            }
        }
    }

    async fn send(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        self.dirty = true;
        self.slot().send(kind, payload).await?;
        self.dirty = false;
        Ok(())
    }

    fn died(&mut self, source: io::Error) -> DispatchError {
        let (worker, pid) = self.worker_ids();
        if let Some(slot) = self.slot.take() {
            slot.worker.mark_dead();
        }
        DispatchError::WorkerDied {
            worker,
            pid,
            source,
        }
    }
}

/// Methods a client may send twice with the effect of once (RFC 9110 §9.2.2).
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Reads and discards the rest of a request body the app did not read, so the client's
/// connection stays usable for its next request (nginx discards unread bodies the same way).
/// The body is already capped at max-body-size; each read waits at most `timeout`.
async fn discard_body(mut body: RequestBody, timeout: Duration) {
    while let Ok(Some(Ok(_))) = within(timeout, body.frame()).await {}
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let _busy = BusyRelease(self.busy.take());
        if let Some(body) = self.body.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(discard_body(body, self.shared.opts.body_timeout));
        }
        let Some(slot) = self.slot.take() else { return };
        if self.finished {
            self.shared.request_done(&slot.worker);
            self.shared.queue.release(slot);
            return;
        }
        if self.dirty {
            // A frame was cut half-way; the worker would misread what follows.
            slot.worker.kill();
            return;
        }
        if self.aborting {
            // A drain dropped before it finished: only the runtime shutting down drops one.
            // A new drain spawned now would be dropped at once too, and so on until the stack
            // overflows; the slot's state is unknown, so it is never used again.
            slot.worker.mark_dead();
            return;
        }
        // Abandoned mid-exchange: stop the worker's work and wait for it before reuse.
        let ex = Exchange {
            slot: Some(slot),
            body: None,
            body_error: None,
            shared: self.shared.clone(),
            finished: false,
            dirty: false,
            aborting: true,
            // The drain keeps the worker busy until it is done.
            busy: _busy.0.clone().inspect(|w| {
                w.busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(ex));
        }
    }
}

/// Gives back a worker's busy count when dropped.
struct BusyRelease(Option<Arc<crate::slot::WorkerInfo>>);

impl Drop for BusyRelease {
    fn drop(&mut self) {
        if let Some(w) = &self.0 {
            w.busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Tells the worker the client is gone and reads until it has finished.
async fn drain(mut ex: Exchange) {
    let timeout = ex.shared.opts.timeout;
    let r = tokio::time::timeout(timeout, async {
        ex.send(Kind::Abort, b"").await?;
        loop {
            let f = ex.next_frame().await?;
            match f.kind {
                Kind::ResponseEnd | Kind::Failed => return Ok(()),
                Kind::ResponseHead => {
                    let complete = response::decode(&f.payload)
                        .map(|h| h.complete_body.is_some())
                        .unwrap_or(true);
                    if complete {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    match r {
        Ok(Ok(())) => ex.finished = true,
        Ok(Err::<(), io::Error>(_)) => {
            if let Some(s) = ex.slot.take() {
                s.worker.mark_dead();
            }
        }
        Err(_) => ex.harakiri(),
    }
}

/// Awaits `fut` for at most `timeout`. A future that is ready at once (a body piece already
/// read with the head) costs no timer: making one reads the clock and the runtime handle.
async fn within<F: Future>(timeout: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(out);
    }
    tokio::time::timeout(timeout, fut).await
}

/// Reads the first part of the body before a worker is taken: all of it when it is small
/// (a slow client then never holds a worker), or the first `post_buffering` bytes.
///
/// A body that comes in one piece (as a small one read with its head does) is passed on as
/// that piece, not copied; one known to have ended (its Content-Length read) is not polled
/// again for its end.
async fn prefetch(
    body: &mut RequestBody,
    limit: usize,
    timeout: Duration,
) -> Result<(Bytes, bool), DispatchError> {
    if body.is_end_stream() {
        return Ok((Bytes::new(), true));
    }
    if body.size_hint().exact().is_some_and(|n| n > limit as u64) {
        return Ok((Bytes::new(), false));
    }
    let mut got = Bytes::new();
    while got.len() <= limit {
        match within(timeout, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    got = if got.is_empty() {
                        d
                    } else {
                        // A second piece is copied into a buffer of its own; later ones
                        // extend that buffer (`got` is its only view: no copy back).
                        let mut joined = BytesMut::from(got);
                        joined.extend_from_slice(&d);
                        joined.freeze()
                    };
                }
                if body.is_end_stream() {
                    return Ok((got, true));
                }
            }
            Ok(None) => return Ok((got, true)),
            Ok(Some(Err(source))) => return Err(DispatchError::RequestBody { source }),
            Err(_) => {
                return Err(DispatchError::RequestBody {
                    source: format!("the client sent no body data for {timeout:?}").into(),
                });
            }
        }
    }
    Ok((got, false))
}

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    meta: &RequestMeta<'_>,
    headers: &HeaderMap,
    mut body: RequestBody,
) -> Result<Response<ResponseBody>, DispatchError> {
    let opts = &shared.opts;
    let content_length = body
        .size_hint()
        .exact()
        .filter(|_| headers.contains_key(header::CONTENT_LENGTH));
    let (prefix, complete) = prefetch(&mut body, opts.post_buffering, opts.body_timeout).await?;
    let mode = if complete {
        BodyMode::Complete
    } else {
        BodyMode::Streaming
    };
    let is_head = meta.method == "HEAD";

    // Take a slot and hand it the request. A write that fails means the worker died while
    // idle, before it saw this request: try another slot.
    let mut ex = Exchange {
        slot: None,
        body: (!complete).then_some(body),
        body_error: None,
        shared: shared.clone(),
        finished: false,
        dirty: false,
        aborting: false,
        busy: None,
    };
    // A request whose worker dies before answering is sent again once, to another worker, when
    // that is safe: its method is idempotent (RFC 9110) and its whole body is still here (nginx
    // `proxy_next_upstream error`, which also skips POST and PATCH). Once only, so a request
    // that kills every worker it touches (a query of death) takes down at most two.
    let retry_allowed = complete && is_idempotent(meta.method);
    let mut retried = false;
    let mut attempts = 0;
    let (head, sent_at) = loop {
        loop {
            let waiting = shared.metrics.as_ref().map(|_| std::time::Instant::now());
            let mut slot = match shared.queue.acquire(&shared.sweeper).await {
                Ok(s) => s,
                Err(e) => {
                    let c = match e {
                        DispatchError::QueueFull { .. } => &shared.counters.queue_rejections,
                        _ => &shared.counters.queue_timeouts,
                    };
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(e);
                }
            };
            if let (Some(m), Some(t)) = (&shared.metrics, waiting) {
                m.queue_wait.observe(t.elapsed());
            }
            slot.worker
                .busy
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(old) = ex.busy.replace(slot.worker.clone()) {
                old.busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            slot.wbuf.clear();
            let hdrs = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
            request::encode(&mut slot.wbuf, meta, hdrs, content_length, mode, &prefix);
            ex.slot = Some(slot);
            ex.dirty = true;
            match ex.slot().flush().await {
                Ok(()) => {
                    ex.dirty = false;
                    break;
                }
                Err(e) => {
                    attempts += 1;
                    ex.dirty = false;
                    let err = ex.died(e);
                    tracing::debug!("{err}; retrying on another worker");
                    if attempts >= 3 {
                        return Err(err);
                    }
                }
            }
        }

        // The sweeper, not a timer of our own, tells us when the app overran `timeout`.
        let sent_at = std::time::Instant::now();
        let sweeper = &shared.sweeper;
        let armed = sweeper.arm(
            ex.slot().watch.clone(),
            sweeper.clock().deadline(sent_at, opts.timeout),
        );
        let answer = {
            let mut read = std::pin::pin!(ex.next_frame());
            std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if armed.watch().poll_expired(cx) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await
        };
        drop(armed);
        match answer {
            None => {
                let (worker, pid) = ex.worker_ids();
                tracing::error!(
                    worker,
                    pid,
                    "{} {} got no response within {:?}: the worker's Python tracebacks follow, then it is killed",
                    meta.method,
                    meta.raw_path,
                    opts.timeout
                );
                ex.harakiri();
                shared
                    .counters
                    .harakiri
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(DispatchError::Timeout {
                    worker,
                    pid,
                    timeout: opts.timeout,
                });
            }
            Some(Err(e)) => {
                let err = ex.died(e);
                if retry_allowed && !retried {
                    retried = true;
                    shared
                        .counters
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        "{err}; it had sent nothing, so {} {} goes to another worker",
                        meta.method,
                        meta.raw_path
                    );
                    continue;
                }
                return Err(err);
            }
            Some(Ok(f)) => break (f, sent_at),
        }
    };
    let (worker, pid) = ex.worker_ids();
    if let Some(w) = &ex.busy {
        let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        w.busy_micros
            .fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(m) = &shared.metrics {
        m.app.observe(sent_at.elapsed());
    }
    match head.kind {
        Kind::ResponseHead => {}
        Kind::Failed => {
            ex.finished = true;
            if let Some(w) = &ex.busy {
                w.exceptions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            shared
                .counters
                .exceptions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(source) = ex.body_error.take() {
                return Err(DispatchError::RequestBody { source });
            }
            let message = String::from_utf8_lossy(&head.payload).into_owned();
            return Err(DispatchError::AppFailed {
                worker,
                pid,
                message,
            });
        }
        other => {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected {other:?} frame"),
            );
            ex.kill_worker();
            return Err(DispatchError::WorkerDied {
                worker,
                pid,
                source: e,
            });
        }
    }

    let decoded = match response::decode(&head.payload) {
        Ok(d) => d,
        Err(e) => {
            ex.kill_worker();
            return Err(DispatchError::WorkerDied {
                worker,
                pid,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            });
        }
    };
    let complete_body = decoded.complete_body.clone().map(|r| head.payload.slice(r));
    if complete_body.is_some() {
        // The whole response is here: the slot is free before the client has it.
        ex.finished = true;
    }
    let mut resp = match build_head(worker, &head.payload, &decoded) {
        Ok(r) => r,
        Err(e) => {
            // The worker goes on with the exchange (or has finished it); drain it normally.
            return Err(e);
        }
    };
    match complete_body {
        Some(body) => {
            drop(ex);
            if !is_head {
                let len = body.len();
                let mut digits = [0; 20];
                if let Some(stated) = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .filter(|v| v.as_bytes() != flaskhost_ipc::decimal(len as u64, &mut digits))
                {
                    let stated = stated.clone();
                    tracing::warn!(
                        worker,
                        "the app's Content-Length {:?} does not match its {len}-byte body; sending the real length",
                        stated
                    );
                    resp.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
            }
            Ok(resp.map(|()| ResponseBody::Full(Some(body))))
        }
        None => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(pump(ex, tx));
            Ok(resp.map(|()| ResponseBody::Stream(rx)))
        }
    }
}

/// The names apps send on nearly every response, spelled as WSGI apps (werkzeug, Django) send
/// them, or in lowercase. Each is a valid name that is not hop-by-hop, so these skip the
/// general parse and check; any other spelling takes the full path.
fn common_name(name: &[u8]) -> Option<HeaderName> {
    Some(match name {
        b"Content-Type" | b"content-type" => header::CONTENT_TYPE,
        b"Content-Length" | b"content-length" => header::CONTENT_LENGTH,
        b"Location" | b"location" => header::LOCATION,
        b"Set-Cookie" | b"set-cookie" => header::SET_COOKIE,
        b"Cache-Control" | b"cache-control" => header::CACHE_CONTROL,
        b"Vary" | b"vary" => header::VARY,
        b"ETag" | b"etag" => header::ETAG,
        b"Last-Modified" | b"last-modified" => header::LAST_MODIFIED,
        b"Content-Encoding" | b"content-encoding" => header::CONTENT_ENCODING,
        b"Content-Disposition" | b"content-disposition" => header::CONTENT_DISPOSITION,
        _ => return None,
    })
}

fn build_head(
    worker: u32,
    payload: &Bytes,
    head: &response::ResponseHead,
) -> Result<Response<()>, DispatchError> {
    let bad = |reason: String| DispatchError::BadResponse { worker, reason };
    let status =
        StatusCode::from_u16(head.status).map_err(|_| bad(format!("status {}", head.status)))?;
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    // Room for the headers the edge adds too (security headers, Server), so the map is
    // allocated once.
    map.reserve(head.headers.len() + 8);
    for (raw, value) in head.headers.clone() {
        let name = match common_name(raw) {
            Some(name) => name,
            None => {
                let name = HeaderName::from_bytes(raw)
                    .map_err(|_| bad(format!("header name {:?}", String::from_utf8_lossy(raw))))?;
                if hop_by_hop(&name) {
                    continue;
                }
                name
            }
        };
        // The value shares the frame's buffer: no copy.
        let value = HeaderValue::from_maybe_shared(payload.slice_ref(value))
            .map_err(|_| bad(format!("value of header {name}")))?;
        map.append(name, value);
    }
    Ok(resp)
}

/// Moves a streamed response from the worker to the client, chunk by chunk, and frees the
/// slot at the end. If the client goes away, the worker is told to stop.
async fn pump(mut ex: Exchange, tx: mpsc::Sender<Result<Bytes, StreamError>>) {
    let timeout = ex.shared.opts.timeout;
    loop {
        // Only the read is raced against the client going away: it is cancel-safe, whereas
        // answering a ReadBody half-way is not.
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, ex.slot().read_frame()) => r,
            () = tx.closed() => return, // Drop aborts and drains.
        };
        let (worker, pid) = ex.worker_ids();
        let f = match read {
            Err(_) => {
                tracing::error!(
                    worker,
                    pid,
                    "streamed response stalled for {timeout:?}: the worker's Python tracebacks follow, then it is killed"
                );
                ex.harakiri();
                let _ = tx.send(Err(StreamError::Timeout { worker, timeout })).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("worker {worker} (pid {pid}) slot read failed mid-response: {e}");
                let _ = ex.died(e);
                let _ = tx.send(Err(StreamError::WorkerDied { worker, pid })).await;
                return;
            }
            Ok(Ok(f)) => f,
        };
        match f.kind {
            Kind::ResponseBody => {
                if tx.send(Ok(f.payload)).await.is_err() {
                    return;
                }
            }
            Kind::ReadBody => {
                if let Err(e) = ex.answer_read_body().await {
                    let _ = ex.died(e);
                    let _ = tx.send(Err(StreamError::WorkerDied { worker, pid })).await;
                    return;
                }
            }
            Kind::ResponseEnd => {
                ex.finished = true;
                return;
            }
            Kind::Failed => {
                ex.finished = true;
                if let Some(w) = &ex.busy {
                    w.exceptions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ex.shared
                    .counters
                    .exceptions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = String::from_utf8_lossy(&f.payload).into_owned();
                let _ = tx
                    .send(Err(StreamError::AppFailed { worker, message }))
                    .await;
                return;
            }
            other => {
                tracing::error!("worker {worker}: unexpected {other:?} frame mid-response");
                ex.kill_worker();
                let _ = tx.send(Err(StreamError::WorkerDied { worker, pid })).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flaskhost_ipc::frame::HEADER_LEN;
    use flaskhost_ipc::response::HeadWriter;

    use super::*;

    fn head(headers: &[(&[u8], &[u8])]) -> Result<Response<()>, DispatchError> {
        let mut buf = Vec::new();
        let mut w = HeadWriter::begin(&mut buf, 200);
        for (n, v) in headers {
            w.header(&mut buf, n, v);
        }
        w.finish_complete(&mut buf, &[b"x"]);
        let payload = Bytes::from(buf).slice(HEADER_LEN..);
        let decoded = response::decode(&payload).expect("decode");
        build_head(1, &payload, &decoded)
    }

    /// A fast stop with a request in flight: the runtime shuts down, the request's task is
    /// dropped, and the drain it spawns is dropped unrun. That drain gives the slot up.
    #[test]
    fn an_exchange_dropped_while_the_runtime_shuts_down_gives_its_slot_up() {
        use crate::{Counters, PoolOptions, Recycle, SpawnMode, WorkerCommand, sweep};
        // A stand-in for the worker process, should anything signal it (never this test).
        let mut stand_in = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        let worker = crate::slot::WorkerInfo::new(1, stand_in.id(), 0);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let w = worker.clone();
        rt.spawn(async move {
            let opts = PoolOptions {
                workers: 1,
                workers_max: 1,
                idle_timeout: Duration::from_secs(15),
                threads: 1,
                mode: SpawnMode::Lazy,
                command: WorkerCommand {
                    program: "false".into(),
                    args: Vec::new(),
                },
                queue_size: 1,
                queue_timeout: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
                body_timeout: Duration::from_secs(30),
                post_buffering: 64 * 1024,
                start_timeout: Duration::from_secs(30),
                recycle: Recycle::default(),
                metrics: false,
            };
            let shared = Arc::new(Shared {
                queue: crate::queue::Queue::new(1, opts.queue_timeout, false),
                metrics: None,
                sweeper: Arc::new(sweep::Sweeper::new()),
                events: mpsc::unbounded_channel().0,
                counters: Counters::default(),
                opts,
            });
            let (ours, theirs) = tokio::net::UnixStream::pair().expect("socketpair");
            let _ex = Exchange {
                slot: Some(Slot::new(w, ours, shared.sweeper.new_watch())),
                body: None,
                body_error: None,
                shared,
                finished: false,
                dirty: false,
                aborting: false,
                busy: None,
            };
            let _ = entered_tx.send(());
            std::future::pending::<()>().await;
            drop(theirs);
        });
        entered_rx.recv().expect("the task ran");
        drop(rt);
        let _ = stand_in.kill();
        let _ = stand_in.wait();
        assert!(
            !worker.is_alive(),
            "the slot of an unfinished drain is given up"
        );
    }

    #[test]
    fn common_names_are_the_names_the_full_parse_gives() {
        for n in [
            "Content-Type",
            "Content-Length",
            "Location",
            "Set-Cookie",
            "Cache-Control",
            "Vary",
            "ETag",
            "Last-Modified",
            "Content-Encoding",
            "Content-Disposition",
        ] {
            for spelling in [n.to_string(), n.to_ascii_lowercase()] {
                let name = common_name(spelling.as_bytes()).expect("common");
                assert_eq!(
                    name,
                    HeaderName::from_bytes(spelling.as_bytes()).expect("valid")
                );
                assert!(!hop_by_hop(&name));
            }
        }
        assert!(common_name(b"CONTENT-TYPE").is_none());
        assert!(common_name(b"Content-Type ").is_none());
    }

    #[test]
    fn app_headers_are_still_checked_and_hop_by_hop_ones_dropped() {
        let r = head(&[
            (b"Content-Type", b"text/plain"),
            (b"CONTENT-TYPE", b"text/html"),
            (b"Connection", b"close"),
            (b"transfer-encoding", b"chunked"),
            (b"Keep-Alive", b"5"),
            (b"X-Custom", b"1"),
        ])
        .expect("valid head");
        let h = r.headers();
        let types: Vec<_> = h.get_all(header::CONTENT_TYPE).iter().collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        assert_eq!(h["x-custom"], "1");
        assert_eq!(h.len(), 3, "{h:?}");

        assert!(matches!(
            head(&[(b"Bad Name", b"1")]),
            Err(DispatchError::BadResponse { .. })
        ));
        assert!(matches!(
            head(&[(b"Content-Type", b"a\nb")]),
            Err(DispatchError::BadResponse { .. })
        ));
    }
}
