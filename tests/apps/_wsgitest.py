"""Shared helpers for the tiny WSGI apps under tests/apps/ (one app per behaviour).

Every app module wraps its callable with :func:`validated`, i.e. the stdlib
``wsgiref.validate.validator``, and importing this module turns every warning into an exception.
A server that breaks a WSGI rule therefore makes the app raise, which the server must turn into a
500, which makes the end-to-end test fail with the validator's message in the server's log.
"""

import json
import os
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")


def validated(app):
    """``app`` wrapped in the stdlib WSGI validator (PEP 3333 checks on both sides)."""
    return validator(app)


def query(environ):
    """The query string as a dict (last value wins)."""
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def respond(start_response, body, status="200 OK", content_type="text/plain; charset=utf-8",
            headers=()):
    """A complete response with Content-Length; returns the WSGI body (a one-item list)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body))), *headers])
    return [body]


def respond_json(start_response, obj, status="200 OK", headers=()):
    return respond(start_response, json.dumps(obj, sort_keys=True), status,
                   "application/json", headers)


def write_marker(path, text="closed"):
    """Writes ``text`` to ``path`` atomically (the tests poll for the file)."""
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


BLOCK = 64 * 1024
_FILLER = bytes(range(256)) * (BLOCK // 256)


def pattern_block(index, size=BLOCK):
    """Block ``index`` of the deterministic test pattern (the tests compute the same bytes)."""
    return (index.to_bytes(8, "big") + _FILLER[8:size])[:size]
