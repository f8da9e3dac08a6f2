"""Imports C extension modules when a request asks (stdlib ones from lib-dynload and the venv's
markupsafe speedups): each is a shared object that the worker loads with dlopen and that must
find CPython's symbols in the process (in a static build: the flaskhost executable's own).
Answers with where each came from and what it computed, plus the worker's memory maps'
libpython files (none in a static build)."""

import importlib
import os

from _wsgitest import respond_json, validated

MODULES = ["_json", "_decimal", "_ssl", "_sqlite3", "_ctypes", "markupsafe._speedups"]


def application(environ, start_response):
    loaded = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
            loaded[name] = getattr(mod, "__file__", None)
        except ImportError as exc:  # reported, the test decides
            loaded[name] = f"ImportError: {exc}"
    import decimal
    import json
    import sqlite3

    from markupsafe import escape

    computed = {
        "json": json.dumps({"a": [1, 2.5]}),
        "decimal": str(decimal.Decimal("1.1") + decimal.Decimal("2.2")),
        "sqlite": sqlite3.connect(":memory:").execute("select 6 * 7").fetchone()[0],
        "escape": str(escape("<b>")),
    }
    with open("/proc/self/maps") as f:
        maps = sorted({line.split()[-1] for line in f if "libpython" in line})
    return respond_json(start_response, {
        "loaded": loaded, "computed": computed, "libpython_maps": maps, "pid": os.getpid(),
    })


application = validated(application)
