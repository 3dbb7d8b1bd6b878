#!/usr/bin/env bash
# Real clients nobody on the project wrote, against the daemon built in
# target/debug:
# - MQTT: mosquitto_pub/mosquitto_sub (Debian's mosquitto-clients),
#   paho-mqtt (PyPI) and MQTT.js (npm `mqtt`), in MQTT 3.1.1 and 5
#   (interop/mqtt_interop.py);
# - HTTP ingest: the InfluxDB clients for Python (PyPI `influxdb-client`)
#   and JavaScript (npm `@influxdata/influxdb-client`), and curl
#   (interop/ingest_interop.py).
# Installs what is missing (pinned versions), then runs both.
# Usage: scripts/interop.sh   (after `cargo build -p sensegate-cli`)
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
have mosquitto_sub && have mosquitto_pub || missing+=(mosquitto-clients)
have curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if have apt-get; then apt-get update -qq && apt-get install -y -qq "${missing[@]}"; else
    echo "needed: ${missing[*]}" >&2; exit 1; fi
fi
pip_pin() { # module, version attribute check, requirement
  python3 -c "import $1, sys; sys.exit($1.__version__ != '$2')" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check "$3"
}
pip_pin paho.mqtt 2.2.0 'paho-mqtt==2.2.0'
pip_pin influxdb_client 1.50.0 'influxdb-client==1.50.0'
# Exactly the packages in interop/package-lock.json.
( cd interop
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi )
export SENSEGATE_BIN="$PWD/target/debug/sensegate"
python3 interop/mqtt_interop.py
python3 interop/ingest_interop.py
