# Sourced by the ensure-*.sh scripts: install Debian/Ubuntu packages with apt-get, waiting for
# another apt run's lock (a second `make test` beside this one installs the same packages), or
# say in one sentence what to install by hand where there is no apt-get.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# require_apt MISSING HINT: MISSING names what was not found, HINT what to install by hand.
require_apt() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$1 not found and apt-get is unavailable: install $2 and retry" >&2
    exit 1
  fi
}

# apt_install APT-ARGS...
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}
