"""The response side of WSGI: body kinds (list, generator, write(), file_wrapper), transfer
framing, HEAD, bodiless statuses, start_response's exc_info rules, close(), large streamed
downloads without buffering, and the app's output streams."""

import hashlib
import os
import subprocess
import time

import pytest
import requests

from fhtest import (HTTP_TIMEOUT, MiB, RssSampler, eventually, pattern_sha256,
                    read_until_closed, tree_rss, unique_token)


def test_hello(serve, app_mode):
    server = serve("hello:application", *app_mode)
    r = server.get("/")
    assert r.status_code == 200
    assert r.content == b"Hello, World!\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Content-Length"] == "14"


def test_hello_with_curl(serve):
    server = serve("hello:application")
    out = subprocess.run(["curl", "-sS", "-i", server.url + "/"], capture_output=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"Hello, World!\n"


def test_hello_http10_with_curl(serve):
    server = serve("hello:application")
    out = subprocess.run(["curl", "-sS", "-0", "-i", server.url + "/"], capture_output=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200"
    assert body == b"Hello, World!\n"


# ---- body kinds and framing -----------------------------------------------------------------
@pytest.fixture(scope="module")
def gen_server(module_serve):
    return module_serve("body_generator:application")


def test_generator_body_is_chunked(gen_server):
    r = gen_server.get("/?n=5")
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.headers
    assert r.content == b"".join(f"chunk-{i}\n".encode() for i in range(5))


def test_generator_empty_strings_do_not_end_chunked_body(gen_server):
    with gen_server.raw_socket() as sock:
        sock.sendall(b"GET /?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    # Exactly one terminating zero-size chunk, at the very end.
    assert body.endswith(b"0\r\n\r\n")
    assert body.count(b"\r\n0\r\n") + body.startswith(b"0\r\n") == 1, body


def test_generator_body_http10_is_close_delimited(gen_server):
    with gen_server.raw_socket() as sock:
        sock.sendall(b"GET /?n=4 HTTP/1.0\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"".join(f"chunk-{i}\n".encode() for i in range(4))


@pytest.mark.parametrize("cl", ["0", "1"])
def test_list_body(serve, cl):
    server = serve("body_list:application")
    r = server.get(f"/?cl={cl}")
    assert r.status_code == 200
    assert r.content == b"first;second;third"
    if cl == "1":
        assert r.headers["Content-Length"] == str(len(b"first;second;third"))


def test_write_callable(serve):
    server = serve("write_callable:application")
    r = server.get("/")
    assert r.status_code == 200
    assert r.headers["X-Wrote"] == "yes"
    assert r.content == b"written-1;written-2;returned-3"


@pytest.fixture
def served_file(tmp_path):
    path = tmp_path / "served.bin"
    path.write_bytes(os.urandom(3 * MiB + 123))
    return path


@pytest.mark.parametrize("app", ["file_wrapper:application", "file_wrapper:raw_application"])
@pytest.mark.parametrize("kind", ["file", "bytesio"])
def test_file_wrapper(serve, served_file, tmp_path, app, kind):
    server = serve(app)
    marker = tmp_path / "file-closed"
    r = requests.get(server.url + "/", params={"path": str(served_file), "kind": kind,
                                                "marker": str(marker), "cl": "1"},
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(served_file.stat().st_size)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(served_file.read_bytes()).digest()
    eventually(marker.exists, timeout=10, message="the served file to be closed")


# ---- headers and bodiless responses ---------------------------------------------------------
def test_response_headers_pass_through(serve):
    server = serve("response_headers:application")
    conn = server.http_connection()
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 201
    assert body == b"created"
    assert resp.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert resp.headers["X-Latin"] == "caf\u00e9"  # http.client decodes header bytes as latin-1
    assert resp.headers["X-Empty"] == ""
    assert resp.headers["X-Spaces"] == "a  b"
    assert resp.headers["Location"] == "/created/1"


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status(serve, code):
    server = serve("status_no_body:application")
    conn = server.http_connection()
    conn.request("GET", f"/?code={code}")
    resp = conn.getresponse()
    assert resp.status == code
    assert resp.read() == b""
    assert resp.headers["X-Code"] == str(code)
    # The connection must still be usable: no stray body bytes before the next response.
    conn.request("GET", "/?code=200")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b""
    conn.close()


def head_then_get(server, path):
    """HEAD then GET on one connection; if the HEAD response carried body bytes, the GET's
    response would not parse."""
    conn = server.http_connection()
    conn.request("HEAD", path)
    head = conn.getresponse()
    head_body = head.read()
    head_headers = head.headers  # case-insensitive
    conn.request("GET", path)
    get = conn.getresponse()
    get_body = get.read()
    conn.close()
    return head.status, head_headers, head_body, get.status, get.headers, get_body


def test_head_has_headers_but_no_body(serve):
    server = serve("hello:application")
    hs, hh, hb, gs, gh, gb = head_then_get(server, "/")
    assert (hs, gs) == (200, 200)
    assert hb == b""
    assert gb == b"Hello, World!\n"
    assert hh["Content-Type"] == gh["Content-Type"]
    assert hh.get("Content-Length") == "14"


def test_head_with_generator_body(serve):
    server = serve("body_generator:application")
    hs, hh, hb, gs, gh, gb = head_then_get(server, "/?n=3")
    assert (hs, gs) == (200, 200)
    assert hb == b""
    assert gb == b"chunk-0\nchunk-1\nchunk-2\n"


def test_head_raw_no_body_bytes(serve):
    server = serve("hello:application")
    with server.raw_socket() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = read_until_closed(sock)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and sep
    assert rest == b""


# ---- start_response and exc_info -------------------------------------------------------------
@pytest.fixture(scope="module")
def exc_server(module_serve):
    return module_serve("exc_info:application")


def test_exc_info_replaces_headers_before_body(exc_server):
    r = exc_server.get("/?mode=replace")
    assert r.status_code == 500
    assert r.headers.get("X-Second") == "1"
    assert "X-First" not in r.headers
    assert r.content == b"replaced"


def test_exc_info_after_body_reraises_and_truncates(exc_server):
    """write() has sent the head and some body: start_response(..., exc_info) must re-raise,
    and the response must end abnormally (it cannot be turned into a 500 any more)."""
    start = len(exc_server.lines())
    with exc_server.raw_socket() as sock:
        sock.sendall(b"GET /?mode=reraise_after_write HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"must-not-be-sent" not in data
    assert closed, "the connection must be closed when the response cannot be completed"
    assert not data.endswith(b"0\r\n\r\n"), "the cut-short body must not look complete"
    exc_server.wait_for_line("exc-info-reraise-token", start=start)
    assert exc_server.get("/?mode=replace").status_code == 500  # the worker still serves


def test_start_response_twice_without_exc_info_is_an_error(exc_server):
    r = exc_server.get("/?mode=twice")
    assert r.status_code == 500
    assert b"must-not-be-sent" not in r.content


def test_iter_error_before_body_is_500(exc_server):
    start = len(exc_server.lines())
    r = exc_server.get("/?mode=iter_error_before_body")
    assert r.status_code == 500
    exc_server.wait_for_line("iter-error-before-body-token", start=start)


def test_iter_error_after_body_aborts_response(exc_server):
    start = len(exc_server.lines())
    with exc_server.raw_socket() as sock:
        sock.sendall(b"GET /?mode=iter_error_after_body HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert closed, "the connection must be closed when the body fails midway"
    assert not data.endswith(b"0\r\n\r\n"), "a failed body must not end with the chunked terminator"
    exc_server.wait_for_line("iter-error-after-body-token", start=start)
    exc_server.wait_for_line("Traceback \\(most recent call last\\)", start=start)


@pytest.mark.parametrize("mode,part", [
    ("iter_error_after_body", b"first-part;"),
    ("reraise_after_write", b"partial-body;"),
], ids=["yielded-then-raise", "written-then-reraise"])
def test_body_bytes_before_an_error_are_delivered(exc_server, mode, part):
    """PEP 3333: a block the app yielded (or passed to write()) must be transmitted, not
    delayed; an error right after it may cut the response short, but must not take back the
    bytes already produced. Repeated, because losing them is a race."""
    request = f"GET /?mode={mode} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    lost = 0
    for _ in range(100):
        with exc_server.raw_socket() as sock:
            sock.sendall(request)
            data, closed = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        lost += part not in data
    assert lost == 0, f"{part!r} was lost in {lost} of 100 responses cut short by an error"


# ---- close() ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def close_server(module_serve):
    return module_serve("close_marker:application")


def test_close_called_after_normal_response(close_server, tmp_path):
    marker = tmp_path / "closed-normal"
    r = close_server.get("/", params={"mode": "normal", "marker": str(marker)})
    assert r.content == b"one;two;three"
    eventually(marker.exists, timeout=10, message="close() after a complete response")
    assert marker.read_text() == "closed mode=normal"


def test_close_called_after_error_during_iteration(close_server, tmp_path):
    marker = tmp_path / "closed-error"
    with pytest.raises(requests.exceptions.RequestException):
        close_server.get("/", params={"mode": "error", "marker": str(marker)}).raise_for_status()
    eventually(marker.exists, timeout=10, message="close() after an error in the body iterable")


def test_close_called_when_client_disconnects(close_server, tmp_path):
    marker = tmp_path / "closed-disconnect"
    with close_server.raw_socket() as sock:
        sock.sendall(f"GET /?mode=endless&marker={marker} HTTP/1.1\r\nHost: x\r\n\r\n"
                     .encode())
        received = b""
        while len(received) < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "server closed the endless response"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
    # The socket is closed here, mid-stream, with unread data (so the server gets a reset).
    eventually(marker.exists, timeout=20, message="close() after the client went away")
    # The worker is free again.
    assert close_server.get("/", params={"mode": "normal",
                                         "marker": str(tmp_path / "after")}).status_code == 200


def test_close_that_raises_is_logged_and_worker_survives(close_server, tmp_path):
    start = len(close_server.lines())
    marker = tmp_path / "closed-raises"
    r = close_server.get("/", params={"mode": "normal", "marker": str(marker), "close_raises": "1"})
    assert r.status_code == 200
    assert r.content == b"one;two;three"
    eventually(marker.exists, timeout=10, message="close() to run")
    close_server.wait_for_line("close-raises-token", start=start)
    again = tmp_path / "after-raise"
    assert close_server.get("/", params={"mode": "normal", "marker": str(again)}).status_code == 200
    assert len(close_server.workers()) == 1


def test_close_called_for_head(close_server, tmp_path):
    marker = tmp_path / "closed-head"
    r = requests.head(close_server.url + "/", params={"mode": "normal", "marker": str(marker)},
                      timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.content == b""
    eventually(marker.exists, timeout=10, message="close() after HEAD")


# ---- large downloads: streamed with backpressure ---------------------------------------------
@pytest.mark.timeout(120)
def test_large_download_streams_with_backpressure(serve):
    server = serve("download:application")
    total = 256 * MiB
    baseline = tree_rss(server.pid)
    conn = server.http_connection(timeout=120)
    conn.request("GET", f"/?size={total}")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    digest = hashlib.sha256()
    received = 0
    with RssSampler(server.pid) as rss:
        first = resp.read(MiB)
        digest.update(first)
        received += len(first)
        # A slow client: stop reading for a while. A server without backpressure would now
        # pull the whole 256 MiB out of the generator into memory.
        paused_until = time.monotonic() + 2.0
        while time.monotonic() < paused_until:
            time.sleep(0.1)
        paused_peak = rss.peak
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            received += len(chunk)
    conn.close()
    assert received == total
    assert digest.hexdigest() == pattern_sha256(total)
    assert paused_peak - baseline < 100 * MiB, (
        f"RSS grew by {(paused_peak - baseline) / MiB:.0f} MiB while the client was paused")
    assert rss.peak - baseline < 100 * MiB, (
        f"RSS grew by {(rss.peak - baseline) / MiB:.0f} MiB for a {total // MiB} MiB download")


def test_download_with_content_length(serve):
    server = serve("download:application")
    total = 8 * MiB + 7
    r = requests.get(server.url + f"/?size={total}&cl=1", stream=True, timeout=HTTP_TIMEOUT)
    assert r.headers["Content-Length"] == str(total)
    digest = hashlib.sha256()
    for chunk in r.iter_content(65536):
        digest.update(chunk)
    assert digest.hexdigest() == pattern_sha256(total)


# ---- the app's output streams -----------------------------------------------------------------
@pytest.fixture(scope="module")
def output_server(module_serve):
    return module_serve("output_streams:application")


@pytest.mark.parametrize("stream", ["print", "stderr", "wsgi_errors"])
def test_app_output_reaches_server_output(output_server, stream):
    token = unique_token(stream)
    r = output_server.get("/", params={"token": token, "stream": stream})
    assert r.status_code == 200
    output_server.wait_for_line(token, timeout=10)


def test_unflushed_print_is_not_lost_at_shutdown(serve):
    server = serve("output_streams:application")
    token = unique_token("noflush")
    assert server.get("/", params={"token": token, "stream": "print_noflush"}).status_code == 200
    assert server.stop() == 0
    assert token in server.output()


# ---- responses the server must refuse or contain ---------------------------------------------
@pytest.fixture(scope="module")
def bad_server(module_serve):
    return module_serve("bad_response:application")


@pytest.mark.parametrize("mode", ["non_latin1_header", "crlf_in_header", "status_not_str",
                                  "body_not_bytes"])
def test_invalid_response_is_500(bad_server, mode):
    before = bad_server.get("/?mode=pid").text
    with bad_server.raw_socket() as sock:
        sock.sendall(f"GET /?mode={mode} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 500"), data[:300]
    assert b"X-Injected" not in data and b"x-injected" not in data
    assert b"must-not-be-sent" not in data
    assert bad_server.get("/?mode=pid").text == before, "the worker must survive"


def content_length(head: bytes):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


@pytest.mark.parametrize("mode", ["length_short", "length_long", "length_short_gen",
                                  "length_long_gen", "length_long_gen_first"])
def test_content_length_mismatch_keeps_framing_consistent(bad_server, mode):
    """The app's Content-Length disagrees with its body. Acceptable: the server corrects the
    header, or cuts the response short and closes the connection. Not acceptable: a connection
    left waiting for bytes that never come, or bytes beyond the declared length (a client or
    proxy would parse them as the next response)."""
    with bad_server.raw_socket() as sock:
        sock.sendall(f"GET /?mode={mode} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                     + b"GET /?mode=pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = read_until_closed(sock, timeout=15)
    assert closed, f"connection neither completed nor closed: {data[:300]!r}"
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and sep, data[:300]
    declared = content_length(head)
    app_body = b"0123456789" + (b"X" * 90 if "long" in mode else b"")
    if declared is None:
        assert b"transfer-encoding: chunked" in head.lower(), head
        return
    body, after = rest[:declared], rest[declared:]
    assert app_body.startswith(body), f"body is not what the app sent: {body[:120]!r}"
    if len(body) < declared:
        assert after == b""  # cut short, and the connection was closed: detectable
    else:
        assert after == b"" or after.startswith(b"HTTP/1.1 200"), (
            f"{len(after)} bytes beyond the declared Content-Length {declared}: {after[:120]!r}")


def test_iterable_failing_after_its_whole_content_length(bad_server):
    """A generator that yields its whole Content-Length, then raises: the client has a complete
    response (the server may have sent it before the generator ended), the next request on the
    same connection is answered, and the worker survives."""
    before = bad_server.get("/?mode=pid").text
    with bad_server.raw_socket() as sock:
        sock.sendall(b"GET /?mode=complete_then_raise HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /?mode=pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = read_until_closed(sock, timeout=15)
    assert closed, data[:300]
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    if content_length(head) == 10:
        assert rest[:10] == b"0123456789"
        assert rest[10:].startswith(b"HTTP/1.1 200"), rest[:300]
    else:
        # Sent as a stream that was then cut short: the connection ends there.
        assert b"transfer-encoding: chunked" in head.lower(), head
    assert bad_server.get("/?mode=pid").text == before, "the worker must survive"
