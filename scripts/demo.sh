#!/usr/bin/env bash
# Builds the dashboard and the daemon (release) and runs the demo gateway:
# simulated sensors, a sandboxed C driver, TLS, nothing to configure.
# Extra arguments go to `sensegate demo` (e.g. --sim-sensors 50).
# Usage: scripts/demo.sh [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-web.sh
export SENSEGATE_REQUIRE_DASHBOARD=1
exec cargo run --release --locked -p sensegate-cli -- demo "$@"
