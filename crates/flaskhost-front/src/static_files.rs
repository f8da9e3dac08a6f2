//! Static files, served like nginx `alias` without waking a worker.
//!
//! Why not tower-http's `ServeDir`: it has no ETag, no symlink policy, no dotfile rule and no
//! in-memory cache, and its path handling cannot report a refused path separately from a
//! missing one. What is done here:
//!
//! - **Paths**: the part of the URL after the mount is split on `/` and each segment
//!   percent-decoded on its own. A segment that is `.` or `..`, or that decodes to something
//!   holding `/`, `\` or NUL, is refused with 400; a backslash anywhere is 400; a segment
//!   starting with `.` is 404 unless the mount allows dotfiles. The file is then resolved with
//!   `canonicalize` and, by the mount's symlink policy, must stay under the mount's directory
//!   (`inside`), may be anywhere (`follow`), or must not involve a link at all (`never`).
//!   Directories are never listed (404).
//! - **Caching by clients**: `ETag` (mtime and size) and `Last-Modified`, answered with 304
//!   for `If-None-Match` / `If-Modified-Since`; `Cache-Control` and `Expires` from the mount.
//! - **Ranges**: one byte range (206), `If-Range`, 416 when unsatisfiable; several ranges get
//!   the whole file (200), which RFC 9110 allows.
//! - **Precompressed siblings**: `file.br`, `file.zst`, `file.gz` by Accept-Encoding, with
//!   `Vary: Accept-Encoding` (not for range requests, so ranges count the file's own bytes).
//! - **Memory**: files up to a size are kept in memory, keyed by path and checked against the
//!   file's size, mtime and inode on every request, so a changed file is re-read at once.
//!   A URL whose last lookup ended in memory is answered on the runtime thread from what that
//!   lookup found (headers included), after one `stat` per path it depended on ([`Fresh`]),
//!   or without it when `static-cache-valid` says the last check is recent enough.
//!   Larger files are streamed in 256 KiB reads.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use flaskhost_config::{StaticMount, SymlinkPolicy};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body::Frame;
use thiserror::Error;

use crate::access_log::SkipAccessLog;
use crate::headers::ResponseHeaders;
use crate::zerocopy;

/// Bytes read from a streamed file per body frame.
const READ_CHUNK: u64 = 256 * 1024;

#[derive(Debug, Error)]
#[error("static mount {url}: {path}: {source}")]
pub struct StaticError {
    pub url: String,
    pub path: String,
    #[source]
    pub source: io::Error,
}

/// What a mount serves.
#[derive(Debug)]
enum Target {
    /// A directory, canonical: URLs under the mount map to files under it.
    Dir(PathBuf),
    /// One file, as configured (re-resolved on every request, so replacing it works).
    File(PathBuf),
}

#[derive(Debug)]
struct Mount {
    /// Its place in [`StaticFiles::mounts`].
    index: usize,
    target: Target,
    cfg: StaticMount,
    /// `Cache-Control` built once from `expires` and `cache-control`.
    cache_control: Option<HeaderValue>,
    /// Files answered without leaving the runtime thread, keyed by the raw URL remainder,
    /// then by the encodings the client accepts (see [`Fresh`]).
    fresh: Mutex<FreshMap>,
}

type FreshMap = HashMap<Box<str>, Vec<(Accepted, Arc<Fresh>)>>;

/// Every static mount and the shared memory cache.
#[derive(Debug)]
pub struct StaticFiles {
    /// Longest URL first, so `/static/img` wins over `/static`.
    mounts: Vec<Mount>,
    cache: Mutex<Cache>,
    max_cached_file: u64,
    /// `static-cache-valid` in milliseconds: how long a fresh answer is trusted without
    /// `stat`ing its paths again (0: checked on every request).
    valid_ms: u64,
}

/// What a file's last full lookup (path checks, resolution, symlink policy, sibling choice,
/// read) found for one URL, and the stamps of the requested path and each candidate
/// sibling at that moment. A request for the same URL, accepting the same encodings, whose
/// own `stat`s of the same paths give the same stamps gets the same answer: the common case
/// costs one `statx` per candidate (and an `open` for a large file), no allocation and no
/// blocking-pool hop, while any change
/// on disk (content, a sibling appearing, a symlink retargeted) falls back to the full lookup.
/// The URL's path checks are a function of the URL and the mount alone, so they hold too.
#[derive(Debug)]
struct Fresh {
    /// The requested file, then the sibling for each accepted encoding, in order.
    paths: Box<[PathBuf]>,
    stamps: Box<[Option<Stamp>]>,
    facts: Facts,
    content: Kept,
    /// The headers of a 200 with the whole content, the edge's own included, as sent over
    /// http (`[0]`) and https (`[1]`, with HSTS): a full answer clones one instead of
    /// inserting a dozen headers one by one.
    full: FullHeaders,
    /// When the stamps were last found unchanged ([`coarse_millis`]); with
    /// `static-cache-valid`, a hit within that time skips the `stat`s.
    checked: AtomicU64,
}

/// [`Fresh::full`], and the header set it was built with: a request whose edge has another
/// set (not the case in one server, which has one) builds its headers the long way.
#[derive(Debug)]
struct FullHeaders {
    edge: Arc<ResponseHeaders>,
    maps: [HeaderMap; 2],
}

/// A coarse monotonic clock in milliseconds (`CLOCK_MONOTONIC_COARSE`: a vDSO read of the
/// last tick, no syscall), for `static-cache-valid`, whose useful values are seconds.
fn coarse_millis() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// What a fresh answer sends: bytes kept in memory, or a large file kept open (it is the
/// file the stamps describe: same device, inode, size and mtime). `mapped`: for a file of at
/// least [`zerocopy::MIN_LEN`], a mapping of all of it, for connections that send mapped
/// bodies with `sendfile` (a response is a slice of it: no syscall but the `sendfile`).
#[derive(Debug)]
enum Kept {
    Memory {
        bytes: Bytes,
        held: Option<Held>,
    },
    Disk(Held),
    /// A large file when [`HELD_MAX`] files are held already: opened again by its resolved
    /// path on each request (no path checks, no blocking-pool hop) and checked by stamp.
    DiskPath(PathBuf),
}

/// A file held open (and mapped, when large enough) by a fresh answer. At most [`HELD_MAX`]
/// at a time in the process, so the static cache never takes the descriptors connections
/// need (a mapping holds its file open too).
#[derive(Debug)]
struct Held {
    file: Arc<std::fs::File>,
    mapped: Option<Bytes>,
}

/// How many files fresh answers may hold open at once (nginx's `open_file_cache max=`).
const HELD_MAX: usize = 256;
static HELD: AtomicUsize = AtomicUsize::new(0);

impl Held {
    /// Holds `file` (mapping it when it is large enough), unless [`HELD_MAX`] are held.
    fn new(file: Arc<std::fs::File>, len: u64) -> Option<Held> {
        if HELD.fetch_add(1, Ordering::Relaxed) >= HELD_MAX {
            HELD.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let mapped = map_whole(&file, len);
        Some(Held { file, mapped })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `path` opened, if it is still the regular file with `stamp` (else the full lookup runs).
fn open_same(path: &Path, stamp: Stamp) -> Option<std::fs::File> {
    let f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    (meta.is_file() && Stamp::of(&meta) == stamp).then_some(f)
}

/// All of `file` mapped for `sendfile`, when it is large enough to be sent that way.
fn map_whole(file: &Arc<std::fs::File>, len: u64) -> Option<Bytes> {
    if len < zerocopy::MIN_LEN {
        return None;
    }
    zerocopy::map(file.clone(), 0, len)
        .inspect_err(|e| tracing::debug!("static file not mapped: {e}"))
        .ok()
}

/// A file version's response headers, built once when it is looked up (on the blocking pool)
/// and reused for as long as it stays fresh.
#[derive(Debug, Clone)]
struct Facts {
    content_type: HeaderValue,
    etag: HeaderValue,
    last_modified: HeaderValue,
    /// The length of the whole content, for a response that sends all of it.
    content_length: HeaderValue,
    encoding: Option<Encoding>,
    stamp: Stamp,
}

impl Facts {
    /// `mime_path` is the file the type is guessed from (not its `.gz` sibling); `len` the
    /// length of what is sent (the bytes read, for a file served from memory).
    fn of(mime_path: &Path, encoding: Option<Encoding>, stamp: Stamp, len: u64) -> Facts {
        let mime = mime_guess::from_path(mime_path)
            .first_raw()
            .unwrap_or("application/octet-stream");
        let last_modified = httpdate::fmt_http_date(stamp.mtime);
        Facts {
            content_type: HeaderValue::from_static(mime),
            // Both are built from ASCII digits, letters and punctuation.
            etag: HeaderValue::from_str(&stamp.etag(encoding))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
            last_modified: HeaderValue::from_str(&last_modified)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            content_length: HeaderValue::from(len),
            encoding,
            stamp,
        }
    }
}

/// Entries kept in a mount's fresh map before it is cleared (a bound, not a tuning knob).
const FRESH_MAX: usize = 4096;

/// A mount that matched a request path, and the path's remainder.
pub(crate) struct Hit<'a> {
    mount: &'a Mount,
    rest: &'a str,
}

impl StaticFiles {
    /// Checks every mount's path now, so a typo fails start-up instead of every request.
    ///
    /// # Errors
    ///
    /// A mount whose path does not exist, or is neither a file nor a directory.
    pub fn open(
        mounts: &[StaticMount],
        cache_size: u64,
        max_cached_file: u64,
        valid: Duration,
    ) -> Result<StaticFiles, StaticError> {
        let mut out = Vec::with_capacity(mounts.len());
        for m in mounts {
            let err = |source| StaticError {
                url: m.url.clone(),
                path: m.path.display().to_string(),
                source,
            };
            let meta = std::fs::metadata(&m.path).map_err(err)?;
            let target = if meta.is_dir() {
                Target::Dir(std::fs::canonicalize(&m.path).map_err(err)?)
            } else if meta.is_file() {
                Target::File(m.path.clone())
            } else {
                return Err(err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file or a directory",
                )));
            };
            let mut parts = Vec::new();
            if let Some(e) = m.expires {
                parts.push(format!("max-age={}", e.as_secs()));
            }
            if let Some(cc) = &m.cache_control {
                parts.push(cc.clone());
            }
            let cache_control = if parts.is_empty() {
                None
            } else {
                // Validated by the config crate (printable ASCII).
                HeaderValue::from_str(&parts.join(", ")).ok()
            };
            out.push(Mount {
                index: 0,
                target,
                cfg: m.clone(),
                cache_control,
                fresh: Mutex::new(HashMap::new()),
            });
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.cfg.url.len()));
        for (i, m) in out.iter_mut().enumerate() {
            m.index = i;
        }
        Ok(StaticFiles {
            mounts: out,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                total: 0,
                capacity: cache_size,
            }),
            max_cached_file: if cache_size == 0 {
                0
            } else {
                max_cached_file.min(cache_size)
            },
            valid_ms: u64::try_from(valid.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The mount serving `path` (the raw, still percent-encoded request path), if any.
    pub(crate) fn lookup<'a>(&'a self, path: &'a str) -> Option<Hit<'a>> {
        self.mounts.iter().find_map(|mount| {
            let url = mount.cfg.url.as_str();
            let rest = path.strip_prefix(url)?;
            match mount.target {
                Target::File(_) if rest.is_empty() => Some(Hit { mount, rest }),
                Target::Dir(_) if rest.is_empty() || rest.starts_with('/') => {
                    Some(Hit { mount, rest })
                }
                _ => None,
            }
        })
    }

    /// Answers a request for a static file. `zero_copy`: the response goes out on a
    /// connection that sends mapped bodies with `sendfile` (plain TCP, HTTP/1; see
    /// [`crate::zerocopy`]).
    ///
    /// `edge` is the header set every response gets (the caller does not add it again):
    /// a full answer from a fresh lookup has it built in, every other gets it applied here.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        hit: Hit<'_>,
        req: Asked<'_>,
        edge: &Arc<ResponseHeaders>,
        zero_copy: bool,
    ) -> Response {
        let (mut resp, complete) = self.respond(&hit, req, edge, zero_copy).await;
        if !complete {
            edge.apply(resp.headers_mut(), req.https);
        }
        if !hit.mount.cfg.access_log {
            resp.extensions_mut().insert(SkipAccessLog);
        }
        resp
    }

    /// The response, and whether it already has the edge's headers.
    async fn respond(
        self: &Arc<Self>,
        hit: &Hit<'_>,
        req: Asked<'_>,
        edge: &Arc<ResponseHeaders>,
        zero_copy: bool,
    ) -> (Response, bool) {
        let (method, headers) = (req.method, req.headers);
        let mount = hit.mount;
        if method != Method::GET && method != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return (r, false);
        }
        let range_asked = headers.contains_key(header::RANGE) && method == Method::GET;
        let accepted = if mount.cfg.precompressed && !range_asked {
            accepted_encodings(headers)
        } else {
            Accepted::NONE
        };
        // The fast path: same URL, same stamps as the last full lookup, same answer.
        if let Some(fresh) = mount.fresh_hit(hit.rest, accepted, self.valid_ms) {
            let content = match &fresh.content {
                Kept::Memory {
                    held:
                        Some(Held {
                            mapped: Some(m), ..
                        }),
                    ..
                }
                | Kept::Disk(Held {
                    mapped: Some(m), ..
                }) if zero_copy => Some(Content::Mapped(m.clone())),
                Kept::Memory { bytes, .. } => Some(Content::Memory(bytes.clone())),
                Kept::Disk(held) => Some(Content::File(held.file.clone())),
                Kept::DiskPath(path) => {
                    open_same(path, fresh.facts.stamp).map(|f| Content::File(Arc::new(f)))
                }
            };
            if let Some(content) = content {
                let full = Arc::ptr_eq(&fresh.full.edge, edge)
                    .then(|| &fresh.full.maps[usize::from(req.https)]);
                return self.build(mount, &fresh.facts, full, content, req, zero_copy);
            }
        }
        let (file, root) = match &mount.target {
            Target::File(path) => (path.clone(), None),
            Target::Dir(root) => match relative_path(hit.rest, mount.cfg.dotfiles) {
                Ok(rel) => (root.join(rel), Some(root.clone())),
                Err(status) => return (plain(status), false),
            },
        };
        let paths = candidate_paths(&file, &accepted);
        let stamps: Box<[Option<Stamp>]> = paths.iter().map(|p| stamp_of(p)).collect();
        let (policy, index, rest) = (mount.cfg.symlinks, mount.index, Box::<str>::from(hit.rest));
        let (this, edge) = (self.clone(), edge.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let r = this.open_file(&file, root.as_deref(), policy, &accepted);
            if let Ok(o) = &r {
                this.mounts[index].remember(rest, accepted, paths, stamps, o, edge);
            }
            r
        })
        .await;
        match opened {
            Ok(Ok(o)) => self.build(mount, &o.facts, None, o.content, req, zero_copy),
            Ok(Err(status)) => (plain(status), false),
            Err(e) => {
                tracing::error!("static file task failed: {e}");
                (plain(StatusCode::INTERNAL_SERVER_ERROR), false)
            }
        }
    }

    /// Resolves, checks and opens the file (blocking). Small files come back read (from the
    /// cache when unchanged); large ones as an open handle.
    fn open_file(
        &self,
        file: &Path,
        root: Option<&Path>,
        policy: SymlinkPolicy,
        encodings: &[Encoding],
    ) -> Result<Opened, StatusCode> {
        let real = resolve(file, root, policy)?;
        // The precompressed sibling of the file, if the client takes one and it exists.
        let mut chosen = (real.clone(), None);
        for enc in encodings {
            let mut sib = file.as_os_str().to_owned();
            sib.push(enc.suffix());
            if let Ok(sib_real) = resolve(Path::new(&sib), root, policy) {
                chosen = (sib_real, Some(*enc));
                break;
            }
        }
        let (path, encoding) = chosen;
        let f = std::fs::File::open(&path).map_err(|e| io_status(&e, &path))?;
        let meta = f.metadata().map_err(|e| io_status(&e, &path))?;
        if !meta.is_file() {
            return Err(StatusCode::NOT_FOUND);
        }
        let stamp = Stamp::of(&meta);
        let (content, len) = if stamp.len <= self.max_cached_file {
            let bytes = self.read_cached(&path, f, stamp)?;
            let len = bytes.len() as u64;
            (Content::Memory(bytes), len)
        } else {
            (Content::File(Arc::new(f)), stamp.len)
        };
        Ok(Opened {
            facts: Facts::of(&real, encoding, stamp, len),
            content,
            path,
        })
    }

    fn read_cached(
        &self,
        path: &Path,
        mut f: std::fs::File,
        stamp: Stamp,
    ) -> Result<Bytes, StatusCode> {
        if let Some(bytes) = self.cache_lock().get(path, stamp) {
            return Ok(bytes);
        }
        let mut buf = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
        io::Read::read_to_end(&mut f, &mut buf).map_err(|e| io_status(&e, path))?;
        let bytes = Bytes::from(buf);
        // A file that changed while it was read is served as read but not cached.
        if bytes.len() as u64 == stamp.len {
            self.cache_lock()
                .insert(path.to_owned(), bytes.clone(), stamp);
        }
        Ok(bytes)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer from a file's facts and content. `full`: the prebuilt headers of a 200
    /// with the whole content, edge headers included, when the caller has them.
    fn build(
        &self,
        mount: &Mount,
        facts: &Facts,
        full: Option<&HeaderMap>,
        content: Content,
        asked: Asked<'_>,
        zero_copy: bool,
    ) -> (Response, bool) {
        let (method, req) = (asked.method, asked.headers);
        let stamp = facts.stamp;
        let len = match &content {
            Content::Memory(b) | Content::Mapped(b) => b.len() as u64,
            Content::File(_) => stamp.len,
        };
        let etag = facts.etag.to_str().unwrap_or_default();
        // The common answer: the whole file, unconditionally.
        if let Some(full) = full
            && !req.contains_key(header::RANGE)
            && !not_modified(req, etag, stamp.mtime)
        {
            let mut h = full.clone();
            if let Some(v) = expires_at(mount) {
                h.insert(header::EXPIRES, v);
            }
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Self::body_of(content, 0, len, zero_copy)
            };
            return (with_headers(StatusCode::OK, h, body), true);
        }
        let mut h = content_headers(mount, facts);
        if let Some(v) = expires_at(mount) {
            h.insert(header::EXPIRES, v);
        }

        if not_modified(req, etag, stamp.mtime) {
            return (
                with_headers(StatusCode::NOT_MODIFIED, h, Body::empty()),
                false,
            );
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

        let mut status = StatusCode::OK;
        let (mut start, mut end) = (0, len);
        if method == Method::GET && if_range_holds(req, etag, stamp.mtime) {
            match req
                .get(header::RANGE)
                .map(|r| parse_range(r.as_bytes(), len))
            {
                Some(RangeAsk::One(a, b)) => {
                    status = StatusCode::PARTIAL_CONTENT;
                    (start, end) = (a, b + 1);
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                        h.insert(header::CONTENT_RANGE, v);
                    }
                }
                Some(RangeAsk::Unsatisfiable) => {
                    let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE);
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return (r, false);
                }
                Some(RangeAsk::Ignore) | None => {}
            }
        }
        let length = if start == 0 && end == len {
            facts.content_length.clone()
        } else {
            HeaderValue::from(end - start)
        };
        h.insert(header::CONTENT_LENGTH, length);
        if method == Method::HEAD {
            return (with_headers(status, h, Body::empty()), false);
        }
        let body = Self::body_of(content, start, end, zero_copy);
        (with_headers(status, h, body), false)
    }

    /// The bytes `start..end` of the content as a body.
    fn body_of(content: Content, start: u64, end: u64, zero_copy: bool) -> Body {
        match content {
            Content::Memory(bytes) => {
                let (s, e) = (
                    usize::try_from(start).unwrap_or(0),
                    usize::try_from(end).unwrap_or(0),
                );
                if s == 0 && e == bytes.len() {
                    Body::from(bytes)
                } else {
                    Body::from(bytes.slice(s..e))
                }
            }
            Content::Mapped(bytes) => Body::from(
                bytes.slice(usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)),
            ),
            Content::File(f) => {
                let mapped = (zero_copy && end - start >= zerocopy::MIN_LEN)
                    .then(|| zerocopy::map(f.clone(), start, end - start));
                match mapped {
                    Some(Ok(bytes)) => Body::from(bytes),
                    Some(Err(e)) => {
                        tracing::debug!("static file not mapped, read instead: {e}");
                        Body::new(FileBody::new(f, start, end - start))
                    }
                    None => Body::new(FileBody::new(f, start, end - start)),
                }
            }
        }
    }
}

/// What a static request asked: the method, its headers, and whether it came over https
/// (for HSTS among the edge's headers).
#[derive(Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) method: &'a Method,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) https: bool,
}

/// The headers that describe a file version, whatever part of it is sent: type, validators,
/// the mount's caching and the content coding. With room for the rest and the edge's own.
fn content_headers(mount: &Mount, facts: &Facts) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    h.insert(header::CONTENT_TYPE, facts.content_type.clone());
    h.insert(header::ETAG, facts.etag.clone());
    h.insert(header::LAST_MODIFIED, facts.last_modified.clone());
    if let Some(cc) = &mount.cache_control {
        h.insert(header::CACHE_CONTROL, cc.clone());
    }
    if mount.cfg.precompressed {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(enc) = facts.encoding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.name()),
        );
    }
    h
}

/// `Expires` for a response sent now, when the mount sets one.
fn expires_at(mount: &Mount) -> Option<HeaderValue> {
    let at = SystemTime::now() + mount.cfg.expires?;
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
}

/// The headers of a 200 with all of a file version, over http and over https.
fn full_headers(mount: &Mount, facts: &Facts, edge: Arc<ResponseHeaders>) -> FullHeaders {
    let mut h = content_headers(mount, facts);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, facts.content_length.clone());
    let mut secure = h.clone();
    edge.apply(&mut h, false);
    edge.apply(&mut secure, true);
    FullHeaders {
        edge,
        maps: [h, secure],
    }
}

/// The identity of a file's content as the cache and the validators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: SystemTime,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// A strong ETag from the mtime (to the nanosecond) and the size, as nginx builds it,
    /// marked with the content coding for a precompressed sibling.
    fn etag(&self, encoding: Option<Encoding>) -> String {
        let since = self
            .mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let suffix = encoding.map_or("", Encoding::etag_suffix);
        format!(
            "\"{:x}.{:x}-{:x}{suffix}\"",
            since.as_secs(),
            since.subsec_nanos(),
            self.len
        )
    }
}

enum Content {
    Memory(Bytes),
    /// A whole-file mapping, only for a connection that sends it with `sendfile`.
    Mapped(Bytes),
    File(Arc<std::fs::File>),
}

struct Opened {
    facts: Facts,
    content: Content,
    /// The file that was opened (resolved; the sibling when one was chosen).
    path: PathBuf,
}

#[derive(Debug)]
struct Cache {
    entries: HashMap<PathBuf, (Bytes, Stamp)>,
    total: u64,
    capacity: u64,
}

impl Cache {
    fn get(&self, path: &Path, stamp: Stamp) -> Option<Bytes> {
        self.entries
            .get(path)
            .filter(|(_, s)| *s == stamp)
            .map(|(b, _)| b.clone())
    }

    fn insert(&mut self, path: PathBuf, bytes: Bytes, stamp: Stamp) {
        let len = bytes.len() as u64;
        if let Some((old, _)) = self.entries.remove(&path) {
            self.total -= old.len() as u64;
        }
        // Evicts arbitrary entries until the new one fits: simple, and a hot file evicted
        // by chance is back on its next request.
        while self.total + len > self.capacity {
            let Some(victim) = self.entries.keys().next().cloned() else {
                break;
            };
            if let Some((b, _)) = self.entries.remove(&victim) {
                self.total -= b.len() as u64;
            }
        }
        if self.total + len <= self.capacity {
            self.total += len;
            self.entries.insert(path, (bytes, stamp));
        }
    }
}

/// The requested file, then its precompressed sibling for each accepted encoding.
fn candidate_paths(file: &Path, accepted: &[Encoding]) -> Box<[PathBuf]> {
    let mut out = Vec::with_capacity(1 + accepted.len());
    out.push(file.to_owned());
    for enc in accepted {
        let mut sib = file.as_os_str().to_owned();
        sib.push(enc.suffix());
        out.push(PathBuf::from(sib));
    }
    out.into_boxed_slice()
}

/// The stamp of a path (following symlinks), `None` where there is no regular file.
fn stamp_of(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| Stamp::of(&m))
}

impl Mount {
    fn fresh_lock(&self) -> std::sync::MutexGuard<'_, FreshMap> {
        self.fresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last full lookup's answer for this URL and these encodings, if every path it
    /// depended on still has the stamp it had then.
    ///
    /// `valid_ms` (`static-cache-valid`): a hit found unchanged less than this long ago is
    /// trusted without the `stat`s.
    fn fresh_hit(&self, rest: &str, accepted: Accepted, valid_ms: u64) -> Option<Arc<Fresh>> {
        let fresh = {
            let map = self.fresh_lock();
            let (_, f) = map.get(rest)?.iter().find(|(a, _)| *a == accepted)?;
            f.clone()
        };
        let now = if valid_ms > 0 {
            let now = coarse_millis();
            if now.saturating_sub(fresh.checked.load(Ordering::Relaxed)) < valid_ms {
                return Some(fresh);
            }
            Some(now)
        } else {
            None
        };
        // The lock is not held across the `stat`s.
        let same = fresh
            .paths
            .iter()
            .zip(fresh.stamps.iter())
            .all(|(p, s)| stamp_of(p) == *s);
        if same && let Some(now) = now {
            fresh.checked.store(now, Ordering::Relaxed);
        }
        same.then_some(fresh)
    }

    /// Records a full lookup that found a file, with the stamps taken before it.
    fn remember(
        &self,
        rest: Box<str>,
        accepted: Accepted,
        paths: Box<[PathBuf]>,
        stamps: Box<[Option<Stamp>]>,
        o: &Opened,
        edge: Arc<ResponseHeaders>,
    ) {
        // The file kept open and mapped is the one read or opened, checked again by stamp
        // (an answer read from the memory cache has no handle of its own).
        // A file that is not there never has a fresh entry: its lookup gives the error.
        // Stamps taken before the lookup that no longer describe what was read would only
        // cause a miss next time; skip the entry when the main file's stamp already differs.
        let Some(first) = stamps.first().copied().flatten() else {
            return;
        };
        if o.facts.encoding.is_none() && first != o.facts.stamp {
            return;
        }
        let len = o.facts.stamp.len;
        let content = match &o.content {
            Content::Memory(bytes) => Kept::Memory {
                bytes: bytes.clone(),
                // Only when the bytes read are the whole file the stamp describes: the
                // mapping then holds the same bytes and the same length.
                held: (len >= zerocopy::MIN_LEN && bytes.len() as u64 == len)
                    .then(|| open_same(&o.path, o.facts.stamp))
                    .flatten()
                    .and_then(|f| Held::new(Arc::new(f), len)),
            },
            Content::File(file) => match Held::new(file.clone(), len) {
                Some(held) => Kept::Disk(held),
                None => Kept::DiskPath(o.path.clone()),
            },
            Content::Mapped(_) => return,
        };
        let entry = Arc::new(Fresh {
            paths,
            stamps,
            full: full_headers(self, &o.facts, edge),
            facts: o.facts.clone(),
            content,
            // The stamps were taken just before the lookup.
            checked: AtomicU64::new(coarse_millis()),
        });
        let mut map = self.fresh_lock();
        if map.len() >= FRESH_MAX {
            map.clear();
        }
        let list = map.entry(rest).or_default();
        match list.iter_mut().find(|(a, _)| *a == accepted) {
            Some((_, old)) => *old = entry,
            None => list.push((accepted, entry)),
        }
    }
}

/// Resolves `file` by the symlink policy. `root` is the mount's canonical directory (`None`
/// for a single-file mount, which serves exactly the configured file).
fn resolve(file: &Path, root: Option<&Path>, policy: SymlinkPolicy) -> Result<PathBuf, StatusCode> {
    let real = std::fs::canonicalize(file).map_err(|e| io_status(&e, file))?;
    if let Some(root) = root {
        let allowed = match policy {
            SymlinkPolicy::Follow => true,
            SymlinkPolicy::Inside => real.starts_with(root),
            // No component was a link: resolving changed nothing.
            SymlinkPolicy::Never => real == file,
        };
        if !allowed {
            tracing::debug!(path = %file.display(), "refused: a symbolic link leads outside the mount or links are off");
            return Err(StatusCode::NOT_FOUND);
        }
    }
    Ok(real)
}

fn io_status(e: &io::Error, path: &Path) -> StatusCode {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            StatusCode::NOT_FOUND
        }
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => {
            tracing::warn!(path = %path.display(), "static file: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The file path under the mount for the URL remainder `rest` (raw, percent-encoded, starting
/// with `/` or empty).
fn relative_path(rest: &str, dotfiles: bool) -> Result<PathBuf, StatusCode> {
    if rest.contains('\\') {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut rel = PathBuf::new();
    for raw in rest.split('/') {
        // Empty segments (`//`) are merged, as nginx's merge_slashes does.
        if raw.is_empty() {
            continue;
        }
        let seg = percent_decode(raw).ok_or(StatusCode::BAD_REQUEST)?;
        if seg.is_empty()
            || seg == b"."
            || seg == b".."
            || seg.iter().any(|b| matches!(b, b'/' | b'\\' | 0))
        {
            return Err(StatusCode::BAD_REQUEST);
        }
        if seg[0] == b'.' && !dotfiles {
            return Err(StatusCode::NOT_FOUND);
        }
        // Unix file names are bytes, not necessarily UTF-8.
        rel.push(std::ffi::OsStr::from_bytes(&seg));
    }
    // The mount's directory itself, or a path ending in `/` (a directory, or a file named
    // like one, which nginx also refuses): there is no listing.
    if rel.as_os_str().is_empty() || rest.ends_with('/') {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(rel)
}

/// Strict percent-decoding: `%` must be followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A content coding of a precompressed sibling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }

    fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Br => "-br",
            Encoding::Zstd => "-zstd",
            Encoding::Gzip => "-gzip",
        }
    }
}

/// The precompressed codings the client accepts, best first: by the client's q-value, then
/// by the server's order (br, zstd, gzip: smallest first).
fn accepted_encodings(headers: &HeaderMap) -> Accepted {
    let q_of = |name: &str| -> Option<u16> {
        let mut star = None;
        let mut found = None;
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let q = parts
                    .find_map(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .or_else(|| p.trim().strip_prefix("Q="))
                    })
                    .map_or(Some(1000), parse_q);
                let Some(q) = q else { continue };
                if coding.eq_ignore_ascii_case(name)
                    || (name == "gzip" && coding.eq_ignore_ascii_case("x-gzip"))
                {
                    found = Some(q);
                } else if coding == "*" {
                    star = Some(q);
                }
            }
        }
        found.or(star)
    };
    if headers.get(header::ACCEPT_ENCODING).is_none() {
        return Accepted::NONE;
    }
    let mut found = [(Encoding::Br, 0u16); 3];
    let mut n = 0;
    for e in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
        if let Some(q) = q_of(e.name()).filter(|q| *q > 0) {
            found[n] = (e, q);
            n += 1;
        }
    }
    // Stable: equal q-values keep the server's order.
    found[..n].sort_by_key(|(_, q)| std::cmp::Reverse(*q));
    let mut out = Accepted::NONE;
    for (e, _) in &found[..n] {
        out.items[usize::from(out.len)] = *e;
        out.len += 1;
    }
    out
}

/// The precompressed codings a client accepts, best first: at most the three there are, in
/// a value (no allocation per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    /// The first `len` are the codings; the rest stay `Br` so equal lists compare equal.
    items: [Encoding; 3],
    len: u8,
}

impl Accepted {
    const NONE: Accepted = Accepted {
        items: [Encoding::Br; 3],
        len: 0,
    };
}

impl std::ops::Deref for Accepted {
    type Target = [Encoding];

    fn deref(&self) -> &[Encoding] {
        &self.items[..usize::from(self.len)]
    }
}

/// A q-value as thousandths: `1`, `0.5`, `0.001`.
fn parse_q(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, d) in frac.bytes().enumerate() {
        thousandths += u16::from(d - b'0') * [100, 10, 1][i];
    }
    let q = whole * 1000 + thousandths;
    (q <= 1000).then_some(q)
}

/// Whether the client's cached copy is current (RFC 9110 §13.2.2: If-None-Match first).
fn not_modified(req: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH) {
        let Ok(text) = inm.to_str() else { return false };
        return text.trim() == "*" || text.split(',').any(|t| weak_eq(t.trim(), etag));
    }
    let Some(ims) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Ok(since) = httpdate::parse_http_date(ims) else {
        return false;
    };
    secs(mtime) <= secs(since)
}

/// Whether a Range request may be honoured: no If-Range, or one that still matches.
fn if_range_holds(req: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    let Some(v) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        // If-Range needs a strong match (RFC 9110 §13.1.5).
        return v == etag;
    }
    httpdate::parse_http_date(v).is_ok_and(|d| secs(d) == secs(mtime))
}

fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// First and last byte, inclusive.
    One(u64, u64),
    Unsatisfiable,
    /// Not a single byte range we serve: send the whole file.
    Ignore,
}

/// Parses a Range header against a representation of `len` bytes (RFC 9110 §14.1.2).
fn parse_range(value: &[u8], len: u64) -> RangeAsk {
    let Ok(text) = std::str::from_utf8(value) else {
        return RangeAsk::Ignore;
    };
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last `n` bytes.
        let Some(n) = num(b) else {
            return RangeAsk::Ignore;
        };
        if n == 0 || len == 0 {
            return RangeAsk::Unsatisfiable;
        }
        return RangeAsk::One(len.saturating_sub(n), len - 1);
    }
    let Some(first) = num(a) else {
        return RangeAsk::Ignore;
    };
    let last = if b.is_empty() {
        None
    } else {
        match num(b) {
            Some(last) if last >= first => Some(last),
            _ => return RangeAsk::Ignore,
        }
    };
    if first >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::One(first, last.map_or(len - 1, |l| l.min(len - 1)))
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A short text response for a refused or failed static request.
fn plain(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut r = Response::new(Body::from(format!("{} {reason}\n", status.as_u16())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A byte range of a file, read in [`READ_CHUNK`] pieces as the client takes them. Each piece
/// is one `pread` on the blocking pool (a page-cache miss must not stall the runtime), straight
/// into the buffer that goes to the client: no seek, no zeroing, no intermediate copy.
struct FileBody {
    state: ReadState,
    /// Where the next piece starts.
    offset: u64,
    left: u64,
}

enum ReadState {
    Idle(Arc<std::fs::File>),
    Reading(
        tokio::task::JoinHandle<io::Result<BytesMut>>,
        Arc<std::fs::File>,
    ),
    Done,
}

impl FileBody {
    fn new(file: Arc<std::fs::File>, start: u64, len: u64) -> FileBody {
        FileBody {
            state: ReadState::Idle(file),
            offset: start,
            left: len,
        }
    }
}

/// Reads up to `want` bytes at `offset` into a fresh buffer (short only at the end of the file).
fn pread_piece(file: &std::fs::File, offset: u64, want: usize) -> io::Result<BytesMut> {
    use std::os::fd::AsRawFd;
    let mut buf = BytesMut::with_capacity(want);
    let spare = buf.spare_capacity_mut().as_mut_ptr();
    let mut filled = 0usize;
    while filled < want {
        let at = libc::off_t::try_from(offset + filled as u64)
            .map_err(|_| io::Error::other("file offset out of range"))?;
        // SAFETY: `spare` points at the buffer's spare capacity of at least `want` bytes;
        // pread writes at most `want - filled` bytes starting `filled` bytes into it, and no
        // reference to uninitialised memory is made.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.add(filled).cast(),
                want - filled,
                at,
            )
        };
        match n {
            0 => break,
            n if n > 0 => filled += n.unsigned_abs(),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: pread initialised the first `filled` bytes of the spare capacity.
    unsafe { buf.set_len(filled) };
    Ok(buf)
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Idle(file) => {
                    if this.left == 0 {
                        this.state = ReadState::Done;
                        return Poll::Ready(None);
                    }
                    let want = usize::try_from(this.left.min(READ_CHUNK)).unwrap_or(64 * 1024);
                    let (f, offset) = (file.clone(), this.offset);
                    let task = tokio::task::spawn_blocking(move || pread_piece(&f, offset, want));
                    this.state = ReadState::Reading(task, file.clone());
                }
                ReadState::Reading(task, file) => {
                    let piece = match std::task::ready!(Pin::new(task).poll(cx)) {
                        Ok(r) => r?,
                        Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                    };
                    if piece.is_empty() {
                        // The file shrank after its size was sent; the response cannot be
                        // completed.
                        this.state = ReadState::Done;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while it was sent",
                        ))));
                    }
                    let n = piece.len() as u64;
                    this.offset += n;
                    this.left = this.left.saturating_sub(n);
                    this.state = ReadState::Idle(file.clone());
                    return Poll::Ready(Some(Ok(Frame::data(piece.freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_mount() {
        assert_eq!(
            relative_path("/css/site.css", false),
            Ok(PathBuf::from("css/site.css"))
        );
        assert_eq!(
            relative_path("//css///a%20b.css", false),
            Ok(PathBuf::from("css/a b.css"))
        );
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/x",
            "/a/%2E%2E/b",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%zz",
            "/a%2",
            "/./a",
        ] {
            assert_eq!(
                relative_path(bad, false),
                Err(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
        assert_eq!(relative_path("/.env", false), Err(StatusCode::NOT_FOUND));
        assert_eq!(
            relative_path("/a/.git/config", false),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            relative_path("/.well-known/x", true),
            Ok(PathBuf::from(".well-known/x"))
        );
        assert_eq!(relative_path("", false), Err(StatusCode::NOT_FOUND));
        assert_eq!(relative_path("/", false), Err(StatusCode::NOT_FOUND));
        assert_eq!(
            relative_path("/css/site.css/", false),
            Err(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), RangeAsk::One(0, 9));
        assert_eq!(parse_range(b"bytes=90-", 100), RangeAsk::One(90, 99));
        assert_eq!(parse_range(b"bytes=90-200", 100), RangeAsk::One(90, 99));
        assert_eq!(parse_range(b"bytes=-10", 100), RangeAsk::One(90, 99));
        assert_eq!(parse_range(b"bytes=-200", 100), RangeAsk::One(0, 99));
        assert_eq!(parse_range(b"bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=5-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range(b"bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range(b"items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range(b"bytes=a-b", 100), RangeAsk::Ignore);
    }

    #[test]
    fn cache_checks_the_stamp_and_stays_within_capacity() {
        let stamp = |len, secs| Stamp {
            len,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            ino: 1,
            dev: 1,
        };
        let mut c = Cache {
            entries: HashMap::new(),
            total: 0,
            capacity: 10,
        };
        c.insert("a".into(), Bytes::from_static(b"aaaa"), stamp(4, 1));
        assert_eq!(
            c.get(Path::new("a"), stamp(4, 1)).as_deref(),
            Some(&b"aaaa"[..])
        );
        // A changed file (another mtime) is a miss, not stale bytes.
        assert!(c.get(Path::new("a"), stamp(4, 2)).is_none());
        c.insert("b".into(), Bytes::from_static(b"bbbbbb"), stamp(6, 1));
        assert_eq!(c.total, 10);
        c.insert("c".into(), Bytes::from_static(b"ccc"), stamp(3, 1));
        assert!(c.total <= 10 && c.get(Path::new("c"), stamp(3, 1)).is_some());
        // Replacing an entry frees its old bytes first.
        c.insert("c".into(), Bytes::from_static(b"cc"), stamp(2, 2));
        assert_eq!(
            c.entries.values().map(|(b, _)| b.len() as u64).sum::<u64>(),
            c.total
        );
        // Larger than the whole cache: not kept.
        c.insert("d".into(), Bytes::from(vec![0; 11]), stamp(11, 1));
        assert!(c.get(Path::new("d"), stamp(11, 1)).is_none());
    }

    #[test]
    fn accept_encoding_order() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br;q=0.5, zstd;q=0"),
        );
        assert_eq!(*accepted_encodings(&h), [Encoding::Gzip, Encoding::Br]);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br, zstd"),
        );
        assert_eq!(
            *accepted_encodings(&h),
            [Encoding::Br, Encoding::Zstd, Encoding::Gzip]
        );
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("*;q=0.1, gzip;q=0"),
        );
        assert_eq!(*accepted_encodings(&h), [Encoding::Br, Encoding::Zstd]);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(accepted_encodings(&h).is_empty());
        assert!(accepted_encodings(&HeaderMap::new()).is_empty());
    }
}
