#!/usr/bin/env bash
# The PostgreSQL uplink against a bare tokio-postgres loop doing the same
# COPY-staging-upsert batches, and its upload lag at a steady rate, on one
# PostgreSQL 15 server on loopback (its own cluster, TLS only, SCRAM,
# fsync and synchronous_commit on), in one run
# (crates/gateway/examples/uplink_bench.rs says what each phase measures).
# Installs postgresql-15 with apt-get where missing.
#
# Usage: bench/compare-uplink.sh
# Environment: ROWS (default 1000000), BATCH (5000), RATE (10000),
#   LAG_SECS (20), OUT (default target/bench-uplink).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/target/bench-uplink}
PORT=15432

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

step "tools"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pgbin" ]; then
  if have apt-get && [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql-15; else
    echo "PostgreSQL (Debian: postgresql-15) is needed" >&2; exit 1; fi
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
"$pgbin/postgres" --version

step "build (release)"
mkdir -p "$OUT"
cargo build --release --locked -p sensegate-gateway --example uplink_bench >"$OUT/build.log" 2>&1 \
  || { tail -n 40 "$OUT/build.log" >&2; exit 1; }

start_work
make_cert
# initdb refuses root: as root, the cluster belongs to the postgres user.
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
mkdir "$work/data"
echo "bench-password" >"$work/pw"
if [ ${#as[@]} -gt 0 ]; then chown postgres: "$work/data" "$work/pw"; fi
step "PostgreSQL cluster on 127.0.0.1:$PORT (TLS only)"
"${as[@]}" "$pgbin/initdb" -D "$work/data" -U bench --auth=scram-sha-256 --pwfile="$work/pw" \
  -E UTF8 --no-sync >"$OUT/initdb.log" 2>&1
cp "$work/cert.pem" "$work/data/server.crt"; cp "$work/key.pem" "$work/data/server.key"
chmod 0600 "$work/data/server.key"
if [ ${#as[@]} -gt 0 ]; then chown postgres: "$work/data/server.crt" "$work/data/server.key"; fi
cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$work/data'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
CONF
echo "hostssl all all 127.0.0.1/32 scram-sha-256" >"$work/data/pg_hba.conf"
# The server writes its log where its user can ($work); it is copied to
# $OUT at the end.
"${as[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/data/postgres.log" -w start >/dev/null
trap 'cp "$work/data/postgres.log" "$OUT/" 2>/dev/null || true
  "${as[@]}" "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true; _bench_cleanup' EXIT
PGPASSWORD=bench-password "$pgbin/psql" -X -q \
  "host=127.0.0.1 port=$PORT user=bench dbname=postgres sslmode=verify-full sslrootcert=$work/cert.pem" \
  -c "CREATE DATABASE bench"

step "uplink against the bare loop, then the lag at a steady rate"
PGPORT=$PORT PGUSER=bench PGPASSWORD_FILE="$work/pw" PGCA="$work/cert.pem" \
  "$root/target/release/examples/uplink_bench" | tee "$OUT/result.txt"
