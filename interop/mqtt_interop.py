#!/usr/bin/env python3
"""Real MQTT clients nobody on the project wrote, against the real daemon.

Starts `sensegate demo` (TLS on every listener, its own certificate), makes
a device token and a reader token with the CLI, then for each client:
mosquitto_pub/mosquitto_sub (MQTT 3.1.1 and 5), paho-mqtt (3.1.1 and 5)
and MQTT.js (3.1.1 and 5):
- publishes at QoS 0 and QoS 1 with the device token;
- subscribes with the reader token: gets the latest reading retained, then
  live readings (not retained);
- the readings are also seen through the native protocol (`sensegate read`)
  and the HTTP stream (`/api/v1/stream`, read from the start);
- a publish outside the device token's scope is refused (MQTT 5: 0x87).
Then durability: a paho QoS 1 publish, `kill -9` of the daemon as soon as
the PUBACK arrived, a restart on the same data: the reading is in history.

Usage: SENSEGATE_BIN=target/debug/sensegate interop/mqtt_interop.py
"""

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

BIN = os.environ.get("SENSEGATE_BIN", "target/debug/sensegate")
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 20


def fail(why):
    print(f"mqtt interop: FAILED: {why}", file=sys.stderr)
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


# ---- clients -------------------------------------------------------------

def mosquitto(demo, device, reader, prefix, version):
    v = {4: "mqttv311", 5: "mqttv5"}[version]
    common = ["-h", "127.0.0.1", "-p", str(demo.mqtt), "--cafile", demo.cert, "-V", v]

    def pub(topic, value, qos):
        out = subprocess.run(["mosquitto_pub", *common, "-u", "device", "-P", device, "-t", topic,
                              "-m", value, "-q", str(qos)], capture_output=True, text=True, timeout=TIMEOUT)
        return out

    first = pub(f"sensors/{prefix}/q1", "1.25", 1)
    if first.returncode != 0:
        fail(f"mosquitto_pub ({v}): {first.stderr}")
    sub = subprocess.Popen(["mosquitto_sub", *common, "-u", "reader", "-P", reader,
                            "-t", f"sensors/{prefix}/#", "-q", "1", "-C", "3", "-W", str(TIMEOUT),
                            "-F", "%r %t %p"], stdout=subprocess.PIPE, text=True)
    retained = sub.stdout.readline().split()
    if retained != ["1", f"sensors/{prefix}/q1", "1.25"]:
        fail(f"mosquitto_sub ({v}) retained: {retained}")
    for topic, value, qos in [(f"sensors/{prefix}/q0", "20.5", 0), (f"sensors/{prefix}/q1", "21.5", 1)]:
        if pub(topic, value, qos).returncode != 0:
            fail(f"mosquitto_pub ({v}) {topic}")
    live = sorted(tuple(sub.stdout.readline().split()) for _ in range(2))
    want = [("0", f"sensors/{prefix}/q0", "20.5"), ("0", f"sensors/{prefix}/q1", "21.5")]
    if live != want:
        fail(f"mosquitto_sub ({v}) live: {live}")
    sub.wait(TIMEOUT)
    if version == 5:
        out = pub("sensors/elsewhere/x", "1", 1)
        if "Not authorized" not in out.stderr + out.stdout:
            fail(f"mosquitto_pub ({v}) out of scope was not refused: {out.stderr}")


def paho_client(demo, user, token, client_id, version):
    proto = {4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    c.tls_set(ca_certs=demo.cert)
    c.username_pw_set(user, token)
    connected = threading.Event()
    c.on_connect = lambda cl, ud, flags, rc, props: connected.set() if not rc.is_failure else None
    c.connect("127.0.0.1", demo.mqtt, keepalive=30)
    c.loop_start()
    if not connected.wait(TIMEOUT):
        fail(f"paho ({version}): {user} did not connect")
    return c


def paho(demo, device, reader, prefix, version):
    pub = paho_client(demo, "device", device, f"paho-pub-{version}", version)
    acks = {}
    pub.on_publish = lambda cl, ud, mid, rc, props: acks.__setitem__(mid, rc.value)
    pub.publish(f"sensors/{prefix}/q1", "1.25", qos=1).wait_for_publish(TIMEOUT)
    sub = paho_client(demo, "reader", reader, f"paho-sub-{version}", version)
    seen = []
    sub.on_message = lambda cl, ud, m: seen.append((m.retain, m.topic, m.payload.decode()))
    sub.subscribe(f"sensors/{prefix}/#", qos=1)
    wait_for(lambda: (1, f"sensors/{prefix}/q1", "1.25") in seen
             or (True, f"sensors/{prefix}/q1", "1.25") in seen, f"paho ({version}) retained")
    pub.publish(f"sensors/{prefix}/q0", "20.5", qos=0)
    pub.publish(f"sensors/{prefix}/q1", "21.5", qos=1).wait_for_publish(TIMEOUT)
    wait_for(lambda: (False, f"sensors/{prefix}/q0", "20.5") in seen
             and (False, f"sensors/{prefix}/q1", "21.5") in seen, f"paho ({version}) live")
    if version == 5:
        info = pub.publish("sensors/elsewhere/x", "1", qos=1)
        info.wait_for_publish(TIMEOUT)
        wait_for(lambda: info.mid in acks, "paho's PUBACK")
        if acks[info.mid] != 0x87:
            fail(f"paho (5) out of scope got reason {acks[info.mid]:#x}")
    sub.loop_stop()
    sub.disconnect()
    pub.loop_stop()
    pub.disconnect()


def mqttjs(demo, device, reader, prefix, version):
    out = subprocess.run(["node", os.path.join(HERE, "mqttjs.mjs"), f"mqtts://127.0.0.1:{demo.mqtt}",
                          demo.cert, device, reader, prefix, str(version)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"MQTT.js ({version}): {out.stderr.strip()}")


# ---- the run -------------------------------------------------------------

def main():
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "demo")
        demo = Demo(data)
        try:
            device = demo.token("device", "field/*")
            reader = demo.token("reader", "field/*")
            stream = Stream(demo, reader, "field/*")
            for name, run in [("mosquitto", mosquitto), ("paho", paho), ("mqttjs", mqttjs)]:
                for version in (4, 5):
                    prefix = f"field/{name}{version}"
                    run(demo, device, reader, prefix, version)
                    # Through the native protocol and the HTTP stream too.
                    out = demo.cli("read", f"{prefix}/q1")
                    if "21.5" not in out:
                        fail(f"{name} ({version}): native read gave {out.strip()}")
                    for sensor, value in [(f"{prefix}/q0", 20.5), (f"{prefix}/q1", 21.5)]:
                        wait_for(lambda s=sensor, v=value: stream.has(s, v), f"{sensor} on the HTTP stream")
                    print(f"mqtt interop: {name} MQTT {'3.1.1' if version == 4 else '5'}: ok")
            # Durable once acknowledged: kill -9 right after the PUBACK.
            pub = paho_client(demo, "device", device, "paho-durable", 5)
            pub.publish("sensors/field/durable", "42.125", qos=1).wait_for_publish(TIMEOUT)
            demo.kill9()
            pub.loop_stop()
            demo = Demo(data, demo.ports)
            out = demo.cli("query", "field/durable", "--since", "1h")
            if "42.125" not in out:
                fail(f"the acknowledged reading is not in history after kill -9: {out.strip()}")
            print("mqtt interop: a QoS 1 publish acknowledged, then kill -9: in history after restart")
        finally:
            demo.stop()


if __name__ == "__main__":
    main()
