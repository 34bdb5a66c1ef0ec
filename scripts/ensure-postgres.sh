#!/usr/bin/env bash
# Install PostgreSQL server binaries through the OS package manager when none are found
# (in /usr/lib/postgresql/*/bin or on PATH). Debian/Ubuntu: apt-get; no cluster is created.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found and apt-get is unavailable: install PostgreSQL (initdb, pg_ctl, pg_dump) and retry" >&2
  exit 1
fi
echo "installing PostgreSQL with apt-get (no default cluster is created)"
$SUDO mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null
