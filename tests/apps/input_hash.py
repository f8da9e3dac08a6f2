"""Hashes the request body while streaming it: sha256 over read(64 KiB) pieces, never holding
more than one piece. Returns {"sha256", "bytes", "reads", "max_read"}."""

import hashlib

from _wsgitest import respond_json, validated


def input_hash(environ, start_response):
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = reads = max_read = 0
    while chunk := stream.read(65536):
        digest.update(chunk)
        total += len(chunk)
        reads += 1
        max_read = max(max_read, len(chunk))
    return respond_json(start_response, {
        "sha256": digest.hexdigest(), "bytes": total, "reads": reads, "max_read": max_read,
    })


application = validated(input_hash)
