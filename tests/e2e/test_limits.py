"""Request limits and connection timeouts, with nginx's defaults, over raw sockets: 414 for a long
request line, 431 for a large or crowded header section, 413 from the declared length alone;
a client that trickles its head (slowloris) is cut off while others are served; idle
kept-alive connections are closed after keepalive-timeout, which is separate from the header
timeout; max-connections holds further clients in the backlog. And the RFC 9112 framing rules
hyper leaves to the server: every ambiguous or malformed framing gets 400 and a closed
connection, and the app (tests/apps/recorder.py) never sees the request nor anything behind it.
The app's own deadline (--timeout, 504) is covered in test_failures.py."""

import socket
import threading
import time

import pytest

from fhtest import eventually, read_until_closed, send_raw, status_codes


def recorded(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def record_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "requests.log"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def rec_server(module_serve, record_file):
    return module_serve("recorder:application", env={"FH_RECORD_FILE": str(record_file)})


def sync(server, record_file, tag):
    """A normal request after the test's bytes; once recorded, anything the test's bytes made
    the server dispatch has been recorded too (one worker, in order)."""
    data, _ = send_raw(server, f"GET /sync-{tag} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_codes(data) == [200], data[:300]
    eventually(lambda: any(f"/sync-{tag} " in line for line in recorded(record_file)),
               message="the sync request to be recorded")


def rejected(server, record_file, payload, status, tag):
    data, closed = send_raw(server, payload)
    assert status_codes(data) == [status], data[:300]
    assert closed, "the connection must be closed after a refused request"
    sync(server, record_file, tag)
    seen = recorded(record_file)
    assert not any(f"/{tag}" in line.split()[1] for line in seen if len(line.split()) > 1), seen
    assert not any("/smuggled" in line for line in seen), seen
    return data


# ---- head limits ---------------------------------------------------------------------------------
def test_request_line_over_8k_is_414(rec_server, record_file):
    long_target = "/long-line?" + "a" * 8200
    rejected(rec_server, record_file, f"GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
             414, "long-line")


def test_request_line_under_the_limit_is_served(rec_server):
    target = "/just-under?" + "a" * 8000
    data, _ = send_raw(rec_server, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_codes(data) == [200]


def test_header_section_over_32k_is_431(rec_server, record_file):
    headers = "".join(f"X-Big-{i}: {'v' * 4000}\r\n" for i in range(9))
    rejected(rec_server, record_file, f"GET /big-head HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(),
             431, "big-head")


def test_header_section_under_the_limit_is_served(rec_server):
    headers = "".join(f"X-Big-{i}: {'v' * 4000}\r\n" for i in range(7))
    data, _ = send_raw(rec_server, f"GET /ok-head HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
    assert status_codes(data) == [200]


def test_more_than_100_headers_is_431(rec_server, record_file):
    headers = "".join(f"X-H{i}: v\r\n" for i in range(120))
    rejected(rec_server, record_file, f"GET /crowded HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(),
             431, "crowded")


def test_head_limits_are_configurable(serve):
    server = serve("hello:application", "--max-request-line", "16k", "--max-header-size", "64k",
                   "--max-header-count", "300")
    headers = "".join(f"X-H{i}: {'v' * 150}\r\n" for i in range(250))
    data, _ = send_raw(server, (f"GET /?{'a' * 12000} HTTP/1.1\r\nHost: x\r\n{headers}"
                                "Connection: close\r\n\r\n").encode())
    assert status_codes(data) == [200], data[:300]
    small = serve("hello:application", "--max-request-line", "1k")
    data, closed = send_raw(small, f"GET /?{'a' * 1100} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_codes(data) == [414] and closed


def test_declared_body_over_default_limit_is_413_unread(rec_server, record_file):
    """client_max_body_size 10M (the default): refused from the head, before any body byte."""
    data, closed = send_raw(rec_server, b"POST /huge HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 10485761\r\n\r\n")
    assert status_codes(data) == [413] and closed
    sync(rec_server, record_file, "huge")
    assert not any("/huge" in line for line in recorded(record_file))


# ---- request framing (RFC 9112) ---------------------------------------------------------------------
FRAMING = {
    "missing-host": b"GET /missing-host HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "cl-and-te-chunked-smuggle": (b"POST /cl-and-te-chunked-smuggle HTTP/1.1\r\nHost: x\r\n"
                                  b"Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n"
                                  b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    "te-twice-chunked": (b"POST /te-twice-chunked HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    "te-in-http10": (b"POST /te-in-http10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n"),
    "cl-list-differing": (b"POST /cl-list-differing HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n"
                          b"abcd"),
    "cl-plus-sign": b"POST /cl-plus-sign HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    "chunk-size-bare-lf": (b"POST /chunk-size-bare-lf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    "chunk-data-bare-lf": (b"POST /chunk-data-bare-lf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    "chunk-size-negative": (b"POST /chunk-size-negative HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"-3\r\nabc\r\n0\r\n\r\n"),
    "obs-fold-in-te": (b"POST /obs-fold-in-te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                       b"0\r\n\r\n"),
    "space-before-colon-te": (b"POST /space-before-colon-te HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("name", list(FRAMING))
def test_ambiguous_framing_is_400_and_closed(rec_server, record_file, name):
    data, closed = send_raw(rec_server, FRAMING[name])
    codes = status_codes(data)
    assert codes == [400], data[:300]
    assert closed
    sync(rec_server, record_file, name)
    seen = recorded(record_file)
    assert not any(f"/{name} " in line or "/smuggled" in line for line in seen), seen


def test_bare_lf_line_endings_in_the_head_are_accepted(rec_server):
    """RFC 9112 §2.2 lets a server accept a bare LF as a line end in the head (hyper does); the
    message is still unambiguous, so it is served."""
    data, _ = send_raw(rec_server, b"GET /lf-head HTTP/1.1\nHost: x\nConnection: close\n\n")
    assert status_codes(data) == [200]


def test_pipelined_requests_after_bodies_stay_in_step(rec_server, record_file):
    """The guard follows Content-Length and chunked bodies exactly: a body that looks like a
    request is a body, and the requests after it are judged on their own."""
    payload = (b"POST /pipe-a HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n"
               b"GET /smuggled HTTP/1.1\r\n\r\n"
               b"POST /pipe-b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"1a\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
               b"GET /pipe-c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, closed = send_raw(rec_server, payload)
    assert status_codes(data) == [200, 200, 200], data
    lines = recorded(record_file)
    assert "POST /pipe-a body=26" in lines and "POST /pipe-b body=26" in lines
    assert "GET /pipe-c body=0" in lines
    assert not any("/smuggled" in line for line in lines)


def test_bad_request_after_a_good_one_on_the_same_connection(rec_server, record_file):
    payload = (b"GET /first-good HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /second-bad HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
               b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    data, closed = send_raw(rec_server, payload)
    assert status_codes(data) == [200, 400], data
    assert closed
    sync(rec_server, record_file, "second-bad")
    lines = recorded(record_file)
    assert "GET /first-good body=0" in lines
    assert not any("/second-bad" in line or "/smuggled" in line for line in lines)


# ---- timeouts ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timeout_server(module_serve):
    return module_serve("hello:application", "--header-timeout", "1s", "--keepalive-timeout", "3s",
                        threads=4)


def test_slowloris_is_cut_off_while_others_are_served(timeout_server):
    """A client sending its head one byte at a time never completes it within header-timeout:
    it is disconnected, and a normal client is served meanwhile."""
    stop = threading.Event()
    result = {}

    def trickle():
        with timeout_server.raw_socket(timeout=30) as sock:
            head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
            try:
                for byte in head:
                    if stop.is_set():
                        break
                    sock.sendall(bytes([byte]))
                    time.sleep(0.05)  # the behaviour under test: a head that trickles in
            except (BrokenPipeError, ConnectionResetError):
                result["cut"] = True
                return
            data, closed = read_until_closed(sock, timeout=5)
            result["cut"] = closed and not status_codes(data)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # Others are served while the slow head trickles.
        for _ in range(3):
            assert timeout_server.get("/").content == b"Hello, World!\n"
        t.join(timeout=30)
    finally:
        stop.set()
    assert result.get("cut"), "the slow client was not disconnected"


def test_connection_that_sends_nothing_is_closed(timeout_server):
    with timeout_server.raw_socket(timeout=30) as sock:
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and data == b""


def test_idle_keep_alive_is_separate_from_the_header_timeout(timeout_server):
    """After a response the connection may stay idle longer than header-timeout (1 s) and is
    still served; after keepalive-timeout (3 s) of idleness it is closed."""
    def hello_response(sock):
        data = b""
        while not data.endswith(b"Hello, World!\n"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        return data

    with timeout_server.raw_socket(timeout=30) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert hello_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # the behaviour under test: idle longer than the header timeout
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        assert hello_response(sock).startswith(b"HTTP/1.1 200")
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and data == b"", "idle kept-alive connection was not closed"


def test_idle_connection_after_a_request_longer_than_keepalive_is_closed(serve):
    """The keep-alive timer is armed while a request is in flight, not when it ends: a request
    that outlasts keepalive-timeout is answered, and the connection, idle afterwards, is still
    closed."""
    server = serve("failures:application", "--keepalive-timeout", "1s")
    with server.raw_socket(timeout=30) as sock:
        sock.sendall(b"GET /slow?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and data == b"", "idle kept-alive connection was not closed"


def test_idle_http2_connection_is_closed(timeout_server):
    """HTTP/2 with prior knowledge (h2c), spoken with the h2 library: a request is served, and
    the connection, idle afterwards, is closed after keepalive-timeout."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/h2"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)
    body, ended = b"", False
    with timeout_server.raw_socket(timeout=30) as sock:
        sock.sendall(conn.data_to_send())
        while not ended:
            chunk = sock.recv(65536)
            assert chunk, "closed before the response"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                ended |= isinstance(event, h2.events.StreamEnded)
            sock.sendall(conn.data_to_send())
        assert body == b"Hello, World!\n"
        data, closed = read_until_closed(sock, timeout=20)
    assert closed, "idle HTTP/2 connection was not closed"


def test_keepalive_timeout_zero_closes_after_each_response(serve):
    server = serve("hello:application", "--keepalive-timeout", "0")
    with server.raw_socket() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock, timeout=20)
    assert closed and status_codes(data) == [200]


def test_body_timeout(serve):
    """client_body_timeout: a client that stops sending its body is answered with 400 and
    disconnected; the app never gets a half body."""
    server = serve("recorder:application", "--body-timeout", "1s", env={"FH_RECORD_FILE": "/dev/null"})
    with server.raw_socket(timeout=30) as sock:
        sock.sendall(b"POST /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        data, closed = read_until_closed(sock, timeout=20)
    assert closed
    # 400 today (rescue.rs maps every request-body failure to 400); nginx says 408.
    assert status_codes(data)[:1] in ([400], [408]), data[:200]


# ---- connection limit --------------------------------------------------------------------------------
def test_max_connections_holds_new_clients_until_one_closes(serve):
    server = serve("hello:application", "--max-connections", "2")
    held = []
    for i in range(2):
        s = server.raw_socket(timeout=30)
        s.sendall(f"GET /held-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while not data.endswith(b"Hello, World!\n"):
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
        held.append(s)
    waiting = server.raw_socket(timeout=30)
    waiting.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    waiting.settimeout(0.5)
    try:
        early = waiting.recv(65536)
    except socket.timeout:
        early = b""
    assert early == b"", "a third connection was served beyond max-connections"
    held[0].close()
    data, closed = read_until_closed(waiting, timeout=20)
    assert status_codes(data) == [200]
    waiting.close()
    held[1].close()


def open_files_limit(pid):
    """(soft, hard) 'Max open files' of a process, from /proc."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc/PID/limits")


def test_open_file_limit_is_raised_to_the_hard_limit(serve):
    """A soft limit below what max-connections needs (here 256) is raised to the hard one at
    start, as Go programs do, so accept does not run out of descriptors first."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256 or hard == resource.RLIM_INFINITY:
        pytest.skip(f"needs a finite hard open-file limit above 256 (is {hard})")
    low = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # noqa: E731
    server = serve("hello:application", popen={"preexec_fn": low})
    assert open_files_limit(server.pid) == (hard, hard)
    assert server.get("/").status_code == 200
    assert not server.find_lines("open-file limit")


def test_open_file_limit_too_low_for_the_configuration_is_a_warning(serve):
    """A hard limit below what the configuration needs is said at start, with what to do;
    the server still serves."""
    import resource
    low = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))  # noqa: E731
    server = serve("hello:application", "--max-connections", "1024", popen={"preexec_fn": low})
    assert open_files_limit(server.pid) == (200, 200)
    line = server.find_lines("open-file limit is 200")
    assert line and "max-connections 1024" in line[0] and "ulimit -n" in line[0], server.tail()
    assert server.get("/").status_code == 200
