"""TLS with real clients: curl (HTTP/1.1, HTTP/2, TLS 1.2/1.3), openssl s_client (versions,
SNI, ALPN, session resumption), httpx over HTTP/2; the plain-HTTP redirect; certificates
re-read on SIGHUP without dropping open connections; and the deploy config (deploy/
flaskhost.toml, the seed's nginx block) behaving like the seed.

Certificates are made at test time with the openssl CLI."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from fhtest import APPS, ROOT, VENV, eventually, read_until_closed

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HTTPS_RE = r"listening on https://127\.0\.0\.1:(\d+)"


# ---- certificates ------------------------------------------------------------------------------
def openssl(*args, stdin=None):
    out = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, input=stdin, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


def make_cert(directory: Path, name: str, key_kind="rsa-pkcs8", sans=None):
    """A self-signed certificate for ``name`` (plus ``sans``); returns (cert, key) paths.
    ``key_kind``: rsa-pkcs8 (BEGIN PRIVATE KEY), rsa-pkcs1 (BEGIN RSA PRIVATE KEY) or
    ec-sec1 (BEGIN EC PRIVATE KEY)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    san = ",".join(sans or [f"DNS:{name}", "IP:127.0.0.1"])
    if key_kind == "ec-sec1":
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        openssl("req", "-x509", "-key", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                "-addext", f"subjectAltName={san}")
    else:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}")
        if key_kind == "rsa-pkcs1":
            openssl("rsa", "-in", key, "-traditional", "-out", key)
    first_line = key.read_text().splitlines()[0]
    expected = {"rsa-pkcs8": "BEGIN PRIVATE KEY", "rsa-pkcs1": "BEGIN RSA PRIVATE KEY",
                "ec-sec1": "BEGIN EC PRIVATE KEY"}[key_kind]
    assert expected in first_line, first_line
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {
        "localhost": make_cert(d, "localhost", sans=["DNS:localhost", "IP:127.0.0.1"]),
        "a": make_cert(d, "a.test"),
        "b": make_cert(d, "b.test", key_kind="ec-sec1"),
    }


# ---- helpers -----------------------------------------------------------------------------------
def start_tls(serve, app, *args, **kw):
    """Starts a server whose TCP bind is TLS and waits for its ``listening on https://`` line.
    Returns (server, port)."""
    server = serve(app, *args, wait=False, **kw)
    port = int(server.wait_for_line(HTTPS_RE, timeout=30).group(1))
    server.wait_for_line(r"ready in", timeout=30)
    return server, port


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", *map(str, args)], capture_output=True, timeout=timeout)


def s_client(port, *args, stdin=b"", timeout=30):
    return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *map(str, args)],
                          capture_output=True, input=stdin, timeout=timeout)


def https_get(port, cafile, path="/", host="127.0.0.1"):
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def peer_subject(port, servername=None, extra=()):
    args = ["-servername", servername] if servername else ["-noservername"]
    out = s_client(port, *args, *extra, stdin=b"")
    text = out.stdout.decode(errors="replace")
    m = re.search(r"subject=.*?CN\s*=\s*([\w.\-]+)", text)
    assert m, text[-2000:]
    return m.group(1)


# ---- HTTP over TLS -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(module_serve, certs):
    cert, key = certs["localhost"]
    return start_tls(module_serve, "environ_echo:application", "--tls-cert", cert, "--tls-key", key)


@pytest.mark.parametrize("flag,version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_curl_https_http1_and_http2(tls_server, certs, flag, version):
    server, port = tls_server
    cert, _ = certs["localhost"]
    out = curl(flag, "--cacert", cert, "--resolve", f"localhost:{port}:127.0.0.1",
               "-w", "\n%{http_version} %{http_code}", f"https://localhost:{port}/path?x=1")
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    assert tail.decode() == f"{version} 200"
    env = json.loads(body)
    assert env["wsgi.url_scheme"] == "https"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["PATH_INFO"] == "/path"
    assert env["SERVER_PROTOCOL"].startswith("HTTP/2" if version == "2" else "HTTP/1.1")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_versions_with_curl(tls_server, certs, version):
    server, port = tls_server
    cert, _ = certs["localhost"]
    out = curl(f"--tlsv{version}", "--tls-max", version, "--cacert", cert, "-o", "/dev/null",
               "-w", "%{http_code}", "--resolve", f"localhost:{port}:127.0.0.1",
               f"https://localhost:{port}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"200"


@pytest.mark.parametrize("flag,protocol", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_versions_with_openssl(tls_server, flag, protocol):
    _, port = tls_server
    out = s_client(port, flag, "-brief", stdin=b"")
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert f"Protocol version: {protocol}" in text, text[-2000:]


def test_old_tls_is_refused(tls_server):
    """TLS 1.1 offered (the client's security level lowered so that it really offers it) is
    answered with an alert from the server, not a session."""
    _, port = tls_server
    out = s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", stdin=b"")
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "alert" in text and "Cipher is (NONE)" in text, text[-2000:]


def test_alpn_offers_h2_and_http11(tls_server):
    _, port = tls_server
    for offer, chosen in [("h2,http/1.1", "h2"), ("http/1.1", "http/1.1")]:
        out = s_client(port, "-alpn", offer, stdin=b"")
        text = out.stdout.decode(errors="replace")
        assert f"ALPN protocol: {chosen}" in text, text[-2000:]


def test_httpx_http2_get_and_post(certs, serve):
    cert, key = certs["localhost"]
    server, port = start_tls(serve, "input_echo:application", "--tls-cert", cert, "--tls-key", key)
    verify = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(http2=True, verify=verify, timeout=30) as client:
        r = client.get(f"https://127.0.0.1:{port}/")
        assert r.http_version == "HTTP/2" and r.status_code == 200
        body = os.urandom(300_000)
        r = client.post(f"https://127.0.0.1:{port}/", content=body)
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200 and r.content == body


def test_min_version_13_refuses_12(certs, serve):
    cert, key = certs["localhost"]
    _, port = start_tls(serve, "hello:application", "--tls-cert", cert, "--tls-key", key,
                        "--tls-min-version", "1.3")
    out = curl("--tlsv1.2", "--tls-max", "1.2", "--cacert", cert, "-o", "/dev/null",
               "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/")
    assert out.returncode != 0
    ok = curl("--tlsv1.3", "--cacert", cert, "-o", "/dev/null", "-w", "%{http_code}",
              "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/")
    assert ok.stdout == b"200", ok.stderr


@pytest.mark.parametrize("kind", ["rsa-pkcs8", "rsa-pkcs1", "ec-sec1"])
def test_key_formats(serve, tmp_path, kind):
    cert, key = make_cert(tmp_path, "localhost", key_kind=kind, sans=["DNS:localhost", "IP:127.0.0.1"])
    _, port = start_tls(serve, "hello:application", "--tls-cert", cert, "--tls-key", key)
    resp, body = https_get(port, cert)
    assert resp.status == 200 and body == b"Hello, World!\n"


def test_key_in_the_certificate_file(serve, tmp_path):
    cert, key = make_cert(tmp_path, "localhost", sans=["DNS:localhost", "IP:127.0.0.1"])
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(cert.read_text() + key.read_text())
    _, port = start_tls(serve, "hello:application", "--tls-cert", bundle)
    resp, _ = https_get(port, cert)
    assert resp.status == 200


def test_sni_chooses_the_certificate(serve, certs):
    (a_cert, a_key), (b_cert, b_key) = certs["a"], certs["b"]
    _, port = start_tls(serve, "hello:application", "--tls-cert", a_cert, "--tls-key", a_key,
                        "--tls-cert", b_cert, "--tls-key", b_key)
    assert peer_subject(port, "a.test") == "a.test"
    assert peer_subject(port, "b.test") == "b.test"
    # No SNI, or a name no certificate covers: the first certificate, like nginx's default.
    assert peer_subject(port, None) == "a.test"
    assert peer_subject(port, "other.test") == "a.test"
    out = curl("--cacert", b_cert, "-w", "%{http_code}", "-o", "/dev/null",
               "--resolve", f"b.test:{port}:127.0.0.1", f"https://b.test:{port}/")
    assert out.stdout == b"200", out.stderr


@pytest.mark.parametrize("flag", ["-tls1_2", "-tls1_3"])
def test_session_resumption(tls_server, tmp_path, flag):
    _, port = tls_server
    sess = tmp_path / "session.pem"
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    first = s_client(port, flag, "-ign_eof", "-sess_out", sess, stdin=request)
    assert b"HTTP/1.1 200" in first.stdout, first.stdout[-2000:]
    assert sess.exists() and sess.stat().st_size > 0
    second = s_client(port, flag, "-ign_eof", "-sess_in", sess, stdin=request)
    text = second.stdout.decode(errors="replace")
    assert "Reused, TLSv1." in text, text[-2000:]
    assert "HTTP/1.1 200" in text


def test_self_signed_for_local_use(serve):
    _, port = start_tls(serve, "environ_echo:application", "--tls", "self-signed")
    out = curl("-k", "-w", "\n%{http_code}", f"https://127.0.0.1:{port}/")
    body, _, code = out.stdout.rpartition(b"\n")
    assert code == b"200", out.stderr
    assert json.loads(body)["wsgi.url_scheme"] == "https"
    # Not trusted without -k: it is a local certificate, not a real one.
    assert curl("-o", "/dev/null", f"https://127.0.0.1:{port}/").returncode != 0
    assert peer_subject(port, "localhost") is not None


def test_plain_http_on_the_tls_port_is_not_served(tls_server):
    server, port = tls_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock, timeout=10)
    assert closed
    assert b"HTTP/1.1 200" not in data


def test_stalled_handshake_is_cut_off(serve, certs):
    cert, key = certs["localhost"]
    server, port = start_tls(serve, "hello:application", "--tls-cert", cert, "--tls-key", key,
                             "--header-timeout", "1s")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and data == b""
    resp, _ = https_get(port, cert)
    assert resp.status == 200


# ---- redirect ----------------------------------------------------------------------------------
def test_redirect_http_to_https(serve, certs):
    cert, key = certs["localhost"]
    server = serve("hello:application", "--tls-cert", cert, "--tls-key", key,
                   "--redirect-http", "127.0.0.1:0", wait=False)
    tls_port = int(server.wait_for_line(HTTPS_RE, timeout=30).group(1))
    plain_port = int(server.wait_for_line(
        r"listening on http://127\.0\.0\.1:(\d+) \(redirects to https\)").group(1))
    server.wait_for_line("ready in")
    conn = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=30)
    conn.request("GET", "/some/path?q=1&r=%20", headers={"Host": "example.com:8080"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://example.com:{tls_port}/some/path?q=1&r=%20"
    conn.request("POST", "/form", body=b"x", headers={"Host": "localhost"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://localhost:{tls_port}/form"
    conn.close()
    # curl follows it to the TLS port.
    out = curl("-L", "--cacert", cert, "-w", "\n%{http_code}", "--resolve",
               f"localhost:{tls_port}:127.0.0.1", "--resolve", f"localhost:{plain_port}:127.0.0.1",
               f"http://localhost:{plain_port}/")
    assert out.stdout.endswith(b"Hello, World!\n\n200"), (out.stdout, out.stderr)


# ---- reload on SIGHUP ----------------------------------------------------------------------------
def test_sighup_reloads_certificates_without_dropping_connections(serve, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    old_cert, old_key = make_cert(tmp_path / "old", "old.test",
                                  sans=["DNS:old.test", "DNS:localhost", "IP:127.0.0.1"])
    new_cert, new_key = make_cert(tmp_path / "new", "new.test",
                                  sans=["DNS:new.test", "DNS:localhost", "IP:127.0.0.1"])
    cert, key = live / "fullchain.pem", live / "privkey.pem"
    shutil.copy(old_cert, cert)
    shutil.copy(old_key, key)
    server, port = start_tls(serve, "hello:application", "--tls-cert", cert, "--tls-key", key)

    # A kept-alive connection made with the old certificate.
    ctx = ssl.create_default_context(cafile=str(old_cert))
    kept = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    kept.request("GET", "/before")
    assert kept.getresponse().read() == b"Hello, World!\n"
    assert peer_subject(port) == "old.test"

    # A broken file is refused; the old certificate stays.
    start = len(server.lines())
    cert.write_text("not a certificate\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_line(r"reload failed, keeping the current certificates", start=start)
    assert peer_subject(port) == "old.test"

    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    start = len(server.lines())
    server.send_signal(signal.SIGHUP)
    server.wait_for_line(r"TLS: 1 certificate\(s\) loaded", start=start)
    assert peer_subject(port) == "new.test"
    resp, _ = https_get(port, new_cert)
    assert resp.status == 200

    # The connection opened before the reload is still served.
    kept.request("GET", "/after")
    assert kept.getresponse().read() == b"Hello, World!\n"
    kept.close()


def test_bad_certificate_fails_startup(run_flaskhost, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("nothing here\n")
    proc = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS,
                         "--bind", "127.0.0.1:0", "--workers", "1", "--tls-cert", bad)
    assert proc.returncode == 64, proc.output()
    assert "bad.pem" in proc.output()


def test_mismatched_key_fails_startup(run_flaskhost, certs):
    (a_cert, _), (_, b_key) = certs["a"], certs["b"]
    proc = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS,
                         "--bind", "127.0.0.1:0", "--workers", "1", "--tls-cert", a_cert,
                         "--tls-key", b_key)
    assert proc.returncode == 64, proc.output()
    assert "does not fit the certificate" in proc.output()


# ---- the deploy config: the seed's nginx block as one flaskhost file -----------------------------
DEPLOY = ROOT / "deploy" / "flaskhost.toml"


@pytest.fixture(scope="module")
def seed_site(tmp_path_factory, certs):
    """deploy/flaskhost.toml with its absolute paths and ports moved into a temp directory:
    every replaced text must be in the file, so the test follows the file."""
    root = tmp_path_factory.mktemp("site")
    app_dir = root / "www" / "myapp"
    static = app_dir / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_text("body { color: #333 }\n")
    (static / "favicon.ico").write_bytes(b"\x00\x00\x01\x00icon")
    (static / "robots.txt").write_text("User-agent: *\nDisallow:\n")
    (app_dir / "wsgi.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(APPS)!r})\n"
        "from environ_echo import application\n")
    le = root / "letsencrypt"
    le.mkdir()
    cert, key = certs["localhost"]
    shutil.copy(cert, le / "fullchain.pem")
    shutil.copy(key, le / "privkey.pem")
    logs = root / "log"
    logs.mkdir()
    text = DEPLOY.read_text()
    replacements = {
        '"/var/www/myapp/venv"': json.dumps(str(VENV)),
        "/var/www/myapp": str(app_dir),
        "/etc/letsencrypt/live/example.com": str(le),
        "/var/log/flaskhost": str(logs),
        'bind = [":443"]': 'bind = ["127.0.0.1:0"]',
        'redirect-http = [":80"]': 'redirect-http = ["127.0.0.1:0"]',
        "workers = 4": "workers = 1",
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/flaskhost.toml no longer contains {old!r}"
        text = text.replace(old, new)
    config = root / "flaskhost.toml"
    config.write_text(text)
    return {"config": config, "cert": cert, "log": logs / "access.log", "static": static}


@pytest.fixture(scope="module")
def seed_server(module_serve, seed_site):
    server = module_serve(None, config=seed_site["config"], chdir=None, binds=[], workers=None,
                          wait=False)
    tls_port = int(server.wait_for_line(HTTPS_RE, timeout=30).group(1))
    plain_port = int(server.wait_for_line(
        r"listening on http://127\.0\.0\.1:(\d+) \(redirects to https\)").group(1))
    server.wait_for_line("ready in")
    return server, tls_port, plain_port


def seed_get(seed_server, seed_site, path, headers=None, method="GET", body=None):
    _, port, _ = seed_server
    ctx = ssl.create_default_context(cafile=str(seed_site["cert"]))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_seed_redirects_port_80(seed_server):
    _, tls_port, plain_port = seed_server
    conn = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=30)
    conn.request("GET", "/login?next=/", headers={"Host": "example.com"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://example.com:{tls_port}/login?next=/"


def test_seed_app_over_tls_with_headers(seed_server, seed_site):
    resp, data = seed_get(seed_server, seed_site, "/hello")
    assert resp.status == 200
    env = json.loads(data)
    assert env["wsgi.url_scheme"] == "https"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    # uwsgi_param X-Real-IP / X-Forwarded-For / X-Forwarded-Proto
    assert env["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    # add_header ... always, plus HSTS over TLS
    assert resp.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.getheader("X-XSS-Protection") == "1; mode=block"
    assert resp.getheader("Strict-Transport-Security", "").startswith("max-age=")
    assert resp.getheader("Server") is None


def test_seed_static_alias_with_expires(seed_server, seed_site):
    # Twice: the second answer comes from memory, with its headers prebuilt (HSTS included).
    for _ in range(2):
        resp, data = seed_get(seed_server, seed_site, "/static/css/site.css")
        assert resp.status == 200 and data == b"body { color: #333 }\n"
        assert resp.getheader("Content-Type").startswith("text/css")
        assert resp.getheader("Cache-Control") == "max-age=2592000, public, immutable"
        assert resp.getheader("Expires")
        assert resp.getheader("X-Frame-Options") == "SAMEORIGIN"
        assert resp.getheader("Strict-Transport-Security", "").startswith("max-age=")
    etag = resp.getheader("ETag")
    resp, data = seed_get(seed_server, seed_site, "/static/css/site.css", {"If-None-Match": etag})
    assert resp.status == 304 and data == b""
    resp, _ = seed_get(seed_server, seed_site, "/static/../wsgi.py")
    assert resp.status in (400, 404)
    resp, _ = seed_get(seed_server, seed_site, "/static/%2e%2e/wsgi.py")
    assert resp.status in (400, 404)


def test_seed_favicon_and_robots_not_logged(seed_server, seed_site):
    resp, data = seed_get(seed_server, seed_site, "/favicon.ico")
    assert resp.status == 200 and data == b"\x00\x00\x01\x00icon"
    assert resp.getheader("Cache-Control") == "max-age=2592000"
    resp, data = seed_get(seed_server, seed_site, "/robots.txt")
    assert resp.status == 200 and data.startswith(b"User-agent")
    resp, _ = seed_get(seed_server, seed_site, "/logged-marker")
    assert resp.status == 200
    log = seed_site["log"]
    eventually(lambda: log.exists() and "/logged-marker" in log.read_text(), timeout=10,
               message="the access log line")
    text = log.read_text()
    assert "/favicon.ico" not in text and "/robots.txt" not in text
    assert '"GET /logged-marker HTTP/1.1" 200' in text


def test_seed_client_max_body_size(seed_server, seed_site):
    # Declared over 10M: refused from the head alone, without the body being sent.
    _, port, _ = seed_server
    ctx = ssl.create_default_context(cafile=str(seed_site["cert"]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Length: 10485761\r\n\r\n")
        data, closed = read_until_closed(sock, timeout=10)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    resp, data = seed_get(seed_server, seed_site, "/upload", method="POST", body=b"x" * 1000)
    assert resp.status == 200 and json.loads(data)["CONTENT_LENGTH"] == "1000"
