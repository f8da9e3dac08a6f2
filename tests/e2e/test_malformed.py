"""Malformed HTTP/1.1 over raw sockets: the server must answer 4xx and close the connection, and
the app (tests/apps/recorder.py, which logs every request it sees) must never see a request
smuggled behind an ambiguous one. The pipelining tests are the positive control: they show that
a second request on the same connection *is* seen when the first one is well formed."""

import socket
import time

import pytest

from fhtest import eventually, read_until_closed, send_raw, status_codes


@pytest.fixture(scope="module")
def record_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("record") / "requests.log"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def rec_server(module_serve, record_file):
    return module_serve("recorder:application", "--max-body-size", "65536",
                        env={"FH_RECORD_FILE": str(record_file)})


def seen(record_file):
    return record_file.read_text().splitlines()


def sync(server, record_file, tag):
    """A well-formed request after the test's bytes: once the app has recorded it, anything the
    malformed input made the server dispatch has been recorded too (one worker, in order)."""
    data, closed = send_raw(server, f"GET /sync-{tag} HTTP/1.1\r\nHost: x\r\n"
                                    "Connection: close\r\n\r\n".encode())
    assert status_codes(data) == [200], data[:300]
    eventually(lambda: any(f"/sync-{tag} " in line for line in seen(record_file)), timeout=10,
               message="the sync request to be recorded")


def check_rejected(server, record_file, payload, tag, allowed=range(400, 500)):
    data, closed = send_raw(server, payload)
    codes = status_codes(data)
    assert codes, f"no response at all; got {data[:300]!r}"
    assert codes[0] in allowed, f"expected 4xx, got {codes[0]}: {data[:300]!r}"
    assert len(codes) == 1, f"more than one response on a rejected connection: {data!r}"
    assert closed, "the server must close the connection after a malformed request"
    sync(server, record_file, tag)
    lines = seen(record_file)
    assert not any("/smuggled" in line for line in lines), lines
    return data


MALFORMED = {
    "garbage-request-line": b"GARBAGE\r\n\r\n",
    "no-version": b"GET /\r\nHost: x\r\n\r\n",
    "bad-version": b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    "nul-in-header-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
    "content-length-not-a-number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "content-length-negative": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "content-length-conflicting": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                   b"Content-Length: 4\r\n\r\nabcd"),
    "transfer-encoding-unknown": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                                  b"\r\nabc"),
    "invalid-chunk-size": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk-missing-crlf": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhelloXX0\r\n\r\n"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_is_4xx_and_closed(rec_server, record_file, name):
    check_rejected(rec_server, record_file, MALFORMED[name], name)
    assert not any(f"/{name}" in line for line in seen(record_file))


SMUGGLE = {
    "cl-and-te": (b"POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\nGET /smuggled-cl-te HTTP/1.1\r\nHost: x\r\n\r\n"),
    "te-and-cl": (b"POST /front HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 30\r\n\r\n"
                  b"0\r\n\r\nGET /smuggled-te-cl HTTP/1.1\r\nHost: x\r\n\r\n"),
    "te-obfuscated": (b"POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      b"Transfer-Encoding: xchunked\r\n\r\n"
                      b"0\r\n\r\nGET /smuggled-te-x HTTP/1.1\r\nHost: x\r\n\r\n"),
}


@pytest.mark.parametrize("name", list(SMUGGLE))
def test_ambiguous_framing_never_smuggles(rec_server, record_file, name):
    """Whatever the server answers to a request with both Content-Length and Transfer-Encoding,
    it must close the connection after it (RFC 9112 6.3), so the bytes behind it never become
    a second request."""
    data, closed = send_raw(rec_server, SMUGGLE[name])
    codes = status_codes(data)
    assert len(codes) <= 1, f"a second response: the smuggled request was served: {data!r}"
    assert closed, "the connection must be closed after an ambiguous request"
    sync(rec_server, record_file, name)
    assert not any("/smuggled" in line for line in seen(record_file)), seen(record_file)


@pytest.mark.parametrize("name", list(SMUGGLE))
def test_ambiguous_framing_is_rejected(rec_server, record_file, name):
    """The stricter rule flaskhost promises: reject it outright with a 4xx; the app never sees
    it."""
    before = len(seen(record_file))
    check_rejected(rec_server, record_file, SMUGGLE[name], name)
    new = seen(record_file)[before:]
    assert not any("/front" in line for line in new), (
        f"the app saw the ambiguous request itself: {new}")


def test_header_section_too_large(rec_server, record_file):
    """A 1 MiB header: the server must refuse (4xx, typically 431), never pass it on or hang."""
    payload = (b"GET /huge-header HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20)
               + b"\r\n\r\n")
    data, closed = send_raw(rec_server, payload, timeout=15)
    codes = status_codes(data)
    assert closed, "connection left open after an oversized header"
    assert not codes or 400 <= codes[0] < 500, data[:300]
    sync(rec_server, record_file, "huge-header")
    assert not any("/huge-header" in line for line in seen(record_file))


def test_too_many_headers(rec_server, record_file):
    payload = (b"GET /many-headers HTTP/1.1\r\nHost: x\r\n"
               + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n")
    data, closed = send_raw(rec_server, payload, timeout=15)
    codes = status_codes(data)
    assert closed
    assert not codes or 400 <= codes[0] < 500, data[:300]
    sync(rec_server, record_file, "many-headers")


# ---- positive controls ----------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(rec_server, record_file):
    payload = (b"GET /pipe-1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /pipe-2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
               b"GET /pipe-3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, closed = send_raw(rec_server, payload)
    assert status_codes(data) == [200, 200, 200], data
    assert closed
    order = [data.find(b"recorded /pipe-%d" % i) for i in (1, 2, 3)]
    assert -1 not in order and order == sorted(order), data
    lines = seen(record_file)
    assert "POST /pipe-2 body=3" in lines


def test_chunked_body_with_extensions_and_trailers(rec_server, record_file):
    payload = (b"POST /chunk-ext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n"
               b"5;name=value\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
    data, closed = send_raw(rec_server, payload)
    assert status_codes(data) == [200], data
    assert b"recorded /chunk-ext body=8" in data


def test_absolute_form_target(rec_server, record_file):
    data, closed = send_raw(rec_server, b"GET http://example.test/abs-form?x=1 HTTP/1.1\r\n"
                                        b"Host: example.test\r\nConnection: close\r\n\r\n")
    assert status_codes(data) == [200], data
    assert b"recorded /abs-form" in data


def test_idle_connection_is_kept_until_request(rec_server, record_file):
    """A client that connects and sends its request a moment later is still served."""
    with socket.create_connection((rec_server.host, rec_server.port), timeout=10) as sock:
        time.sleep(0.5)  # the behaviour under test: a delay before the request line
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert status_codes(data) == [200]
