//! Small, dependency-free parsers for the value syntaxes flaskhost accepts: durations, sizes,
//! socket permissions, bind addresses, app specs and log filters.
//!
//! Every parser returns `Err(reason)` where `reason` is a sentence fragment that quotes the
//! offending input and shows accepted examples; the caller adds the key and the source, so
//! the reason never has to know where the value came from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Account, AppSpec, Bind};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The examples every duration error shows, so that all of them teach the same syntax.
const DURATION_EXAMPLES: &str = "(examples: 30, 30s, 500ms, 1m30s)";
const SIZE_EXAMPLES: &str = "(examples: 65536, 64k, 64KiB, 10M, 1G)";
const SOCKET_MODE_EXAMPLES: &str = "(examples: 660, 0660, 0o660)";
const BIND_FORMS: &str =
    "(forms: 127.0.0.1:8000, [::1]:8000, localhost:8000, :8000, unix:/run/flaskhost.sock)";
const LOG_LEVEL_EXAMPLES: &str =
    "(examples: info, debug, warn,flaskhost=debug; levels: off, error, warn, info, debug, trace)";

/// Parses a duration: a whole or decimal number of seconds (`30`, `0.5`), or one or more
/// number+unit pairs (`500ms`, `30s`, `2m`, `1h`, `1m30s`, `1.5s`).
///
/// Units are `ns`, `us`, `ms`, `s`, `m`, `h` and `d`. Decimals are parsed exactly, down to the
/// nanosecond, instead of going through `f64`, so `0.1` is exactly 100 ms.
///
/// # Errors
///
/// Returns a message quoting `text` with examples when it is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration {DURATION_EXAMPLES}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    // A bare number is seconds, which is what uWSGI and gunicorn take for their timeouts.
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let nanos = decimal_times(trimmed, NANOS_PER_SEC).ok_or_else(invalid)?;
        return nanos_to_duration(nanos).ok_or_else(invalid);
    }
    let mut total: u128 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            // Days, as in nginx `expires 30d`.
            "d" => 86_400 * NANOS_PER_SEC,
            _ => return Err(invalid()),
        };
        let nanos = decimal_times(number, per_unit).ok_or_else(invalid)?;
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        // Spaces between pairs are allowed so that `1m 30s` reads naturally.
        rest = after.trim_start();
    }
    nanos_to_duration(total).ok_or_else(invalid)
}

/// Formats a duration so that [`parse_duration`] reads it back exactly; used when CLI options
/// are serialized into the merge.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos() == duration.subsec_millis() * 1_000_000 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}

/// Multiplies a non-negative decimal `number` (`12`, `1.5`, `.5`) by `unit`, truncating below
/// one nanosecond. Returns `None` for anything that is not such a number or that overflows.
fn decimal_times(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole_value.checked_mul(unit)?;
    // Each fractional digit is worth a tenth of the one before; digits below a nanosecond
    // contribute nothing, so stopping at 30 digits keeps the arithmetic in range.
    let mut scale = unit;
    for digit in fraction.bytes().take(30) {
        scale /= 10;
        total = total.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(total)
}

fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, subsec))
}

/// Parses a size in bytes: a number optionally followed by a unit, case-insensitive:
/// `b`, `k`/`kb`/`kib`, `m`/`mb`/`mib`, `g`/`gb`/`gib`.
///
/// Every multiple is a power of 1024, as in nginx (`client_max_body_size 10M` is 10 MiB), so
/// that values copied from an nginx config mean the same thing here.
///
/// # Errors
///
/// Returns a message quoting `text` with examples when it is not a size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("{text:?} is not a size {SIZE_EXAMPLES}");
    let trimmed = text.trim();
    let digits_len = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_len);
    if digits.is_empty() {
        return Err(invalid());
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    number.checked_mul(multiplier).ok_or_else(invalid)
}

/// Parses Unix socket permission bits written in octal: `660`, `0660` or `0o660`.
///
/// # Errors
///
/// Returns a message when `text` is not octal or is above `0o777`.
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0o")
        .or_else(|| trimmed.strip_prefix("0O"))
        .unwrap_or(trimmed);
    let invalid = || format!("{text:?} is not an octal permission {SOCKET_MODE_EXAMPLES}");
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(invalid());
    }
    let mode = u64::from_str_radix(digits, 8).map_err(|_| invalid())?;
    check_socket_mode(mode)
}

/// Checks that `mode` holds only permission bits; setuid, setgid and sticky bits mean nothing
/// on a socket and a larger value is almost certainly a decimal/octal mix-up.
pub(crate) fn check_socket_mode(mode: u64) -> Result<u32, String> {
    match u32::try_from(mode) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "0o{mode:o} is above 0o777; write the permission in octal {SOCKET_MODE_EXAMPLES}"
        )),
    }
}

/// Parses one bind address.
///
/// Accepted forms: `IP:PORT` (`127.0.0.1:8000`), `[IPv6]:PORT` (`[::1]:8000`),
/// `localhost:PORT` (127.0.0.1), `:PORT` (0.0.0.0, every IPv4 interface) and
/// `unix:/path/app.sock`. Port 0 asks the OS for a free port.
///
/// # Errors
///
/// Returns a message quoting `text` and listing the accepted forms.
pub fn parse_bind(text: &str) -> Result<Bind, String> {
    let trimmed = text.trim();
    if let Some(path) = trimmed.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "{text:?} has no socket path after `unix:` {BIND_FORMS}"
            ));
        }
        return Ok(Bind::Unix(PathBuf::from(path)));
    }
    if let Some(port) = trimmed.strip_prefix(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(Bind::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            parse_port(text, port)?,
        )));
    }
    if let Some(port) = trimmed.strip_prefix("localhost:") {
        return Ok(Bind::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            parse_port(text, port)?,
        )));
    }
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(Bind::Tcp(addr));
    }
    // The address did not parse; say which part is wrong rather than only "invalid".
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is a bare port; write :{trimmed} (every interface) or \
             127.0.0.1:{trimmed} {BIND_FORMS}"
        ));
    }
    let Some((host, port)) = trimmed.rsplit_once(':') else {
        return Err(format!("{text:?} has no port {BIND_FORMS}"));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        parse_port(text, port)?;
        if ip.is_ipv6() && !bracketed {
            return Err(format!(
                "{text:?}: an IPv6 address must be in brackets, e.g. [::1]:8000 {BIND_FORMS}"
            ));
        }
    }
    if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!(
            "{text:?} uses the host name {host:?}; only `localhost` is resolved, other hosts \
             must be written as IP addresses {BIND_FORMS}"
        ));
    }
    Err(format!("{text:?} is not a bind address {BIND_FORMS}"))
}

fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("{text:?} has an invalid port {port:?} (0-65535) {BIND_FORMS}"))
}

/// Parses an app spec: `module:attr`, or the factory form `module:factory(args)`.
///
/// The module is a dotted Python module name and the attribute a Python identifier. For the
/// factory form the text between the outermost parentheses is kept (trimmed) for the worker
/// to evaluate as Python literals; it is not checked here.
///
/// # Errors
///
/// Returns a message quoting `text` and saying which part is wrong.
pub fn parse_app_spec(text: &str) -> Result<AppSpec, String> {
    const FORMS: &str = "(forms: wsgi:app, myproj.wsgi:application, wsgi:create_app(), \
                         wsgi:create_app('prod', debug=False))";
    let trimmed = text.trim();
    let Some((module, rest)) = trimmed.split_once(':') else {
        return Err(format!(
            "{text:?} names no attribute; write module:attribute {FORMS}"
        ));
    };
    let module = module.trim();
    if module.is_empty() {
        return Err(format!("{text:?} has no module before `:` {FORMS}"));
    }
    if !module.split('.').all(is_identifier) {
        return Err(format!(
            "{text:?}: {module:?} is not a dotted Python module name {FORMS}"
        ));
    }
    let rest = rest.trim();
    let (attr, call_args) = match rest.split_once('(') {
        None => (rest, None),
        Some((name, args)) => {
            let Some(inner) = args.trim_end().strip_suffix(')') else {
                return Err(format!(
                    "{text:?}: the factory call is missing its closing `)` {FORMS}"
                ));
            };
            (name.trim_end(), Some(inner.trim().to_owned()))
        }
    };
    if attr.is_empty() {
        return Err(format!("{text:?} has no attribute after `:` {FORMS}"));
    }
    if !is_identifier(attr) {
        return Err(format!(
            "{text:?}: {attr:?} is not a Python identifier {FORMS}"
        ));
    }
    Ok(AppSpec {
        module: module.to_owned(),
        attr: attr.to_owned(),
        call_args,
    })
}

/// A Python identifier: a letter or `_`, then letters, digits or `_`. Python also allows
/// some other Unicode categories; this is close enough to catch typos without rejecting
/// real module names.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Reads a `uid` or `gid` value: digits are a numeric id, anything else a name (checked here
/// for form only; whether it exists is for the system's user database to say).
///
/// # Errors
///
/// Returns a message quoting `text` with examples.
pub fn parse_account(text: &str) -> Result<Account, String> {
    const EXAMPLES: &str = "(examples: www-data, 33)";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "the value is empty; give a name or a numeric id {EXAMPLES}"
        ));
    }
    if trimmed.starts_with('-') && trimmed[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is negative; ids are 0 or more {EXAMPLES}"
        ));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        // u32::MAX is (uid_t)-1, which setuid reads as "leave unchanged".
        return match trimmed.parse::<u32>() {
            Ok(id) if id != u32::MAX => Ok(Account::Id(id)),
            _ => Err(format!("{text:?} is out of range {EXAMPLES}")),
        };
    }
    if trimmed.contains(|c: char| c == ':' || c == '/' || c == '\0' || c.is_whitespace()) {
        return Err(format!("{text:?} is not a user or group name {EXAMPLES}"));
    }
    Ok(Account::Name(trimmed.to_owned()))
}

/// Checks a log filter without depending on tracing-subscriber: either a level, or
/// comma-separated directives where each is a level or `target=level`.
///
/// This is deliberately light: `target[span{field=value}]=level` passes because only the text
/// after the last `=` must be a level. The binary's `EnvFilter` has the final word.
///
/// # Errors
///
/// Returns a message quoting `text` with examples.
pub fn check_log_level(text: &str) -> Result<(), String> {
    let invalid = || format!("{text:?} is not a log level or filter {LOG_LEVEL_EXAMPLES}");
    let is_level = |word: &str| {
        matches!(
            word.trim().to_ascii_lowercase().as_str(),
            "off" | "error" | "warn" | "info" | "debug" | "trace"
        )
    };
    if text.trim().is_empty() {
        return Err(invalid());
    }
    let single_level = is_level(text);
    if single_level {
        return Ok(());
    }
    if !text.contains('=') {
        return Err(invalid());
    }
    for directive in text.split(',') {
        let directive = directive.trim();
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => {
                !target.trim().is_empty()
                    && !target.contains(char::is_whitespace)
                    && is_level(level)
            }
            None => is_level(directive),
        };
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

/// Checks a WSGI `SCRIPT_NAME`: empty (mounted at the root) or a path that starts with `/`
/// and does not end with `/`, as PEP 3333 requires (`SCRIPT_NAME` + `PATH_INFO` is the URL).
///
/// # Errors
///
/// Returns a message quoting `text` when it is neither.
pub fn check_script_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if text == "/" {
        return Err(
            "\"/\" is the root; leave script-name empty (\"\") to mount the app at the root"
                .to_owned(),
        );
    }
    if !text.starts_with('/') {
        return Err(format!("{text:?} must start with `/` (example: /api)"));
    }
    if text.ends_with('/') {
        return Err(format!("{text:?} must not end with `/` (example: /api)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Duration)] = &[
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0.5", Duration::from_millis(500)),
            ("0.1", Duration::from_millis(100)),
            (".25", Duration::from_millis(250)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1m 30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::new(3723, 4_000_000)),
            ("1.5s", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("  45s ", Duration::from_secs(45)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).as_deref_ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        for text in [
            "",
            " ",
            "abc",
            "30x",
            "s",
            "-5",
            "1.2.3",
            "5 s",
            "1e3",
            "30S",
            "99999999999999999999999h",
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains("is not a duration"), "{text}: {error}");
            assert!(error.contains("500ms"), "examples missing: {error}");
        }
        assert_eq!(
            parse_duration("abc").expect_err("abc"),
            "\"abc\" is not a duration (examples: 30, 30s, 500ms, 1m30s)"
        );
    }

    #[test]
    fn durations_round_trip_through_format() {
        for duration in [
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_millis(1500),
            Duration::from_nanos(1_000_000_007),
            Duration::new(u64::MAX, 999_999_999),
        ] {
            let text = format_duration(duration);
            assert_eq!(
                parse_duration(&text).as_deref_ok(),
                Some(&duration),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("512", 512),
            ("512b", 512),
            ("64k", 65_536),
            ("64K", 65_536),
            ("64kb", 65_536),
            ("64KiB", 65_536),
            ("10M", 10 * 1024 * 1024),
            ("10MB", 10 * 1024 * 1024),
            ("10MiB", 10 * 1024 * 1024),
            ("1G", 1 << 30),
            ("1 g", 1 << 30),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text).as_deref_ok(), Some(expected), "{text}");
        }
        for text in ["", "k", "-1", "1.5M", "10T", "ten", "99999999999G"] {
            let error = parse_size(text).expect_err(text);
            assert!(error.contains("is not a size"), "{text}: {error}");
        }
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0o660"), Ok(0o660));
        assert_eq!(parse_socket_mode("777"), Ok(0o777));
        assert_eq!(parse_socket_mode("0"), Ok(0));
        for text in ["", "0o", "680", "rw-rw----", "1777", "0x1b0"] {
            assert!(parse_socket_mode(text).is_err(), "{text}");
        }
        assert!(check_socket_mode(0o1000).is_err());
    }

    #[test]
    fn binds() {
        let tcp = |text: &str| match parse_bind(text) {
            Ok(Bind::Tcp(addr)) => addr.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(tcp("127.0.0.1:8000"), "127.0.0.1:8000");
        assert_eq!(tcp("0.0.0.0:0"), "0.0.0.0:0");
        assert_eq!(tcp("[::1]:8000"), "[::1]:8000");
        assert_eq!(tcp("[::]:0"), "[::]:0");
        assert_eq!(tcp("localhost:8000"), "127.0.0.1:8000");
        assert_eq!(tcp(":8000"), "0.0.0.0:8000");
        assert_eq!(tcp(" :0 "), "0.0.0.0:0");
        assert_eq!(
            parse_bind("unix:/run/app.sock"),
            Ok(Bind::Unix(PathBuf::from("/run/app.sock")))
        );
        assert_eq!(
            parse_bind("unix:app.sock"),
            Ok(Bind::Unix(PathBuf::from("app.sock")))
        );
    }

    #[test]
    fn bad_binds() {
        let cases = [
            ("8000", "is a bare port"),
            ("127.0.0.1", "has no port"),
            ("127.0.0.1:99999", "invalid port"),
            ("localhost:http", "invalid port"),
            (":", "is not a bind address"),
            ("example.com:80", "only `localhost` is resolved"),
            ("unix:", "no socket path"),
            ("::1:8000", "must be in brackets"),
        ];
        for (text, expected) in cases {
            let error = parse_bind(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("forms:"), "{text}: {error}");
        }
    }

    #[test]
    fn app_specs() {
        let spec = |text: &str| parse_app_spec(text).expect(text);
        assert_eq!(
            spec("wsgi:app"),
            AppSpec {
                module: "wsgi".into(),
                attr: "app".into(),
                call_args: None
            }
        );
        assert_eq!(
            spec("myproj.web.wsgi:application"),
            AppSpec {
                module: "myproj.web.wsgi".into(),
                attr: "application".into(),
                call_args: None
            }
        );
        assert_eq!(spec("wsgi:create_app()").call_args.as_deref(), Some(""));
        let factory = spec("wsgi:create_app('prod', debug=False)");
        assert_eq!(factory.attr, "create_app");
        assert_eq!(factory.call_args.as_deref(), Some("'prod', debug=False"));
        // A colon inside the arguments belongs to the arguments, not the module.
        let dict = spec("wsgi:create_app({'a': 1})");
        assert_eq!(dict.call_args.as_deref(), Some("{'a': 1}"));
        assert_eq!(spec(" _private:_app ").attr, "_app");
    }

    #[test]
    fn bad_app_specs() {
        let cases = [
            ("wsgi", "names no attribute"),
            ("wsgi:", "no attribute after"),
            (":app", "no module before"),
            ("wsgi:app(", "missing its closing `)`"),
            ("wsgi:app()x", "missing its closing `)`"),
            ("wsgi:()", "no attribute after"),
            ("my-proj:app", "not a dotted Python module name"),
            ("myproj..wsgi:app", "not a dotted Python module name"),
            ("wsgi.:app", "not a dotted Python module name"),
            ("wsgi:app.sub", "not a Python identifier"),
            ("wsgi:1app", "not a Python identifier"),
            ("wsgi:a:b", "not a Python identifier"),
            ("", "names no attribute"),
        ];
        for (text, expected) in cases {
            let error = parse_app_spec(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn log_levels() {
        for text in [
            "info",
            "DEBUG",
            "off",
            "flaskhost=debug",
            "warn,flaskhost=debug",
            "info, flaskhost_front=trace",
            "flaskhost[request{path=/}]=debug",
        ] {
            assert_eq!(check_log_level(text), Ok(()), "{text}");
        }
        for text in [
            "",
            "verbose",
            "flaskhost",
            "=debug",
            "flaskhost=loud",
            "info,,debug=x",
        ] {
            assert!(check_log_level(text).is_err(), "{text}");
        }
    }

    #[test]
    fn script_names() {
        for text in ["", "/api", "/a/b"] {
            assert_eq!(check_script_name(text), Ok(()), "{text}");
        }
        for text in ["/", "api", "/api/"] {
            assert!(check_script_name(text).is_err(), "{text}");
        }
    }

    /// Lets the table-driven tests compare `Result<T, String>` against `Some(&T)` tersely.
    trait OkRef<T> {
        fn as_deref_ok(&self) -> Option<&T>;
    }

    impl<T> OkRef<T> for Result<T, String> {
        fn as_deref_ok(&self) -> Option<&T> {
            self.as_ref().ok()
        }
    }
}
