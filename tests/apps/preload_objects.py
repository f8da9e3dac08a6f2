"""Objects made by the import and objects made by a request, as a worker sees them.

With the default preload (`preload-immortal`), the fork server makes every object its import
left alive immortal before forking, so a worker never writes their reference counts. This app
answers with what that means for the app:

- ``/``: the reference count of an object made at import and of one made by the request, and
  how many requests this worker's module-level list has recorded (shared state still changes);
- ``/drop``: drops the last reference to an object made at import and to one made by the
  request, each watched by ``weakref.finalize``, collects, and answers with which finalizers
  ran (an immortal object is never freed, so its finalizer does not run).
"""

import gc
import sys
import weakref

from _wsgitest import respond_json, validated


class Thing:
    pass


MADE_AT_IMPORT = Thing()
HELD = {"import": Thing()}
SEEN = []
FINALIZED = []
weakref.finalize(HELD["import"], FINALIZED.append, "import")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    SEEN.append(path)
    if path == "/drop":
        made_now = Thing()
        weakref.finalize(made_now, FINALIZED.append, "request")
        del made_now
        HELD.pop("import", None)
        gc.collect()
        return respond_json(start_response, {"finalized": sorted(FINALIZED)})
    made_now = Thing()
    return respond_json(start_response, {
        "import_refcount": sys.getrefcount(MADE_AT_IMPORT),
        "request_refcount": sys.getrefcount(made_now),
        "seen": len(SEEN),
        "version": list(sys.version_info[:2]),
    })


application = validated(application)
