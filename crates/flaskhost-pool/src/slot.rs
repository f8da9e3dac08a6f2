//! A slot: one connection to one worker thread, with its buffers.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use flaskhost_ipc::frame::{self, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The worker process a slot belongs to.
#[derive(Debug)]
pub struct WorkerInfo {
    pub id: u32,
    pub pid: u32,
    /// The app generation it runs: 0 at start, one more at each reload.
    pub generation: u64,
    pub started: std::time::Instant,
    /// Cleared by the supervisor when the process exits, so idle slots of a dead worker are
    /// skipped instead of handed a request.
    alive: AtomicBool,
    /// Set once the worker's replacement is ready: its slots are closed as they come back
    /// instead of taking new requests, and it exits when the last one closes.
    retiring: AtomicBool,
    /// A replacement has been asked for (recycling), so it is not asked for twice.
    replacing: AtomicBool,
    /// Requests this worker has finished.
    served: std::sync::atomic::AtomicU64,
    /// Requests it holds right now (one per busy slot).
    pub(crate) busy: std::sync::atomic::AtomicU32,
    /// Requests on which the app raised.
    pub(crate) exceptions: std::sync::atomic::AtomicU64,
    /// Sum of the time from dispatch to the response head, for the average.
    pub(crate) busy_micros: std::sync::atomic::AtomicU64,
    /// It was killed for overrunning the timeout.
    pub(crate) harakiri: AtomicBool,
    /// Why the supervisor killed it, if it did (counted as that restart reason on exit).
    pub(crate) killed_for: std::sync::atomic::AtomicU8,
    /// All its slots reported ready and were handed to the queue.
    ready: AtomicBool,
}

impl WorkerInfo {
    pub fn new(id: u32, pid: u32, generation: u64) -> Arc<WorkerInfo> {
        Arc::new(WorkerInfo {
            id,
            pid,
            generation,
            started: std::time::Instant::now(),
            alive: AtomicBool::new(true),
            retiring: AtomicBool::new(false),
            replacing: AtomicBool::new(false),
            served: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::atomic::AtomicU32::new(0),
            exceptions: std::sync::atomic::AtomicU64::new(0),
            busy_micros: std::sync::atomic::AtomicU64::new(0),
            harakiri: AtomicBool::new(false),
            killed_for: std::sync::atomic::AtomicU8::new(0),
            ready: AtomicBool::new(false),
        })
    }
    /// Alive and not retiring: may take new requests.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && !self.retiring.load(Ordering::Relaxed)
    }
    pub fn mark_dead(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Relaxed);
    }
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed)
    }
    /// True the first time only: whoever gets true asks for the replacement.
    pub fn claim_replacement(&self) -> bool {
        !self.replacing.swap(true, Ordering::Relaxed)
    }
    /// Gives back a claim whose replacement will not come (a reload that was abandoned).
    pub fn release_claim(&self) {
        self.replacing.store(false, Ordering::Relaxed);
    }
    pub fn is_being_replaced(&self) -> bool {
        self.replacing.load(Ordering::Relaxed)
    }
    /// Counts a finished request and returns the new total.
    pub fn count_request(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    /// Kills the worker process (a request on it timed out, or shutdown's deadline passed).
    pub fn kill(&self) {
        self.mark_dead();
        // SAFETY: kill(2) has no memory effects. The pid is ours (a child of the fork server
        // or of this process) and still unreaped, because the exit event that would free it
        // is what marks the worker dead first.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// How long a stuck worker has to write its tracebacks between `SIGUSR2` and `SIGKILL`.
const DUMP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl WorkerInfo {
    /// A request overran its timeout on this worker: make it log where it is stuck (every
    /// thread's Python traceback, on `SIGUSR2`), then kill it. Nothing is sent to it meanwhile.
    pub fn dump_and_kill(self: &std::sync::Arc<Self>) {
        self.mark_dead();
        self.harakiri.store(true, Ordering::Relaxed);
        // SAFETY: as in `kill`.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGUSR2);
        }
        let me = self.clone();
        let kill_later = async move {
            tokio::time::sleep(DUMP_GRACE).await;
            me.kill();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(kill_later);
            }
            Err(_) => self.kill(),
        }
    }
}

/// A frame read from a slot: its kind and its payload, shared with the read buffer.
pub struct Frame {
    pub kind: Kind,
    pub payload: Bytes,
}

/// A slot's read buffer, at first. Frames are split off its front and each read appends
/// behind them, so every page of it ends up written: with four slots per worker that is
/// 256 KiB of the main process's heap at 64 KiB each, for responses that are mostly a few
/// hundred bytes. A frame larger than the buffer grows it to at least [`LARGE_RBUF`] free,
/// so that one read still takes several frames of a large response.
const SMALL_RBUF: usize = 8 * 1024;
const LARGE_RBUF: usize = 64 * 1024;

pub struct Slot {
    pub worker: Arc<WorkerInfo>,
    /// The deadline of the answer awaited on this slot, watched by the pool's sweeper.
    pub(crate) watch: Arc<crate::sweep::Watch>,
    stream: UnixStream,
    rbuf: BytesMut,
    pub wbuf: Vec<u8>,
}

impl Slot {
    pub(crate) fn new(
        worker: Arc<WorkerInfo>,
        stream: UnixStream,
        watch: Arc<crate::sweep::Watch>,
    ) -> Slot {
        Slot {
            worker,
            watch,
            stream,
            rbuf: BytesMut::with_capacity(SMALL_RBUF),
            wbuf: Vec::with_capacity(8 * 1024),
        }
    }

    /// Reads one frame. An end of stream is an error: a worker never closes a slot on its own
    /// except by dying.
    pub async fn read_frame(&mut self) -> io::Result<Frame> {
        loop {
            if let Some((kind, len)) = frame::parse_header(&self.rbuf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                let total = frame::HEADER_LEN + len;
                if self.rbuf.len() >= total {
                    let mut f = self.rbuf.split_to(total);
                    let payload = f.split_off(frame::HEADER_LEN).freeze();
                    return Ok(Frame { kind, payload });
                }
                self.rbuf.reserve((total - self.rbuf.len()).max(LARGE_RBUF));
            } else if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                // Takes the consumed front back when no frame still uses it, else a new
                // buffer of the first size.
                self.rbuf.reserve(4096);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "worker closed its slot",
                ));
            }
        }
    }

    /// Writes everything queued in `wbuf`.
    pub async fn flush(&mut self) -> io::Result<()> {
        let r = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        r
    }

    pub async fn send(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        frame::push(&mut self.wbuf, kind, payload);
        self.flush().await
    }
}
