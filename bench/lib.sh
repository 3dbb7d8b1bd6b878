# What the benchmark scripts share (sourced, not run): progress lines,
# tool checks, starting and stopping servers, and a work directory whose
# servers are stopped and files removed on exit.
#
# After sourcing: `step`, `have`, `stop PID`, `wait_port PID HOST:PORT LOG`,
# `make_cert` (a throwaway certificate in $work), and `start_work`, which sets `work` (a new directory) and `pids` (append
# each server's pid to it) and arms the cleanup.

step() { printf '\n==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Waits until HOST:PORT accepts connections, or fails with the server's
# last log lines when it exits or 20 s pass.
wait_port() {
  local pid=$1 addr=$2 log=$3 i
  for i in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null || [ "$i" = 200 ]; then
      echo "the server on $addr did not start:" >&2; tail -n 20 "$log" >&2; exit 1
    fi
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
}

start_work() {
  work=$(mktemp -d)
  pids=()
  trap _bench_cleanup EXIT
}

_bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# A throwaway certificate for loopback servers in $work: EC P-256,
# CN=localhost, SAN localhost and 127.0.0.1; cert.pem, key.pem (SEC1, for
# Mosquitto) and key8.pem (PKCS#8, for rustls). Mosquitto started as root
# drops to its own user: it must be able to reach the certificate and key.
make_cert() {
  step "certificate (EC P-256, CN=localhost)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$work/key.pem" -out "$work/key8.pem"
  chmod 0711 "$work"
  chmod 0644 "$work/cert.pem" "$work/key.pem"; chmod 0600 "$work/key8.pem"
}
