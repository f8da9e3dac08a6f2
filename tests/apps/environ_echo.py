"""Echoes the environ as JSON: every str-valued key plus the wsgi.* flags.

Keys whose value is not a str are listed under "_types" so a test can assert their type.
"""

import os
import threading

from _wsgitest import respond_json, validated

WSGI_KEYS = ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
             "wsgi.run_once")


def environ_echo(environ, start_response):
    out = {key: value for key, value in environ.items() if isinstance(value, str)}
    for key in WSGI_KEYS:
        value = environ.get(key)
        out[key] = list(value) if isinstance(value, tuple) else value
    out["_types"] = {key: type(value).__name__ for key, value in environ.items()}
    out["_pid"] = os.getpid()
    out["_thread"] = threading.get_ident()
    return respond_json(start_response, out)


application = validated(environ_echo)
