#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when it is missing.
# Playwright drives this system browser; it never downloads a browser of its own.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian chromium for the browser tests..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null || echo "warning: chromium install failed; browser tests will fail"
else
    echo "warning: /usr/bin/chromium missing and cannot apt-get install it; browser tests will fail"
fi
exit 0
