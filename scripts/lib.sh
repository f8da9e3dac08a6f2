# Shared helpers for the scripts in this folder. Sourced, not run.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLASKHOST_VENV_DIR:-$ROOT/.venv}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

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
