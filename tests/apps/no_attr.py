"""Imports fine but has no ``application`` (the callable is misspelled)."""

from _wsgitest import respond, validated


def _app(environ, start_response):
    return respond(start_response, "unreachable")


applicaton = validated(_app)
