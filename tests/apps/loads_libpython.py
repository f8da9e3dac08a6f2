"""At import, loads the interpreter's shared libpython into the process the way an extension
module linked against it would (ctypes, so nothing of it is called). A flaskhost with CPython
linked in statically must say in its log that the process now holds two CPythons."""

import ctypes
import sysconfig
from pathlib import Path

from _wsgitest import validated

_lib = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("LDLIBRARY")
LOADED = ctypes.CDLL(str(_lib))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(_lib).encode()]


application = validated(application)
