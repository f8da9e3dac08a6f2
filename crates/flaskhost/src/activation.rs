//! systemd socket activation (`sd_listen_fds`): when `LISTEN_PID` is this process and
//! `LISTEN_FDS` is n, descriptors 3..3+n are listening sockets systemd (or another manager)
//! bound for us; they replace `bind`. `LISTEN_FDNAMES` (colon-separated) names them for the
//! log. The variables are removed from the environment either way, so that workers, and any
//! process the app starts, do not take the sockets for theirs.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use flaskhost_front::InheritedSocket;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// One socket handed over, with its `LISTEN_FDNAMES` name.
pub struct Activated {
    pub socket: InheritedSocket,
    pub name: Option<String>,
}

/// Reads and removes the `LISTEN_*` variables and takes over the sockets they describe. An
/// empty list when the process was not socket-activated (or the variables are for another
/// process: `LISTEN_PID` differs).
///
/// Must run while the process is single-threaded (before the runtime starts): it changes the
/// environment.
///
/// # Errors
/// A message naming the variable or descriptor that is wrong.
pub fn take() -> Result<Vec<Activated>, String> {
    let var = |name: &str| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the process is single-threaded here (see above), so nothing reads the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let for_us = pid
        .as_deref()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let Some(fds) = fds.filter(|_| for_us) else {
        return Ok(Vec::new());
    };
    let count: RawFd = fds
        .trim()
        .parse()
        .ok()
        .filter(|&n| (0..=4096).contains(&n))
        .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a number of descriptors"))?;
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    let mut out = Vec::with_capacity(count as usize);
    for (i, fd) in (FIRST_FD..FIRST_FD + count).enumerate() {
        let socket = adopt(fd).map_err(|e| format!("LISTEN_FDS: descriptor {fd}: {e}"))?;
        let name = names
            .get(i)
            .filter(|n| !n.is_empty() && **n != "unknown")
            .map(|n| (*n).to_string());
        out.push(Activated { socket, name });
    }
    Ok(out)
}

/// Checks that `fd` is a listening stream socket (TCP or Unix), marks it close-on-exec (systemd
/// passes it inheritable; workers must not get it) and takes ownership.
fn adopt(fd: RawFd) -> Result<InheritedSocket, String> {
    // SAFETY: only borrowed for the checks below; ownership is taken only once they pass.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(borrowed, FcntlArg::F_GETFD).map_err(|e| format!("not open ({e})"))?;
    let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).map_err(|e| format!("F_SETFD: {e}"))?;
    let kind =
        getsockopt(&borrowed, sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    if kind != SockType::Stream {
        return Err(format!("a {kind:?} socket; only stream sockets are served"));
    }
    if !getsockopt(&borrowed, sockopt::AcceptConn).map_err(|e| format!("SO_ACCEPTCONN: {e}"))? {
        return Err("the socket is not listening".into());
    }
    let family = getsockname::<SockaddrStorage>(fd)
        .map_err(|e| format!("getsockname: {e}"))?
        .family();
    // SAFETY: `fd` is an open socket (checked above) that systemd handed to this process and
    // that nothing else here owns; from now on the listener owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match family {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            Ok(InheritedSocket::Tcp(std::net::TcpListener::from(owned)))
        }
        Some(AddressFamily::Unix) => Ok(InheritedSocket::Unix(
            std::os::unix::net::UnixListener::from(owned),
        )),
        other => Err(format!("address family {other:?} is not served")),
    }
}
