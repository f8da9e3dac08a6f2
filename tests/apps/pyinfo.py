"""Reports the interpreter the worker runs: sys.executable, sys.prefix, where flask comes from,
the working directory, and the pid that imported this module (IMPORT_PID: equal to the worker's
pid with --lazy-apps, the fork server's pid when the app is preloaded); the user and groups the
worker runs as and imported the app as (--uid/--gid); the LISTEN_* variables it sees (none: they
are systemd's message to the main process)."""

import os
import sys
import threading

from _wsgitest import respond_json, validated

IMPORT_PID = os.getpid()
IMPORT_UIDS = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]


def pyinfo(environ, start_response):
    try:
        import flask
        flask_file = flask.__file__
    except ImportError as exc:  # reported, the test decides
        flask_file = f"ImportError: {exc}"
    return respond_json(start_response, {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "version": list(sys.version_info[:3]),
        "path": sys.path,
        "flask_file": flask_file,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "import_pid": IMPORT_PID,
        "threads": threading.active_count(),
        "env_marker": os.environ.get("FH_TEST_ENV_MARKER"),
        "uids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        "groups": sorted(os.getgroups()),
        "import_uids": IMPORT_UIDS,
        "listen_env": {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")},
    })


application = validated(pyinfo)
