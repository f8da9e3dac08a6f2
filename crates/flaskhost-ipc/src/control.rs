//! Control messages between the supervisor (in the main process) and the fork server, over a
//! `SOCK_SEQPACKET` socket pair so that every message keeps its boundary and its file
//! descriptors.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::frame::{Cursor, FrameError, Kind, Put};

/// The largest control message; tracebacks of a failed app import are cut to fit.
const MAX_MSG: usize = 60 * 1024;
/// Slots per worker are bounded by the `threads` option (≤ 1024).
const MAX_FDS: usize = 1024;

/// Supervisor → fork server.
#[derive(Debug)]
pub enum ToForkServer {
    /// Fork worker `id`; each fd is the worker end of one slot socket.
    Spawn { id: u32, slots: Vec<OwnedFd> },
}

/// Fork server → supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum FromForkServer {
    /// The app imported; workers can be forked.
    Loaded {
        pid: u32,
        python: String,
    },
    /// The app failed to import; `message` holds the Python traceback.
    LoadFailed {
        message: String,
    },
    Spawned {
        id: u32,
        pid: u32,
    },
    SpawnFailed {
        id: u32,
        message: String,
    },
    /// A worker exited; `status` is the raw `waitpid` status.
    Exited {
        pid: u32,
        status: i32,
    },
}

fn bad(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn text(buf: &mut Vec<u8>, s: &str) {
    // Cut long texts on a char boundary so the message fits one datagram.
    let mut end = s.len().min(MAX_MSG - 64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_long(&s.as_bytes()[..end]);
}

fn send_raw(fd: BorrowedFd<'_>, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let iov = [io::IoSlice::new(payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match socket::sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one datagram and the fds that came with it. `Ok(None)` at end of stream.
fn recv_raw(fd: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let r = socket::recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match r {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process for us;
                // nothing else owns them.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

impl ToForkServer {
    pub fn send(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match self {
            ToForkServer::Spawn { id, slots } => {
                let mut b = Vec::with_capacity(8);
                b.put_u8(1);
                b.put_u32(*id);
                let raw: Vec<RawFd> = slots.iter().map(AsRawFd::as_raw_fd).collect();
                send_raw(fd, &b, &raw)
            }
        }
    }

    pub fn recv(fd: BorrowedFd<'_>) -> io::Result<Option<ToForkServer>> {
        let Some((buf, fds)) = recv_raw(fd)? else {
            return Ok(None);
        };
        let mut c = Cursor::new(Kind::Ready, &buf);
        match c.u8("tag").map_err(bad)? {
            1 => Ok(Some(ToForkServer::Spawn {
                id: c.u32("id").map_err(bad)?,
                slots: fds,
            })),
            t => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("control tag {t}"),
            )),
        }
    }
}

impl FromForkServer {
    pub fn send(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut b = Vec::with_capacity(64);
        match self {
            FromForkServer::Loaded { pid, python } => {
                b.put_u8(1);
                b.put_u32(*pid);
                text(&mut b, python);
            }
            FromForkServer::LoadFailed { message } => {
                b.put_u8(2);
                text(&mut b, message);
            }
            FromForkServer::Spawned { id, pid } => {
                b.put_u8(3);
                b.put_u32(*id);
                b.put_u32(*pid);
            }
            FromForkServer::SpawnFailed { id, message } => {
                b.put_u8(4);
                b.put_u32(*id);
                text(&mut b, message);
            }
            FromForkServer::Exited { pid, status } => {
                b.put_u8(5);
                b.put_u32(*pid);
                b.put_u32(*status as u32);
            }
        }
        send_raw(fd, &b, &[])
    }

    pub fn recv(fd: BorrowedFd<'_>) -> io::Result<Option<FromForkServer>> {
        let Some((buf, _fds)) = recv_raw(fd)? else {
            return Ok(None);
        };
        Self::decode(&buf).map(Some).map_err(bad)
    }

    fn decode(buf: &[u8]) -> Result<FromForkServer, FrameError> {
        let mut c = Cursor::new(Kind::Ready, buf);
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(match c.u8("tag")? {
            1 => FromForkServer::Loaded {
                pid: c.u32("pid")?,
                python: s(c.long("python")?),
            },
            2 => FromForkServer::LoadFailed {
                message: s(c.long("message")?),
            },
            3 => FromForkServer::Spawned {
                id: c.u32("id")?,
                pid: c.u32("pid")?,
            },
            4 => FromForkServer::SpawnFailed {
                id: c.u32("id")?,
                message: s(c.long("message")?),
            },
            5 => FromForkServer::Exited {
                pid: c.u32("pid")?,
                status: c.u32("status")? as i32,
            },
            _ => return Err(FrameError::UnknownKind(buf[0])),
        })
    }
}

/// A connected `SOCK_SEQPACKET` pair, close-on-exec on both ends.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn spawn_carries_fds_and_replies_roundtrip() {
        let (a, b) = seqpacket_pair().unwrap();
        let (s1, _s2) = std::os::unix::net::UnixStream::pair().unwrap();
        ToForkServer::Spawn {
            id: 7,
            slots: vec![OwnedFd::from(s1)],
        }
        .send(a.as_fd())
        .unwrap();
        match ToForkServer::recv(b.as_fd()).unwrap().unwrap() {
            ToForkServer::Spawn { id, slots } => assert_eq!((id, slots.len()), (7, 1)),
        }
        let msgs = [
            FromForkServer::Loaded {
                pid: 1,
                python: "3.12".into(),
            },
            FromForkServer::LoadFailed {
                message: "Traceback ...é".into(),
            },
            FromForkServer::Spawned { id: 2, pid: 3 },
            FromForkServer::SpawnFailed {
                id: 2,
                message: "EAGAIN".into(),
            },
            FromForkServer::Exited {
                pid: 9,
                status: 0x0900,
            },
        ];
        for m in msgs {
            m.send(b.as_fd()).unwrap();
            assert_eq!(FromForkServer::recv(a.as_fd()).unwrap().unwrap(), m);
        }
        drop(b);
        assert!(FromForkServer::recv(a.as_fd()).unwrap().is_none());
    }
}
