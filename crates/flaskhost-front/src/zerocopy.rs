//! Zero-copy sending of large static files on plain-TCP HTTP/1 connections (nginx's
//! `sendfile on`).
//!
//! hyper writes a response body with `writev` on the connection and has no way to send a file
//! region. So a large file's body is one [`Bytes`] that is a read-only shared *mapping* of the
//! file's byte range: real memory holding the file's bytes, registered here by address. The
//! connection's writer ([`crate::conn::Guarded`], on plain TCP only) checks the slices hyper
//! asks it to write; a slice inside a registered mapping is sent with `sendfile(2)` from the
//! file at the matching offset, and the mapping itself is never read: no page faults, no
//! copies in user space, the kernel sends from the page cache.
//!
//! **The invariant:** such a body is made only for a connection whose writer sends mappings
//! with `sendfile` (plain TCP, HTTP/1, no layer between that reads body bytes). Memory mapped
//! from a file that is truncated while mapped raises SIGBUS when read; `sendfile` instead
//! returns short, which ends that one response (the connection is closed, as when the streamed
//! path finds a file shrank). TLS and HTTP/2 connections keep the `pread` path.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;

/// Bodies at least this long go out by `sendfile` when the connection allows it; below it,
/// one `writev` of headers and bytes from memory costs less than a mapping and two calls.
pub(crate) const MIN_LEN: u64 = 64 * 1024;

/// The largest count one `sendfile` call is given (Linux sends at most this much per call).
const MAX_PER_CALL: usize = 0x7fff_f000;

/// A registered mapping: how long it is and what it maps (keyed by its start address).
struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Every live mapping by start address: one per large-file response in flight, plus one per
/// file the static handler keeps mapped. [`LOW`]..[`HIGH`] bounds every address ever
/// registered, so a write of anything else (most writes: heap buffers) skips the lock.
static REGIONS: Mutex<BTreeMap<usize, Region>> = Mutex::new(BTreeMap::new());
static LOW: AtomicUsize = AtomicUsize::new(usize::MAX);
static HIGH: AtomicUsize = AtomicUsize::new(0);

fn regions() -> std::sync::MutexGuard<'static, BTreeMap<usize, Region>> {
    REGIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The owner of a mapped body's memory: unmapped (and unregistered) when the last `Bytes`
/// pointing into it is dropped.
struct Mapping {
    base: *mut c_void,
    map_len: usize,
    data: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; nothing in it is mutated,
// so sharing or moving it between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `data..data + len` lies inside the live mapping `base..base + map_len`
        // (PROT_READ). See the module's invariant for when these bytes are read at all.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        regions().remove(&(self.data as usize));
        // SAFETY: `base`/`map_len` are exactly what mmap returned and was given; no `Bytes`
        // refers to the memory any more (this is the owner's drop).
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// `len` bytes of `file` from `offset`, as a body that a zero-copy writer sends with
/// `sendfile`. Only for connections that have one (see the module's invariant).
///
/// # Errors
///
/// `mmap` failing (e.g. the process's map count limit); the caller falls back to reading.
pub(crate) fn map(file: Arc<File>, offset: u64, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let page = page_size();
    let aligned = offset - offset % page;
    let skip = usize::try_from(offset - aligned).map_err(io::Error::other)?;
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let map_len = skip + len;
    let at = libc::off_t::try_from(aligned).map_err(io::Error::other)?;
    // SAFETY: a fresh read-only shared mapping of an open file; the kernel picks the address.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            at,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `skip < page <= map_len`, inside the mapping.
    let data = unsafe { base.cast::<u8>().add(skip) }.cast_const();
    let start = data as usize;
    regions().insert(start, Region { len, file, offset });
    LOW.fetch_min(start, Ordering::Relaxed);
    HIGH.fetch_max(start + len, Ordering::Relaxed);
    Ok(Bytes::from_owner(Mapping {
        base,
        map_len,
        data,
        len,
    }))
}

/// The file and the offset in it that `slice` (memory hyper asks to write) maps, if it lies
/// inside a registered mapping.
fn lookup(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    let addr = slice.as_ptr() as usize;
    let end = addr.checked_add(slice.len())?;
    if addr < LOW.load(Ordering::Relaxed) || end > HIGH.load(Ordering::Relaxed) {
        return None;
    }
    let r = regions();
    // The region starting at or before `addr`; mappings never overlap.
    let (&start, region) = r.range(..=addr).next_back()?;
    (end <= start + region.len)
        .then(|| (region.file.clone(), region.offset + (addr - start) as u64))
}

/// A connection's transport as the zero-copy writer sees it.
pub(crate) trait SendFile {
    /// Whether mapped bodies may be given to this connection (plain TCP only).
    const CAPABLE: bool = false;

    /// Sends up to `len` bytes of `file` from `offset` with `sendfile`; `Pending` until the
    /// socket is writable. Only called when [`SendFile::CAPABLE`].
    fn poll_sendfile(
        &mut self,
        _cx: &mut Context<'_>,
        _file: RawFd,
        _offset: u64,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::other("sendfile on a transport without it")))
    }

    /// Writes `bufs` (a response head) telling the kernel more follows at once (`MSG_MORE`),
    /// so the head and the start of the file leave in the same segments rather than the head
    /// alone (what nginx's `tcp_nopush` does around `sendfile`). Only called when
    /// [`SendFile::CAPABLE`].
    fn poll_write_more(
        &mut self,
        _cx: &mut Context<'_>,
        _bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::other("sendfile on a transport without it")))
    }
}

impl SendFile for tokio::net::TcpStream {
    const CAPABLE: bool = true;

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: RawFd,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        poll_writing(self, cx, |socket| sendfile_once(socket, file, offset, len))
    }

    fn poll_write_more(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_writing(self, cx, |socket| send_more(socket, bufs))
    }
}

/// Runs the write `op` on the socket when it is writable, again after each `WouldBlock`
/// (tokio clears the readiness it saw), until it writes or fails.
fn poll_writing(
    stream: &tokio::net::TcpStream,
    cx: &mut Context<'_>,
    mut op: impl FnMut(RawFd) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    let socket = stream.as_raw_fd();
    loop {
        std::task::ready!(stream.poll_write_ready(cx))?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || op(socket)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
    }
}

fn send_more(socket: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no name, no control data); `IoSlice` is ABI-compatible
    // with `iovec` on Unix, and the slices outlive the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
        msg.msg_iovlen = bufs.len().min(1024) as _;
        libc::sendmsg(socket, &raw const msg, libc::MSG_MORE | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n.unsigned_abs())
    }
}

impl SendFile for tokio::net::UnixStream {}
impl<S> SendFile for tokio_rustls::server::TlsStream<S> {}

fn sendfile_once(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the call (the socket by its stream, the file by
    // the mapping's registration, kept alive by the `Bytes` hyper is writing); `off` is a
    // valid out-parameter.
    let n = unsafe { libc::sendfile(socket, file, &raw mut off, len.min(MAX_PER_CALL)) };
    match n {
        // The file ended before the length that was promised: the response cannot be
        // completed, and the connection must not carry on with a short body.
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while it was sent",
        )),
        n if n > 0 => Ok(n.unsigned_abs()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Writes `bufs` the zero-copy way if one of them is a mapped body: the slices before it with
/// one `writev`, then the mapped one with `sendfile`. `None` when none is mapped (the caller
/// writes them as usual).
pub(crate) fn poll_write<S>(
    io: &mut S,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Option<Poll<io::Result<usize>>>
where
    S: SendFile + tokio::io::AsyncWrite + Unpin,
{
    let (i, (file, offset)) = bufs
        .iter()
        .enumerate()
        .find_map(|(i, b)| lookup(b).map(|f| (i, f)))?;
    let len = bufs[i].len();
    if i == 0 {
        return Some(io.poll_sendfile(cx, file.as_raw_fd(), offset, len));
    }
    let before: usize = bufs[..i].iter().map(|b| b.len()).sum();
    let wrote = match io.poll_write_more(cx, &bufs[..i]) {
        Poll::Ready(Ok(n)) => n,
        other => return Some(other),
    };
    if wrote < before {
        return Some(Poll::Ready(Ok(wrote)));
    }
    // The head went out whole: start on the file in the same call if the socket takes it.
    Some(match io.poll_sendfile(cx, file.as_raw_fd(), offset, len) {
        Poll::Ready(Ok(n)) => Poll::Ready(Ok(wrote + n)),
        // What was written is reported; an error or a full socket shows on the next call.
        Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(Ok(wrote)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn mapped_bytes_are_the_file_and_are_found_by_address() {
        let mut f = anonymous_file();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&content).unwrap();
        let file = Arc::new(f);
        let body = map(file.clone(), 5000, 100_000).unwrap();
        assert_eq!(&body[..], &content[5000..105_000]);
        let (_, off) = lookup(&body[10..20]).unwrap();
        assert_eq!(off, 5010);
        // A slice reaching past the mapping is not one of its slices.
        assert!(lookup(&content[..]).is_none());
        let piece = body.slice(70_000..);
        drop(body);
        // Still mapped while any part of it is alive.
        assert_eq!(lookup(&piece).unwrap().1, 75_000);
        let addr = piece.as_ptr() as usize;
        drop(piece);
        assert!(
            !regions()
                .iter()
                .any(|(start, r)| *start <= addr && addr < start + r.len)
        );
    }

    fn anonymous_file() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("flaskhost-zerocopy-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
