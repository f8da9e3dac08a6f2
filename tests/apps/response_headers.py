"""Response headers the server must pass through unchanged: repeated Set-Cookie lines, a custom
status, a header value with a latin-1 character, a header with an empty value."""

from _wsgitest import validated


def response_headers(environ, start_response):
    start_response("201 Created", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/; HttpOnly"),
        ("X-Latin", "caf\u00e9"),
        ("X-Empty", ""),
        ("X-Spaces", "a  b"),
        ("Location", "/created/1"),
    ])
    return [b"created"]


application = validated(response_headers)
