"""Responses that have no body by definition: ``?code=204`` or ``?code=304`` (no Content-Type,
as the validator demands), and ``?code=200&empty=1`` (an empty body with Content-Length: 0)."""

from _wsgitest import query, validated

REASONS = {200: "OK", 204: "No Content", 304: "Not Modified"}


def status_no_body(environ, start_response):
    code = int(query(environ).get("code", "204"))
    headers = [("X-Code", str(code))]
    if code == 200:
        headers += [("Content-Type", "text/plain"), ("Content-Length", "0")]
    if code == 304:
        headers.append(("ETag", '"v1"'))
    start_response(f"{code} {REASONS[code]}", headers)
    return []


application = validated(status_no_body)
