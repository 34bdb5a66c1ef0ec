#!/usr/bin/env bash
# Install Debian's age and zstd when missing: the "without dumpsafe" test restores a backup
# with only these stock tools, pg_restore and tar. Debian/Ubuntu: apt-get, no other downloads.
set -euo pipefail
if command -v age >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "age or zstd not found and apt-get is unavailable: install age and zstd and retry" >&2
  exit 1
fi
echo "installing age and zstd with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq age zstd >/dev/null
