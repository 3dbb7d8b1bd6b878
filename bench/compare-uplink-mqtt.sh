#!/usr/bin/env bash
# The MQTT uplink against a bare rumqttc QoS 1 loop (bench/mqtt-baseline),
# both publishing the same number of messages of the same size to the same
# Mosquitto 2 on loopback (TLS, client certificates, the same in-flight
# window), rounds alternating, in one run.
# Installs mosquitto with apt-get where missing.
#
# Usage: bench/compare-uplink-mqtt.sh
# Environment: ROWS (default 200000), INFLIGHT (64), ROUNDS (3),
#   OUT (default target/bench-uplink-mqtt).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/target/bench-uplink-mqtt}
ROWS=${ROWS:-200000}
INFLIGHT=${INFLIGHT:-64}
ROUNDS=${ROUNDS:-3}
PORT=18884

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

step "tools"
if ! have mosquitto; then
  if have apt-get && [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mosquitto; else
    echo "mosquitto is needed" >&2; exit 1; fi
fi

step "build (release): the uplink_bench example, and the rumqttc baseline (its own lock file)"
mkdir -p "$OUT"
cargo build --release --locked -p sensegate-gateway --example uplink_bench >"$OUT/build.log" 2>&1 \
  || { tail -n 40 "$OUT/build.log" >&2; exit 1; }
CARGO_TARGET_DIR=$root/target/mqtt-baseline cargo build --release \
  --manifest-path bench/mqtt-baseline/Cargo.toml >>"$OUT/build.log" 2>&1 \
  || { tail -n 40 "$OUT/build.log" >&2; exit 1; }

start_work
step "certificates: a CA, the broker's, and the client's (CN=bench)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
for who in broker client; do
  cn=localhost; [ "$who" = client ] && cn=bench
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$work/$who.key" -out "$work/$who.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$work/$who.ext"
  openssl x509 -req -in "$work/$who.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/$who.ext" -out "$work/$who.pem" 2>/dev/null
done
openssl pkcs8 -topk8 -nocrypt -in "$work/client.key" -out "$work/client8.key"
chmod 0755 "$work"; chmod 0644 "$work"/*

cat >"$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous false
persistence false
listener $PORT 127.0.0.1
cafile $work/ca.pem
certfile $work/broker.pem
keyfile $work/broker.key
require_certificate true
use_identity_as_username true
max_inflight_messages $INFLIGHT
max_queued_messages 0
log_dest stderr
log_type error
CONF
mosquitto -c "$work/mosquitto.conf" 2>"$OUT/mosquitto.log" &
pids+=($!)
wait_port "${pids[-1]}" "127.0.0.1:$PORT" "$OUT/mosquitto.log"

export MQTT_PORT=$PORT MQTT_CA=$work/ca.pem MQTT_CERT=$work/client.pem MQTT_KEY=$work/client8.key
export COUNT=$ROWS ROWS INFLIGHT
: >"$OUT/result.txt"
for round in $(seq "$ROUNDS"); do
  step "round $round: the rumqttc baseline, then the uplink"
  "$root/target/mqtt-baseline/release/mqtt-baseline" | tee -a "$OUT/result.txt"
  UPLINK_BENCH=mqtt "$root/target/release/examples/uplink_bench" | tee -a "$OUT/result.txt"
done
