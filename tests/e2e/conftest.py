"""Fixtures for the end-to-end suite: every test runs the real ``flaskhost`` binary on port 0
against one of the tiny WSGI apps in tests/apps/.

- ``serve(app, *flags, workers=1, ...)`` starts a server and waits (by polling its output, with a
  30 s deadline) for its ``listening on`` line(s); it is stopped with SIGTERM at teardown, and
  the teardown fails if it does not exit 0 in time, leaves worker processes behind, or printed
  the WSGI validator's "Iterator garbage collected without being closed".
- ``run_flaskhost(*args)`` runs a command that is expected to exit (config errors, bad apps).
- When a test fails, the output of every server it started is attached to the report.

Run with: .venv/bin/python -m pytest tests/e2e
The binary is $FLASKHOST_BIN (default target/release/flaskhost); the app's virtualenv is
$FLASKHOST_TEST_VENV (default: the virtualenv running pytest, else .venv), passed to the server
as VIRTUAL_ENV. The two must use the same CPython minor version; the run stops at once if not.
"""

from __future__ import annotations

import shutil
import signal
import tempfile

import pytest

import fhtest
from fhtest import APPS, BIN, VENV, Server, clean_env

fhtest.no_core_dumps()

DEFAULT_TEST_TIMEOUT = 60


def pytest_sessionstart(session):
    # A binary built for another CPython refuses the venv: every test would fail, each for
    # the same reason. Say it once instead.
    if not BIN.is_file() or not (VENV / "bin" / "python").exists():
        return
    built, venv = fhtest.build_python(), fhtest.venv_python()
    if built != venv:
        pytest.exit(f"{BIN} embeds CPython {'.'.join(map(str, built))} but the test virtualenv "
                    f"{VENV} uses {'.'.join(map(str, venv))}: set FLASKHOST_TEST_VENV (or run "
                    f"pytest with that venv's python), or FLASKHOST_BIN", returncode=4)


def pytest_collection_modifyitems(config, items):
    # pytest.ini sets the same default; this keeps it when pytest is run with another rootdir.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for node in item.listchain():
        for i, server in enumerate(getattr(node, "_flaskhost_servers", [])):
            title = f"flaskhost output [{node.name} #{i}]: {' '.join(server.args[1:])}"
            report.sections.append((title, server.tail(300) or "<no output>"))


def _require_binary():
    if not BIN.is_file():
        pytest.fail(f"flaskhost binary not found at {BIN}: build it (scripts/setup) or set "
                    f"FLASKHOST_BIN", pytrace=False)


def build_args(app, args=(), *, workers=1, threads=None, chdir=APPS, binds=None, config=None):
    """The ``flaskhost serve`` command line. ``None`` leaves an option out (so the file, the
    environment or the default decides)."""
    cmd = ["serve"]
    if app is not None:
        cmd += ["--app", app]
    if chdir is not None:
        cmd += ["--chdir", str(chdir)]
    for bind in binds:
        cmd += ["--bind", str(bind)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += [str(a) for a in args]
    return cmd


class ServerFactory:
    def __init__(self, node):
        self.node = node
        self.servers: list[Server] = []
        node._flaskhost_servers = self.servers

    def __call__(self, app, *args, workers=1, threads=None, chdir=APPS, binds=None, env=None,
                 venv=True, config=None, wait=True, cwd=None, wrapper=(), popen=None):
        _require_binary()
        binds = ["127.0.0.1:0"] if binds is None else list(binds)
        cmd = build_args(app, args, workers=workers, threads=threads, chdir=chdir, binds=binds,
                         config=config)
        server = Server(cmd, clean_env(env, venv), cwd=cwd, expected_binds=len(binds),
                        wrapper=wrapper, popen=popen)
        self.servers.append(server)
        if wait:
            try:
                server.wait_ready()
            except AssertionError:
                # Reported by the test itself; the teardown must not add a second failure.
                if server.proc.poll() is None:
                    server.kill()
                server.stopped = True
                server.returncode = server.proc.poll()
                raise
        return server

    def finish(self):
        problems = []
        for server in self.servers:
            if server.stopped:
                continue
            rc = server.stop(signal.SIGTERM)
            if rc != 0:
                problems.append(f"{' '.join(server.args[1:])}: exit code {rc} after SIGTERM "
                                f"(expected 0{', had to SIGKILL' if rc is None else ''})")
        for server in self.servers:
            if server.returncode is None and server.proc.poll() is None:
                server.kill()
            leftovers = server.leftover_workers(timeout=5)
            if leftovers:
                problems.append(f"server processes (workers, fork server) still running after "
                                f"exit: {leftovers}")
                for pid in leftovers:  # ours: started by this test's server
                    try:
                        import os
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            if "Iterator garbage collected without being closed" in server.output():
                problems.append("the WSGI validator reports a body iterable that was never "
                                "closed (close() not called)")
        if problems:
            pytest.fail("server teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def serve(request):
    """Factory: ``serve(app, *flags, workers=1, threads=None, binds=None, env=None, ...)``."""
    factory = ServerFactory(request.node)
    yield factory
    factory.finish()


@pytest.fixture(scope="module")
def module_serve(request):
    """Like ``serve``, shared by the tests of one module (for read-only behaviour tests)."""
    factory = ServerFactory(request.node)
    yield factory
    factory.finish()


@pytest.fixture
def run_flaskhost(request):
    """Runs ``flaskhost *args`` expecting it to exit by itself (it must not start listening).
    Returns the Server (``.returncode``, ``.output()``)."""
    started = []
    request.node._flaskhost_servers = started

    def run(*args, env=None, venv=True, cwd=None, timeout=30.0, popen=None):
        _require_binary()
        server = Server([str(a) for a in args], clean_env(env, venv), cwd=cwd, popen=popen)
        started.append(server)
        server.wait_exit(timeout)
        return server

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.kill()


@pytest.fixture(params=["preload", "lazy"])
def app_mode(request):
    """The two app loading modes: default (import once, then fork) and --lazy-apps."""
    return ["--lazy-apps"] if request.param == "lazy" else []


@pytest.fixture
def short_tmp():
    """A short temporary directory under /tmp (Unix socket paths must stay under 108 bytes)."""
    path = tempfile.mkdtemp(prefix="fh-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
