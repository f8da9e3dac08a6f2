"""Compression of app responses (--compression): gzip, br and zstd chosen by Accept-Encoding,
checked by decoding with curl --compressed; only compressible types above the minimum size;
never ranges (206), never a body the app already encoded; off by default. The app is
tests/apps/edge_headers.py (?size=N&type=T&status=S and headers to set)."""

import gzip
import subprocess

import httpx
import pytest

from fhtest import HTTP_TIMEOUT

TEXT_5000 = (b"All work and no play makes Jack a dull boy. " * (5000 // 44 + 1))[:5000]


@pytest.fixture(scope="module")
def server(module_serve, tmp_path_factory):
    static = tmp_path_factory.mktemp("cstatic")
    (static / "big.txt").write_bytes(TEXT_5000)
    return module_serve("edge_headers:application", "--compression", "gzip,br,zstd",
                        "--compression-min-size", "1k", "--static", f"/s={static}")


def curl_get(url, accept, decode=True):
    """(headers dict with lower-case names, body) as curl received and decoded them."""
    args = ["curl", "-sS", "-D", "-", "-H", f"Accept-Encoding: {accept}"]
    if decode:
        args.append("--compressed")
    out = subprocess.run([*args, url], capture_output=True, timeout=HTTP_TIMEOUT)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers, body


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_each_encoding_round_trips(server, encoding):
    headers, body = curl_get(server.url + "/?size=5000", encoding)
    assert headers["content-encoding"] == [encoding]
    assert "accept-encoding" in ",".join(headers["vary"]).lower()
    assert "content-length" not in headers or int(headers["content-length"][0]) < 5000
    assert body == TEXT_5000


def test_compressed_size_is_smaller(server):
    headers, raw = curl_get(server.url + "/?size=5000", "gzip", decode=False)
    assert headers["content-encoding"] == ["gzip"]
    assert len(raw) < 1000
    assert gzip.decompress(raw) == TEXT_5000


def test_client_preference_and_refusal(server):
    headers, body = curl_get(server.url + "/?size=5000", "gzip;q=1, br;q=0.5")
    assert headers["content-encoding"] == ["gzip"] and body == TEXT_5000
    headers, body = curl_get(server.url + "/?size=5000", "identity")
    assert "content-encoding" not in headers and body == TEXT_5000
    assert headers["content-length"] == ["5000"]


@pytest.mark.parametrize("query", [
    "size=500",                                     # below compression-min-size
    "size=5000&type=image/png",                     # not a compressible type
    "size=5000&type=text/event-stream",             # streamed events must not be held back
    "size=5000&Content-Encoding=identity",          # the app chose its encoding
    "size=5000&status=206&Content-Range=bytes%200-4999/9999",  # a range
])
def test_not_compressed(server, query):
    headers, body = curl_get(server.url + "/?" + query, "gzip, br, zstd", decode=False)
    assert headers.get("content-encoding", ["identity"]) == ["identity"]
    assert len(body) in (500, 5000)


def test_static_files_are_not_compressed_on_the_fly(server):
    headers, body = curl_get(server.url + "/s/big.txt", "gzip", decode=False)
    assert "content-encoding" not in headers and body == TEXT_5000


def test_http2_gzip(server):
    with httpx.Client(http1=False, http2=True, timeout=30, headers={"Accept-Encoding": "gzip"}) as c:
        r = c.get(server.url + "/?size=5000")
    assert r.http_version == "HTTP/2"
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == TEXT_5000


def test_off_by_default(serve):
    plain = serve("edge_headers:application")
    headers, body = curl_get(plain.url + "/?size=5000", "gzip, br", decode=False)
    assert "content-encoding" not in headers and body == TEXT_5000
