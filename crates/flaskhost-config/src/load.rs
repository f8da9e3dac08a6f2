//! Merging the sources with figment, and validating the merged [`Options`] into a
//! [`ServeConfig`].
//!
//! Each source becomes one figment provider (a [`Layer`]) whose metadata says which source
//! it is. Figment tags every value with its provider, so both serde errors during extraction
//! and the range checks afterwards can say where the offending value came from.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::error::{ConfigError, Origin, suggest};
use crate::options::{DefaultValue, EnvShape, OPTIONS, Options, option_info};
use crate::parse;
use crate::{Account, Bind, ServeConfig};

/// The prefix of flaskhost's environment variables.
const ENV_PREFIX: &str = "FLASKHOST_";

/// The variable that names the config file when [`Sources::file`] is `None`.
pub const CONFIG_ENV_VAR: &str = "FLASKHOST_CONFIG";

/// The file looked for in the current directory when no config file is named.
pub const DEFAULT_CONFIG_FILE: &str = "flaskhost.toml";

/// `FLASKHOST_*` variables that are not options and are therefore not reported as unknown:
/// `FLASKHOST_CONFIG` names the config file, and the others are used by the repository's
/// scripts (`FLASKHOST_BIN`, the binary under test; `FLASKHOST_PYTHON`, the interpreter;
/// `FLASKHOST_VENV_DIR`, the development virtualenv).
pub const IGNORED_ENV_VARS: &[&str] = &[
    CONFIG_ENV_VAR,
    "FLASKHOST_BIN",
    "FLASKHOST_PYTHON",
    "FLASKHOST_VENV_DIR",
];

/// The sources of one [`load`].
#[derive(Debug, Clone, Default)]
pub struct Sources<'a> {
    /// The config file named on the command line (`--config`). When `None`, the file named
    /// by `FLASKHOST_CONFIG` in [`env`](Self::env) is used; when that is unset or empty,
    /// `./flaskhost.toml` is used if it exists in the current directory; otherwise there is
    /// no file. A file that is named (by either) and does not exist is an error.
    pub file: Option<&'a Path>,
    /// The environment, injected so that tests can pass their own; the binary passes
    /// [`process_env`]. Every `FLASKHOST_*` variable must be an option, except
    /// [`IGNORED_ENV_VARS`]. `VIRTUAL_ENV` gives the default of `venv`.
    pub env: &'a [(String, String)],
    /// The options given as command-line flags; they override every other source.
    pub cli: Options,
    /// Command-line flags as text, `(key, value)` in kebab-case, parsed exactly like
    /// environment values (so a flag accepts what the variable accepts); a list option such
    /// as `bind` collects every pair with its key. Merged over [`Sources::cli`].
    pub cli_text: Vec<(&'static str, String)>,
}

/// The process environment as the pairs [`Sources::env`] takes.
///
/// Names and values that are not valid Unicode are converted lossily (with U+FFFD), rather
/// than panicking as [`std::env::vars`] would.
#[must_use]
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Loads the configuration: built-in defaults, then the config file, then `FLASKHOST_*`
/// variables, then command-line flags, each overriding the ones before; then validates the
/// result. Nothing is bound or started here, so the binary can report a [`ConfigError`]
/// (and exit 64) before touching the network.
///
/// # Errors
///
/// A [`ConfigError`] naming the option, its source and the problem.
pub fn load(sources: Sources<'_>) -> Result<ServeConfig, ConfigError> {
    load_in(sources, Path::new("."))
}

/// [`load`] with the directory searched for `flaskhost.toml` made explicit, so tests can
/// cover discovery without changing the process's current directory.
pub(crate) fn load_in(sources: Sources<'_>, search_dir: &Path) -> Result<ServeConfig, ConfigError> {
    Merged::new(sources, search_dir)?.validate()
}

/// Marks which source a figment provider is. Stored in its [`Metadata::source`] and read
/// back from the metadata figment attaches to errors and values.
const TAG_DEFAULT: &str = "flaskhost:default";
const TAG_VIRTUAL_ENV: &str = "flaskhost:VIRTUAL_ENV";
const TAG_ENV: &str = "flaskhost:environment";
const TAG_CLI: &str = "flaskhost:command-line";

/// One source as a figment provider: a flat dictionary of kebab-case keys.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    fn tagged(name: &'static str, tag: &'static str, dict: Dict) -> Self {
        Layer {
            metadata: Metadata::named(name).source(tag),
            dict,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Profiles are not used: every layer is the default profile, so a `[default]` table
        // in the file is an unknown key rather than a silent profile.
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The merged figment and the options extracted from it.
pub(crate) struct Merged {
    figment: Figment,
    options: Options,
    /// For each key set from the environment, the variable that set it, so messages show
    /// the variable as the user spelled it.
    env_vars: BTreeMap<&'static str, String>,
}

impl Merged {
    pub(crate) fn new(sources: Sources<'_>, search_dir: &Path) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Layer::tagged(
            "built-in defaults",
            TAG_DEFAULT,
            defaults_dict(),
        ));
        if let Some(venv) = env_value(sources.env, "VIRTUAL_ENV").filter(|v| !v.is_empty()) {
            let mut dict = Dict::new();
            dict.insert("venv".into(), Value::from(venv));
            figment = figment.merge(Layer::tagged("VIRTUAL_ENV", TAG_VIRTUAL_ENV, dict));
        }
        if let Some(file) = choose_file(sources.file, sources.env, search_dir) {
            figment = figment.merge(file_layer(file)?);
        }
        let (env_dict, env_vars) = env_dict(sources.env)?;
        figment = figment.merge(Layer::tagged("environment", TAG_ENV, env_dict));
        let mut cli = cli_dict(&sources.cli)?;
        cli_text_into(&mut cli, &sources.cli_text)?;
        figment = figment.merge(Layer::tagged("command line", TAG_CLI, cli));

        let mut merged = Merged {
            figment,
            options: Options::default(),
            env_vars,
        };
        merged.options = merged
            .figment
            .extract::<Options>()
            .map_err(|error| merged.figment_error(error))?;
        Ok(merged)
    }

    /// Where the merged value of `key` came from.
    pub(crate) fn origin(&self, key: &str) -> Origin {
        self.origin_from(self.figment.find_metadata(key), key)
    }

    fn origin_from(&self, metadata: Option<&Metadata>, key: &str) -> Origin {
        match metadata.and_then(|metadata| metadata.source.as_ref()) {
            Some(figment::Source::File(path)) => Origin::File(path.clone()),
            Some(figment::Source::Custom(tag)) => match tag.as_str() {
                TAG_DEFAULT => Origin::Default,
                TAG_VIRTUAL_ENV => Origin::Env("VIRTUAL_ENV".into()),
                TAG_ENV => Origin::Env(
                    self.env_vars
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| crate::options::env_var_for(key)),
                ),
                TAG_CLI => Origin::Cli(format!("--{key}")),
                _ => Origin::Unknown,
            },
            _ => Origin::Unknown,
        }
    }

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            origin: self.origin(key),
            reason: reason.into(),
        }
    }

    /// Converts an extraction error, using figment's path (the key) and metadata (the
    /// provider, hence the source) to say which value failed and where it came from.
    fn figment_error(&self, error: figment::Error) -> ConfigError {
        let key = error.path.first().cloned().unwrap_or_default();
        let origin = self.origin_from(error.metadata.as_ref(), &key);
        match &error.kind {
            // Unknown keys are rejected per source before merging; this is the backstop of
            // `deny_unknown_fields` in case a key slips through.
            // A key inside a list item's table (a `static` mount) is reported as an invalid
            // value of the option, below, which names the option and the item.
            Kind::UnknownField(field, _) if error.path.len() <= 1 => ConfigError::UnknownKey {
                suggestion: suggest(field),
                key: field.clone(),
                origin,
            },
            kind => {
                let reason = match error.path.get(1) {
                    // An item of a list, such as one `bind` address.
                    Some(index) => match index.parse::<usize>() {
                        Ok(index) => format!("item {}: {kind}", index + 1),
                        Err(_) => format!("{index}: {kind}"),
                    },
                    None => kind.to_string(),
                };
                ConfigError::InvalidValue {
                    key,
                    origin,
                    reason,
                }
            }
        }
    }

    /// Checks every merged value and converts it into its strong type.
    pub(crate) fn validate(self) -> Result<ServeConfig, ConfigError> {
        let Options {
            app,
            chdir,
            bind,
            socket_mode,
            workers,
            workers_min,
            workers_max,
            workers_idle_timeout,
            threads,
            venv,
            lazy_apps,
            preload_immortal,
            queue_size,
            queue_timeout,
            timeout,
            graceful_timeout,
            post_buffering,
            max_body_size,
            script_name,
            log_level,
            pidfile,
            uid,
            gid,
            tls,
            tls_cert,
            tls_key,
            tls_min_version,
            redirect_http,
            static_mounts,
            static_cache_size,
            static_cache_max_file,
            static_cache_valid,
            security_headers,
            header,
            hsts,
            server_header,
            max_request_line,
            max_header_size,
            max_header_count,
            header_timeout,
            body_timeout,
            keepalive_timeout,
            max_connections,
            title_case_headers,
            forwarded_allow_ips,
            proxy_headers,
            access_log,
            access_log_format,
            access_log_max_size,
            access_log_backup,
            compression,
            compression_min_size,
            stats,
            touch_reload,
            metrics,
            max_requests,
            max_requests_delta,
            max_worker_lifetime,
            reload_on_rss,
            evil_reload_on_rss,
        } = self.options.clone();
        let touch_reload = touch_reload
            .unwrap_or_default()
            .into_iter()
            .map(|p| self.non_empty_path("touch-reload", PathBuf::from(p)))
            .collect::<Result<Vec<_>, _>>()?;
        let workers_idle_timeout = required(workers_idle_timeout, "workers-idle-timeout")?;
        if workers_idle_timeout.is_zero() {
            return Err(self.invalid("workers-idle-timeout", "must be more than 0"));
        }
        let lifecycle = crate::LifecycleConfig {
            stats: stats
                .filter(|s| s != "off")
                .map(|s| parse::parse_bind(&s).map_err(|reason| self.invalid("stats", reason)))
                .transpose()?,
            touch_reload,
            workers_max: None,
            workers_idle_timeout,
            metrics: metrics
                .filter(|s| s != "off")
                .map(|s| parse::parse_bind(&s).map_err(|reason| self.invalid("metrics", reason)))
                .transpose()?,
            max_requests: max_requests.filter(|n| *n > 0).map(|n| n as u64),
            max_requests_delta: max_requests_delta.unwrap_or(0) as u64,
            max_worker_lifetime: max_worker_lifetime.filter(|d| !d.is_zero()),
            reload_on_rss: reload_on_rss.filter(|n| *n > 0),
            evil_reload_on_rss: evil_reload_on_rss.filter(|n| *n > 0),
        };

        let app = required(app, "app")?;
        let app = parse::parse_app_spec(&app).map_err(|reason| self.invalid("app", reason))?;
        let chdir = chdir
            .map(|path| self.non_empty_path("chdir", path))
            .transpose()?;
        let binds = self.binds(&required(bind, "bind")?)?;
        let edge = self.edge(
            crate::edge::EdgeInput {
                tls,
                tls_cert,
                tls_key,
                tls_min_version,
                redirect_http,
                static_mounts,
                static_cache_size,
                static_cache_max_file,
                static_cache_valid,
                security_headers,
                header,
                hsts,
                server_header,
                max_request_line,
                max_header_size,
                max_header_count,
                header_timeout,
                body_timeout,
                keepalive_timeout,
                max_connections,
                title_case_headers,
                forwarded_allow_ips,
                proxy_headers,
                access_log,
                access_log_format,
                access_log_max_size,
                access_log_backup,
                compression,
                compression_min_size,
            },
            &binds,
        )?;

        let workers = required(workers, "workers")?;
        let mut workers = NonZeroUsize::new(workers).ok_or_else(|| {
            self.invalid("workers", "0 is not allowed; at least 1 worker is needed")
        })?;
        let mut lifecycle = lifecycle;
        if let Some(max) = workers_max {
            let max = NonZeroUsize::new(max).ok_or_else(|| {
                self.invalid(
                    "workers-max",
                    "0 is not allowed; at least 1 worker is needed",
                )
            })?;
            if self.origin("workers") != Origin::Default {
                return Err(self.invalid(
                    "workers",
                    "cannot be combined with `workers-max`: adaptive workers run between \
                     `workers-min` and `workers-max`",
                ));
            }
            let min = NonZeroUsize::new(required(workers_min, "workers-min")?)
                .ok_or_else(|| self.invalid("workers-min", "0 is not allowed; at least 1"))?;
            if min > max {
                return Err(self.invalid(
                    "workers-min",
                    format!("{min} is more than `workers-max` ({max})"),
                ));
            }
            workers = min;
            lifecycle.workers_max = Some(max);
        } else if self.origin("workers-min") != Origin::Default {
            return Err(self.invalid("workers-min", "only means something with `workers-max`"));
        }
        let threads = required(threads, "threads")?;
        let threads = NonZeroUsize::new(threads)
            .filter(|threads| threads.get() <= MAX_THREADS)
            .ok_or_else(|| {
                self.invalid(
                    "threads",
                    format!("{threads} is out of range; expected 1 to {MAX_THREADS}"),
                )
            })?;
        let venv = venv
            .map(|path| self.non_empty_path("venv", path))
            .transpose()?;

        let timeout = required(timeout, "timeout")?;
        if timeout.is_zero() {
            return Err(self.invalid(
                "timeout",
                "0 is not allowed; the timeout must be more than zero",
            ));
        }
        let max_body_size = required(max_body_size, "max-body-size")?;
        // Buffering more than may ever be accepted would only reserve memory for nothing.
        let post_buffering = required(post_buffering, "post-buffering")?.min(max_body_size);

        let script_name = required(script_name, "script-name")?;
        parse::check_script_name(&script_name)
            .map_err(|reason| self.invalid("script-name", reason))?;
        let log_level = required(log_level, "log-level")?;
        parse::check_log_level(&log_level).map_err(|reason| self.invalid("log-level", reason))?;
        let pidfile = pidfile
            .map(|path| self.non_empty_path("pidfile", path))
            .transpose()?;
        let run_as = crate::RunAs {
            user: uid.map(|text| self.account("uid", &text)).transpose()?,
            group: gid.map(|text| self.account("gid", &text)).transpose()?,
        };

        Ok(ServeConfig {
            lifecycle,
            app,
            chdir,
            binds,
            socket_mode,
            workers,
            threads,
            venv,
            lazy_apps: required(lazy_apps, "lazy-apps")?,
            preload_immortal: required(preload_immortal, "preload-immortal")?,
            queue_size: required(queue_size, "queue-size")?,
            queue_timeout: required(queue_timeout, "queue-timeout")?,
            timeout,
            graceful_timeout: required(graceful_timeout, "graceful-timeout")?,
            post_buffering,
            max_body_size,
            script_name,
            log_level,
            pidfile,
            run_as,
            edge,
        })
    }

    fn binds(&self, texts: &[String]) -> Result<Vec<Bind>, ConfigError> {
        if texts.is_empty() {
            return Err(self.invalid(
                "bind",
                "the list is empty; give at least one address (example: 127.0.0.1:8000)",
            ));
        }
        let mut binds: Vec<Bind> = Vec::with_capacity(texts.len());
        for text in texts {
            let bind = parse::parse_bind(text).map_err(|reason| self.invalid("bind", reason))?;
            // A second bind to the same address would fail later with "address in use";
            // saying so here names the real mistake. Port 0 is exempt: each gets its own port.
            let any_port = matches!(&bind, Bind::Tcp(addr) if addr.port() == 0);
            if !any_port && binds.contains(&bind) {
                return Err(self.invalid("bind", format!("{text:?} is listed twice")));
            }
            binds.push(bind);
        }
        Ok(binds)
    }

    fn account(&self, key: &str, text: &str) -> Result<(Account, Origin), ConfigError> {
        let account = parse::parse_account(text).map_err(|reason| self.invalid(key, reason))?;
        Ok((account, self.origin(key)))
    }

    fn non_empty_path(&self, key: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
        if path.as_os_str().is_empty() {
            Err(self.invalid(key, "the path is empty"))
        } else {
            Ok(path)
        }
    }
}

/// The most threads per worker; more is almost certainly a typo for something else.
const MAX_THREADS: usize = 1024;

/// Unwraps a merged value. Every option except `app` has a value in the defaults layer, so
/// only `app` can really be missing; the others fail here only if the defaults table lost
/// an entry, which the tests check.
fn required<T>(value: Option<T>, key: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::MissingRequired { key })
}

/// The last value of `name` in `env`, as a later assignment wins in a shell.
fn env_value<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The defaults layer, from the [`OPTIONS`] table.
fn defaults_dict() -> Dict {
    let mut dict = Dict::new();
    for info in OPTIONS {
        match info.default {
            DefaultValue::Value(text) => {
                dict.insert(info.key.into(), env_text_value(info.env_shape, text));
            }
            DefaultValue::Computed if info.key == "workers" => {
                // Without a CPU count (rare, e.g. restricted /proc), one worker is safe.
                let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
                dict.insert(info.key.into(), Value::from(cpus as u64));
            }
            // `venv` comes from the VIRTUAL_ENV layer; the others have no default.
            DefaultValue::Computed | DefaultValue::Required | DefaultValue::Unset => {}
        }
    }
    dict
}

/// A value written as text (a default from the table, or an environment variable) as the
/// figment value the [`Options`] deserializers expect: a string, or a list of strings.
fn env_text_value(shape: EnvShape, text: &str) -> Value {
    match shape {
        EnvShape::Single => Value::from(text),
        EnvShape::Lines => Value::from(
            text.lines()
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<String>>(),
        ),
        EnvShape::List => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<String>>(),
        ),
    }
}

/// The config file to read, and what named it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConfigFile {
    /// Named by `--config` or `FLASKHOST_CONFIG`: it must exist.
    Named(PathBuf, Origin),
    /// `./flaskhost.toml`, found in the search directory.
    Found(PathBuf),
}

pub(crate) fn choose_file(
    file: Option<&Path>,
    env: &[(String, String)],
    search_dir: &Path,
) -> Option<ConfigFile> {
    if let Some(path) = file {
        return Some(ConfigFile::Named(
            path.to_owned(),
            Origin::Cli("--config".into()),
        ));
    }
    // An empty FLASKHOST_CONFIG is treated as unset, as shells make "set but empty" easy.
    if let Some(path) = env_value(env, CONFIG_ENV_VAR).filter(|path| !path.is_empty()) {
        return Some(ConfigFile::Named(
            PathBuf::from(path),
            Origin::Env(CONFIG_ENV_VAR.into()),
        ));
    }
    let found = search_dir.join(DEFAULT_CONFIG_FILE);
    found.is_file().then_some(ConfigFile::Found(found))
}

/// Reads and parses the config file, and rejects keys that are not options.
fn file_layer(file: ConfigFile) -> Result<Layer, ConfigError> {
    let (path, named_by) = match file {
        ConfigFile::Named(path, origin) => (path, Some(origin)),
        ConfigFile::Found(path) => (path, None),
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            return Err(match (error.kind(), named_by) {
                (io::ErrorKind::NotFound, Some(origin)) => {
                    ConfigError::FileNotFound { path, origin }
                }
                _ => ConfigError::FileUnreadable { path, error },
            });
        }
    };
    let dict: Dict = toml::from_str(&text).map_err(|error| {
        let (line, column) = error.span().map_or((None, None), |span| {
            let (line, column) = line_column(&text, span.start);
            (Some(line), Some(column))
        });
        ConfigError::FileInvalid {
            path: path.clone(),
            line,
            column,
            message: error.message().trim_end().to_owned(),
        }
    })?;
    if let Some(key) = dict.keys().find(|key| option_info(key).is_none()) {
        return Err(ConfigError::UnknownKey {
            suggestion: suggest(key),
            key: key.clone(),
            origin: Origin::File(path),
        });
    }
    Ok(Layer {
        metadata: Metadata::named("config file").source(figment::Source::File(path)),
        dict,
    })
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before
        .get(line_start..)
        .map_or(0, |rest| rest.chars().count())
        + 1;
    (line, column)
}

/// The environment layer: every `FLASKHOST_*` variable except [`IGNORED_ENV_VARS`] must name
/// an option. Returns the layer and, for each key, the variable that set it.
fn env_dict(
    env: &[(String, String)],
) -> Result<(Dict, BTreeMap<&'static str, String>), ConfigError> {
    let mut dict = Dict::new();
    let mut vars = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if IGNORED_ENV_VARS.contains(&name.as_str()) {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace('_', "-");
        let Some(info) = option_info(&key) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&key),
                key,
                origin: Origin::Env(name.clone()),
            });
        };
        // Values stay strings (or lists of strings): the Options deserializers parse them
        // per option, so "660" is octal for socket-mode and "30" is seconds for timeout.
        dict.insert(info.key.to_owned(), env_text_value(info.env_shape, value));
        vars.insert(info.key, name.clone());
    }
    Ok((dict, vars))
}

/// Adds flags given as text to the command-line layer.
fn cli_text_into(dict: &mut Dict, pairs: &[(&'static str, String)]) -> Result<(), ConfigError> {
    for (key, text) in pairs {
        let Some(info) = option_info(key) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(key),
                key: (*key).to_owned(),
                origin: Origin::Cli(format!("--{key}")),
            });
        };
        match info.env_shape {
            EnvShape::Single => {
                dict.insert(info.key.to_owned(), Value::from(text.as_str()));
            }
            EnvShape::List | EnvShape::Lines => {
                let entry = dict
                    .entry(info.key.to_owned())
                    .or_insert_with(|| Value::from(Vec::<String>::new()));
                if let Value::Array(_, items) = entry {
                    items.push(Value::from(text.as_str()));
                } else {
                    *entry = Value::from(vec![text.clone()]);
                }
            }
        }
    }
    Ok(())
}

/// The command-line layer: the given options, serialized.
fn cli_dict(cli: &Options) -> Result<Dict, ConfigError> {
    // Figment values hold strings, so a path must be Unicode to pass through the merge.
    for (key, path) in [
        ("chdir", &cli.chdir),
        ("venv", &cli.venv),
        ("pidfile", &cli.pidfile),
    ] {
        if let Some(path) = path.as_ref().filter(|path| path.to_str().is_none()) {
            return Err(ConfigError::InvalidValue {
                key: key.into(),
                origin: Origin::Cli(format!("--{key}")),
                reason: format!("{} is not valid Unicode", path.display()),
            });
        }
    }
    match Value::serialize(cli) {
        Ok(Value::Dict(_, dict)) => Ok(dict),
        Ok(_) => Ok(Dict::new()),
        Err(error) => {
            let key = error.path.first().cloned().unwrap_or_default();
            Err(ConfigError::InvalidValue {
                origin: Origin::Cli(format!("--{key}")),
                key,
                reason: error.kind.to_string(),
            })
        }
    }
}
