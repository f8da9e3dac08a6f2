"""systemd Type=notify: READY=1 once listening, STOPPING=1 on SIGTERM, WATCHDOG=1 when asked."""

import socket

from fhtest import eventually


def _notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock, path


def _drain(sock, into):
    try:
        while True:
            into.append(sock.recv(4096).decode())
    except (TimeoutError, socket.timeout, BlockingIOError):
        pass
    return into


def test_ready_status_stopping_and_watchdog(serve, tmp_path):
    sock, path = _notify_socket(tmp_path)
    got = []
    # WATCHDOG_PID is not set: the watchdog is then meant for whoever reads WATCHDOG_USEC.
    server = serve("hello:application", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    ready = eventually(lambda: [m for m in _drain(sock, got) if m.startswith("READY=1")],
                       timeout=10, message="READY=1")
    assert f"MAINPID={server.pid}" in ready[0]
    assert "STATUS=serving hello:application with 1 workers" in ready[0]
    eventually(lambda: "WATCHDOG=1" in _drain(sock, got), timeout=10, message="WATCHDOG=1")
    assert server.stop() == 0
    eventually(lambda: any(m.startswith("STOPPING=1") for m in _drain(sock, got)),
               timeout=5, message="STOPPING=1")
    sock.close()


def test_no_notify_socket_is_fine(serve):
    server = serve("hello:application")
    assert server.stop() == 0


def test_reload_is_announced_with_reloading_then_ready(serve, tmp_path):
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC (Type=notify-reload's protocol), READY=1 once
    the new workers serve."""
    import signal
    import time

    sock, path = _notify_socket(tmp_path)
    got = []
    server = serve("hello:application", env={"NOTIFY_SOCKET": str(path)})
    eventually(lambda: any(m.startswith("READY=1") for m in _drain(sock, got)), timeout=10,
               message="READY=1")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    got.clear()
    server.send_signal(signal.SIGHUP)
    eventually(lambda: any(m.startswith("READY=1") for m in _drain(sock, got)), timeout=20,
               message="READY=1 after the reload")
    reloading = [m for m in got if m.startswith("RELOADING=1")]
    assert len(reloading) == 1, got
    assert got.index(reloading[0]) < [i for i, m in enumerate(got) if m.startswith("READY=1")][0]
    fields = dict(line.split("=", 1) for line in reloading[0].splitlines())
    assert before <= int(fields["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    server.wait_for_line(r"reload done")
    sock.close()
