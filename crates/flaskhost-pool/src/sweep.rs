//! Timeouts without a timer per request: one sweeper task per pool checks every deadline a
//! few times a second (uWSGI's master checks harakiri once a second).
//!
//! A request that waits for its response head writes its deadline into its slot's [`Watch`]
//! (one store), a request that waits in the queue keeps its deadline next to its place there,
//! and nothing else happens on the request path: no timer is registered, polled or dropped.
//! The sweeper marks an overdue watch expired and wakes the exchange waiting on it, which then
//! takes the harakiri path itself (tracebacks, kill, `Timeout`); it tells an overdue queue
//! waiter `QueueTimeout` through its channel.
//!
//! **Precision:** a deadline is noticed at the first sweep after it passed, so a timeout fires
//! between its length and its length plus one [`period`]: 100 ms, or a tenth of the shortest of
//! `timeout` and `queue-timeout` when that is less (never under 10 ms). With nothing to watch,
//! the sweeper sleeps (after ten empty sweeps) until a request arms a deadline, so an idle
//! server is not woken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use crate::Shared;
use crate::queue::Queue;

/// Milliseconds since the pool started: deadlines are kept as these, in one atomic word.
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// `t` on this clock, rounded down to the millisecond.
    pub(crate) fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The deadline `after` past `t`, rounded up (a timeout never fires early), and never 0
    /// (0 means "no deadline").
    pub(crate) fn deadline(&self, t: Instant, after: Duration) -> u64 {
        let after = u64::try_from(after.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        self.millis(t).saturating_add(after).max(1)
    }
}

/// How often the sweeper looks: see the module's *Precision*.
pub(crate) fn period(timeout: Duration, queue_timeout: Duration) -> Duration {
    let shortest = if queue_timeout.is_zero() {
        timeout
    } else {
        timeout.min(queue_timeout)
    };
    (shortest / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// One slot's deadline for the answer it awaits, shared by the slot and the sweeper.
#[derive(Default)]
pub(crate) struct Watch {
    /// Clock milliseconds after which the awaited answer is overdue; 0 while none is awaited.
    deadline: AtomicU64,
    /// Set by the sweeper once the deadline has passed.
    expired: AtomicBool,
    /// The task waiting for the answer.
    waker: Mutex<Option<Waker>>,
}

impl Watch {
    fn lock_waker(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // Only a waker is swapped under this lock: a poisoned one holds a usable value.
        self.waker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once the sweeper found the deadline passed; until then the task of `cx` is woken
    /// when it does.
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> bool {
        {
            let mut w = self.lock_waker();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        // Read after registering: the sweeper sets `expired` before it takes the waker, so
        // either it sees ours or we see its flag.
        self.expired.load(Ordering::Acquire)
    }

    /// Called by the sweeper: marks the watch expired and wakes its task if `now` is past
    /// its deadline. Returns whether a deadline is (still) armed.
    fn sweep(&self, now: u64) -> bool {
        let deadline = self.deadline.load(Ordering::SeqCst);
        if deadline == 0 {
            return false;
        }
        if deadline <= now && !self.expired.load(Ordering::Relaxed) {
            self.expired.store(true, Ordering::Release);
            if let Some(w) = self.lock_waker().take() {
                w.wake();
            }
        }
        true
    }
}

/// An armed watch: disarmed (and the waiting task's waker let go) when dropped.
pub(crate) struct Armed {
    watch: Arc<Watch>,
}

impl Armed {
    pub(crate) fn watch(&self) -> &Watch {
        &self.watch
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.watch.deadline.store(0, Ordering::Relaxed);
        self.watch.expired.store(false, Ordering::Relaxed);
        // The waiting task may be gone soon; its waker must not keep it allocated.
        drop(self.watch.lock_waker().take());
    }
}

/// The sweeper's side: the watches of every slot, and its sleep while there is nothing to
/// watch.
pub(crate) struct Sweeper {
    clock: Clock,
    watches: Mutex<Vec<Arc<Watch>>>,
    /// Set while the sweeper sleeps for lack of deadlines; whoever arms one wakes it.
    parked: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Sweeper {
    pub(crate) fn new() -> Sweeper {
        Sweeper {
            clock: Clock::new(),
            watches: Mutex::new(Vec::new()),
            parked: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A watch for a new slot. It is forgotten once the slot is gone.
    pub(crate) fn new_watch(&self) -> Arc<Watch> {
        let w = Arc::new(Watch::default());
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w.clone());
        w
    }

    /// Arms `watch` with `deadline` (clock milliseconds, not 0).
    pub(crate) fn arm(&self, watch: Arc<Watch>, deadline: u64) -> Armed {
        watch.expired.store(false, Ordering::Relaxed);
        watch.deadline.store(deadline, Ordering::SeqCst);
        self.armed_something();
        Armed { watch }
    }

    /// Wakes the sweeper if it sleeps: a deadline was just stored (with `SeqCst`, or under the
    /// queue's lock, which the sweeper takes after setting `parked`).
    pub(crate) fn armed_something(&self) {
        if self.parked.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Wakes the sweeper task so that it sees the pool is gone.
    pub(crate) fn stop(&self) {
        self.wake.notify_one();
    }

    /// Checks every watch and queue waiter once; returns whether any deadline is armed.
    fn sweep(&self, queue: &Queue) -> bool {
        self.sweep_at(queue, self.clock.millis(Instant::now()))
    }

    fn sweep_at(&self, queue: &Queue, now: u64) -> bool {
        let mut armed = false;
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|w| {
                armed |= w.sweep(now);
                // Only this list holds it: its slot is gone.
                Arc::strong_count(w) > 1
            });
        armed |= queue.expire(now);
        armed
    }
}

/// Sweeps in a row that found nothing armed before the sweeper goes to sleep (a second at the
/// usual 100 ms period), so that under any steady load it never sleeps and no request has to
/// wake it.
const IDLE_SWEEPS: u32 = 10;

/// The sweeper task: runs until the pool is dropped.
pub(crate) async fn run(shared: Weak<Shared>, sweeper: Arc<Sweeper>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = 0;
    loop {
        tick.tick().await;
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if sweeper.sweep(&shared.queue) {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_SWEEPS {
                continue;
            }
            // Nothing to watch for a while: sleep until a deadline is armed. `parked` is set
            // before the last look, and armers store their deadline before they read it, so
            // no deadline is missed.
            sweeper.parked.store(true, Ordering::SeqCst);
            if sweeper.sweep(&shared.queue) {
                sweeper.parked.store(false, Ordering::Relaxed);
                idle = 0;
                continue;
            }
        }
        // Without holding the pool, so that dropping it (which wakes us) ends the task.
        sweeper.wake.notified().await;
        sweeper.parked.store(false, Ordering::Relaxed);
        idle = 0;
        tick.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::Poll;

    use bytes::Bytes;
    use flaskhost_ipc::frame::Kind;
    use flaskhost_ipc::request::{RequestMeta, Version};
    use flaskhost_ipc::response::HeadWriter;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::UnixStream;

    use super::*;
    use crate::error::DispatchError;
    use crate::slot::{Slot, WorkerInfo};
    use crate::{Counters, PoolOptions, Recycle, RequestBody, SpawnMode, WorkerCommand};

    /// Lets spawned tasks run until `done` holds (no sleeping, no clock).
    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    /// A stand-in for a worker process, to take the signals a stuck one gets (never this
    /// test's own pid). It is killed when dropped.
    fn stand_in() -> (tokio::process::Child, Arc<WorkerInfo>) {
        let process = tokio::process::Command::new("sleep")
            .arg("60")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep");
        let worker = WorkerInfo::new(1, process.id().expect("pid"), 0);
        (process, worker)
    }

    fn slot_for(worker: &Arc<WorkerInfo>, sweeper: &Sweeper) -> (Slot, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        (Slot::new(worker.clone(), ours, sweeper.new_watch()), theirs)
    }

    #[tokio::test]
    async fn a_queue_waiter_times_out_at_the_first_sweep_past_its_deadline() {
        let sweeper = Arc::new(Sweeper::new());
        let queue = Arc::new(Queue::new(4, Duration::from_millis(50), false));
        let before = sweeper.clock().millis(Instant::now());
        let waiter = tokio::spawn({
            let (queue, sweeper) = (queue.clone(), sweeper.clone());
            async move { queue.acquire(&sweeper).await.map(|_| ()) }
        });
        until(|| queue.lengths().1 == 1).await;

        // Its deadline is at least 50 ms after `before`: not yet.
        assert!(sweeper.sweep_at(&queue, before + 49), "a waiter is armed");
        assert_eq!(queue.lengths().1, 1);

        assert!(
            !sweeper.sweep_at(&queue, before + 60_000),
            "nothing left to watch"
        );
        let r = waiter.await.expect("the waiter task");
        assert!(
            matches!(r, Err(DispatchError::QueueTimeout { .. })),
            "{r:?}"
        );
        assert_eq!(queue.lengths(), (0, 0));
    }

    #[tokio::test]
    async fn a_slot_freed_before_the_deadline_goes_to_the_waiter_and_the_sweep_leaves_it() {
        let sweeper = Arc::new(Sweeper::new());
        let queue = Arc::new(Queue::new(4, Duration::from_millis(50), false));
        let waiter = tokio::spawn({
            let (queue, sweeper) = (queue.clone(), sweeper.clone());
            async move { queue.acquire(&sweeper).await.map(|s| s.worker.id) }
        });
        until(|| queue.lengths().1 == 1).await;
        let (_process, worker) = stand_in();
        let (slot, _theirs) = slot_for(&worker, &sweeper);
        queue.release(slot);
        assert!(!sweeper.sweep_at(&queue, u64::MAX));
        assert_eq!(waiter.await.expect("the waiter task").expect("a slot"), 1);
    }

    #[tokio::test]
    async fn a_zero_queue_timeout_refuses_at_once_as_a_timeout() {
        let sweeper = Sweeper::new();
        let queue = Queue::new(4, Duration::ZERO, false);
        let r = queue.acquire(&sweeper).await.map(|_| ());
        assert!(
            matches!(r, Err(DispatchError::QueueTimeout { .. })),
            "{r:?}"
        );
        assert_eq!(queue.lengths(), (0, 0));
    }

    #[tokio::test]
    async fn an_overdue_watch_wakes_its_task_and_a_disarmed_one_is_left_alone() {
        let sweeper = Arc::new(Sweeper::new());
        let queue = Queue::new(4, Duration::from_secs(1), false);
        let watch = sweeper.new_watch();
        let armed = sweeper.arm(watch.clone(), 100);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                if armed.watch().poll_expired(cx) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            // Disarms.
            drop(armed);
            let _ = tx.send(());
        });
        tokio::task::yield_now().await;

        assert!(sweeper.sweep_at(&queue, 99));
        assert!(!task.is_finished());
        assert!(sweeper.sweep_at(&queue, 100));
        rx.await.expect("woken by the sweep");
        task.await.expect("the task");
        assert!(!sweeper.sweep_at(&queue, u64::MAX), "disarmed");

        // The watch of a slot that is gone is forgotten.
        drop(watch);
        sweeper.sweep_at(&queue, 0);
        assert!(sweeper.watches.lock().expect("lock").is_empty());
    }

    fn options(timeout: Duration) -> PoolOptions {
        PoolOptions {
            workers: 1,
            workers_max: 1,
            idle_timeout: Duration::from_secs(15),
            threads: 2,
            mode: SpawnMode::Lazy,
            command: WorkerCommand {
                program: "false".into(),
                args: Vec::new(),
            },
            queue_size: 4,
            queue_timeout: Duration::from_secs(30),
            timeout,
            body_timeout: Duration::from_secs(30),
            post_buffering: 64 * 1024,
            start_timeout: Duration::from_secs(30),
            recycle: Recycle::default(),
            metrics: false,
        }
    }

    /// A pool without a supervisor, whose sweeper runs as in `Pool::start`.
    fn pool(timeout: Duration) -> Arc<Shared> {
        let opts = options(timeout);
        let shared = Arc::new(Shared {
            queue: Queue::new(opts.queue_size, opts.queue_timeout, false),
            metrics: None,
            sweeper: Arc::new(Sweeper::new()),
            events: tokio::sync::mpsc::unbounded_channel().0,
            counters: Counters::default(),
            opts,
        });
        tokio::spawn(run(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
            period(shared.opts.timeout, shared.opts.queue_timeout),
        ));
        shared
    }

    async fn get(
        shared: &Arc<Shared>,
    ) -> Result<http::Response<crate::ResponseBody>, DispatchError> {
        let meta = RequestMeta {
            method: "GET",
            https: false,
            version: Version::Http11,
            raw_path: "/",
            query: "",
            script_name: "",
            host: Some("x"),
            host_from_uri: false,
            local_port: 80,
            remote: None,
        };
        let body: RequestBody = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        crate::exchange::dispatch(shared, &meta, &http::HeaderMap::new(), body).await
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_gets_timeout_and_its_worker_is_dumped_and_killed() {
        let shared = pool(Duration::from_millis(20));
        let (mut process, worker) = stand_in();
        let (slot, _never_answers) = slot_for(&worker, &shared.sweeper);
        shared.queue.release(slot);

        let r = get(&shared).await;
        assert!(
            matches!(r, Err(DispatchError::Timeout { worker: 1, .. })),
            "{:?}",
            r.err()
        );
        assert_eq!(shared.counters.harakiri.load(Relaxed), 1);
        assert!(worker.harakiri.load(Relaxed), "told apart from a crash");
        assert!(!worker.is_alive());
        let status = process.wait().await.expect("wait");
        assert!(status.signal().is_some(), "{status:?}");
    }

    #[tokio::test]
    async fn a_sleeping_sweeper_is_woken_by_the_next_deadline() {
        let shared = pool(Duration::from_millis(20));
        until(|| shared.sweeper.parked.load(Ordering::SeqCst)).await;
        let (mut process, worker) = stand_in();
        let (slot, _never_answers) = slot_for(&worker, &shared.sweeper);
        shared.queue.release(slot);

        let r = get(&shared).await;
        assert!(
            matches!(r, Err(DispatchError::Timeout { .. })),
            "{:?}",
            r.err()
        );
        process.wait().await.expect("wait");
    }

    #[tokio::test]
    async fn a_request_answered_in_time_disarms_its_watch() {
        let shared = pool(Duration::from_secs(60));
        let (_process, worker) = stand_in();
        let (slot, mut theirs) = slot_for(&worker, &shared.sweeper);
        shared.queue.release(slot);
        let app = tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            let n = theirs.read(&mut buf).await.expect("request");
            assert_eq!(buf[4], Kind::Request as u8, "{:?}", &buf[..n]);
            let mut out = Vec::new();
            let mut head = HeadWriter::begin(&mut out, 200);
            head.header(&mut out, b"Content-Type", b"text/plain");
            head.finish_complete(&mut out, &[b"hi"]);
            theirs.write_all(&out).await.expect("response");
            theirs
        });
        let resp = get(&shared).await.expect("a response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        let _theirs = app.await.expect("the app");
        assert!(!shared.sweeper.sweep_at(&shared.queue, u64::MAX));
        assert_eq!(shared.counters.harakiri.load(Relaxed), 0);
        assert!(worker.is_alive());
    }
}
