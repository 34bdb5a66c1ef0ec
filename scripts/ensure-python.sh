#!/usr/bin/env bash
# Make sure python3 (>= 3.11) can create a virtualenv; on Debian/Ubuntu install python3-venv if not.
set -euo pipefail
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "dumpsafe needs Python 3.11 or newer as '$PY' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
tmp=$(mktemp -d)
if ! "$PY" -m venv "$tmp/v" >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "python${ver}-venv" >/dev/null 2>&1 || $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf "$tmp"
