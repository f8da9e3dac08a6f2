//! Frame layout and the little-endian field codec shared by every message.

use thiserror::Error;

/// Bytes before the payload: a `u32` length and a `u8` kind.
pub const HEADER_LEN: usize = 5;

/// The largest payload a peer may announce. Bodies are sent in chunks far below this, so a
/// larger length means a corrupted stream, not a big request.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// What a frame carries. Front → worker kinds are below 10, worker → front kinds from 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A request head ([`crate::request`]), possibly with the whole body inline.
    Request = 1,
    /// A piece of the request body, the answer to [`Kind::ReadBody`].
    Body = 2,
    /// The request body has ended (answer to [`Kind::ReadBody`]).
    BodyEnd = 3,
    /// The client went away: stop producing the response, call `close()`, answer `ResponseEnd`.
    Abort = 4,
    /// The worker asks for up to `u32` more bytes of request body.
    ReadBody = 10,
    /// Status and headers ([`crate::response`]), possibly with the whole body inline.
    ResponseHead = 11,
    /// A piece of the response body.
    ResponseBody = 12,
    /// The response is complete; the slot is free again.
    ResponseEnd = 13,
    /// The app failed. Before a head: the front answers 500. After: the response is cut short.
    /// The slot is free again either way. Payload: a UTF-8 message for the log.
    Failed = 15,
    /// Sent once per slot when the worker is ready to take requests. Payload: `u32` pid.
    Ready = 16,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Request,
            2 => Kind::Body,
            3 => Kind::BodyEnd,
            4 => Kind::Abort,
            10 => Kind::ReadBody,
            11 => Kind::ResponseHead,
            12 => Kind::ResponseBody,
            13 => Kind::ResponseEnd,
            15 => Kind::Failed,
            16 => Kind::Ready,
            _ => return None,
        })
    }
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame of {0} bytes exceeds the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    #[error("truncated {what} in a {kind:?} frame")]
    Truncated { kind: Kind, what: &'static str },
    #[error("unexpected {got:?} frame while waiting for {wanted}")]
    Unexpected { got: Kind, wanted: &'static str },
}

/// Parses a frame header. `Ok(None)` when fewer than [`HEADER_LEN`] bytes are available.
pub fn parse_header(buf: &[u8]) -> Result<Option<(Kind, usize)>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let kind = Kind::from_u8(head[4]).ok_or(FrameError::UnknownKind(head[4]))?;
    Ok(Some((kind, len)))
}

/// Starts a frame in `buf`, returning the offset of its length field for [`finish`].
#[inline]
pub fn begin(buf: &mut Vec<u8>, kind: Kind) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, kind as u8]);
    at
}

/// Writes the payload length of the frame started at `at`.
#[inline]
pub fn finish(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - HEADER_LEN) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends a whole frame whose payload is `payload`.
#[inline]
pub fn push(buf: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(payload);
}

/// Appends a frame whose payload is a single `u32`.
#[inline]
pub fn push_u32(buf: &mut Vec<u8>, kind: Kind, v: u32) {
    push(buf, kind, &v.to_le_bytes());
}

/// Little-endian field writers.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// A byte string with a `u16` length (names, short fields).
    fn put_short(&mut self, v: &[u8]);
    /// A byte string with a `u32` length (values).
    fn put_long(&mut self, v: &[u8]);
}

impl Put for Vec<u8> {
    #[inline]
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_short(&mut self, v: &[u8]) {
        // Fields written with a u16 length are bounded by the front (header names, addresses);
        // clamp rather than corrupt the stream if a caller ever passes more.
        let v = &v[..v.len().min(u16::MAX as usize)];
        self.put_u16(v.len() as u16);
        self.extend_from_slice(v);
    }
    #[inline]
    fn put_long(&mut self, v: &[u8]) {
        self.put_u32(v.len() as u32);
        self.extend_from_slice(v);
    }
}

/// A cursor over a payload that borrows what it reads.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    kind: Kind,
}

impl<'a> Cursor<'a> {
    pub fn new(kind: Kind, buf: &'a [u8]) -> Self {
        Cursor { buf, kind }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated {
                kind: self.kind,
                what,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn short(&mut self, what: &'static str) -> Result<&'a [u8], FrameError> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
    pub fn long(&mut self, what: &'static str) -> Result<&'a [u8], FrameError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_limits() {
        let mut buf = Vec::new();
        push(&mut buf, Kind::Body, b"hello");
        assert_eq!(parse_header(&buf).unwrap(), Some((Kind::Body, 5)));
        assert_eq!(parse_header(&buf[..4]).unwrap(), None);
        let mut bad = buf.clone();
        bad[4] = 99;
        assert!(matches!(
            parse_header(&bad),
            Err(FrameError::UnknownKind(99))
        ));
        let mut huge = vec![0xff, 0xff, 0xff, 0x7f, 1];
        huge.extend_from_slice(b"x");
        assert!(matches!(parse_header(&huge), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn begin_finish_sets_length() {
        let mut buf = vec![9, 9];
        let at = begin(&mut buf, Kind::ResponseBody);
        buf.extend_from_slice(b"abc");
        finish(&mut buf, at);
        assert_eq!(
            parse_header(&buf[2..]).unwrap(),
            Some((Kind::ResponseBody, 3))
        );
    }

    #[test]
    fn cursor_reports_truncation() {
        let mut c = Cursor::new(Kind::Request, &[3, 0, b'a']);
        assert!(matches!(
            c.short("method"),
            Err(FrameError::Truncated { what: "method", .. })
        ));
    }
}
