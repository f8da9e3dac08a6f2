"""Uses the legacy write() callable returned by start_response, then returns more body."""

from _wsgitest import validated


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("X-Wrote", "yes")])
    write(b"written-1;")
    write(b"")
    write(b"written-2;")
    return [b"returned-3"]


application = validated(write_callable)
