"""How many pages a forked child copies from its parent, without any server: what CPython's own
fork costs and what the app's first request costs (see RESULTS.md, "Memory (PSS), session 3").

    bench/.anchors/venv/bin/python bench/probe/forkcopy.py [--app | --import MOD,MOD] [--calls N]

The parent imports the bench app (`--app`, the default) or only the given modules, looks up the
idna codec (as flaskhost's fork server does), runs `gc.collect(); gc.freeze()` and forks. The
child makes N calls of the app with a GET / environ (0: none), then sleeps; the parent blocks
meanwhile. A third process, forked from the parent afterwards, compares the physical frame of
every present page of the parent and the child (/proc/PID/pagemap, needs root): a page whose
frame differs is one the child copied on write. Prints the count by mapping.
"""
# Only modules that the interpreter has already imported at start-up, or that have no at-fork
# hook: the probe must not add to what it measures (tempfile, for one, imports random).
import gc
import io
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def environ():
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555", "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False}


def present_frames(pid):
    """{address: (frame, mapping)} for every present page of a writable mapping."""
    import struct

    res = {}
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm, open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            f = line.split()
            if "w" not in f[1]:
                continue
            a, b = (int(x, 16) for x in f[0].split("-"))
            path = os.path.basename(f[5]) if len(f) > 5 else "anon"
            pm.seek((a >> 12) * 8)
            for i, (e,) in enumerate(struct.iter_unpack("<Q", pm.read(((b - a) >> 12) * 8))):
                if e >> 63 & 1:
                    res[a + i * 4096] = (e & ((1 << 55) - 1), path)
    return res


def main():
    argv = sys.argv[1:]
    imports = argv[argv.index("--import") + 1] if "--import" in argv else None
    calls = int(argv[argv.index("--calls") + 1]) if "--calls" in argv else 0
    app = None
    if imports:
        for m in imports.split(","):
            __import__(m)
    else:
        sys.path.insert(0, os.path.join(HERE, "..", "app"))
        from app import app
    import codecs

    codecs.lookup("idna")
    gc.collect()
    gc.freeze()
    parent = os.getpid()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        for _ in range(calls):
            body = app(environ(), lambda status, headers, exc_info=None: None)
            b"".join(body)
            getattr(body, "close", lambda: None)()
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(r, 1)  # blocks in C: the parent writes nothing meanwhile
    r2, w2 = os.pipe()
    helper = os.fork()
    if helper == 0:
        p, c = present_frames(parent), present_frames(child)
        copied = [c[a][1] for a in c if a in p and p[a][0] != c[a][0]]
        os.write(w2, "\n".join(copied).encode() + b"\n")
        os._exit(0)
    os.close(w2)
    data = b""
    while chunk := os.read(r2, 65536):
        data += chunk
    os.waitpid(helper, 0)
    copied = [x for x in data.decode().split("\n") if x]
    os.kill(child, 9)
    os.waitpid(child, 0)
    import collections

    what = imports or "bench app"
    print(f"{what}, {calls} call(s): the child copied {len(copied)} pages ({len(copied) * 4} KiB): "
          + ", ".join(f"{k} {v}" for k, v in collections.Counter(copied).most_common()))


if __name__ == "__main__":
    main()
