"""A large body from a generator: ``?size=`` bytes (default 256 MiB) of the test pattern in
``?chunk=`` byte pieces (default 64 KiB). ``?cl=1`` also sends Content-Length."""

from _wsgitest import BLOCK, pattern_block, query, validated


def download(environ, start_response):
    q = query(environ)
    size = int(q.get("size", str(256 * 1024 * 1024)))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)

    def body():
        sent = 0
        index = 0
        while sent < size:
            block = pattern_block(index, min(BLOCK, size - sent))
            index += 1
            sent += len(block)
            yield block

    return body()


application = validated(download)
