#!/usr/bin/env bash
# Install the OpenSSH server through apt when /usr/sbin/sshd is missing (the tests start
# their own sshd on 127.0.0.1 with a throwaway key; no system service is started or enabled).
set -euo pipefail
if [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
require_apt "sshd" "the OpenSSH server (sshd)"
echo "installing openssh-server with apt-get (its system service is not started)"
# policy-rc.d 101: packages must not start daemons during this install
POLICY=/usr/sbin/policy-rc.d
CREATED=""
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  CREATED=1
fi
trap '[ -n "$CREATED" ] && $SUDO rm -f "$POLICY"' EXIT
apt_install --no-install-recommends openssh-server
