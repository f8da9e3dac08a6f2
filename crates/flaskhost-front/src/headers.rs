//! Headers the edge adds to every response: static files, app responses and errors alike
//! (nginx's `add_header ... always`).
//!
//! **The rule:** a header the response already has is left as it is, never duplicated or
//! overwritten, so an app that sets its own `X-Frame-Options` (or a stricter
//! `Referrer-Policy`) keeps it. `Strict-Transport-Security` goes only on responses to
//! requests that came over https, directly or (from a trusted proxy) as X-Forwarded-Proto.
//! No `Server` header is sent unless `server-header` sets one.

use http::{HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;

use flaskhost_config::HeaderConfig;

/// The built-in security headers (`security-headers = true`).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
];

/// The HSTS value used when nothing is configured (one year).
const DEFAULT_HSTS: &str = "max-age=31536000";

#[derive(Debug, Error)]
#[error("header {name:?}: {reason}")]
pub struct HeaderError {
    pub name: String,
    pub reason: &'static str,
}

/// The headers added to responses, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct ResponseHeaders {
    always: Vec<(HeaderName, HeaderValue)>,
    hsts: Option<HeaderValue>,
    server: Option<HeaderValue>,
}

impl Default for ResponseHeaders {
    /// The built-in security headers and HSTS, no Server header.
    fn default() -> Self {
        ResponseHeaders {
            always: SECURITY_HEADERS
                .iter()
                .map(|(n, v)| {
                    (
                        HeaderName::from_static(lower(n)),
                        HeaderValue::from_static(v),
                    )
                })
                .collect(),
            hsts: Some(HeaderValue::from_static(DEFAULT_HSTS)),
            server: None,
        }
    }
}

/// The lower-case form of the built-in names, which `HeaderName::from_static` requires.
fn lower(name: &str) -> &'static str {
    match name {
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        _ => "referrer-policy",
    }
}

impl ResponseHeaders {
    /// The header set from the configuration: the built-in ones (if on), then each `header`
    /// entry replacing a header of the same name, or removing it when its value is empty.
    ///
    /// # Errors
    ///
    /// A name or value that is not valid in HTTP (the config crate checks them too).
    pub fn from_config(cfg: &HeaderConfig) -> Result<ResponseHeaders, HeaderError> {
        let mut always = if cfg.security_headers {
            ResponseHeaders::default().always
        } else {
            Vec::new()
        };
        for (name, value) in &cfg.set {
            let bad = |reason| HeaderError {
                name: name.clone(),
                reason,
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            always.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                let value =
                    HeaderValue::from_str(value).map_err(|_| bad("not a valid header value"))?;
                always.push((name, value));
            }
        }
        let value = |v: &Option<String>, what| -> Result<Option<HeaderValue>, HeaderError> {
            v.as_deref()
                .map(|v| {
                    HeaderValue::from_str(v).map_err(|_| HeaderError {
                        name: what,
                        reason: "not a valid header value",
                    })
                })
                .transpose()
        };
        Ok(ResponseHeaders {
            always,
            hsts: value(&cfg.hsts, "Strict-Transport-Security".into())?,
            server: value(&cfg.server, "Server".into())?,
        })
    }

    /// Adds every configured header the response does not have yet.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, https: bool) {
        for (name, value) in &self.always {
            // One hash and probe per header (a `contains_key` then `insert` would be two).
            headers.entry(name.clone()).or_insert_with(|| value.clone());
        }
        if https && let Some(hsts) = &self.hsts {
            headers
                .entry(http::header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
        if let Some(server) = &self.server {
            headers
                .entry(http::header::SERVER)
                .or_insert_with(|| server.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(set: &[(&str, &str)], security: bool) -> HeaderConfig {
        HeaderConfig {
            security_headers: security,
            set: set
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            hsts: Some("max-age=10".into()),
            server: None,
        }
    }

    #[test]
    fn app_headers_win_and_entries_replace_or_remove() {
        let h = ResponseHeaders::from_config(&cfg(
            &[
                ("x-frame-options", "DENY"),
                ("Referrer-Policy", ""),
                ("X-Extra", "1"),
            ],
            true,
        ))
        .expect("valid");
        let mut resp = HeaderMap::new();
        resp.insert(
            "x-content-type-options",
            HeaderValue::from_static("app-value"),
        );
        h.apply(&mut resp, false);
        assert_eq!(resp["x-frame-options"], "DENY");
        assert_eq!(resp.get_all("x-content-type-options").iter().count(), 1);
        assert_eq!(resp["x-content-type-options"], "app-value");
        assert!(!resp.contains_key("referrer-policy"));
        assert_eq!(resp["x-extra"], "1");
        assert!(!resp.contains_key("strict-transport-security"));
        h.apply(&mut resp, true);
        assert_eq!(resp["strict-transport-security"], "max-age=10");
        assert!(!resp.contains_key("server"));
    }

    #[test]
    fn security_headers_can_be_turned_off() {
        let h = ResponseHeaders::from_config(&cfg(&[], false)).expect("valid");
        let mut resp = HeaderMap::new();
        h.apply(&mut resp, false);
        assert!(resp.is_empty());
    }
}
