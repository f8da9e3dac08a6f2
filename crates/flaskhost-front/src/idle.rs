//! Giving freed memory back to the system when the last open connection ends.
//!
//! glibc's malloc returns freed memory only from the top of the heap. Each connection's
//! buffers and task (about 40 KiB with HTTP/1) are freed when it closes, but below whatever
//! longer-lived allocation was made meanwhile, so after a burst of connections the process
//! keeps its peak: 0.3 MiB of heap before 16 keep-alive connections, 1 MiB after them, 2.4 MiB
//! after 64 (bench/pss). When the last open connection ends, `malloc_trim(0)` releases every
//! free page of every arena (MADV_DONTNEED). At most once a second, so that a server seeing one
//! connection at a time does not pay for it (a walk of the free lists, a few system calls and
//! the page faults of the next connection) on every one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Open connections, shared by every listener of one server.
#[derive(Default)]
pub(crate) struct Connections {
    open: AtomicUsize,
    last_release: Mutex<Option<Instant>>,
}

/// One open connection; dropped when it ends, after everything the connection held.
pub(crate) struct Open<'a>(&'a Connections);

impl Connections {
    pub(crate) fn open(&self) -> Open<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self)
    }

    fn last_closed(&self) {
        let now = Instant::now();
        {
            let Ok(mut last) = self.last_release.try_lock() else {
                return;
            };
            if last.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        release_freed_memory();
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.last_closed();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory of malloc's own arenas to the system; it
    // takes each arena's lock like malloc does.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_when_the_last_connection_ends_at_most_once_a_second() {
        let c = Connections::default();
        let a = c.open();
        let b = c.open();
        drop(a);
        assert!(c.last_release.lock().unwrap().is_none());
        drop(b);
        let first = c.last_release.lock().unwrap().expect("released");
        drop(c.open());
        assert_eq!(*c.last_release.lock().unwrap(), Some(first));
    }
}
