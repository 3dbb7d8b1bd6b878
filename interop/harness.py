"""What the interoperability tests share: `sensegate demo` started in a data
directory (TLS on every listener, its own certificate), the CLI against it,
the HTTP stream read in a thread, and waiting with a deadline.

Used by interop/mqtt_interop.py and interop/ingest_interop.py.
"""

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

BIN = os.environ.get("SENSEGATE_BIN", "target/debug/sensegate")
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 20
# The test's name, for its messages (set by the test).
NAME = "interop"


def fail(why):
    print(f"{NAME}: FAILED: {why}", file=sys.stderr)
    sys.exit(1)


class Demo:
    """`sensegate demo` in a data directory, on the ports given (0: any)."""

    def __init__(self, data_dir, ports=(0, 0, 0)):
        native, http, mqtt_port = ports
        self.dir = data_dir
        self.proc = subprocess.Popen(
            [BIN, "demo", "--data-dir", data_dir,
             "--native-addr", f"127.0.0.1:{native}",
             "--http-addr", f"127.0.0.1:{http}",
             "--mqtt-addr", f"127.0.0.1:{mqtt_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        found = {}
        deadline = time.time() + 60
        for line in self.proc.stdout:
            m = re.search(r"native protocol \(TLS 1\.3\):\s+127\.0\.0\.1:(\d+)", line)
            if m:
                found["native"] = int(m.group(1))
            m = re.search(r"HTTP API \(TLS 1\.3\):\s+https://127\.0\.0\.1:(\d+)/", line)
            if m:
                found["http"] = int(m.group(1))
            m = re.search(r"MQTT 3\.1\.1 and 5 \(TLS\):\s+127\.0\.0\.1:(\d+)", line)
            if m:
                found["mqtt"] = int(m.group(1))
            if line.startswith("In another terminal") or time.time() > deadline:
                break
        if len(found) != 3:
            fail(f"the demo did not print its three addresses: {found}")
        self.native, self.http, self.mqtt = found["native"], found["http"], found["mqtt"]
        # Keep its output drained.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    @property
    def ports(self):
        return (self.native, self.http, self.mqtt)

    @property
    def cert(self):
        return os.path.join(self.dir, "cert.pem")

    def cli(self, *args):
        out = subprocess.run([BIN, *args, "--client-config", os.path.join(self.dir, "client.toml")],
                             capture_output=True, text=True, timeout=TIMEOUT)
        if out.returncode != 0:
            fail(f"sensegate {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def token(self, role, scope):
        out = self.cli("token", "create", "--role", role, "--scope", scope, "--name", f"interop-{role}")
        m = re.search(r"(sgt_[0-9a-f]+_[0-9a-f]+)", out)
        if not m:
            fail("no token secret in the CLI's output")
        return m.group(1)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class Stream:
    """The HTTP stream of readings, read from the start in a thread."""

    def __init__(self, demo, token, sensors):
        ctx = ssl.create_default_context(cafile=demo.cert)
        req = urllib.request.Request(
            f"https://127.0.0.1:{demo.http}/api/v1/stream?sensors={sensors}",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
        self.resp = urllib.request.urlopen(req, context=ctx, timeout=60)
        self.readings = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for raw in self.resp:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    batch = json.loads(line[5:])
                    with self.lock:
                        self.readings.extend(batch["readings"])
        except Exception:  # the daemon went away
            pass

    def has(self, sensor, value):
        with self.lock:
            return any(r["sensor"] == sensor and abs(r["value"] - value) < 1e-9 for r in self.readings)


def wait_for(pred, what):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")
