//! The environ builder against PEP 3333, checked by the standard library's own validator.

use std::collections::BTreeMap;
use std::sync::Once;

use flaskhost_ipc::request::{self, BodyMode, RequestMeta, Version};
use flaskhost_python::serve::SlotOptions;
use flaskhost_python::testing::checked_environ;

fn python() {
    static START: Once = Once::new();
    START.call_once(|| {
        flaskhost_python::interp::start(&Default::default()).expect("python starts");
    });
}

fn environ(
    meta: &RequestMeta<'_>,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> BTreeMap<String, String> {
    python();
    let mut buf = Vec::new();
    let cl = (!body.is_empty()).then_some(body.len() as u64);
    request::encode(
        &mut buf,
        meta,
        headers.iter().copied(),
        cl,
        BodyMode::Complete,
        body,
    );
    let opts = SlotOptions {
        multithread: true,
        multiprocess: false,
    };
    checked_environ(&buf[5..], opts)
        .expect("valid environ")
        .into_iter()
        .collect()
}

fn meta<'a>(method: &'a str, path: &'a str, query: &'a str) -> RequestMeta<'a> {
    RequestMeta {
        method,
        https: true,
        version: Version::Http11,
        raw_path: path,
        query,
        script_name: "/app",
        host: Some("example.org:8443"),
        host_from_uri: false,
        local_port: 8443,
        remote: Some("192.0.2.7:50123".parse().expect("addr")),
    }
}

#[test]
fn cgi_variables() {
    let headers: &[(&str, &[u8])] = &[
        ("host", b"example.org:8443"),
        ("content-type", b"text/plain"),
        ("content-length", b"5"),
        ("x-multi", b"a"),
        ("x-multi", b"b"),
        ("user-agent", b"t\xe9st"),
    ];
    let env = environ(
        &meta("POST", "/app/caf%C3%A9/x", "q=1%202"),
        headers,
        b"hello",
    );
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("REQUEST_METHOD"), Some("POST"));
    assert_eq!(get("SCRIPT_NAME"), Some("/app"));
    // UTF-8 bytes of "café" as latin-1 code points, PEP 3333's bytes-as-str.
    assert_eq!(get("PATH_INFO"), Some("/caf\u{c3}\u{a9}/x"));
    assert_eq!(get("QUERY_STRING"), Some("q=1%202"));
    assert_eq!(get("SERVER_NAME"), Some("example.org"));
    assert_eq!(get("SERVER_PORT"), Some("8443"));
    assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.7"));
    assert_eq!(get("REMOTE_PORT"), Some("50123"));
    assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
    assert_eq!(get("CONTENT_LENGTH"), Some("5"));
    assert_eq!(get("HTTP_X_MULTI"), Some("a, b"));
    assert_eq!(get("HTTP_USER_AGENT"), Some("t\u{e9}st"));
    assert_eq!(get("wsgi.url_scheme"), Some("https"));
    assert_eq!(get("wsgi.multithread"), Some("True"));
    assert_eq!(get("wsgi.multiprocess"), Some("False"));
    assert_eq!(get("wsgi.run_once"), Some("False"));
    assert_eq!(get("wsgi.version"), Some("(1, 0)"));
    assert!(!env.contains_key("HTTP_CONTENT_TYPE") && !env.contains_key("HTTP_CONTENT_LENGTH"));
}

#[test]
fn empty_query_and_no_body_are_still_valid() {
    let env = environ(&meta("GET", "/", ""), &[], b"");
    assert_eq!(env.get("QUERY_STRING").map(String::as_str), Some(""));
    assert_eq!(env.get("SCRIPT_NAME").map(String::as_str), Some(""));
    assert_eq!(env.get("PATH_INFO").map(String::as_str), Some("/"));
    assert!(!env.contains_key("CONTENT_LENGTH"));
}
