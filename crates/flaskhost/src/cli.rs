//! Command-line interface. Option help texts come from the configuration crate's table, the
//! one place every option is documented.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "flaskhost", version, about = "One binary in front of a WSGI app: HTTP edge and supervised Python workers.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Serve a WSGI app (e.g. `flaskhost serve --app wsgi:application`).
    Serve(ServeArgs),
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
    pub threads: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub venv: Option<String>,
    #[arg(long)]
    pub lazy_apps: bool,
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
        put("threads", &self.threads);
        put("venv", &self.venv);
        put("queue-size", &self.queue_size);
        put("queue-timeout", &self.queue_timeout);
        put("timeout", &self.timeout);
        put("graceful-timeout", &self.graceful_timeout);
        put("post-buffering", &self.post_buffering);
        put("max-body-size", &self.max_body_size);
        put("script-name", &self.script_name);
        put("log-level", &self.log_level);
        if self.lazy_apps {
            v.push(("lazy-apps", "true".into()));
        }
        for b in &self.bind {
            v.push(("bind", b.clone()));
        }
        v
    }
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
}

/// Parses the command line, with each option's help taken from the option table.
pub fn parse() -> Result<Cli, clap::Error> {
    let cmd = Cli::command().mut_subcommand("serve", |sub| {
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

