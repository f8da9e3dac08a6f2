"""The factory form: ``--app 'factory:create_app()'`` or ``create_app('greeting', n=2)``.
There is deliberately no module-level ``application``."""

from _wsgitest import respond_json, validated

CALLS = []


def create_app(greeting="hello from factory", n=1):
    CALLS.append((greeting, n))

    def app(environ, start_response):
        return respond_json(start_response, {"greeting": greeting, "n": n,
                                             "factory_calls": len(CALLS)})

    return validated(app)
