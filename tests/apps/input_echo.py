"""Echoes the request body, read with read(64 KiB) until EOF (so it also works for chunked
requests that have no CONTENT_LENGTH). Reports the CONTENT_LENGTH it saw in a header."""

from _wsgitest import validated


def input_echo(environ, start_response):
    stream = environ["wsgi.input"]
    parts = []
    while chunk := stream.read(65536):
        parts.append(chunk)
    body = b"".join(parts)
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Seen-Content-Length", environ.get("CONTENT_LENGTH", "<absent>") or "<empty>"),
        ("X-Seen-Transfer-Encoding", environ.get("HTTP_TRANSFER_ENCODING", "<absent>")),
    ])
    return [body]


application = validated(input_echo)
