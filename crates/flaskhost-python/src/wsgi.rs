//! The WSGI objects a request sees: `wsgi.input`, `start_response` (with `write`),
//! `wsgi.file_wrapper`, and the code that sends the app's response back to the front.
//!
//! **Invariant:** the slot's connection mutex is only ever waited for while detached from the
//! interpreter (inside `py.detach`); with the GIL held it is only tried (`try_lock`). A thread
//! that held the GIL while waiting for the mutex could deadlock with one that holds the mutex
//! and waits for the GIL.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flaskhost_ipc::frame::{self, Kind};
use flaskhost_ipc::response::HeadWriter;
use flaskhost_ipc::sync::FrameConn;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::strings::push_latin1;

/// How much request body one `ReadBody` asks for.
const READ_CHUNK: u32 = 64 * 1024;
/// Bodies returned whole (a list) up to this size go out in the head's frame.
const COMPLETE_MAX: usize = 1024 * 1024;
/// Queued response bytes are written once they pass this size.
const FLUSH_AT: usize = 256 * 1024;

/// One slot's connection, shared by its slot loop and the request's WSGI objects.
pub(crate) struct Slot {
    conn: Mutex<FrameConn>,
    /// The request being served. `wsgi.input` and `write` remember theirs, so one kept by the
    /// app past its request cannot touch the next request's exchange.
    current: AtomicU64,
}

impl Slot {
    pub(crate) fn new(conn: FrameConn) -> Arc<Slot> {
        Arc::new(Slot {
            conn: Mutex::new(conn),
            current: AtomicU64::new(0),
        })
    }
    /// Locks the connection. Callers are detached from the interpreter (see module docs).
    pub(crate) fn lock(&self) -> MutexGuard<'_, FrameConn> {
        // A panic while holding the lock leaves the connection in an unknown state; the slot
        // loop ends on the next error anyway, so taking the inner value is safe.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn begin(&self, id: u64) {
        self.current.store(id, Ordering::Relaxed);
    }
    fn is_current(&self, id: u64) -> bool {
        self.current.load(Ordering::Relaxed) == id
    }
}

/// A failure while serving: the app's (reported to the front as `Failed`) or the connection's
/// (the slot ends).
pub(crate) enum ServeError {
    App(PyErr),
    Conn(io::Error),
}

impl From<PyErr> for ServeError {
    fn from(e: PyErr) -> Self {
        ServeError::App(e)
    }
}
impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Conn(e)
    }
}

/// `wsgi.input`: the request body, pulled from the front in chunks as the app reads.
#[pyclass(module = "flaskhost")]
pub(crate) struct Input {
    slot: Arc<Slot>,
    request: u64,
    buf: Vec<u8>,
    pos: usize,
    /// More body can be pulled from the front.
    more: bool,
}

impl Input {
    pub(crate) fn new(slot: Arc<Slot>, request: u64, inline: &[u8], more: bool) -> Input {
        Input {
            slot,
            request,
            buf: inline.to_vec(),
            pos: 0,
            more,
        }
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Pulls one more chunk from the front. Returns false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if !self.more {
            return Ok(false);
        }
        if !self.slot.is_current(self.request) {
            self.more = false;
            return Err(PyOSError::new_err(
                "wsgi.input read after its request ended",
            ));
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let slot = &self.slot;
        let buf = &mut self.buf;
        let got = py.detach(|| -> io::Result<Kind> {
            let mut c = slot.lock();
            frame::push_u32(&mut c.wbuf, Kind::ReadBody, READ_CHUNK);
            c.flush()?;
            let f = c.read_frame()?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "front closed the slot")
            })?;
            if f.kind == Kind::Body {
                buf.extend_from_slice(c.payload(&f));
            }
            Ok(f.kind)
        });
        match got {
            Ok(Kind::Body) => Ok(true),
            Ok(Kind::BodyEnd) => {
                self.more = false;
                Ok(false)
            }
            Ok(Kind::Abort) => {
                self.more = false;
                Err(PyOSError::new_err(
                    "client disconnected while sending the request body",
                ))
            }
            Ok(k) => {
                self.more = false;
                Err(PyOSError::new_err(format!(
                    "protocol error: {k:?} while reading the body"
                )))
            }
            Err(e) => {
                self.more = false;
                Err(PyOSError::new_err(format!("reading the request body: {e}")))
            }
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.available());
        let b = PyBytes::new(py, &self.buf[self.pos..self.pos + n]);
        self.pos += n;
        b
    }
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok(usize::try_from(n).ok())
        }
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let want = size_arg(size)?;
        while want.is_none_or(|w| self.available() < w) && self.fill(py)? {}
        let n = want.map_or(self.available(), |w| w.min(self.available()));
        Ok(self.take(py, n))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size_arg(size)?;
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let n = scanned + i + 1;
                return Ok(self.take(py, limit.map_or(n, |l| l.min(n))));
            }
            scanned = avail.len();
            if limit.is_some_and(|l| scanned >= l) || !self.fill(py)? {
                let n = limit.map_or(self.available(), |l| l.min(self.available()));
                return Ok(self.take(py, n));
            }
        }
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.readline(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks. The slot loop recognises it
/// and reads in large blocks instead of calling back into `__next__`.
#[pyclass(module = "flaskhost")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> Self {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.block_size,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

/// `start_response`, reused by its slot for every request, and the response writer behind
/// it. `write` (the callable start_response returns) is a method of the same object.
#[pyclass(module = "flaskhost")]
pub(crate) struct StartResponse {
    slot: Arc<Slot>,
    request: u64,
    is_head: bool,
    called: bool,
    head_sent: bool,
    status: u16,
    headers: Option<Py<PyAny>>,
    /// Frames waiting to be written.
    out: Vec<u8>,
    /// The client went away (the front sent `Abort`).
    aborted: bool,
    /// The whole response went out in the head's frame before the app's iterable ended (its
    /// first block was all of its Content-Length): the exchange is over for the front, so
    /// nothing more may be sent for this request.
    complete_sent: bool,
    /// `self.write`, bound once.
    write_fn: Option<Py<PyAny>>,
}

impl StartResponse {
    pub(crate) fn new(slot: Arc<Slot>) -> StartResponse {
        StartResponse {
            slot,
            request: 0,
            is_head: false,
            called: false,
            head_sent: false,
            status: 0,
            headers: None,
            out: Vec::with_capacity(16 * 1024),
            aborted: false,
            complete_sent: false,
            write_fn: None,
        }
    }

    pub(crate) fn bind_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let w = slf.getattr("write")?.unbind();
        slf.borrow_mut().write_fn = Some(w);
        Ok(())
    }

    pub(crate) fn reset(&mut self, request: u64, is_head: bool) {
        self.request = request;
        self.is_head = is_head;
        self.called = false;
        self.head_sent = false;
        self.aborted = false;
        self.complete_sent = false;
        self.status = 0;
        self.headers = None;
        self.out.clear();
    }

    pub(crate) fn head_sent(&self) -> bool {
        self.head_sent
    }

    pub(crate) fn complete_sent(&self) -> bool {
        self.complete_sent
    }

    /// The Content-Length the app gave to start_response, if any and well-formed.
    fn declared_length(&self, py: Python<'_>) -> Option<usize> {
        let headers = self.headers.as_ref()?.bind(py);
        for item in headers.try_iter().ok()? {
            let item = item.ok()?;
            let pair = item.cast::<PyTuple>().ok()?;
            let name = pair.get_item(0).ok()?;
            let name = name.cast::<PyString>().ok()?;
            if name.to_str().ok()?.eq_ignore_ascii_case("content-length") {
                let value = pair.get_item(1).ok()?;
                let value = value.cast::<PyString>().ok()?;
                return value.to_str().ok()?.trim().parse().ok();
            }
        }
        None
    }

    /// Encodes the head; `complete` carries the whole body in the same frame.
    fn push_head(&mut self, py: Python<'_>, complete: Option<&[&[u8]]>) -> PyResult<()> {
        if !self.called {
            return Err(PyAssertionError::new_err(
                "the app returned (or wrote) a body without calling start_response",
            ));
        }
        let mut w = HeadWriter::begin(&mut self.out, self.status);
        let mut name = Vec::with_capacity(32);
        let mut value = Vec::with_capacity(128);
        if let Some(h) = &self.headers {
            for item in h.bind(py).try_iter()? {
                let item = item?;
                let pair = item.cast::<PyTuple>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "response headers must be (name, value) tuples, got {}",
                        item.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ))
                })?;
                if pair.len() != 2 {
                    return Err(PyValueError::new_err(
                        "response header tuples have two items",
                    ));
                }
                let n = pair.get_item(0)?;
                let v = pair.get_item(1)?;
                let (n, v) = (
                    n.cast::<PyString>()
                        .map_err(|_| PyTypeError::new_err("header names must be str"))?,
                    v.cast::<PyString>()
                        .map_err(|_| PyTypeError::new_err("header values must be str"))?,
                );
                name.clear();
                value.clear();
                push_latin1(n, &mut name, "header name")?;
                push_latin1(v, &mut value, "header value")?;
                w.header(&mut self.out, &name, &value);
            }
        }
        match complete {
            Some(parts) => w.finish_complete(&mut self.out, if self.is_head { &[] } else { parts }),
            None => w.finish_streaming(&mut self.out),
        }
        self.head_sent = true;
        Ok(())
    }

    /// Writes what is queued, detached from the interpreter. With `check_abort`, also looks
    /// (without blocking) for an `Abort` from the front.
    fn flush(&mut self, py: Python<'_>, check_abort: bool) -> io::Result<()> {
        if self.out.is_empty() && !check_abort {
            return Ok(());
        }
        if !check_abort && self.write_attached()? {
            return Ok(());
        }
        let slot = &self.slot;
        let out = &mut self.out;
        let aborted = py.detach(|| -> io::Result<bool> {
            let mut c = slot.lock();
            let r = c.stream().write_all(out);
            out.clear();
            r?;
            if check_abort && c.has_pending_input()? {
                let f = c.read_frame()?;
                return Ok(f.is_some_and(|f| f.kind == Kind::Abort));
            }
            Ok(false)
        })?;
        self.aborted |= aborted;
        Ok(())
    }

    /// Writes what is queued without leaving the interpreter, when that cannot block: the
    /// connection is free (`try_lock`, so the locking invariant holds: nothing waits for the
    /// mutex with the GIL held) and the socket takes everything at once. Releasing the GIL
    /// for a write that does not block only costs a hand-over to another thread and back.
    /// Returns false, with whatever was not written still queued, otherwise.
    fn write_attached(&mut self) -> io::Result<bool> {
        let Ok(c) = self.slot.conn.try_lock() else {
            return Ok(false);
        };
        let n = c.write_now(&self.out)?;
        self.out.drain(..n);
        Ok(self.out.is_empty())
    }

    /// Queues one body chunk (the head first if it has not gone yet) and writes it: PEP 3333
    /// forbids holding back a block the app produced.
    fn send_chunk(&mut self, py: Python<'_>, data: &[u8]) -> Result<(), ServeError> {
        if !self.head_sent {
            self.push_head(py, None)?;
        }
        if !self.is_head && !data.is_empty() {
            frame::push(&mut self.out, Kind::ResponseBody, data);
        }
        self.flush(py, true)?;
        Ok(())
    }

    fn finish(&mut self, py: Python<'_>) -> Result<(), ServeError> {
        if self.head_sent {
            frame::push(&mut self.out, Kind::ResponseEnd, b"");
        } else {
            self.push_head(py, Some(&[]))?;
        }
        self.flush(py, false)?;
        Ok(())
    }

    /// Tells the front the app failed (before the head: it answers 500; after: it cuts the
    /// response short).
    pub(crate) fn fail(&mut self, py: Python<'_>, message: &str) -> io::Result<()> {
        self.out.clear();
        frame::push(&mut self.out, Kind::Failed, message.as_bytes());
        self.flush(py, false)
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &mut self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match exc_info.filter(|e| !e.is_none()) {
            // Headers already went out: the app must see its own error again (PEP 3333).
            Some(ei) if self.head_sent => return Err(PyErr::from_value(ei.get_item(1)?)),
            Some(_) => {}
            None if self.called => {
                return Err(PyAssertionError::new_err(
                    "start_response called a second time without exc_info",
                ));
            }
            None => {}
        }
        let s = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?;
        let s = s.to_str()?;
        let b = s.as_bytes();
        let code = (b.len() >= 3
            && b[..3].iter().all(u8::is_ascii_digit)
            && b.get(3).is_none_or(|&c| c == b' '))
        .then(|| {
            u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0')
        })
        .filter(|c| *c >= 100)
        .ok_or_else(|| PyValueError::new_err(format!("status {s:?} is not like '200 OK'")))?;
        if !headers.is_instance_of::<PyList>() && !headers.is_instance_of::<PyTuple>() {
            return Err(PyTypeError::new_err(
                "response headers must be a list of tuples",
            ));
        }
        self.status = code;
        self.headers = Some(headers.clone().unbind());
        self.called = true;
        self.write_fn
            .as_ref()
            .map(|w| w.clone_ref(py))
            .ok_or_else(|| PyAssertionError::new_err("start_response is not bound"))
    }

    /// The legacy `write()` callable.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.slot.is_current(self.request) || self.complete_sent {
            return Err(PyOSError::new_err("write() called after its request ended"));
        }
        let b = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        match self.send_chunk(py, b.as_bytes()) {
            Ok(()) if self.aborted => Err(PyOSError::new_err("client disconnected")),
            Ok(()) => Ok(()),
            Err(ServeError::App(e)) => Err(e),
            Err(ServeError::Conn(e)) => Err(PyOSError::new_err(e.to_string())),
        }
    }
}

/// Sends the app's return value: one frame for a list of bytes, block by block for a file
/// wrapper or any other iterable. Does not call `close()`; the caller does, always.
pub(crate) fn send_body(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    result: &Bound<'_, PyAny>,
) -> Result<(), ServeError> {
    let mut sr = sr.borrow_mut();
    // Fast path: an exact list or tuple of bytes (Flask's usual), checked by exact type first
    // because looking up `close` on a list raises and discards an AttributeError.
    if let Ok(list) = result.cast_exact::<PyList>() {
        return send_sequence(py, &mut sr, list.iter());
    }
    if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        return send_sequence(py, &mut sr, tuple.iter());
    }
    if sr.is_head {
        // HEAD: the head is all that is sent; the body is not produced (close() still runs).
        return sr.finish(py);
    }
    if let Ok(fw) = result.cast::<FileWrapper>() {
        let fw = fw.borrow();
        let f = fw.filelike.bind(py);
        let block = fw.block_size.max(64 * 1024);
        loop {
            let data = f.call_method1("read", (block,))?;
            let data = data
                .cast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("the file wrapper's read() must return bytes"))?;
            if data.as_bytes().is_empty() {
                break;
            }
            sr.send_chunk(py, data.as_bytes())?;
            if sr.aborted {
                break;
            }
        }
        return sr.finish(py);
    }
    // A first block that is the whole declared Content-Length (Flask's and Werkzeug's usual
    // response, whose body is an iterator rather than a list) goes out with the head in one
    // complete frame, as a list body would: the iterator is then run to its end and closed
    // without anything more being sent (bytes beyond Content-Length are the app's bug and
    // would be cut by HTTP framing anyway).
    let declared = if sr.head_sent {
        None
    } else {
        sr.declared_length(py)
            .filter(|&n| n > 0 && n <= COMPLETE_MAX)
    };
    let mut extra = 0usize;
    for item in result.try_iter()? {
        let item = item?;
        let b = item
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("the app's iterable must yield bytes"))?;
        // An empty block sends nothing, not even the head (PEP 3333).
        if b.as_bytes().is_empty() {
            continue;
        }
        if sr.complete_sent {
            extra += b.as_bytes().len();
            continue;
        }
        if !sr.head_sent && declared == Some(b.as_bytes().len()) {
            sr.push_head(py, Some(&[b.as_bytes()]))?;
            sr.flush(py, false)?;
            sr.complete_sent = true;
            continue;
        }
        sr.send_chunk(py, b.as_bytes())?;
        if sr.aborted {
            break;
        }
    }
    if sr.complete_sent {
        if extra > 0 {
            tracing::warn!(
                "the app's iterable went on for {extra} bytes past its Content-Length; they were not sent"
            );
        }
        return Ok(());
    }
    sr.finish(py)
}

fn send_sequence<'py>(
    py: Python<'py>,
    sr: &mut StartResponse,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
) -> Result<(), ServeError> {
    let items: Vec<Bound<'py, PyAny>> = items.collect();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut total = 0;
    for item in &items {
        let b = item
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("the app's body items must be bytes"))?;
        total += b.as_bytes().len();
        parts.push(b.as_bytes());
    }
    if !sr.head_sent && total <= COMPLETE_MAX {
        sr.push_head(py, Some(&parts))?;
        sr.flush(py, false)?;
        return Ok(());
    }
    if !sr.head_sent {
        sr.push_head(py, None)?;
    }
    if !sr.is_head {
        for p in parts.iter().filter(|p| !p.is_empty()) {
            frame::push(&mut sr.out, Kind::ResponseBody, p);
            if sr.out.len() >= FLUSH_AT {
                sr.flush(py, true)?;
                if sr.aborted {
                    break;
                }
            }
        }
    }
    sr.finish(py)
}
