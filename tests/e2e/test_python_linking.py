"""How the embedded CPython is linked: statically by default when the build interpreter ships
libpythonX.Y.a (crates/flaskhost/build.rs), with extension modules still loading, and a clear
log line when something drags the shared libpython into a statically linked worker."""

import os
import subprocess
from pathlib import Path

import pytest

from fhtest import BIN, VENV, clean_env


def _build_python_archive() -> Path | None:
    """The static libpython of the interpreter the test venv (and so the build) uses."""
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-c",
         "import sysconfig as s; print(s.get_config_var('LIBPL') or ''); "
         "print(s.get_config_var('LIBRARY') or '')"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    archive = Path(out[0]) / out[1] if len(out) == 2 and out[1].endswith(".a") else None
    return archive if archive and archive.is_file() else None


def _version_text() -> str:
    r = subprocess.run([str(BIN), "--version"], capture_output=True, text=True,
                       env=clean_env(None, True), timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _is_static() -> bool:
    return "libpython linked statically" in _version_text()


def test_version_names_the_python_and_the_linking():
    text = _version_text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("flaskhost "), text
    assert lines[1].startswith("CPython 3."), text
    if _build_python_archive() is not None and os.environ.get("FLASKHOST_LIBPYTHON") != "shared":
        # The default build links the archive; a regression in build.rs would fall back to the
        # shared library silently, and this is where it shows.
        assert lines[1].endswith("libpython linked statically"), text
    else:
        assert "libpython /" in lines[1] and ".so" in lines[1], text


def test_extension_modules_load_in_workers(serve, app_mode):
    server = serve("extensions:application", *app_mode, workers=1)
    r = server.get("/")
    assert r.status_code == 200, r.text
    body = r.json()
    for name, where in body["loaded"].items():
        assert where and not where.startswith("ImportError"), (name, where)
        assert where.endswith(".so"), (name, where)  # really a dlopen'd extension module
    assert body["computed"] == {"json": '{"a": [1, 2.5]}', "decimal": "3.3", "sqlite": 42,
                                "escape": "&lt;b&gt;"}
    if _is_static():
        assert body["libpython_maps"] == [], body["libpython_maps"]
        assert "holds two CPythons" not in server.output()
    else:
        assert any(".so" in m for m in body["libpython_maps"]), body["libpython_maps"]


def test_main_process_maps_no_shared_libpython_when_static(serve):
    if not _is_static():
        pytest.skip("this build links the shared libpython")
    server = serve("hello:application", workers=1)
    assert server.get("/").status_code == 200
    with open(f"/proc/{server.proc.pid}/maps") as f:
        assert not [line for line in f if "libpython" in line]


def test_a_shared_libpython_dragged_into_a_static_worker_is_reported(serve, app_mode):
    if not _is_static():
        pytest.skip("this build links the shared libpython: nothing to report")
    server = serve("loads_libpython:application", *app_mode, workers=1)
    r = server.get("/")
    assert r.status_code == 200
    assert r.text.endswith(".so"), r.text
    line = server.wait_for_line(r"holds two CPythons")
    assert "FLASKHOST_LIBPYTHON=shared" in server.output()
    assert line is not None
