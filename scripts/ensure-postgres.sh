#!/usr/bin/env bash
# Install PostgreSQL server binaries through the OS package manager when none are found
# (in /usr/lib/postgresql/*/bin or on PATH). Debian/Ubuntu: apt-get; no cluster is created.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
require_apt "PostgreSQL server binaries" "PostgreSQL (initdb, pg_ctl, pg_dump)"
echo "installing PostgreSQL with apt-get (no default cluster is created)"
$SUDO mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
apt_install postgresql postgresql-contrib
