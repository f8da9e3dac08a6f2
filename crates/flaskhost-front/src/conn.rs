//! Per-connection checks that hyper does not make: the HTTP/1 framing rules of RFC 9112 that
//! stop request smuggling, precise head limits (414, 431), and the header and keep-alive
//! timers.
//!
//! [`Guarded`] wraps the client's stream (under TLS, the decrypted stream) and watches the
//! bytes hyper reads through it with a small shadow parser that follows message boundaries
//! (head, Content-Length body, chunked body). For every request head it pushes a [`Verdict`]
//! onto the connection's [`ConnState`]; the service pops one verdict per HTTP/1 request, in
//! the same order hyper parses the heads, and answers a rejected request itself, closing the
//! connection, before any layer behind it (the app in particular) sees it.
//!
//! Why a shadow parser: hyper resolves a request with both Content-Length and
//! Transfer-Encoding by dropping Content-Length and reading the body as chunked (then
//! closing). That is safe but lets the app see an ambiguous request; RFC 9112 §6.1 allows a
//! server to reject it, and flaskhost does. By the time the service runs, the Content-Length
//! header is gone, so only the raw bytes can tell.
//!
//! The timers live here because only the raw stream knows where a request head begins:
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits, so it
//! cannot give nginx's two separate settings (client_header_timeout, keepalive_timeout).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::zerocopy::{self, SendFile};

/// The limits the guard enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_request_line: usize,
    pub max_header_size: usize,
    pub max_header_count: usize,
    pub header_timeout: Duration,
    /// Zero: no keep-alive (hyper closes after each response).
    pub keepalive_timeout: Duration,
}

impl Default for ConnLimits {
    /// nginx's defaults.
    fn default() -> Self {
        ConnLimits {
            max_request_line: 8 * 1024,
            max_header_size: 32 * 1024,
            max_header_count: 100,
            header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
        }
    }
}

/// What the guard decided about one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Answer with this status and close; the reason is for the log and the body.
    Reject(StatusCode, &'static str),
}

/// State shared by the connection's [`Guarded`] stream and its service.
#[derive(Debug)]
pub(crate) struct ConnState {
    shared: Mutex<Shared>,
}

#[derive(Debug)]
struct Shared {
    verdicts: VecDeque<Verdict>,
    /// The shadow parser gave up (a framing error hyper will also see); any request it did
    /// not judge is refused rather than trusted.
    stopped: bool,
    /// Requests whose response body has not been dropped yet.
    in_flight: usize,
    /// Requests seen on the connection.
    requests: u64,
    /// When `in_flight` last dropped to zero.
    idle_since: Instant,
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState::fresh())
    }

    /// A connection that has seen nothing yet.
    fn fresh() -> ConnState {
        ConnState {
            shared: Mutex::new(Shared {
                verdicts: VecDeque::new(),
                stopped: false,
                in_flight: 0,
                requests: 0,
                idle_since: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The critical sections cannot panic half-way; a poisoned lock still holds valid data.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The verdict for the next HTTP/1 request hyper hands to the service.
    pub(crate) fn next_verdict(&self) -> Verdict {
        let mut s = self.lock();
        match s.verdicts.pop_front() {
            Some(v) => v,
            None if s.stopped => {
                Verdict::Reject(StatusCode::BAD_REQUEST, "malformed request framing")
            }
            // Not reachable while the shadow parser and hyper agree; a request the guard has
            // not seen is let through rather than failing a well-formed connection.
            None => Verdict::Ok,
        }
    }

    /// A request entered the service.
    pub(crate) fn request_started(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.requests += 1;
    }

    /// A response body was dropped (sent, or abandoned).
    ///
    /// The reader is not woken to arm the keep-alive timer: a read left pending while a
    /// request was in flight has set the timer no later than any deadline that can follow
    /// (see [`Guarded`]'s `poll_read`), and that timer wakes it in time to arm the real one.
    /// (Waking it here polled the whole connection once more per request, as the response
    /// body is dropped inside the reader's own task.)
    pub(crate) fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }

    fn push(&self, v: Verdict) {
        self.lock().verdicts.push_back(v);
    }

    fn stop(&self) {
        self.lock().stopped = true;
    }
}

/// Where the shadow parser is in the byte stream.
#[derive(Debug)]
enum Phase {
    /// Between messages: the next byte that is not an empty line starts a request head.
    Between,
    /// Reading a request head that started at this instant.
    Head(Instant),
    /// This many body bytes left (Content-Length).
    Length(u64),
    Chunked(Chunk),
    /// HTTP/2 (prior knowledge or ALPN) or after CONNECT: not HTTP/1 framing any more.
    Passthrough,
    /// After a rejected head or a framing error: nothing further is parsed.
    Stopped,
}

/// The chunked-body decoder's states, as strict as hyper's (CRLF everywhere).
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size {
        value: u64,
        digits: u8,
    },
    Ext {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    /// The final empty line was read: the message is complete.
    Done,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The shadow parser.
#[derive(Debug)]
struct Framing {
    phase: Phase,
    head: Vec<u8>,
    /// Where the request line of `head` ends (its `\n`), once seen.
    line_end: Option<usize>,
    /// Heads parsed on this connection.
    heads: u64,
}

impl Framing {
    fn feed(&mut self, mut data: &[u8], now: Instant, state: &ConnState, limits: &ConnLimits) {
        while !data.is_empty() {
            match &mut self.phase {
                Phase::Between => {
                    // Empty lines before a request line are ignored (RFC 9112 §2.2), as
                    // httparse does.
                    let skip = data
                        .iter()
                        .take_while(|b| matches!(b, b'\r' | b'\n'))
                        .count();
                    data = &data[skip..];
                    if !data.is_empty() {
                        self.head.clear();
                        self.line_end = None;
                        self.phase = Phase::Head(now);
                    }
                }
                Phase::Head(_) => {
                    let used = self.feed_head(data, state, limits);
                    data = &data[used..];
                }
                Phase::Length(left) => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.phase = Phase::Between;
                    }
                }
                Phase::Chunked(chunk) => {
                    let Some(used) = chunk_step(chunk, data) else {
                        // hyper rejects the same bytes and closes the connection.
                        self.phase = Phase::Stopped;
                        state.stop();
                        return;
                    };
                    data = &data[used..];
                    if matches!(chunk, Chunk::Done) {
                        self.phase = Phase::Between;
                    }
                }
                Phase::Passthrough | Phase::Stopped => return,
            }
        }
    }

    /// Adds head bytes; returns how many of `data` belong to the head (the rest is body or
    /// the next message).
    fn feed_head(&mut self, data: &[u8], state: &ConnState, limits: &ConnLimits) -> usize {
        // A head that arrives whole, as nearly every one does, is judged where it lies: not
        // copied, and not searched for its end first (httparse finds it). Anything else (a
        // head in pieces, one over a limit or refused by httparse, an HTTP/2 preface) takes
        // the general path below, which gives every verdict exactly as before.
        if self.head.is_empty()
            && !(self.heads == 0 && starts_like_h2_preface(data))
            && let Some(used) = self.feed_whole_head(data, state, limits)
        {
            return used;
        }

        let old_len = self.head.len();
        self.head.extend_from_slice(data);

        // HTTP/2 with prior knowledge starts with a preface that looks like a request line.
        if self.heads == 0 && starts_like_h2_preface(&self.head) {
            if self.head.len() >= H2_PREFACE.len() {
                self.phase = Phase::Passthrough;
            }
            return data.len();
        }

        // Only the new bytes are searched, so a line trickled in byte by byte costs linear time.
        if self.line_end.is_none() {
            self.line_end = self.head[old_len..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| old_len + i);
        }
        let line_end = self.line_end;
        if request_line_len(&self.head, line_end) > limits.max_request_line {
            return self.reject(
                state,
                StatusCode::URI_TOO_LONG,
                "request line too long",
                data.len(),
            );
        }

        // The head ends at the first empty line; only the new bytes (and the three before
        // them) need searching, so a head trickled in byte by byte costs linear time.
        let from = old_len.saturating_sub(3);
        let Some(end) = find_head_end(&self.head[from..]).map(|e| from + e) else {
            let headers_so_far = self.head.len() - line_end.map_or(self.head.len(), |i| i + 1);
            if headers_so_far > limits.max_header_size + 2 {
                return self.reject(
                    state,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header section too large",
                    data.len(),
                );
            }
            return data.len();
        };
        let used = end - old_len;
        self.head.truncate(end);
        self.heads += 1;
        let header_bytes = end - line_end.map_or(end, |i| i + 1);
        if header_bytes > limits.max_header_size + 2 {
            return self.reject(
                state,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header section too large",
                used,
            );
        }

        let (verdict, body) = match parse_head(&self.head, limits.max_header_count) {
            Parsed::Complete(_, verdict, body) => (verdict, body),
            Parsed::Error(httparse::Error::TooManyHeaders) => (
                Verdict::Reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many header fields",
                ),
                Body::Stop,
            ),
            Parsed::Partial | Parsed::Error(_) => (
                Verdict::Reject(StatusCode::BAD_REQUEST, "malformed request head"),
                Body::Stop,
            ),
        };
        self.judged(verdict, body, state, used)
    }

    /// The general path's work for a head that is whole in `data` and within the limits; `None`
    /// for any other (the general path then takes it).
    fn feed_whole_head(
        &mut self,
        data: &[u8],
        state: &ConnState,
        limits: &ConnLimits,
    ) -> Option<usize> {
        let Parsed::Complete(end, verdict, body) = parse_head(data, limits.max_header_count) else {
            return None;
        };
        // httparse stops at the first empty line, as `find_head_end` does.
        debug_assert_eq!(find_head_end(data), Some(end));
        let line_end = data[..end].iter().position(|b| *b == b'\n');
        let header_bytes = end - line_end.map_or(end, |i| i + 1);
        if request_line_len(data, line_end) > limits.max_request_line
            || header_bytes > limits.max_header_size + 2
        {
            return None;
        }
        self.heads += 1;
        Some(self.judged(verdict, body, state, end))
    }

    /// Records the verdict on a head that ended `used` bytes into the data being fed, and
    /// moves on to its body.
    fn judged(&mut self, verdict: Verdict, body: Body, state: &ConnState, used: usize) -> usize {
        state.push(verdict);
        if verdict != Verdict::Ok {
            self.phase = Phase::Stopped;
            return used;
        }
        self.phase = match body {
            Body::None => Phase::Between,
            Body::Length(0) => Phase::Between,
            Body::Length(n) => Phase::Length(n),
            Body::Chunked => Phase::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            }),
            Body::Tunnel => Phase::Passthrough,
            Body::Stop => Phase::Stopped,
        };
        used
    }

    fn reject(
        &mut self,
        state: &ConnState,
        status: StatusCode,
        why: &'static str,
        used: usize,
    ) -> usize {
        state.push(Verdict::Reject(status, why));
        self.phase = Phase::Stopped;
        used
    }
}

/// Index just past the empty line that ends a head (`\r\n\r\n`, or bare-LF forms httparse
/// also accepts), if `buf` holds one.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let nl = i + p;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// Whether `data` is the start of the HTTP/2 connection preface (or all of it, and more).
fn starts_like_h2_preface(data: &[u8]) -> bool {
    let n = data.len().min(H2_PREFACE.len());
    data[..n] == H2_PREFACE[..n]
}

/// The length of the request line that ends at `line_end` (its `\n`) without its line end,
/// or of all of `head` while no line end has come.
fn request_line_len(head: &[u8], line_end: Option<usize>) -> usize {
    match line_end {
        Some(i) => i.saturating_sub(usize::from(i > 0 && head[i - 1] == b'\r')),
        None => head.len(),
    }
}

/// What httparse made of a head.
enum Parsed {
    /// A head ending at this offset, judged.
    Complete(usize, Verdict, Body),
    Partial,
    Error(httparse::Error),
}

fn parse_head(buf: &[u8], max_headers: usize) -> Parsed {
    // Up to the default limit the header array lives on the stack, uninitialised: a heap
    // array of that size per request cost a large allocation each time.
    const ON_STACK: usize = 128;
    let mut stack = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); ON_STACK];
    let mut heap;
    let headers: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] = if max_headers <= ON_STACK {
        &mut stack[..max_headers]
    } else {
        heap = vec![std::mem::MaybeUninit::uninit(); max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(end)) => {
            let (verdict, body) = judge(&req);
            Parsed::Complete(end, verdict, body)
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Error(e),
    }
}

/// How the body of a judged request is framed.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// CONNECT: whatever follows is not HTTP/1.
    Tunnel,
    Stop,
}

/// The framing rules of RFC 9112 §6 that hyper does not enforce as a rejection.
fn judge(req: &httparse::Request<'_, '_>) -> (Verdict, Body) {
    let bad = |why| (Verdict::Reject(StatusCode::BAD_REQUEST, why), Body::Stop);
    let http11 = req.version == Some(1);
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut codings: Vec<String> = Vec::new();
    let mut hosts = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            // `Content-Length: 3, 3` and repeated equal lines are one length; anything else
            // is not (RFC 9112 §6.3 item 5).
            for item in h.value.split(|b| *b == b',') {
                let item = item.trim_ascii();
                if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 19 {
                    return bad("invalid Content-Length");
                }
                // All digits: only an overflow can fail, and reads as the largest length.
                let n = item
                    .iter()
                    .try_fold(0u64, |n, d| {
                        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                    })
                    .unwrap_or(u64::MAX);
                match length {
                    Some(prev) if prev != n => return bad("conflicting Content-Length values"),
                    _ => length = Some(n),
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            for item in h.value.split(|b| *b == b',') {
                let item = item.trim_ascii();
                if !item.is_empty() {
                    codings.push(String::from_utf8_lossy(item).to_ascii_lowercase());
                }
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    if http11 && hosts != 1 {
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without exactly one
        // Host header.
        return bad(if hosts == 0 {
            "missing Host header"
        } else {
            "more than one Host header"
        });
    }
    if !codings.is_empty() {
        if has_length {
            // The smuggling vector itself (RFC 9112 §6.1): which framing wins differs between
            // servers, so the request is refused and the connection closed.
            return bad("both Content-Length and Transfer-Encoding");
        }
        if !http11 {
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        }
        let chunked = codings.iter().filter(|c| c.as_str() == "chunked").count();
        if codings.last().map(String::as_str) != Some("chunked") || chunked != 1 {
            return bad("Transfer-Encoding must end with a single chunked");
        }
        return (Verdict::Ok, Body::Chunked);
    }
    if req.method == Some("CONNECT") {
        return (Verdict::Ok, Body::Tunnel);
    }
    match length {
        Some(n) => (Verdict::Ok, Body::Length(n)),
        None => (Verdict::Ok, Body::None),
    }
}

/// Advances the chunked decoder over `data`. Returns the bytes used, or `None` on a framing
/// error. When the final empty line has been read, `c` becomes [`Chunk::Done`] and the bytes
/// after it are left for the next message.
fn chunk_step(c: &mut Chunk, data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < data.len() {
        if let Chunk::Data(left) = *c {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(data.len() - i);
            i += take;
            let left = left - take as u64;
            *c = if left == 0 {
                Chunk::DataCr
            } else {
                Chunk::Data(left)
            };
            continue;
        }
        let b = data[i];
        i += 1;
        *c = match *c {
            Chunk::Size { value, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    // 16 hex digits is the most a u64 holds; more is an overflow attempt.
                    if digits >= 16 {
                        return None;
                    }
                    let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    Chunk::Size {
                        value: (value << 4) | d,
                        digits: digits + 1,
                    }
                }
                b';' | b' ' | b'\t' if digits > 0 => Chunk::Ext { value },
                b'\r' if digits > 0 => Chunk::SizeLf { value },
                _ => return None,
            },
            // Extensions end at CR; a bare LF in them is refused, as hyper does.
            Chunk::Ext { value } => match b {
                b'\r' => Chunk::SizeLf { value },
                b'\n' => return None,
                _ => Chunk::Ext { value },
            },
            Chunk::SizeLf { value } => match b {
                b'\n' if value == 0 => Chunk::TrailerStart,
                b'\n' => Chunk::Data(value),
                _ => return None,
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return None,
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return None,
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::EndLf,
                b'\n' => return None,
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLine => match b {
                b'\r' => Chunk::TrailerLf,
                b'\n' => return None,
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::TrailerStart,
                _ => return None,
            },
            Chunk::EndLf => match b {
                b'\n' => {
                    *c = Chunk::Done;
                    return Some(i);
                }
                _ => return None,
            },
            // Handled above the match; Done is never stepped (the phase moves on).
            Chunk::Data(_) | Chunk::Done => return Some(i - 1),
        };
    }
    Some(i)
}

/// The client's stream with the guard in the read path. Writes pass through untouched.
pub(crate) struct Guarded<S> {
    io: S,
    state: Arc<ConnState>,
    framing: Framing,
    limits: Arc<ConnLimits>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    opened: Instant,
    last_read: Instant,
}

impl<S> Guarded<S> {
    pub(crate) fn new(io: S, state: Arc<ConnState>, limits: Arc<ConnLimits>) -> Self {
        let now = Instant::now();
        Guarded {
            io,
            state,
            framing: Framing {
                phase: Phase::Between,
                head: Vec::new(),
                line_end: None,
                heads: 0,
            },
            limits,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
            opened: now,
            last_read: now,
        }
    }

    /// When the connection must be closed if no byte arrives before, and why.
    fn deadline(&self) -> Deadline {
        let l = &self.limits;
        match self.framing.phase {
            Phase::Head(started) => Deadline::At(
                started + l.header_timeout,
                "request head not received in time",
            ),
            Phase::Between | Phase::Passthrough => {
                let s = self.state.lock();
                if s.in_flight > 0 {
                    // Once the last response is done, the keep-alive (or, without keep-alive,
                    // the header) timeout runs from then, which is after the last read.
                    let idle = if l.keepalive_timeout.is_zero() {
                        l.header_timeout
                    } else {
                        l.keepalive_timeout
                    };
                    return Deadline::NotBefore(self.last_read + idle);
                }
                if s.requests == 0 {
                    // nginx times the first request from the connection's start.
                    let first = if matches!(self.framing.phase, Phase::Passthrough) {
                        self.last_read.max(self.opened)
                    } else {
                        self.opened
                    };
                    return Deadline::At(first + l.header_timeout, "no request received in time");
                }
                if l.keepalive_timeout.is_zero() {
                    // hyper closes HTTP/1 connections itself; an idle HTTP/2 connection
                    // gets the header timeout.
                    return Deadline::At(
                        s.idle_since.max(self.last_read) + l.header_timeout,
                        "idle connection closed",
                    );
                }
                let since = if matches!(self.framing.phase, Phase::Passthrough) {
                    s.idle_since.max(self.last_read)
                } else {
                    s.idle_since
                };
                Deadline::At(since + l.keepalive_timeout, "keep-alive timeout")
            }
            // Body pauses are timed where the body is read (the pool's body timeout).
            Phase::Length(_) | Phase::Chunked(_) | Phase::Stopped => Deadline::None,
        }
    }
}

/// What a pending read of the connection must time.
enum Deadline {
    /// Close the connection if no byte arrives before this, for this reason.
    At(Instant, &'static str),
    /// Nothing yet (a request is in flight), but a deadline no earlier than this applies once
    /// the connection is idle. The timer is set by then, so that the reader is polled again
    /// and sets the real one: the end of a request does not wake it.
    NotBefore(Instant),
    None,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if !fresh.is_empty() {
                    let now = Instant::now();
                    this.last_read = now;
                    this.framing.feed(fresh, now, &this.state, &this.limits);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.deadline() {
                Deadline::At(deadline, why) => {
                    if this.armed != Some(deadline) {
                        this.timer.as_mut().reset(deadline);
                        this.armed = Some(deadline);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        tracing::debug!("closing connection: {why}");
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                    }
                    Poll::Pending
                }
                Deadline::NotBefore(bound) => {
                    // A timer still pending at or before the bound will do (usually the one
                    // set for the request before: no timer work per request).
                    let pending =
                        this.armed.is_some_and(|t| t <= bound) && !this.timer.is_elapsed();
                    if !pending {
                        this.timer.as_mut().reset(bound);
                        this.armed = Some(bound);
                        if this.timer.as_mut().poll(cx).is_ready() {
                            // The bound is past (a request longer than the timeout): the
                            // deadline is at least that long from now.
                            let later = Instant::now() + (bound - this.last_read);
                            this.timer.as_mut().reset(later);
                            this.armed = Some(later);
                            let _ = this.timer.as_mut().poll(cx);
                        }
                    }
                    Poll::Pending
                }
                Deadline::None => Poll::Pending,
            },
        }
    }
}

/// Writes pass through, except that on plain TCP a mapped static file body goes out with
/// `sendfile` (see [`crate::zerocopy`]).
impl<S: AsyncWrite + SendFile + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if S::CAPABLE
            && let Some(r) = zerocopy::poll_write(&mut this.io, cx, &[io::IoSlice::new(buf)])
        {
            return r;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if S::CAPABLE
            && let Some(r) = zerocopy::poll_write(&mut this.io, cx, bufs)
        {
            return r;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_request_line: 100,
            max_header_size: 200,
            max_header_count: 5,
            ..ConnLimits::default()
        }
    }

    /// Feeds `input` in pieces of `step` bytes; returns the verdicts and the final phase.
    fn run(input: &[u8], step: usize) -> (Vec<Verdict>, ConnState, Framing) {
        let state = ConnState::fresh();
        let mut f = Framing {
            phase: Phase::Between,
            head: Vec::new(),
            line_end: None,
            heads: 0,
        };
        for piece in input.chunks(step.max(1)) {
            f.feed(piece, Instant::now(), &state, &limits());
        }
        let verdicts = state.lock().verdicts.iter().copied().collect();
        (verdicts, state, f)
    }

    fn verdicts(input: &[u8]) -> Vec<Verdict> {
        let (whole, _, _) = run(input, input.len());
        // Byte by byte must judge exactly the same, however the reads are split.
        let (bytewise, _, _) = run(input, 1);
        assert_eq!(whole, bytewise, "split reads changed the verdicts");
        whole
    }

    const OK: Verdict = Verdict::Ok;

    fn bad(status: u16) -> impl Fn(&Verdict) -> bool {
        move |v| matches!(v, Verdict::Reject(s, _) if s.as_u16() == status)
    }

    #[test]
    fn simple_and_pipelined_requests() {
        assert_eq!(verdicts(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), [OK]);
        assert_eq!(
            verdicts(
                b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            [OK, OK]
        );
        assert_eq!(
            verdicts(b"GET / HTTP/1.0\r\n\r\n"),
            [OK],
            "HTTP/1.0 needs no Host"
        );
        assert_eq!(
            verdicts(b"GET / HTTP/1.1\nHost: x\n\n"),
            [OK],
            "bare LF ends head lines"
        );
    }

    #[test]
    fn bodies_are_skipped_exactly() {
        // The Content-Length body looks like a request; it must not be judged as one.
        let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n\
GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdicts(smuggle), [OK, OK]);
        // Other codings may come before chunked (RFC 9112 §6.1); chunked frames the message.
        let layered =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(verdicts(layered), [OK]);
        let last_not_chunked =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(bad(400)(&verdicts(last_not_chunked)[0]));
        let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n1a\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n0\r\nX-Trailer: t\r\n\r\n\
GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        let (v, _, f) = run(chunked, chunked.len());
        assert_eq!(v, [OK, OK]);
        assert!(matches!(f.phase, Phase::Between));
        assert_eq!(verdicts(chunked), [OK, OK]);
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
        ] {
            let v = verdicts(head);
            assert_eq!(v.len(), 1, "{}", String::from_utf8_lossy(head));
            assert!(bad(400)(&v[0]), "{}: {v:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn head_limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(120));
        assert!(bad(414)(&verdicts(long_line.as_bytes())[0]));
        // Refused as soon as the line is too long, before the head is complete.
        let (v, _, _) = run(format!("GET /{}", "a".repeat(120)).as_bytes(), 7);
        assert!(bad(414)(&v[0]));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n\r\n",
            "v".repeat(250)
        );
        assert!(bad(431)(&verdicts(big.as_bytes())[0]));
        let many: String = (0..6).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert!(bad(431)(&verdicts(many.as_bytes())[0]));
    }

    #[test]
    fn broken_chunks_stop_the_guard() {
        let (v, state, f) = run(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
            1000,
        );
        assert_eq!(v, [OK]);
        assert!(matches!(f.phase, Phase::Stopped));
        state.lock().verdicts.clear();
        assert!(
            bad(400)(&state.next_verdict()),
            "a request the guard did not judge is refused"
        );
    }

    #[test]
    fn http2_preface_is_not_judged() {
        let (v, _, f) = run(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", 3);
        assert!(v.is_empty());
        assert!(matches!(f.phase, Phase::Passthrough));
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
