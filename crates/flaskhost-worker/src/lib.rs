//! The two process roles that run Python, as the hidden `flaskhost worker` command runs them:
//!
//! - the **fork server** (default, "preload"): imports the app once, freezes the GC, and forks
//!   a worker whenever the supervisor asks, handing it the slot sockets that came with the
//!   request. It stays single-threaded for its whole life so that forking is safe.
//! - the **lazy worker** (`--lazy-apps`): a process of its own that imports the app itself.
//!
//! Both end up in `flaskhost_python::serve::serve_slots`. This crate owns the process
//! concerns (signals, parent death, reaping, process titles: `title.rs`); it does not use pyo3
//! directly.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use flaskhost_ipc::control::{FromForkServer, ToForkServer};
use flaskhost_python::app::{self, AppTarget};
use flaskhost_python::serve::{self, SlotOptions};
use flaskhost_python::{App, InterpOptions, interp};

pub use flaskhost_python::app::AppTarget as Target;
pub use flaskhost_python::python_description;
pub use flaskhost_python::serve::SlotOptions as Slots;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

pub mod title;

/// What a Python process needs to know, passed on the hidden command's arguments.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub target: AppTarget,
    pub venv: Option<std::path::PathBuf>,
    pub slot_options: SlotOptions,
    /// The supervisor's id of a lazy worker, for its process title (forked workers get theirs
    /// with the `Spawn` message).
    pub worker_id: Option<u32>,
    /// Fork server: make the objects the import left immortal before forking
    /// (`preload-immortal`).
    pub immortal: bool,
}

/// The process title of worker `id`: what `ps` shows.
fn worker_title(id: u32) {
    title::set(
        &format!("flaskhost worker {id}"),
        &format!("flaskhost-w{id}"),
    );
}

/// Exit code of a worker whose app failed to import.
pub const EXIT_LOAD_FAILED: i32 = 3;

/// Process set-up shared by every Python process: die with the parent, and leave SIGINT,
/// SIGTERM and SIGHUP to the main process, which decides when workers stop (a terminal's
/// Ctrl-C or systemd's SIGTERM to the whole group must not cut in-flight requests short).
fn common_process_setup() {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    // The parent may have died before prctl took effect.
    if nix::unistd::getppid().as_raw() == 1 {
        std::process::exit(1);
    }
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: installing SIG_IGN is async-signal-safe and replaces no Rust handler.
        unsafe {
            let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn);
        }
    }
}

fn load(args: &WorkerArgs) -> Result<App, String> {
    let info = interp::start(&InterpOptions {
        venv: args.venv.clone(),
    })
    .map_err(|e| e.to_string())?;
    tracing::debug!(python = %info.version, executable = %info.executable, "python started");
    let app = app::load(&args.target).map_err(|e| e.to_string())?;
    if let Some(second) = flaskhost_python::shared_libpython_loaded() {
        tracing::error!(
            "importing the app loaded {second}: an extension module is linked against the shared \
             libpython, while this flaskhost has CPython linked in statically, so the process now \
             holds two CPythons and may crash; rebuild flaskhost with FLASKHOST_LIBPYTHON=shared \
             (README, \"Which Python\")"
        );
    }
    app.enable_traceback_dump();
    Ok(app)
}

fn streams(fds: Vec<OwnedFd>) -> Vec<UnixStream> {
    fds.into_iter().map(UnixStream::from).collect()
}

/// Runs a worker that imports the app itself. Returns the process exit code.
pub fn run_lazy_worker(args: &WorkerArgs, slots: Vec<OwnedFd>) -> i32 {
    common_process_setup();
    match args.worker_id {
        Some(id) => worker_title(id),
        None => title::set("flaskhost worker", "flaskhost-w"),
    }
    let app = match load(args) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_LOAD_FAILED;
        }
    };
    let code = match serve::serve_slots(&app, streams(slots), args.slot_options) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("worker {} stopped: {e}", std::process::id());
            1
        }
    };
    app.run_exit_hooks();
    code
}

/// Runs the fork server on the control socket `ctl`. Returns the process exit code.
pub fn run_fork_server(args: &WorkerArgs, ctl: OwnedFd) -> i32 {
    common_process_setup();
    title::set(
        &format!("flaskhost fork-server {}", args.target.spec()),
        "flaskhost-fork",
    );
    let app = match load(args) {
        Ok(app) => app,
        Err(message) => {
            let _ = FromForkServer::LoadFailed { message }.send(ctl.as_fd());
            return EXIT_LOAD_FAILED;
        }
    };
    let started = std::time::Instant::now();
    if args.immortal && !flaskhost_python::immortal::SUPPORTED {
        tracing::debug!(
            "preload-immortal: this CPython has no immortal objects as 3.12 and 3.13 do; \
             gc.freeze() only"
        );
    }
    if let Some(done) = app.prepare_for_fork(args.immortal && flaskhost_python::immortal::SUPPORTED)
    {
        tracing::debug!(
            objects = done.objects,
            tracked = done.tracked,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "made the app's objects immortal before forking"
        );
    }
    let threads = app.thread_count();
    if threads > 1 {
        tracing::warn!(
            threads,
            "the app started threads at import; forking copies only the main thread, so those \
             threads do not exist in workers (consider --lazy-apps)"
        );
    }
    let python = format!("Python {}", flaskhost_python::BUILD_PYTHON_VERSION);
    let loaded = FromForkServer::Loaded {
        pid: std::process::id(),
        python,
    };
    if loaded.send(ctl.as_fd()).is_err() {
        return 1;
    }

    // SIGCHLD arrives as a readable fd, so one poll() covers both inputs and the loop needs
    // no signal handler.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let sfd = match sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)
        .and_then(|()| SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK))
    {
        Ok(sfd) => sfd,
        Err(e) => {
            tracing::error!("fork server: signalfd: {e}");
            return 1;
        }
    };
    loop {
        let mut fds = [
            PollFd::new(ctl.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("fork server: poll: {e}");
                return 1;
            }
        }
        let ctl_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let chld_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if chld_ready {
            while sfd.read_signal().ok().flatten().is_some() {}
            if reap(&ctl).is_err() {
                return 0;
            }
        }
        if ctl_ready {
            match ToForkServer::recv(ctl.as_fd()) {
                Ok(Some(ToForkServer::Spawn { id, slots })) => {
                    let reply = spawn(&app, args, &ctl, &sfd, id, slots);
                    if reply.send(ctl.as_fd()).is_err() {
                        return 0;
                    }
                }
                // The supervisor closed the control socket: it is shutting down. Workers end
                // on their own when their slots close, or with us (PDEATHSIG).
                Ok(None) => return 0,
                Err(e) => {
                    tracing::error!("fork server: control socket: {e}");
                    return 1;
                }
            }
        }
    }
}

fn spawn(
    app: &App,
    args: &WorkerArgs,
    ctl: &OwnedFd,
    sfd: &SignalFd,
    id: u32,
    slots: Vec<OwnedFd>,
) -> FromForkServer {
    let ctl_raw = ctl.as_raw_fd();
    let sfd_raw = sfd.as_fd().as_raw_fd();
    let slot_options = args.slot_options;
    let mut slots = Some(slots);
    let r = flaskhost_python::fork::fork_and_run(|| {
        // In the child: drop the fork server's own descriptors and signal set-up.
        // SAFETY: closing descriptors this process owns copies of; nothing else uses them here.
        unsafe {
            libc::close(ctl_raw);
            libc::close(sfd_raw);
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        // SAFETY: as in common_process_setup.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        }
        // Before the slot threads start, so they inherit the thread name.
        worker_title(id);
        let slots = slots.take().unwrap_or_default();
        let code = match serve::serve_slots(app, streams(slots), slot_options) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("worker {id} (pid {}) stopped: {e}", std::process::id());
                1
            }
        };
        app.run_exit_hooks();
        code
    });
    // The parent's copies of the slot sockets close here; the worker holds its own.
    drop(slots);
    match r {
        Ok(pid) => FromForkServer::Spawned { id, pid },
        Err(e) => FromForkServer::SpawnFailed {
            id,
            message: e.to_string(),
        },
    }
}

/// Reports every child that has exited.
fn reap(ctl: &OwnedFd) -> std::io::Result<()> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(WaitStatus::Exited(pid, code)) => {
                FromForkServer::Exited {
                    pid: pid.as_raw() as u32,
                    status: (code & 0xff) << 8,
                }
                .send(ctl.as_fd())?;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                FromForkServer::Exited {
                    pid: pid.as_raw() as u32,
                    status: sig as i32,
                }
                .send(ctl.as_fd())?;
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
