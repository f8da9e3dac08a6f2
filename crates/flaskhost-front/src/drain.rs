//! Graceful shutdown of open connections: once [`Drain::finish`] is called, every connection
//! is told to finish (hyper's `graceful_shutdown`: the request in progress is answered, then
//! the connection closes) and `finish` waits until none is left.
//!
//! hyper-util's `GracefulShutdown` does the same, but its connection future polls a
//! `watch::Receiver` every time the connection is polled (a lock and a waiter check each
//! time, ~650 instructions per request). Here a poll reads one flag, and a connection's waker
//! is stored only when it changes (for a connection's task: once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

/// The connections being served, and whether they are to finish.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Notified when the last connection ends while stopping.
    ended: Notify,
}

#[derive(Debug, Default)]
struct Conns {
    next: u64,
    /// Each open connection's waker, once it has been polled.
    wakers: HashMap<u64, Option<Waker>>,
}

impl Drain {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection in, from its accept (so [`Drain::finish`] also waits for a TLS
    /// handshake in progress) until the returned watcher is dropped.
    pub(crate) fn watcher(self: &Arc<Self>) -> DrainWatcher {
        let mut conns = self.conns();
        let id = conns.next;
        conns.next += 1;
        conns.wakers.insert(id, None);
        DrainWatcher {
            drain: self.clone(),
            id,
        }
    }

    /// Tells every connection to finish, then waits until all have ended.
    pub(crate) async fn finish(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A connection registering its waker now either sees the flag under the lock or is
        // woken here.
        let wakers: Vec<Waker> = self
            .conns()
            .wakers
            .values_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
        loop {
            let ended = self.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.conns().wakers.is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// One connection's place in the [`Drain`].
#[derive(Debug)]
pub(crate) struct DrainWatcher {
    drain: Arc<Drain>,
    id: u64,
}

impl DrainWatcher {
    /// Serves `conn` to its end, telling it to finish once the drain starts.
    pub(crate) async fn watch<C: GracefulConnection>(self, conn: C) -> C::Output {
        let mut conn = std::pin::pin!(conn);
        let mut told = false;
        // The waker last stored in the drain, to compare with without taking the lock.
        let mut stored: Option<Waker> = None;
        std::future::poll_fn(|cx| {
            if !told {
                told = self.drain.stopping.load(Ordering::SeqCst) || {
                    let fresh = stored.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
                    !fresh && self.store(cx.waker(), &mut stored)
                };
                if told {
                    conn.as_mut().graceful_shutdown();
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }

    /// Stores the connection's waker; true if the drain has started meanwhile.
    fn store(&self, waker: &Waker, stored: &mut Option<Waker>) -> bool {
        let mut conns = self.drain.conns();
        if self.drain.stopping.load(Ordering::SeqCst) {
            return true;
        }
        if let Some(slot) = conns.wakers.get_mut(&self.id) {
            *slot = Some(waker.clone());
        }
        *stored = Some(waker.clone());
        false
    }
}

impl Drop for DrainWatcher {
    fn drop(&mut self) {
        let mut conns = self.drain.conns();
        conns.wakers.remove(&self.id);
        let last = conns.wakers.is_empty();
        drop(conns);
        if last && self.drain.stopping.load(Ordering::SeqCst) {
            self.drain.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// A hyper HTTP/1 connection on one end of a pipe; its handler takes `delay` to answer.
    fn connection(
        delay: Duration,
    ) -> (
        DuplexStream,
        impl GracefulConnection<Output = Result<(), hyper::Error>>,
    ) {
        let (client, server) = tokio::io::duplex(4096);
        let svc = hyper::service::service_fn(move |_req| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), svc);
        (client, conn)
    }

    async fn read_to_close(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn finish_with_no_connections_returns_at_once() {
        let drain = Arc::new(Drain::default());
        drop(drain.watcher());
        tokio::time::timeout(Duration::from_secs(5), drain.finish())
            .await
            .expect("no connection to wait for");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let drain = Arc::new(Drain::default());
        let (mut client, conn) = connection(Duration::ZERO);
        let task = tokio::spawn(drain.watcher().watch(conn));
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Kept alive and idle: the drain closes it.
        tokio::time::timeout(Duration::from_secs(5), drain.finish())
            .await
            .expect("the idle connection ends");
        assert_eq!(read_to_close(&mut client).await, "");
        task.await.expect("task").expect("clean end");
    }

    #[tokio::test]
    async fn a_request_in_progress_is_answered_first() {
        let drain = Arc::new(Drain::default());
        let (mut client, conn) = connection(Duration::from_millis(300));
        let watcher = drain.watcher();
        let task = tokio::spawn(watcher.watch(conn));
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        // Let the request reach the handler (it is polled, so its waker is stored).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let finish = tokio::spawn({
            let drain = drain.clone();
            async move { drain.finish().await }
        });
        let answer = read_to_close(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .expect("finish ends once the connection has")
            .expect("finish task");
        task.await.expect("task").expect("clean end");
    }

    #[tokio::test]
    async fn a_connection_started_after_the_drain_is_closed_after_one_request() {
        let drain = Arc::new(Drain::default());
        // Accepted (counted in) before the drain, first polled after it (a TLS handshake).
        let watcher = drain.watcher();
        let finish = tokio::spawn({
            let drain = drain.clone();
            async move { drain.finish().await }
        });
        tokio::task::yield_now().await;
        assert!(!finish.is_finished(), "waits for the connection");
        let (mut client, conn) = connection(Duration::ZERO);
        let task = tokio::spawn(watcher.watch(conn));
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut client).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
        task.await.expect("task").expect("clean end");
        tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .expect("finish ends")
            .expect("finish task");
    }
}
