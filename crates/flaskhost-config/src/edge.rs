//! The edge's options (what nginx did in front of uWSGI): TLS, the HTTP→HTTPS redirect,
//! static mounts, response headers, request limits and timeouts, trusted proxies, the access
//! log and compression. Their raw forms are fields of [`Options`](crate::Options); this module
//! holds the validated types and the checks that produce them.
//!
//! Nothing here touches the file system: whether a static path is a file or a directory, and
//! whether certificate files parse, is decided by the front when it starts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::load::Merged;
use crate::{Bind, parse};

/// TLS on the TCP binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chains and their keys; the first is the default when SNI matches none.
    /// Empty with `self_signed`.
    pub certs: Vec<CertFiles>,
    /// Make a certificate for `localhost`, `127.0.0.1` and `::1` at start-up.
    pub self_signed: bool,
    pub min_version: TlsVersion,
}

/// One certificate chain file and its private key file (the same file when the key was not
/// given separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A static mount as written in one source, before validation: a `URL=PATH` string or a
/// table. Serialized back as a table, so the command line's mounts pass through the merge.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StaticMountOptions {
    pub url: String,
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none", with = "crate::de::duration")]
    pub expires: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dotfiles: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlinks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precompressed: Option<bool>,
}

/// The table form of a mount; unknown keys are errors, as at the top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct StaticMountTable {
    url: String,
    path: PathBuf,
    #[serde(default, with = "crate::de::duration")]
    expires: Option<Duration>,
    #[serde(default)]
    cache_control: Option<String>,
    #[serde(default, deserialize_with = "crate::de::flag::deserialize")]
    access_log: Option<bool>,
    #[serde(default, deserialize_with = "crate::de::flag::deserialize")]
    dotfiles: Option<bool>,
    #[serde(default)]
    symlinks: Option<String>,
    #[serde(default, deserialize_with = "crate::de::flag::deserialize")]
    precompressed: Option<bool>,
}

impl From<StaticMountTable> for StaticMountOptions {
    fn from(t: StaticMountTable) -> Self {
        StaticMountOptions {
            url: t.url,
            path: t.path,
            expires: t.expires,
            cache_control: t.cache_control,
            access_log: t.access_log,
            dotfiles: t.dotfiles,
            symlinks: t.symlinks,
            precompressed: t.precompressed,
        }
    }
}

impl StaticMountOptions {
    /// Parses the short form `URL=PATH` (`/static=./static`).
    ///
    /// # Errors
    ///
    /// A message quoting `text` when there is no `=`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((url, path)) = text.split_once('=') else {
            return Err(format!(
                "{text:?} is not URL=PATH (examples: /static=./static, /favicon.ico=./static/favicon.ico)"
            ));
        };
        Ok(StaticMountOptions {
            url: url.trim().to_owned(),
            path: PathBuf::from(path.trim()),
            expires: None,
            cache_control: None,
            access_log: None,
            dotfiles: None,
            symlinks: None,
            precompressed: None,
        })
    }
}

impl<'de> Deserialize<'de> for StaticMountOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> serde::de::Visitor<'de> for ItemVisitor {
            type Value = StaticMountOptions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"URL=PATH\" or a table { url = ..., path = ... }")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                StaticMountOptions::parse(value).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let table = StaticMountTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(table.into())
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// A validated static mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// The URL prefix (`/static`) or exact path (`/favicon.ico`): starts with `/`, no
    /// trailing `/`, no `.`/`..` segments.
    pub url: String,
    /// A directory (served like nginx `alias`) or a single file; which one is decided when
    /// the front starts.
    pub path: PathBuf,
    /// `Cache-Control: max-age` and `Expires` (nginx `expires`).
    pub expires: Option<Duration>,
    /// Added to Cache-Control (`public, immutable`).
    pub cache_control: Option<String>,
    pub access_log: bool,
    pub dotfiles: bool,
    pub symlinks: SymlinkPolicy,
    pub precompressed: bool,
}

/// Which symbolic links under a static mount are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Only links whose target stays under the mount's directory (the default).
    Inside,
    /// Every link, wherever it points (nginx's default, `disable_symlinks off`).
    Follow,
    /// No link at all (nginx `disable_symlinks on`).
    Never,
}

/// Response headers added by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderConfig {
    /// The built-in security headers are on.
    pub security_headers: bool,
    /// `header` entries in order: (name, value); an empty value removes that header from the
    /// set (a built-in one, or an earlier entry).
    pub set: Vec<(String, String)>,
    /// The Strict-Transport-Security value for https requests; `None` when `off`.
    pub hsts: Option<String>,
    /// A `Server` header value.
    pub server: Option<String>,
}

/// Request limits and connection timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_request_line: u64,
    pub max_header_size: u64,
    pub max_header_count: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Zero: no keep-alive.
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// An IP network: an address and a prefix length (32 or 128 for a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    /// Every address (`*`).
    pub const ANY_V4: IpNet = IpNet {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix_len: 0,
    };
    pub const ANY_V6: IpNet = IpNet {
        addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix_len: 0,
    };

    /// Parses `10.0.0.0/8`, `::1`, `192.168.1.7`.
    ///
    /// # Errors
    ///
    /// A message quoting `text`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let invalid = || {
            format!(
                "{text:?} is not an IP address or CIDR range (examples: 10.0.0.0/8, 127.0.0.1, ::1, *)"
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(IpNet { addr, prefix_len })
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what
    /// a dual-stack socket reports) counts as its IPv4 address.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// nginx `combined`, then the request time and the app's time in seconds.
    Combined,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: LogFormat,
    /// Rotate a file log at this size.
    pub max_size: Option<u64>,
    /// The rotated file's name.
    pub backup: Option<PathBuf>,
}

/// A content coding for compressed responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    pub encodings: Vec<Encoding>,
    pub min_size: u64,
}

/// The edge's part of [`ServeConfig`](crate::ServeConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    pub tls: Option<TlsConfig>,
    pub redirect_http: Vec<SocketAddr>,
    pub static_mounts: Vec<StaticMount>,
    pub static_cache_size: u64,
    pub static_cache_max_file: u64,
    pub static_cache_valid: Duration,
    pub headers: HeaderConfig,
    pub limits: Limits,
    /// Peers whose forwarded headers are trusted; empty trusts none.
    pub forwarded_allow_ips: Vec<IpNet>,
    /// Set X-Real-IP / X-Forwarded-* for the app (nginx's proxy_set_header lines).
    pub proxy_headers: bool,
    /// Send HTTP/1 response header names in Title-Case rather than lowercase.
    pub title_case_headers: bool,
    pub access_log: Option<AccessLogConfig>,
    pub compression: Option<CompressionConfig>,
}

/// The raw edge options, moved out of [`Options`](crate::Options) by `Merged::validate`.
pub(crate) struct EdgeInput {
    pub(crate) tls: Option<String>,
    pub(crate) tls_cert: Option<Vec<String>>,
    pub(crate) tls_key: Option<Vec<String>>,
    pub(crate) tls_min_version: Option<String>,
    pub(crate) redirect_http: Option<Vec<String>>,
    pub(crate) static_mounts: Option<Vec<StaticMountOptions>>,
    pub(crate) static_cache_size: Option<u64>,
    pub(crate) static_cache_max_file: Option<u64>,
    pub(crate) static_cache_valid: Option<Duration>,
    pub(crate) security_headers: Option<bool>,
    pub(crate) header: Option<Vec<String>>,
    pub(crate) hsts: Option<String>,
    pub(crate) server_header: Option<String>,
    pub(crate) max_request_line: Option<u64>,
    pub(crate) max_header_size: Option<u64>,
    pub(crate) max_header_count: Option<usize>,
    pub(crate) header_timeout: Option<Duration>,
    pub(crate) body_timeout: Option<Duration>,
    pub(crate) keepalive_timeout: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) title_case_headers: Option<bool>,
    pub(crate) forwarded_allow_ips: Option<Vec<String>>,
    pub(crate) proxy_headers: Option<bool>,
    pub(crate) access_log: Option<String>,
    pub(crate) access_log_format: Option<String>,
    pub(crate) access_log_max_size: Option<u64>,
    pub(crate) access_log_backup: Option<PathBuf>,
    pub(crate) compression: Option<Vec<String>>,
    pub(crate) compression_min_size: Option<u64>,
}

/// The most header lines `max-header-count` allows; more is a typo or an attack surface.
const MAX_HEADER_COUNT: usize = 10_000;

/// The smallest `max-request-line` and `max-header-size`: below these, ordinary browsers'
/// requests (cookies, long query strings) would already be refused.
const MIN_HEAD_LIMIT: u64 = 1024;

/// Built-in value for options whose default is in the table; only fails if the table lost one.
fn required<T>(value: Option<T>, key: &'static str) -> Result<T, ConfigError> {
    value.ok_or(ConfigError::MissingRequired { key })
}

/// Splits list items further on commas, so `--forwarded-allow-ips 10.0.0.0/8,::1` works on
/// the command line as it does in the environment.
fn comma_items(items: Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Merged {
    pub(crate) fn edge(&self, raw: EdgeInput, binds: &[Bind]) -> Result<EdgeConfig, ConfigError> {
        let tls = self.tls(raw.tls, raw.tls_cert, raw.tls_key, raw.tls_min_version)?;
        if tls.is_some() && !binds.iter().any(|b| matches!(b, Bind::Tcp(_))) {
            return Err(self.invalid(
                "tls",
                "TLS is on but every bind is a Unix socket; add a TCP bind such as :443",
            ));
        }
        let mut redirect_http = Vec::new();
        for text in raw.redirect_http.unwrap_or_default() {
            match parse::parse_bind(&text)
                .map_err(|reason| self.invalid("redirect-http", reason))?
            {
                Bind::Tcp(addr) => redirect_http.push(addr),
                Bind::Unix(_) => {
                    return Err(self.invalid(
                        "redirect-http",
                        format!("{text:?}: the redirect listens on TCP only"),
                    ));
                }
            }
        }
        let static_mounts = self.static_mounts(raw.static_mounts.unwrap_or_default())?;

        let headers = HeaderConfig {
            security_headers: required(raw.security_headers, "security-headers")?,
            set: self.header_entries(raw.header.unwrap_or_default())?,
            hsts: match required(raw.hsts, "hsts")?.trim() {
                "" | "off" => None,
                value => Some(self.header_value("hsts", value)?),
            },
            server: raw
                .server_header
                .map(|v| self.header_value("server-header", v.trim()))
                .transpose()?
                .filter(|v| !v.is_empty()),
        };

        let max_request_line = required(raw.max_request_line, "max-request-line")?;
        let max_header_size = required(raw.max_header_size, "max-header-size")?;
        for (key, value) in [
            ("max-request-line", max_request_line),
            ("max-header-size", max_header_size),
        ] {
            if value < MIN_HEAD_LIMIT {
                return Err(self.invalid(
                    key,
                    format!("{value} bytes is too small; at least {MIN_HEAD_LIMIT}"),
                ));
            }
        }
        let max_header_count = required(raw.max_header_count, "max-header-count")?;
        if max_header_count == 0 || max_header_count > MAX_HEADER_COUNT {
            return Err(self.invalid(
                "max-header-count",
                format!("{max_header_count} is out of range; expected 1 to {MAX_HEADER_COUNT}"),
            ));
        }
        let header_timeout = required(raw.header_timeout, "header-timeout")?;
        let body_timeout = required(raw.body_timeout, "body-timeout")?;
        for (key, value) in [
            ("header-timeout", header_timeout),
            ("body-timeout", body_timeout),
        ] {
            if value.is_zero() {
                return Err(
                    self.invalid(key, "0 is not allowed; the timeout must be more than zero")
                );
            }
        }
        let max_connections = required(raw.max_connections, "max-connections")?;
        if max_connections == 0 {
            return Err(self.invalid(
                "max-connections",
                "0 is not allowed; at least 1 connection is needed",
            ));
        }
        let limits = Limits {
            max_request_line,
            max_header_size,
            max_header_count,
            header_timeout,
            body_timeout,
            keepalive_timeout: required(raw.keepalive_timeout, "keepalive-timeout")?,
            max_connections,
        };

        let mut forwarded_allow_ips = Vec::new();
        for item in comma_items(raw.forwarded_allow_ips.unwrap_or_default()) {
            if item == "*" {
                forwarded_allow_ips.extend([IpNet::ANY_V4, IpNet::ANY_V6]);
            } else {
                forwarded_allow_ips.push(
                    IpNet::parse(&item)
                        .map_err(|reason| self.invalid("forwarded-allow-ips", reason))?,
                );
            }
        }

        let access_log = self.access_log(
            required(raw.access_log, "access-log")?,
            required(raw.access_log_format, "access-log-format")?,
            raw.access_log_max_size,
            raw.access_log_backup,
        )?;
        let compression = self.compression(
            raw.compression.unwrap_or_default(),
            required(raw.compression_min_size, "compression-min-size")?,
        )?;

        Ok(EdgeConfig {
            tls,
            redirect_http,
            static_mounts,
            static_cache_size: required(raw.static_cache_size, "static-cache-size")?,
            static_cache_max_file: required(raw.static_cache_max_file, "static-cache-max-file")?,
            static_cache_valid: required(raw.static_cache_valid, "static-cache-valid")?,
            headers,
            limits,
            forwarded_allow_ips,
            proxy_headers: required(raw.proxy_headers, "proxy-headers")?,
            title_case_headers: required(raw.title_case_headers, "title-case-headers")?,
            access_log,
            compression,
        })
    }

    fn tls(
        &self,
        mode: Option<String>,
        certs: Option<Vec<String>>,
        keys: Option<Vec<String>>,
        min_version: Option<String>,
    ) -> Result<Option<TlsConfig>, ConfigError> {
        let certs = certs.unwrap_or_default();
        let keys = keys.unwrap_or_default();
        let min_version = match required(min_version, "tls-min-version")?.trim() {
            "1.2" | "TLSv1.2" | "tlsv1.2" => TlsVersion::Tls12,
            "1.3" | "TLSv1.3" | "tlsv1.3" => TlsVersion::Tls13,
            other => {
                return Err(self.invalid(
                    "tls-min-version",
                    format!("{other:?} is not a TLS version (1.2 or 1.3)"),
                ));
            }
        };
        let self_signed = match mode.as_deref().map(str::trim) {
            None => {
                if certs.is_empty() {
                    if !keys.is_empty() {
                        return Err(self.invalid(
                            "tls-key",
                            "a key is given without a certificate; add tls-cert",
                        ));
                    }
                    return Ok(None);
                }
                false
            }
            Some("off") => return Ok(None),
            Some("on") => {
                if certs.is_empty() {
                    return Err(self.invalid(
                        "tls",
                        "`on` needs a certificate: set tls-cert (or use tls = \"self-signed\")",
                    ));
                }
                false
            }
            Some("self-signed") => {
                if !certs.is_empty() {
                    return Err(
                        self.invalid("tls", "`self-signed` and tls-cert exclude each other")
                    );
                }
                true
            }
            Some(other) => {
                return Err(self.invalid(
                    "tls",
                    format!("{other:?} is not one of on, off, self-signed"),
                ));
            }
        };
        if !keys.is_empty() && keys.len() != certs.len() {
            return Err(self.invalid(
                "tls-key",
                format!(
                    "{} keys for {} certificates; give one key per tls-cert, in the same order",
                    keys.len(),
                    certs.len()
                ),
            ));
        }
        let mut files = Vec::with_capacity(certs.len());
        for (i, cert) in certs.iter().enumerate() {
            if cert.trim().is_empty() {
                return Err(self.invalid("tls-cert", "a path is empty"));
            }
            let key = keys.get(i).unwrap_or(cert);
            if key.trim().is_empty() {
                return Err(self.invalid("tls-key", "a path is empty"));
            }
            files.push(CertFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            });
        }
        Ok(Some(TlsConfig {
            certs: files,
            self_signed,
            min_version,
        }))
    }

    fn static_mounts(
        &self,
        items: Vec<StaticMountOptions>,
    ) -> Result<Vec<StaticMount>, ConfigError> {
        let mut mounts: Vec<StaticMount> = Vec::with_capacity(items.len());
        for item in items {
            let invalid =
                |reason: String| self.invalid("static", format!("mount {:?}: {reason}", item.url));
            let url = item.url.trim();
            let url = if url.len() > 1 {
                url.trim_end_matches('/')
            } else {
                url
            };
            if !url.starts_with('/') {
                return Err(invalid("the URL must start with /".into()));
            }
            if url == "/" {
                return Err(invalid(
                    "mounting at / would hide the app; mount a prefix such as /static".into(),
                ));
            }
            if url.split('/').any(|seg| seg == "." || seg == "..")
                || url.contains("//")
                || url.contains(['%', '?', '#', '\\'])
                || url.bytes().any(|b| b.is_ascii_control() || b == b' ')
            {
                return Err(invalid(
                    "the URL must be a plain path (no ., .., //, %, ?, #, spaces)".into(),
                ));
            }
            if item.path.as_os_str().is_empty() {
                return Err(invalid("the path is empty".into()));
            }
            if mounts.iter().any(|m| m.url == url) {
                return Err(invalid("this URL is mounted twice".into()));
            }
            let symlinks = match item.symlinks.as_deref().map(str::trim) {
                None | Some("inside") => SymlinkPolicy::Inside,
                Some("follow") => SymlinkPolicy::Follow,
                Some("never") => SymlinkPolicy::Never,
                Some(other) => {
                    return Err(invalid(format!(
                        "symlinks = {other:?} is not one of inside, follow, never"
                    )));
                }
            };
            let cache_control = item
                .cache_control
                .as_deref()
                .map(|v| self.header_value("static", v.trim()))
                .transpose()?
                .filter(|v| !v.is_empty());
            mounts.push(StaticMount {
                url: url.to_owned(),
                path: item.path.clone(),
                expires: item.expires,
                cache_control,
                access_log: item.access_log.unwrap_or(true),
                dotfiles: item.dotfiles.unwrap_or(false),
                symlinks,
                precompressed: item.precompressed.unwrap_or(true),
            });
        }
        Ok(mounts)
    }

    fn header_entries(&self, items: Vec<String>) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some((name, value)) = item.split_once(':') else {
                return Err(self.invalid(
                    "header",
                    format!("{item:?} is not `Name: value` (example: \"Permissions-Policy: camera=()\"; \"Name:\" removes a header)"),
                ));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(self.invalid("header", format!("{name:?} is not a valid header name")));
            }
            out.push((name.to_owned(), self.header_value("header", value.trim())?));
        }
        Ok(out)
    }

    /// A header value: visible ASCII, spaces and tabs (no line breaks, which would inject
    /// headers).
    fn header_value(&self, key: &str, value: &str) -> Result<String, ConfigError> {
        if value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            Ok(value.to_owned())
        } else {
            Err(self.invalid(
                key,
                format!("{value:?} is not a valid header value (printable ASCII only)"),
            ))
        }
    }

    fn access_log(
        &self,
        target: String,
        format: String,
        max_size: Option<u64>,
        backup: Option<PathBuf>,
    ) -> Result<Option<AccessLogConfig>, ConfigError> {
        let format = match format.trim() {
            "combined" => LogFormat::Combined,
            "json" => LogFormat::Json,
            other => {
                return Err(self.invalid(
                    "access-log-format",
                    format!("{other:?} is not one of combined, json"),
                ));
            }
        };
        let target = match target.trim() {
            "off" | "" => return Ok(None),
            "stdout" | "-" => LogTarget::Stdout,
            "stderr" => LogTarget::Stderr,
            path => LogTarget::File(PathBuf::from(path)),
        };
        if max_size == Some(0) {
            return Err(self.invalid(
                "access-log-max-size",
                "0 is not allowed; leave it unset for no rotation",
            ));
        }
        if max_size.is_some() && !matches!(target, LogTarget::File(_)) {
            return Err(self.invalid(
                "access-log-max-size",
                "rotation needs access-log to be a file path",
            ));
        }
        Ok(Some(AccessLogConfig {
            target,
            format,
            max_size,
            backup,
        }))
    }

    fn compression(
        &self,
        items: Vec<String>,
        min_size: u64,
    ) -> Result<Option<CompressionConfig>, ConfigError> {
        let mut encodings = Vec::new();
        for item in comma_items(items) {
            let encoding = match item.to_ascii_lowercase().as_str() {
                "off" => return Ok(None),
                "gzip" => Encoding::Gzip,
                "br" | "brotli" => Encoding::Brotli,
                "zstd" => Encoding::Zstd,
                _ => {
                    return Err(self.invalid(
                        "compression",
                        format!("{item:?} is not one of gzip, br, zstd, off"),
                    ));
                }
            };
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
        }
        Ok((!encodings.is_empty()).then_some(CompressionConfig {
            encodings,
            min_size,
        }))
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
