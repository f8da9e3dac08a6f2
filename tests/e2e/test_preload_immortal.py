"""`preload-immortal` (default on): before forking workers, the fork server makes the objects the
app's import left alive immortal (CPython 3.12 and 3.13), so workers do not copy the pages that
hold them by writing their reference counts. Objects made after the fork are ordinary, and the
app's shared state still changes; what differs is documented: an object from the import is never
freed in a worker, so its finalizer does not run there. Off, or with --lazy-apps, nothing changes."""

import re
import subprocess

import pytest

from fhtest import BIN, clean_env

IMMORTAL = 2**31  # an immortal object's count reads as UINT_MAX on 3.12 and 3.13


def _build_version() -> tuple[int, int]:
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True,
                         env=clean_env(None, True), timeout=30).stdout
    m = re.search(r"CPython (\d+)\.(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def _supported() -> bool:
    return (3, 12) <= _build_version() < (3, 14)


def _counts(server) -> dict:
    r = server.get("/")
    assert r.status_code == 200, r.text
    return r.json()


def test_objects_from_the_import_are_immortal_in_forked_workers(serve):
    if not _supported():
        pytest.skip(f"CPython {_build_version()} has no immortal objects as 3.12 and 3.13 have them")
    server = serve("preload_objects:application", workers=1)
    first = _counts(server)
    assert first["import_refcount"] >= IMMORTAL, first
    assert first["request_refcount"] < 10, first  # made after the fork: counted as usual
    assert list(first["version"]) == list(_build_version())
    second = _counts(server)
    assert second["seen"] == first["seen"] + 1  # a module-level list still grows

    r = server.get("/drop")
    assert r.status_code == 200, r.text
    # The request's object is freed and finalized; the import's one is immortal: never freed.
    assert r.json()["finalized"] == ["request"]


@pytest.mark.parametrize("flags", [["--preload-immortal", "false"], ["--lazy-apps"]],
                         ids=["off", "lazy-apps"])
def test_without_it_objects_are_counted_and_freed_as_usual(serve, flags):
    server = serve("preload_objects:application", *flags, workers=1)
    counts = _counts(server)
    assert counts["import_refcount"] < 10, counts
    assert counts["request_refcount"] < 10, counts
    r = server.get("/drop")
    assert r.status_code == 200, r.text
    assert r.json()["finalized"] == ["import", "request"]


def test_the_environment_turns_it_off(serve):
    if not _supported():
        pytest.skip("no immortal objects in this CPython")
    server = serve("preload_objects:application", workers=1, env={"FLASKHOST_PRELOAD_IMMORTAL": "false"})
    assert _counts(server)["import_refcount"] < 10
