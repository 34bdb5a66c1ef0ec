#!/usr/bin/env bash
# The one place that says what dumpsafe needs on Debian/Ubuntu: PostgreSQL client tools of
# every supported major (dumpsafe runs the pg_dump/pg_restore of the server's major or
# newer), from the PostgreSQL project's apt repository when the distribution lacks them,
# and dumpsafe itself in a virtualenv.
#
#   deploy/install.sh [SOURCE]     SOURCE: a dumpsafe wheel, sdist or source tree to install
#
# deploy/Dockerfile runs it to build the image; the tests run it on the CI host, where it
# only checks (it installs nothing that is already there).
# Environment: PG_MAJORS (default "14 15 16 17 18"), DUMPSAFE_PREFIX (virtualenv, default
# /opt/dumpsafe), DRY_RUN=1 (print what would be installed, change nothing).
set -euo pipefail

PG_MAJORS="${PG_MAJORS:-14 15 16 17 18}"
PREFIX="${DUMPSAFE_PREFIX:-/opt/dumpsafe}"
SOURCE="${1:-}"
run() { if [ "${DRY_RUN:-}" = 1 ]; then echo "would run: $*"; else "$@"; fi; }

missing=()
for major in $PG_MAJORS; do
  if [ -x "/usr/lib/postgresql/$major/bin/pg_dump" ] && [ -x "/usr/lib/postgresql/$major/bin/pg_restore" ]; then
    echo "postgresql-client-$major: present"
  else
    missing+=("postgresql-client-$major")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME}")"
  if [ ! -e /etc/apt/sources.list.d/pgdg.list ]; then
    # the PostgreSQL project's repository has every supported major for every Debian/Ubuntu release
    run $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
    run $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends ca-certificates curl gnupg
    run $SUDO install -d -m 0755 /usr/share/postgresql-common/pgdg
    run $SUDO curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc
    line="deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${codename}-pgdg main"
    if [ "${DRY_RUN:-}" = 1 ]; then echo "would write /etc/apt/sources.list.d/pgdg.list: $line"; else echo "$line" | $SUDO tee /etc/apt/sources.list.d/pgdg.list >/dev/null; fi
  fi
  run $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  run $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -n "$SOURCE" ]; then
  run python3 -m venv "$PREFIX"
  run "$PREFIX/bin/pip" install --no-cache-dir --quiet "$SOURCE"
fi

if [ "${DRY_RUN:-}" != 1 ]; then
  for major in $PG_MAJORS; do
    "/usr/lib/postgresql/$major/bin/pg_dump" --version
  done
  if [ -n "$SOURCE" ]; then "$PREFIX/bin/dumpsafe" --version; fi
fi
