"""Zero-downtime app reload (SIGHUP, --touch-reload) and requests that survive a dead worker.

A load generator sends requests continuously (several keep-alive clients, quick and slow
requests) while the app is reloaded or a worker is killed; every request must get its 200.
Uses tests/apps/reloadable.py, whose version comes from a file read at import."""

import os
import signal
import threading

import pytest
import requests

from fhtest import HTTP_TIMEOUT, eventually, process_alive

APP = "reloadable:application"


class Load:
    """``clients`` threads, each with its own keep-alive session, alternating a quick request
    and a slow one (so that requests are in flight on every worker at any moment). The reload
    tests send POSTs, which are never sent to a second worker: a reload that cut a request
    short could not hide behind the retry of idempotent requests."""

    def __init__(self, server, clients=4, method="POST"):
        self.server = server
        self.method = method
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (status or exception text, version, pid)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]

    def _run(self, i):
        session = requests.Session()
        n = 0
        while not self.stop_event.is_set():
            path = "/slow?s=0.2" if (n + i) % 3 == 0 else "/"
            n += 1
            try:
                r = session.request(self.method, self.server.url + path, data=b"x" * 100,
                                    timeout=HTTP_TIMEOUT)
                body = r.json() if r.status_code == 200 else {}
                item = (r.status_code, body.get("version"), body.get("pid"))
            except Exception as e:  # noqa: BLE001 - every failure is counted, whatever it is
                item = (f"{type(e).__name__}: {e}", None, None)
            with self.lock:
                self.results.append(item)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(HTTP_TIMEOUT)

    def count(self):
        with self.lock:
            return len(self.results)

    def wait_for_more(self, n, timeout=20):
        start = self.count()
        eventually(lambda: self.count() >= start + n, timeout=timeout,
                   message=f"{n} more requests under load")

    def failures(self):
        with self.lock:
            return [r for r in self.results if r[0] != 200]

    def versions_since(self, index):
        with self.lock:
            return [r[1] for r in self.results[index:]]


@pytest.fixture
def version_file(tmp_path):
    path = tmp_path / "version.txt"
    path.write_text("1")
    return path


def start(serve, version_file, *flags, workers=2):
    return serve(APP, *flags, "--threads", "2", workers=workers,
                 env={"RELOADABLE_VERSION_FILE": str(version_file)})


def current_version(server):
    return requests.get(server.url + "/", timeout=HTTP_TIMEOUT).json()["version"]


def wait_all_new(load, version, count=40):
    """Waits until the last ``count`` answers all came from ``version``."""
    def settled():
        with load.lock:
            tail = load.results[-count:]
        return len(tail) == count and all(r[1] == version for r in tail)
    eventually(settled, timeout=30, message=f"every answer to come from version {version}")


@pytest.mark.timeout(120)
def test_sighup_reloads_the_app_under_load_with_zero_failed_requests(serve, app_mode,
                                                                        version_file):
    server = start(serve, version_file, *app_mode)
    old_pids = set(server.worker_pids())
    assert current_version(server) == "1"
    with Load(server) as load:
        load.wait_for_more(50)
        version_file.write_text("2")
        mark = len(server.lines())
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload done: app generation 1: 2 new workers serving", start=mark,
                             timeout=30)
        wait_all_new(load, "2")
        load.wait_for_more(50)
    assert load.failures() == [], load.failures()[:10]
    versions = [r[1] for r in load.results]
    assert versions[0] == "1" and versions[-1] == "2"
    # Once the new version answered, no old worker took new work... and they are all gone.
    eventually(lambda: not any(process_alive(p) for p in old_pids), timeout=20,
               message="the old workers to exit")
    assert len(server.find_lines(r"worker retired", start=mark)) == 2
    new_pids = {w["pid"] for w in server.workers()} - old_pids
    assert len(new_pids) == 2


@pytest.mark.timeout(120)
def test_a_reload_to_a_broken_app_keeps_the_old_workers_serving(serve, app_mode, version_file):
    server = start(serve, version_file, *app_mode)
    old_pids = set(server.worker_pids())
    with Load(server) as load:
        load.wait_for_more(30)
        version_file.write_text("broken")
        mark = len(server.lines())
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload failed, the running workers keep serving", start=mark,
                             timeout=30)
        assert server.find_lines(r"this release of the app does not import", start=mark)
        load.wait_for_more(30)
    assert load.failures() == [], load.failures()[:10]
    assert set(load.versions_since(0)) == {"1"}
    assert all(process_alive(p) for p in old_pids)

    # Fixed release, second reload: it goes through.
    version_file.write_text("3")
    mark = len(server.lines())
    server.send_signal(signal.SIGHUP)
    server.wait_for_line(r"reload done", start=mark, timeout=30)
    eventually(lambda: current_version(server) == "3", timeout=10, message="version 3")


@pytest.mark.timeout(120)
def test_touch_reload(serve, version_file, tmp_path):
    touch = tmp_path / "reload.trigger"
    server = start(serve, version_file, "--touch-reload", touch)
    assert current_version(server) == "1"
    version_file.write_text("2")
    mark = len(server.lines())
    touch.write_text("now")  # created: counts as touched
    server.wait_for_line(r"reload done", start=mark, timeout=30)
    eventually(lambda: current_version(server) == "2", timeout=10, message="version 2")
    assert server.find_lines(r"reload.trigger was touched", start=mark)

    version_file.write_text("3")
    mark = len(server.lines())
    os.utime(touch, (1_000_000, 1_000_000))  # a different mtime
    server.wait_for_line(r"reload done", start=mark, timeout=30)
    eventually(lambda: current_version(server) == "3", timeout=10, message="version 3")


@pytest.mark.timeout(120)
def test_kill9_of_a_worker_under_load_fails_no_get(serve, version_file):
    """GETs in flight on a worker killed with SIGKILL are sent to another worker."""
    server = start(serve, version_file)
    with Load(server, method="GET") as load:
        load.wait_for_more(30)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for_workers(3)
        load.wait_for_more(50)
    assert load.failures() == [], load.failures()[:10]
    assert not process_alive(victim)
