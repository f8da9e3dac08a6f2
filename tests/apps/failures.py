"""Routes that hurt the worker, by PATH_INFO:

/pid            -> the worker's pid (and thread id) as JSON
/raise          -> raises RuntimeError (the server must answer 500 and keep the worker)
/exit           -> os._exit(1): the worker process dies mid-request (502, then a new worker)
/segfault       -> reads address 0 through ctypes: SIGSEGV (502, then a new worker)
/slow?s=N       -> sleeps N seconds, then answers with the pid
/hang           -> never answers (for --timeout: 504, the worker is replaced)

/slow and /hang accept ``?tag=T&dir=D``: at the start of the request they write the worker's
pid to D/T.pid, so a test can tell that the request has reached a worker (and which one).
"""

import ctypes
import os
import threading
import time

from _wsgitest import query, respond, respond_json, validated, write_marker


def announce(q):
    if q.get("tag") and q.get("dir"):
        write_marker(os.path.join(q["dir"], q["tag"] + ".pid"), str(os.getpid()))


def failures(environ, start_response):
    path = environ["PATH_INFO"]
    q = query(environ)
    if path == "/pid":
        return respond_json(start_response, {"pid": os.getpid(), "thread": threading.get_ident()})
    if path == "/raise":
        raise RuntimeError(q.get("token", "failures-raise-token"))
    if path == "/exit":
        os._exit(1)
    if path == "/segfault":
        ctypes.string_at(0)
        return respond(start_response, "still alive?!")
    if path == "/slow":
        announce(q)
        time.sleep(float(q.get("s", "1")))
        return respond_json(start_response, {"pid": os.getpid(), "thread": threading.get_ident(),
                                             "slept": float(q.get("s", "1"))})
    if path == "/hang":
        announce(q)
        while True:
            time.sleep(3600)
    return respond(start_response, "not found", "404 Not Found")


application = validated(failures)
