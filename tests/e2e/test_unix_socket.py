"""Listening on a Unix socket (the nginx -> uWSGI setup): --bind unix:/path --socket-mode 660."""

import http.client
import json
import os
import socket
import stat
import subprocess


from fhtest import HTTP_TIMEOUT


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=HTTP_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_get(path, target="/", headers=None):
    conn = UnixHTTPConnection(path)
    conn.request("GET", target, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_unix_socket_mode_and_curl(serve, short_tmp):
    sock_path = os.path.join(short_tmp, "app.sock")
    server = serve("hello:application", "--socket-mode", "660", binds=[f"unix:{sock_path}"])
    assert server.unix_paths == [sock_path]
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(stat.S_IMODE(st.st_mode))
    out = subprocess.run(["curl", "-sS", "--unix-socket", sock_path, "http://localhost/"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Hello, World!\n"


def test_unix_socket_other_mode(serve, short_tmp):
    sock_path = os.path.join(short_tmp, "app.sock")
    serve("hello:application", "--socket-mode", "0600", binds=[f"unix:{sock_path}"])
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600


def test_unix_socket_environ(serve, short_tmp):
    sock_path = os.path.join(short_tmp, "env.sock")
    server = serve("environ_echo:application", binds=[f"unix:{sock_path}"])
    status, body = unix_get(server.unix_paths[0], "/via/unix?x=1",
                            headers={"Host": "example.test"})
    assert status == 200
    env = json.loads(body)
    assert env["PATH_INFO"] == "/via/unix"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_HOST"] == "example.test"
    assert env["wsgi.url_scheme"] == "http"
    for key in ("REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT"):
        assert isinstance(env.get(key, ""), str)


def test_unix_and_tcp_together(serve, short_tmp):
    sock_path = os.path.join(short_tmp, "both.sock")
    server = serve("hello:application", binds=[f"unix:{sock_path}", "127.0.0.1:0"])
    assert server.unix_paths == [sock_path]
    assert len(server.urls) == 1
    assert unix_get(sock_path) == (200, b"Hello, World!\n")
    assert server.get("/").content == b"Hello, World!\n"


def test_stale_socket_file_is_replaced(serve, short_tmp):
    """A socket file left behind by a crashed server must not prevent a restart."""
    sock_path = os.path.join(short_tmp, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # the file stays, nobody listens
    assert os.path.exists(sock_path)
    server = serve("hello:application", binds=[f"unix:{sock_path}"])
    assert unix_get(server.unix_paths[0]) == (200, b"Hello, World!\n")
