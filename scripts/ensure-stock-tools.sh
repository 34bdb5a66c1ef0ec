#!/usr/bin/env bash
# Install Debian's age and zstd when missing: the "without dumpsafe" test restores a backup
# with only these stock tools, pg_restore and tar. Debian/Ubuntu: apt-get, no other downloads.
set -euo pipefail
if command -v age >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
require_apt "age or zstd" "age and zstd"
echo "installing age and zstd with apt-get"
apt_install age zstd
