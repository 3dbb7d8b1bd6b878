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

import os
import subprocess
import tempfile
import threading

import paho.mqtt.client as mqtt

import harness
from harness import BIN, HERE, TIMEOUT, Demo, Stream, fail, wait_for

harness.NAME = "mqtt interop"


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
