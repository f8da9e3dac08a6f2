//! Idle slots and the bounded queue of requests waiting for one.
//!
//! A request takes an idle slot at once if there is one (the most recently used, whose worker
//! is warm), else waits in a FIFO of at most `capacity` waiters. A released slot goes straight
//! to the oldest waiter. No request is ever queued behind a busy worker. A waiter's timeout is
//! enforced by the pool's sweeper ([`Queue::expire`]), not by a timer of its own.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::DispatchError;
use crate::slot::Slot;
use crate::sweep::Sweeper;

struct Inner {
    idle: Vec<Slot>,
    /// Oldest first. All wait at most the same time, so their deadlines (sweeper clock
    /// milliseconds) only grow from front to back.
    waiters: VecDeque<(u64, oneshot::Sender<Handover>)>,
    closed: bool,
}

/// What a waiter is told: a slot, or `None` when its wait timed out. (A dropped sender means
/// the pool is shutting down.)
type Handover = Option<Slot>;

pub struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
    timeout: Duration,
    /// Woken when a request has to wait for a slot (adaptive workers start one more); `None`
    /// for a fixed pool, where nobody listens.
    pub(crate) pressure: Option<tokio::sync::Notify>,
}

/// A place in the queue. Dropping it (the client went away, or the wait timed out) gives back
/// a slot that was handed over in the meantime, so none is ever lost.
struct Waiter<'a> {
    rx: oneshot::Receiver<Handover>,
    queue: &'a Queue,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Some(slot)) = self.rx.try_recv() {
            self.queue.release(slot);
        }
    }
}

impl Queue {
    /// A queue of at most `capacity` waiters, each waiting at most `timeout`; `adaptive` when
    /// a waiting request should wake the scaler ([`Queue::pressure`]).
    pub fn new(capacity: usize, timeout: Duration, adaptive: bool) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                waiters: VecDeque::new(),
                closed: false,
            }),
            capacity,
            timeout,
            pressure: adaptive.then(tokio::sync::Notify::new),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections below cannot panic half-way; a poisoned lock holds
        // consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an idle slot, or waits for one up to the queue's timeout (told by the sweeper,
    /// whose clock `sweeper` is and whom a new deadline may have to wake).
    pub async fn acquire(&self, sweeper: &Sweeper) -> Result<Slot, DispatchError> {
        let started;
        let rx = {
            let mut g = self.lock();
            if g.closed {
                return Err(DispatchError::ShuttingDown);
            }
            while let Some(slot) = g.idle.pop() {
                if slot.worker.is_alive() {
                    return Ok(slot);
                }
            }
            if g.waiters.len() >= self.capacity {
                // Waiters that gave up are only removed lazily; count the live ones.
                g.waiters.retain(|(_, w)| !w.is_closed());
                if g.waiters.len() >= self.capacity {
                    return Err(DispatchError::QueueFull {
                        size: g.waiters.len(),
                    });
                }
            }
            if self.timeout.is_zero() {
                // No wait allowed: timed out already.
                return Err(DispatchError::QueueTimeout {
                    waited: Duration::ZERO,
                });
            }
            started = Instant::now();
            let (tx, rx) = oneshot::channel();
            g.waiters
                .push_back((sweeper.clock().deadline(started, self.timeout), tx));
            rx
        };
        sweeper.armed_something();
        if let Some(p) = &self.pressure {
            p.notify_one();
        }
        let mut waiter = Waiter { rx, queue: self };
        match (&mut waiter.rx).await {
            Ok(Some(slot)) => Ok(slot),
            Ok(None) => Err(DispatchError::QueueTimeout {
                waited: started.elapsed(),
            }),
            Err(_) => Err(DispatchError::ShuttingDown),
        }
    }

    /// Tells every waiter whose deadline is past `now` (sweeper clock milliseconds) that its
    /// wait timed out. Returns whether any still wait.
    pub(crate) fn expire(&self, now: u64) -> bool {
        let mut g = self.lock();
        while let Some((deadline, _)) = g.waiters.front() {
            if *deadline > now {
                return true;
            }
            if let Some((_, tx)) = g.waiters.pop_front() {
                // A waiter that gave up already is simply dropped.
                let _ = tx.send(None);
            }
        }
        false
    }

    /// Returns a slot after a finished exchange, or adds a new worker's slot.
    pub fn release(&self, slot: Slot) {
        if !slot.worker.is_alive() {
            return;
        }
        let mut slot = slot;
        let mut g = self.lock();
        if g.closed {
            // Dropping the slot closes it; its worker thread sees the end and stops.
            return;
        }
        while let Some((_, tx)) = g.waiters.pop_front() {
            match tx.send(Some(slot)) {
                // That waiter gave up; the slot comes back.
                Err(Some(back)) => slot = back,
                Ok(()) | Err(None) => return,
            }
        }
        g.idle.push(slot);
    }

    /// Drops the idle slots of workers that have died or retired.
    pub fn purge_dead(&self) {
        self.lock().idle.retain(|s| s.worker.is_alive());
    }

    /// Stops handing out slots: idle ones are closed now, busy ones when released, and
    /// waiters get `ShuttingDown`.
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut g = self.lock();
            g.closed = true;
            (std::mem::take(&mut g.idle), std::mem::take(&mut g.waiters))
        };
        drop(idle);
        drop(waiters);
    }

    /// (idle slots, waiting requests), for stats and tests.
    pub fn lengths(&self) -> (usize, usize) {
        let g = self.lock();
        (
            g.idle.len(),
            g.waiters.iter().filter(|(_, w)| !w.is_closed()).count(),
        )
    }
}
