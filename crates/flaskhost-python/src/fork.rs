//! Forking a worker from the fork server, with CPython's before/after-fork hooks.

use std::io;

use pyo3::{Python, ffi};

/// Forks this process. In the child, runs `child` and exits with its return code (never
/// returns); in the parent, returns the child's pid.
///
/// The caller must be the only thread of the process (the fork server is): a fork copies only
/// the calling thread, and any lock another thread held would stay locked in the child.
pub fn fork_and_run(child: impl FnOnce() -> i32) -> io::Result<u32> {
    // SAFETY: PyOS_BeforeFork/AfterFork_* are called with the GIL held, around fork(), as
    // CPython requires; the process is single-threaded (see above).
    let pid = Python::attach(|_py| unsafe {
        ffi::PyOS_BeforeFork();
        let pid = libc::fork();
        if pid == 0 {
            ffi::PyOS_AfterFork_Child();
        } else {
            ffi::PyOS_AfterFork_Parent();
        }
        pid
    });
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = child();
            // SAFETY: _exit ends the process without running the fork server's Rust or C
            // destructors, which belong to the parent; the child flushed what it owns.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid as u32),
    }
}
