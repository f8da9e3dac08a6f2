"""Responses the server must refuse or contain, chosen by ``?mode=``. Deliberately NOT wrapped in
the validator (it would reject them before the server sees them):

non_latin1_header: a header value outside latin-1 (PEP 3333: must be latin-1) -> 500
crlf_in_header: a header value with CR LF (response splitting) -> 500, never sent raw
status_not_str: a bytes status -> 500
body_not_bytes: the iterable yields str -> 500 (nothing sent yet)
length_short: Content-Length 100, a list body of 10 bytes
length_long: Content-Length 10, a list body of 100 bytes
length_short_gen, length_long_gen: the same from a generator (the server cannot know the real
    length before it sends the head)
length_long_gen_first: Content-Length 10, a generator whose first block is those 10 bytes, then 90
    more (the server may send the first block as the whole response)
complete_then_raise: Content-Length 10, a generator that yields those 10 bytes, then raises: the
    client has its whole response either way, and the worker must survive
For the length modes the server may fix the header (a list body's length is known) or cut the
response short and close the connection, but the framing on the wire must stay consistent: never
a connection left waiting for bytes that will not come, never extra bytes after the declared
length (a client would read them as the next response).
"""

import os

from _wsgitest import query


def bad_response(environ, start_response):
    mode = query(environ).get("mode")
    if mode == "non_latin1_header":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Euro", "\u20ac")])
        return [b"must-not-be-sent"]
    if mode == "crlf_in_header":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("X-Split", "a\r\nX-Injected: yes")])
        return [b"must-not-be-sent"]
    if mode == "status_not_str":
        start_response(b"200 OK", [("Content-Type", "text/plain")])
        return [b"must-not-be-sent"]
    if mode == "body_not_bytes":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["must-not-be-sent"]
    if mode == "length_short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"0123456789"]
    if mode == "length_long":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"0123456789", b"X" * 90]
    if mode == "length_short_gen":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return (part for part in [b"01234", b"56789"])
    if mode == "length_long_gen":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return (part for part in [b"01234", b"56789", b"X" * 90])
    if mode == "length_long_gen_first":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return (part for part in [b"0123456789", b"X" * 90])
    if mode == "complete_then_raise":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])

        def body():
            yield b"0123456789"
            raise RuntimeError("complete-then-raise-token")

        return body()
    if mode == "pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    raise ValueError(mode)


application = bad_response
