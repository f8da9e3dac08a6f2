"""The smallest app: a fixed body with Content-Length."""

from _wsgitest import respond, validated

BODY = b"Hello, World!\n"


def hello(environ, start_response):
    return respond(start_response, BODY)


application = validated(hello)
