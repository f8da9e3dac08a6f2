//! Configuration: raw [`Options`] (every field optional) merged by precedence
//! (defaults < `flaskhost.toml` < `FLASKHOST_*` environment < CLI flags) and validated into a
//! [`ServeConfig`] before anything binds.
//!
//! CONTRACT (used by the rest of the workspace; keep these names and types):
//! - `ServeConfig` and its field types below.
//! - `load(Sources) -> Result<ServeConfig, ConfigError>`.
//!
//! The pieces:
//! - [`Options`]: the raw options of one source, every field optional; the binary fills one
//!   from its flags. [`OPTIONS`] documents every field and is what `OPTIONS.md` and
//!   [`reference_markdown`] are generated from.
//! - [`Sources`] and [`load`]: the file, the injected environment and the CLI options, merged
//!   by figment and validated. [`process_env`] gives the real environment.
//! - [`ConfigError`]: names the option, where the value came from, and what is wrong.
//! - [`parse_duration`], [`parse_size`] and friends: the value syntaxes, public so the
//!   binary's flag parsers accept exactly what the file and the environment accept.
//!
//! **Architecture invariant:** this crate and the ipc crate are the only ones that define
//! serde types; nothing here reads the process environment or the filesystem except
//! [`process_env`] and the config file named by (or found for) [`Sources`].

mod de;
mod edge;
#[cfg(test)]
mod edge_tests;
mod error;
mod load;
mod options;
mod parse;
mod reference;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

pub use edge::{
    AccessLogConfig, CertFiles, CompressionConfig, EdgeConfig, Encoding, HeaderConfig, IpNet,
    Limits, LogFormat, LogTarget, StaticMount, StaticMountOptions, SymlinkPolicy, TlsConfig,
    TlsVersion,
};
pub use error::{ConfigError, Origin};
pub use load::{CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, IGNORED_ENV_VARS, Sources, load, process_env};
pub use options::{DefaultValue, EnvShape, OPTIONS, OptionInfo, Options, option_info};
pub use parse::{
    check_log_level, check_script_name, parse_account, parse_app_spec, parse_bind, parse_duration,
    parse_size, parse_socket_mode,
};
pub use reference::reference_markdown;

/// Where the app comes from: `module:attr`, or the factory form `module:factory(args)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Dotted module name, e.g. `wsgi` or `myproj.wsgi`.
    pub module: String,
    /// Attribute (or factory) name in the module, e.g. `application` or `create_app`.
    pub attr: String,
    /// `Some(args)` for the factory form: the text between the parentheses (may be empty),
    /// evaluated as Python literals by the worker. `None` for a plain attribute.
    pub call_args: Option<String>,
}

/// One address to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A user or group as configured (`uid`, `gid`): a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    Name(String),
    Id(u32),
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Account::Name(name) => f.write_str(name),
            Account::Id(id) => write!(f, "{id}"),
        }
    }
}

/// Who the server runs as once it has bound its addresses (`uid`, `gid`), as configured.
/// Names are not looked up here (loading reads no system database); the binary resolves
/// them before anything starts and reports a missing one with [`ConfigError::InvalidValue`],
/// using the origin kept here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAs {
    pub user: Option<(Account, Origin)>,
    pub group: Option<(Account, Origin)>,
}

/// The validated configuration of `flaskhost serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Worker recycling, the stats socket and the metrics listener.
    pub lifecycle: LifecycleConfig,
    pub app: AppSpec,
    pub chdir: Option<PathBuf>,
    pub binds: Vec<Bind>,
    /// Permission bits for Unix socket binds (uWSGI chmod-socket), e.g. 0o660.
    pub socket_mode: Option<u32>,
    pub workers: NonZeroUsize,
    pub threads: NonZeroUsize,
    /// The app's virtualenv (`--venv`, else `VIRTUAL_ENV`).
    pub venv: Option<PathBuf>,
    pub lazy_apps: bool,
    /// Make the objects alive after the app's import immortal before forking workers.
    pub preload_immortal: bool,
    pub queue_size: usize,
    pub queue_timeout: Duration,
    /// Longest the app may take to start its response (504 after).
    pub timeout: Duration,
    pub graceful_timeout: Duration,
    /// Request bodies up to this size are read whole by the front before a worker is taken.
    pub post_buffering: u64,
    pub max_body_size: u64,
    /// WSGI SCRIPT_NAME: the URL prefix the app is mounted at ("" by default).
    pub script_name: String,
    /// A tracing-subscriber filter directive, e.g. `info` or `flaskhost=debug`.
    pub log_level: String,
    /// Where to write the main process's pid (`pidfile`).
    pub pidfile: Option<PathBuf>,
    /// The user and group to switch to after binding (`uid`, `gid`).
    pub run_as: RunAs,
    /// The edge: TLS, redirect, static files, headers, limits, proxies, access log,
    /// compression (see `edge.rs`).
    pub edge: EdgeConfig,
}

/// When workers are replaced although healthy, and where stats and metrics are served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleConfig {
    pub stats: Option<Bind>,
    /// Files whose modification reloads the app.
    pub touch_reload: Vec<PathBuf>,
    /// Adaptive workers: `workers` are started and kept; up to this many under load.
    pub workers_max: Option<NonZeroUsize>,
    /// Adaptive workers: idle time after which a worker above the minimum is stopped.
    pub workers_idle_timeout: Duration,
    /// Prometheus metrics (`GET /metrics`) on a listener of their own.
    pub metrics: Option<Bind>,
    pub max_requests: Option<u64>,
    pub max_requests_delta: u64,
    pub max_worker_lifetime: Option<Duration>,
    pub reload_on_rss: Option<u64>,
    pub evil_reload_on_rss: Option<u64>,
}
