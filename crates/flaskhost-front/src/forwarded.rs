//! The client's address and scheme: from the connection, or, when the peer is a trusted
//! proxy (`forwarded-allow-ips`), from the headers it sends.
//!
//! From a trusted peer, `Forwarded` (RFC 7239) or else `X-Forwarded-For` is read right to
//! left, skipping trusted addresses: the first untrusted one is the client (nginx's
//! `real_ip_recursive on`). `X-Forwarded-Proto` / `proto=` give the scheme and
//! `X-Forwarded-Host` / `host=` the Host. From an untrusted peer these are ignored.
//!
//! With `proxy-headers` on, the app also gets what nginx's `proxy_set_header` lines in the
//! seed give it: `X-Real-IP` (the client), `X-Forwarded-For` (what came in, plus the peer's
//! address) and `X-Forwarded-Proto` (the scheme), all set by flaskhost so a client cannot
//! forge them, and the headers a proxy-aware app might believe (`X-Forwarded-Host`, `-Port`,
//! `-Prefix`, `Forwarded`) are removed unless a trusted proxy sent them. Without it, those
//! headers reach the app as the client sent them (REMOTE_ADDR and `wsgi.url_scheme` are
//! right either way, so the app needs no ProxyFix).
//! Connections over a Unix socket come from a local proxy: they are trusted whenever any
//! address is.

use std::net::{IpAddr, SocketAddr};

use flaskhost_config::IpNet;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::app::ConnInfo;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The peers whose forwarded headers are believed, and whether the app gets proxy headers.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    set_headers: bool,
}

impl TrustedProxies {
    /// `set_headers`: `proxy-headers`, see the module docs.
    #[must_use]
    pub fn new(nets: Vec<IpNet>, set_headers: bool) -> TrustedProxies {
        TrustedProxies { nets, set_headers }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// Rewrites the request's forwarding headers. Returns the connection info `conn` (the
    /// peer's) as the app is to see it.
    pub(crate) fn resolve<B>(&self, req: &mut http::Request<B>, conn: ConnInfo) -> ConnInfo {
        let peer = conn.remote.map(|a| a.ip());
        let trusted = match peer {
            Some(ip) => self.trusts(ip),
            None => !self.nets.is_empty(),
        };
        let headers = req.headers_mut();
        let mut info = conn;
        if trusted {
            let forwarded = Forwarded::read(headers);
            if let Some(client) = forwarded.client(|ip| self.trusts(ip)) {
                info.remote = Some(match conn.remote {
                    Some(peer) if peer.ip() == client => peer,
                    _ => SocketAddr::new(client, 0),
                });
            }
            if let Some(proto) = forwarded.proto {
                info.https = proto.eq_ignore_ascii_case("https");
            }
            if let Some(host) = forwarded.host.filter(|h| valid_host(h))
                && let Ok(v) = HeaderValue::from_str(&host)
            {
                headers.insert(header::HOST, v);
            }
        }
        if !self.set_headers {
            return info;
        }
        let headers = req.headers_mut();
        if !trusted {
            for name in [
                &X_FORWARDED_HOST,
                &X_FORWARDED_PORT,
                &X_FORWARDED_PREFIX,
                &FORWARDED,
            ] {
                headers.remove(name);
            }
        }
        // What the seed's proxy_set_header lines pass on.
        if let Some(client) = info.remote
            && let Ok(v) = HeaderValue::from_str(&client.ip().to_string())
        {
            headers.insert(X_REAL_IP.clone(), v);
        } else {
            // Over a Unix socket with no trusted proxy there is no client address to give.
            headers.remove(&X_REAL_IP);
        }
        if let Some(peer) = peer {
            let prior: Vec<String> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            let mut value = prior.join(", ");
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(&peer.to_string());
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if info.https { "https" } else { "http" }),
        );
        info
    }
}

/// What a proxy said, from `Forwarded` if present, else the `X-Forwarded-*` headers.
#[derive(Debug, Default)]
struct Forwarded {
    /// Hops, client first (as the headers list them).
    chain: Vec<Option<IpAddr>>,
    proto: Option<String>,
    host: Option<String>,
}

impl Forwarded {
    fn read(headers: &HeaderMap) -> Forwarded {
        let texts = |name: &HeaderName| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect()
        };
        let forwarded = texts(&FORWARDED);
        if !forwarded.is_empty() {
            let mut out = Forwarded::default();
            for element in forwarded.iter().flat_map(|t| t.split(',')) {
                for pair in element.split(';') {
                    let Some((k, v)) = pair.split_once('=') else {
                        continue;
                    };
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "for" => out.chain.push(parse_node(v)),
                        // The nearest proxy's element is the last one.
                        "proto" => out.proto = Some(v.to_owned()),
                        "host" => out.host = Some(v.to_owned()),
                        _ => {}
                    }
                }
            }
            return out;
        }
        let last = |name: &HeaderName| {
            // The nearest proxy appended the last value.
            texts(name)
                .iter()
                .rev()
                .flat_map(|t| t.rsplit(','))
                .map(str::trim)
                .find(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Forwarded {
            chain: texts(&X_FORWARDED_FOR)
                .iter()
                .flat_map(|t| t.split(','))
                .map(|s| parse_node(s.trim()))
                .collect(),
            proto: last(&X_FORWARDED_PROTO),
            host: last(&X_FORWARDED_HOST),
        }
    }

    /// The client: the rightmost address not trusted, or the leftmost when all are trusted.
    /// An entry that is not an address (`unknown`, an obfuscated name) ends the walk; the
    /// last address before it is used.
    fn client(&self, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
        let mut found = None;
        for hop in self.chain.iter().rev() {
            let Some(ip) = *hop else { break };
            found = Some(ip);
            if !trusted(ip) {
                break;
            }
        }
        found
    }
}

/// An address as X-Forwarded-For or `for=` write it: `1.2.3.4`, `1.2.3.4:5`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// A Host value a proxy may set: host name or address characters and a port, nothing else.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(peer: &str, nets: &[&str], headers: &[(&str, &str)]) -> (ConnInfo, HeaderMap) {
        let proxies = TrustedProxies::new(
            nets.iter().map(|n| IpNet::parse(n).expect("net")).collect(),
            true,
        );
        let mut req = http::Request::new(());
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let conn = ConnInfo {
            remote: Some(peer.parse().expect("peer")),
            local_port: 80,
            https: false,
            sendfile: false,
        };
        let info = proxies.resolve(&mut req, conn);
        (info, req.headers().clone())
    }

    #[test]
    fn untrusted_peer_is_the_client_and_cannot_forge() {
        let (info, h) = resolve(
            "203.0.113.5:4000",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil"),
                ("x-real-ip", "9.9.9.9"),
            ],
        );
        assert_eq!(info.remote, Some("203.0.113.5:4000".parse().expect("addr")));
        assert!(!info.https);
        assert_eq!(h["x-real-ip"], "203.0.113.5");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 203.0.113.5");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn trusted_proxy_chain_is_walked_right_to_left() {
        let (info, h) = resolve(
            "10.0.0.2:5000",
            &["10.0.0.0/8"],
            &[
                ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
            ],
        );
        assert_eq!(
            info.remote.map(|a| a.ip()),
            Some("198.51.100.7".parse().expect("ip"))
        );
        assert!(info.https);
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(
            h["x-forwarded-for"],
            "6.6.6.6, 198.51.100.7, 10.0.0.9, 10.0.0.2"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn forwarded_header() {
        let (info, h) = resolve(
            "127.0.0.1:1",
            &["127.0.0.1"],
            &[(
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https;host=app.example"#,
            )],
        );
        assert_eq!(
            info.remote.map(|a| a.ip()),
            Some("2001:db8::1".parse().expect("ip"))
        );
        assert!(info.https);
        assert_eq!(h["host"], "app.example");
    }
}
