"""Python-side helpers for flaskhost workers.

This module is compiled into the flaskhost binary (crates/flaskhost-python embeds it) and runs
inside the worker's interpreter. It holds what is easier to say in Python than through the C API:
importing the app the way gunicorn and uWSGI do, and formatting tracebacks for the server log.
"""

import ast
import importlib
import os
import sys
import traceback


def _parse_call_args(text):
    """Evaluates ``create_app('prod', debug=False)``-style arguments as literals only."""
    if not text.strip():
        return (), {}
    call = ast.parse(f"f({text})", mode="eval").body
    if not isinstance(call, ast.Call):
        raise ValueError(f"not a call: {text!r}")
    args = tuple(ast.literal_eval(a) for a in call.args)
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    return args, kwargs


def load_app(module_name, attr, call_args, app_dir):
    """Imports ``module_name`` and returns its WSGI callable.

    ``app_dir`` (the --chdir directory, else the working directory) goes first on sys.path so
    that ``wsgi:application`` imports from the project like ``python -m`` would.
    """
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise AttributeError(
            f"module {module_name!r} ({getattr(module, '__file__', '?')}) has no attribute {attr!r}"
        ) from None
    if call_args is not None:
        args, kwargs = _parse_call_args(call_args)
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise TypeError(f"{module_name}:{attr} is {type(obj).__name__}, not a WSGI callable")
    return obj


def format_exception(exc, tb):
    """The traceback ``tb`` of ``exc`` as one string, for the server log."""
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


def after_load():
    """Called in the fork server once the app is imported, before workers are forked.

    Then the server makes the surviving objects immortal (unless ``preload-immortal`` is off)
    and calls ``gc.freeze()``, which moves every object to a permanent generation so that the
    collector does not write to (and so copy) the pages the workers share with the fork server.

    The ``idna`` codec is looked up first: werkzeug's ``Map.bind`` encodes the Host with it on
    every request, so a Flask app would otherwise import ``encodings.idna`` (and
    ``stringprep``) in each worker at its first request, and the import writes to many pages
    the worker shared with the fork server (about 1.1 MiB copied per worker, measured with
    bench/pss). Done once here, the codec is shared instead. Importing it has no side effect.
    """
    import codecs
    import gc

    try:
        codecs.lookup("idna")
    except LookupError:
        pass
    gc.collect()


def enable_traceback_dump(signum):
    """On ``signum``, write every thread's Python traceback to stderr (the server log).

    The supervisor sends it to a worker that overran its timeout, just before killing it, so
    the log says where the app was stuck (uWSGI's harakiri prints a C backtrace; this is the
    Python one). faulthandler's handler is C code: it works while the app is blocked in C or
    holds the GIL.
    """
    import faulthandler

    faulthandler.register(signum, file=sys.stderr, all_threads=True, chain=False)


def flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def run_exit_hooks():
    """What a normal interpreter exit would run, for workers that end with os._exit."""
    try:
        import atexit

        atexit._run_exitfuncs()
    finally:
        flush_std_streams()


def python_info():
    return f"{sys.version.split()[0]} {sys.executable} (prefix {sys.prefix})"


def thread_count():
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 1
