#!/usr/bin/env bash
# Installs the dashboard's npm packages (exactly those in package-lock.json)
# and builds it into web/dist, which the daemon's build embeds.
# Usage: scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required to build the dashboard (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
# Reinstall only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# Rebuild only when a source is newer than the build: a rewritten web/dist
# makes cargo rebuild the daemon that embeds it.
if [ -f dist/index.html ] && [ -z "$(find src index.html build.mjs package-lock.json -newer dist/index.html -print -quit)" ]; then
  exit 0
fi
npm run --silent build
