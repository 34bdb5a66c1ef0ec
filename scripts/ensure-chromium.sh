#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver when missing: the dashboard's
# browser tests drive the real browser. Debian/Ubuntu: apt-get, no network downloads.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
require_apt "chromium and chromedriver" "Chromium and its driver"
echo "installing chromium and chromium-driver with apt-get"
apt_install chromium chromium-driver fonts-dejavu-core
