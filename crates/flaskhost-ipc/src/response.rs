//! The response head: status, headers (latin-1 bytes as the app gave them) and, for the common
//! case of a body the app returned whole, the body in the same frame, so that a typical
//! response costs one write and one read.

use std::ops::Range;

use crate::frame::{self, Cursor, FrameError, Kind, Put};

const FLAG_COMPLETE: u8 = 1;

/// Starts a `ResponseHead` frame. Add headers with [`HeadWriter::header`], then call
/// [`HeadWriter::finish_streaming`] or [`HeadWriter::finish_complete`].
pub struct HeadWriter {
    at: usize,
    flags_at: usize,
    count_at: usize,
    count: u16,
}

impl HeadWriter {
    pub fn begin(buf: &mut Vec<u8>, status: u16) -> Self {
        let at = frame::begin(buf, Kind::ResponseHead);
        buf.put_u16(status);
        let flags_at = buf.len();
        buf.put_u8(0);
        let count_at = buf.len();
        buf.put_u16(0);
        HeadWriter {
            at,
            flags_at,
            count_at,
            count: 0,
        }
    }

    pub fn header(&mut self, buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        buf.put_short(name);
        buf.put_long(value);
        self.count = self.count.saturating_add(1);
    }

    /// The body follows in `ResponseBody` frames and ends with `ResponseEnd`.
    pub fn finish_streaming(self, buf: &mut [u8]) {
        buf[self.count_at..self.count_at + 2].copy_from_slice(&self.count.to_le_bytes());
        frame::finish(buf, self.at);
    }

    /// `body` is the whole body; no `ResponseEnd` follows.
    pub fn finish_complete(self, buf: &mut Vec<u8>, body: &[&[u8]]) {
        buf[self.flags_at] = FLAG_COMPLETE;
        buf[self.count_at..self.count_at + 2].copy_from_slice(&self.count.to_le_bytes());
        for part in body {
            buf.extend_from_slice(part);
        }
        frame::finish(buf, self.at);
    }
}

/// A decoded response head, borrowing the frame payload. The body's position is an offset
/// into the payload, so the reader can hand out a shared slice of its buffer without copying.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub headers: Headers<'a>,
    /// The whole body, when the worker sent it with the head.
    pub complete_body: Option<Range<usize>>,
}

/// The `(name, value)` pairs of a response head, in order. [`decode`] has checked them all,
/// so reading them cannot fail; nothing is collected.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    remaining: u16,
    cur: Cursor<'a>,
}

impl Headers<'_> {
    /// How many headers are left.
    pub fn len(&self) -> usize {
        self.remaining.into()
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.remaining = self.remaining.checked_sub(1)?;
        // Checked by `decode`: never an error here.
        let name = self.cur.short("header name").ok()?;
        let value = self.cur.long("header value").ok()?;
        Some((name, value))
    }
}

pub fn decode(payload: &[u8]) -> Result<ResponseHead<'_>, FrameError> {
    let mut c = Cursor::new(Kind::ResponseHead, payload);
    let status = c.u16("status")?;
    let flags = c.u8("flags")?;
    let count = c.u16("header count")?;
    let headers = Headers {
        remaining: count,
        cur: c.clone(),
    };
    for _ in 0..count {
        c.short("header name")?;
        c.long("header value")?;
    }
    let rest = c.rest();
    let complete_body = (flags & FLAG_COMPLETE != 0).then(|| {
        let start = payload.len() - rest.len();
        start..payload.len()
    });
    Ok(ResponseHead {
        status,
        headers,
        complete_body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_roundtrip() {
        let mut buf = Vec::new();
        let mut w = HeadWriter::begin(&mut buf, 201);
        w.header(&mut buf, b"Content-Type", b"text/plain");
        w.header(&mut buf, b"X-A", b"\xe9");
        w.finish_complete(&mut buf, &[b"hello ", b"world"]);
        let p = &buf[frame::HEADER_LEN..];
        let h = decode(p).unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.headers.len(), 2);
        let headers: Vec<_> = h.headers.collect();
        assert_eq!(
            headers,
            [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"X-A", b"\xe9")
            ]
        );
        assert_eq!(&p[h.complete_body.unwrap()], b"hello world");
    }

    #[test]
    fn streaming_head_has_no_body() {
        let mut buf = Vec::new();
        let w = HeadWriter::begin(&mut buf, 200);
        w.finish_streaming(&mut buf);
        let h = decode(&buf[frame::HEADER_LEN..]).unwrap();
        assert!(h.complete_body.is_none());
        assert!(h.headers.is_empty());
    }

    #[test]
    fn truncated_headers_are_refused_up_front() {
        let mut buf = Vec::new();
        let mut w = HeadWriter::begin(&mut buf, 200);
        w.header(&mut buf, b"Content-Type", b"text/plain");
        w.finish_streaming(&mut buf);
        let p = &buf[frame::HEADER_LEN..];
        assert!(matches!(
            decode(&p[..p.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
    }
}
