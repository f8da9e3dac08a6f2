//! Tests of loading: precedence, defaults, value forms per source, and errors that name the
//! key and the source. The environment is always injected and files live in a fresh
//! directory per test, so tests neither see nor change the process's environment or cwd.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::load::{ConfigFile, Merged, choose_file, load_in};
use crate::{Bind, ConfigError, OPTIONS, Options, Origin, ServeConfig, Sources};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "flaskhost-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Cleanup is best effort; a leftover temp dir must not fail a passing test.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Loads with `flaskhost.toml` discovery pointed at an empty directory, so a stray file in
/// the crate directory cannot change the result.
fn load_with(
    file: Option<&Path>,
    env: &[(String, String)],
    cli: Options,
) -> Result<ServeConfig, ConfigError> {
    let empty = TempDir::new();
    load_in(
        Sources {
            file,
            env,
            cli,
            cli_text: Vec::new(),
        },
        &empty.0,
    )
}

fn merged(file: Option<&Path>, env: &[(String, String)], cli: Options) -> Merged {
    let empty = TempDir::new();
    Merged::new(
        Sources {
            file,
            env,
            cli,
            cli_text: Vec::new(),
        },
        &empty.0,
    )
    .expect("merge")
}

fn app_only() -> Vec<(String, String)> {
    env(&[("FLASKHOST_APP", "wsgi:app")])
}

fn tcp(text: &str) -> Bind {
    Bind::Tcp(text.parse::<SocketAddr>().expect("socket address"))
}

fn error_of(result: Result<ServeConfig, ConfigError>) -> ConfigError {
    match result {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error,
    }
}

#[test]
fn defaults() {
    let config = load_with(None, &app_only(), Options::default()).expect("load");
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(config.workers.get(), cpus);
    assert_eq!(config.threads.get(), 1);
    assert_eq!(config.binds, vec![tcp("127.0.0.1:8000")]);
    assert_eq!(config.socket_mode, None);
    assert_eq!(config.chdir, None);
    assert_eq!(config.venv, None);
    assert!(!config.lazy_apps);
    assert!(config.preload_immortal);
    assert_eq!(config.queue_size, 1024);
    assert_eq!(config.queue_timeout, Duration::from_secs(30));
    assert_eq!(config.timeout, Duration::from_secs(60));
    assert_eq!(config.graceful_timeout, Duration::from_secs(30));
    assert_eq!(config.post_buffering, 64 * 1024);
    assert_eq!(config.max_body_size, 10 * 1024 * 1024);
    assert_eq!(config.script_name, "");
    assert_eq!(config.log_level, "info");
    assert_eq!(config.app.module, "wsgi");
    assert_eq!(config.app.attr, "app");
    assert_eq!(config.app.call_args, None);
}

#[test]
fn every_default_comes_from_the_table() {
    let merged = merged(None, &app_only(), Options::default());
    for info in OPTIONS {
        let expected = match info.default {
            crate::DefaultValue::Value(_) => Some(Origin::Default),
            crate::DefaultValue::Computed if info.key == "workers" => Some(Origin::Default),
            // `venv` is computed from VIRTUAL_ENV, unset here; `app` comes from the env.
            crate::DefaultValue::Computed => {
                assert_eq!(info.key, "venv", "unexpected computed default");
                None
            }
            crate::DefaultValue::Required | crate::DefaultValue::Unset => None,
        };
        if let Some(expected) = expected {
            assert_eq!(merged.origin(info.key), expected, "{}", info.key);
        }
    }
}

#[test]
fn venv_defaults_to_virtual_env() {
    let mut pairs = app_only();
    pairs.push(("VIRTUAL_ENV".into(), "/srv/venv".into()));
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.venv, Some(PathBuf::from("/srv/venv")));
    assert_eq!(
        merged(None, &pairs, Options::default()).origin("venv"),
        Origin::Env("VIRTUAL_ENV".into())
    );

    // FLASKHOST_VENV is the option itself and wins over the default.
    pairs.push(("FLASKHOST_VENV".into(), "/srv/other".into()));
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.venv, Some(PathBuf::from("/srv/other")));

    // A set-but-empty VIRTUAL_ENV is no virtualenv.
    let pairs = env(&[("FLASKHOST_APP", "wsgi:app"), ("VIRTUAL_ENV", "")]);
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.venv, None);
}

#[test]
fn precedence_across_all_four_layers() {
    let dir = TempDir::new();
    let file = dir.write(
        "flaskhost.toml",
        r#"
            app = "fromfile:app"
            workers = 2
            threads = 2
            queue-size = 10
            timeout = "10s"
        "#,
    );
    let pairs = env(&[
        ("FLASKHOST_THREADS", "3"),
        ("FLASKHOST_QUEUE_SIZE", "20"),
        ("FLASKHOST_APP", "fromenv:app"),
    ]);
    let cli = Options {
        queue_size: Some(30),
        app: Some("fromcli:app".into()),
        ..Options::default()
    };
    let config = load_with(Some(&file), &pairs, cli.clone()).expect("load");
    assert_eq!(config.workers.get(), 2, "file over default");
    assert_eq!(config.timeout, Duration::from_secs(10), "file over default");
    assert_eq!(config.threads.get(), 3, "env over file");
    assert_eq!(config.queue_size, 30, "cli over env over file");
    assert_eq!(config.app.module, "fromcli", "cli over env over file");
    assert_eq!(config.graceful_timeout, Duration::from_secs(30), "default");

    let merged = merged(Some(&file), &pairs, cli);
    assert_eq!(merged.origin("graceful-timeout"), Origin::Default);
    assert_eq!(merged.origin("workers"), Origin::File(file.clone()));
    assert_eq!(merged.origin("timeout"), Origin::File(file.clone()));
    assert_eq!(
        merged.origin("threads"),
        Origin::Env("FLASKHOST_THREADS".into())
    );
    assert_eq!(
        merged.origin("queue-size"),
        Origin::Cli("--queue-size".into())
    );
    assert_eq!(merged.origin("app"), Origin::Cli("--app".into()));
}

#[test]
fn environment_values_are_strings() {
    let pairs = env(&[
        (
            "FLASKHOST_APP",
            "myproj.wsgi:create_app('prod', debug=False)",
        ),
        ("FLASKHOST_CHDIR", "/var/www/myapp"),
        ("FLASKHOST_BIND", "unix:/tmp/a.sock, :0,,[::1]:0"),
        ("FLASKHOST_SOCKET_MODE", "660"),
        ("FLASKHOST_WORKERS", "4"),
        ("FLASKHOST_THREADS", " 8 "),
        ("FLASKHOST_LAZY_APPS", "yes"),
        ("FLASKHOST_QUEUE_SIZE", "0"),
        ("FLASKHOST_QUEUE_TIMEOUT", "500ms"),
        ("FLASKHOST_TIMEOUT", "1m30s"),
        ("FLASKHOST_GRACEFUL_TIMEOUT", "2.5"),
        ("FLASKHOST_POST_BUFFERING", "2M"),
        ("FLASKHOST_MAX_BODY_SIZE", "1M"),
        ("FLASKHOST_SCRIPT_NAME", "/api"),
        ("FLASKHOST_LOG_LEVEL", "warn,flaskhost=debug"),
    ]);
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.app.module, "myproj.wsgi");
    assert_eq!(config.app.attr, "create_app");
    assert_eq!(config.app.call_args.as_deref(), Some("'prod', debug=False"));
    assert_eq!(config.chdir, Some(PathBuf::from("/var/www/myapp")));
    assert_eq!(
        config.binds,
        vec![
            Bind::Unix("/tmp/a.sock".into()),
            tcp("0.0.0.0:0"),
            tcp("[::1]:0")
        ]
    );
    assert_eq!(config.socket_mode, Some(0o660));
    assert_eq!(config.workers.get(), 4);
    assert_eq!(config.threads.get(), 8);
    assert!(config.lazy_apps);
    assert_eq!(config.queue_size, 0);
    assert_eq!(config.queue_timeout, Duration::from_millis(500));
    assert_eq!(config.timeout, Duration::from_secs(90));
    assert_eq!(config.graceful_timeout, Duration::from_millis(2500));
    assert_eq!(config.max_body_size, 1 << 20);
    assert_eq!(config.post_buffering, 1 << 20, "clamped to max-body-size");
    assert_eq!(config.script_name, "/api");
    assert_eq!(config.log_level, "warn,flaskhost=debug");
}

#[test]
fn file_values_are_typed() {
    let dir = TempDir::new();
    let file = dir.write(
        "flaskhost.toml",
        r#"
            app = "wsgi:application"
            bind = "localhost:0"
            socket-mode = 0o660
            lazy-apps = true
            timeout = 1.5
            queue-timeout = 5
            post-buffering = 1024
            max-body-size = "50M"
        "#,
    );
    let config = load_with(Some(&file), &[], Options::default()).expect("load");
    assert_eq!(config.binds, vec![tcp("127.0.0.1:0")]);
    assert_eq!(config.socket_mode, Some(0o660));
    assert!(config.lazy_apps);
    assert_eq!(config.timeout, Duration::from_millis(1500));
    assert_eq!(config.queue_timeout, Duration::from_secs(5));
    assert_eq!(config.post_buffering, 1024);
    assert_eq!(config.max_body_size, 50 << 20);

    // A string socket mode in the file is octal, like everywhere else.
    let file = dir.write(
        "string-mode.toml",
        "app = \"wsgi:app\"\nsocket-mode = \"0660\"\n",
    );
    let config = load_with(Some(&file), &[], Options::default()).expect("load");
    assert_eq!(config.socket_mode, Some(0o660));
}

#[test]
fn cli_options_round_trip_through_the_merge() {
    let cli = Options {
        app: Some("wsgi:create_app()".into()),
        chdir: Some("/srv/app".into()),
        bind: Some(vec!["127.0.0.1:0".into(), "unix:/run/x.sock".into()]),
        socket_mode: Some(0o600),
        workers: Some(3),
        threads: Some(1024),
        venv: Some("/srv/venv".into()),
        lazy_apps: Some(true),
        preload_immortal: Some(false),
        queue_size: Some(7),
        queue_timeout: Some(Duration::from_nanos(1_500_000_001)),
        timeout: Some(Duration::from_millis(250)),
        graceful_timeout: Some(Duration::ZERO),
        post_buffering: Some(100),
        max_body_size: Some(200),
        script_name: Some("/a/b".into()),
        log_level: Some("debug".into()),
        static_mounts: Some(vec![crate::StaticMountOptions {
            expires: Some(Duration::from_secs(86_400)),
            cache_control: Some("public".into()),
            ..crate::StaticMountOptions::parse("/s=/srv/static").expect("mount")
        }]),
        header_timeout: Some(Duration::from_millis(1500)),
        ..Options::default()
    };
    let config = load_with(None, &[], cli).expect("load");
    assert_eq!(config.app.call_args.as_deref(), Some(""));
    assert_eq!(config.chdir, Some(PathBuf::from("/srv/app")));
    assert_eq!(
        config.binds,
        vec![tcp("127.0.0.1:0"), Bind::Unix("/run/x.sock".into())]
    );
    assert_eq!(config.socket_mode, Some(0o600));
    assert_eq!(config.workers.get(), 3);
    assert_eq!(config.threads.get(), 1024);
    assert_eq!(config.venv, Some(PathBuf::from("/srv/venv")));
    assert!(config.lazy_apps);
    assert!(!config.preload_immortal);
    assert_eq!(config.queue_size, 7);
    assert_eq!(config.queue_timeout, Duration::from_nanos(1_500_000_001));
    assert_eq!(config.timeout, Duration::from_millis(250));
    assert_eq!(config.graceful_timeout, Duration::ZERO);
    assert_eq!(config.post_buffering, 100);
    assert_eq!(config.max_body_size, 200);
    assert_eq!(config.script_name, "/a/b");
    assert_eq!(config.log_level, "debug");
    let mount = &config.edge.static_mounts[0];
    assert_eq!(
        (mount.url.as_str(), mount.path.as_path()),
        ("/s", Path::new("/srv/static"))
    );
    assert_eq!(mount.expires, Some(Duration::from_secs(86_400)));
    assert_eq!(mount.cache_control.as_deref(), Some("public"));
    assert_eq!(
        config.edge.limits.header_timeout,
        Duration::from_millis(1500)
    );
}

#[test]
fn every_options_field_is_in_the_table() {
    // Listing every field here makes the compiler point at this test when one is added.
    let all = Options {
        app: Some(String::new()),
        chdir: Some(PathBuf::new()),
        bind: Some(Vec::new()),
        socket_mode: Some(0),
        workers: Some(0),
        threads: Some(0),
        venv: Some(PathBuf::new()),
        lazy_apps: Some(false),
        preload_immortal: Some(false),
        queue_size: Some(0),
        queue_timeout: Some(Duration::ZERO),
        timeout: Some(Duration::ZERO),
        graceful_timeout: Some(Duration::ZERO),
        post_buffering: Some(0),
        max_body_size: Some(0),
        script_name: Some(String::new()),
        log_level: Some(String::new()),
        pidfile: Some(PathBuf::new()),
        uid: Some(String::new()),
        gid: Some(String::new()),
        tls: Some(String::new()),
        tls_cert: Some(Vec::new()),
        tls_key: Some(Vec::new()),
        tls_min_version: Some(String::new()),
        redirect_http: Some(Vec::new()),
        static_mounts: Some(Vec::new()),
        static_cache_size: Some(0),
        static_cache_max_file: Some(0),
        static_cache_valid: Some(Duration::from_secs(60)),
        security_headers: Some(true),
        header: Some(Vec::new()),
        hsts: Some(String::new()),
        server_header: Some(String::new()),
        max_request_line: Some(0),
        max_header_size: Some(0),
        max_header_count: Some(0),
        header_timeout: Some(Duration::ZERO),
        body_timeout: Some(Duration::ZERO),
        keepalive_timeout: Some(Duration::ZERO),
        max_connections: Some(0),
        title_case_headers: Some(false),
        forwarded_allow_ips: Some(Vec::new()),
        proxy_headers: Some(false),
        access_log: Some(String::new()),
        access_log_format: Some(String::new()),
        access_log_max_size: Some(0),
        access_log_backup: Some(PathBuf::new()),
        compression: Some(Vec::new()),
        compression_min_size: Some(0),
        stats: Some("127.0.0.1:9191".into()),
        touch_reload: Some(vec!["reload.txt".into()]),
        workers_min: Some(1),
        workers_max: Some(4),
        workers_idle_timeout: Some(Duration::from_secs(30)),
        metrics: Some("127.0.0.1:9100".into()),
        max_requests: Some(1000),
        max_requests_delta: Some(100),
        max_worker_lifetime: Some(Duration::from_secs(3600)),
        reload_on_rss: Some(200 << 20),
        evil_reload_on_rss: Some(400 << 20),
    };
    let figment::value::Value::Dict(_, dict) =
        figment::value::Value::serialize(&all).expect("serialize")
    else {
        panic!("Options did not serialize to a map");
    };
    let mut serialized: Vec<&str> = dict.keys().map(String::as_str).collect();
    let mut table: Vec<&str> = OPTIONS.iter().map(|info| info.key).collect();
    serialized.sort_unstable();
    table.sort_unstable();
    assert_eq!(serialized, table);

    // Nothing is serialized for fields that are not set.
    let figment::value::Value::Dict(_, empty) =
        figment::value::Value::serialize(Options::default()).expect("serialize")
    else {
        panic!("Options did not serialize to a map");
    };
    assert!(empty.is_empty());
}

#[test]
fn table_entries_are_complete() {
    for info in OPTIONS {
        assert!(!info.summary().is_empty(), "{} has no meaning", info.key);
        assert!(
            !info.default_doc.is_empty(),
            "{} has no default doc",
            info.key
        );
        assert!(
            info.example.starts_with(&format!("{} = ", info.key)),
            "{}: the example must set the option: {}",
            info.key,
            info.example
        );
        assert_eq!(
            info.key.to_ascii_lowercase(),
            info.key,
            "keys are kebab-case"
        );
        assert!(!info.key.contains('_'), "keys are kebab-case");
    }
    let queue = crate::option_info("queue-size").expect("queue-size");
    assert_eq!(queue.cli_flag(), "--queue-size");
    assert_eq!(queue.env_var(), "FLASKHOST_QUEUE_SIZE");
}

#[test]
fn adaptive_workers_start_at_the_minimum_and_reject_fixed_workers() {
    let mut pairs = app_only();
    pairs.push(("FLASKHOST_WORKERS_MAX".into(), "6".into()));
    pairs.push(("FLASKHOST_WORKERS_MIN".into(), "2".into()));
    let cfg = load_with(None, &pairs, Options::default()).expect("adaptive workers load");
    assert_eq!(cfg.workers.get(), 2);
    assert_eq!(cfg.lifecycle.workers_max.map(|n| n.get()), Some(6));
    assert_eq!(cfg.lifecycle.workers_idle_timeout, Duration::from_secs(15));

    let mut both = pairs.clone();
    both.push(("FLASKHOST_WORKERS".into(), "3".into()));
    let error = error_of(load_with(None, &both, Options::default())).to_string();
    assert!(
        error.contains("`workers`") && error.contains("workers-max"),
        "{error}"
    );

    let mut inverted = app_only();
    inverted.push(("FLASKHOST_WORKERS_MAX".into(), "2".into()));
    inverted.push(("FLASKHOST_WORKERS_MIN".into(), "3".into()));
    let error = error_of(load_with(None, &inverted, Options::default())).to_string();
    assert!(
        error.contains("`workers-min`") && error.contains("more than"),
        "{error}"
    );

    let mut alone = app_only();
    alone.push(("FLASKHOST_WORKERS_MIN".into(), "2".into()));
    let error = error_of(load_with(None, &alone, Options::default())).to_string();
    assert!(
        error.contains("`workers-min`") && error.contains("FLASKHOST_WORKERS_MIN"),
        "{error}"
    );
}

#[test]
fn every_table_example_loads() {
    for info in OPTIONS {
        let dir = TempDir::new();
        let mut text = format!("{}\n", info.example);
        if info.key != "app" {
            text.push_str("app = \"wsgi:app\"\n");
        }
        // Options that only mean something together with another one.
        if info.key == "tls-key" {
            text.push_str("tls-cert = [\"cert.pem\"]\n");
        }
        if info.key == "workers-min" {
            text.push_str("workers-max = 4\n");
        }
        let file = dir.write("flaskhost.toml", &text);
        if let Err(error) = load_with(Some(&file), &[], Options::default()) {
            panic!("example of {} does not load: {error}", info.key);
        }
    }
}

#[test]
fn invalid_value_from_the_environment_names_variable_and_key() {
    let mut pairs = app_only();
    pairs.push(("FLASKHOST_TIMEOUT".into(), "abc".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(
        error.to_string(),
        "invalid value for `timeout` from environment variable FLASKHOST_TIMEOUT: \"abc\" is not \
         a duration (examples: 30, 30s, 500ms, 1m30s)"
    );
    assert_eq!(error.key(), Some("timeout"));
    assert_eq!(
        error.origin(),
        Some(&Origin::Env("FLASKHOST_TIMEOUT".into()))
    );

    // Range checks after the merge are attributed the same way.
    let mut pairs = app_only();
    pairs.push(("FLASKHOST_SCRIPT_NAME".into(), "api".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(
        error.to_string(),
        "invalid value for `script-name` from environment variable FLASKHOST_SCRIPT_NAME: \
         \"api\" must start with `/` (example: /api)"
    );

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_LAZY_APPS".into(), "maybe".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert!(
        error.to_string().starts_with(
            "invalid value for `lazy-apps` from environment variable FLASKHOST_LAZY_APPS: \"maybe\""
        ),
        "{error}"
    );
}

#[test]
fn invalid_value_from_the_file_names_path_and_key() {
    let dir = TempDir::new();
    let file = dir.write("flaskhost.toml", "app = \"wsgi:app\"\ntimeout = \"abc\"\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert_eq!(
        error.to_string(),
        format!(
            "invalid value for `timeout` in {}: \"abc\" is not a duration (examples: 30, 30s, \
             500ms, 1m30s)",
            file.display()
        )
    );
    assert_eq!(error.origin(), Some(&Origin::File(file.clone())));

    let file = dir.write("workers.toml", "app = \"wsgi:app\"\nworkers = 0\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert_eq!(
        error.to_string(),
        format!(
            "invalid value for `workers` in {}: 0 is not allowed; at least 1 worker is needed",
            file.display()
        )
    );

    let file = dir.write("type.toml", "app = \"wsgi:app\"\nworkers = true\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert!(
        error.to_string().starts_with(&format!(
            "invalid value for `workers` in {}: invalid type: found bool true, expected a whole number",
            file.display()
        )),
        "{error}"
    );

    let file = dir.write(
        "bind.toml",
        "app = \"wsgi:app\"\nbind = [\"127.0.0.1:0\", 5]\n",
    );
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert!(
        error.to_string().starts_with(&format!(
            "invalid value for `bind` in {}: item 2: invalid type",
            file.display()
        )),
        "{error}"
    );

    let file = dir.write("mode.toml", "app = \"wsgi:app\"\nsocket-mode = 660\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert!(
        error.to_string().contains("0o1224 is above 0o777"),
        "{error}"
    );

    let file = dir.write("app.toml", "app = \"wsgi\"\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert!(
        error.to_string().starts_with(&format!(
            "invalid value for `app` in {}: \"wsgi\" names no attribute",
            file.display()
        )),
        "{error}"
    );
}

#[test]
fn invalid_value_from_the_command_line_names_flag_and_key() {
    let cli = Options {
        threads: Some(0),
        ..Options::default()
    };
    let error = error_of(load_with(None, &app_only(), cli));
    assert_eq!(
        error.to_string(),
        "invalid value for `threads` from command-line flag --threads: 0 is out of range; \
         expected 1 to 1024"
    );
    assert_eq!(error.origin(), Some(&Origin::Cli("--threads".into())));

    let cli = Options {
        timeout: Some(Duration::ZERO),
        ..Options::default()
    };
    let error = error_of(load_with(None, &app_only(), cli));
    assert_eq!(
        error.to_string(),
        "invalid value for `timeout` from command-line flag --timeout: 0 is not allowed; the \
         timeout must be more than zero"
    );

    let cli = Options {
        bind: Some(vec!["example.com:80".into()]),
        ..Options::default()
    };
    let error = error_of(load_with(None, &app_only(), cli));
    assert!(
        error.to_string().starts_with(
            "invalid value for `bind` from command-line flag --bind: \"example.com:80\" uses the \
             host name"
        ),
        "{error}"
    );

    let cli = Options {
        socket_mode: Some(0o1777),
        ..Options::default()
    };
    let error = error_of(load_with(None, &app_only(), cli));
    assert!(
        error.to_string().starts_with(
            "invalid value for `socket-mode` from command-line flag --socket-mode: 0o1777 is \
             above 0o777"
        ),
        "{error}"
    );
}

#[test]
fn a_later_source_fixes_an_earlier_bad_value() {
    // Only the merged value is checked, so a bad value that is overridden is not an error.
    let dir = TempDir::new();
    let file = dir.write("flaskhost.toml", "app = \"wsgi:app\"\nthreads = 0\n");
    let pairs = env(&[("FLASKHOST_THREADS", "4")]);
    let config = load_with(Some(&file), &pairs, Options::default()).expect("load");
    assert_eq!(config.threads.get(), 4);
}

#[test]
fn bind_lists() {
    let with_binds = |binds: &[&str]| {
        let cli = Options {
            bind: Some(binds.iter().map(|b| (*b).to_owned()).collect()),
            ..Options::default()
        };
        load_with(None, &app_only(), cli)
    };
    let config = with_binds(&[":0", ":0", "unix:/tmp/a.sock"]).expect("port 0 may repeat");
    assert_eq!(config.binds.len(), 3);
    let error = error_of(with_binds(&["127.0.0.1:8000", "localhost:8000"]));
    assert!(
        error
            .to_string()
            .contains("\"localhost:8000\" is listed twice"),
        "{error}"
    );
    let error = error_of(with_binds(&[]));
    assert!(error.to_string().contains("the list is empty"), "{error}");

    // An environment variable with only commas is an empty list, not the default.
    let mut pairs = app_only();
    pairs.push(("FLASKHOST_BIND".into(), " , ".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert!(
        error.to_string().starts_with(
            "invalid value for `bind` from environment variable FLASKHOST_BIND: the list is empty"
        ),
        "{error}"
    );
}

#[test]
fn unknown_key_in_the_file() {
    let dir = TempDir::new();
    let file = dir.write("flaskhost.toml", "app = \"wsgi:app\"\nwrokers = 4\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert_eq!(
        error.to_string(),
        format!(
            "unknown option `wrokers` in {}; did you mean `workers`?",
            file.display()
        )
    );

    // Profiles are not supported, so a `[default]` table is just an unknown key.
    let file = dir.write("profiles.toml", "[default]\napp = \"wsgi:app\"\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    assert_eq!(
        error.to_string(),
        format!("unknown option `default` in {}", file.display())
    );
}

#[test]
fn unknown_key_in_the_environment() {
    let mut pairs = app_only();
    pairs.push(("FLASKHOST_WROKERS".into(), "4".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(
        error.to_string(),
        "unknown option `wrokers` from environment variable FLASKHOST_WROKERS; did you mean \
         FLASKHOST_WORKERS (`workers`)?"
    );

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_FOO".into(), "1".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(
        error.to_string(),
        "unknown option `foo` from environment variable FLASKHOST_FOO"
    );
    assert_eq!(error.origin(), Some(&Origin::Env("FLASKHOST_FOO".into())));
}

#[test]
fn script_variables_are_ignored() {
    let dir = TempDir::new();
    let config_file = dir.write("named.toml", "app = \"wsgi:app\"\n");
    let pairs = env(&[
        ("FLASKHOST_BIN", "/repo/target/release/flaskhost"),
        ("FLASKHOST_PYTHON", "/usr/bin/python3.12"),
        ("FLASKHOST_VENV_DIR", "/repo/.venv"),
        (
            "FLASKHOST_CONFIG",
            config_file.to_str().expect("utf-8 temp path"),
        ),
        ("OTHER_VARIABLE", "x"),
    ]);
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.app.module, "wsgi");
}

#[test]
fn missing_app() {
    let error = error_of(load_with(None, &[], Options::default()));
    assert!(
        matches!(error, ConfigError::MissingRequired { key: "app" }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("missing required option `app`"),
        "{error}"
    );
}

#[test]
fn named_config_file_must_exist() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.toml");
    let error = error_of(load_with(Some(&missing), &app_only(), Options::default()));
    assert_eq!(
        error.to_string(),
        format!(
            "config file {} does not exist (named from command-line flag --config)",
            missing.display()
        )
    );

    let pairs = env(&[
        ("FLASKHOST_APP", "wsgi:app"),
        (
            "FLASKHOST_CONFIG",
            missing.to_str().expect("utf-8 temp path"),
        ),
    ]);
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(
        error.to_string(),
        format!(
            "config file {} does not exist (named from environment variable FLASKHOST_CONFIG)",
            missing.display()
        )
    );

    let error = error_of(load_with(Some(&dir.0), &app_only(), Options::default()));
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read config file {}: ", dir.0.display())),
        "{error}"
    );
}

#[test]
fn which_config_file() {
    let dir = TempDir::new();
    let empty = TempDir::new();
    let explicit = dir.write("explicit.toml", "");
    let from_env = dir.write("env.toml", "");
    let found = dir.write("flaskhost.toml", "");
    let pairs = env(&[(
        "FLASKHOST_CONFIG",
        from_env.to_str().expect("utf-8 temp path"),
    )]);

    assert_eq!(
        choose_file(Some(&explicit), &pairs, &dir.0),
        Some(ConfigFile::Named(
            explicit.clone(),
            Origin::Cli("--config".into())
        ))
    );
    assert_eq!(
        choose_file(None, &pairs, &dir.0),
        Some(ConfigFile::Named(
            from_env.clone(),
            Origin::Env("FLASKHOST_CONFIG".into())
        ))
    );
    assert_eq!(
        choose_file(None, &[], &dir.0),
        Some(ConfigFile::Found(found))
    );
    assert_eq!(choose_file(None, &[], &empty.0), None);
    let blank = env(&[("FLASKHOST_CONFIG", "")]);
    assert_eq!(choose_file(None, &blank, &empty.0), None);
}

#[test]
fn discovered_file_is_loaded() {
    let dir = TempDir::new();
    let found = dir.write("flaskhost.toml", "app = \"found:app\"\nworkers = 5\n");
    let merged = Merged::new(
        Sources {
            file: None,
            env: &[],
            cli: Options::default(),
            cli_text: Vec::new(),
        },
        &dir.0,
    )
    .expect("merge");
    assert_eq!(merged.origin("workers"), Origin::File(found));
    let config = load_in(
        Sources {
            file: None,
            env: &[],
            cli: Options::default(),
            cli_text: Vec::new(),
        },
        &dir.0,
    )
    .expect("load");
    assert_eq!(config.app.module, "found");
    assert_eq!(config.workers.get(), 5);
}

#[test]
fn unparsable_file_names_path_and_line() {
    let dir = TempDir::new();
    let file = dir.write("flaskhost.toml", "app = \"wsgi:app\"\nworkers = = 4\n");
    let error = error_of(load_with(Some(&file), &[], Options::default()));
    let ConfigError::FileInvalid { line, column, .. } = &error else {
        panic!("expected FileInvalid, got {error:?}");
    };
    assert_eq!(*line, Some(2));
    assert!(column.is_some());
    assert!(
        error.to_string().starts_with(&format!(
            "cannot parse config file {} at line 2, column ",
            file.display()
        )),
        "{error}"
    );
}

#[test]
fn cli_text_flags_parse_like_env_and_name_the_flag() {
    let env = env(&[]);
    let mut text = vec![
        ("app", "wsgi:app".to_string()),
        ("timeout", "2m".to_string()),
    ];
    text.push(("bind", "127.0.0.1:0".into()));
    text.push(("bind", "unix:/tmp/x.sock".into()));
    let cfg = load_in(
        Sources {
            file: None,
            env: &env,
            cli: Options::default(),
            cli_text: text,
        },
        &TempDir::new().0,
    )
    .expect("loads");
    assert_eq!(cfg.timeout, std::time::Duration::from_secs(120));
    assert_eq!(cfg.binds.len(), 2);

    let bad = vec![
        ("app", "wsgi:app".to_string()),
        ("workers", "many".to_string()),
    ];
    let err = load_in(
        Sources {
            file: None,
            env: &env,
            cli: Options::default(),
            cli_text: bad,
        },
        &TempDir::new().0,
    )
    .expect_err("bad flag");
    let msg = err.to_string();
    assert!(
        msg.contains("`workers`") && msg.contains("--workers"),
        "{msg}"
    );
}

#[test]
fn metrics_address_like_stats() {
    let config = load_with(None, &app_only(), Options::default()).expect("load");
    assert_eq!(config.lifecycle.metrics, None);

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_METRICS".into(), "127.0.0.1:9100".into()));
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(config.lifecycle.metrics, Some(tcp("127.0.0.1:9100")));

    let mut pairs = app_only();
    pairs.push((
        "FLASKHOST_METRICS".into(),
        "unix:/run/fh-metrics.sock".into(),
    ));
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(
        config.lifecycle.metrics,
        Some(Bind::Unix("/run/fh-metrics.sock".into()))
    );

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_METRICS".into(), "nowhere".into()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(error.key(), Some("metrics"), "{error}");
    assert_eq!(
        error.origin(),
        Some(&Origin::Env("FLASKHOST_METRICS".into()))
    );
}

#[test]
fn run_as_and_pidfile() {
    use crate::{Account, RunAs};

    let config = load_with(None, &app_only(), Options::default()).expect("load");
    assert_eq!(config.run_as, RunAs::default());
    assert_eq!(config.pidfile, None);

    // Names and ids, from each source; the origin is kept for the binary's lookup errors.
    let dir = TempDir::new();
    let file = dir.write(
        "flaskhost.toml",
        "app = \"wsgi:app\"\nuid = 33\ngid = \"www-data\"\npidfile = \"/run/fh.pid\"\n",
    );
    let config = load_with(Some(&file), &[], Options::default()).expect("load");
    assert_eq!(
        config.run_as.user,
        Some((Account::Id(33), Origin::File(file.clone())))
    );
    assert_eq!(
        config.run_as.group,
        Some((Account::Name("www-data".into()), Origin::File(file.clone())))
    );
    assert_eq!(config.pidfile, Some(PathBuf::from("/run/fh.pid")));

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_UID".into(), "nobody".into()));
    let config = load_with(None, &pairs, Options::default()).expect("load");
    assert_eq!(
        config.run_as.user,
        Some((
            Account::Name("nobody".into()),
            Origin::Env("FLASKHOST_UID".into())
        ))
    );
    assert_eq!(config.run_as.group, None);

    for (value, reason) in [
        (
            "",
            "the value is empty; give a name or a numeric id (examples: www-data, 33)",
        ),
        (
            "-1",
            "\"-1\" is negative; ids are 0 or more (examples: www-data, 33)",
        ),
        (
            "4294967295",
            "\"4294967295\" is out of range (examples: www-data, 33)",
        ),
        (
            "a b",
            "\"a b\" is not a user or group name (examples: www-data, 33)",
        ),
    ] {
        let mut pairs = app_only();
        pairs.push(("FLASKHOST_GID".into(), value.into()));
        let error = error_of(load_with(None, &pairs, Options::default()));
        assert_eq!(
            error.to_string(),
            format!("invalid value for `gid` from environment variable FLASKHOST_GID: {reason}")
        );
    }

    let mut pairs = app_only();
    pairs.push(("FLASKHOST_PIDFILE".into(), String::new()));
    let error = error_of(load_with(None, &pairs, Options::default()));
    assert_eq!(error.key(), Some("pidfile"));
}
