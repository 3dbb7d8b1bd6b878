#!/usr/bin/env bash
# The OpenAPI document as a contract: schemathesis (PyPI, pinned) against a
# live `sensegate serve` on loopback (history on, the simulated sensors
# feeding the stream), with its admin token, over every operation of
# /api/v1/openapi.json; any failure fails this script.
# The daemon under test allows many failed authentications from one
# address: schemathesis sends thousands of requests with bad credentials
# on purpose (the throttle has tests of its own).
# Usage: scripts/api-contract.sh   (after `cargo build -p sensegate-cli`)
#   ST_EXAMPLES   test cases per operation (default 60)
#   ST_SEED       the seed (default: fixed, so a CI failure can be replayed)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
python3 -c 'import schemathesis, sys; sys.exit(schemathesis.__version__ != "4.32.5")' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check 'schemathesis==4.32.5'

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -m 700 "$work/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/sensegate.toml" <<TOML
[server]
data_dir = "$work/data"
[native]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:$port"
[sim]
enabled = true
[limits]
auth_failures_per_minute = 1000000
TOML
"$ROOT/target/debug/sensegate" serve --config "$work/sensegate.toml" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/data/admin.token" ] && break; sleep 0.1; done
[ -s "$work/data/admin.token" ] || { cat "$work/serve.log" >&2; echo "the daemon did not start" >&2; exit 1; }
token=$(cat "$work/data/admin.token")
cd "$work"
schemathesis --config-file "$ROOT/interop/schemathesis.toml" run \
  "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "${ST_EXAMPLES:-60}" --seed "${ST_SEED:-20261201}" \
  --no-color
