//! A blocking frame connection, used by worker threads (which have no async runtime).

use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;

use crate::frame::{self, Kind};

/// The read buffer's first size: a request head fits; a larger frame grows the buffer (once:
/// it keeps its size). Small because it is zeroed: each page zeroed is a page the worker
/// dirties for good (in the first slot's case, a heap page it shared with the fork server).
const INITIAL_RBUF: usize = 8 * 1024;

/// One end of a slot socket with its read and write buffers. Reads are buffered so that a
/// head and its body, written by the peer in one go, cost one `read` here.
pub struct FrameConn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    /// Start of unconsumed bytes in `rbuf`.
    start: usize,
    /// End of valid bytes in `rbuf`.
    end: usize,
    /// Frames queued for the next [`FrameConn::flush`].
    pub wbuf: Vec<u8>,
}

/// A frame read by [`FrameConn::read_frame`]; its payload is `conn.payload(&frame)` until the
/// next read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: Kind,
    range: Range<usize>,
}

impl FrameConn {
    pub fn new(stream: UnixStream) -> Self {
        FrameConn {
            stream,
            rbuf: vec![0; INITIAL_RBUF],
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(16 * 1024),
        }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Reads the next frame, blocking. `Ok(None)` when the peer closed the connection between
    /// frames.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((kind, len)) =
                frame::parse_header(&self.rbuf[self.start..self.end]).map_err(invalid)?
            {
                let total = frame::HEADER_LEN + len;
                if self.end - self.start >= total {
                    let range = self.start + frame::HEADER_LEN..self.start + total;
                    self.start += total;
                    return Ok(Some(Frame { kind, range }));
                }
                self.make_room(total);
            } else {
                self.make_room(frame::HEADER_LEN);
            }
            let n = match self.stream.read(&mut self.rbuf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed mid-frame",
                    ))
                };
            }
            self.end += n;
        }
    }

    /// Makes sure `need` bytes from `start` fit in the buffer.
    fn make_room(&mut self, need: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.rbuf.len() - self.start < need || self.end == self.rbuf.len() {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.rbuf.len() < need {
            self.rbuf.resize(need.next_power_of_two(), 0);
        }
    }

    pub fn payload(&self, f: &Frame) -> &[u8] {
        &self.rbuf[f.range.clone()]
    }

    /// True when the front has already sent something (an `Abort`) that is waiting to be read,
    /// without blocking. Used between body chunks of a streamed response.
    pub fn has_pending_input(&mut self) -> io::Result<bool> {
        if self.start != self.end {
            return Ok(true);
        }
        // One syscall: a non-blocking peek leaves the socket in blocking mode.
        let mut probe = [0u8; 1];
        let r = nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(&self.stream),
            &mut probe,
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
        match r {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes as much of `data` as the socket takes now, without blocking; returns how many
    /// bytes went. A small frame into a socket with room goes whole.
    pub fn write_now(&self, data: &[u8]) -> io::Result<usize> {
        let r = nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&self.stream),
            data,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
        match r {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes everything queued in `wbuf`.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let r = self.stream.write_all(&self.wbuf);
            self.wbuf.clear();
            r?;
        }
        Ok(())
    }

    /// Queues a frame and writes everything queued.
    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        frame::push(&mut self.wbuf, kind, payload);
        self.flush()
    }
}

fn invalid(e: frame::FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_across_partial_writes_and_growth() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut reader = FrameConn::new(a);
        let big = vec![7u8; 200 * 1024];
        let writer = std::thread::spawn(move || {
            let mut b = b;
            let mut buf = Vec::new();
            frame::push(&mut buf, Kind::Body, b"one");
            frame::push(&mut buf, Kind::Body, &big);
            frame::push(&mut buf, Kind::BodyEnd, b"");
            for piece in buf.chunks(1000) {
                b.write_all(piece).unwrap();
            }
        });
        let f = reader.read_frame().unwrap().unwrap();
        assert_eq!((f.kind, reader.payload(&f)), (Kind::Body, &b"one"[..]));
        let f = reader.read_frame().unwrap().unwrap();
        assert_eq!(reader.payload(&f).len(), 200 * 1024);
        let f = reader.read_frame().unwrap().unwrap();
        assert_eq!(f.kind, Kind::BodyEnd);
        writer.join().unwrap();
        assert!(reader.read_frame().unwrap().is_none());
    }

    #[test]
    fn write_now_does_not_block() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let conn = FrameConn::new(a);
        assert_eq!(conn.write_now(b"abc").unwrap(), 3);
        let mut got = [0u8; 3];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc");
        // A full socket takes part of a write, then nothing, and never blocks.
        let big = vec![0u8; 8 * 1024 * 1024];
        let first = conn.write_now(&big).unwrap();
        assert!(first < big.len());
        assert_eq!(conn.write_now(&big).unwrap(), 0);
    }

    #[test]
    fn pending_input_probe() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut conn = FrameConn::new(a);
        assert!(!conn.has_pending_input().unwrap());
        b.write_all(&[0, 0, 0, 0, Kind::Abort as u8]).unwrap();
        assert!(conn.has_pending_input().unwrap());
        assert_eq!(conn.read_frame().unwrap().unwrap().kind, Kind::Abort);
    }
}
