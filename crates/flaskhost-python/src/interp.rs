//! Starting the interpreter through `PyConfig`, so that a virtualenv works exactly as if its
//! own `bin/python` had been run: `pyvenv.cfg` is read, `sys.prefix` and `sys.executable`
//! point into the venv and its site-packages (with `.pth` files) is on `sys.path`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::ffi;
use thiserror::Error;

#[derive(Debug, Clone, Default)]
pub struct InterpOptions {
    /// The app's virtualenv; `None` runs the interpreter the binary was built against.
    pub venv: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum InterpError {
    #[error("virtualenv {venv}: {reason}")]
    Venv { venv: PathBuf, reason: String },
    #[error("Python failed to start: {0}")]
    Init(String),
}

/// What was started, for the startup log.
#[derive(Debug, Clone)]
pub struct PythonInfo {
    pub version: String,
    pub executable: String,
}

/// Checks a virtualenv before Python is started, so a wrong one is reported plainly instead of
/// as an import error later: it must exist and use the Python minor version of this build.
pub fn check_venv(venv: &Path) -> Result<PathBuf, InterpError> {
    let err = |reason: String| InterpError::Venv {
        venv: venv.to_path_buf(),
        reason,
    };
    let cfg_path = venv.join("pyvenv.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).map_err(|e| {
        err(format!(
            "cannot read {}: {e} (is this a virtualenv?)",
            cfg_path.display()
        ))
    })?;
    let version = cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        matches!(k.trim(), "version" | "version_info").then(|| v.trim().to_string())
    });
    if let Some(v) = version {
        let minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
        if minor != crate::BUILD_PYTHON_VERSION {
            return Err(err(format!(
                "it uses Python {v} but this flaskhost binary embeds Python {}; make the venv \
                 with that version, or rebuild flaskhost with PYO3_PYTHON pointing at a Python \
                 {minor} (see README)",
                crate::BUILD_PYTHON_VERSION
            )));
        }
    }
    let exe = venv.join("bin").join("python");
    if !exe.exists() {
        return Err(err(format!("{} does not exist", exe.display())));
    }
    Ok(exe)
}

/// Starts the interpreter in this process and releases the GIL, so that later code attaches
/// with `Python::attach`. Must be called once, before any other Python use, from the thread
/// that will later fork (if any).
pub fn start(opts: &InterpOptions) -> Result<PythonInfo, InterpError> {
    let exe: Option<PathBuf> = match &opts.venv {
        Some(v) => Some(check_venv(v)?),
        None => {
            let built = env!("FLASKHOST_BUILD_PYTHON");
            (!built.is_empty()).then(|| PathBuf::from(built))
        }
    };
    // SAFETY: PyConfig is a plain C struct initialised by PyConfig_InitPythonConfig before use;
    // every string set here is copied by PyConfig_SetBytesString; the config is cleared after
    // initialisation on every path.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        // Rust owns signals (the supervisor decides when workers stop); argv is ours, not the
        // app's; stdout/stderr unbuffered so print() reaches the log at once, in order.
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.buffered_stdio = 0;
        if let Some(exe) = &exe {
            let c = CString::new(exe.as_os_str().as_bytes())
                .map_err(|_| InterpError::Init("NUL in the python path".into()))?;
            let st = ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, c.as_ptr());
            if ffi::PyStatus_Exception(st) != 0 {
                ffi::PyConfig_Clear(&mut config);
                return Err(InterpError::Init(status_message(&st)));
            }
        }
        let st = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(st) != 0 {
            return Err(InterpError::Init(status_message(&st)));
        }
        // Py_InitializeFromConfig leaves this thread holding the GIL; give it back so that
        // pyo3's attach works from here and from other threads.
        ffi::PyEval_SaveThread();
    }
    use pyo3::types::PyAnyMethods;
    let info = pyo3::Python::attach(|py| -> pyo3::PyResult<PythonInfo> {
        let sys = py.import("sys")?;
        let version: String = sys.getattr("version")?.extract()?;
        let executable: String = sys.getattr("executable")?.extract()?;
        Ok(PythonInfo {
            version: version.split_whitespace().next().unwrap_or("").to_string(),
            executable,
        })
    });
    info.map_err(|e| InterpError::Init(e.to_string()))
}

fn status_message(st: &ffi::PyStatus) -> String {
    if st.err_msg.is_null() {
        return "unknown error".into();
    }
    // SAFETY: err_msg is a NUL-terminated static string set by CPython.
    let msg = unsafe { std::ffi::CStr::from_ptr(st.err_msg) };
    msg.to_string_lossy().into_owned()
}
