#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver when missing: the dashboard's
# browser tests drive the real browser. Debian/Ubuntu: apt-get, no network downloads.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium and chromedriver not found and apt-get is unavailable: install Chromium and its driver and retry" >&2
  exit 1
fi
echo "installing chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
