//! The request head: built by the front from an HTTP request, read by a worker into a WSGI
//! environ. The front does the CGI work (header names to `HTTP_*`, joining repeated headers,
//! percent-decoding the path, splitting SCRIPT_NAME) so the worker only converts bytes to
//! Python strings.

use std::net::{IpAddr, SocketAddr};

use crate::frame::{self, Cursor, FrameError, Kind, Put};

/// The HTTP version of the request, as the worker reports it in `SERVER_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2",
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Version::Http10 => 10,
            Version::Http11 => 11,
            Version::Http2 => 20,
        }
    }
    fn from_u8(v: u8) -> Version {
        match v {
            10 => Version::Http10,
            20 => Version::Http2,
            _ => Version::Http11,
        }
    }
}

/// What the front knows about a request besides its headers and body.
#[derive(Debug, Clone)]
pub struct RequestMeta<'a> {
    pub method: &'a str,
    pub https: bool,
    pub version: Version,
    /// The path as sent, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// The prefix the app is mounted at ("" or "/prefix").
    pub script_name: &'a str,
    /// The `Host` header, or the HTTP/2 `:authority`.
    pub host: Option<&'a str>,
    /// True when `host` came from the URI rather than a `Host` header, so `HTTP_HOST` must be
    /// synthesised (HTTP/2 carries no Host header).
    pub host_from_uri: bool,
    /// The port the connection arrived on (0 for Unix sockets).
    pub local_port: u16,
    /// The client; `None` over a Unix socket.
    pub remote: Option<SocketAddr>,
}

/// How the request body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// The bytes inline are the whole body.
    Complete,
    /// The bytes inline are the start; the worker pulls the rest with `ReadBody`.
    Streaming,
}

/// Headers that never reach the app. `Proxy` is dropped against "httpoxy" (CGI's HTTP_PROXY
/// is read as a proxy setting by some libraries); hop-by-hop headers describe this connection
/// only.
fn dropped_header(name: &str) -> bool {
    matches!(
        name,
        "proxy"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Writes the CGI key for a lowercase header name, or returns false when the header is not
/// passed to the app. Names with `_` are dropped, like nginx (`underscores_in_headers off`) and
/// gunicorn: `X_Forwarded_For` would otherwise be indistinguishable from `X-Forwarded-For`.
fn put_cgi_key(buf: &mut Vec<u8>, name: &str) -> bool {
    let key: &[u8] = match name {
        "content-type" => b"CONTENT_TYPE",
        "content-length" => b"CONTENT_LENGTH",
        _ if dropped_header(name) => return false,
        _ => {
            // One pass: the key is written while looking for `_`, and taken back if one comes.
            let start = buf.len();
            buf.put_u16((name.len() + 5) as u16);
            buf.extend_from_slice(b"HTTP_");
            for b in name.bytes() {
                buf.push(match b {
                    b'_' => {
                        buf.truncate(start);
                        return false;
                    }
                    b'-' => b'_',
                    b => b.to_ascii_uppercase(),
                });
            }
            return true;
        }
    };
    buf.put_short(key);
    true
}

/// Appends a complete `Request` frame to `buf`.
///
/// `headers` must yield every value of a name consecutively (as `http::HeaderMap::iter` does);
/// repeated values are joined with `", "` (`"; "` for cookies, which HTTP/2 splits).
pub fn encode<'h>(
    buf: &mut Vec<u8>,
    meta: &RequestMeta<'_>,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    content_length: Option<u64>,
    mode: BodyMode,
    inline_body: &[u8],
) {
    let at = frame::begin(buf, Kind::Request);
    let mut flags = 0u8;
    if meta.https {
        flags |= 1;
    }
    if content_length.is_some() {
        flags |= 2;
    }
    if mode == BodyMode::Streaming {
        flags |= 4;
    }
    buf.put_u8(flags);
    buf.put_u8(meta.version.to_u8());
    buf.put_short(meta.method.as_bytes());

    // SCRIPT_NAME and PATH_INFO: decode first, then split on a segment boundary, so that an
    // encoded prefix (`/%61pp`) mounts like the plain one.
    let decoded = percent_encoding::percent_decode(meta.raw_path.as_bytes());
    let decoded: std::borrow::Cow<'_, [u8]> = decoded.into();
    // A path outside the prefix is passed whole with an empty SCRIPT_NAME, so the app still
    // sees (and can rebuild) the URL that was asked for.
    let sn = meta.script_name.as_bytes();
    let mounted = !sn.is_empty()
        && decoded.starts_with(sn)
        && (decoded.len() == sn.len() || decoded[sn.len()] == b'/');
    let (sn, path_info): (&[u8], &[u8]) = if mounted {
        (sn, &decoded[sn.len()..])
    } else {
        (b"", &decoded)
    };
    buf.put_short(sn);
    buf.put_long(path_info);
    buf.put_long(meta.query.as_bytes());

    // SERVER_NAME and SERVER_PORT come from the Host the client asked for (what URL
    // reconstruction in the app needs), falling back to the listener.
    let (host_name, host_port) = split_host(meta.host.unwrap_or(""));
    buf.put_short(if host_name.is_empty() {
        b"localhost"
    } else {
        host_name.as_bytes()
    });
    let mut port_buf = [0u8; 20];
    let port: &[u8] = match host_port {
        Some(p) => p.as_bytes(),
        None if meta.local_port != 0 => crate::decimal(u64::from(meta.local_port), &mut port_buf),
        None if meta.https => b"443",
        None => b"80",
    };
    buf.put_short(port);
    match meta.remote {
        Some(addr) => {
            put_ip(buf, addr.ip());
            buf.put_u16(addr.port());
        }
        // A Unix-socket client is local; report it as such rather than an empty address,
        // which breaks apps that parse REMOTE_ADDR.
        None => {
            buf.put_short(b"127.0.0.1");
            buf.put_u16(0);
        }
    }
    buf.put_u64(content_length.unwrap_or(0));

    let count_at = buf.len();
    buf.put_u16(0);
    let mut count: u16 = 0;
    if let (true, Some(h)) = (meta.host_from_uri, meta.host) {
        buf.put_short(b"HTTP_HOST");
        buf.put_long(h.as_bytes());
        count += 1;
    }
    let mut prev: Option<&str> = None;
    let mut prev_len_at = 0usize;
    for (name, value) in headers {
        if prev == Some(name) {
            // Same name as the previous value: join into it and patch its length.
            let sep: &[u8] = if name == "cookie" { b"; " } else { b", " };
            buf.extend_from_slice(sep);
            buf.extend_from_slice(value);
            let len = (buf.len() - prev_len_at - 4) as u32;
            buf[prev_len_at..prev_len_at + 4].copy_from_slice(&len.to_le_bytes());
            continue;
        }
        if !put_cgi_key(buf, name) {
            prev = None;
            continue;
        }
        prev = Some(name);
        prev_len_at = buf.len();
        buf.put_long(value);
        count = count.saturating_add(1);
    }
    buf[count_at..count_at + 2].copy_from_slice(&count.to_le_bytes());
    buf.put_long(inline_body);
    frame::finish(buf, at);
}

fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':').filter(|p| valid_port(p));
            return (&host[..end + 2], port);
        }
        return (host, None);
    }
    // name:port. A port is the digits after the last `:`, so it is the run of digits that
    // ends the text, when a `:` comes just before it (and it is a valid port: 1 to 5 digits).
    let b = host.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let port_at = b.len() - digits;
    if (1..=5).contains(&digits) && port_at > 0 && b[port_at - 1] == b':' {
        return (&host[..port_at - 1], Some(&host[port_at..]));
    }
    (host, None)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Writes the client address as a short field. An IPv4-mapped IPv6 peer (dual-stack listener)
/// is reported as plain IPv4.
fn put_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    };
    match ip {
        // IPv4 by hand, in place: `Display` through `write!` cost about 1,100 instructions
        // per request (a third of encoding the whole request frame).
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            buf.put_short(&text[..n]);
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut text = [0u8; 64];
            let mut cur = std::io::Cursor::new(&mut text[..]);
            // Writing an IP address into 64 bytes cannot run out of room.
            let _ = write!(cur, "{ip}");
            let n = cur.position() as usize;
            buf.put_short(&text[..n]);
        }
    }
}

/// A decoded request head, borrowing the frame payload.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub https: bool,
    pub version: Version,
    pub method: &'a [u8],
    pub script_name: &'a [u8],
    pub path_info: &'a [u8],
    pub query: &'a [u8],
    pub server_name: &'a [u8],
    pub server_port: &'a [u8],
    pub remote_addr: &'a [u8],
    pub remote_port: u16,
    pub content_length: Option<u64>,
    pub headers: Headers<'a>,
    /// The body bytes carried in the frame.
    pub inline_body: &'a [u8],
    /// More body follows, pulled with `ReadBody`.
    pub body_streaming: bool,
}

/// The `(CGI key, value)` pairs of a request head, decoded lazily.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    remaining: u16,
    cur: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), FrameError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut c = Cursor::new(Kind::Request, self.cur);
        let r = (|| Ok((c.short("header name")?, c.long("header value")?)))();
        self.cur = c.rest();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }
}

/// Decodes the payload of a `Request` frame.
pub fn decode(payload: &[u8]) -> Result<RequestHead<'_>, FrameError> {
    let mut c = Cursor::new(Kind::Request, payload);
    let flags = c.u8("flags")?;
    let version = Version::from_u8(c.u8("version")?);
    let method = c.short("method")?;
    let script_name = c.short("script name")?;
    let path_info = c.long("path")?;
    let query = c.long("query")?;
    let server_name = c.short("server name")?;
    let server_port = c.short("server port")?;
    let remote_addr = c.short("remote address")?;
    let remote_port = c.u16("remote port")?;
    let cl = c.u64("content length")?;
    let count = c.u16("header count")?;
    // Walk the headers once to find where the body starts; the iterator re-reads them.
    let start = c.rest();
    let mut walk = Cursor::new(Kind::Request, start);
    for _ in 0..count {
        walk.short("header name")?;
        walk.long("header value")?;
    }
    let after = walk.rest();
    let hdr_bytes = &start[..start.len() - after.len()];
    let mut c = Cursor::new(Kind::Request, after);
    let inline_body = c.long("inline body")?;
    Ok(RequestHead {
        https: flags & 1 != 0,
        version,
        method,
        script_name,
        path_info,
        query,
        server_name,
        server_port,
        remote_addr,
        remote_port,
        content_length: (flags & 2 != 0).then_some(cl),
        headers: Headers {
            remaining: count,
            cur: hdr_bytes,
        },
        inline_body,
        body_streaming: flags & 4 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(path: &'a str, host: Option<&'a str>) -> RequestMeta<'a> {
        RequestMeta {
            method: "GET",
            https: false,
            version: Version::Http11,
            raw_path: path,
            query: "a=1&b=%20",
            script_name: "",
            host,
            host_from_uri: false,
            local_port: 8000,
            remote: Some("10.1.2.3:5555".parse().unwrap()),
        }
    }

    fn roundtrip<'h>(
        m: &RequestMeta<'_>,
        headers: &[(&'h str, &'h [u8])],
    ) -> (Vec<u8>, std::ops::Range<usize>) {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            m,
            headers.iter().copied(),
            None,
            BodyMode::Complete,
            b"",
        );
        let (kind, len) = frame::parse_header(&buf).unwrap().unwrap();
        assert_eq!(kind, Kind::Request);
        assert_eq!(len, buf.len() - frame::HEADER_LEN);
        (buf, frame::HEADER_LEN..frame::HEADER_LEN + len)
    }

    #[test]
    fn remote_addresses_as_text() {
        for (addr, text) in [
            ("0.0.0.0:1", "0.0.0.0"),
            ("10.1.2.3:1", "10.1.2.3"),
            ("255.255.255.255:1", "255.255.255.255"),
            ("[::ffff:192.168.0.1]:1", "192.168.0.1"),
            ("[2001:db8::1]:1", "2001:db8::1"),
            ("9.99.100.1:1", "9.99.100.1"),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = vec![7];
            put_ip(&mut out, addr.ip());
            let mut c = Cursor::new(Kind::Request, &out[1..]);
            assert_eq!(c.short("ip").unwrap(), text.as_bytes(), "{addr}");
            assert!(c.rest().is_empty());
        }
    }

    #[test]
    fn hosts_and_ports() {
        for (host, name, port) in [
            ("example.com:8080", "example.com", Some("8080")),
            ("example.com", "example.com", None),
            ("example.com:", "example.com:", None),
            ("example.com:123456", "example.com:123456", None),
            ("example.com:80a", "example.com:80a", None),
            ("a:b:80", "a:b", Some("80")),
            ("8080", "8080", None),
            (":80", "", Some("80")),
            ("", "", None),
            ("[::1]:9000", "[::1]", Some("9000")),
            ("[::1]", "[::1]", None),
            ("[::1", "[::1", None),
        ] {
            assert_eq!(split_host(host), (name, port), "{host}");
        }
    }

    #[test]
    fn cgi_fields() {
        let m = meta("/caf%C3%A9/x%2Fy", Some("example.com:8080"));
        let (buf, r) = roundtrip(&m, &[]);
        let h = decode(&buf[r]).unwrap();
        assert_eq!(h.method, b"GET");
        assert_eq!(h.path_info, "/café/x/y".as_bytes());
        assert_eq!(h.query, b"a=1&b=%20");
        assert_eq!(h.server_name, b"example.com");
        assert_eq!(h.server_port, b"8080");
        assert_eq!(h.remote_addr, b"10.1.2.3");
        assert_eq!(h.remote_port, 5555);
        assert_eq!(h.content_length, None);
        assert!(!h.body_streaming);
    }

    #[test]
    fn headers_joined_renamed_and_filtered() {
        let m = meta("/", Some("h"));
        let hs: &[(&str, &[u8])] = &[
            ("accept", b"a"),
            ("accept", b"b"),
            ("x_forwarded_for", b"evil"),
            ("content-type", b"text/plain"),
            ("cookie", b"a=1"),
            ("cookie", b"b=2"),
            ("connection", b"close"),
            ("proxy", b"http://evil"),
            ("x-real-ip", b"1.2.3.4"),
        ];
        let (buf, r) = roundtrip(&m, hs);
        let h = decode(&buf[r]).unwrap();
        let got: Vec<(String, String)> = h
            .headers
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect();
        let want = [
            ("HTTP_ACCEPT", "a, b"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("HTTP_X_REAL_IP", "1.2.3.4"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn script_name_split_on_segment_boundary() {
        let mut m = meta("/app/x", None);
        m.script_name = "/app";
        let (buf, r) = roundtrip(&m, &[]);
        let h = decode(&buf[r]).unwrap();
        assert_eq!((h.script_name, h.path_info), (&b"/app"[..], &b"/x"[..]));

        let mut m = meta("/apple", None);
        m.script_name = "/app";
        let (buf, r) = roundtrip(&m, &[]);
        let h = decode(&buf[r]).unwrap();
        assert_eq!((h.script_name, h.path_info), (&b""[..], &b"/apple"[..]));
    }

    #[test]
    fn host_fallbacks_and_http2_authority() {
        let mut m = meta("/", None);
        m.local_port = 0;
        let (buf, r) = roundtrip(&m, &[]);
        let h = decode(&buf[r]).unwrap();
        assert_eq!(
            (h.server_name, h.server_port),
            (&b"localhost"[..], &b"80"[..])
        );

        let mut m = meta("/", Some("[::1]:9000"));
        m.host_from_uri = true;
        let (buf, r) = roundtrip(&m, &[]);
        let h = decode(&buf[r]).unwrap();
        assert_eq!(
            (h.server_name, h.server_port),
            (&b"[::1]"[..], &b"9000"[..])
        );
        let first = h.headers.clone().next().unwrap().unwrap();
        assert_eq!(first, (&b"HTTP_HOST"[..], &b"[::1]:9000"[..]));
    }

    #[test]
    fn ipv4_mapped_peer_is_reported_as_ipv4() {
        let mut m = meta("/", None);
        m.remote = Some("[::ffff:127.0.0.1]:80".parse().unwrap());
        let (buf, r) = roundtrip(&m, &[]);
        assert_eq!(decode(&buf[r]).unwrap().remote_addr, b"127.0.0.1");
    }

    #[test]
    fn inline_body_and_streaming_flag() {
        let m = meta("/", None);
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &m,
            std::iter::empty(),
            Some(10),
            BodyMode::Streaming,
            b"hello",
        );
        let h = decode(&buf[frame::HEADER_LEN..]).unwrap();
        assert_eq!(h.inline_body, b"hello");
        assert_eq!(h.content_length, Some(10));
        assert!(h.body_streaming);
    }
}
