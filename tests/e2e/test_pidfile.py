"""--pidfile (gunicorn's behaviour: a pidfile naming a running flaskhost stops start-up, a stale
one is replaced), and `flaskhost reload` / `flaskhost stop`, which signal the server a pidfile or
a pid names and refuse anything that is not a running flaskhost."""

import os
import signal

from fhtest import APPS


def serve_args(pidfile):
    return ["serve", "--app", "hello:application", "--chdir", APPS, "--bind", "127.0.0.1:0",
            "--workers", "1", "--pidfile", pidfile]


def test_pidfile_holds_the_pid_and_is_removed_at_exit(serve, tmp_path):
    pidfile = tmp_path / "fh.pid"
    server = serve("hello:application", "--pidfile", pidfile)
    assert pidfile.read_text() == f"{server.pid}\n"
    assert server.stop() == 0
    assert not pidfile.exists()


def test_relative_pidfile_is_relative_to_the_start_directory(serve, tmp_path):
    """`--chdir` moves the server, not its pidfile: `flaskhost reload --pidfile x.pid` from the
    same directory must find it."""
    server = serve("hello:application", "--pidfile", "fh.pid", cwd=tmp_path)
    assert (tmp_path / "fh.pid").read_text() == f"{server.pid}\n"


def test_pidfile_of_a_running_server_refuses_start(serve, run_flaskhost, tmp_path):
    pidfile = tmp_path / "fh.pid"
    first = serve("hello:application", "--pidfile", pidfile)
    second = run_flaskhost(*serve_args(pidfile))
    assert second.returncode == 1, second.output()
    assert f"names pid {first.pid}, a flaskhost that is still running" in second.output()
    assert second.workers() == [], "nothing may start"
    assert pidfile.read_text() == f"{first.pid}\n", "the running server's pidfile is kept"


def test_stale_pidfile_is_replaced(serve, tmp_path):
    pidfile = tmp_path / "fh.pid"
    # Pid 1 runs, but is not a flaskhost (a pid reused after a reboot, say).
    pidfile.write_text("1\n")
    server = serve("hello:application", "--pidfile", pidfile)
    assert pidfile.read_text() == f"{server.pid}\n"
    assert server.find_lines("replacing the stale file")


def test_reload_by_pidfile_and_by_pid(serve, run_flaskhost, tmp_path):
    pidfile = tmp_path / "fh.pid"
    server = serve("hello:application", "--pidfile", pidfile)
    start = len(server.lines())
    r = run_flaskhost("reload", "--pidfile", pidfile)
    assert r.returncode == 0, r.output()
    assert f"pid {server.pid}" in r.output()
    server.wait_for_line("SIGHUP", start=start)
    server.wait_for_line(r"reload done: app generation 1", start=start, timeout=20)
    r = run_flaskhost("reload", server.pid)
    assert r.returncode == 0, r.output()
    server.wait_for_line("SIGHUP", start=start, count=2)
    server.wait_for_line(r"reload done: app generation 2", start=start, timeout=20)
    assert server.get("/").status_code == 200


def test_reload_refuses_a_missing_or_stale_pidfile_and_other_processes(run_flaskhost,
                                                                        tmp_path):
    missing = run_flaskhost("reload", "--pidfile", tmp_path / "none.pid")
    assert missing.returncode == 1
    assert "cannot read pidfile" in missing.output()

    stale = tmp_path / "stale.pid"
    stale.write_text("4194304\n")  # above the kernel's largest pid
    r = run_flaskhost("reload", "--pidfile", stale)
    assert r.returncode == 1
    assert "is not a running flaskhost; the pidfile is stale" in r.output()

    # This test's own process runs, but is not a flaskhost: it must not get a SIGHUP.
    r = run_flaskhost("reload", os.getpid())
    assert r.returncode == 1
    assert "is not a running flaskhost" in r.output()

    r = run_flaskhost("reload")
    assert r.returncode == 64, "a pid or --pidfile is required"


def test_stop_drains_and_stop_fast_does_not(serve, run_flaskhost, tmp_path):
    for flags, line in [((), "SIGTERM: no longer accepting"),
                        (("--fast",), "SIGQUIT: stopping now")]:
        pidfile = tmp_path / "fh.pid"
        server = serve("hello:application", "--pidfile", pidfile)
        r = run_flaskhost("stop", "--pidfile", pidfile, *flags)
        assert r.returncode == 0, r.output()
        server.wait_for_line(line)
        assert server.proc.wait(20) == 0
        server.stop()
        assert not pidfile.exists()


def test_sighup_does_not_touch_the_pidfile(serve, tmp_path):
    pidfile = tmp_path / "fh.pid"
    server = serve("hello:application", "--pidfile", pidfile)
    server.send_signal(signal.SIGHUP)
    server.wait_for_line("SIGHUP")
    assert pidfile.read_text() == f"{server.pid}\n"
