//! The access log: one line per request, written when its response is finished (or
//! abandoned), in nginx's `combined` format or as JSON, to stdout, stderr or a file with
//! size-based rotation.
//!
//! Lines are formatted on the request path and handed to one writer thread over a bounded
//! channel; a full channel drops the line (counted, and reported once the writer catches up)
//! rather than slowing requests down. The writer flushes whenever it has nothing queued, so a
//! line is on disk moments after its response.
//!
//! `combined` is exactly nginx's format followed by two fields: the request time and the
//! app's time (until the app started its response; `-` for static files and requests the
//! app never saw), in seconds with millisecond precision:
//!
//! `127.0.0.1 - - [10/Oct/2025:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 1234 "-" "curl/8.0" 0.004 0.003`
//!
//! Times are UTC. Request fields are escaped as nginx does (`"`, `\` and bytes outside
//! printable ASCII as `\xHH`).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use flaskhost_config::{AccessLogConfig, LogFormat, LogTarget};
use http::header;
use http_body::Frame;

use crate::app::{ConnInfo, EdgeBody};

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;

/// Response extension: do not log this request (a static mount with `access-log = false`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SkipAccessLog;

/// Response extension: how long the app took to start its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppTime(pub(crate) Duration);

enum Msg {
    Line(String),
    /// Reopen the file (after logrotate moved it away): SIGHUP.
    Reopen,
}

/// The access log's sending side.
#[derive(Debug)]
pub struct AccessLog {
    tx: Mutex<Option<SyncSender<Msg>>>,
    format: LogFormat,
    dropped: Arc<AtomicU64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Opens the log (creating the file) and starts its writer thread.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending.
    pub fn open(cfg: &AccessLogConfig) -> io::Result<AccessLog> {
        let sink = Sink::open(cfg)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = {
            let dropped = dropped.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_loop(sink, &rx, &dropped))?
        };
        Ok(AccessLog {
            tx: Mutex::new(Some(tx)),
            format: cfg.format,
            dropped,
            writer: Mutex::new(Some(writer)),
        })
    }

    fn send(&self, msg: Msg) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = tx.as_ref()
            && let Err(TrySendError::Full(_)) = tx.try_send(msg)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reopens a file log, for logrotate's `postrotate` (SIGHUP).
    pub fn reopen(&self) {
        self.send(Msg::Reopen);
    }

    /// Writes out what is queued and stops the writer; later lines are discarded.
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = h.join();
        }
    }

    /// Wraps the response so its line is written when the body is finished.
    pub(crate) fn track(
        self: &Arc<Self>,
        entry: Entry,
        resp: http::Response<EdgeBody>,
    ) -> http::Response<EdgeBody> {
        if resp.extensions().get::<SkipAccessLog>().is_some() {
            return resp;
        }
        let app = resp.extensions().get::<AppTime>().map(|t| t.0);
        let status = resp.status().as_u16();
        resp.map(|body| {
            EdgeBody::Other(Body::new(LoggedBody {
                inner: body,
                sent: 0,
                done: Some(Done {
                    log: self.clone(),
                    entry,
                    status,
                    app,
                }),
            }))
        })
    }
}

/// What is known about a request before its response.
pub(crate) struct Entry {
    remote: String,
    request_line: String,
    method: String,
    uri: String,
    protocol: &'static str,
    host: String,
    referer: Option<String>,
    user_agent: Option<String>,
    at: SystemTime,
    start: Instant,
}

impl Entry {
    /// Reads the request. `info` is the connection as the app sees it (after trusted
    /// proxies), so the client logged is the real one.
    pub(crate) fn of<B>(req: &http::Request<B>, info: ConnInfo) -> Entry {
        let h = req.headers();
        let text = |name| {
            h.get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let protocol = match req.version() {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
        let method = req.method().as_str().to_owned();
        Entry {
            remote: info
                .remote
                .map_or_else(|| "unix:".to_owned(), |a| a.ip().to_string()),
            request_line: format!("{method} {uri} {protocol}"),
            method,
            uri,
            protocol,
            host: text(header::HOST)
                .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
                .unwrap_or_default(),
            referer: text(header::REFERER),
            user_agent: text(header::USER_AGENT),
            at: SystemTime::now(),
            start: Instant::now(),
        }
    }
}

struct Done {
    log: Arc<AccessLog>,
    entry: Entry,
    status: u16,
    app: Option<Duration>,
}

impl Done {
    fn write(self, sent: u64) {
        let e = &self.entry;
        let total = e.start.elapsed();
        let mut line = String::with_capacity(256);
        match self.log.format {
            LogFormat::Combined => {
                let _ = write!(
                    line,
                    "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {:.3} {}",
                    e.remote,
                    clf_time(e.at),
                    nginx_escape(&e.request_line),
                    self.status,
                    sent,
                    e.referer
                        .as_deref()
                        .map_or_else(|| "-".into(), nginx_escape),
                    e.user_agent
                        .as_deref()
                        .map_or_else(|| "-".into(), nginx_escape),
                    total.as_secs_f64(),
                    self.app
                        .map_or_else(|| "-".to_owned(), |t| format!("{:.3}", t.as_secs_f64())),
                );
            }
            LogFormat::Json => {
                let _ = write!(
                    line,
                    "{{\"time\":\"{}\",\"remote_addr\":{},\"method\":{},\"uri\":{},\"protocol\":\"{}\",\"host\":{},\"status\":{},\"bytes_sent\":{},\"referer\":{},\"user_agent\":{},\"request_time\":{:.6},\"app_time\":{}}}",
                    iso_time(e.at),
                    json_str(&e.remote),
                    json_str(&e.method),
                    json_str(&e.uri),
                    e.protocol,
                    json_str(&e.host),
                    self.status,
                    sent,
                    e.referer.as_deref().map_or_else(|| "null".into(), json_str),
                    e.user_agent
                        .as_deref()
                        .map_or_else(|| "null".into(), json_str),
                    total.as_secs_f64(),
                    self.app
                        .map_or_else(|| "null".to_owned(), |t| format!("{:.6}", t.as_secs_f64())),
                );
            }
        }
        line.push('\n');
        self.log.send(Msg::Line(line));
    }
}

/// The response body, counting bytes; the line is written at its end or when it is dropped
/// (the client went away).
struct LoggedBody {
    inner: EdgeBody,
    sent: u64,
    done: Option<Done>,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(done) = this.done.take() {
                    done.write(this.sent);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.write(self.sent);
        }
    }
}

/// Where lines go.
enum Sink {
    Stdout(BufWriter<io::Stdout>),
    Stderr(BufWriter<io::Stderr>),
    File {
        out: BufWriter<File>,
        path: PathBuf,
        size: u64,
        max: Option<u64>,
        backup: PathBuf,
    },
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    fn open(cfg: &AccessLogConfig) -> io::Result<Sink> {
        Ok(match &cfg.target {
            LogTarget::Stdout => Sink::Stdout(BufWriter::new(io::stdout())),
            LogTarget::Stderr => Sink::Stderr(BufWriter::new(io::stderr())),
            LogTarget::File(path) => {
                let file = open_append(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                let size = file.metadata().map_or(0, |m| m.len());
                let backup = cfg.backup.clone().unwrap_or_else(|| {
                    let mut p = path.as_os_str().to_owned();
                    p.push(".1");
                    PathBuf::from(p)
                });
                Sink::File {
                    out: BufWriter::new(file),
                    path: path.clone(),
                    size,
                    max: cfg.max_size,
                    backup,
                }
            }
        })
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(line.as_bytes()),
            Sink::Stderr(w) => w.write_all(line.as_bytes()),
            Sink::File { out, size, max, .. } => {
                out.write_all(line.as_bytes())?;
                *size += line.len() as u64;
                if max.is_some_and(|m| *size >= m) {
                    self.rotate()?;
                }
                Ok(())
            }
        }
    }

    /// Renames the file to the backup name (replacing an older backup) and starts a new one,
    /// as uWSGI's log-maxsize does.
    fn rotate(&mut self) -> io::Result<()> {
        if let Sink::File {
            out,
            path,
            size,
            backup,
            ..
        } = self
        {
            out.flush()?;
            std::fs::rename(&*path, &*backup)?;
            *out = BufWriter::new(open_append(path)?);
            *size = 0;
        }
        Ok(())
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File {
            out, path, size, ..
        } = self
        {
            out.flush()?;
            let file = open_append(path)?;
            *size = file.metadata().map_or(0, |m| m.len());
            *out = BufWriter::new(file);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Stderr(w) => w.flush(),
            Sink::File { out, .. } => out.flush(),
        }
    }
}

fn write_loop(mut sink: Sink, rx: &Receiver<Msg>, dropped: &AtomicU64) {
    let mut failing = false;
    // Blocks for the next message; drains what is queued before flushing once.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            let result = match msg {
                Msg::Line(line) => sink.write_line(&line),
                Msg::Reopen => sink.reopen(),
            };
            report(result, &mut failing);
            next = rx.try_recv().ok();
        }
        report(sink.flush(), &mut failing);
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!("access log: {lost} lines dropped because the writer fell behind");
        }
    }
    let _ = sink.flush();
}

/// Logs a write failure once, not once per line, until writing works again.
fn report(result: io::Result<()>, failing: &mut bool) {
    match result {
        Err(e) if !*failing => {
            tracing::error!("access log: cannot write: {e}");
            *failing = true;
        }
        Err(_) => {}
        Ok(()) => *failing = false,
    }
}

/// nginx's escaping of logged variables: `"`, `\`, and bytes outside printable ASCII as
/// `\xHH`.
fn nginx_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Civil date (year, month 1-12, day 1-31) from days since 1970-01-01 (Howard Hinnant's
/// algorithm), to format UTC times without a date library.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (y, m, day) = civil(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    (
        y,
        m,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// `10/Oct/2000:13:55:36 +0000`, nginx's `$time_local` in UTC.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = split_time(t);
    let month = MONTHS[usize::try_from(m.saturating_sub(1)).unwrap_or(0).min(11)];
    format!("{d:02}/{month}/{y}:{hh:02}:{mm:02}:{ss:02} +0000")
}

/// `2000-10-10T13:55:36.123Z`.
fn iso_time(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = split_time(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(971_186_136_123);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(iso_time(t), "2000-10-10T13:55:36.123Z");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            nginx_escape("GET /a\"b\\c\u{7f} HTTP/1.1"),
            "GET /a\\x22b\\x5Cc\\x7F HTTP/1.1"
        );
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
