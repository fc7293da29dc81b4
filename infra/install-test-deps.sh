#!/usr/bin/env bash
# What the test suite needs beyond the demo: Debian's Chromium for the dashboard's browser test.
# --no-install-recommends keeps it to the browser (the recommends pull ~160 MB of extras).
set -euo pipefail
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "missing: chromium (apt-get install chromium) for the dashboard browser test" >&2
    exit 2
  fi
fi
