"""Appends "METHOD PATH_INFO" for every request it sees to the file named by the environment
variable FH_RECORD_FILE, after reading the whole body. The malformed-HTTP tests use it to prove
that no smuggled request ever reached the app."""

import os

from _wsgitest import respond, validated


def recorder(environ, start_response):
    stream = environ["wsgi.input"]
    size = 0
    while chunk := stream.read(65536):
        size += len(chunk)
    with open(os.environ["FH_RECORD_FILE"], "a") as f:
        f.write(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} body={size}\n")
    return respond(start_response, f"recorded {environ['PATH_INFO']} body={size}\n")


application = validated(recorder)
