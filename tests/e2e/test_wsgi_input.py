"""wsgi.input: every read method, chunked request bodies, slow senders, bodies the app does not
read, large uploads streamed without buffering, and the body size limit."""

import hashlib
import json
import subprocess
import time

import httpx
import pytest
import requests

from fhtest import (HTTP_TIMEOUT, MiB, RssSampler, pattern_blocks, pattern_sha256,
                    read_until_closed, send_raw, status_codes, tree_rss)

BODY = b"one\ntwo\n\nthree"


@pytest.fixture(scope="module")
def input_server(module_serve):
    return module_serve("input_read:application")


def read_with(server, mode, body=BODY, n=4):
    r = requests.post(f"{server.url}/?mode={mode}&n={n}", data=body, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    out = r.json()
    return out["pieces"], out["extra"]


def enc(pieces):
    return [p.encode("latin-1") for p in pieces]


def test_read_without_size(input_server):
    assert read_with(input_server, "read_all") == ([BODY.decode()], "")


def test_read_n(input_server):
    pieces, extra = read_with(input_server, "read_n", n=4)
    assert b"".join(enc(pieces)) == BODY
    assert extra == ""
    # A small body is fully buffered, so every read(4) but the last returns 4 bytes.
    assert [len(p) for p in pieces] == [4, 4, 4, 2]


def test_readline(input_server):
    assert read_with(input_server, "readline") == (["one\n", "two\n", "\n", "three"], "")


def test_readline_with_size(input_server):
    pieces, extra = read_with(input_server, "readline_n", n=2)
    assert pieces == ["on", "e\n", "tw", "o\n", "\n", "th", "re", "e"]
    assert extra == ""


def test_readlines(input_server):
    assert read_with(input_server, "readlines") == (["one\n", "two\n", "\n", "three"], "")


def test_readlines_with_hint(input_server):
    # PEP 3333 lets the server ignore the hint; either way the lines must be whole lines.
    pieces, extra = read_with(input_server, "readlines_hint", n=5)
    assert pieces, "readlines(5) returned nothing"
    assert all(p.endswith("\n") for p in pieces[:-1])
    assert "".join(pieces) + extra == BODY.decode()
    assert pieces[:2] == ["one\n", "two\n"]


def test_iteration(input_server):
    assert read_with(input_server, "iter") == (["one\n", "two\n", "\n", "three"], "")


def test_crlf_lines_split_on_lf_only(input_server):
    pieces, _ = read_with(input_server, "readline", body=b"a\r\nb\rc\nd")
    assert pieces == ["a\r\n", "b\rc\n", "d"]


def test_long_line(input_server):
    body = b"x" * 300_000 + b"\nend"
    pieces, extra = read_with(input_server, "readline", body=body)
    assert [len(p) for p in pieces] == [300_001, 3]
    assert extra == ""


@pytest.mark.parametrize("mode", ["read_all", "read_n", "readline", "readlines", "iter"])
def test_no_body(input_server, mode):
    r = requests.get(f"{input_server.url}/?mode={mode}", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    pieces = r.json()["pieces"]
    assert pieces in ([], [""])
    assert r.json()["extra"] == ""


# ---- the body as bytes -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def echo_server(module_serve):
    return module_serve("input_echo:application")


def test_binary_body_round_trip(echo_server):
    body = bytes(range(256)) * 1000
    r = echo_server.post("/", data=body)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["X-Seen-Content-Length"] == str(len(body))


def test_chunked_request_body(echo_server):
    parts = [b"first-chunk;", b"x" * 100_000, b";", bytes(range(256)), b"last"]
    conn = echo_server.http_connection()
    conn.request("POST", "/chunked", body=iter(parts), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200
    assert body == b"".join(parts)


def test_chunked_request_body_with_requests_generator(echo_server):
    def gen():
        for i in range(50):
            yield f"line {i}\n".encode()

    r = echo_server.post("/", data=gen())
    assert r.status_code == 200
    assert r.content == b"".join(f"line {i}\n".encode() for i in range(50))


def test_http2_request_body(echo_server):
    body = bytes(range(256)) * 2000
    with httpx.Client(http1=False, http2=True, timeout=HTTP_TIMEOUT) as client:
        r = client.post(echo_server.url + "/h2", content=body)
        streamed = client.post(echo_server.url + "/h2", content=iter([b"a" * 70000, b"b" * 5]))
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.content == body
    assert streamed.status_code == 200
    assert streamed.content == b"a" * 70000 + b"b" * 5


def test_slow_sender_content_length(echo_server):
    """read(n) must wait for the rest of the body, not report EOF when the buffer is empty."""
    with echo_server.raw_socket() as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                     b"Connection: close\r\n\r\nhello")
        time.sleep(0.5)  # the behaviour under test: a pause in the middle of the body
        sock.sendall(b"world")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert data.endswith(b"\r\n\r\nhelloworld")


def test_slow_sender_chunked(echo_server):
    with echo_server.raw_socket() as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.5)  # the behaviour under test: a pause between chunks
        sock.sendall(b"5\r\nworld\r\n0\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert data.endswith(b"\r\n\r\nhelloworld")


def test_curl_upload_with_expect_100_continue(echo_server, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: curl sends Expect: 100-continue
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-H", "Expect: 100-continue", "--data-binary", f"@{payload}",
         "-H", "Content-Type: application/octet-stream", "-o", str(tmp_path / "out.bin"),
         "-w", "%{http_code}", echo_server.url + "/upload"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"200"
    assert (tmp_path / "out.bin").read_bytes() == payload.read_bytes()


def test_slow_upload_under_post_buffering_does_not_hold_a_worker(serve):
    """A body up to --post-buffering is read by the front before a worker is taken, so a
    client that stalls mid-upload must not block the only worker."""
    server = serve("input_echo:application", "--post-buffering", str(1 * MiB), workers=1)
    body = bytes(range(256)) * 400  # 102400 bytes
    with server.raw_socket(timeout=30) as stalled:
        stalled.sendall(b"POST /stalled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body[:50_000])
        # While that upload is stalled, the single worker must still serve others.
        r = requests.post(server.url + "/other", data=b"other-body", timeout=10)
        assert r.status_code == 200
        assert r.content == b"other-body"
        stalled.sendall(body[50_000:])
        data, closed = read_until_closed(stalled, timeout=30)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert data.endswith(body)


# ---- bodies the app does not read ------------------------------------------------------------
@pytest.mark.parametrize("size", [10, 100_000, 5 * MiB])
def test_unread_body_does_not_corrupt_keep_alive(serve, size):
    server = serve("input_ignore:application", "--max-body-size", str(64 * MiB))
    with requests.Session() as s:
        r1 = s.post(server.url + "/first", data=b"GET /smuggled HTTP/1.1\r\n\r\n" + b"z" * size,
                    timeout=HTTP_TIMEOUT)
        r2 = s.get(server.url + "/second", timeout=HTTP_TIMEOUT)
        r3 = s.post(server.url + "/third", data=b"abc", timeout=HTTP_TIMEOUT)
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 200)
    assert r1.text.startswith("ignored /first")
    assert r2.text.startswith("ignored /second")
    assert r3.text.startswith("ignored /third")


# ---- large uploads: streamed, hashed in the app, not buffered -------------------------------
def upload(server, total, chunked, path="/"):
    """Streams ``total`` bytes of the test pattern; returns the app's JSON reply."""
    conn = server.http_connection(timeout=120)
    if chunked:
        conn.request("POST", path, body=pattern_blocks(total), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked",
                              "Content-Type": "application/octet-stream"})
    else:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(total))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for block in pattern_blocks(total):
            conn.send(block)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, body[:500]
    return json.loads(body)


@pytest.fixture(scope="module")
def hash_server(module_serve):
    return module_serve("input_hash:application", "--max-body-size", str(1024 * MiB))


@pytest.mark.timeout(120)
def test_large_upload_content_length(hash_server):
    total = 200 * MiB
    baseline = tree_rss(hash_server.pid)
    with RssSampler(hash_server.pid) as rss:
        out = upload(hash_server, total, chunked=False)
    assert out["bytes"] == total
    assert out["sha256"] == pattern_sha256(total)
    assert out["max_read"] <= 65536
    growth = rss.peak - baseline
    assert growth < 100 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB for a {total // MiB} MiB upload"


@pytest.mark.timeout(120)
def test_large_upload_chunked(hash_server):
    total = 64 * MiB + 12345
    baseline = tree_rss(hash_server.pid)
    with RssSampler(hash_server.pid) as rss:
        out = upload(hash_server, total, chunked=True)
    assert out["bytes"] == total
    assert out["sha256"] == pattern_sha256(total)
    growth = rss.peak - baseline
    assert growth < 100 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB"


def test_upload_hash_small(hash_server):
    body = b"abc" * 1000
    r = hash_server.post("/", data=body)
    assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
                        "reads": 1, "max_read": len(body)}


# ---- the body size limit ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited_server(module_serve):
    return module_serve("recorder:application", "--max-body-size", "1024",
                        env={"FH_RECORD_FILE": "/dev/null"})


def test_body_at_limit_is_accepted(limited_server):
    r = limited_server.post("/ok", data=b"a" * 1024)
    assert r.status_code == 200
    assert "body=1024" in r.text


def test_body_over_limit_content_length_is_413(limited_server):
    r = limited_server.post("/big", data=b"a" * 1025)
    assert r.status_code == 413


def test_body_over_limit_declared_then_closed(limited_server):
    # Declares a big body but never sends it: the server must answer from the header alone.
    data, closed = send_raw(limited_server, b"POST /big HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 1000000000\r\n\r\n")
    assert status_codes(data)[:1] == [413], data[:300]
    assert closed


def test_body_over_limit_chunked_is_413(limited_server):
    def gen():
        for _ in range(64):
            yield b"b" * 1000

    r = limited_server.post("/big-chunked", data=gen())
    assert r.status_code == 413


def test_curl_expect_100_over_limit_gets_413_without_sending(limited_server, tmp_path):
    payload = tmp_path / "big.bin"
    payload.write_bytes(b"c" * (2 * MiB))
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect: 100-continue",
         "--data-binary", f"@{payload}", limited_server.url + "/big"],
        capture_output=True, timeout=30)
    assert out.stdout == b"413", (out.stdout, out.stderr)
