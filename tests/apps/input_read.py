"""Reads wsgi.input in the way ``?mode=`` says and reports what each call returned.

Modes: read_all (read() without a size; that is not in PEP 3333, so it bypasses the validator's
wrapper, which only allows read(size)), read_n (read(n) until b""), readline (until b""),
readline_n (readline(n) until b""), readlines, readlines_hint (readlines(n)), iter (for line in
input). The response is JSON: {"pieces": [latin-1 strings, one per call], "extra": what one more
call returned after the end}.
"""

from _wsgitest import query, respond_json, validated


def input_read(environ, start_response):
    q = query(environ)
    mode = q.get("mode", "read_n")
    n = int(q.get("n", "4"))
    stream = environ["wsgi.input"]
    pieces = []
    if mode == "read_all":
        raw = stream.input  # the server's own object, under the validator's InputWrapper
        pieces.append(raw.read())
        extra = raw.read()
    elif mode == "read_n":
        while chunk := stream.read(n):
            pieces.append(chunk)
        extra = stream.read(n)
    elif mode == "readline":
        while line := stream.readline():
            pieces.append(line)
        extra = stream.readline()
    elif mode == "readline_n":
        while line := stream.readline(n):
            pieces.append(line)
        extra = stream.readline(n)
    elif mode == "readlines":
        pieces = stream.readlines()
        extra = stream.read(n)
    elif mode == "readlines_hint":
        pieces = stream.readlines(n)
        extra = stream.read(1 << 20)
    elif mode == "iter":
        pieces = list(stream)
        extra = stream.read(n)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return respond_json(start_response, {
        "pieces": [p.decode("latin-1") for p in pieces],
        "extra": extra.decode("latin-1"),
    })


application = validated(input_read)
