"""The WSGI environ (PEP 3333) as the app sees it, through tests/apps/environ_echo.py and
tests/apps/pyinfo.py."""

import json
from pathlib import Path

import httpx
import pytest
import requests

from fhtest import VENV, build_python, read_until_closed


@pytest.fixture(scope="module")
def env_server(module_serve):
    return module_serve("environ_echo:application")


def echo(server, path="/", **kw):
    r = server.get(path, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def echo_raw(server, request_head: bytes):
    """Sends one raw request (with Connection: close) and returns the JSON environ."""
    with server.raw_socket() as sock:
        sock.sendall(request_head)
        data, closed = read_until_closed(sock)
    assert closed, f"connection not closed after Connection: close; got {data[:300]!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return json.loads(body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]


def test_basic_cgi_keys(env_server):
    env = echo(env_server, "/foo/bar?a=1&b=2")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/foo/bar"
    assert env["QUERY_STRING"] == "a=1&b=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_PORT"] == str(env_server.port)
    assert env["SERVER_NAME"] in ("127.0.0.1", "localhost")
    assert env["HTTP_HOST"] == f"127.0.0.1:{env_server.port}"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_wsgi_keys(env_server):
    env = echo(env_server)
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.multithread"] is False  # --threads defaults to 1
    types = env["_types"]
    assert types["wsgi.multiprocess"] == "bool"
    assert types["wsgi.multithread"] == "bool"
    assert types["wsgi.run_once"] == "bool"
    assert "wsgi.input" in types and "wsgi.errors" in types
    # The validator wraps these two; the server's own objects are under the wrappers.
    assert types["wsgi.input"] == "InputWrapper"
    assert types["wsgi.errors"] == "ErrorWrapper"


def test_every_cgi_value_is_str(env_server):
    env = echo(env_server, "/x?y=z", headers={"X-Thing": "1"})
    for key, type_name in env["_types"].items():
        if "." not in key:
            assert type_name == "str", f"{key} is a {type_name}"


def test_path_info_is_percent_decoded(env_server):
    assert echo(env_server, "/a%20b/c")["PATH_INFO"] == "/a b/c"


def test_path_info_utf8_bytes_as_latin1(env_server):
    # PEP 3333: native strings hold the raw bytes decoded as latin-1.
    env = echo(env_server, "/caf%C3%A9")
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/caf\u00e9"


def test_query_string_is_raw(env_server):
    env = echo(env_server, "/q?a=%20b&c=d+e&caf%C3%A9&empty=")
    assert env["QUERY_STRING"] == "a=%20b&c=d+e&caf%C3%A9&empty="
    assert env["PATH_INFO"] == "/q"


def test_query_string_present_when_empty(env_server):
    assert echo(env_server, "/noquery")["QUERY_STRING"] == ""


def test_repeated_headers_joined_with_comma(env_server):
    conn = env_server.http_connection()
    conn.putrequest("GET", "/multi")
    conn.putheader("X-Multi", "a")
    conn.putheader("X-Multi", "b")
    conn.putheader("X-Multi", "c d")
    conn.endheaders()
    resp = conn.getresponse()
    env = json.loads(resp.read())
    conn.close()
    assert env["HTTP_X_MULTI"] == "a, b, c d"


def test_header_names_upper_cased_and_dashes_become_underscores(env_server):
    env = echo_raw(env_server, b"GET / HTTP/1.1\r\nHost: x\r\nx-custom-Header:   value with spaces  "
                               b"\r\nConnection: close\r\n\r\n")
    assert env["HTTP_X_CUSTOM_HEADER"] == "value with spaces"


def test_header_value_non_ascii_is_latin1(env_server):
    env = echo_raw(env_server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xc3\xa9\r\n"
                               b"Connection: close\r\n\r\n")
    assert env["HTTP_X_LATIN"] == "caf\u00c3\u00a9"


def send_headers(server, headers):
    conn = server.http_connection()
    conn.putrequest("GET", "/underscores")
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    env = json.loads(conn.getresponse().read())
    conn.close()
    return env


def test_headers_with_underscores_are_dropped(env_server):
    # nginx and gunicorn drop them: X_Custom_Auth would otherwise be indistinguishable from
    # X-Custom-Auth in the environ, which lets a client spoof a header a proxy sets.
    env = send_headers(env_server, [("X_Custom_Auth", "spoofed"), ("X-Request-Note", "ok"),
                                    ("Under_Score", "x"), ("X_Forwarded_For", "6.6.6.6")])
    assert "HTTP_X_CUSTOM_AUTH" not in env
    assert "HTTP_UNDER_SCORE" not in env
    assert env["HTTP_X_REQUEST_NOTE"] == "ok"
    # The server may set X-Forwarded-For itself; the underscore spelling must not feed it.
    assert "6.6.6.6" not in env.get("HTTP_X_FORWARDED_FOR", "")
    assert "spoofed" not in json.dumps(env)


def test_underscore_header_cannot_override_dash_header(env_server):
    env = send_headers(env_server, [("X-Custom-Auth", "real"), ("X_Custom_Auth", "fake"),
                                    ("X-Forwarded-For", "10.0.0.1"),
                                    ("X_Forwarded_For", "6.6.6.6")])
    assert env["HTTP_X_CUSTOM_AUTH"] == "real"
    assert env["HTTP_X_FORWARDED_FOR"].startswith("10.0.0.1")
    assert "6.6.6.6" not in env["HTTP_X_FORWARDED_FOR"]


def test_content_type_and_length_without_http_prefix(env_server):
    r = requests.post(env_server.url + "/post", data=b"hello",
                      headers={"Content-Type": "text/x-test"}, timeout=30)
    env = r.json()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_remote_addr_and_port(env_server):
    conn = env_server.http_connection()
    conn.connect()
    local_port = conn.sock.getsockname()[1]
    conn.request("GET", "/remote")
    env = json.loads(conn.getresponse().read())
    conn.close()
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)


def test_server_protocol_http10(env_server):
    env = echo_raw(env_server, b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["PATH_INFO"] == "/old"


def test_http10_without_host_header(env_server):
    env = echo_raw(env_server, b"GET /nohost HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SERVER_NAME"], "SERVER_NAME must fall back to the listening address"
    assert env["SERVER_PORT"] == str(env_server.port)
    assert "HTTP_HOST" not in env


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_pass_through(env_server, method):
    r = requests.request(method, env_server.url + "/m", timeout=30)
    assert r.status_code == 200
    assert r.json()["REQUEST_METHOD"] == method


def test_http2_prior_knowledge(env_server):
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.get(env_server.url + "/h2?x=1", headers={"X-H2": "yes"})
    assert r.http_version == "HTTP/2"
    env = r.json()
    assert env["SERVER_PROTOCOL"] in ("HTTP/2", "HTTP/2.0")
    assert env["PATH_INFO"] == "/h2"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_X_H2"] == "yes"
    assert env["HTTP_HOST"] == f"127.0.0.1:{env_server.port}"


def test_keep_alive_reuses_connection(env_server):
    with requests.Session() as s:
        first = s.get(env_server.url + "/one", timeout=30).json()
        second = s.get(env_server.url + "/two", timeout=30).json()
    assert first["REMOTE_PORT"] == second["REMOTE_PORT"]
    assert (first["PATH_INFO"], second["PATH_INFO"]) == ("/one", "/two")


def test_script_name_prefix(serve):
    server = serve("environ_echo:application", "--script-name", "/prefix")
    env = echo(server, "/prefix/foo/bar?q=1")
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/foo/bar"
    assert env["QUERY_STRING"] == "q=1"
    env = echo(server, "/prefix")
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == ""


def test_multithread_flag_with_threads(serve):
    server = serve("environ_echo:application", threads=4)
    assert echo(server)["wsgi.multithread"] is True


def test_multiprocess_flag_with_workers(serve):
    server = serve("environ_echo:application", workers=2)
    assert echo(server)["wsgi.multiprocess"] is True


def test_environ_not_shared_between_requests(env_server):
    first = echo(env_server, "/a", headers={"X-Only-First": "1"})
    second = echo(env_server, "/b")
    assert first["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in second


def test_values_that_change_between_requests_are_never_stale(serve):
    """A worker thread reuses the string of a value that repeats (Host, client address and
    port, path, header values): whatever changes from one request to the next must show."""
    server = serve("environ_echo:application")  # one worker, one thread: the same environs
    seen = []
    for i, (host, agent, path) in enumerate([
        ("a.example", "agent/1", "/x"), ("a.example", "agent/1", "/x"),
        ("b.example:81", "agent/1", "/x"), ("b.example:81", "agent/2", "/y"),
        ("a.example", "agent/2" + "z" * 300, "/x"), ("a.example", "agent/1", "/x"),
    ]):
        conn = server.http_connection()
        conn.connect()
        port = conn.sock.getsockname()[1]
        for _ in range(2):  # the same connection twice, then a new one (a new client port)
            conn.request("GET", path, headers={"Host": host, "User-Agent": agent})
            env = json.loads(conn.getresponse().read())
            assert env["HTTP_HOST"] == host, i
            assert env["SERVER_NAME"] == host.split(":")[0], i
            assert env["SERVER_PORT"] == (host.split(":")[1] if ":" in host else str(server.port)), i
            assert env["HTTP_USER_AGENT"] == agent, i
            assert env["PATH_INFO"] == path, i
            assert env["REMOTE_PORT"] == str(port), i
            seen.append(env["REMOTE_PORT"])
        conn.close()
    assert len(set(seen)) == 6


# ---- the interpreter: the app runs inside the venv --------------------------------------------
def check_venv(info):
    venv = VENV.resolve()
    assert Path(info["prefix"]).resolve() == venv, info
    assert Path(info["executable"]).parent.resolve() == (venv / "bin"), info
    assert tuple(info["version"][:2]) == build_python()  # what the binary says it embeds
    assert Path(info["flask_file"]).resolve().is_relative_to(venv), info["flask_file"]
    assert any(Path(p).resolve() == Path(__file__).resolve().parents[1] / "apps"
               for p in info["path"] if p), info["path"]


def test_sys_prefix_from_virtual_env(serve):
    server = serve("pyinfo:application")
    check_venv(server.get("/").json())


def test_sys_prefix_from_venv_flag(serve):
    server = serve("pyinfo:application", "--venv", str(VENV), venv=False)
    check_venv(server.get("/").json())


def test_environment_variables_reach_the_app(serve):
    server = serve("pyinfo:application", env={"FH_TEST_ENV_MARKER": "marker-value-1"})
    assert server.get("/").json()["env_marker"] == "marker-value-1"


def test_chdir_sets_working_directory(serve):
    server = serve("pyinfo:application")
    assert Path(server.get("/").json()["cwd"]).resolve() == Path(__file__).resolve().parents[1] / "apps"
