#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the tools it needs, then
# runs every check CI runs. Usage: scripts/test-all.sh
#
# Environment:
#   FUZZ_SECONDS  seconds per fuzz target (default 20; 0 skips fuzzing)
#   E2E           0 skips the browser test (default 1)
#   INTEROP       0 skips the real-client interoperability tests and the
#                 OpenAPI contract run (schemathesis) (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
E2E=${E2E:-1}
INTEROP=${INTEROP:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# CI builds once from a fresh clone: incremental state would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
# The daemon's build embeds the dashboard; here a missing build is an error.
export SENSEGATE_REQUIRE_DASHBOARD=1

step() { printf '\n==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

step "tools"
have cargo-nextest || cargo install cargo-nextest --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^miri' \
  || rustup component add --toolchain nightly miri rust-src
have cargo-deny || cargo install cargo-deny --locked
if [ "$FUZZ_SECONDS" != 0 ]; then have cargo-fuzz || cargo install cargo-fuzz --locked; fi

# A C compiler with AddressSanitizer for the reference drivers (Debian's gcc
# brings libasan and libubsan).
if ! have cc; then
  if have apt-get; then apt-get update -qq && apt-get install -y -qq gcc libc6-dev; else
    echo "a C compiler (cc) is required" >&2; exit 1; fi
fi

# Node.js and npm for the dashboard's build, Chromium for its browser test
# (Debian's packages; the test drives it with playwright-core, which never
# downloads a browser).
need_apt=()
have node || need_apt+=(nodejs)
have npm || need_apt+=(npm)
# The layering check (scripts/check-layers.py).
have python3 || need_apt+=(python3)
if [ "$E2E" != 0 ] && ! have chromium; then need_apt+=(chromium); fi
# PostgreSQL 15 for the PostgreSQL uplink's tests (each starts its own cluster with
# initdb, as the postgres user when run as root).
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql-15)
# Mosquitto 2 and its clients for the MQTT uplink's tests (each starts its
# own broker; mosquitto_sub is the site's reader).
have mosquitto || need_apt+=(mosquitto)
have mosquitto_sub || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  if have apt-get; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else
    echo "missing: ${need_apt[*]}" >&2; exit 1; fi
fi

step "dashboard: install and build (web/dist, embedded by the daemon's build)"
scripts/build-web.sh

step "format"
cargo fmt --all -- --check

step "unsafe only in crates/ffi"
scripts/check-unsafe.sh

step "layers: the core crate has no HTTP, TLS, SQLite, mio or serial crate; no module cycle"
scripts/check-layers.py

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# The core's catalog, hub and registry are private; only its test-support
# feature (tests and benchmarks) opens them. Built without it, as a release
# build is, the daemon must reach them only through the service.
step "front ends and sources reach the core only through the service"
cargo check -p sensegate-gateway -p sensegate-cli --locked

step "tests"
mkdir -p target
cargo nextest run --workspace --all-features --locked --no-fail-fast 2>&1 | tee target/nextest.log
summary=$(grep -E '^ *Summary' target/nextest.log | tail -n 1)
passed=$(sed -n -E 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
failed=$(sed -n -E 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")

if [ "$E2E" != 0 ]; then
  step "dashboard in Chromium (playwright-core): screenshots in target/e2e"
  cargo build -p sensegate-cli --locked
  ( cd web && SENSEGATE_BIN="$PWD/../target/debug/sensegate" E2E_OUT="$PWD/../target/e2e" node tests/e2e.mjs )
fi

if [ "$INTEROP" != 0 ]; then
  step "real clients against the daemon: mosquitto clients, paho-mqtt, MQTT.js (MQTT 3.1.1 and 5); influxdb-client for Python and JavaScript, curl (HTTP ingest)"
  cargo build -p sensegate-cli --locked
  scripts/interop.sh
  step "the OpenAPI document as a contract: schemathesis over every operation of a live daemon"
  scripts/api-contract.sh
fi

# The last use of the dev build: a build whose uplink moves its cursor
# before the server confirmed a batch must lose readings when the server
# crashes, and the fault-injection test must see it (its check can fail).
step "negative control: the uplink built with SENSEGATE_FAULT_CONFIRM_EARLY loses readings, and the test sees it"
SENSEGATE_FAULT_CONFIRM_EARLY=1 cargo nextest run -p sensegate-cli --locked \
  --test uplink_postgres -E 'test(=postgres_crashed_mid_stream)' --no-capture 2>&1 \
  | tee target/negative-control.log
grep -q 'negative control: .* acknowledged readings lost, as expected' target/negative-control.log

step "dependency policy (licences, bans, sources)"
cargo deny --all-features check licenses bans sources

step "reference C drivers under AddressSanitizer and UBSan"
scripts/check-drivers.sh

# What follows builds with other toolchains and flags (Miri, the fuzzers'
# sanitizer builds) and never uses the dev build again: in CI, free its disk
# before they start.
if [ "${CI:-}" = true ]; then
  step "CI: remove the dev build ($(du -sh target/debug 2>/dev/null | cut -f1)) before the sanitizer builds"
  rm -rf target/debug
fi

step "miri: the ffi crate"
cargo +nightly miri test -p sensegate-ffi --locked

if [ "$FUZZ_SECONDS" != 0 ]; then
  step "fuzz: ${FUZZ_SECONDS}s per target"
  # fuzz/: the parsers that stand alone (no daemon linked);
  # crates/gateway/fuzz/: what only the whole daemon parses (its config).
  for dir in fuzz crates/gateway/fuzz; do
    ( cd "$dir"
      for target in $(cargo +nightly fuzz list); do
        mkdir -p "corpus/$target"
        log="target/fuzz-$target.log"
        mkdir -p target
        if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >"$log" 2>&1; then
          tail -n 60 "$log"
          echo "fuzz target $target failed" >&2
          exit 1
        fi
        printf '%s: %s\n' "$target" "$(grep -E '^Done' "$log" || echo 'finished')"
      done )
    # In CI, each fuzz build's disk is freed before the next one starts
    # (the logs stay).
    if [ "${CI:-}" = true ]; then
      case "$dir" in
        fuzz) rm -rf fuzz/target/x86_64-unknown-linux-gnu fuzz/target/release ;;
        crates/gateway/fuzz) rm -rf target/fuzz-gateway ;;
      esac
    fi
  done
fi

step "all checks passed"
# The plain closing line CI reads: the workspace test count from nextest.
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
