"""Answers without reading the request body at all; the server must discard the unread body
(or close the connection) so the next request on a keep-alive connection is not corrupted."""

import os

from _wsgitest import respond, validated


def input_ignore(environ, start_response):
    return respond(start_response, f"ignored {environ['PATH_INFO']} pid={os.getpid()}")


application = validated(input_ignore)
