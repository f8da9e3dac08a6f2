"""Worker lifecycle like uWSGI's: recycling (max-requests, reload-on-rss), harakiri with the
Python traceback, and the stats socket read by `flaskhost stats`."""

import json
import re
import socket
import subprocess

import requests

from fhtest import BIN, HTTP_TIMEOUT, eventually, process_alive


def test_max_requests_recycles_without_failing_a_request(serve):
    """Every worker is replaced after 5 requests; it keeps serving until its replacement is
    ready (so it may serve a few more), and no request fails on the way."""
    server = serve("grow:application", "--max-requests", "5", workers=1)
    pids = []
    while len(set(pids)) < 3:
        assert len(pids) < 300, f"not recycled: {pids}"
        r = requests.get(server.url + "/pid", timeout=HTTP_TIMEOUT)
        assert r.status_code == 200
        pids.append(r.json()["pid"])
    # Recycled at least twice, each replacement announced before the old worker retired.
    server.wait_for_line(r"worker retired", count=2, timeout=20)
    assert server.find_lines(r"served 5 requests \(max-requests 5\); starting its replacement")
    served = [pids.count(p) for p in dict.fromkeys(pids)]
    assert all(n >= 5 for n in served[:-1]), served


def test_reload_on_rss_replaces_a_grown_worker(serve):
    server = serve("grow:application", "--reload-on-rss", "60M", workers=1)
    first = requests.get(server.url + "/grow?mb=80", timeout=HTTP_TIMEOUT)
    assert first.status_code == 200
    server.wait_for_line(r"uses \d+ MiB RSS \(reload-on-rss 60 MiB\)", timeout=20)
    server.wait_for_line(r"worker retired", timeout=20)

    def new_pid():
        pid = requests.get(server.url + "/pid", timeout=HTTP_TIMEOUT).json()["pid"]
        return pid if pid != first.json()["pid"] else None

    eventually(new_pid, timeout=20, message="a request served by the replacement")


def test_harakiri_logs_the_python_traceback_of_the_stuck_request(serve):
    server = serve("failures:application", "--timeout", "1s", workers=1)
    r = requests.get(server.url + "/hang", timeout=HTTP_TIMEOUT)
    assert r.status_code == 504
    server.wait_for_line(r"GET /hang got no response within 1s", timeout=10)
    # faulthandler's dump names the app's frame, in the app's file.
    server.wait_for_line(r'File ".*failures\.py", line \d+ in failures', timeout=10)
    eventually(lambda: requests.get(server.url + "/pid", timeout=HTTP_TIMEOUT).status_code in (200, 404),
               timeout=20, message="a replacement worker answering")


def _stats_addr(server):
    m = server.wait_for_line(r"stats on (\S+)", timeout=10)
    return m.group(1)


def _read(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return json.loads(b"".join(chunks))


def test_stats_socket_counts_requests_exceptions_and_workers(serve):
    server = serve("failures:application", "--stats", "127.0.0.1:0", workers=2)
    addr = _stats_addr(server)
    before = _read(addr)
    assert sorted(w["pid"] for w in before["workers"]) == sorted(server.worker_pids())
    assert all(w["status"] == "idle" and w["rss_bytes"] > 0 for w in before["workers"])
    for _ in range(7):
        requests.get(server.url + "/slow?s=0", timeout=HTTP_TIMEOUT)
    assert requests.get(server.url + "/raise", timeout=HTTP_TIMEOUT).status_code == 500
    after = _read(addr)
    assert after["requests"] - before["requests"] == 8
    assert after["exceptions"] - before["exceptions"] == 1
    assert sum(w["requests"] for w in after["workers"]) == after["requests"]
    assert sum(w["exceptions"] for w in after["workers"]) == 1
    assert after["queue"] == {"length": 0, "rejections": 0, "timeouts": 0}

    table = subprocess.run([str(BIN), "stats", addr], capture_output=True, text=True, timeout=20)
    assert table.returncode == 0, table.stderr
    for pid in server.worker_pids():
        assert re.search(rf"\b{pid}\b", table.stdout), table.stdout


def test_adaptive_workers_grow_under_load_and_shrink_when_idle(serve, tmp_path):
    """--workers-min 1 --workers-max 3: three slow requests at once make two more workers
    start (each request gets its 200); idle for 1 s, the extra workers stop again."""
    import concurrent.futures as cf

    server = serve("failures:application", "--workers-min", "1", "--workers-max", "3",
                   "--workers-idle-timeout", "1s", workers=None)
    assert len(server.wait_for_workers(1)) == 1

    def slow(i):
        return requests.get(server.url + "/slow", params={"s": 2}, timeout=HTTP_TIMEOUT)

    with cf.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(slow, range(3)))
    assert [r.status_code for r in results] == [200, 200, 200]
    assert len({r.json()["pid"] for r in results}) >= 2, "the waiting requests got new workers"
    started = server.find_lines(r"requests are waiting for a worker: starting worker \d of at most 3")
    assert 1 <= len(started) <= 2, started
    extra = len(started)
    assert len(server.workers()) == 1 + extra
    # Idle: back to one worker, never below.
    server.wait_for_line(r"worker idle for 1s: stopping it", count=extra, timeout=20)
    server.wait_for_line(r"worker retired", count=extra, timeout=20)
    assert server.find_lines(r"stopping it \(1 left, at least 1\)")
    alive = [w["pid"] for w in server.workers() if process_alive(w["pid"])]
    eventually(lambda: len([p for p in alive if process_alive(p)]) == 1, timeout=10,
               message="one worker left")
    assert requests.get(server.url + "/pid", timeout=HTTP_TIMEOUT).status_code == 200


def test_stats_count_harakiri_respawns_retries_and_restart_reasons(serve):
    server = serve("failures:application", "--stats", "127.0.0.1:0", "--timeout", "1s", workers=1)
    addr = _stats_addr(server)
    assert requests.get(server.url + "/hang", timeout=HTTP_TIMEOUT).status_code == 504
    server.wait_for_workers(2)
    # A GET that kills its worker is sent once to another worker, which it kills too.
    assert requests.get(server.url + "/exit", timeout=HTTP_TIMEOUT).status_code == 502
    server.wait_for_workers(4)

    def settled():
        doc = _read(addr)
        return doc if doc["workers"] and doc["restarts"]["crash"] == 2 else None

    doc = eventually(settled, timeout=20, message="the restarts to be counted")
    [worker] = doc["workers"]
    assert worker["id"] == 1 and worker["status"] == "idle"
    assert worker["harakiri_count"] == 1
    assert worker["respawns"] == 3
    assert doc["harakiri"] == 1 and doc["respawns"] == 3 and doc["retries"] == 1
    assert doc["restarts"] == {"crash": 2, "harakiri": 1, "max_requests": 0,
                               "max_worker_lifetime": 0, "reload_on_rss": 0,
                               "evil_reload_on_rss": 0, "reload": 0}
    table = subprocess.run([str(BIN), "stats", addr], capture_output=True, text=True, timeout=20)
    assert "retries 1" in table.stdout and "harakiri" in table.stdout, table.stdout
