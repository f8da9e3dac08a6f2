"""A generator body without Content-Length: the server must use chunked transfer coding for an
HTTP/1.1 client (and close-delimit for HTTP/1.0). Empty strings between the chunks must not end
the response early (an empty chunk is the chunked terminator)."""

from _wsgitest import query, validated


def body_generator(environ, start_response):
    count = int(query(environ).get("n", "5"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b""
        for i in range(count):
            yield f"chunk-{i}\n".encode()
            yield b""

    return body()


application = validated(body_generator)
