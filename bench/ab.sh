#!/usr/bin/env bash
# Two sensegate builds side by side: the same load tool runs each scenario
# against build A, then build B, then A and B again (ROUNDS times), so both
# see the same machine in the same minutes (absolute figures on a shared
# 2-core machine drift by 2x from hour to hour; only a same-run comparison
# counts; the order alternates by round). Prints every row, tagged A or B.
#
# Usage: bench/ab.sh A_BINARY B_BINARY
#   A_BINARY, B_BINARY  two `sensegate` executables (say, a release build of
#                       main and one of a branch)
# Environment: ROUNDS (default 2), SCENARIOS (comma-separated, default
#   fanout,hold,hold-tls,ingest,attack,churn), SUBSCRIBERS (fan-out, default 1000),
#   RATES (fan-out readings/s, default 1000,4000), HOLD (idle connections,
#   default 5000), OUT (rows and logs; default target/bench-ab).
#
# Scenarios: fan-out over plain TCP at fixed rates, idle connection memory
# over TCP and TLS 1.3, ingest with acknowledgement (history on), the attack
# scenario (subscriber p99 loaded against unloaded, over 15 s windows: 5 s
# hold about 1,000 samples, too few for a steady p99 of a fraction of a
# millisecond), and subscription churn over 1,000 simulated sensors
# (subscriber p99 loaded against unloaded). A build that does not know a config key the other
# needs (say, a cap added since) is given the config without it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
A=${1:?usage: bench/ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/ab.sh A_BINARY B_BINARY}
ROUNDS=${ROUNDS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATES=${RATES:-1000,4000}
HOLD=${HOLD:-5000}
SCENARIOS=${SCENARIOS:-fanout,hold,hold-tls,ingest,attack,churn}
want() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
OUT=${OUT:-$root/target/bench-ab}
PORT=17520

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

mkdir -p "$OUT"
command -v openssl >/dev/null || { echo "openssl is required (for the TLS step)" >&2; exit 1; }
step "build the load tool (release)"
cargo build --release --locked -p sensegate-bench >"$OUT/build.log" 2>&1
BENCH=$root/target/release/sensegate-bench
ulimit -n 65536 2>/dev/null || true
start_work
make_cert

# Starts BINARY ($1) with the extra config lines ($2); lines after "##new"
# are kept only if the binary accepts them. Sets sg_pid and token.
start() {
  local bin=$1 extra=$2 dir
  dir=$(mktemp -d "$work/sg-XXXX")
  chmod 700 "$dir"
  local base="[server]
data_dir = \"$dir\"
audit_log = \"\"
[native]
listen = \"127.0.0.1:$PORT\"
${NATIVE_EXTRA:-}
[http]
enabled = false"
  local known=${extra%%##new*} new=""
  [[ $extra == *"##new"* ]] && new=${extra#*##new}
  printf '%s\n%s\n%s\n' "$base" "$known" "$new" >"$dir/try.toml"
  if "$bin" check-config "$dir/try.toml" >/dev/null 2>&1; then
    cp "$dir/try.toml" "$dir/sensegate.toml"
  else
    printf '%s\n%s\n' "$base" "$known" >"$dir/sensegate.toml"
  fi
  SENSEGATE_LOG=warn "$bin" serve --config "$dir/sensegate.toml" >"$dir/log" 2>&1 &
  sg_pid=$!
  pids+=("$sg_pid")
  for _ in $(seq 100); do
    # Copied before anything uses it: newer builds remove it once used.
    if [ -s "$dir/admin.token" ]; then cp "$dir/admin.token" "$dir/bench.token"; token=$dir/bench.token; return 0; fi
    sleep 0.1
  done
  echo "sensegate did not start:" >&2; cat "$dir/log" >&2; exit 1
}

FANOUT='[store]
enabled = false
[limits]
max_connections = 20000
max_connections_per_address = 20000
idle_timeout_secs = 3600
push_rate_per_sec = 1000000
##new
max_patterns_per_token = 20000
max_patterns_per_address = 20000'
CHURN='[store]
enabled = false
[sim]
enabled = true
sensors = 1000
rate_hz = 10
[limits]
max_connections = 20000
max_connections_per_address = 20000
##new
max_patterns_per_token = 20000
max_patterns_per_address = 20000'
ATTACK='[store]
enabled = false'
INGEST='[limits]
max_connections_per_address = 20000
push_rate_per_sec = 10000000'

run() { # $1 label, $2 binary, $3 config, then the bench arguments
  local label=$1 bin=$2 conf=$3
  shift 3
  start "$bin" "$conf"
  "$BENCH" "$1" --addr "127.0.0.1:$PORT" --token-file "$token" --pid "$sg_pid" "${@:2}" \
    --json "$OUT/$label.jsonl" 2>>"$OUT/bench.log" | tail -n 1 | sed "s/^/$label /"
  stop "$sg_pid"
}

for round in $(seq "$ROUNDS"); do
  # A then B in odd rounds, B then A in even ones: neither build always
  # runs first (warm caches, a neighbour's load).
  order="A B"
  [ $((round % 2)) = 0 ] && order="B A"
  if want fanout; then
    step "round $round: fan-out, $SUBSCRIBERS subscribers, rates $RATES (readings/s)"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      start "$bin" "$FANOUT"
      # The tool's header once, then each build's rows.
      "$BENCH" fanout --addr "127.0.0.1:$PORT" --token-file "$token" --pid "$sg_pid" \
        --subscribers "$SUBSCRIBERS" --rates "$RATES" --json "$OUT/fanout-$side.jsonl" \
        2>>"$OUT/bench.log" | grep '^|' | if [ $side = A ]; then sed -n '1p;3,$p'; else tail -n +3; fi \
        | sed "s/^/$side /"
      stop "$sg_pid"
    done
  fi
  if want hold; then
    step "round $round: $HOLD idle connections (bytes per connection)"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      run "hold-$side" "$bin" "$FANOUT" hold --connections "$HOLD"
    done
  fi
  if want hold-tls; then
    step "round $round: $HOLD idle TLS 1.3 connections (bytes per connection)"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      NATIVE_EXTRA="tls_cert = \"$work/cert.pem\"
  tls_key = \"$work/key8.pem\"" run "hold-tls-$side" "$bin" "$FANOUT" hold --connections "$HOLD" \
        --tls-cert "$work/cert.pem"
    done
  fi
  if want ingest; then
    step "round $round: ingest, 8 devices, batches of 1, 100, 1000 (committed/s, ack p99 ms)"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      start "$bin" "$INGEST"
      "$BENCH" ingest --addr "127.0.0.1:$PORT" --token-file "$token" --pid "$sg_pid" \
        --devices 8 --batch 1,100,1000 --secs 4 --json "$OUT/ingest-$side.jsonl" \
        2>>"$OUT/bench.log" | grep '^|' | tail -n +3 | sed "s/^/$side /"
      stop "$sg_pid"
    done
  fi
  if want attack; then
    step "round $round: attack, 15 s windows (subscriber p99 unloaded, loaded, ratio)"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      run "attack-$side" "$bin" "$ATTACK" attack --slow 2000 --rate 1000 --secs 15
    done
  fi
  if want churn; then
    step "round $round: subscription churn, 64 x 64 never-matching patterns, 1,000 sensors at 10 Hz"
    for side in $order; do
      bin=$A; [ $side = B ] && bin=$B
      run "churn-$side" "$bin" "$CHURN" churn --holders 64 --patterns 64 --secs 5
    done
  fi
done
echo
echo "rows: $OUT"
