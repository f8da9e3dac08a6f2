"""The client's real address and scheme. The app sees the TCP peer in REMOTE_ADDR and https in
wsgi.url_scheme under TLS (test_tls.py) without ProxyFix; behind a load balancer,
--forwarded-allow-ips trusts X-Forwarded-For/-Proto/-Host and Forwarded from those peers only.
--proxy-headers passes X-Real-IP and X-Forwarded-* to the app like the seed's
proxy_set_header lines, set by flaskhost so a client cannot forge them."""

import http.client
import json
import os
import socket

import pytest


def echo(server, headers=None, path="/"):
    conn = server.http_connection()
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    env = json.loads(resp.read())
    conn.close()
    return env, resp


SPOOF = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
         "X-Forwarded-Host": "evil.example", "Forwarded": "for=198.51.100.9;proto=https"}


@pytest.fixture(scope="module")
def untrusting(module_serve):
    return module_serve("environ_echo:application")


def test_without_trust_the_peer_is_the_client(untrusting):
    env, resp = echo(untrusting, SPOOF)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"].startswith("127.0.0.1:")
    assert resp.getheader("Strict-Transport-Security") is None
    # Without --proxy-headers the headers reach the app as sent.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


def test_untrusted_network_is_ignored(serve):
    server = serve("environ_echo:application", "--forwarded-allow-ips", "10.0.0.0/8")
    env, _ = echo(server, SPOOF)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"


@pytest.fixture(scope="module")
def trusting(module_serve):
    return module_serve("environ_echo:application", "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8")


def test_trusted_proxy_sets_client_scheme_and_host(trusting):
    env, resp = echo(trusting, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                                "X-Forwarded-Host": "app.example.com"})
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "app.example.com"
    assert env["SERVER_NAME"] == "app.example.com"
    # HSTS follows the scheme the client used, as the trusted proxy reports it.
    assert resp.getheader("Strict-Transport-Security") == "max-age=31536000"


def test_chain_of_trusted_proxies_is_skipped(trusting):
    env, _ = echo(trusting, {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.1.1.1, 10.2.2.2"})
    assert env["REMOTE_ADDR"] == "198.51.100.1", "the rightmost untrusted address is the client"
    env, _ = echo(trusting, {"X-Forwarded-For": "10.1.1.1"})
    assert env["REMOTE_ADDR"] == "10.1.1.1"
    env, _ = echo(trusting, {"X-Forwarded-For": "unknown, 10.1.1.1"})
    assert env["REMOTE_ADDR"] == "10.1.1.1"


def test_forwarded_header(trusting):
    env, _ = echo(trusting, {"Forwarded": 'for="[2001:db8::1]:4711";proto=https;host=h.example'})
    assert env["REMOTE_ADDR"] == "2001:db8::1"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "h.example"


def test_bad_forwarded_values_change_nothing(trusting):
    env, _ = echo(trusting, {"X-Forwarded-For": "not-an-ip", "X-Forwarded-Host": "bad host/x"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_HOST"].startswith("127.0.0.1:")


@pytest.fixture(scope="module")
def proxy_headers(module_serve):
    return module_serve("environ_echo:application", "--proxy-headers", "true")


def test_proxy_headers_like_proxy_set_header(proxy_headers):
    env, _ = echo(proxy_headers, {"X-Real-IP": "1.2.3.4", "X-Forwarded-For": "203.0.113.7",
                                  "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                                  "Forwarded": "for=1.1.1.1"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_REAL_IP"] == "127.0.0.1", "X-Real-IP $remote_addr, not the client's"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1", "$proxy_add_x_forwarded_for"
    assert env["HTTP_X_FORWARDED_PROTO"] == "http", "X-Forwarded-Proto $scheme"
    assert "HTTP_X_FORWARDED_HOST" not in env and "HTTP_FORWARDED" not in env


def test_proxy_headers_without_incoming_ones(proxy_headers):
    env, _ = echo(proxy_headers)
    assert env["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "http"


def test_proxy_headers_behind_a_trusted_proxy(serve):
    server = serve("environ_echo:application", "--proxy-headers", "on",
                   "--forwarded-allow-ips", "127.0.0.1")
    env, _ = echo(server, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                           "X-Forwarded-Host": "app.example"})
    assert env["HTTP_X_REAL_IP"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_X_FORWARDED_HOST"] == "app.example"


def test_unix_socket_peer_is_trusted_when_any_proxy_is(serve, short_tmp):
    path = os.path.join(short_tmp, "fh.sock")
    server = serve("environ_echo:application", "--forwarded-allow-ips", "10.0.0.1",
                   binds=[f"unix:{path}"])

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(path)

    conn = UnixConnection("localhost")
    conn.request("GET", "/", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    env = json.loads(conn.getresponse().read())
    conn.close()
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert server.unix_paths == [path]
