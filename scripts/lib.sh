# Shared helpers for the scripts in this folder. Sourced, not run.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# The CPython the binary is built against. A build is tied to one minor version, and the app's
# virtualenv must use the same one. Override with FLASKHOST_PYTHON=/path/to/python3.X.
pick_python() {
  if [ -n "${FLASKHOST_PYTHON:-}" ]; then echo "$FLASKHOST_PYTHON"; return; fi
  local v p
  for v in 3.12 3.13 3.11; do
    if command -v pyenv >/dev/null 2>&1; then
      p="$(pyenv prefix "$(pyenv versions --bare 2>/dev/null | grep -E "^${v//./\\.}(\.[0-9]+)?$" | tail -n1)" 2>/dev/null || true)"
      if [ -n "$p" ] && [ -x "$p/bin/python$v" ]; then echo "$p/bin/python$v"; return; fi
    fi
    p="$(command -v "python$v" 2>/dev/null || true)"
    if [ -n "$p" ]; then echo "$p"; return; fi
  done
  command -v python3
}

PY="$(pick_python)"
PY_MINOR="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ||
  die "cannot run the Python ${PY:-(none found)}${FLASKHOST_PYTHON:+ (FLASKHOST_PYTHON)}"

# Where the virtualenv and the build go. The default Python uses .venv and target/; one chosen
# with FLASKHOST_PYTHON gets its own, .venv-3.X and target/py3.X, so that trying another
# version never rebuilds or replaces the default pair. FLASKHOST_VENV_DIR and CARGO_TARGET_DIR
# override either.
if [ -n "${FLASKHOST_PYTHON:-}" ]; then
  VENV="${FLASKHOST_VENV_DIR:-$ROOT/.venv-$PY_MINOR}"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/py$PY_MINOR}"
else
  VENV="${FLASKHOST_VENV_DIR:-$ROOT/.venv}"
fi
# Relative paths are the caller's; the scripts change directory.
[ "${VENV#/}" = "$VENV" ] && VENV="$PWD/$VENV"
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "${CARGO_TARGET_DIR#/}" = "$CARGO_TARGET_DIR" ]; then
  export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/flaskhost"
