#!/usr/bin/env bash
# Debian packages the tests need: headless Chromium and its WebDriver for the
# page test (tests/applications/test_serve_browser.py). Quick when they are already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci_system_deps.sh: no apt-get here; install Chromium and its chromedriver (/usr/bin/chromedriver)" \
         "with the system's package manager, or tests/applications/test_serve_browser.py skips" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
