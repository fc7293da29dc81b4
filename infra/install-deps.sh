#!/usr/bin/env bash
# Installs the system tools the local infrastructure needs, where this machine allows it:
# redis-server from Debian's packages (root + apt-get). Java 17+ and Maven must already be present.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=("java (OpenJDK 17+)")
command -v mvn >/dev/null || missing+=("mvn (Apache Maven)")
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing redis-server from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    missing+=("redis-server (apt-get install redis-server)")
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}; install them, or use docker-compose.yml" >&2
  exit 2
fi
