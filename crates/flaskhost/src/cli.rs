//! Command-line interface. Option help texts come from the configuration crate's table, the
//! one place every option is documented.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flaskhost",
    version,
    about = "One binary in front of a WSGI app: HTTP edge and supervised Python workers."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Serve a WSGI app (e.g. `flaskhost serve --app wsgi:application`).
    Serve(Box<ServeArgs>),
    /// Print the stats of a running server (its `--stats` address), e.g. `flaskhost stats 127.0.0.1:9191`.
    Stats(StatsArgs),
    /// Reload a running server: send it SIGHUP (e.g. `flaskhost reload --pidfile /run/flaskhost.pid`).
    Reload(SignalArgs),
    /// Stop a running server: SIGTERM (drain), or SIGQUIT with `--fast`.
    Stop(StopArgs),
    /// Internal: a Python worker process, started by `serve`.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Flags of `serve`. Values stay strings here and are parsed by the configuration crate, so a
/// flag, an environment variable and a file entry accept exactly the same text and fail with
/// the same message.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Default: $FLASKHOST_CONFIG, else ./flaskhost.toml if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "MODULE:ATTR")]
    pub app: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<String>,
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,
    #[arg(long, value_name = "N")]
    pub workers: Option<String>,
    #[arg(long, value_name = "N")]
    pub workers_min: Option<String>,
    #[arg(long, value_name = "N")]
    pub workers_max: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub workers_idle_timeout: Option<String>,
    #[arg(long, value_name = "N")]
    pub threads: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub venv: Option<String>,
    #[arg(long)]
    pub lazy_apps: bool,
    #[arg(long, value_name = "BOOL")]
    pub preload_immortal: Option<String>,
    #[arg(long, value_name = "N")]
    pub queue_size: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub queue_timeout: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub graceful_timeout: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub post_buffering: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub max_body_size: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub script_name: Option<String>,
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<String>,
    #[arg(long, value_name = "USER|UID")]
    pub uid: Option<String>,
    #[arg(long, value_name = "GROUP|GID")]
    pub gid: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub stats: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub touch_reload: Vec<String>,
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_requests: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_requests_delta: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub max_worker_lifetime: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub reload_on_rss: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub evil_reload_on_rss: Option<String>,
    // ---- The edge (see OPTIONS.md): repeatable flags collect into lists.
    #[arg(long, value_name = "on|off|self-signed")]
    pub tls: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Vec<String>,
    #[arg(long, value_name = "FILE")]
    pub tls_key: Vec<String>,
    #[arg(long, value_name = "1.2|1.3")]
    pub tls_min_version: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub redirect_http: Vec<String>,
    #[arg(long = "static", value_name = "URL=PATH")]
    pub static_mounts: Vec<String>,
    #[arg(long, value_name = "SIZE")]
    pub static_cache_size: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub static_cache_max_file: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub static_cache_valid: Option<String>,
    #[arg(long, value_name = "BOOL")]
    pub security_headers: Option<String>,
    #[arg(long, value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    #[arg(long, value_name = "VALUE|off")]
    pub hsts: Option<String>,
    #[arg(long, value_name = "VALUE")]
    pub server_header: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub max_request_line: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub max_header_size: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_header_count: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub body_timeout: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub keepalive_timeout: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    #[arg(long, value_name = "BOOL")]
    pub title_case_headers: Option<String>,
    #[arg(long, value_name = "CIDR,...")]
    pub forwarded_allow_ips: Vec<String>,
    #[arg(long, value_name = "BOOL")]
    pub proxy_headers: Option<String>,
    #[arg(long, value_name = "off|stdout|stderr|FILE")]
    pub access_log: Option<String>,
    #[arg(long, value_name = "combined|json")]
    pub access_log_format: Option<String>,
    #[arg(long, value_name = "SIZE")]
    pub access_log_max_size: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub access_log_backup: Option<String>,
    #[arg(long, value_name = "ENCODING,...")]
    pub compression: Vec<String>,
    #[arg(long, value_name = "SIZE")]
    pub compression_min_size: Option<String>,
}

impl ServeArgs {
    /// The flags as (key, value) pairs in kebab-case, for the configuration crate.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let mut put = |k: &'static str, o: &Option<String>| {
            if let Some(x) = o {
                v.push((k, x.clone()));
            }
        };
        put("app", &self.app);
        put("chdir", &self.chdir);
        put("socket-mode", &self.socket_mode);
        put("workers", &self.workers);
        put("workers-min", &self.workers_min);
        put("workers-max", &self.workers_max);
        put("workers-idle-timeout", &self.workers_idle_timeout);
        put("threads", &self.threads);
        put("venv", &self.venv);
        put("preload-immortal", &self.preload_immortal);
        put("queue-size", &self.queue_size);
        put("queue-timeout", &self.queue_timeout);
        put("timeout", &self.timeout);
        put("graceful-timeout", &self.graceful_timeout);
        put("post-buffering", &self.post_buffering);
        put("max-body-size", &self.max_body_size);
        put("script-name", &self.script_name);
        put("log-level", &self.log_level);
        put("pidfile", &self.pidfile);
        put("uid", &self.uid);
        put("gid", &self.gid);
        put("stats", &self.stats);
        put("metrics", &self.metrics);
        put("max-requests", &self.max_requests);
        put("max-requests-delta", &self.max_requests_delta);
        put("max-worker-lifetime", &self.max_worker_lifetime);
        put("reload-on-rss", &self.reload_on_rss);
        put("evil-reload-on-rss", &self.evil_reload_on_rss);
        if self.lazy_apps {
            v.push(("lazy-apps", "true".into()));
        }
        for b in &self.bind {
            v.push(("bind", b.clone()));
        }
        for f in &self.touch_reload {
            v.push(("touch-reload", f.clone()));
        }
        self.edge_pairs(&mut v);
        v
    }
}

impl ServeArgs {
    /// The edge's flags, appended to `pairs`.
    fn edge_pairs(&self, v: &mut Vec<(&'static str, String)>) {
        let single: [(&'static str, &Option<String>); 22] = [
            ("tls", &self.tls),
            ("tls-min-version", &self.tls_min_version),
            ("static-cache-size", &self.static_cache_size),
            ("static-cache-max-file", &self.static_cache_max_file),
            ("static-cache-valid", &self.static_cache_valid),
            ("security-headers", &self.security_headers),
            ("hsts", &self.hsts),
            ("server-header", &self.server_header),
            ("max-request-line", &self.max_request_line),
            ("max-header-size", &self.max_header_size),
            ("max-header-count", &self.max_header_count),
            ("header-timeout", &self.header_timeout),
            ("body-timeout", &self.body_timeout),
            ("keepalive-timeout", &self.keepalive_timeout),
            ("max-connections", &self.max_connections),
            ("title-case-headers", &self.title_case_headers),
            ("proxy-headers", &self.proxy_headers),
            ("access-log", &self.access_log),
            ("access-log-format", &self.access_log_format),
            ("access-log-max-size", &self.access_log_max_size),
            ("access-log-backup", &self.access_log_backup),
            ("compression-min-size", &self.compression_min_size),
        ];
        for (key, value) in single {
            if let Some(x) = value {
                v.push((key, x.clone()));
            }
        }
        let lists: [(&'static str, &Vec<String>); 7] = [
            ("tls-cert", &self.tls_cert),
            ("tls-key", &self.tls_key),
            ("redirect-http", &self.redirect_http),
            ("static", &self.static_mounts),
            ("header", &self.header),
            ("forwarded-allow-ips", &self.forwarded_allow_ips),
            ("compression", &self.compression),
        ];
        for (key, items) in lists {
            v.extend(items.iter().map(|x| (key, x.clone())));
        }
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The server's stats address: HOST:PORT or unix:/path.
    pub addr: String,
    /// Redraw every SECONDS, like top.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<f64>,
    /// Print the raw JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Which server to signal: its pid, or the pidfile it wrote (`--pidfile`).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SignalArgs {
    /// The main process's pid.
    pub pid: Option<i32>,
    /// The server's pidfile (its `--pidfile`).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: SignalArgs,
    /// Stop at once (SIGQUIT): in-flight requests are cut off. Default: SIGTERM, which lets
    /// them finish within the server's graceful timeout.
    #[arg(long)]
    pub fast: bool,
}

/// Flags of the hidden `worker` command, written by the pool.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub module: String,
    #[arg(long)]
    pub attr: String,
    #[arg(long)]
    pub call: Option<String>,
    #[arg(long)]
    pub app_dir: Option<String>,
    #[arg(long)]
    pub venv: Option<PathBuf>,
    #[arg(long)]
    pub multithread: bool,
    #[arg(long)]
    pub multiprocess: bool,
    #[arg(long, default_value = "info")]
    pub log_level: String,
    #[arg(long)]
    pub fork_server: bool,
    #[arg(long)]
    pub control_fd: Option<i32>,
    #[arg(long, value_delimiter = ',')]
    pub slot_fds: Vec<i32>,
    /// The lazy worker's id, for its process title.
    #[arg(long)]
    pub worker_id: Option<u32>,
    /// Fork server: make the objects the import left immortal before forking.
    #[arg(long)]
    pub immortal: bool,
    /// Switch to this uid (and `--gid`, `--groups`) before anything else: the server's
    /// `uid`/`gid`, resolved to numbers by `serve`.
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<u32>,
}

/// Parses the command line, with each option's help taken from the option table.
pub fn parse() -> Result<Cli, clap::Error> {
    // `--version` also says which CPython is embedded and how it is linked (asked of the
    // dynamic linker). Built once per process; clap keeps a `&'static str`.
    let version: &'static str = Box::leak(
        format!(
            "{}\n{}",
            env!("CARGO_PKG_VERSION"),
            flaskhost_worker::python_description()
        )
        .into_boxed_str(),
    );
    let cmd = Cli::command()
        .long_version(version)
        .mut_subcommand("serve", |sub| {
            let mut sub = sub;
            for info in flaskhost_config::OPTIONS {
                let key = info.key;
                let id = sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(key))
                    .map(|a| a.get_id().clone());
                if let Some(id) = id {
                    sub = sub.mut_arg(id, |a| a.help(info.summary()));
                }
            }
            sub
        });
    let matches = cmd.try_get_matches()?;
    Cli::from_arg_matches(&matches)
}
