"""An app whose version is read from a file when it is imported, for reload tests.

The file is $RELOADABLE_VERSION_FILE. If it holds ``broken``, importing fails (a reload to a
broken release must leave the running workers serving).

/        -> {"version": V, "pid": P}
/slow?s=N -> the same after sleeping N seconds (a request in flight during a reload)
"""

import os
import time

from _wsgitest import query, respond_json, validated

with open(os.environ["RELOADABLE_VERSION_FILE"]) as f:
    VERSION = f.read().strip()

if VERSION == "broken":
    raise RuntimeError("this release of the app does not import")


def reloadable(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(query(environ).get("s", "0.2")))
    return respond_json(start_response, {"version": VERSION, "pid": os.getpid()})


application = validated(reloadable)
