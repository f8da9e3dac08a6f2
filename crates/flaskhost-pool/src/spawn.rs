//! Starting worker processes: through the fork server (preload) or by re-executing the binary
//! (lazy). Either way the worker gets the worker ends of its slot socket pairs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use flaskhost_ipc::control::{self, FromForkServer, ToForkServer};
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::slot::WorkerInfo;

/// How workers are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnMode {
    /// A fork server imports the app once and forks workers from it (copy-on-write).
    Preload,
    /// Each worker is the binary re-executed, importing the app itself (`--lazy-apps`).
    Lazy,
}

/// The command that runs a Python process: the binary and the arguments of its hidden
/// `worker` command. The pool appends `--fork-server --control-fd N` or
/// `--slot-fds A,B,... --worker-id N`.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// A command that passes `fds` (by their numbers) to the child: they are made inheritable
    /// in the child only, between fork and exec.
    fn command(&self, extra: &[OsString], fds: Vec<RawFd>) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .args(extra)
            .stdin(std::process::Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec and only calls fcntl,
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }
}

/// Live workers by pid. Filled when a pid becomes known and emptied when its exit is seen,
/// always in that order (the fork server reports both on one ordered socket).
#[derive(Default)]
pub(crate) struct Registry {
    workers: Mutex<HashMap<u32, Arc<WorkerInfo>>>,
    pub(crate) changed: tokio::sync::Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<WorkerInfo>>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn insert(&self, info: Arc<WorkerInfo>) {
        self.lock().insert(info.pid, info);
        self.changed.notify_waiters();
    }
    pub(crate) fn remove(&self, pid: u32) -> Option<Arc<WorkerInfo>> {
        let r = self.lock().remove(&pid);
        self.changed.notify_waiters();
        r
    }
    pub(crate) fn all(&self) -> Vec<Arc<WorkerInfo>> {
        self.lock().values().cloned().collect()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Describes a raw `waitpid` status ("exit code 3", "killed by signal 9 (SIGKILL)").
pub(crate) fn describe_status(status: i32) -> String {
    let sig = status & 0x7f;
    if sig == 0 {
        format!("exit code {}", (status >> 8) & 0xff)
    } else {
        let name = nix::sys::signal::Signal::try_from(sig).map_or("?", |s| s.as_str());
        format!("killed by signal {sig} ({name})")
    }
}

pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => describe_status(s),
        _ => status.to_string(),
    }
}

/// Where the pid of a requested worker (or why there is none) is delivered.
type SpawnReply = oneshot::Sender<Result<Arc<WorkerInfo>, String>>;

/// The supervisor's side of the fork server.
pub(crate) struct ForkServer {
    /// The app generation its workers run (see `WorkerInfo::generation`).
    pub(crate) generation: u64,
    ctl: AsyncFd<OwnedFd>,
    pub(crate) child: tokio::sync::Mutex<Child>,
    pending: Mutex<HashMap<u32, SpawnReply>>,
}

pub(crate) enum Started {
    Ready(Arc<ForkServer>),
    LoadFailed(String),
    Exited(String),
}

impl ForkServer {
    /// Starts the fork server and waits until it has imported the app (or failed to).
    pub(crate) async fn start(
        cmd: &WorkerCommand,
        timeout: std::time::Duration,
        generation: u64,
    ) -> io::Result<Started> {
        let (ours, theirs) = control::seqpacket_pair()?;
        let fd = theirs.as_raw_fd();
        let extra: Vec<OsString> = vec![
            "--fork-server".into(),
            "--control-fd".into(),
            fd.to_string().into(),
        ];
        let mut child = cmd.command(&extra, vec![fd]).spawn()?;
        drop(theirs);
        nix::fcntl::fcntl(
            &ours,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        // SAFETY: `ours` is an OwnedFd moved into the AsyncFd, which owns it until dropped;
        // its raw fd cannot change or close meanwhile.
        let ctl =
            unsafe { AsyncFd::register(ours) }.map_err(|e| io::Error::other(e.to_string()))?;
        let first = tokio::time::timeout(timeout, recv(&ctl)).await;
        let first = match first {
            Ok(r) => r?,
            Err(_) => {
                let _ = child.start_kill();
                return Ok(Started::Exited(format!(
                    "it did not load the app within {timeout:?}"
                )));
            }
        };
        match first {
            Some(FromForkServer::Loaded { pid, python }) => {
                tracing::info!(pid, "fork server loaded the app ({python})");
                Ok(Started::Ready(Arc::new(ForkServer {
                    generation,
                    ctl,
                    child: tokio::sync::Mutex::new(child),
                    pending: Mutex::new(HashMap::new()),
                })))
            }
            Some(FromForkServer::LoadFailed { message }) => {
                let _ = child.wait().await;
                Ok(Started::LoadFailed(message))
            }
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("fork server: unexpected first message {other:?}"),
            )),
            None => {
                let status = child.wait().await?;
                Ok(Started::Exited(describe_exit(status)))
            }
        }
    }

    /// Asks for worker `id` and waits for its pid.
    pub(crate) async fn spawn(
        &self,
        id: u32,
        slots: Vec<OwnedFd>,
    ) -> Result<Arc<WorkerInfo>, String> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let msg = ToForkServer::Spawn { id, slots };
        loop {
            let mut guard = self.ctl.writable().await.map_err(|e| e.to_string())?;
            match guard.try_io(|fd| msg.send(fd.get_ref().as_fd())) {
                Ok(r) => {
                    r.map_err(|e| format!("fork server control socket: {e}"))?;
                    break;
                }
                Err(_would_block) => continue,
            }
        }
        // Our copies of the worker ends close here; the fork server got its own.
        drop(msg);
        rx.await
            .map_err(|_| "the fork server went away".to_string())?
    }

    /// Reads the fork server's reports until it goes away: spawned pids go to their waiting
    /// `spawn` calls (registered first, so their exits always find them), exits to `on_exit`.
    pub(crate) async fn read_reports(&self, registry: &Registry, on_exit: impl Fn(u32, String)) {
        loop {
            let msg = match recv(&self.ctl).await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("fork server control socket: {e}");
                    return;
                }
            };
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match msg {
                FromForkServer::Spawned { id, pid } => {
                    let info = WorkerInfo::new(id, pid, self.generation);
                    registry.insert(info.clone());
                    if let Some(tx) = pending.remove(&id) {
                        let _ = tx.send(Ok(info));
                    }
                }
                FromForkServer::SpawnFailed { id, message } => {
                    if let Some(tx) = pending.remove(&id) {
                        let _ = tx.send(Err(format!("fork failed: {message}")));
                    }
                }
                FromForkServer::Exited { pid, status } => {
                    drop(pending);
                    on_exit(pid, describe_status(status));
                }
                other => tracing::warn!("fork server: unexpected {other:?}"),
            }
        }
    }

    /// Closes the control socket's write side so the fork server exits.
    pub(crate) fn stop(&self) {
        let _ = nix::sys::socket::shutdown(
            self.ctl.get_ref().as_raw_fd(),
            nix::sys::socket::Shutdown::Both,
        );
    }
}

async fn recv(ctl: &AsyncFd<OwnedFd>) -> io::Result<Option<FromForkServer>> {
    loop {
        let mut guard = ctl.readable().await?;
        match guard.try_io(|fd| FromForkServer::recv(fd.get_ref().as_fd())) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Starts lazy worker `id` (the binary re-executed). Returns its child handle.
pub(crate) fn exec_worker(cmd: &WorkerCommand, id: u32, slots: &[OwnedFd]) -> io::Result<Child> {
    let fds: Vec<RawFd> = slots.iter().map(AsRawFd::as_raw_fd).collect();
    let list = fds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // The id is only for the worker's process title (`flaskhost worker 3`).
    let extra: Vec<OsString> = vec![
        "--slot-fds".into(),
        list.into(),
        "--worker-id".into(),
        id.to_string().into(),
    ];
    cmd.command(&extra, fds).spawn()
}
