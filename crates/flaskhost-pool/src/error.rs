//! Why a request could not be answered by the app. The front maps each variant to one status
//! (its `rescue` function); the variants carry what the log needs.

use std::time::Duration;

use thiserror::Error;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum DispatchError {
    /// Every slot is busy and the queue holds `size` waiting requests already.
    #[error("all workers are busy and the queue is full ({size} waiting)")]
    QueueFull { size: usize },
    /// The request waited longer than the queue timeout for a free slot.
    #[error("no worker became free within {waited:?}")]
    QueueTimeout { waited: Duration },
    /// The worker process died (or its slot broke) while it held the request.
    #[error("worker {worker} (pid {pid}) died while handling the request")]
    WorkerDied {
        worker: u32,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// The app did not start its response within the timeout; the worker was killed.
    #[error("worker {worker} (pid {pid}) did not answer within {timeout:?} and was killed")]
    Timeout {
        worker: u32,
        pid: u32,
        timeout: Duration,
    },
    /// The app raised before starting its response (the worker logged the traceback).
    #[error("the app raised an exception on worker {worker} (pid {pid}): {message}")]
    AppFailed {
        worker: u32,
        pid: u32,
        message: String,
    },
    /// The app's status or headers cannot be sent over HTTP.
    #[error("the app's response on worker {worker} cannot be sent: {reason}")]
    BadResponse { worker: u32, reason: String },
    /// Reading the request body from the client failed (too large, too slow, malformed).
    #[error("reading the request body failed")]
    RequestBody {
        #[source]
        source: BoxError,
    },
    /// The pool is stopping and takes no new requests.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A streamed response ended abnormally; the front cuts the connection so the client sees a
/// truncated response instead of a complete-looking one.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error("worker {worker} (pid {pid}) died mid-response")]
    WorkerDied { worker: u32, pid: u32 },
    #[error("the app raised mid-response on worker {worker}: {message}")]
    AppFailed { worker: u32, message: String },
    #[error("worker {worker} sent nothing for {timeout:?} mid-response and was killed")]
    Timeout { worker: u32, timeout: Duration },
}
