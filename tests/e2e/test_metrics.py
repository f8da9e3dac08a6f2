"""Prometheus metrics on a listener of their own (--metrics): the exposition parses strictly,
and its counters and histograms count exactly what was sent: responses by route kind and
status, latency histograms (total, app, queue wait), workers by state, restarts by reason."""

import math
import os
import re
import signal
import socket

import pytest
import requests

from fhtest import (APPS, EX_USAGE, HTTP_TIMEOUT, LISTENING_RE, WORKER_STARTED_RE, eventually,
                    read_until_closed, send_raw, status_codes)

REASONS = ["crash", "harakiri", "max_requests", "max_worker_lifetime", "reload_on_rss",
           "evil_reload_on_rss", "reload"]
STATES = ["starting", "idle", "busy", "retiring"]
KINDS = ["app", "static", "redirect", "refused"]

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


class Exposition:
    """A parsed text exposition (format 0.0.4), checked as it is read: every sample follows
    the HELP and TYPE lines of its family, each family appears once, no series twice."""

    def __init__(self, text):
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple, float] = {}
        helped, family = set(), None
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helped.add(line.split(" ", 3)[2])
                continue
            if line.startswith("# TYPE "):
                _, _, family, kind = line.split(" ")
                assert family in helped, f"TYPE before HELP: {line}"
                assert family not in self.types, f"family {family} declared twice"
                assert kind in ("counter", "gauge", "histogram"), line
                self.types[family] = kind
                continue
            m = SAMPLE_RE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels_text, value = m.groups()
            allowed = {family}
            if self.types.get(family) == "histogram":
                allowed = {family + "_bucket", family + "_sum", family + "_count"}
            assert name in allowed, f"{name} outside its family (in {family})"
            labels = dict(LABEL_RE.findall(labels_text or ""))
            key = (name, tuple(sorted(labels.items())))
            assert key not in self.samples, f"duplicate series {line}"
            self.samples[key] = float(value)

    def series(self, name):
        """[(labels, value)] of every series of ``name``."""
        return [(dict(labels), v) for (n, labels), v in self.samples.items() if n == name]

    def value(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"no series {name}{labels}:\n{self.text}"
        return self.samples[key]

    def by(self, name, label):
        """{label value: sample value} for a family with one label."""
        return {labels[label]: v for labels, v in self.series(name)}

    def histogram_count(self, name, **labels):
        """Checks one histogram series (cumulative buckets, ascending, ending with +Inf equal
        to _count, a non-negative sum) and returns its count."""
        buckets = [(float(l.pop("le")), v) for l, v in self.series(name + "_bucket")
                   if {k: l[k] for k in l if k != "le"} == labels]
        assert buckets, f"no buckets for {name}{labels}"
        les = [le for le, _ in buckets]
        assert les == sorted(les) and les[-1] == math.inf, les
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name}{labels} buckets not cumulative: {counts}"
        count = self.value(name + "_count", **labels)
        assert counts[-1] == count
        assert self.value(name + "_sum", **labels) >= 0
        return count


def metrics_url(server):
    return server.wait_for_line(r"metrics on (http://\S+)", timeout=10).group(1)


def scrape(url):
    r = requests.get(url, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    return Exposition(r.text)


def scrape_until(url, predicate, message):
    """Scrapes until ``predicate(exposition)`` holds. A response is counted when the server
    has finished with it, a moment after the client has read it: poll, never sleep."""
    def attempt():
        e = scrape(url)
        return e if predicate(e) else None
    return eventually(attempt, timeout=10, message=message)


def responses(e):
    return {(l["kind"], int(l["status"])): int(v) for l, v in e.series("flaskhost_requests_total")}


def test_requests_counted_by_kind_and_status(serve, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "a.txt").write_bytes(b"static bytes\n")
    server = serve("failures:application", "--metrics", "127.0.0.1:0",
                   "--static", f"/static={static}", workers=2)
    url = metrics_url(server)
    assert not url.startswith(server.url), "metrics must not be on the public listener"

    before = scrape_until(url, lambda e: e.by("flaskhost_workers", "state")["idle"] == 2,
                          "both workers idle")
    assert responses(before) == {}
    assert set(before.by("flaskhost_workers", "state")) == set(STATES)

    for _ in range(5):
        assert server.get("/pid").status_code == 200
    for _ in range(3):
        assert server.get("/nope").status_code == 404
    assert server.get("/raise").status_code == 500
    # The public port has no /metrics: the path is the app's (a 404 from the app).
    r = server.get("/metrics")
    assert r.status_code == 404 and "flaskhost_" not in r.text
    for _ in range(4):
        r = server.get("/static/a.txt")
        assert r.status_code == 200 and r.content == b"static bytes\n"
    assert server.get("/static/missing.txt").status_code == 404
    # Refused by the connection guard (two Host headers): a response of kind "refused".
    data, _ = send_raw(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert status_codes(data) == [400]
    # Rejected by the HTTP parser itself (two Content-Lengths): not a request at all.
    data, _ = send_raw(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                               b"Content-Length: 4\r\n\r\nabcd")
    assert status_codes(data) == [400]

    expected = {("app", 200): 5, ("app", 404): 4, ("app", 500): 1,
                ("static", 200): 4, ("static", 404): 1, ("refused", 400): 1}
    e = scrape_until(
        url, lambda e: sum(responses(e).values()) >= 16
        and e.value("flaskhost_malformed_requests_total") >= 1
        and e.by("flaskhost_workers", "state")["idle"] == 2,
        "every response counted")
    assert responses(e) == expected
    assert e.value("flaskhost_malformed_requests_total") == 1

    # Histograms: one observation per response of each kind; app time and queue wait once
    # per request that reached a worker (all ten app requests).
    counts = {k: e.histogram_count("flaskhost_request_duration_seconds", kind=k) for k in KINDS}
    assert counts == {"app": 10, "static": 5, "redirect": 0, "refused": 1}
    assert e.histogram_count("flaskhost_app_duration_seconds") == 10
    assert e.histogram_count("flaskhost_queue_wait_seconds") == 10
    assert e.types["flaskhost_requests_total"] == "counter"
    assert e.types["flaskhost_request_duration_seconds"] == "histogram"
    assert e.types["flaskhost_workers"] == "gauge"

    # The pool's side.
    assert e.by("flaskhost_workers", "state") == {"starting": 0, "idle": 2, "busy": 0,
                                                  "retiring": 0}
    assert e.by("flaskhost_worker_restarts_total", "reason") == {r: 0 for r in REASONS}
    assert e.value("flaskhost_exceptions_total") == 1
    assert e.value("flaskhost_harakiri_total") == 0
    assert e.value("flaskhost_queue_length") == 0
    assert e.value("flaskhost_idle_slots") == 2
    assert e.value("flaskhost_queue_rejections_total") == 0
    assert e.value("flaskhost_queue_timeouts_total") == 0
    rss = e.series("flaskhost_worker_rss_bytes")
    assert sorted(int(l["pid"]) for l, _ in rss) == sorted(server.worker_pids())
    assert all(v > 0 for _, v in rss)

    # Scrapes are not requests: nothing moved.
    again = scrape(url)
    assert responses(again) == expected
    assert again.histogram_count("flaskhost_request_duration_seconds", kind="app") == 10
    # Only /metrics is served there.
    base = url[: -len("/metrics")]
    assert requests.get(base + "/", timeout=HTTP_TIMEOUT).status_code == 404
    assert requests.get(base + "/metrics/x", timeout=HTTP_TIMEOUT).status_code == 404
    assert requests.post(url, timeout=HTTP_TIMEOUT).status_code == 405


def test_killed_worker_counts_a_crash_restart(serve):
    server = serve("failures:application", "--metrics", "127.0.0.1:0", workers=1)
    url = metrics_url(server)
    [old] = server.worker_pids()
    os.kill(old, signal.SIGKILL)
    server.wait_for_workers(2)
    e = scrape_until(url, lambda e: e.by("flaskhost_workers", "state")["idle"] == 1
                     and e.value("flaskhost_worker_restarts_total", reason="crash") == 1,
                     "the replacement idle and counted")
    assert e.by("flaskhost_worker_restarts_total", "reason") == {
        r: (1 if r == "crash" else 0) for r in REASONS}
    assert sum(e.by("flaskhost_workers", "state").values()) == 1
    new = server.worker_pids()[1]
    assert [int(l["pid"]) for l, _ in e.series("flaskhost_worker_rss_bytes")] == [new]
    assert server.get("/pid").json()["pid"] == new


def test_harakiri_counts_a_504_and_a_restart(serve):
    server = serve("failures:application", "--metrics", "127.0.0.1:0", "--timeout", "1s",
                   workers=1)
    url = metrics_url(server)
    assert server.get("/hang").status_code == 504
    server.wait_for_workers(2)
    e = scrape_until(url, lambda e: e.value("flaskhost_worker_restarts_total",
                                            reason="harakiri") == 1
                     and e.by("flaskhost_workers", "state")["idle"] == 1
                     and responses(e), "the harakiri restart counted")
    assert responses(e) == {("app", 504): 1}
    assert e.value("flaskhost_harakiri_total") == 1
    assert e.value("flaskhost_worker_restarts_total", reason="crash") == 0
    # The app never answered: the request waited for a slot but has no app time.
    assert e.histogram_count("flaskhost_queue_wait_seconds") == 1
    assert e.histogram_count("flaskhost_app_duration_seconds") == 0
    assert e.histogram_count("flaskhost_request_duration_seconds", kind="app") == 1


def scrape_unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data, closed = read_until_closed(s, timeout=10)
    assert closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert b"version=0.0.4" in head.lower(), head
    return Exposition(body.decode())


def test_metrics_on_a_unix_socket(serve, short_tmp):
    path = os.path.join(short_tmp, "metrics.sock")
    server = serve("hello:application", "--metrics", f"unix:{path}")
    assert server.wait_for_line(r"metrics on (unix:\S+)", timeout=10).group(1) == f"unix:{path}"
    for _ in range(2):
        assert server.get("/").status_code == 200

    def counted():
        e = scrape_unix(path)
        return e if responses(e) == {("app", 200): 2} else None

    e = eventually(counted, timeout=10, message="two responses counted")
    assert e.histogram_count("flaskhost_request_duration_seconds", kind="app") == 2
    assert server.stop() == 0
    assert not os.path.exists(path), "the metrics socket file is removed at exit"


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_bad_metrics_address_is_a_usage_error(run_flaskhost, tmp_path, source):
    args = ["serve", "--chdir", APPS, "--bind", "127.0.0.1:0", "--app", "hello:application"]
    env = {}
    if source == "flag":
        args += ["--metrics", "nowhere"]
    elif source == "env":
        env["FLASKHOST_METRICS"] = "nowhere"
    else:
        config = tmp_path / "flaskhost.toml"
        config.write_text('metrics = "nowhere"\n')
        args += ["--config", config]
    server = run_flaskhost(*args, env=env)
    out = server.output()
    assert server.returncode == EX_USAGE, out
    assert "`metrics`" in out, out
    assert not any(LISTENING_RE.search(line) for line in server.lines())
    assert not any(WORKER_STARTED_RE.search(line) for line in server.lines())


def test_taken_metrics_address_fails_startup(run_flaskhost):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = run_flaskhost("serve", "--chdir", APPS, "--bind", "127.0.0.1:0",
                               "--app", "hello:application", "--workers", "1",
                               "--metrics", f"127.0.0.1:{port}")
    out = server.output()
    assert server.returncode == 1, out
    assert re.search(rf"metrics: cannot listen on 127\.0\.0\.1:{port}", out), out
    assert server.leftover_workers() == []
