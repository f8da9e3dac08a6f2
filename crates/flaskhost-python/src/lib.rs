//! Everything that touches CPython. **Architecture invariant:** this is the only crate that
//! depends on pyo3; the front, the pool and the binary's async code never see a Python object
//! and never hold the GIL.
//!
//! Entry points, in the order a worker uses them: [`interp::start`] (once per process),
//! [`app::load`] (once, in the fork server or the lazily started worker), then
//! [`serve::serve_slots`] runs one thread per slot, each turning request frames into WSGI calls.

pub mod app;
pub mod fork;
pub mod immortal;
pub mod interp;
pub mod serve;
mod strings;
mod wsgi;

#[doc(hidden)]
pub mod testing;

pub use app::{App, LoadError};
pub use interp::{InterpError, InterpOptions, PythonInfo};

/// The Python version this binary was built against, e.g. "3.12".
pub const BUILD_PYTHON_VERSION: &str = env!("FLASKHOST_BUILD_PYTHON_VERSION");

/// The embedded helper module (python/flaskhost_boot.py).
pub(crate) const BOOT_SOURCE: &str = include_str!("../../../python/flaskhost_boot.py");

/// Where the running CPython's code is: `None` when libpython is linked into this executable
/// (the default build, see the binary's build.rs), else the shared library's path. Asked of
/// the dynamic linker, so it reports what was actually linked, not what was meant.
pub fn libpython_file() -> Option<std::path::PathBuf> {
    let (python_base, python_file) = loaded_object(pyo3::ffi::Py_IsInitialized as *const _)?;
    // This function is in the executable whatever the build: the same object means static.
    let (own_base, _) = loaded_object(libpython_file as *const _)?;
    (python_base != own_base).then(|| std::path::PathBuf::from(python_file))
}

/// The load address and file name of the loaded object that holds `addr`.
fn loaded_object(addr: *const std::ffi::c_void) -> Option<(usize, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the dynamic linker's tables and fills `info`; `addr` is code
    // of this process.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    // SAFETY: zeroed is a valid Dl_info, and dladdr filled it when it returned non-zero.
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some((
        info.dli_fbase as usize,
        std::ffi::OsStr::from_bytes(name.to_bytes()).to_os_string(),
    ))
}

/// In a build with libpython linked in: a shared libpython that something (an extension module
/// linked against it) has loaded into the process anyway, from `/proc/self/maps`.
pub fn shared_libpython_loaded() -> Option<String> {
    if libpython_file().is_some() {
        return None;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with("libpython") && f.contains(".so"))
        })
        .map(str::to_string)
}

/// One line for `--version`: the CPython version and how it is linked.
pub fn python_description() -> String {
    match libpython_file() {
        None => format!("CPython {BUILD_PYTHON_VERSION}, libpython linked statically"),
        Some(p) => format!("CPython {BUILD_PYTHON_VERSION}, libpython {}", p.display()),
    }
}
