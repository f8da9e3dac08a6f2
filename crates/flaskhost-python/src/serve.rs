//! The slot loop: one thread per slot socket, each serving one request at a time.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use flaskhost_ipc::frame::{self, Kind};
use flaskhost_ipc::request::{self, RequestHead};
use flaskhost_ipc::sync::FrameConn;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::app::{App, format_err};
use crate::strings::latin1;
use crate::wsgi::{FileWrapper, Input, ServeError, Slot, StartResponse, send_body};

/// What the environ says about the process model.
#[derive(Debug, Clone, Copy)]
pub struct SlotOptions {
    pub multithread: bool,
    pub multiprocess: bool,
}

/// Serves every slot until the front closes them, one thread each (the calling thread takes
/// the first). Returns when all slots have ended.
pub fn serve_slots(app: &App, slots: Vec<UnixStream>, opts: SlotOptions) -> io::Result<()> {
    let pid = std::process::id();
    let app = Python::attach(|py| App {
        callable: app.callable.clone_ref(py),
        boot: app.boot.clone_ref(py),
    });
    let app = Arc::new(app);
    let mut handles = Vec::new();
    let mut slots = slots.into_iter();
    let first = slots.next();
    for (i, s) in slots.enumerate() {
        let app = app.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("slot-{}", i + 1))
                .spawn(move || serve_one(&app, s, opts, pid))?,
        );
    }
    let mut result = match first {
        Some(s) => serve_one(&app, s, opts, pid),
        None => Ok(()),
    };
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("slot thread panicked")));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// Creates, in the fork server, what every worker would otherwise create for itself when its
/// slots start: the WSGI classes (pyo3 makes a class on its first use) and the environ's
/// interned keys. Made before `gc.freeze()`, they are shared by all workers instead of being
/// allocated in, and written to, pages that each worker then copies.
pub(crate) fn prepare_for_fork(py: Python<'_>) -> PyResult<()> {
    py.get_type::<Input>();
    py.get_type::<StartResponse>();
    // Also makes the `wsgi.file_wrapper` class.
    EnvironBuilder::new(
        py,
        SlotOptions {
            multithread: false,
            multiprocess: false,
        },
    )?;
    Ok(())
}

/// Keys and values every request uses, created once per slot.
struct Keys {
    request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    server_protocol: Py<PyString>,
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    url_scheme: Py<PyString>,
    input: Py<PyString>,
    http: Py<PyString>,
    https: Py<PyString>,
    protocols: [Py<PyString>; 3],
}

/// Builds environs from a per-slot template: a dict copy plus a dozen sets with interned keys,
/// rather than a fresh dict of twenty string keys.
pub(crate) struct EnvironBuilder {
    template: Py<PyDict>,
    keys: Keys,
    /// Interned header keys (`HTTP_ACCEPT` …) and methods, with the header's last value,
    /// bounded so that a client inventing header names cannot grow it without end.
    names: HashMap<Vec<u8>, (Py<PyString>, Recent)>,
    /// The last values of the variables that repeat from request to request.
    path_info: Recent,
    server_name: Recent,
    server_port: Recent,
    remote_addr: Recent,
    remote_port: Recent,
}

const NAME_CACHE_MAX: usize = 512;

/// A variable's last value and its `str`. A repeat (the same Host, client address and port,
/// User-Agent or Accept on a kept-alive connection, as most are) reuses the string instead of
/// decoding and allocating it again; strings are immutable, so two environs sharing one is
/// invisible to the app.
#[derive(Default)]
struct Recent {
    bytes: Vec<u8>,
    value: Option<Py<PyString>>,
}

/// Longest value kept by [`Recent`] (a longer one is decoded every time).
const RECENT_MAX: usize = 256;

impl Recent {
    fn get<'py>(&mut self, py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
        if let Some(v) = &self.value
            && self.bytes == b
        {
            return v.bind(py).clone();
        }
        let s = latin1(py, b);
        if b.len() <= RECENT_MAX {
            self.bytes.clear();
            self.bytes.extend_from_slice(b);
            self.value = Some(s.clone().unbind());
        }
        s
    }
}

impl EnvironBuilder {
    pub(crate) fn new(py: Python<'_>, opts: SlotOptions) -> PyResult<EnvironBuilder> {
        let t = PyDict::new(py);
        t.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        t.set_item("wsgi.multithread", opts.multithread)?;
        t.set_item("wsgi.multiprocess", opts.multiprocess)?;
        t.set_item("wsgi.run_once", false)?;
        t.set_item("wsgi.errors", py.import("sys")?.getattr("stderr")?)?;
        t.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        // The body ends where the front says it ends, chunked or not; frameworks may read
        // wsgi.input to EOF without CONTENT_LENGTH.
        t.set_item("wsgi.input_terminated", true)?;
        t.set_item("SERVER_SOFTWARE", "flaskhost")?;
        let k = |s: &str| PyString::intern(py, s).unbind();
        // Every variable `build` always sets is in the template already (a placeholder it
        // overwrites), so a copy has them in its table: setting one replaces a value instead of
        // inserting a key, and the dict is not grown and rehashed on each request.
        for key in [
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "PATH_INFO",
            "QUERY_STRING",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "wsgi.url_scheme",
            "wsgi.input",
        ] {
            t.set_item(k(key), "")?;
        }
        Ok(EnvironBuilder {
            template: t.unbind(),
            keys: Keys {
                request_method: k("REQUEST_METHOD"),
                script_name: k("SCRIPT_NAME"),
                path_info: k("PATH_INFO"),
                query_string: k("QUERY_STRING"),
                server_name: k("SERVER_NAME"),
                server_port: k("SERVER_PORT"),
                server_protocol: k("SERVER_PROTOCOL"),
                remote_addr: k("REMOTE_ADDR"),
                remote_port: k("REMOTE_PORT"),
                url_scheme: k("wsgi.url_scheme"),
                input: k("wsgi.input"),
                http: k("http"),
                https: k("https"),
                protocols: [k("HTTP/1.0"), k("HTTP/1.1"), k("HTTP/2")],
            },
            names: HashMap::new(),
            path_info: Recent::default(),
            server_name: Recent::default(),
            server_port: Recent::default(),
            remote_addr: Recent::default(),
            remote_port: Recent::default(),
        })
    }

    fn name<'py>(&mut self, py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
        if let Some((s, _)) = self.names.get(b) {
            return s.bind(py).clone();
        }
        let s = latin1(py, b);
        if self.names.len() < NAME_CACHE_MAX {
            // Interning makes the dict's key hashing and comparisons pointer-fast later.
            let s = PyString::intern(py, &s.to_string_lossy());
            self.names
                .insert(b.to_vec(), (s.clone().unbind(), Recent::default()));
            return s;
        }
        s
    }

    /// A header's environ key and value, the value reused when it repeats.
    fn header<'py>(
        &mut self,
        py: Python<'py>,
        name: &[u8],
        value: &[u8],
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        // One lookup for a known name; a new one is interned (its value kept from next time).
        if let Some((key, recent)) = self.names.get_mut(name) {
            return (key.bind(py).clone(), recent.get(py, value));
        }
        (self.name(py, name), latin1(py, value))
    }

    pub(crate) fn build<'py>(
        &mut self,
        py: Python<'py>,
        h: &RequestHead<'_>,
        input: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        let method = {
            let m = h.method;
            match self.names.get(m) {
                Some((s, _)) => s.bind(py).clone(),
                None => self.name(py, m),
            }
        };
        let k = &self.keys;
        env.set_item(k.request_method.bind(py), method)?;
        env.set_item(k.script_name.bind(py), latin1(py, h.script_name))?;
        env.set_item(k.path_info.bind(py), self.path_info.get(py, h.path_info))?;
        env.set_item(k.query_string.bind(py), latin1(py, h.query))?;
        env.set_item(
            k.server_name.bind(py),
            self.server_name.get(py, h.server_name),
        )?;
        env.set_item(
            k.server_port.bind(py),
            self.server_port.get(py, h.server_port),
        )?;
        let proto = match h.version {
            request::Version::Http10 => &k.protocols[0],
            request::Version::Http11 => &k.protocols[1],
            request::Version::Http2 => &k.protocols[2],
        };
        env.set_item(k.server_protocol.bind(py), proto.bind(py))?;
        env.set_item(
            k.remote_addr.bind(py),
            self.remote_addr.get(py, h.remote_addr),
        )?;
        let mut digits = [0u8; 20];
        let port = flaskhost_ipc::decimal(u64::from(h.remote_port), &mut digits);
        env.set_item(k.remote_port.bind(py), self.remote_port.get(py, port))?;
        let scheme = if h.https { &k.https } else { &k.http };
        env.set_item(k.url_scheme.bind(py), scheme.bind(py))?;
        env.set_item(k.input.bind(py), input)?;
        for pair in h.headers.clone() {
            let (name, value) = pair.map_err(|e| {
                pyo3::exceptions::PyValueError::new_err(format!("bad request head: {e}"))
            })?;
            let (key, value) = self.header(py, name, value);
            env.set_item(key, value)?;
        }
        Ok(env)
    }
}

/// Serves one slot until the front closes it.
fn serve_one(app: &App, stream: UnixStream, opts: SlotOptions, pid: u32) -> io::Result<()> {
    let mut conn = FrameConn::new(stream);
    frame::push_u32(&mut conn.wbuf, Kind::Ready, pid);
    conn.flush()?;
    let slot = Slot::new(conn);
    Python::attach(|py| -> io::Result<()> {
        let setup = || -> PyResult<_> {
            let sr = Bound::new(py, StartResponse::new(slot.clone()))?;
            StartResponse::bind_write(&sr)?;
            Ok((sr, EnvironBuilder::new(py, opts)?))
        };
        let (sr, mut environ) = setup().map_err(|e| io::Error::other(e.to_string()))?;
        let app_obj = app.callable.bind(py);
        let boot = app.boot.bind(py);
        let mut head_buf: Vec<u8> = Vec::with_capacity(8 * 1024);
        let mut request_id: u64 = 0;
        loop {
            // Wait for the next request without the GIL, and copy its frame out of the
            // connection (see the locking invariant in wsgi.rs).
            head_buf.clear();
            let kind = py.detach(|| -> io::Result<Option<Kind>> {
                let mut c = slot.lock();
                loop {
                    let Some(f) = c.read_frame()? else {
                        return Ok(None);
                    };
                    match f.kind {
                        Kind::Request => {
                            head_buf.extend_from_slice(c.payload(&f));
                            return Ok(Some(Kind::Request));
                        }
                        // An Abort that crossed our ResponseEnd on the wire: nothing to stop.
                        Kind::Abort => continue,
                        other => return Ok(Some(other)),
                    }
                }
            })?;
            match kind {
                None => return Ok(()),
                Some(Kind::Request) => {}
                Some(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("protocol error: {other:?} frame while idle"),
                    ));
                }
            }
            request_id += 1;
            slot.begin(request_id);
            let head = request::decode(&head_buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            handle(
                py,
                app_obj,
                boot,
                &sr,
                &mut environ,
                &slot,
                request_id,
                &head,
            )?;
        }
    })
}

/// Runs one request through the app. App errors are logged and reported to the front;
/// connection errors end the slot.
#[allow(clippy::too_many_arguments)]
fn handle(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    boot: &Bound<'_, PyModule>,
    sr: &Bound<'_, StartResponse>,
    environ: &mut EnvironBuilder,
    slot: &Arc<Slot>,
    request_id: u64,
    head: &RequestHead<'_>,
) -> io::Result<()> {
    let is_head = head.method == b"HEAD";
    sr.borrow_mut().reset(request_id, is_head);
    let input = Input::new(
        slot.clone(),
        request_id,
        head.inline_body,
        head.body_streaming,
    );
    let outcome = (|| -> Result<(), ServeError> {
        let input = Bound::new(py, input)?.into_any();
        let env = environ.build(py, head, input)?;
        let result = app.call1((env, sr))?;
        let sent = send_body(py, sr, &result);
        // close() runs whatever happened while sending, including a client that went away.
        let closed = if result.is_exact_instance_of::<pyo3::types::PyList>() {
            Ok(())
        } else {
            match result.getattr_opt(intern!(py, "close")) {
                Ok(Some(close)) => close.call0().map(drop),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = closed {
            // The response is already complete (or already failed): a raising close() is the
            // app's bug to see in the log, not something to tell the front about.
            let tb = format_err(py, boot, &e);
            let method = String::from_utf8_lossy(head.method);
            let path = String::from_utf8_lossy(head.path_info);
            tracing::error!("the app's close() raised on {method} {path}:\n{tb}");
        }
        sent
    })();
    match outcome {
        Ok(()) => Ok(()),
        Err(ServeError::Conn(e)) => Err(e),
        Err(ServeError::App(e)) if sr.borrow().complete_sent() => {
            // The whole response already went out, and the front has moved on: a failure
            // while the app's iterable ran to its end is only for the log.
            let tb = format_err(py, boot, &e);
            let method = String::from_utf8_lossy(head.method);
            let path = String::from_utf8_lossy(head.path_info);
            tracing::error!(
                "app error on {method} {path} after its complete response was sent:\n{tb}"
            );
            Ok(())
        }
        Err(ServeError::App(e)) => {
            let tb = format_err(py, boot, &e);
            let method = String::from_utf8_lossy(head.method);
            let path = String::from_utf8_lossy(head.path_info);
            let started = sr.borrow().head_sent();
            tracing::error!(
                "app error on {method} {path}{}:\n{tb}",
                if started {
                    " (after the response started; it is cut short)"
                } else {
                    ""
                }
            );
            sr.borrow_mut().fail(py, e.to_string().as_str())
        }
    }
}
