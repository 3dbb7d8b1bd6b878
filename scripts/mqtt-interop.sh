#!/usr/bin/env bash
# Real MQTT clients nobody on the project wrote, against the daemon built
# in target/debug: mosquitto_pub/mosquitto_sub (Debian's mosquitto-clients),
# paho-mqtt (PyPI) and MQTT.js (npm `mqtt`), in MQTT 3.1.1 and 5. Installs
# what is missing, then runs interop/mqtt_interop.py.
# Usage: scripts/mqtt-interop.sh   (after `cargo build -p sensegate-cli`)
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
if ! have mosquitto_sub || ! have mosquitto_pub; then
  if have apt-get; then apt-get update -qq && apt-get install -y -qq mosquitto-clients; else
    echo "mosquitto-clients is required" >&2; exit 1; fi
fi
python3 -c 'import paho.mqtt, sys; sys.exit(paho.mqtt.__version__ != "2.2.0")' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check 'paho-mqtt==2.2.0'
# Exactly the packages in interop/package-lock.json.
( cd interop
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi )
SENSEGATE_BIN="$PWD/target/debug/sensegate" python3 interop/mqtt_interop.py
