"""Static files served by the edge like nginx `alias`: types, validators and 304, ranges, HEAD,
precompressed siblings, single-file routes, the memory cache following file changes, and the
path rules: nothing outside the mount is ever served (.., %2e%2e, %2f, backslashes, NUL,
dotfiles, symlinks leaving the root). The app behind is tests/apps/hello.py, so a request that
reaches the app is recognisable by its body."""

import email.utils
import gzip
import hashlib
import http.client
import os
import subprocess
import time
from datetime import datetime, timezone

import pytest
import httpx
import requests

from fhtest import APPS, HTTP_TIMEOUT

HELLO = b"Hello, World!\n"
SECRET = b"TOP-SECRET-OUTSIDE-THE-MOUNT\n"
CSS = b"body { color: #333 }\n"
JS = b"console.log('hello from app.js');\n" * 40


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    static = root / "static"
    (static / "css").mkdir(parents=True)
    (static / "js").mkdir()
    (static / "sub").mkdir()
    (static / ".hidden").mkdir()
    (static / ".well-known").mkdir()
    (static / "css" / "site.css").write_bytes(CSS)
    (static / "js" / "app.js").write_bytes(JS)
    (static / "js" / "app.js.gz").write_bytes(gzip.compress(JS, mtime=0))
    (static / "js" / "app.js.br").write_bytes(b"BROTLI-BYTES")
    (static / "js" / "app.js.zst").write_bytes(b"ZSTD-BYTES")
    (static / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (static / "changing.txt").write_bytes(b"version 1\n")
    (static / "favicon.ico").write_bytes(b"\x00\x00\x01\x00ICON")
    (static / "robots.txt").write_bytes(b"User-agent: *\n")
    (static / ".env").write_bytes(SECRET)
    (static / ".hidden" / "secret").write_bytes(SECRET)
    (static / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:x@example.com\n")
    (static / "sub" / "inner.txt").write_bytes(b"inner\n")
    (static / "unknown.zzqq").write_bytes(b"???")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (root / "static-secret").write_bytes(SECRET)  # next to the mount: /static-secret must not map
    os.symlink(static / "css" / "site.css", static / "link-in.css")
    os.symlink(outside, static / "link-out")
    os.symlink(outside / "secret", static / "link-out-file")
    config = root / "flaskhost.toml"
    config.write_text(f"""
[[static]]
url = "/static"
path = "{static}"
expires = "30d"
cache-control = "public, immutable"

[[static]]
url = "/favicon.ico"
path = "{static / 'favicon.ico'}"
expires = "30d"

[[static]]
url = "/robots.txt"
path = "{static / 'robots.txt'}"
""")
    return {"root": root, "static": static, "outside": outside, "config": config}


@pytest.fixture(scope="module")
def server(module_serve, site):
    return module_serve("hello:application", config=site["config"])


def raw_get(server, target, headers=None, method="GET"):
    """A request with the target sent exactly as written (no client-side normalisation)."""
    conn = server.http_connection()
    conn.putrequest(method, target, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


# ---- serving -------------------------------------------------------------------------------------
def test_file_with_type_length_and_validators(server, site):
    r = server.get("/static/css/site.css")
    assert r.status_code == 200 and r.content == CSS
    assert r.headers["Content-Type"].startswith("text/css")
    assert r.headers["Content-Length"] == str(len(CSS))
    assert r.headers["ETag"].startswith('"')
    mtime = os.stat(site["static"] / "css" / "site.css").st_mtime
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == int(mtime)
    assert r.headers["Accept-Ranges"] == "bytes"
    # expires 30d + add_header Cache-Control "public, immutable", in one header
    assert r.headers["Cache-Control"] == "max-age=2592000, public, immutable"
    expires = email.utils.parsedate_to_datetime(r.headers["Expires"])
    assert (expires - datetime.now(timezone.utc)).days >= 29
    # The security headers apply to static files too.
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_types(server):
    assert server.get("/static/js/app.js", headers={"Accept-Encoding": "identity"}) \
        .headers["Content-Type"] in ("text/javascript", "application/javascript")
    assert server.get("/static/unknown.zzqq").headers["Content-Type"] == "application/octet-stream"
    assert server.get("/favicon.ico").headers["Content-Type"] in (
        "image/x-icon", "image/vnd.microsoft.icon")


def test_head_has_headers_and_no_body(server):
    r = requests.head(server.url + "/static/big.bin", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(3 * 1024 * 1024 + 17)
    assert r.content == b""


def test_large_file_is_streamed_whole(server, site):
    r = server.get("/static/big.bin")
    assert r.status_code == 200
    expected = (site["static"] / "big.bin").read_bytes()
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(expected).hexdigest()


def test_single_file_routes(server):
    r = server.get("/favicon.ico")
    assert r.status_code == 200 and r.content == b"\x00\x00\x01\x00ICON"
    assert r.headers["Cache-Control"] == "max-age=2592000"
    r = server.get("/robots.txt")
    assert r.content == b"User-agent: *\n"
    assert "Cache-Control" not in r.headers
    # Only the exact path is the file; anything else is the app's.
    assert server.get("/favicon.ico/x").content == HELLO
    assert server.get("/robots.txt.bak").content == HELLO


def test_other_paths_reach_the_app(server):
    assert server.get("/").content == HELLO
    assert server.get("/staticfoo").content == HELLO
    assert server.get("/static-secret").content == HELLO


def test_method_not_allowed(server):
    r = server.post("/static/css/site.css", data=b"x")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


# ---- validators ------------------------------------------------------------------------------------
def test_if_none_match_and_if_modified_since(server):
    first = server.get("/static/css/site.css")
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    r = server.get("/static/css/site.css", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == etag
    assert r.headers["Cache-Control"] == "max-age=2592000, public, immutable"
    assert server.get("/static/css/site.css",
                      headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert server.get("/static/css/site.css", headers={"If-None-Match": '"other"'}).status_code == 200
    assert server.get("/static/css/site.css",
                      headers={"If-Modified-Since": last_modified}).status_code == 304
    assert server.get("/static/css/site.css",
                      headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    assert server.get("/static/css/site.css", headers={
        "If-None-Match": '"other"', "If-Modified-Since": last_modified}).status_code == 200


def test_changed_file_is_served_fresh(server, site):
    """Small files are served from memory; a change on disk is seen on the next request."""
    path = site["static"] / "changing.txt"
    r1 = server.get("/static/changing.txt")
    r1b = server.get("/static/changing.txt")
    assert r1.content == r1b.content == b"version 1\n"
    path.write_bytes(b"version 2 is longer\n")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    r2 = server.get("/static/changing.txt")
    assert r2.content == b"version 2 is longer\n"
    assert r2.headers["ETag"] != r1.headers["ETag"]
    # Same size, new mtime: still seen.
    path.write_bytes(b"version 3 is longer\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 4_000_000_000))
    assert server.get("/static/changing.txt").content == b"version 3 is longer\n"


def test_answers_from_memory_follow_the_disk(server, site):
    """The memory fast path is keyed by URL and accepted encodings and re-checks every path it
    depended on: a sibling appearing, a link retargeted, a file removed, all seen at once."""
    d = site["static"] / "fresh"
    d.mkdir()
    (d / "a.txt").write_bytes(b"plain a\n")
    (d / "b.txt").write_bytes(b"plain b\n")
    gz = {"Accept-Encoding": "gzip"}
    for _ in range(2):  # the second answer of each pair comes from memory
        assert server.get("/static/fresh/a.txt", headers=gz).content == b"plain a\n"
        assert server.get("/static/fresh/a.txt").content == b"plain a\n"
        # The same file under another spelling of its URL.
        assert server.get("/static/fresh/%61.txt").content == b"plain a\n"
    (d / "a.txt.gz").write_bytes(gzip.compress(b"zipped a\n", mtime=0))
    for _ in range(2):
        r = server.get("/static/fresh/a.txt", headers=gz)
        assert r.headers["Content-Encoding"] == "gzip" and r.content == b"zipped a\n"
        # A client without gzip still gets the plain file.
        r = server.get("/static/fresh/a.txt", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in r.headers and r.content == b"plain a\n"
    os.symlink(d / "a.txt", d / "link.txt")
    for _ in range(2):
        assert server.get("/static/fresh/link.txt").content == b"plain a\n"
    os.unlink(d / "link.txt")
    os.symlink(d / "b.txt", d / "link.txt")
    for _ in range(2):
        assert server.get("/static/fresh/link.txt").content == b"plain b\n"
    os.unlink(d / "a.txt")
    os.unlink(d / "a.txt.gz")
    assert server.get("/static/fresh/a.txt", headers=gz).status_code == 404
    assert server.get("/static/fresh/%61.txt").status_code == 404


def test_static_cache_valid_trusts_a_lookup_for_that_long(serve, tmp_path):
    """`static-cache-valid` (nginx's open_file_cache_valid): within it, a URL looked up before
    is answered as it was without checking the disk; a URL not looked up yet is found at once.
    (By default every request checks: test_answers_from_memory_follow_the_disk.)"""
    (tmp_path / "a.txt").write_bytes(b"version 1\n")
    server = serve("hello:application", "--static", f"/s={tmp_path}",
                   "--static-cache-valid", "1h")
    for _ in range(2):
        r = server.get("/s/a.txt")
        assert r.status_code == 200 and r.content == b"version 1\n"
    etag = r.headers["ETag"]
    (tmp_path / "a.txt").write_bytes(b"version 2, longer\n")
    (tmp_path / "b.txt").write_bytes(b"b\n")
    r = server.get("/s/a.txt")
    assert r.content == b"version 1\n" and r.headers["ETag"] == etag
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert server.get("/s/b.txt").content == b"b\n"
    # Conditional and range requests take the same trusted lookup.
    assert server.get("/s/a.txt", headers={"If-None-Match": etag}).status_code == 304
    r = server.get("/s/a.txt", headers={"Range": "bytes=0-6"})
    assert r.status_code == 206 and r.content == b"version"


def test_a_mid_size_file_kept_in_memory_and_mapped(server, site):
    """A file between 64 KiB and the memory cache's limit is kept both in memory (HTTP/2 and
    TLS answers) and mapped (plain HTTP/1 answers go out with sendfile from the mapping):
    the same bytes either way, ranges included, and a new version is seen at once."""
    path = site["static"] / "mid.bin"
    v1, v2 = os.urandom(100 * 1024), os.urandom(100 * 1024)
    path.write_bytes(v1)
    with httpx.Client(http1=False, http2=True, timeout=30) as h2:
        for version in (v1, v2):
            for _ in range(3):  # the first answer looks the file up, the others are kept
                assert server.get("/static/mid.bin").content == version
                r = server.get("/static/mid.bin", headers={"Range": "bytes=70000-80000"})
                assert r.status_code == 206 and r.content == version[70000:80001]
                r = h2.get(server.url + "/static/mid.bin")
                assert r.http_version == "HTTP/2" and r.content == version
            st = os.stat(path)
            path.write_bytes(v2)  # in place, same size, a later mtime
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_files_held_open_are_bounded(serve, tmp_path):
    """Kept answers for files of 64 KiB or more hold the file open and mapped, but at most 256
    of them (nginx's open_file_cache max=), so the static cache never takes the descriptors
    connections need; beyond that, files are opened per request and served all the same."""
    count = 300
    blobs = {}
    for i in range(count):
        blobs[i] = bytes([i % 251]) * (64 * 1024) + str(i).encode()
        (tmp_path / f"f{i}.bin").write_bytes(blobs[i])
    server = serve("hello:application", "--static", f"/s={tmp_path}")
    fds = lambda: len(os.listdir(f"/proc/{server.pid}/fd"))  # noqa: E731
    before = fds()
    with requests.Session() as s:
        for _ in range(2):  # the second round is answered from the kept lookups
            for i in range(count):
                r = s.get(f"{server.url}/s/f{i}.bin", timeout=HTTP_TIMEOUT)
                assert r.status_code == 200 and r.content == blobs[i], i
    held = fds() - before
    assert 200 <= held <= 256 + 8, held


def test_a_replaced_large_file_is_served_fresh(server, site):
    """Large files (sent with sendfile) are re-opened by their resolved path on a repeat
    request; a new version, in place or renamed over, is seen at once."""
    path = site["static"] / "large-changing.bin"
    v1, v2, v3 = (bytes([n]) * (600 * 1024) for n in (1, 2, 3))
    path.write_bytes(v1)
    for _ in range(2):
        assert hashlib.sha256(server.get("/static/large-changing.bin").content).digest() == \
            hashlib.sha256(v1).digest()
    st = os.stat(path)
    path.write_bytes(v2)  # in place, same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    for _ in range(2):
        assert server.get("/static/large-changing.bin").content == v2
    tmp = site["static"] / "large-changing.tmp"
    tmp.write_bytes(v3)
    os.rename(tmp, path)  # renamed over: a new inode
    for _ in range(2):
        assert server.get("/static/large-changing.bin").content == v3


@pytest.mark.parametrize("http2", [False, True], ids=["http1-sendfile", "http2-read"])
def test_a_file_cut_short_while_sent_ends_that_response_only(server, site, http2):
    """A large file is sent from the page cache (sendfile on plain HTTP/1, reads otherwise);
    truncated mid-send, that response ends short and the connection closes (never a SIGBUS,
    never bytes of another file), and the server carries on."""
    path = site["static"] / f"shrinking-{int(http2)}.bin"
    size = 32 * 1024 * 1024
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: quick to make
    if http2:
        import h2.config
        import h2.connection
        import h2.events

        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", f"/static/{path.name}"),
                              (":scheme", "http"), (":authority", "x")], end_stream=True)
        received, cut, ended = 0, False, False
        with server.raw_socket(timeout=HTTP_TIMEOUT) as sock:
            sock.sendall(conn.data_to_send())
            while not ended:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                for event in conn.receive_data(chunk):
                    if isinstance(event, h2.events.DataReceived):
                        received += len(event.data)
                        if received >= 60_000 and not cut:
                            # The server can send no more than the 64 KiB window until the
                            # data is acknowledged: it is mid-send, waiting on us.
                            os.truncate(path, 4096)
                            cut = True
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    ended |= isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset,
                                                h2.events.ConnectionTerminated))
                sock.sendall(conn.data_to_send())
        assert cut and received < size
    else:
        s = server.raw_socket(timeout=HTTP_TIMEOUT)
        s.sendall(f"GET /static/{path.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and str(size).encode() in head
        received = len(body)
        while received < 1_000_000:
            received += len(s.recv(65536))
        # Nothing more is read until the file is cut, so the server is mid-send.
        os.truncate(path, 4096)
        while chunk := s.recv(1 << 20):
            received += len(chunk)
        s.close()
        assert received < size
    assert server.get("/static/css/site.css").content == CSS


# ---- ranges --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/static/css/site.css", "/static/big.bin"], ids=["memory", "streamed"])
def test_ranges(server, site, path):
    data = (site["static"] / path.removeprefix("/static/")).read_bytes()
    n = len(data)
    r = server.get(path, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == data[:10]
    assert r.headers["Content-Range"] == f"bytes 0-9/{n}"
    r = server.get(path, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = server.get(path, headers={"Range": "bytes=7-"})
    assert r.status_code == 206 and r.content == data[7:]
    # Across the streamed body's read pieces (256 KiB), starting mid-file.
    lo, hi = min(262_100, n - 2), min(800_000, n - 1)
    r = server.get(path, headers={"Range": f"bytes={lo}-{hi}"})
    assert r.status_code == 206 and r.content == data[lo:hi + 1]
    r = server.get(path, headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{n}"
    r = server.get(path, headers={"Range": "bytes=0-1,4-5"})
    assert r.status_code == 200 and r.content == data
    r = server.get(path, headers={"Range": "lines=1-2"})
    assert r.status_code == 200 and r.content == data


def test_if_range(server):
    etag = server.get("/static/big.bin", headers={"Range": "bytes=0-0"}).headers["ETag"]
    assert server.get("/static/big.bin",
                      headers={"Range": "bytes=0-3", "If-Range": etag}).status_code == 206
    r = server.get("/static/big.bin", headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status_code == 200 and len(r.content) == 3 * 1024 * 1024 + 17


def test_curl_range_and_resume(server, site, tmp_path):
    out = tmp_path / "part"
    res = subprocess.run(["curl", "-sS", "-r", "1000-1999", "-o", str(out), "-w", "%{http_code}",
                          server.url + "/static/big.bin"], capture_output=True, timeout=30)
    assert res.stdout == b"206", res.stderr
    assert out.read_bytes() == (site["static"] / "big.bin").read_bytes()[1000:2000]
    # A download cut short and resumed with -C - ends up complete.
    whole = (site["static"] / "big.bin").read_bytes()
    partial = tmp_path / "resume"
    partial.write_bytes(whole[:1_234_567])
    res = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(partial), server.url + "/static/big.bin"],
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert partial.read_bytes() == whole


# ---- precompressed siblings ------------------------------------------------------------------------------
@pytest.mark.parametrize("accept,encoding,body", [
    ("br", "br", b"BROTLI-BYTES"),
    ("gzip, deflate, br, zstd", "br", b"BROTLI-BYTES"),
    ("zstd", "zstd", b"ZSTD-BYTES"),
    ("gzip", "gzip", gzip.compress(JS, mtime=0)),
    ("gzip;q=0.5, zstd;q=0.9", "zstd", b"ZSTD-BYTES"),
    ("br;q=0, gzip;q=0", None, JS),
    ("identity", None, JS),
])
def test_precompressed_sibling_by_accept_encoding(server, accept, encoding, body):
    r, data = raw_get(server, "/static/js/app.js", {"Accept-Encoding": accept})
    assert r.status == 200
    assert r.getheader("Content-Encoding") == encoding
    assert data == body
    assert r.getheader("Vary") == "Accept-Encoding"
    assert r.getheader("Content-Type") in ("text/javascript", "application/javascript")
    assert r.getheader("Content-Length") == str(len(body))


def test_precompressed_etags_differ_and_ranges_use_the_file(server):
    identity, _ = raw_get(server, "/static/js/app.js")
    br, _ = raw_get(server, "/static/js/app.js", {"Accept-Encoding": "br"})
    assert identity.getheader("ETag") != br.getheader("ETag")
    r, data = raw_get(server, "/static/js/app.js", {"Accept-Encoding": "br", "Range": "bytes=0-6"})
    assert r.status == 206 and data == JS[:7] and r.getheader("Content-Encoding") is None


def test_curl_compressed_decodes_the_gzip_sibling(server):
    res = subprocess.run(["curl", "-sS", "-H", "Accept-Encoding: gzip", "--compressed",
                          server.url + "/static/js/app.js"], capture_output=True, timeout=30)
    assert res.stdout == JS, res.stderr


# ---- nothing outside the mount ----------------------------------------------------------------------------
REFUSED = [
    "/static/../static-secret",
    "/static/css/../../static-secret",
    "/static/%2e%2e/static-secret",
    "/static/%2E%2E/outside/secret",
    "/static/..%2fstatic-secret",
    "/static/%2e%2e%2fstatic-secret",
    "/static/css%2f..%2f..%2fstatic-secret",
    "/static/css%2fsite.css",
    "/static/css%5csite.css",
    "/static/..%5cstatic-secret",
    "/static/css/site.css%00.txt",
    "/static/%00",
    "/static/.env",
    "/static/.hidden/secret",
    "/static/%2eenv",
    "/static/%2ehidden/secret",
    "/static/link-out/secret",
    "/static/link-out-file",
    "/static/sub/",
    "/static/sub",
    "/static/",
    "/static",
    "/static/nope.txt",
    "/static/css/site.css/",
    "/static/%zz",
]


@pytest.mark.parametrize("target", REFUSED)
def test_nothing_outside_the_mount(server, target):
    r, body = raw_get(server, target)
    assert r.status in (400, 404), (r.status, body[:200])
    assert SECRET not in body and CSS not in body and HELLO not in body


def test_backslash_in_the_raw_target(server):
    with server.raw_socket() as sock:
        sock.sendall(b"GET /static/..\\static-secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400") or data.startswith(b"HTTP/1.1 404"), data[:200]
    assert SECRET not in data


def test_symlink_inside_the_mount_is_followed(server):
    assert server.get("/static/link-in.css").content == CSS


@pytest.fixture(scope="module")
def policy_servers(module_serve, site):
    """The same directory under three symlink policies and with dotfiles allowed."""
    config = site["root"] / "policies.toml"
    s = site["static"]
    config.write_text(f"""
static = [
  {{ url = "/never", path = "{s}", symlinks = "never" }},
  {{ url = "/follow", path = "{s}", symlinks = "follow" }},
  {{ url = "/dots", path = "{s}", dotfiles = true, precompressed = false }},
]
""")
    return module_serve("hello:application", config=config)


def test_symlink_policies(policy_servers):
    s = policy_servers
    assert s.get("/never/link-in.css").status_code == 404
    assert s.get("/never/css/site.css").content == CSS
    assert s.get("/follow/link-out/secret").content == SECRET
    assert s.get("/follow/link-in.css").content == CSS


def test_dotfiles_when_allowed(policy_servers):
    r = policy_servers.get("/dots/.well-known/security.txt")
    assert r.status_code == 200 and r.content.startswith(b"Contact:")
    # Still nothing outside, and .. is still refused.
    r, _ = raw_get(policy_servers, "/dots/%2e%2e/static-secret")
    assert r.status == 400
    r = policy_servers.get("/dots/js/app.js", headers={"Accept-Encoding": "br"})
    assert r.content == JS and "Vary" not in r.headers


def test_missing_static_path_fails_startup(run_flaskhost, tmp_path):
    proc = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS, "--bind",
                         "127.0.0.1:0", "--workers", "1", "--static", f"/s={tmp_path / 'nope'}")
    assert proc.returncode == 64, proc.output()
    assert "static mount /s" in proc.output() and "nope" in proc.output()


def test_static_over_http2_prior_knowledge(server):
    import httpx
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.get(server.url + "/static/css/site.css")
    assert r.http_version == "HTTP/2" and r.content == CSS
    assert r.headers["cache-control"] == "max-age=2592000, public, immutable"
