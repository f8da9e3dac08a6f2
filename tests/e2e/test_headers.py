"""Response headers the edge adds (nginx `add_header ... always`): the security headers on every
response (app, static, errors, HTTP/2), never duplicating a header the app set itself;
configurable and removable; no Server header (so no version) unless configured.
HSTS over TLS is covered in test_tls.py, and from a trusted proxy in test_forwarded.py."""

import http.client

import httpx
import pytest
from fhtest import send_raw

SECURITY = {"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "strict-origin-when-cross-origin"}


def get(server, path):
    conn = server.http_connection()
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


@pytest.fixture(scope="module")
def default_server(module_serve, tmp_path_factory):
    static = tmp_path_factory.mktemp("static")
    (static / "a.txt").write_text("a\n")
    return module_serve("edge_headers:application", "--static", f"/s={static}",
                        "--max-body-size", "100")


@pytest.mark.parametrize("path,status", [
    ("/", 200),
    ("/?status=404", 404),
    ("/?status=500", 500),
    ("/s/a.txt", 200),
    ("/s/missing", 404),
    ("/s/%2e%2e/x", 400),
])
def test_security_headers_on_every_response(default_server, path, status):
    # Twice: a static file's second answer comes from memory, with its headers prebuilt.
    for _ in range(2):
        resp = get(default_server, path)
        assert resp.status == status
        for name, value in SECURITY.items():
            assert resp.headers.get_all(name) == [value], name
        assert resp.getheader("Strict-Transport-Security") is None, "HSTS only over https"
        assert resp.getheader("Server") is None


def test_security_headers_on_edge_errors(default_server):
    # 413 from the body limit, 400 from the framing guard, 405 from a static mount.
    conn = default_server.http_connection()
    conn.request("POST", "/", body=b"x" * 101)
    r413 = conn.getresponse()
    r413.read()
    conn.close()
    assert r413.status == 413
    with default_server.raw_socket() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # HTTP/1.1 without Host
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data
    conn = default_server.http_connection()
    conn.request("DELETE", "/s/a.txt")
    r405 = conn.getresponse()
    r405.read()
    conn.close()
    for resp in (r413, r405):
        assert resp.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert b"\r\nx-frame-options: SAMEORIGIN\r\n" in data


def test_app_headers_are_kept_not_duplicated(default_server):
    resp = get(default_server, "/?X-Frame-Options=DENY&Referrer-Policy=no-referrer&Server=myapp%2F1.0")
    assert resp.headers.get_all("X-Frame-Options") == ["DENY"]
    assert resp.headers.get_all("Referrer-Policy") == ["no-referrer"]
    assert resp.headers.get_all("X-Content-Type-Options") == ["nosniff"]
    assert resp.headers.get_all("Server") == ["myapp/1.0"]


def test_headers_over_http2(default_server):
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.get(default_server.url + "/?status=404")
    assert r.http_version == "HTTP/2" and r.status_code == 404
    for name, value in SECURITY.items():
        assert r.headers.get_list(name) == [value]


def head_names(data: bytes) -> list[bytes]:
    """The header names of the first response head in ``data``, as sent."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0] for line in head.split(b"\r\n")[1:]]


RAW_GET = (b"GET /?X-Custom-Header=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
           b"GET /s/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def test_header_names_are_lowercase_by_default(default_server):
    # Header names are case-insensitive (RFC 9110); HTTP/1 sends them as HTTP/2 does.
    for request in RAW_GET:
        data, _ = send_raw(default_server, request)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        names = head_names(data)
        assert b"content-type" in names and b"x-frame-options" in names, names
        assert all(n == n.lower() for n in names), names
    assert b"x-custom-header" in head_names(send_raw(default_server, RAW_GET[0])[0])


def test_title_case_headers_option(serve, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "a.txt").write_text("a\n")
    server = serve("edge_headers:application", "--static", f"/s={static}",
                   "--title-case-headers", "true")
    for request in RAW_GET:
        data, _ = send_raw(server, request)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
        names = head_names(data)
        for name in (b"Content-Type", b"Content-Length", b"Date", b"X-Frame-Options",
                     b"X-Content-Type-Options", b"Referrer-Policy"):
            assert name in names, (name, names)
        assert all(n == n.title() for n in names), names
    assert b"X-Custom-Header" in head_names(send_raw(server, RAW_GET[0])[0])
    # HTTP/2 names are lowercase whatever the option says (RFC 9113).
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.get(server.url + "/")
    assert r.http_version == "HTTP/2" and r.status_code == 200
    assert all(k == k.lower() for k, _ in r.headers.raw), r.headers.raw


def test_configured_headers_replace_remove_and_add(serve, tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    server = serve("edge_headers:application",
                   "--static", f"/s={tmp_path}",
                   "--header", "X-Frame-Options: DENY",
                   "--header", "Referrer-Policy:",
                   "--header", "Permissions-Policy: camera=(), microphone=()",
                   "--server-header", "flaskhost")
    # The app, then a static file twice (its second answer has its headers prebuilt).
    for path in ("/", "/s/a.txt", "/s/a.txt"):
        resp = get(server, path)
        assert resp.status == 200, path
        assert resp.headers.get_all("X-Frame-Options") == ["DENY"], path
        assert resp.getheader("Referrer-Policy") is None, path
        assert resp.getheader("X-Content-Type-Options") == "nosniff", path
        assert resp.getheader("Permissions-Policy") == "camera=(), microphone=()", path
        assert resp.headers.get_all("Server") == ["flaskhost"], path
    # The app's own Server header wins over the configured one.
    assert get(server, "/?Server=app").headers.get_all("Server") == ["app"]


def test_headers_from_the_environment_one_per_line(serve):
    server = serve("edge_headers:application",
                   env={"FLASKHOST_HEADER": "X-A: 1, 2\nX-B: three\n"})
    resp = get(server, "/")
    assert resp.getheader("X-A") == "1, 2"
    assert resp.getheader("X-B") == "three"


def test_security_headers_off(serve):
    server = serve("edge_headers:application", "--security-headers", "off")
    resp = get(server, "/")
    for name in SECURITY:
        assert resp.getheader(name) is None


def test_invalid_header_is_a_config_error(run_flaskhost):
    from fhtest import APPS, EX_USAGE
    proc = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS,
                         "--header", "X-Bad Name: 1")
    assert proc.returncode == EX_USAGE
    assert "header" in proc.output()
