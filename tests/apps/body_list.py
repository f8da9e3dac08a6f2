"""A list body of several byte strings; ``?cl=1`` sets Content-Length, else the server chooses."""

from _wsgitest import query, validated

PARTS = [b"first;", b"second;", b"", b"third"]


def body_list(environ, start_response):
    headers = [("Content-Type", "text/plain")]
    if query(environ).get("cl") == "1":
        headers.append(("Content-Length", str(sum(map(len, PARTS)))))
    start_response("200 OK", headers)
    return list(PARTS)


application = validated(body_list)
