"""A body iterable whose close() writes ``?marker=`` (a file path). PEP 3333: the server must
call close() when the request ends, normally, on an error during iteration, or when the client
goes away. Modes: normal (three chunks), endless (64 KiB chunks until closed), error (raise after
the first chunk). ``?close_raises=1``: close() raises after writing the marker (the response is
already complete; the server must log it and keep the worker)."""

import time

from _wsgitest import query, validated, write_marker


class Body:
    def __init__(self, mode, marker, close_raises):
        self.mode = mode
        self.marker = marker
        self.close_raises = close_raises
        self.sent = 0

    def __iter__(self):
        if self.mode == "normal":
            yield from (b"one;", b"two;", b"three")
        elif self.mode == "endless":
            block = b"x" * 65536
            while True:
                self.sent += 1
                yield block
                if self.sent % 64 == 0:
                    time.sleep(0.01)
        elif self.mode == "error":
            yield b"before-error;"
            raise RuntimeError("close-marker-error-token")

    def close(self):
        write_marker(self.marker, f"closed mode={self.mode}")
        if self.close_raises:
            raise RuntimeError("close-raises-token")


def close_marker(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Body(q.get("mode", "normal"), q["marker"], q.get("close_raises") == "1")


application = validated(close_marker)
