"""--uid/--gid: the main process binds as root and then runs as the user; the workers switch
before the app is imported (pyinfo's IMPORT_UIDS). Most tests need root and the `nobody` user.

The Python the suite runs against often lives where `nobody` cannot read it (pyenv under a
0700 /root). Then ``nobody_env`` builds a hard-linked copy of it under /tmp and a minimal
virtualenv on top (the test apps need nothing installed), so that workers running as nobody
can start Python; LD_LIBRARY_PATH points at the copy's libpython for workers that a server
running as nobody re-executes (--lazy-apps).
"""

import grp
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from fhtest import APPS, HTTP_TIMEOUT, VENV, descendants, eventually

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

try:
    NOBODY = pwd.getpwnam("nobody")
except KeyError:  # pragma: no cover - every Linux has it
    NOBODY = None
NEEDS_NOBODY = pytest.mark.skipif(NOBODY is None, reason="no `nobody` user")


def nobody_can_read(path: Path) -> bool:
    """True if every directory on the way to ``path`` lets others through (nobody is in no
    group that matters here)."""
    path = path.resolve()
    for p in [*reversed(path.parents), path]:
        mode = p.stat().st_mode
        if not mode & 0o001 or (p == path and not mode & 0o004):
            return False
    return True


def venv_home(venv: Path) -> Path:
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    raise AssertionError(f"no home in {venv}/pyvenv.cfg")


@pytest.fixture(scope="module")
def nobody_env():
    """The server environment (VIRTUAL_ENV, LD_LIBRARY_PATH) for workers running as nobody."""
    base = venv_home(VENV)
    if nobody_can_read(base / "lib") and nobody_can_read(VENV):
        yield {}
        return
    tmp = Path(tempfile.mkdtemp(prefix="fh-nobody-py-", dir="/tmp"))
    try:
        tmp.chmod(0o755)
        copy = tmp / "python"
        done = subprocess.run(["cp", "-al", str(base), str(copy)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot hard-link {base} for nobody: {done.stderr.decode()}")
        cfg = (VENV / "pyvenv.cfg").read_text()
        version = next(line.partition("=")[2].strip() for line in cfg.splitlines()
                       if line.partition("=")[0].strip() == "version")
        minor = ".".join(version.split(".")[:2])
        venv = tmp / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "lib" / f"python{minor}" / "site-packages").mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text(
            f"home = {copy / 'bin'}\ninclude-system-site-packages = false\n"
            f"version = {version}\n")
        (venv / "bin" / "python").symlink_to(copy / "bin" / f"python{minor}")
        yield {"VIRTUAL_ENV": str(venv), "LD_LIBRARY_PATH": str(copy / "lib")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def free_privileged_port():
    ports = list(range(600, 1000))
    random.shuffle(ports)
    for port in ports[:50]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def ids(pid, field):
    """The real, effective, saved and filesystem ids on a /proc/PID/status line."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} line for pid {pid}")


def assert_runs_as_nobody(pid):
    assert ids(pid, "Uid") == [NOBODY.pw_uid] * 4, pid
    assert ids(pid, "Gid") == [NOBODY.pw_gid] * 4, pid


def nobody_groups():
    return sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))


@ROOT_ONLY
@NEEDS_NOBODY
def test_runs_as_nobody_after_binding_a_privileged_port(serve, app_mode, nobody_env):
    port = free_privileged_port()
    server = serve("pyinfo:application", *app_mode, "--uid", "nobody", workers=2,
                   binds=[f"127.0.0.1:{port}"], env=nobody_env)
    server.wait_for_line(r"running as nobody:")
    info = server.get("/").json()
    nobody = [NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_gid, NOBODY.pw_gid]
    assert info["uids"] == nobody
    assert info["import_uids"] == nobody, "the app must be imported after the switch"
    assert info["groups"] == nobody_groups()
    processes = descendants(server.pid)
    assert len(processes) == (3 if app_mode else 4)  # main (+ fork server) + 2 workers
    for pid in processes:
        assert_runs_as_nobody(pid)
    if app_mode:
        # A replacement worker is started by the main process, already nobody.
        old = server.worker_pids()[0]
        os.kill(old, 9)
        server.wait_for_workers(3)
        new = server.worker_pids()[-1]
        assert_runs_as_nobody(new)
        eventually(lambda: server.get("/").status_code == 200, timeout=20,
                   message="serving after the replacement")


@ROOT_ONLY
@NEEDS_NOBODY
def test_files_after_the_switch(serve, short_tmp, nobody_env):
    """The Unix socket is handed to the user (so socket-mode means what it says for them);
    the pidfile is written as root; both are removed at exit when the directory lets the
    user, and a pidfile left in a root-only directory is only a warning."""
    os.chmod(short_tmp, 0o755)
    run_dir = Path(short_tmp) / "run"
    run_dir.mkdir()
    os.chown(run_dir, NOBODY.pw_uid, NOBODY.pw_gid)
    sock = run_dir / "app.sock"
    pidfile = run_dir / "fh.pid"
    root_pidfile = Path(short_tmp) / "root.pid"

    metrics, stats = run_dir / "metrics.sock", run_dir / "stats.sock"
    server = serve("hello:application", "--uid", "nobody", "--socket-mode", "660",
                   "--pidfile", pidfile, "--metrics", f"unix:{metrics}", "--stats",
                   f"unix:{stats}", binds=[f"unix:{sock}"], env=nobody_env)
    st = sock.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o660)
    for other in (metrics, stats):
        assert (other.stat().st_uid, other.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert pidfile.read_text() == f"{server.pid}\n"
    assert server.stop() == 0
    assert not sock.exists() and not pidfile.exists() and not metrics.exists()

    server = serve("hello:application", "--uid", "nobody", "--pidfile", root_pidfile,
                   env=nobody_env)
    assert server.stop() == 0
    assert server.find_lines("pidfile: cannot remove")
    assert root_pidfile.exists(), "left behind (stale): the next start replaces it"
    server = serve("hello:application", "--pidfile", root_pidfile, env=nobody_env)
    assert root_pidfile.read_text() == f"{server.pid}\n"


@ROOT_ONLY
@NEEDS_NOBODY
def test_gid_sets_the_group(serve, nobody_env):
    group = grp.getgrgid(NOBODY.pw_gid).gr_name
    server = serve("pyinfo:application", "--uid", str(NOBODY.pw_uid), "--gid", group,
                   env=nobody_env)
    assert server.get("/").json()["uids"][2:] == [NOBODY.pw_gid] * 2


@NEEDS_NOBODY
def test_switching_needs_root_unless_there_is_nothing_to_switch(serve, run_flaskhost,
                                                                 nobody_env):
    """Run as nobody: --uid root is refused before anything starts (exit 64, naming the
    option); --uid nobody is the current user already, so it just runs."""
    if os.geteuid() == 0:
        as_nobody = {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": []}
    elif os.geteuid() == NOBODY.pw_uid:
        as_nobody = {}
    else:
        pytest.skip("needs root or nobody")
    r = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS, "--bind",
                      "127.0.0.1:0", "--uid", "root", env=nobody_env, popen=as_nobody)
    assert r.returncode == 64, r.output()
    assert ("invalid value for `uid` from command-line flag --uid: switching to root:root "
            f"(0:0) needs root; flaskhost runs as uid {NOBODY.pw_uid}") in r.output()
    assert r.workers() == []

    server = serve("hello:application", "--uid", "nobody", env=nobody_env, popen=as_nobody)
    assert requests.get(server.url, timeout=HTTP_TIMEOUT).status_code == 200
    assert_runs_as_nobody(server.pid)


def test_unknown_user_or_group_is_a_configuration_error(run_flaskhost):
    for flag, value, message in [
        ("--uid", "no-such-user-fh", "invalid value for `uid` from command-line flag --uid: "
                                     "there is no user named \"no-such-user-fh\""),
        ("--gid", "no-such-group-fh", "invalid value for `gid` from command-line flag --gid: "
                                      "there is no group named \"no-such-group-fh\""),
    ]:
        r = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS,
                          flag, value)
        assert r.returncode == 64, r.output()
        assert message in r.output()
