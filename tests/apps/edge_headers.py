"""Sets the response headers named in the query string, for the edge's header tests:
``/?X-Frame-Options=DENY&Server=app`` answers with those headers (and a text body), so a test
can check that a header the app sets is kept and never duplicated. ``/?status=404`` picks the
status; ``/?type=...`` the Content-Type; ``/?size=N`` a body of N bytes (for compression)."""

from urllib.parse import parse_qsl

from _wsgitest import validated

STATUS = {"200": "200 OK", "404": "404 Not Found", "500": "500 Internal Server Error",
          "206": "206 Partial Content"}


def edge_headers(environ, start_response):
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    status, content_type, size = "200", "text/plain; charset=utf-8", None
    headers = []
    for name, value in pairs:
        if name == "status":
            status = value
        elif name == "type":
            content_type = value
        elif name == "size":
            size = int(value)
        else:
            headers.append((name, value))
    body = (b"edge headers app\n" if size is None
            else (b"All work and no play makes Jack a dull boy. " * (size // 44 + 1))[:size])
    start_response(STATUS[status], [("Content-Type", content_type),
                                    ("Content-Length", str(len(body))), *headers])
    return [body]


application = validated(edge_headers)
