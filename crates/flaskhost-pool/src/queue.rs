//! Idle slots and the bounded queue of requests waiting for one.
//!
//! A request takes an idle slot at once if there is one (the most recently used, whose worker
//! is warm), else waits in a FIFO of at most `capacity` waiters. A released slot goes straight
//! to the oldest waiter. No request is ever queued behind a busy worker.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::DispatchError;
use crate::slot::Slot;

struct Inner {
    idle: Vec<Slot>,
    waiters: VecDeque<oneshot::Sender<Slot>>,
    closed: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Woken when a request has to wait for a slot (adaptive workers start one more).
    pub(crate) pressure: tokio::sync::Notify,
}

/// A place in the queue. Dropping it (the client went away, or the wait timed out) gives back
/// a slot that was handed over in the meantime, so none is ever lost.
struct Waiter<'a> {
    rx: oneshot::Receiver<Slot>,
    queue: &'a Queue,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(slot) = self.rx.try_recv() {
            self.queue.release(slot);
        }
    }
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                idle: Vec::new(),
                waiters: VecDeque::new(),
                closed: false,
            }),
            capacity,
            pressure: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections below cannot panic half-way; a poisoned lock holds
        // consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an idle slot, or waits for one up to `timeout`.
    pub async fn acquire(&self, timeout: Duration) -> Result<Slot, DispatchError> {
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
                g.waiters.retain(|w| !w.is_closed());
                if g.waiters.len() >= self.capacity {
                    return Err(DispatchError::QueueFull {
                        size: g.waiters.len(),
                    });
                }
            }
            let (tx, rx) = oneshot::channel();
            g.waiters.push_back(tx);
            rx
        };
        self.pressure.notify_one();
        let started = Instant::now();
        let mut waiter = Waiter { rx, queue: self };
        tokio::select! {
            r = &mut waiter.rx => r.map_err(|_| DispatchError::ShuttingDown),
            () = tokio::time::sleep(timeout) => {
                waiter.rx.close();
                // A slot may have been handed over just as the timer fired: use it.
                match waiter.rx.try_recv() {
                    Ok(slot) => Ok(slot),
                    Err(_) => Err(DispatchError::QueueTimeout { waited: started.elapsed() }),
                }
            }
        }
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
        while let Some(tx) = g.waiters.pop_front() {
            match tx.send(slot) {
                Ok(()) => return,
                Err(back) => slot = back,
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
            g.waiters.iter().filter(|w| !w.is_closed()).count(),
        )
    }
}
