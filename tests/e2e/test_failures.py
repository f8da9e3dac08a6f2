"""What happens when the app or its worker fails: an exception (500, the worker stays), a worker
that dies (502 for its request only, exactly one replacement; an idempotent request is first sent
once to another worker), a request that exceeds --timeout (504, the worker is replaced). Uses
tests/apps/failures.py."""

import concurrent.futures as cf
import os
import signal
from pathlib import Path

import pytest
import requests

from fhtest import HTTP_TIMEOUT, eventually, process_alive, unique_token

APP = "failures:application"


def worker_pid(server):
    r = server.get("/pid")
    assert r.status_code == 200, r.text
    return r.json()["pid"]


def wait_pid_file(directory, tag, timeout=20):
    path = Path(directory) / f"{tag}.pid"
    eventually(lambda: path.exists() and path.read_text().strip(), timeout=timeout,
               message=f"the request {tag!r} to reach a worker")
    return int(path.read_text())


def test_app_exception_is_500_and_worker_keeps_serving(serve, app_mode):
    server = serve(APP, *app_mode)
    before = worker_pid(server)
    token = unique_token("boom")
    start = len(server.lines())
    r = server.get("/raise", params={"token": token})
    assert r.status_code == 500
    assert token not in r.text, "the traceback must not be sent to the client"
    server.wait_for_line(token, start=start)
    server.wait_for_line(r"Traceback \(most recent call last\)", start=start)
    server.wait_for_line(r'File ".*failures\.py", line \d+, in failures$', start=start)
    assert worker_pid(server) == before
    assert len(server.workers()) == 1, "an app exception must not restart the worker"


@pytest.mark.parametrize("route", ["/exit", "/segfault"])
def test_dead_worker_is_502_and_replaced(serve, app_mode, route):
    """POST is not idempotent, so it is never sent to a second worker: 502, one replacement."""
    server = serve(APP, *app_mode)
    [first] = server.wait_for_workers(1)
    before = worker_pid(server)
    assert first["pid"] == before
    r = requests.post(server.url + route, timeout=HTTP_TIMEOUT)
    assert r.status_code == 502
    workers = server.wait_for_workers(2)
    replacement = workers[1]["pid"]
    assert replacement != before
    eventually(lambda: not process_alive(before), timeout=10, message="the dead worker to go")
    assert worker_pid(server) == replacement
    assert worker_pid(server) == replacement
    assert len(server.workers()) == 2, "exactly one replacement worker"


def test_query_of_death_is_retried_once_only(serve):
    """A GET whose worker dies before answering goes to one other worker, never a third: a
    request that kills every worker it reaches takes down two, then gets its 502."""
    server = serve(APP)
    before = worker_pid(server)
    start = len(server.lines())
    assert server.get("/exit").status_code == 502
    server.wait_for_line(r"GET /exit goes to another worker", start=start)
    workers = server.wait_for_workers(3)
    assert workers[0]["pid"] == before
    assert worker_pid(server) == workers[2]["pid"]
    assert len(server.workers()) == 3, "two workers died, each replaced once"
    retries = [line for line in server.lines()[start:] if "goes to another worker" in line]
    assert len(retries) == 1, retries


def test_repeated_crashes_keep_being_replaced(serve):
    server = serve(APP)
    seen = {worker_pid(server)}
    for n in range(3):
        assert requests.post(server.url + "/exit", timeout=HTTP_TIMEOUT).status_code == 502
        server.wait_for_workers(2 + n)
        pid = worker_pid(server)
        assert pid not in seen
        seen.add(pid)
    assert len(server.workers()) == 4


@pytest.mark.timeout(90)
def test_kill9_of_busy_worker_fails_only_its_request(serve, tmp_path):
    """Three workers, each busy with one slow request; the victim's worker gets SIGKILL. Only the
    victim's request (a POST, so not retried) fails (502); the others complete; exactly one new
    worker starts."""
    server = serve(APP, workers=3)
    initial = server.wait_for_workers(3)
    initial_pids = {w["pid"] for w in initial}
    assert len(initial_pids) == 3

    def slow(tag, seconds, method="GET"):
        return requests.request(method, server.url + "/slow",
                                params={"s": seconds, "tag": tag, "dir": str(tmp_path)},
                                timeout=HTTP_TIMEOUT)

    with cf.ThreadPoolExecutor(3) as pool:
        others = [pool.submit(slow, f"other{i}", 5) for i in range(2)]
        other_pids = {wait_pid_file(tmp_path, f"other{i}") for i in range(2)}
        victim = pool.submit(slow, "victim", 30, "POST")
        victim_pid = wait_pid_file(tmp_path, "victim")
        assert victim_pid in initial_pids
        assert victim_pid not in other_pids, "the victim should be on its own worker"
        os.kill(victim_pid, signal.SIGKILL)
        victim_response = victim.result(timeout=HTTP_TIMEOUT)
        other_responses = [f.result(timeout=HTTP_TIMEOUT) for f in others]

    assert victim_response.status_code == 502
    assert [r.status_code for r in other_responses] == [200, 200]
    assert {r.json()["pid"] for r in other_responses} == other_pids

    workers = server.wait_for_workers(4)
    new_pid = workers[3]["pid"]
    assert new_pid not in initial_pids
    expected = (initial_pids - {victim_pid}) | {new_pid}
    with cf.ThreadPoolExecutor(3) as pool:
        # Concurrent, so that every worker gets some.
        results = list(pool.map(lambda _: slow(unique_token("after"), 0.3), range(9)))
    assert all(r.status_code == 200 for r in results)
    assert {r.json()["pid"] for r in results} <= expected
    assert len(server.workers()) == 4, "exactly one replacement worker"


def test_kill9_during_a_get_is_retried_on_another_worker(serve, tmp_path):
    """The worker holding a GET is killed before answering: the request is sent to another
    worker and the client gets its 200, never knowing."""
    server = serve(APP, workers=2)
    server.wait_for_workers(2)
    start = len(server.lines())
    with cf.ThreadPoolExecutor(1) as pool:
        victim = pool.submit(lambda: requests.get(
            server.url + "/slow", params={"s": 1, "tag": "victim", "dir": str(tmp_path)},
            timeout=HTTP_TIMEOUT))
        victim_pid = wait_pid_file(tmp_path, "victim")
        (tmp_path / "victim.pid").unlink()
        os.kill(victim_pid, signal.SIGKILL)
        r = victim.result(timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.json()["pid"] != victim_pid
    assert wait_pid_file(tmp_path, "victim") == r.json()["pid"], "the retry ran the request again"
    server.wait_for_line(r"GET /slow goes to another worker", start=start)
    server.wait_for_workers(3)


@pytest.fixture
def timeout_server(serve):
    return serve(APP, "--timeout", "1s")


def test_timeout_is_504_and_worker_replaced(timeout_server, tmp_path):
    server = timeout_server
    before = worker_pid(server)
    r = requests.get(server.url + "/hang", params={"tag": "hang", "dir": str(tmp_path)},
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 504
    assert r.elapsed.total_seconds() < 20  # sanity only: 1 s timeout, generous bound
    workers = server.wait_for_workers(2)
    assert workers[1]["pid"] != before
    eventually(lambda: not process_alive(before), timeout=15,
               message="the timed-out worker to be killed")
    assert worker_pid(server) == workers[1]["pid"]
    assert len(server.workers()) == 2


def test_timeout_spares_requests_under_the_limit(serve):
    server = serve(APP, "--timeout", "5s")
    before = worker_pid(server)
    r = server.get("/slow", params={"s": "0.5"})
    assert r.status_code == 200
    assert worker_pid(server) == before
    assert len(server.workers()) == 1


def _fork_server_pid(server):
    from fhtest import descendants
    for pid in descendants(server.pid)[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"flaskhost fork-server"):
            return pid
    return None


def test_a_dead_fork_server_is_replaced_with_its_workers(serve):
    """kill -9 of the fork server takes its workers with it (PDEATHSIG): a new fork server
    imports the app again and forks every worker; the server keeps serving."""
    server = serve(APP, workers=2)
    old_workers = set(server.worker_pids())
    fork_server = _fork_server_pid(server)
    assert fork_server is not None
    mark = len(server.lines())
    os.kill(fork_server, signal.SIGKILL)
    server.wait_for_line(r"the fork server exited, and its workers with it; starting a new one",
                         start=mark)
    server.wait_for_line(r"worker started", start=mark, count=2, timeout=20)
    eventually(lambda: not any(process_alive(p) for p in old_workers) or None, timeout=10,
               message="the old workers to die with their fork server")
    new_pids = {worker_pid(server) for _ in range(6)}
    assert new_pids and not (new_pids & old_workers)
    new_fork_server = _fork_server_pid(server)
    assert new_fork_server not in (None, fork_server)
