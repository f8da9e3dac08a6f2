//! Importing the app (`module:attr` or `module:factory(args)`).

use std::ffi::CString;

use pyo3::prelude::*;
use thiserror::Error;

/// The app could not be loaded. `traceback` is Python's, for the operator.
#[derive(Debug, Error)]
#[error("cannot load the app {spec}:\n{traceback}")]
pub struct LoadError {
    pub spec: String,
    pub traceback: String,
}

/// What to import.
#[derive(Debug, Clone)]
pub struct AppTarget {
    pub module: String,
    pub attr: String,
    pub call_args: Option<String>,
    /// Put first on sys.path (the --chdir directory, or the working directory).
    pub app_dir: Option<String>,
}

impl AppTarget {
    pub fn spec(&self) -> String {
        match &self.call_args {
            Some(a) => format!("{}:{}({a})", self.module, self.attr),
            None => format!("{}:{}", self.module, self.attr),
        }
    }
}

/// A loaded WSGI callable and the helper module.
pub struct App {
    pub(crate) callable: Py<PyAny>,
    pub(crate) boot: Py<PyModule>,
}

pub(crate) fn boot_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    // The source is our own file; it contains no NUL byte.
    let code = CString::new(crate::BOOT_SOURCE)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("boot module: {e}")))?;
    PyModule::from_code(py, &code, c"flaskhost_boot.py", c"flaskhost_boot")
}

/// Formats an exception with its traceback, never failing (the formatting itself could raise).
///
/// The traceback is passed apart from the exception: before 3.12 CPython keeps a raised
/// exception's traceback beside it (`PyErr_Fetch`), and its `__traceback__` may be unset or
/// hold only the frames below the last handler it went through; from 3.12 the two are the same.
pub(crate) fn format_err(py: Python<'_>, boot: &Bound<'_, PyModule>, err: &PyErr) -> String {
    boot.call_method1("format_exception", (err.value(py), err.traceback(py)))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| err.to_string())
}

/// Imports the app. Needs a started interpreter ([`crate::interp::start`]).
pub fn load(target: &AppTarget) -> Result<App, LoadError> {
    Python::attach(|py| {
        let boot = boot_module(py).map_err(|e| LoadError {
            spec: target.spec(),
            traceback: e.to_string(),
        })?;
        let r = boot.call_method1(
            "load_app",
            (
                &target.module,
                &target.attr,
                target.call_args.as_deref(),
                target.app_dir.as_deref(),
            ),
        );
        match r {
            Ok(obj) => Ok(App {
                callable: obj.unbind(),
                boot: boot.unbind(),
            }),
            Err(e) => Err(LoadError {
                spec: target.spec(),
                traceback: format_err(py, &boot, &e),
            }),
        }
    })
}

impl App {
    /// Runs once in the fork server after the import: the slots' own Python objects made
    /// ([`crate::serve::prepare_for_fork`]), a full collection, with `immortal` the objects
    /// left made immortal ([`crate::immortal`]), then `gc.freeze()`, so that forked workers
    /// share the app's pages instead of copying them.
    pub fn prepare_for_fork(&self, immortal: bool) -> Option<crate::immortal::Immortalized> {
        Python::attach(|py| {
            if let Err(e) = crate::serve::prepare_for_fork(py) {
                tracing::warn!("preparing the WSGI objects before forking failed: {e}");
            }
            if let Err(e) = self.boot.bind(py).call_method0("after_load") {
                tracing::warn!("preparing the app's objects before forking failed: {e}");
            }
            let done = if immortal {
                crate::immortal::immortalize(py)
                    .inspect_err(|e| {
                        tracing::warn!("making the app's objects immortal failed: {e}")
                    })
                    .ok()
            } else {
                None
            };
            if let Err(e) = py.import("gc").and_then(|gc| gc.call_method0("freeze")) {
                tracing::warn!("gc.freeze() before forking failed: {e}");
            }
            done
        })
    }

    /// Makes `SIGUSR2` dump every thread's Python traceback to stderr. Inherited by forked
    /// workers; lazy workers call it themselves.
    pub fn enable_traceback_dump(&self) {
        Python::attach(|py| {
            if let Err(e) = self
                .boot
                .bind(py)
                .call_method1("enable_traceback_dump", (libc::SIGUSR2,))
            {
                tracing::warn!("cannot register the traceback dump on SIGUSR2: {e}");
            }
        });
    }

    /// The number of OS threads in this process, as Linux counts them. Forking is only safe
    /// from a single-threaded process; an app that starts threads at import breaks that.
    pub fn thread_count(&self) -> usize {
        Python::attach(|py| {
            self.boot
                .bind(py)
                .call_method0("thread_count")
                .and_then(|n| n.extract())
                .unwrap_or(1)
        })
    }

    /// Flushes stdio and runs `atexit` hooks; workers end with `_exit` after this.
    pub fn run_exit_hooks(&self) {
        Python::attach(|py| {
            let _ = self.boot.bind(py).call_method0("run_exit_hooks");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame the exception went through is in the log's traceback, also the ones above
    /// a handler it passed (before 3.12 its `__traceback__` stops there).
    #[test]
    fn format_err_has_every_frame() {
        crate::interp::start(&Default::default()).expect("python starts");
        let text = Python::attach(|py| {
            let boot = boot_module(py).expect("boot module");
            let code = c"def inner():\n    raise RuntimeError('format-err-token')\n\
                         def middle():\n    try:\n        inner()\n    except KeyError:\n        pass\n\
                         def outer():\n    middle()\n";
            let m = PyModule::from_code(py, code, c"tb_test.py", c"tb_test").expect("module");
            let err = m.call_method0("outer").expect_err("outer raises");
            format_err(py, &boot, &err)
        });
        assert!(
            text.starts_with("Traceback (most recent call last):"),
            "{text}"
        );
        for frame in ["in outer", "in middle", "in inner"] {
            assert!(text.contains(frame), "{frame} missing from:\n{text}");
        }
        assert!(text.ends_with("RuntimeError: format-err-token"), "{text}");
    }
}
