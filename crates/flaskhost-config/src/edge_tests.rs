//! Tests of the edge options: defaults, the forms of each source, and the checks.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{
    Encoding, IpNet, LogFormat, LogTarget, Options, ServeConfig, Sources, SymlinkPolicy, TlsVersion,
};

fn load_text(
    toml: &str,
    env: &[(&str, &str)],
    cli: &[(&'static str, &str)],
) -> Result<ServeConfig, String> {
    let dir = std::env::temp_dir().join(format!(
        "flaskhost-edge-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("flaskhost.toml");
    std::fs::write(&file, format!("app = \"wsgi:app\"\n{toml}")).expect("write");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let result = crate::load::load_in(
        Sources {
            file: Some(&file),
            env: &env,
            cli: Options::default(),
            cli_text: cli.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        },
        &dir,
    )
    .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[test]
fn edge_defaults_follow_nginx() {
    let config = load_text("", &[], &[]).expect("load");
    let edge = &config.edge;
    assert_eq!(edge.tls, None);
    assert!(edge.redirect_http.is_empty());
    assert!(edge.static_mounts.is_empty());
    assert!(edge.headers.security_headers);
    assert_eq!(edge.headers.hsts.as_deref(), Some("max-age=31536000"));
    assert_eq!(edge.headers.server, None);
    assert_eq!(edge.limits.max_request_line, 8 * 1024);
    assert_eq!(edge.limits.max_header_size, 32 * 1024);
    assert_eq!(edge.limits.max_header_count, 100);
    assert_eq!(edge.limits.header_timeout, Duration::from_secs(60));
    assert_eq!(edge.limits.body_timeout, Duration::from_secs(60));
    assert_eq!(edge.limits.keepalive_timeout, Duration::from_secs(75));
    assert!(edge.forwarded_allow_ips.is_empty());
    assert!(!edge.proxy_headers);
    assert!(!edge.title_case_headers);
    assert_eq!(edge.access_log, None);
    assert_eq!(edge.compression, None);
}

#[test]
fn title_case_headers_from_every_source() {
    let file = load_text("title-case-headers = true", &[], &[]).expect("file");
    assert!(file.edge.title_case_headers);
    let env = load_text("", &[("FLASKHOST_TITLE_CASE_HEADERS", "1")], &[]).expect("env");
    assert!(env.edge.title_case_headers);
    let cli = load_text(
        "title-case-headers = true",
        &[],
        &[("title-case-headers", "false")],
    )
    .expect("cli");
    assert!(!cli.edge.title_case_headers);
    let err = load_text("title-case-headers = \"maybe\"", &[], &[]).expect_err("not a bool");
    assert!(err.contains("title-case-headers"), "{err}");
}

#[test]
fn static_mounts_from_every_source() {
    let file = r#"static = ["/static/=./static", { url = "/favicon.ico", path = "./static/favicon.ico", expires = "30d", cache-control = "public, immutable", access-log = false, symlinks = "never", dotfiles = true, precompressed = false }]"#;
    let config = load_text(file, &[], &[]).expect("load");
    let mounts = &config.edge.static_mounts;
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].url, "/static", "the trailing slash is dropped");
    assert_eq!(mounts[0].path, PathBuf::from("./static"));
    assert!(mounts[0].access_log && !mounts[0].dotfiles && mounts[0].precompressed);
    assert_eq!(mounts[0].symlinks, SymlinkPolicy::Inside);
    assert_eq!(mounts[1].expires, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(
        mounts[1].cache_control.as_deref(),
        Some("public, immutable")
    );
    assert!(!mounts[1].access_log && mounts[1].dotfiles && !mounts[1].precompressed);
    assert_eq!(mounts[1].symlinks, SymlinkPolicy::Never);

    let env = load_text("", &[("FLASKHOST_STATIC", "/a=./a,/b=/srv/b")], &[]).expect("env");
    assert_eq!(
        env.edge
            .static_mounts
            .iter()
            .map(|m| m.url.as_str())
            .collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    let cli = load_text(file, &[], &[("static", "/c=./c"), ("static", "/d=./d")]).expect("cli");
    assert_eq!(
        cli.edge
            .static_mounts
            .iter()
            .map(|m| m.url.as_str())
            .collect::<Vec<_>>(),
        ["/c", "/d"]
    );
    assert_eq!(cli.edge.static_mounts[0].path, Path::new("./c"));
}

#[test]
fn bad_static_mounts_are_named() {
    for (toml, needle) in [
        (r#"static = ["static=./s"]"#, "must start with /"),
        (r#"static = ["/=./s"]"#, "hide the app"),
        (r#"static = ["/a/../b=./s"]"#, "plain path"),
        (r#"static = ["/a%2e=./s"]"#, "plain path"),
        (r#"static = ["/a"]"#, "URL=PATH"),
        (r#"static = ["/a=./s", "/a/=./t"]"#, "mounted twice"),
        (
            r#"static = [{ url = "/a", path = "./s", symlinks = "maybe" }]"#,
            "inside, follow, never",
        ),
        (
            r#"static = [{ url = "/a", path = "./s", expire = "1d" }]"#,
            "expire",
        ),
        (
            r#"static = [{ url = "/a", path = "./s", expires = "soon" }]"#,
            "duration",
        ),
    ] {
        let err = load_text(toml, &[], &[]).expect_err(toml);
        assert!(
            err.contains("`static`") && err.contains(needle),
            "{toml}: {err}"
        );
    }
}

#[test]
fn tls_options() {
    let config = load_text(r#"tls-cert = ["a.pem", "b.pem"]"#, &[], &[]).expect("load");
    let tls = config.edge.tls.expect("tls on");
    assert_eq!(tls.certs.len(), 2);
    assert_eq!(
        tls.certs[1].key,
        PathBuf::from("b.pem"),
        "the key defaults to the cert file"
    );
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(!tls.self_signed);

    let config = load_text(
        "",
        &[],
        &[("tls", "self-signed"), ("tls-min-version", "1.3")],
    )
    .expect("load");
    let tls = config.edge.tls.expect("tls on");
    assert!(tls.self_signed && tls.certs.is_empty());
    assert_eq!(tls.min_version, TlsVersion::Tls13);

    let config = load_text(r#"tls-cert = "a.pem""#, &[], &[("tls", "off")]).expect("off wins");
    assert_eq!(config.edge.tls, None);

    for (toml, needle) in [
        (r#"tls = "on""#, "needs a certificate"),
        (r#"tls = "yes""#, "on, off, self-signed"),
        (
            "tls-cert = [\"a\", \"b\"]\ntls-key = [\"k\"]",
            "1 keys for 2",
        ),
        (r#"tls-key = ["k"]"#, "without a certificate"),
        (r#"tls-min-version = "1.1""#, "not a TLS version"),
        (
            "tls = \"self-signed\"\nbind = \"unix:/tmp/x.sock\"",
            "Unix socket",
        ),
    ] {
        let err = load_text(toml, &[], &[]).expect_err(toml);
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn headers_from_list_table_and_env_lines() {
    let config = load_text(
        r#"header = ["Permissions-Policy: camera=(), microphone=()", "X-Frame-Options:"]"#,
        &[],
        &[],
    )
    .expect("load");
    assert_eq!(
        config.edge.headers.set,
        [
            (
                "Permissions-Policy".to_owned(),
                "camera=(), microphone=()".to_owned()
            ),
            ("X-Frame-Options".to_owned(), String::new())
        ]
    );
    let config = load_text(r#"header = { X-A = "1", X-B = "2, 3" }"#, &[], &[]).expect("table");
    assert_eq!(config.edge.headers.set.len(), 2);
    let config = load_text("", &[("FLASKHOST_HEADER", "X-A: 1, 2\nX-B: 3\n")], &[]).expect("env");
    assert_eq!(
        config.edge.headers.set[0],
        ("X-A".to_owned(), "1, 2".to_owned())
    );
    assert_eq!(
        config.edge.headers.set[1],
        ("X-B".to_owned(), "3".to_owned())
    );
    let config =
        load_text("hsts = \"off\"\nserver-header = \"flaskhost\"", &[], &[]).expect("load");
    assert_eq!(config.edge.headers.hsts, None);
    assert_eq!(config.edge.headers.server.as_deref(), Some("flaskhost"));

    for (toml, needle) in [
        (r#"header = ["NoColon"]"#, "Name: value"),
        (r#"header = ["Bad Name: x"]"#, "header name"),
        ("header = [\"X-A: a\\r\\nX-Injected: b\"]", "header value"),
    ] {
        let err = load_text(toml, &[], &[]).expect_err(toml);
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn limits_are_checked() {
    for (toml, needle) in [
        ("max-request-line = 10", "too small"),
        ("max-header-count = 0", "out of range"),
        ("header-timeout = 0", "more than zero"),
        ("max-connections = 0", "at least 1"),
    ] {
        let err = load_text(toml, &[], &[]).expect_err(toml);
        assert!(err.contains(needle), "{toml}: {err}");
    }
    let config = load_text("keepalive-timeout = 0", &[], &[]).expect("no keep-alive is allowed");
    assert_eq!(config.edge.limits.keepalive_timeout, Duration::ZERO);
}

#[test]
fn forwarded_allow_ips_and_networks() {
    let config = load_text(
        "",
        &[],
        &[
            ("forwarded-allow-ips", "10.0.0.0/8, ::1"),
            ("forwarded-allow-ips", "192.168.1.7"),
        ],
    )
    .expect("load");
    let nets = &config.edge.forwarded_allow_ips;
    assert_eq!(nets.len(), 3);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert!(nets[0].contains(ip("10.1.2.3")));
    assert!(
        nets[0].contains(ip("::ffff:10.1.2.3")),
        "IPv4-mapped addresses match"
    );
    assert!(!nets[0].contains(ip("11.0.0.1")));
    assert!(nets[1].contains(ip("::1")) && !nets[1].contains(ip("::2")));
    assert!(nets[2].contains(ip("192.168.1.7")) && !nets[2].contains(ip("192.168.1.8")));
    let any = load_text("forwarded-allow-ips = \"*\"", &[], &[]).expect("any");
    assert!(
        any.edge
            .forwarded_allow_ips
            .iter()
            .any(|n| n.contains(ip("203.0.113.9")))
    );
    assert!(
        any.edge
            .forwarded_allow_ips
            .iter()
            .any(|n| n.contains(ip("2001:db8::1")))
    );
    assert!(IpNet::parse("10.0.0.0/33").is_err());
    let err = load_text("forwarded-allow-ips = [\"10.0.0/8\"]", &[], &[]).expect_err("bad");
    assert!(err.contains("forwarded-allow-ips"), "{err}");
}

#[test]
fn access_log_and_compression() {
    let config = load_text(
        "access-log = \"/var/log/a.log\"\naccess-log-format = \"json\"\naccess-log-max-size = \"10M\"",
        &[],
        &[],
    )
    .expect("load");
    let log = config.edge.access_log.expect("on");
    assert_eq!(log.target, LogTarget::File("/var/log/a.log".into()));
    assert_eq!(log.format, LogFormat::Json);
    assert_eq!(log.max_size, Some(10 << 20));
    let err = load_text(
        "access-log = \"stdout\"\naccess-log-max-size = \"1M\"",
        &[],
        &[],
    )
    .expect_err("rotate stdout");
    assert!(err.contains("file path"), "{err}");

    let config =
        load_text("", &[("FLASKHOST_COMPRESSION", "zstd,br,gzip,gzip")], &[]).expect("load");
    let c = config.edge.compression.expect("on");
    assert_eq!(
        c.encodings,
        [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
    );
    assert_eq!(c.min_size, 1024);
    let off = load_text("compression = [\"off\"]", &[], &[]).expect("off");
    assert_eq!(off.edge.compression, None);
    let err = load_text("compression = \"deflate\"", &[], &[]).expect_err("deflate");
    assert!(err.contains("gzip, br, zstd"), "{err}");
}

#[test]
fn redirect_http_addresses() {
    let config = load_text("redirect-http = [\":80\", \"127.0.0.1:0\"]", &[], &[]).expect("load");
    assert_eq!(config.edge.redirect_http.len(), 2);
    let err = load_text("redirect-http = \"unix:/tmp/r.sock\"", &[], &[]).expect_err("unix");
    assert!(err.contains("TCP only"), "{err}");
}
