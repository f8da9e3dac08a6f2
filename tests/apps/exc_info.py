"""start_response's exc_info rules (PEP 3333), by ``?mode=``:

replace: start_response(200) then, before any body, start_response(500, ..., exc_info): the
    server must send the second status and headers only.
reraise_after_write: body already sent with write(); start_response(..., exc_info) must re-raise
    the exception (the response is then cut short).
twice: start_response called twice without exc_info: the server must raise (so: a 500).
iter_error_before_body: start_response(200), a generator that yields b"" then raises: no body
    byte was sent yet, so the server can still answer 500.
iter_error_after_body: a generator that yields body bytes then raises: the response must end
    abnormally (no chunked terminator / connection closed), never look complete.
"""

import sys

from _wsgitest import query, validated


class AppError(Exception):
    pass


def exc_info_app(environ, start_response):
    mode = query(environ).get("mode", "replace")
    if mode == "replace":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise AppError("exc-info-replace-token")
        except AppError:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("X-Second", "1")], sys.exc_info())
        return [b"replaced"]
    if mode == "reraise_after_write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial-body;")
        try:
            raise AppError("exc-info-reraise-token")
        except AppError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"must-not-be-sent"]
    if mode == "twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"must-not-be-sent"]
    if mode == "iter_error_before_body":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b""
            raise AppError("iter-error-before-body-token")

        return body()
    if mode == "iter_error_after_body":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"first-part;"
            raise AppError("iter-error-after-body-token")

        return body()
    raise ValueError(mode)


application = validated(exc_info_app)
