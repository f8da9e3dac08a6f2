//! Everything that touches CPython. **Architecture invariant:** this is the only crate that
//! depends on pyo3; the front, the pool and the binary's async code never see a Python object
//! and never hold the GIL.
//!
//! Entry points, in the order a worker uses them: [`interp::start`] (once per process),
//! [`app::load`] (once, in the fork server or the lazily started worker), then
//! [`serve::serve_slots`] runs one thread per slot, each turning request frames into WSGI calls.

pub mod app;
pub mod fork;
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
