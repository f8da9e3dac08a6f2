#!/usr/bin/env python3
"""bench/harness.py: flaskhost against its anchors, same app, same machine, same run.

Run it through `bench/run` (which runs `bench/setup` first). Standard library only.

For every server configuration in turn: start it pinned to the server core (all its processes
inherit the affinity), wait until it answers HTTP, check each route returns the right thing, then
for each route: warm-up, R measured runs of `wrk -t1` pinned to the other core, the server tree's
PSS right after the load, then stop the server (and everything it started). Prints one Markdown
table per route and a check of the targets; writes the raw figures to bench/.out/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APP_DIR = BENCH / "app"
STATIC_DIR = APP_DIR / "static"
ANCHORS = BENCH / ".anchors"
VENV = ANCHORS / "venv"
# The anchors venv's CPython linked against its static libpython (bench/setup), in a venv layout
# that uses the anchors venv's packages: the "static libpython" rows (flaskhost links libpython
# statically; the installed interpreter is a shared-libpython build).
VENV_STATIC = ANCHORS / "venv-static"
STATIC_PY_SKIPPED = ANCHORS / "python-static.skipped"  # bench/setup's reason when there is none
TLS_CERT = ANCHORS / "tls" / "cert.pem"
TLS_KEY = ANCHORS / "tls" / "key.pem"
ECHO_LUA = BENCH / "lua" / "echo-1k.lua"

# How flaskhost is told to serve static files and TLS. These options come from a later issue; the
# harness looks for the flag in `flaskhost serve --help` and shows "n/a (not supported yet)" when
# it is missing. Adjust here if the final spelling differs.
FLASKHOST_STATIC_FLAG = "--static"
FLASKHOST_TLS_FLAGS = ("--tls-cert", "--tls-key")


def flaskhost_static_args(ctx=None) -> list[str]:
    args = [FLASKHOST_STATIC_FLAG, f"/static={STATIC_DIR}"]
    # The nginx anchor runs with `open_file_cache`, whose lookups are trusted for 60 s
    # (`open_file_cache_valid`); flaskhost's equivalent is `static-cache-valid` (default 0:
    # check the disk on every request).
    if ctx is not None and ctx.flaskhost_supports("--static-cache-valid"):
        args += ["--static-cache-valid", "60s"]
    return args


def flaskhost_tls_args(ctx) -> list[str]:
    args = [FLASKHOST_TLS_FLAGS[0], str(TLS_CERT), FLASKHOST_TLS_FLAGS[1], str(TLS_KEY)]
    if ctx.flaskhost_supports("--tls"):  # `--tls on|off|self-signed`: say it explicitly
        args += ["--tls", "on"]
    return args


HELLO = b"Hello, World!"
ECHO_BODY = b"x" * 1024


# --------------------------------------------------------------------------------------------
# Routes


@dataclass(frozen=True)
class Route:
    id: str
    title: str
    path: str
    tls: bool = False
    method: str = "GET"
    conns: str = "default"  # "default" or "sleep" (the --sleep-conns count)
    new_conn: bool = False  # a new connection per request (Connection: close)
    static: bool = False  # served by the front (nginx / flaskhost), not by Flask
    ceiling: bool = False  # the in-process loop can run it


ROUTES = [
    Route("hello", "Flask hello text (GET /)", "/", ceiling=True),
    Route("json", "Flask JSON (GET /json)", "/json", ceiling=True),
    Route("echo", "Flask POST echo 1 KiB (POST /echo)", "/echo", method="POST", ceiling=True),
    Route("sleep", "Flask 10 ms sleep (GET /sleep), {sleep_conns} connections", "/sleep", conns="sleep"),
    Route("static-1k", "static 1 KiB (GET /static/1k.bin)", "/static/1k.bin", static=True),
    Route("static-100k", "static 100 KiB (GET /static/100k.bin)", "/static/100k.bin", static=True),
    Route("static-1m", "static 1 MiB (GET /static/1m.bin)", "/static/1m.bin", static=True),
    Route("tls-hello", "TLS: Flask hello text (GET /)", "/", tls=True),
    Route("tls-static-1k", "TLS: static 1 KiB (GET /static/1k.bin)", "/static/1k.bin", tls=True, static=True),
    Route("tls-newconn-hello", "TLS, new connection per request: Flask hello (GET /)", "/", tls=True, new_conn=True),
    Route("tls-newconn-static", "TLS, new connection per request: static 1 KiB", "/static/1k.bin", tls=True,
          new_conn=True, static=True),
]
ROUTE_BY_ID = {r.id: r for r in ROUTES}
# Not a route: the phase that measures each server's memory with no other server of the run up
# (`--routes memory` runs only it). Its rows are stored under this id.
MEMORY = "memory"

FLASK_ROUTES = ["hello", "json", "echo", "sleep"]


def expected_body(route: Route) -> bytes | None:
    if route.static:
        return (STATIC_DIR / route.path.rsplit("/", 1)[1]).read_bytes()
    if route.path == "/":
        return HELLO
    if route.path == "/echo":
        return ECHO_BODY
    return None


# --------------------------------------------------------------------------------------------
# Small helpers


def log(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(p: str | Path) -> str:
    try:
        return Path(p).read_text()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def proc_stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, pgid, utime+stime ticks, state-ok) from /proc/<pid>/stat, or None if gone."""
    s = read_text(f"/proc/{pid}/stat")
    if not s:
        return None
    rest = s[s.rfind(")") + 2:].split()
    # rest[0]=state, [1]=ppid, [2]=pgrp, ..., [11]=utime, [12]=stime
    if rest[0] == "Z":
        return None
    return int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12]), 1


def process_tree(roots: list[int]) -> list[int]:
    """Every live process that is in one of the roots' process groups or descends from a root."""
    info = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            info[pid] = st
    groups = set(roots)
    found = {p for p, st in info.items() if p in groups or st[1] in groups}
    changed = True
    while changed:
        changed = False
        for p, st in info.items():
            if p not in found and st[0] in found:
                found.add(p)
                changed = True
    return sorted(found)


def pss_kib(pids: list[int]) -> int | None:
    total, seen = 0, False
    for pid in pids:
        for line in read_text(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                seen = True
                break
    return total if seen else None


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        st = proc_stat(pid)
        if st:
            total += st[2]
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> int:
    """Busy ticks of all CPUs (everything but idle and iowait), from /proc/stat."""
    f = read_text("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in f[:8]]  # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


# --------------------------------------------------------------------------------------------
# Servers


class Unsupported(Exception):
    """This server cannot run this configuration (shown as an n/a row).

    permanent: the same will happen for every route (binary missing, option missing), so later
    routes do not try again; otherwise (it exited or did not answer) each route tries again.
    """

    def __init__(self, msg: str, permanent: bool = False):
        super().__init__(msg)
        self.permanent = permanent


@dataclass
class Running:
    procs: list[subprocess.Popen]
    http_port: int | None = None
    tls_port: int | None = None
    logs: list[Path] = field(default_factory=list)

    def roots(self) -> list[int]:
        return [p.pid for p in self.procs]

    def tree(self) -> list[int]:
        return process_tree(self.roots())


@dataclass
class Server:
    key: str
    label: str
    config: str  # e.g. "2 proc × 2 thr"
    routes: list[str]
    start: object  # callable(ctx) -> Running; raises Unsupported
    is_flaskhost: bool = False
    route_filter: object = None  # callable(route_id) -> None or n/a reason
    # The server closes the connection after every response (no keep-alive). uWSGI's http-socket
    # does so without a "Connection: close" header, which wrk counts as one read error per request.
    closes: bool = False


class Context:
    def __init__(self, args, out: Path):
        self.args = args
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cpu_server = args.server_cpu
        self.cpu_load = args.load_cpu
        self.pin = args.pin
        self.running: list[Running] = []
        self.pidfile = out / "run.pids"
        self.env = self.venv_env(VENV)
        self._flaskhost_help: str | None = None

    @staticmethod
    def venv_env(venv: Path) -> dict:
        env = dict(os.environ)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env.pop("PYTHONHOME", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    # -- process management ------------------------------------------------------------------
    def pinned(self, cmd: list[str], cpu: str) -> list[str]:
        if self.args.nice:
            cmd = ["nice", "-n", str(self.args.nice), *cmd]
        return ["taskset", "-c", cpu, *cmd] if self.pin else cmd

    def spawn(self, name: str, cmd: list[str], cwd: Path | None = None,
              env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        logf = self.logs / f"{name}.log"
        fh = open(logf, "ab")
        fh.write(f"\n$ {shlex.join(cmd)}\n".encode())
        fh.flush()
        p = subprocess.Popen(self.pinned(cmd, self.cpu_server), cwd=cwd, env=env or self.env, stdin=subprocess.DEVNULL,
                             stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        fh.close()
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p, logf

    def stop(self, run: Running) -> None:
        tree = run.tree()
        for p in run.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 8
        for p in run.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left (in the groups, or escaped from them): SIGKILL.
        for p in run.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in run.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if run in self.running:
            self.running.remove(run)
        self._write_pidfile()

    def stop_all(self) -> None:
        for run in list(self.running):
            self.stop(run)

    def _write_pidfile(self) -> None:
        pids = [p.pid for r in self.running for p in r.procs]
        self.pidfile.write_text("".join(f"{p}\n" for p in pids))

    # -- readiness ------------------------------------------------------------------------------
    def wait_ready(self, run: Running, path: str = "/", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for p in run.procs:
                if p.poll() is not None:
                    tail = " ".join(line for l in run.logs for line in read_text(l).splitlines()[-20:]
                                    if line.strip() and not line.startswith("$ "))
                    raise Unsupported(f"exited with status {p.returncode} while starting"
                                      + (f": {tail[-400:]}" if tail else " (nothing in its log)"))
            try:
                if run.http_port:
                    status, _ = http_get(run.http_port, path, tls=False, timeout=2)
                else:
                    status, _ = http_get(run.tls_port, path, tls=True, timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as e:
                last = str(e)
            except http.client.HTTPException as e:
                last = repr(e)
            time.sleep(0.1)
        raise Unsupported(f"did not answer HTTP within {timeout:.0f}s ({last})")

    # -- flaskhost ------------------------------------------------------------------------------
    def flaskhost_help(self) -> str:
        if self._flaskhost_help is None:
            text = ""
            for cmd in ([self.args.flaskhost, "serve", "--help"], [self.args.flaskhost, "--help"]):
                try:
                    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=self.env)
                    text += r.stdout + r.stderr
                except (OSError, subprocess.TimeoutExpired) as e:
                    text += f"error: {e}"
            self._flaskhost_help = text
        return self._flaskhost_help

    def flaskhost_supports(self, flag: str) -> bool:
        return re.search(re.escape(flag) + r"(?![\w-])", self.flaskhost_help()) is not None


def http_get(port: int, path: str, tls: bool, timeout: float = 5.0, method: str = "GET",
             body: bytes | None = None, close: bool = False) -> tuple[int, bytes]:
    if tls:
        ctx = ssl.create_default_context(cafile=str(TLS_CERT))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"} if close else {}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# -- start functions ---------------------------------------------------------------------------


def venv_bin(name: str) -> str:
    return str(VENV / "bin" / name)


def static_python() -> str:
    """The static-libpython interpreter (in its venv layout); raises Unsupported if there is none."""
    py = VENV_STATIC / "bin" / "python"
    if os.path.isfile(py) and os.access(py, os.X_OK):
        return str(py)
    why = read_text(STATIC_PY_SKIPPED).strip() or "not built"
    raise Unsupported(f"no static-libpython interpreter: {why} (bench/setup)", permanent=True)


def start_flaskhost(ctx: Context, tls: bool) -> Running:
    exe = ctx.args.flaskhost
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise Unsupported(f"binary not built ({os.path.relpath(exe, ROOT) if exe.startswith(str(ROOT)) else exe})",
                          permanent=True)
    if tls and not all(ctx.flaskhost_supports(f) for f in FLASKHOST_TLS_FLAGS):
        raise Unsupported("not supported yet: no " + "/".join(FLASKHOST_TLS_FLAGS) + " in --help", permanent=True)
    port = free_port()
    cmd = [exe, "serve", "--app", "app:app", "--chdir", str(APP_DIR), "--bind", f"127.0.0.1:{port}",
           "--workers", str(ctx.args.workers), "--threads", str(ctx.args.threads), "--venv", str(VENV)]
    # No per-request logging, like every anchor here (access_log off, --disable-logging, ...).
    if ctx.flaskhost_supports("--log-level"):
        cmd += ["--log-level", "warn"]
    if ctx.flaskhost_supports("--access-log"):
        cmd += ["--access-log", "off"]
    if ctx.flaskhost_supports(FLASKHOST_STATIC_FLAG):
        cmd += flaskhost_static_args(ctx)
    if tls:
        cmd += flaskhost_tls_args(ctx)
    p, logf = ctx.spawn("flaskhost-tls" if tls else "flaskhost", cmd, cwd=ROOT)
    run = Running([p], http_port=None if tls else port, tls_port=port if tls else None, logs=[logf])
    ctx.running.append(run)
    ctx.wait_ready(run)
    return run


def flaskhost_route_filter(ctx: Context):
    def f(route_id: str) -> str | None:
        if ROUTE_BY_ID[route_id].static and not ctx.flaskhost_supports(FLASKHOST_STATIC_FLAG):
            return f"not supported yet: no {FLASKHOST_STATIC_FLAG} in --help"
        return None
    return f


def start_uwsgi_http(ctx: Context) -> Running:
    port = free_port()
    cmd = [venv_bin("uwsgi"), "--master", "--processes", str(ctx.args.workers), "--threads", str(ctx.args.threads),
           "--http-socket", f"127.0.0.1:{port}", "--chdir", str(APP_DIR), "--module", "app:app",
           "--need-app", "--die-on-term", "--disable-logging", "--listen", "1024", "--buffer-size", "32768"]
    p, logf = ctx.spawn("uwsgi-http", cmd, cwd=APP_DIR)
    run = Running([p], http_port=port, logs=[logf])
    ctx.running.append(run)
    ctx.wait_ready(run)
    return run


def start_gunicorn(ctx: Context, worker_class: str) -> Running:
    port = free_port()
    cmd = [venv_bin("gunicorn"), "--workers", str(ctx.args.workers), "--worker-class", worker_class,
           "--bind", f"127.0.0.1:{port}", "--chdir", str(APP_DIR), "--log-level", "warning", "--backlog", "1024"]
    if worker_class == "gthread":
        cmd += ["--threads", str(ctx.args.threads)]
    cmd += ["app:app"]
    p, logf = ctx.spawn(f"gunicorn-{worker_class}", cmd, cwd=APP_DIR)
    run = Running([p], http_port=port, logs=[logf])
    ctx.running.append(run)
    ctx.wait_ready(run)
    return run


def start_granian(ctx: Context, tls: bool, static_py: bool = False) -> Running:
    # static_py: the same granian run by the static-libpython interpreter (`python -m granian`).
    exe = [static_python(), "-m", "granian"] if static_py else [venv_bin("granian")]
    port = free_port()
    cmd = [*exe, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(ctx.args.workers), "--blocking-threads", str(ctx.args.threads),
           "--runtime-threads", "1", "--no-ws", "--log-level", "warning", "--no-access-log",
           "--working-dir", str(APP_DIR)]
    if tls:
        cmd += ["--ssl-certificate", str(TLS_CERT), "--ssl-keyfile", str(TLS_KEY)]
    cmd += ["app:app"]
    name = "granian-tls" if tls else "granian-static" if static_py else "granian"
    p, logf = ctx.spawn(name, cmd, cwd=APP_DIR, env=ctx.venv_env(VENV_STATIC) if static_py else None)
    run = Running([p], http_port=None if tls else port, tls_port=port if tls else None, logs=[logf])
    ctx.running.append(run)
    ctx.wait_ready(run)
    if static_py:  # the point of the row: no process of it may use a shared libpython
        shared = [pid for pid in run.tree() if "/libpython" in read_text(f"/proc/{pid}/maps")]
        if shared:
            raise Unsupported(f"processes {shared} map a shared libpython", permanent=True)
    return run


def nginx_conf(prefix: Path, http_port: int, tls_port: int, uwsgi_sock: Path | None) -> str:
    app_loc = ""
    if uwsgi_sock is not None:
        params = "\n".join(
            f"            uwsgi_param {k} {v};" for k, v in [
                ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"),
                ("CONTENT_TYPE", "$content_type"), ("CONTENT_LENGTH", "$content_length"),
                ("REQUEST_URI", "$request_uri"), ("PATH_INFO", "$document_uri"),
                ("DOCUMENT_ROOT", "$document_root"), ("SERVER_PROTOCOL", "$server_protocol"),
                ("REQUEST_SCHEME", "$scheme"), ("HTTPS", "$https if_not_empty"),
                ("REMOTE_ADDR", "$remote_addr"), ("REMOTE_PORT", "$remote_port"),
                ("SERVER_PORT", "$server_port"), ("SERVER_NAME", "$server_name")])
        app_loc = f"""
        location / {{
{params}
            uwsgi_pass unix:{uwsgi_sock};
        }}"""
    locations = f"""
        location /static/ {{
            alias {STATIC_DIR}/;
        }}{app_loc}"""
    return f"""# generated by bench/harness.py
daemon off;
master_process on;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=1000 inactive=60s;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {TLS_CERT};
    ssl_certificate_key {TLS_KEY};
    server {{
        listen 127.0.0.1:{http_port};
        server_name localhost;{locations}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;{locations}
    }}
}}
"""


def start_nginx(ctx: Context, with_uwsgi: bool) -> Running:
    name = "nginx-uwsgi" if with_uwsgi else "nginx-static"
    prefix = ctx.out / name
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True)
    procs, logs = [], []
    sock = None
    run = Running(procs, logs=logs)
    ctx.running.append(run)
    if with_uwsgi:
        sock = prefix / "uwsgi.sock"
        cmd = [venv_bin("uwsgi"), "--master", "--processes", str(ctx.args.workers), "--threads",
               str(ctx.args.threads), "--socket", str(sock), "--chmod-socket=660", "--chdir", str(APP_DIR),
               "--module", "app:app", "--need-app", "--die-on-term", "--disable-logging", "--listen", "1024",
               "--buffer-size", "32768"]
        p, logf = ctx.spawn(f"{name}.uwsgi", cmd, cwd=APP_DIR)
        procs.append(p)
        logs.append(logf)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise Unsupported("uWSGI did not create its socket: " + read_text(logf)[-600:])
            time.sleep(0.05)
    http_port, tls_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, http_port, tls_port, sock))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p, logf = ctx.spawn(f"{name}.nginx", [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
    procs.append(p)
    logs.append(logf)
    logs.append(prefix / "error.log")
    run.http_port, run.tls_port = http_port, tls_port
    ctx.wait_ready(run, path="/" if with_uwsgi else "/static/1k.bin")
    return run


def build_servers(ctx: Context) -> list[Server]:
    w, t = ctx.args.workers, ctx.args.threads
    pt = f"{w} proc × {t} thr"
    http_flask = ["hello", "json", "echo", "sleep"]
    static = ["static-1k", "static-100k", "static-1m"]
    return [
        Server("flaskhost", "flaskhost", pt, http_flask + static, lambda c: start_flaskhost(c, False),
               is_flaskhost=True, route_filter=flaskhost_route_filter(ctx)),
        Server("flaskhost-tls", "flaskhost", pt, ["tls-hello", "tls-static-1k", "tls-newconn-hello", "tls-newconn-static"],
               lambda c: start_flaskhost(c, True), is_flaskhost=True, route_filter=flaskhost_route_filter(ctx)),
        Server("nginx-uwsgi", "nginx → uWSGI (unix socket)", f"nginx 1 + uWSGI master, {pt}",
               http_flask + ["tls-hello", "tls-newconn-hello"], lambda c: start_nginx(c, True)),
        Server("uwsgi-http", "uWSGI http-socket", f"master, {pt}, no keep-alive", http_flask, start_uwsgi_http,
               closes=True),
        Server("gunicorn-sync", "gunicorn sync", f"{w} proc, no keep-alive", http_flask,
               lambda c: start_gunicorn(c, "sync"), closes=True),
        Server("gunicorn-gthread", "gunicorn gthread", pt, http_flask, lambda c: start_gunicorn(c, "gthread")),
        Server("granian", "granian (WSGI)", pt, http_flask, lambda c: start_granian(c, False)),
        Server("granian-static", "granian (WSGI, static libpython)", pt, http_flask,
               lambda c: start_granian(c, False, static_py=True)),
        Server("granian-tls", "granian (WSGI)", pt, ["tls-hello", "tls-newconn-hello"], lambda c: start_granian(c, True)),
        Server("nginx-static", "nginx (static files)", "1 worker", static + ["tls-static-1k", "tls-newconn-static"],
               lambda c: start_nginx(c, False)),
    ]


def memory_phase(ctx: Context, servers: list[Server], want_servers, failed: dict, add, report) -> None:
    """Each Flask server alone: start it, put the hello load on it, read its tree's PSS, stop it.

    PSS divides a page among every process that maps it. During the route phases the servers of
    a route are up together, so a server's PSS there depends on which files it shares with the
    others (a shared libpython, the same extension modules). Here nothing else of the run is up,
    so each figure is that server's own memory (apart from what it shares with the rest of the
    machine, the harness included, which only lowers the anchors' figures: the harness runs on
    the anchors' venv, flaskhost maps no file of it).
    """
    route = ROUTE_BY_ID["hello"]
    ctx.stop_all()
    todo = [s for s in servers if route.id in s.routes and (want_servers is None or s.key in want_servers)]
    if not todo:
        return
    log(f"memory: {len(todo)} servers, each alone, after {ctx.args.warmup:g} s + {ctx.args.duration:g} s of hello load")
    for server in todo:
        reason = failed.get(server.key) or (server.route_filter(route.id) if server.route_filter else None)
        res: dict = {"na": reason} if reason else {}
        if not reason:
            try:
                run = server.start(ctx)
            except Unsupported as e:
                res = {"na": str(e)}
            else:
                try:
                    bad = verify(run, route)
                    if bad:
                        res = {"na": f"check failed: {bad}"}
                    else:
                        if ctx.args.warmup > 0:
                            wrk(ctx, route_url(run, route), route, ctx.args.warmup, route_conns(ctx, route))
                        load = one_run(ctx, run, route, ctx.args.duration)
                        tree = run.tree()
                        res = summarize([load], pss_kib(tree), len(tree), route_conns(ctx, route), route_url(run, route))
                finally:
                    ctx.stop_all()
        add(MEMORY, server.key, server.label, server.config, server.is_flaskhost, res)
        report(server.key, MEMORY, res)


# --------------------------------------------------------------------------------------------
# Load generation

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_ms(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s.strip())
    if not m:
        raise ValueError(f"bad wrk time {s!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": None, "errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[key] = parse_ms(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


def wrk(ctx: Context, url: str, route: Route, seconds: float, conns: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s"]
    if route.method == "POST":
        cmd += ["-s", str(ECHO_LUA)]
    if route.new_conn:
        cmd += ["-H", "Connection: close"]
    cmd.append(url)
    cmd = ctx.pinned(cmd, ctx.cpu_load)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"error": "wrk timed out", "rps": None}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = parse_wrk(r.stdout)
    res["wrk_cpu"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / max(seconds, 1e-9)
    if r.returncode != 0 or res["rps"] is None:
        res["error"] = f"wrk exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
    return res


def verify(run: Running, route: Route) -> str | None:
    """None if the route answers correctly, else what is wrong."""
    port = run.tls_port if route.tls else run.http_port
    try:
        body = ECHO_BODY if route.method == "POST" else None
        status, got = http_get(port, route.path, route.tls, timeout=10, method=route.method, body=body,
                               close=route.new_conn)
    except (OSError, http.client.HTTPException) as e:
        return f"request failed: {e!r}"
    if status != 200:
        return f"status {status}"
    want = expected_body(route)
    if want is not None and got != want:
        return f"wrong body ({len(got)} bytes, expected {len(want)})"
    if route.path == "/json":
        try:
            if json.loads(got).get("message") != "Hello, World!":
                return "wrong JSON"
        except ValueError:
            return "not JSON"
    return None


def wait_idle(ctx: Context) -> float | None:
    """Wait (at most --wait-idle seconds) until the machine is nearly idle; returns the last load."""
    limit = ctx.args.wait_idle
    if limit <= 0:
        return None
    deadline = time.monotonic() + limit
    while True:
        m0, t0 = machine_busy_ticks(), time.monotonic()
        time.sleep(1.0)
        load = (machine_busy_ticks() - m0) / CLK_TCK / (time.monotonic() - t0)
        if load < 0.25 or time.monotonic() >= deadline:
            if load >= 0.25:
                log(f"machine still busy ({load * 100:.0f}% of a CPU) after waiting {limit:g} s: measuring anyway")
            return load


def route_url(run: Running, route: Route) -> str:
    if route.tls:
        # wrk sends the URL's host as SNI. An IP address there is not allowed (RFC 6066) and real
        # clients send a name, so: `localhost`, which wrk resolves to 127.0.0.1 (it skips an
        # address that refuses the connection, such as ::1 here, as every server binds 127.0.0.1).
        return f"https://localhost:{run.tls_port}{route.path}"
    return f"http://127.0.0.1:{run.http_port}{route.path}"


def route_conns(ctx: Context, route: Route) -> int:
    return ctx.args.sleep_conns if route.conns == "sleep" else ctx.args.conns


def one_run(ctx: Context, run: Running, route: Route, seconds: float) -> dict:
    """One wrk run against a running server, with the CPU used meanwhile by it and by the rest."""
    tree = run.tree()
    t0, c0, m0 = time.monotonic(), cpu_ticks(tree), machine_busy_ticks()
    res = wrk(ctx, route_url(run, route), route, seconds, route_conns(ctx, route))
    t1, c1, m1 = time.monotonic(), cpu_ticks(run.tree()), machine_busy_ticks()
    el = max(t1 - t0, 1e-9)
    res["server_cpu"] = (c1 - c0) / CLK_TCK / el
    if res.get("requests") and c1 > c0:
        res["req_per_cpu_s"] = res["requests"] / ((c1 - c0) / CLK_TCK)
    # CPU used by anything else on the machine meanwhile (other jobs, steal, idle neighbours): noise.
    res["other_cpu"] = max(0.0, (m1 - m0) / CLK_TCK / el - res["server_cpu"] - res.get("wrk_cpu", 0.0))
    return res


def summarize(runs: list[dict], pss: int | None, nprocs: int | None, conns: int | None, url: str | None) -> dict:
    ok = [r for r in runs if r.get("rps")]
    if not ok:
        return {"na": "no result: " + "; ".join(r.get("error", "?") for r in runs), "runs": runs}

    def med(k):
        vals = [r[k] for r in ok if r.get(k) is not None]
        return statistics.median(vals) if vals else None

    rps = [r["rps"] for r in ok]
    return {
        "rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
        "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"), "pss_kib": pss, "nprocs": nprocs,
        "server_cpu": med("server_cpu"), "wrk_cpu": med("wrk_cpu"), "other_cpu": med("other_cpu"),
        "req_per_cpu_s": med("req_per_cpu_s"),
        "errors": sum(r.get("errors", 0) for r in ok), "non2xx": sum(r.get("non2xx", 0) for r in ok),
        "conns": conns, "url": url, "runs": runs,
    }


# The in-process loop's rows: key -> label. "ceiling-static" is the same loop run by the
# static-libpython interpreter.
CEILINGS = {"ceiling": "in-process ceiling", "ceiling-static": "in-process ceiling (static libpython)"}


def ceiling_python(key: str) -> tuple[str, dict | None]:
    """(interpreter, environment or None for the default) for a CEILINGS key; may raise Unsupported."""
    if key == "ceiling-static":
        return static_python(), Context.venv_env(VENV_STATIC)
    return venv_bin("python"), None


def ceiling_run(ctx: Context, route: Route, seconds: float, warmup: float, key: str = "ceiling") -> dict:
    """One run of the in-process loop (bench/ceiling.py) on the server core."""
    try:
        py, env = ceiling_python(key)
    except Unsupported as e:
        return {"error": str(e)}
    cmd = ctx.pinned([py, str(BENCH / "ceiling.py"), "--app-dir", str(APP_DIR), "--route", route.id,
                      "--seconds", str(seconds), "--warmup", str(warmup)], ctx.cpu_server)
    m0, t0 = machine_busy_ticks(), time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60, env=env or ctx.env)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    try:
        d = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        d = {"error": (r.stderr or r.stdout)[-300:]}
    if "rps" in d:
        cpu_s = d.get("cpu_s") or d["seconds"]
        d["p50_ms"], d["p99_ms"] = d["p50_us"] / 1e3, d["p99_us"] / 1e3
        d["server_cpu"] = cpu_s / d["seconds"]
        d["req_per_cpu_s"] = d["calls"] / cpu_s
        busy = (machine_busy_ticks() - m0) / CLK_TCK / (time.monotonic() - t0)
        d["other_cpu"] = max(0.0, busy - d["server_cpu"])  # approximate: the warm-up and start-up are in `busy`
    return d


# --------------------------------------------------------------------------------------------
# Report


def one_line(s: str, limit: int = 160) -> str:
    s = " ".join(str(s).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def fmt_rps(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_ratio(a, b):
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


def route_title(route: Route, args) -> str:
    return route.title.format(sleep_conns=args.sleep_conns)


def render(results: dict, args, meta: dict) -> str:
    lines = []
    conns_note = f"{args.conns} connections" if args.conns else ""
    for route in ROUTES:
        rows = results.get(route.id)
        if not rows:
            continue
        fh = next((r for r in rows if r["flaskhost"]), None)
        fh_rps = fh and fh["res"].get("rps")
        fh_pss = fh and fh["res"].get("pss_kib")
        conns = args.sleep_conns if route.conns == "sleep" else args.conns
        lines.append(f"### {route_title(route, args)}")
        lines.append("")
        close_hdr = ' -H "Connection: close"' if route.new_conn else ""
        lines.append(f"wrk -t1 -c{conns}{close_hdr}, {args.runs} × {args.duration:g} s after {args.warmup:g} s warm-up"
                     + ("; in-process ceiling: same durations, no server, no wrk" if route.ceiling else ""))
        lines.append("")
        lines.append("| server | workers | req/s (median) | spread (min–max) | p50 | p99 | PSS MiB (in run) | "
                     "server CPU | req per server CPU-s | wrk CPU | flaskhost ÷ row, req/s | flaskhost ÷ row, PSS |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            res = row["res"]
            if "na" in res:
                lines.append(f"| {row['label']} | {row['config']} | n/a ({one_line(res['na'])}) | | | | | | | | | |")
                continue
            spread = "—" if args.runs < 2 else f"{res['rps_min']:,.0f}–{res['rps_max']:,.0f}"
            pss = "—" if res.get("pss_kib") is None else f"{res['pss_kib'] / 1024:.1f}"
            note = ""
            errors = res.get("errors", 0)
            if row.get("closes"):  # read errors = the server closing each connection: expected
                errors -= sum(r.get("socket_errors", {}).get("read", 0) for r in res.get("runs", []))
            if errors or res.get("non2xx"):
                note = f" ⚠ {errors} socket errors, {res.get('non2xx', 0)} non-2xx"
            if (res.get("wrk_cpu") or 0) >= 0.95:
                note += " (wrk-bound)"
            if (res.get("other_cpu") or 0) >= 0.15:
                note += f" (⚠ other load {res['other_cpu'] * 100:.0f}%)"
            scpu = "—" if res.get("server_cpu") is None else f"{res['server_cpu'] * 100:.0f}%"
            wcpu = "—" if res.get("wrk_cpu") is None else f"{res['wrk_cpu'] * 100:.0f}%"
            rpc = "—" if res.get("req_per_cpu_s") is None else f"{res['req_per_cpu_s']:,.0f}"
            label = f"**{row['label']}**" if row["flaskhost"] else row["label"]
            r_rps = "1.00×" if row["flaskhost"] else fmt_ratio(fh_rps, res["rps"])
            r_pss = "1.00×" if row["flaskhost"] else "—" if row["key"] in CEILINGS else fmt_ratio(fh_pss, res.get("pss_kib"))
            lines.append(f"| {label} | {row['config']} | {fmt_rps(res['rps'])}{note} | {spread} | "
                         f"{fmt_ms(res.get('p50_ms'))} | {fmt_ms(res.get('p99_ms'))} | {pss} | {scpu} | {rpc} | {wcpu} | "
                         f"{r_rps} | {r_pss} |")
        lines.append("")
    lines += render_memory(results, args)
    lines.append(render_targets(results))
    return "\n".join(lines)


def render_memory(results: dict, args) -> list[str]:
    rows = results.get(MEMORY)
    if not rows:
        return []
    fh = next((r for r in rows if r["flaskhost"]), None)
    fh_pss = fh and fh["res"].get("pss_kib")
    lines = ["### Memory: each server alone", "",
             f"Each server started with no other server of the run up, {args.warmup:g} s + {args.duration:g} s of the "
             f"hello load (wrk -t1 -c{args.conns}), then the PSS of all its processes. (The PSS columns above are "
             "read while the route's other servers are up, so they move with what those share.)", "",
             "| server | workers | processes | PSS MiB | flaskhost ÷ row, PSS | hello req/s meanwhile |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        res = row["res"]
        if "na" in res:
            lines.append(f"| {row['label']} | {row['config']} | n/a ({one_line(res['na'])}) | | | |")
            continue
        pss = "—" if res.get("pss_kib") is None else f"{res['pss_kib'] / 1024:.1f}"
        label = f"**{row['label']}**" if row["flaskhost"] else row["label"]
        ratio = "1.00×" if row["flaskhost"] else fmt_ratio(fh_pss, res.get("pss_kib"))
        lines.append(f"| {label} | {row['config']} | {res.get('nprocs') or '—'} | {pss} | {ratio} | {fmt_rps(res['rps'])} |")
    lines.append("")
    return lines


def get(results, route_id, key):
    for row in results.get(route_id, []):
        if row["key"] == key:
            return row["res"]
    return {}


def render_targets(results: dict) -> str:
    out = ["### Targets", "",
           "Verdicts use the median req/s (or PSS). The third column is the same ratio in requests per "
           "CPU-second of the server, which other load on the machine disturbs less.", "",
           "| target | flaskhost ÷ anchor | same, per server CPU-s | verdict |", "|---|---|---|---|"]

    def check(name, route_id, other_key, op, factor, metric="rps", fh_key="flaskhost"):
        fh = get(results, route_id, fh_key)
        ot = get(results, route_id, other_key)
        a, b = fh.get(metric), ot.get(metric)
        if "na" in fh or a is None:
            out.append(f"| {name} | flaskhost: {one_line(fh.get('na', 'not measured'))} | | n/a |")
            return
        if "na" in ot or b is None:
            out.append(f"| {name} | anchor: {one_line(ot.get('na', 'not measured'))} | | n/a |")
            return
        ratio = a / b
        ok = ratio >= factor if op == ">=" else ratio <= factor
        shown = f"{ratio:.2f}" if round(ratio, 2) != factor else f"{ratio:.3f}"
        alt = "—"
        # Not for /sleep: there the servers mostly wait, and requests per CPU-second is no target.
        if metric == "rps" and route_id != "sleep" and fh.get("req_per_cpu_s") and ot.get("req_per_cpu_s"):
            alt = f"{fh['req_per_cpu_s'] / ot['req_per_cpu_s']:.2f}×"
        flags = [w for w, r in (("wrk-bound", fh), ("wrk-bound", ot)) if (r.get("wrk_cpu") or 0) >= 0.95]
        flags += ["other load" for r in (fh, ot) if (r.get("other_cpu") or 0) >= 0.15]
        flag = f" ({', '.join(sorted(set(flags)))})" if flags else ""
        out.append(f"| {name} | {shown}×{flag} | {alt} | {'met' if ok else '**not met**'} |")

    for rid in ("hello", "json", "echo"):
        check(f"{rid}: req/s ≥ 1.2× granian", rid, "granian", ">=", 1.2)
        check(f"{rid}: req/s ≥ 1.2× granian (static libpython)", rid, "granian-static", ">=", 1.2)
        check(f"{rid}: req/s ≥ 2× nginx+uWSGI", rid, "nginx-uwsgi", ">=", 2.0)
        check(f"{rid}: req/s ≥ 0.75× in-process ceiling", rid, "ceiling", ">=", 0.75)
        check(f"{rid}: req/s ≥ 0.75× in-process ceiling (static libpython)", rid, "ceiling-static", ">=", 0.75)
    check("static 1 KiB: req/s ≥ nginx", "static-1k", "nginx-static", ">=", 1.0)
    check("static 100 KiB: req/s ≥ nginx", "static-100k", "nginx-static", ">=", 1.0)
    check("TLS new connections/s ≥ nginx (static 1 KiB)", "tls-newconn-static", "nginx-static", ">=", 1.0,
          fh_key="flaskhost-tls")
    check("TLS new connections/s ≥ nginx+uWSGI (Flask hello)", "tls-newconn-hello", "nginx-uwsgi", ">=", 1.0,
          fh_key="flaskhost-tls")
    if results.get(MEMORY):
        check("server PSS ≤ 0.7× nginx+uWSGI (each alone, after hello load)", MEMORY, "nginx-uwsgi", "<=", 0.7,
              metric="pss_kib")
    check("server PSS ≤ 0.7× nginx+uWSGI (in the hello run, other servers up)", "hello", "nginx-uwsgi", "<=", 0.7,
          metric="pss_kib")
    check("sleep route: req/s ≥ granian (threads)", "sleep", "granian", ">=", 1.0)
    out.append("")
    return "\n".join(out)


def full_report(results: dict, args, meta: dict) -> str:
    header = [
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; elapsed {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s  ",
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}; pinning: {meta['pinning']}; "
        f"load average at start {' '.join(meta['loadavg_at_start'])}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    return "\n".join(header) + "\n" + render(results, args, meta)


def rerender(path: str) -> int:
    """Print the tables of an earlier run again from its results-*.json."""
    d = json.loads(Path(path).read_text())
    args = argparse.Namespace(**d["settings"])
    print(full_report(d["results"], args, d["meta"]))
    return 0


def machine_meta(args) -> dict:
    cpu = ""
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else ""
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "not found"

    py = venv_bin("python")
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "loadavg_at_start": read_text("/proc/loadavg").split()[:3],
        "pinning": (f"server on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}" if args.pin else "none")
                   + (f", nice {args.nice}" if args.nice else ""),
        "versions": {
            "flaskhost": ver([args.flaskhost, "--version"]) if os.path.exists(args.flaskhost) else "not built",
            "nginx": ver(["nginx", "-v"]),
            "wrk": ver(["wrk", "-v"]),
            "python": ver([py, "--version"]),
            "python (static libpython)": ver([str(VENV_STATIC / "bin" / "python"), "--version"])
                                         if (VENV_STATIC / "bin" / "python").exists() else "not built",
            "flask": ver([py, "-c", "import importlib.metadata as m; print(m.version('flask'))"]),
            "uwsgi": ver([venv_bin("uwsgi"), "--version"]),
            "gunicorn": ver([venv_bin("gunicorn"), "--version"]),
            "granian": ver([venv_bin("granian"), "--version"]),
        },
    }


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description="flaskhost vs anchors (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="1 run × 3 s after 1 s warm-up (about 3 minutes)")
    ap.add_argument("--runs", type=int, default=None, help="measured runs per row (default 3)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (default 5)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 2)")
    ap.add_argument("--conns", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--sleep-conns", type=int, default=64, help="wrk connections for /sleep (default 64)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--servers", default="", help="comma-separated server keys, see --list (default: all)")
    ap.add_argument("--routes", default="", help="comma-separated route ids (default: all)")
    ap.add_argument("--flaskhost", default=os.environ.get("FLASKHOST_BIN", str(ROOT / "target/release/flaskhost")))
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT", str(BENCH / ".out")))
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and wrk to cores")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each route, wait up to SECONDS for other load on the machine to stop (default 0)")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run servers, wrk and the in-process loop under `nice -n N` (e.g. -10 as root on a "
                         "machine shared with other jobs, so they preempt them; default 0)")
    ap.add_argument("--render", metavar="RESULTS_JSON", help="print the tables of an earlier run again, then exit")
    ap.add_argument("--list", action="store_true", help="list server keys and route ids, then exit")
    args = ap.parse_args()
    if args.render:
        return rerender(args.render)
    if args.quick:
        args.runs = args.runs or 1
        args.duration = args.duration or 3
        args.warmup = 1 if args.warmup is None else args.warmup
    args.runs = args.runs or 3
    args.duration = args.duration or 5
    args.warmup = 2 if args.warmup is None else args.warmup
    if args.pin and (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: not pinning (server and wrk share the CPU; figures are not per core)")
        args.pin = False

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, out)
    servers = build_servers(ctx)
    if args.list:
        print("servers:", ", ".join([*CEILINGS] + [s.key for s in servers]))
        print("routes: ", ", ".join(r.id for r in ROUTES))
        return 0
    want_servers = set(filter(None, args.servers.split(","))) or None
    want_routes = set(filter(None, args.routes.split(","))) or None
    for name in (want_routes or set()) - set(ROUTE_BY_ID) - {MEMORY}:
        ap.error(f"unknown route {name}")

    def route_wanted(rid):
        return want_routes is None or rid in want_routes

    # Rough duration estimate.
    n_rows = sum(1 for s in servers if want_servers is None or s.key in want_servers
                 for rid in s.routes if route_wanted(rid))
    want_ceilings = [k for k in CEILINGS if want_servers is None or k in want_servers]
    n_rows += len(want_ceilings) * sum(1 for r in ROUTES if r.ceiling and route_wanted(r.id))
    est = n_rows * (args.warmup + args.runs * args.duration + 2.5)
    log(f"{n_rows} rows × ({args.warmup:g} s warm-up + {args.runs} × {args.duration:g} s): at most ~{est / 60:.0f} min")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    meta = machine_meta(args)
    meta["command"] = " ".join(["bench/run", *sys.argv[1:]])
    results: dict[str, list] = {}
    order = {k: i for i, k in enumerate([s.key for s in servers] + list(CEILINGS))}
    t_start = time.monotonic()

    closes = {s.key for s in servers if s.closes}

    def add(route_id, server_key, label, config, is_fh, res):
        results.setdefault(route_id, []).append(
            {"key": server_key, "label": label, "config": config, "flaskhost": is_fh, "res": res,
             "closes": server_key in closes})

    def report(key, rid, res):
        if "na" in res:
            log(f"{key} {rid}: n/a ({one_line(res['na'], 300)})")
        else:
            pss = "—" if res.get("pss_kib") is None else f"{res['pss_kib'] / 1024:.1f} MiB"
            log(f"{key} {rid}: {res['rps']:,.0f} req/s, p99 {fmt_ms(res['p99_ms'])}, PSS {pss}, "
                f"server CPU {res['server_cpu'] * 100:.0f}%, other CPU {(res.get('other_cpu') or 0) * 100:.0f}%")

    failed: dict[str, str] = {}  # server or ceiling key -> why it could not start (not retried for later routes)
    try:
        # Route by route. For each route every server is started (fresh, on a fresh port: client-
        # closed connections leave TIME_WAIT entries per destination port that would slow the next
        # route's connects), checked and warmed up; then the measured runs are interleaved, round
        # by round (server A, B, C, ..., A, B, C, ...) so that a burst of other activity on the
        # machine hits every server alike; all are stopped before the next route.
        for route in ROUTES:
            if not route_wanted(route.id):
                continue
            live: list[tuple[Server, Running]] = []
            for server in servers:
                if (want_servers is not None and server.key not in want_servers) or route.id not in server.routes:
                    continue
                reason = failed.get(server.key) or (server.route_filter(route.id) if server.route_filter else None)
                for attempt in (1, 2):
                    if reason:
                        break
                    try:
                        run = server.start(ctx)
                        bad = verify(run, route)
                        if bad:
                            reason = f"check failed: {bad}"
                            ctx.stop(run)
                        else:
                            live.append((server, run))
                        break
                    except Unsupported as e:
                        keep = [r for _, r in live]
                        for r in list(ctx.running):  # what this failed start left behind
                            if r not in keep:
                                ctx.stop(r)
                        if e.permanent:
                            reason = failed[server.key] = str(e)
                        elif attempt == 2:
                            reason = str(e)
                        else:
                            log(f"{server.key} {route.id}: {one_line(str(e), 300)}; trying once more")
                            time.sleep(1)
                if reason:
                    add(route.id, server.key, server.label, server.config, server.is_flaskhost, {"na": reason})
                    report(server.key, route.id, {"na": reason})
            ceilings = []  # the in-process loops to run on this route
            for key in (want_ceilings if route.ceiling else []):
                reason = failed.get(key)
                if not reason:
                    try:
                        ceiling_python(key)
                    except Unsupported as e:
                        reason = failed[key] = str(e)
                if reason:
                    add(route.id, key, CEILINGS[key], "1 process, no server", False, {"na": reason})
                    report(key, route.id, {"na": reason})
                else:
                    ceilings.append(key)
            if not live and not ceilings:
                continue
            log(f"{route.id}: {len(live) + len(ceilings)} rows, {args.runs} round(s) of {args.duration:g} s")
            wait_idle(ctx)
            if args.warmup > 0:
                for sv, run in live:
                    wrk(ctx, route_url(run, route), route, args.warmup, route_conns(ctx, route))
            runs: dict[str, list] = {sv.key: [] for sv, _ in live}
            runs.update({key: [] for key in ceilings})
            pss: dict[str, tuple] = {}
            entries = [(sv.key, run) for sv, run in live] + [(key, None) for key in ceilings]
            for rnd in range(args.runs):
                k = rnd % len(entries)
                for key, run in entries[k:] + entries[:k]:
                    if run is None:
                        runs[key].append(ceiling_run(ctx, route, args.duration, args.warmup if rnd == 0 else 1.0, key))
                        last = runs[key][-1]
                        pss[key] = (last.get("pss_kib"), 1)
                    else:
                        runs[key].append(one_run(ctx, run, route, args.duration))
                        if rnd == args.runs - 1:  # memory right after the last load
                            tree = run.tree()
                            pss[key] = (pss_kib(tree), len(tree))
            for sv, run in live:
                res = summarize(runs[sv.key], *pss.get(sv.key, (None, None)), route_conns(ctx, route),
                                route_url(run, route))
                add(route.id, sv.key, sv.label, sv.config, sv.is_flaskhost, res)
                report(sv.key, route.id, res)
                ctx.stop(run)
            for key in ceilings:
                res = summarize(runs[key], *pss.get(key, (None, None)), None, None)
                add(route.id, key, CEILINGS[key], "1 process, no server", False, res)
                report(key, route.id, res)
            ctx.stop_all()
        if route_wanted(MEMORY):
            memory_phase(ctx, servers, want_servers, failed, add, report)
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        ctx.stop_all()
        return 130
    finally:
        ctx.stop_all()

    # Rows in a fixed order: flaskhost first, then the anchors, the ceiling last.
    for rid in results:
        results[rid].sort(key=lambda r: order.get(r["key"], 99))
    meta["elapsed_s"] = round(time.monotonic() - t_start)
    settings = {k: getattr(args, k) for k in ("runs", "duration", "warmup", "conns", "sleep_conns", "workers", "threads",
                                              "pin", "wait_idle", "nice")}
    report = full_report(results, args, meta)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.json").write_text(json.dumps({"meta": meta, "settings": settings, "results": results},
                                                          indent=1, default=str))
    (out / f"results-{stamp}.md").write_text(report + "\n")
    (out / "latest.md").write_text(report + "\n")
    print(report)
    log(f"raw results: {out / f'results-{stamp}.json'}; table: {out / f'results-{stamp}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
