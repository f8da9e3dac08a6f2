"""The in-process ceiling: call the Flask app's WSGI callable in a loop, no server at all.

For one route, builds the WSGI environ once, then for N seconds calls the app with a fresh copy of
it (and a fresh wsgi.input for POST), a no-op start_response, and consumes the whole response body.
Prints one JSON line: calls/s, p50/p99 of the per-call time, and the process's PSS.
This is the most requests/s one core can get out of this app; a server can only add overhead.

    python ceiling.py --app-dir bench/app --route hello --seconds 5 [--warmup 1]
"""
import argparse
import io
import json
import os
import sys
import time

ROUTES = {
    "hello": ("GET", "/", b""),
    "json": ("GET", "/json", b""),
    "echo": ("POST", "/echo", b"x" * 1024),
}


def pss_kib():
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app-dir", required=True)
    ap.add_argument("--app", default="app:app")
    ap.add_argument("--route", choices=sorted(ROUTES), default="hello")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.app_dir))
    os.chdir(args.app_dir)
    module, attr = args.app.split(":")
    app = getattr(__import__(module), attr)

    method, path, body = ROUTES[args.route]
    base = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        base["CONTENT_LENGTH"] = str(len(body))
        base["CONTENT_TYPE"] = "application/octet-stream"

    status_seen = []

    def start_response(status, headers, exc_info=None):
        if not status_seen:
            status_seen.append(status)
        return None

    def call():
        env = base.copy()
        env["wsgi.input"] = io.BytesIO(body)
        it = app(env, start_response)
        try:
            n = 0
            for chunk in it:
                n += len(chunk)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        return n

    # Sanity: the route answers 200 (and echo returns the body).
    n = call()
    if not status_seen or not status_seen[0].startswith("200"):
        print(json.dumps({"error": f"route {args.route} answered {status_seen}"}))
        return 1
    if args.route == "echo" and n != len(body):
        print(json.dumps({"error": f"echo returned {n} bytes, expected {len(body)}"}))
        return 1

    perf = time.perf_counter_ns
    end = time.monotonic() + args.warmup
    while time.monotonic() < end:
        call()

    times = []
    append = times.append
    cpu0 = time.process_time()
    t_start = perf()
    deadline = t_start + int(args.seconds * 1e9)
    t = t_start
    while t < deadline:
        call()
        t2 = perf()
        append(t2 - t)
        t = t2
    elapsed = (t - t_start) / 1e9
    cpu_s = time.process_time() - cpu0
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(p / 100.0 * len(times)))] / 1e3  # microseconds

    print(json.dumps({
        "calls": len(times),
        "seconds": elapsed,
        "rps": len(times) / elapsed,
        "cpu_s": cpu_s,
        "p50_us": pct(50),
        "p99_us": pct(99),
        "pss_kib": pss_kib(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
