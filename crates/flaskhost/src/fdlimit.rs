//! The open-file limit. Every client connection is a descriptor, and so is every worker slot,
//! listener, log file and static file held open; a soft limit of 1024 (a common default)
//! would make `accept` fail with EMFILE below the default `max-connections` plus the rest. So
//! the soft limit is raised to the hard one at start, as Go programs do and as nginx's
//! `worker_rlimit_nofile` is used for; if even that is too low for the configuration, a
//! warning says so before anything binds.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors the server needs besides client connections and worker slots: listeners, log
/// files, the static files a kept lookup may hold (256), the runtime's own.
const RESERVE: u64 = 256 + 64;

/// Raises the soft open-file limit to the hard one, and warns when `connections` client
/// connections plus `slots` worker slots plus the server's own files may not fit.
pub(crate) fn raise(connections: u64, slots: u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    // An unlimited hard limit is not a value the soft one may take for files: the
    // kernel's per-process ceiling is.
    let ceiling = if hard == nix::libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    let mut now = soft;
    if soft < ceiling {
        match setrlimit(Resource::RLIMIT_NOFILE, ceiling, hard) {
            Ok(()) => {
                tracing::debug!("open-file limit raised from {soft} to {ceiling}");
                now = ceiling;
            }
            Err(e) => tracing::debug!("open-file limit stays at {soft}: {e}"),
        }
    }
    let need = connections.saturating_add(slots).saturating_add(RESERVE);
    if now < need {
        tracing::warn!(
            "the open-file limit is {now}, and max-connections {connections} with {slots} worker \
             slot(s) and the server's own files need about {need}: connections past the limit \
             will wait; raise it (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or \
             lower max-connections"
        );
    }
}
