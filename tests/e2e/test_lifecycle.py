"""The process lifecycle: loading the app (preload vs --lazy-apps, factories, import errors),
binding one or more addresses, and shutting down: SIGTERM without dropping in-flight requests,
SIGINT/SIGQUIT at once; never leaving workers behind."""

import concurrent.futures as cf
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from fhtest import APPS, HTTP_TIMEOUT, LISTENING_RE, descendants, eventually, process_alive


# ---- loading the app ---------------------------------------------------------------------------
BAD_APPS = {
    "no-module": ("does_not_exist:application", "does_not_exist"),
    "import-error": ("import_error:application", "import-error-app-token"),
    "runtime-error-at-import": ("import_runtime_error:application", "import-runtime-error-token"),
    "no-attribute": ("no_attr:application", "application"),
    "no-factory": ("factory:no_such_factory()", "no_such_factory"),
}
# Every case preloaded; the two main ones also with --lazy-apps (where the import happens in the
# workers, so the server has to notice that none of them can start).
BAD_APP_CASES = ([pytest.param(name, [], id=f"preload-{name}") for name in BAD_APPS]
                 + [pytest.param(name, ["--lazy-apps"], id=f"lazy-{name}")
                    for name in ("import-error", "no-attribute")])


@pytest.mark.parametrize("case,mode", BAD_APP_CASES)
def test_bad_app_exits_with_traceback(serve, case, mode):
    app, token = BAD_APPS[case]
    server = serve(app, *mode, wait=False)
    rc = server.wait_exit(timeout=30)
    out = server.output()
    assert rc not in (0, None), f"exit code {rc}; output:\n{out}"
    assert "Traceback (most recent call last)" in out, out
    assert token in out, out
    assert not any(LISTENING_RE.search(line) for line in server.lines())


@pytest.mark.parametrize("spec,greeting,n", [
    ("factory:create_app()", "hello from factory", 1),
    ("factory:create_app('custom greeting', n=2)", "custom greeting", 2),
], ids=["no-args", "literal-args"])
def test_factory_app(serve, app_mode, spec, greeting, n):
    server = serve(spec, *app_mode)
    data = server.get("/").json()
    assert data == {"greeting": greeting, "n": n, "factory_calls": 1}


def test_preload_imports_once_before_fork(serve):
    server = serve("pyinfo:application", workers=2)
    worker_pids = set(server.worker_pids())
    infos = [server.get("/").json() for _ in range(4)]
    for info in infos:
        assert info["pid"] in worker_pids
        assert info["import_pid"] != info["pid"], "the app was imported in the worker itself"
    assert len({info["import_pid"] for info in infos}) == 1


def test_lazy_apps_import_in_each_worker(serve):
    server = serve("pyinfo:application", "--lazy-apps", workers=2)
    for _ in range(4):
        info = server.get("/").json()
        assert info["import_pid"] == info["pid"], "with --lazy-apps each worker imports the app"


def test_worker_started_lines(serve):
    server = serve("hello:application", workers=3)
    workers = server.wait_for_workers(3)
    assert all(w["pid"] for w in workers), [w["line"] for w in workers]
    assert all(w["id"] is not None for w in workers), [w["line"] for w in workers]
    assert len({w["pid"] for w in workers}) == 3
    assert len({w["id"] for w in workers}) == 3
    assert all(process_alive(w["pid"]) for w in workers)


def cmdline(pid) -> list[str]:
    """/proc/PID/cmdline as its arguments (a rewritten title is NUL-padded to its old length)."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
    return raw.decode().split("\0")


def test_process_titles(serve, app_mode):
    """ps shows each worker as `flaskhost worker N` (N as in the `worker started` line) and the
    fork server with the app it preloaded, not the long hidden `worker` command line."""
    server = serve("hello:application", *app_mode, workers=2)
    workers = server.wait_for_workers(2)
    for w in workers:
        assert cmdline(w["pid"]) == [f"flaskhost worker {w['id']}"], w
        assert Path(f"/proc/{w['pid']}/comm").read_text().strip() == f"flaskhost-w{w['id']}"
    others = set(descendants(server.pid)[1:]) - {w["pid"] for w in workers}
    if app_mode:
        assert others == set(), "lazy workers are the main process's only children"
    else:
        assert [cmdline(p) for p in others] == [["flaskhost fork-server hello:application"]]
    assert cmdline(server.pid)[1:3] == ["serve", "--app"], "the main process keeps its own"


# ---- binding -------------------------------------------------------------------------------------
def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_two_tcp_binds(serve):
    server = serve("hello:application", binds=["127.0.0.1:0", "127.0.0.1:0"])
    assert len(server.urls) == 2 and server.urls[0] != server.urls[1]
    for url in server.urls:
        assert requests.get(url + "/", timeout=HTTP_TIMEOUT).content == b"Hello, World!\n"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 on loopback")
def test_ipv4_and_ipv6_binds(serve):
    server = serve("environ_echo:application", binds=["127.0.0.1:0", "[::1]:0"])
    v6 = [u for u in server.urls if u.startswith("http://[::1]:")]
    v4 = [u for u in server.urls if u.startswith("http://127.0.0.1:")]
    assert len(v6) == 1 and len(v4) == 1, server.urls
    env6 = requests.get(v6[0] + "/", timeout=HTTP_TIMEOUT).json()
    env4 = requests.get(v4[0] + "/", timeout=HTTP_TIMEOUT).json()
    assert env6["REMOTE_ADDR"] == "::1"
    assert env4["REMOTE_ADDR"] == "127.0.0.1"
    assert env6["SERVER_PORT"] == v6[0].rsplit(":", 1)[1]


def test_bind_in_use_fails(run_flaskhost, serve):
    first = serve("hello:application")
    server = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS,
                           "--bind", f"127.0.0.1:{first.port}", "--workers", "1")
    assert server.returncode not in (0, None)
    assert str(first.port) in server.output()


# ---- shutdown ----------------------------------------------------------------------------------
def start_slow(pool, server, seconds, directory, tag="inflight"):
    future = pool.submit(requests.get, server.url + "/slow",
                         params={"s": seconds, "tag": tag, "dir": str(directory)},
                         timeout=HTTP_TIMEOUT)
    path = Path(directory) / f"{tag}.pid"
    eventually(lambda: path.exists() and path.read_text(), timeout=20,
               message="the slow request to reach the worker")
    return future


def test_sigterm_lets_inflight_request_finish(serve, tmp_path):
    server = serve("failures:application", "--graceful-timeout", "20s")
    with cf.ThreadPoolExecutor(1) as pool:
        inflight = start_slow(pool, server, 2, tmp_path)
        server.send_signal(signal.SIGTERM)
        r = inflight.result(timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.json()["slept"] == 2
    assert server.stop(timeout=20) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_fast_stop_does_not_wait_for_inflight_request(serve, tmp_path, app_mode, sig):
    """SIGINT and SIGQUIT stop at once (as in gunicorn, uWSGI and nginx): a request that would
    run for a minute, with a graceful timeout of a minute, neither holds up the exit nor leaves
    its worker running."""
    server = serve("failures:application", *app_mode, "--graceful-timeout", "60s")
    with cf.ThreadPoolExecutor(1) as pool:
        inflight = start_slow(pool, server, 60, tmp_path)
        server.process_tree.update(descendants(server.pid)[1:])
        server.send_signal(sig)
        try:
            server.proc.wait(20)
        except Exception:
            pytest.fail(f"still running 20 s after {sig.name} with a request in flight")
        server.wait_for_line(rf"{sig.name}: stopping now")
        try:
            r = inflight.result(timeout=HTTP_TIMEOUT)
            assert r.status_code >= 500, "the request cannot have finished"
        except requests.exceptions.RequestException:
            pass  # the connection was closed: the expected outcome
    assert server.stop() == 0
    assert server.leftover_workers(timeout=5) == []


def test_sigterm_stops_accepting_while_draining(serve, tmp_path):
    server = serve("failures:application", "--graceful-timeout", "20s")
    with cf.ThreadPoolExecutor(1) as pool:
        inflight = start_slow(pool, server, 4, tmp_path)
        server.send_signal(signal.SIGTERM)

        def refused():
            try:
                socket.create_connection((server.host, server.port), timeout=1).close()
                return False
            except OSError:
                return True

        eventually(refused, timeout=10, message="the listener to close after SIGTERM")
        assert not inflight.done(), "the listener should close while the request is in flight"
        assert inflight.result(timeout=HTTP_TIMEOUT).status_code == 200
    assert server.stop(timeout=20) == 0


def test_graceful_timeout_bounds_shutdown(serve, tmp_path):
    server = serve("failures:application", "--graceful-timeout", "1s")
    worker_pids = server.worker_pids()
    with cf.ThreadPoolExecutor(1) as pool:
        future = pool.submit(requests.get, server.url + "/hang",
                             params={"tag": "hang", "dir": str(tmp_path)}, timeout=HTTP_TIMEOUT)
        eventually(lambda: (tmp_path / "hang.pid").exists(), timeout=20,
                   message="the hanging request to reach the worker")
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(15)
        except Exception:
            pytest.fail("still running 15 s after SIGTERM with --graceful-timeout 1s")
        assert time.monotonic() - start < 15
        try:
            r = future.result(timeout=HTTP_TIMEOUT)
            assert r.status_code >= 500
        except requests.exceptions.RequestException:
            pass  # the connection was cut: also acceptable
    server.stop()
    assert not [p for p in worker_pids if process_alive(p)]


def test_sigterm_right_after_listening_exits_0(serve):
    """The signal handlers must be in place by the time the server says it is listening: a
    supervisor (systemd, Kubernetes) may stop it at any moment after that."""
    codes = []
    for _ in range(5):
        server = serve("hello:application", workers=2)
        codes.append(server.stop(timeout=20))
    assert codes == [0] * 5, f"exit codes of SIGTERM right after 'listening on': {codes}"


def test_idle_shutdown_is_prompt_and_clean(serve):
    server = serve("hello:application", workers=2)
    pids = server.worker_pids()
    start = time.monotonic()
    assert server.stop(timeout=20) == 0
    assert time.monotonic() - start < 10
    assert server.leftover_workers(timeout=5) == []
    assert len(pids) == 2


def test_workers_exit_when_server_is_killed(serve):
    """If the server itself dies (kill -9), its workers must not live on as orphans."""
    server = serve("hello:application", workers=2)
    pids = server.worker_pids()
    assert len(pids) == 2
    server.process_tree.update(descendants(server.pid)[1:])  # workers and the fork server
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    server.stopped = True
    server.returncode = -9
    leftovers = server.leftover_workers(timeout=15)
    assert leftovers == [], f"processes {leftovers} outlived the killed server"
