"""Writes ``?token=`` to one of the app's output streams, chosen by ``?stream=``:
print (print() with flush), print_noflush (print() without flush), stderr (sys.stderr.write),
wsgi_errors (environ['wsgi.errors'].write + flush). The server must pass all of them on to its
own stdout/stderr."""

import sys

from _wsgitest import query, respond, validated


def output_streams(environ, start_response):
    q = query(environ)
    token = q["token"]
    stream = q.get("stream", "print")
    if stream == "print":
        print(token, flush=True)
    elif stream == "print_noflush":
        print(token)
    elif stream == "stderr":
        sys.stderr.write(token + "\n")
        sys.stderr.flush()
    elif stream == "wsgi_errors":
        environ["wsgi.errors"].write(token + "\n")
        environ["wsgi.errors"].flush()
    else:
        raise ValueError(stream)
    return respond(start_response, "ok")


application = validated(output_streams)
