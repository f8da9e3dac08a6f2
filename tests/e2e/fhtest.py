"""Helpers for the end-to-end tests: start the real flaskhost binary, watch its output, talk raw
HTTP, measure memory. The fixtures that use these live in conftest.py.

Nothing here waits with a bare sleep: every wait is a poll against a deadline (``eventually``),
so a slow machine makes a test slower, never flaky, and a hang becomes a clear failure.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
EXAMPLE_APP = ROOT / "examples" / "app"
BIN = Path(os.environ.get("FLASKHOST_BIN", str(ROOT / "target" / "release" / "flaskhost")))


def _default_venv() -> Path:
    """The virtualenv pytest itself runs in (``.venv/bin/python -m pytest``), else .venv."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    return ROOT / ".venv"


VENV = Path(os.environ.get("FLASKHOST_TEST_VENV") or _default_venv())

STARTUP_DEADLINE = 30.0
STOP_DEADLINE = 30.0
# Generous: the tests are about behaviour, never about speed.
HTTP_TIMEOUT = 30.0

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LISTENING_RE = re.compile(r"listening on (http://\S+|unix:\S+)")
WORKER_STARTED_RE = re.compile(r"worker started")
PID_RE = re.compile(r"(?<![\w.])pid=(\d+)")
ID_RE = re.compile(r"(?<![\w.])id=(\d+)")
EX_USAGE = 64


@functools.cache
def build_python() -> tuple[int, int]:
    """The CPython minor version the binary embeds, from the second line of ``flaskhost
    --version`` (``CPython 3.13, libpython linked statically``)."""
    r = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=30,
                       env=clean_env(None, False))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.match(r"CPython (\d+)\.(\d+),", lines[1] if len(lines) > 1 else "")
    assert m, f"{BIN} --version does not name its CPython: {r.stdout!r}"
    return int(m[1]), int(m[2])


def venv_python(venv: Path = VENV) -> tuple[int, int]:
    """The CPython minor version of a virtualenv's interpreter."""
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    major, minor = out.split()
    return int(major), int(minor)


class ServerStartError(AssertionError):
    pass


def eventually(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Polls ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def clean_env(extra=None, venv=True):
    """The server's environment: ours minus every FLASKHOST_* and Python-path variable (so the
    tests are isolated from the caller's shell), plus VIRTUAL_ENV and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLASKHOST_")
           and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["NO_COLOR"] = "1"
    env["RUST_BACKTRACE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if venv:
        env["VIRTUAL_ENV"] = str(VENV)
    env.update(extra or {})
    return env


def no_core_dumps():
    """The segfault tests must not leave core files behind. Set once in the test process (and
    so inherited by every server), not with preexec_fn, which is unsafe with threads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


class Server:
    """One running ``flaskhost`` process and everything it printed (stdout and stderr merged,
    ANSI colours stripped, in arrival order)."""

    def __init__(self, args, env, cwd=None, expected_binds=1, wrapper=(), popen=None):
        """``wrapper``: a command that runs the binary (it must ``exec`` it, so the pid stays
        the server's); ``popen``: more subprocess.Popen arguments (``pass_fds``, ``user``)."""
        self.args = [*map(str, wrapper), str(BIN), *map(str, args)]
        self.expected_binds = expected_binds
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._readers_done = 0
        self.returncode = None
        self.stopped = False
        self.proc = subprocess.Popen(
            self.args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, **(popen or {}),
        )
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.urls: list[str] = []
        self.unix_paths: list[str] = []
        self.process_tree: set[int] = set()

    # ---- output -------------------------------------------------------------------------
    def _read(self, stream, name):
        for raw in iter(stream.readline, b""):
            line = ANSI_RE.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._readers_done += 1
            self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def output(self) -> str:
        return "\n".join(self.lines())

    def tail(self, n=80) -> str:
        return "\n".join(self.lines()[-n:])

    def find_lines(self, pattern, start=0):
        rx = re.compile(pattern)
        return [line for line in self.lines()[start:] if rx.search(line)]

    def wait_for_line(self, pattern, timeout=10.0, start=0, count=1):
        """Waits until ``count`` lines (from index ``start``) match ``pattern``; returns the
        ``count``-th match object. Fails with the server's output on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in (rx.search(l) for l in self._lines[start:]) if m]
                if len(matches) >= count:
                    return matches[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._readers_done == 2 and self.proc.poll() is not None):
                    break
                self._cond.wait(min(remaining, 0.2))
        raise AssertionError(
            f"no {count} line(s) matching {pattern!r} within {timeout}s "
            f"(exit code {self.proc.poll()}); output:\n{self.tail()}")

    def wait_for_output_end(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._readers_done < 2 and time.monotonic() < deadline:
                self._cond.wait(0.2)

    # ---- startup --------------------------------------------------------------------------
    def wait_ready(self, timeout=STARTUP_DEADLINE):
        """Polls for the ``listening on`` lines (one per bind); fails if the process exits."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m.group(1).rstrip(".,;)") for m in
                         (LISTENING_RE.search(l) for l in self._lines) if m]
                if len(found) >= self.expected_binds:
                    break
                if self.proc.poll() is not None and self._readers_done == 2:
                    raise ServerStartError(
                        f"flaskhost exited with {self.proc.returncode} before listening; "
                        f"args: {self.args}\noutput:\n{self.tail(200)}")
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"flaskhost did not print {self.expected_binds} 'listening on' line(s) "
                        f"within {timeout}s; args: {self.args}\noutput:\n{self.tail(200)}")
                self._cond.wait(0.1)
        self.urls = [u for u in found if u.startswith("http://")]
        self.unix_paths = [u[len("unix:"):] for u in found if u.startswith("unix:")]
        return self

    def wait_exit(self, timeout=STARTUP_DEADLINE):
        """For runs expected to fail: waits for the exit (or fails if it starts listening)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if any(LISTENING_RE.search(l) for l in self.lines()):
                self.kill()
                raise AssertionError(
                    f"flaskhost started listening but was expected to exit; output:\n"
                    f"{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"flaskhost did not exit within {timeout}s; output:\n"
                                     f"{self.tail()}")
            time.sleep(0.05)
        self.wait_for_output_end()
        self.returncode = self.proc.returncode
        self.stopped = True
        return self.returncode

    @property
    def url(self) -> str:
        assert self.urls, f"no http listener; output:\n{self.tail()}"
        return self.urls[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def host(self) -> str:
        hostport = self.url[len("http://"):].split("/")[0]
        return hostport.rsplit(":", 1)[0].strip("[]")

    def http_connection(self, timeout=HTTP_TIMEOUT) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def raw_socket(self, timeout=10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    # ---- workers --------------------------------------------------------------------------
    def workers(self):
        """Every ``worker started`` line so far, as dicts {pid, id} in order."""
        out = []
        for line in self.lines():
            if WORKER_STARTED_RE.search(line):
                pid = PID_RE.search(line)
                wid = ID_RE.search(line)
                out.append({"pid": int(pid.group(1)) if pid else None,
                            "id": int(wid.group(1)) if wid else None, "line": line})
        return out

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.workers()]

    def wait_for_workers(self, count, timeout=20.0):
        """Waits until ``count`` ``worker started`` lines in total have been printed."""
        self.wait_for_line(WORKER_STARTED_RE.pattern, timeout=timeout, count=count)
        return self.workers()

    # ---- shutdown -------------------------------------------------------------------------
    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL to the server, then to what is left of its process group (its workers)."""
        for target in ("pid", "group"):
            try:
                if target == "pid":
                    os.kill(self.pid, signal.SIGKILL)
                else:
                    os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=STOP_DEADLINE):
        """Sends ``sig`` and waits for the exit; SIGKILL after ``timeout``. Returns the exit
        code, or None if it had to be killed."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        if self.proc.poll() is None:
            # Every process of the server (fork server, workers), to check for orphans later.
            self.process_tree.update(descendants(self.pid)[1:])
        self.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.returncode = None
        self.wait_for_output_end()
        return self.returncode

    def leftover_workers(self, timeout=10.0):
        """Processes of the server (workers, fork server) that still run after it exited
        (orphans), after a grace poll."""
        pids = sorted({p for p in self.worker_pids() if p} | self.process_tree)

        def alive():
            return [p for p in pids if process_alive(p)]

        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return alive()

    # ---- convenience ----------------------------------------------------------------------
    def get(self, path="/", **kw):
        import requests
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.get(self.url + path, **kw)

    def post(self, path="/", **kw):
        import requests
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.post(self.url + path, **kw)


def process_alive(pid) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


# ---- memory -------------------------------------------------------------------------------
def descendants(pid) -> list[int]:
    """``pid`` and all its descendants (by scanning /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid) -> int:
    """Resident memory of the server and all its workers, in bytes."""
    return sum(rss_bytes(p) for p in descendants(pid))


class RssSampler:
    """Samples ``tree_rss(pid)`` in a background thread; ``.peak`` after ``stop()``."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.peak = tree_rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, tree_rss(self.pid))


# ---- payloads -----------------------------------------------------------------------------
BLOCK = 64 * 1024
_FILLER = bytes(range(256)) * (BLOCK // 256)
MiB = 1024 * 1024


def pattern_block(index, size=BLOCK) -> bytes:
    """Same bytes as tests/apps/_wsgitest.py:pattern_block."""
    return (index.to_bytes(8, "big") + _FILLER[8:size])[:size]


def pattern_blocks(total):
    """Yields ``total`` bytes of the pattern in 64 KiB blocks."""
    index = sent = 0
    while sent < total:
        block = pattern_block(index, min(BLOCK, total - sent))
        index += 1
        sent += len(block)
        yield block


def pattern_sha256(total) -> str:
    digest = hashlib.sha256()
    for block in pattern_blocks(total):
        digest.update(block)
    return digest.hexdigest()


# ---- raw HTTP -----------------------------------------------------------------------------
def read_until_closed(sock, timeout=10.0, limit=16 * MiB):
    """Reads until the peer closes (returns (data, True)) or ``timeout`` passes with the
    connection still open (returns (data, False)). A reset counts as closed."""
    sock.settimeout(0.5)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def send_raw(server, payload: bytes, timeout=10.0):
    """Sends ``payload`` on a new connection and reads until the server closes it.
    Returns (bytes received, closed_by_server)."""
    with server.raw_socket() as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_until_closed(sock, timeout)


STATUS_LINE_RE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


def status_codes(data: bytes) -> list[int]:
    """The status codes of every response head found in ``data`` (final responses only)."""
    return [int(m.group(1)) for m in STATUS_LINE_RE.finditer(data) if m.group(1) != b"100"]


def unique_token(prefix="tok") -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
