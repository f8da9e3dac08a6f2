"""Memory that grows on request (for reload-on-rss), and the worker's pid.

/grow?mb=N  -> keeps N more MiB alive in this worker, answers with the pid and the total held
/pid        -> the pid
"""

import os

from _wsgitest import query, respond_json, validated

HELD = []


def grow(environ, start_response):
    q = query(environ)
    if environ["PATH_INFO"] == "/grow":
        mb = int(q.get("mb", "10"))
        # Touch every page so the memory is resident, not just reserved.
        HELD.append(bytearray(b"x" * (mb << 20)))
    return respond_json(start_response, {"pid": os.getpid(), "held_mb": sum(len(b) for b in HELD) >> 20})


application = validated(grow)
