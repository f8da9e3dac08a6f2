"""WSGI apps for measuring where a worker's time per request goes (see RESULTS.md, "Worker, second
pass"). Run them with `bench/reqcost --app-dir bench/probe --app probe:NAME`.

- `trivial`: no framework; a Flask-shaped response (an iterator, not a list, with Content-Length
  and a close()). The worker's CPU per request is then the host's own cost: the slot loop, the
  environ, start_response, the response frame, the syscalls and the wake-ups.
- `cold_hot`: the bench's Flask app, called ten times per request with a fresh copy of the
  environ and a no-op start_response each time (the real start_response is called at the end).
  The first call runs on the caches as the rest of the machine left them since this worker's
  previous request; the nine others run hot, as in the in-process ceiling. Every 2,000 requests
  each worker writes both mean CPU times (`time.thread_time_ns`) to the server log.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "app"))

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))]


class _Body:
    def __init__(self):
        self.done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        self.done = True
        return BODY

    def close(self):
        pass


def trivial(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return _Body()


_flask_app = None
_n = _first_ns = _hot_ns = 0


def _noop_start_response(status, headers, exc_info=None):
    return None


def _call_flask(environ):
    it = _flask_app(dict(environ), _noop_start_response)
    out = [b for b in it]
    it.close()
    return out


def cold_hot(environ, start_response):
    global _flask_app, _n, _first_ns, _hot_ns
    if _flask_app is None:
        from app import app as _flask_app
    t0 = time.thread_time_ns()
    out = _call_flask(environ)
    t1 = time.thread_time_ns()
    for _ in range(9):
        _call_flask(environ)
    t2 = time.thread_time_ns()
    _n += 1
    _first_ns += t1 - t0
    _hot_ns += t2 - t1
    if _n % 2000 == 0:
        print(f"probe pid {os.getpid()}: first call {_first_ns / _n / 1000:.1f} us, "
              f"hot calls {_hot_ns / _n / 9000:.1f} us (over {_n} requests)",
              file=sys.stderr, flush=True)
    body = b"".join(out)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
