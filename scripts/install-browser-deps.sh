#!/usr/bin/env bash
# The browser the UI lineage test drives: Debian's chromium (Playwright cannot download its own
# browser builds here). The Playwright Python package is a dev dependency (setup.py), installed by
# `make venv`. Idempotent; quick when chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
# chromium pulls its libraries (nss, gtk) and, as recommended packages, the fonts the screenshot
# needs for readable text on a minimal image.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
/usr/bin/chromium --version
