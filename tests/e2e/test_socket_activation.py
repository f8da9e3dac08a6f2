"""systemd socket activation: with LISTEN_PID = the server's pid and LISTEN_FDS = n, the server
serves the listening sockets at descriptors 3.. instead of binding --bind; workers neither see
the variables nor inherit the sockets; a Unix socket file handed over is systemd's and stays.

systemd is imitated: the test binds the socket, and a small wrapper puts it at descriptor 3,
sets the variables with its own pid and `exec`s the server (so the pid is the server's)."""

import os
import socket
import sys

from fhtest import descendants
from test_unix_socket import unix_get

# Moves descriptor argv[1] to 3, then runs argv[3:] as the server with the LISTEN_* variables
# (names: argv[2]). dash, the usual /bin/sh, cannot name descriptors above 9.
ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES=sys.argv[2])
os.execv(sys.argv[3], sys.argv[3:])
"""


def activated(serve, app, sock, *flags, names="web", **kw):
    fd = sock.fileno()
    return serve(app, *flags, wrapper=[sys.executable, "-c", ACTIVATE, fd, names],
                 popen={"pass_fds": (fd,)}, **kw)


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[len("socket:["):-1]))
    return out


def test_tcp_socket_from_systemd(serve, app_mode):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        inode = os.fstat(sock.fileno()).st_ino
        # --bind is given (127.0.0.1:0 by default) and must not be used.
        server = activated(serve, "pyinfo:application", sock, *app_mode, workers=2)
    # The test's copy is closed: from here on only the server holds the socket.
    assert server.find_lines(rf"listening on http://127\.0\.0\.1:{port} \(systemd socket web\)")
    assert len(server.find_lines("listening on")) == 1, "only the passed socket"
    assert server.find_lines("socket activation: serving the sockets systemd passed")
    info = server.get("/").json()
    assert info["listen_env"] == {}, "LISTEN_* are for the main process only"
    assert inode in socket_inodes(server.pid)
    others = descendants(server.pid)[1:]
    assert len(others) == (2 if app_mode else 3)
    for pid in others:
        assert inode not in socket_inodes(pid), f"pid {pid} inherited the listening socket"


def test_unix_socket_from_systemd_is_left_in_place(serve, short_tmp):
    path = os.path.join(short_tmp, "activated.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    server = activated(serve, "hello:application", sock, names="")
    sock.close()
    assert server.find_lines(rf"listening on unix:{path} \(systemd socket\)")
    assert unix_get(path) == (200, b"Hello, World!\n")
    assert server.stop() == 0
    assert os.path.exists(path), "systemd's socket file is not flaskhost's to remove"


def test_variables_for_another_process_are_ignored(serve):
    """LISTEN_PID names another process: --bind is used, and the workers still do not see the
    variables."""
    server = serve("pyinfo:application",
                   env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"})
    assert not server.find_lines("systemd socket")
    assert server.get("/").json()["listen_env"] == {}


def test_a_descriptor_that_is_not_a_listening_socket_is_refused(serve, tmp_path):
    regular = tmp_path / "not-a-socket"
    regular.write_text("")
    with open(regular) as f:
        server = serve("hello:application", wait=False,
                       wrapper=[sys.executable, "-c", ACTIVATE, f.fileno(), ""],
                       popen={"pass_fds": (f.fileno(),)})
        assert server.wait_exit() == 64, server.output()
    assert "socket activation: LISTEN_FDS: descriptor 3: not a socket" in server.output()

    with socket.socket() as sock:  # bound, not listening
        sock.bind(("127.0.0.1", 0))
        server = serve("hello:application", wait=False,
                       wrapper=[sys.executable, "-c", ACTIVATE, sock.fileno(), ""],
                       popen={"pass_fds": (sock.fileno(),)})
        assert server.wait_exit() == 64, server.output()
    assert "descriptor 3: the socket is not listening" in server.output()
