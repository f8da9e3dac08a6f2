"""The worker pool: a bounded queue in front of busy workers (503 + Retry-After when full or
after --queue-timeout), and real parallelism with --workers and --threads."""

import concurrent.futures as cf
import time
from pathlib import Path

import requests

from fhtest import HTTP_TIMEOUT, eventually

APP = "failures:application"


def slow(server, seconds, tag=None, directory=None):
    params = {"s": seconds}
    if tag:
        params.update(tag=tag, dir=str(directory))
    r = requests.get(server.url + "/slow", params=params, timeout=HTTP_TIMEOUT)
    return r, time.monotonic()


def wait_started(directory, tag):
    path = Path(directory) / f"{tag}.pid"
    eventually(lambda: path.exists() and path.read_text(), timeout=20,
               message=f"request {tag!r} to reach the worker")


def check_503(r):
    assert r.status_code == 503, r.text
    retry_after = r.headers.get("Retry-After")
    assert retry_after is not None, f"no Retry-After header: {dict(r.headers)}"
    assert retry_after.strip().isdigit(), retry_after


def test_queue_full_is_503_with_retry_after(serve, tmp_path):
    server = serve(APP, "--queue-size", "1", "--queue-timeout", "60s")
    with cf.ThreadPoolExecutor(3) as pool:
        busy = pool.submit(slow, server, 6, "busy", tmp_path)
        wait_started(tmp_path, "busy")
        # The worker is busy: of two more requests, one takes the only queue slot and the
        # other must be refused at once (which one is a race; exactly one is refused).
        b = pool.submit(slow, server, 0)
        c = pool.submit(slow, server, 0)
        done, _ = cf.wait([b, c], return_when=cf.FIRST_COMPLETED, timeout=HTTP_TIMEOUT)
        assert done, "neither queued request was answered"
        first_response, refused_at = next(iter(done)).result()
        check_503(first_response)
        busy_response, busy_done_at = busy.result()
        results = [b.result()[0], c.result()[0]]
    assert busy_response.status_code == 200
    assert sorted(r.status_code for r in results) == [200, 503]
    assert refused_at < busy_done_at, "the 503 must not wait for the busy worker"
    # The pool recovers.
    assert server.get("/pid").status_code == 200


def test_queue_timeout_is_503_with_retry_after(serve, tmp_path):
    server = serve(APP, "--queue-size", "10", "--queue-timeout", "1s")
    with cf.ThreadPoolExecutor(2) as pool:
        busy = pool.submit(slow, server, 8, "busy", tmp_path)
        wait_started(tmp_path, "busy")
        queued = pool.submit(slow, server, 0)
        r, refused_at = queued.result()
        check_503(r)
        busy_response, busy_done_at = busy.result()
    assert busy_response.status_code == 200
    assert refused_at < busy_done_at, "--queue-timeout 1s must not wait for the 8 s request"
    assert server.get("/pid").status_code == 200


def test_queued_request_is_served_when_worker_frees_up(serve, tmp_path):
    server = serve(APP, "--queue-size", "4", "--queue-timeout", "30s")
    with cf.ThreadPoolExecutor(3) as pool:
        busy = pool.submit(slow, server, 1, "busy", tmp_path)
        wait_started(tmp_path, "busy")
        queued = [pool.submit(slow, server, 0) for _ in range(2)]
        assert all(f.result()[0].status_code == 200 for f in queued)
        assert busy.result()[0].status_code == 200


def test_workers_and_threads_run_in_parallel(serve):
    """8 concurrent 1 s requests on 2 workers x 4 threads take about 1 s, not 8 s. The bound is
    loose: this is about concurrency, not speed."""
    server = serve(APP, workers=2, threads=4)
    server.wait_for_workers(2)
    start = time.monotonic()
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: slow(server, 1)[0], range(8)))
    elapsed = time.monotonic() - start
    assert [r.status_code for r in results] == [200] * 8
    assert elapsed < 6, f"8 concurrent 1 s requests took {elapsed:.1f} s"
    assert len({r.json()["pid"] for r in results}) == 2, "both workers should take requests"


def test_threads_are_distinct(serve):
    server = serve(APP, threads=4)
    with cf.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: slow(server, 0.5)[0], range(4)))
    assert [r.status_code for r in results] == [200] * 4
    assert len({r.json()["pid"] for r in results}) == 1
    assert len({r.json()["thread"] for r in results}) == 4
