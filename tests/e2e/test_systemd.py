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
