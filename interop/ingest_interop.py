#!/usr/bin/env python3
"""Real InfluxDB clients nobody on the project wrote, against the real daemon.

Starts `sensegate demo` (TLS on every listener, its own certificate), makes
a device token and a reader token with the CLI, then:
- the Python `influxdb-client` (PyPI) writes through `/api/v2/write`, with
  gzip on and off, points and line-protocol strings;
- the JavaScript `@influxdata/influxdb-client` (npm) does the same;
- curl writes through `/write` (InfluxDB 1.x: Basic with the token as the
  password), with gzip on and off, and a SenML pack to `/api/v1/readings`;
- each client's readings are then seen through the native protocol
  (`sensegate read`), the HTTP history and the HTTP stream;
- the clients see the refusals as InfluxDB gives them: a bad line is a 400
  naming the line, a name outside the scope a 403, a token in the URL a 401.
Then durability: a curl write answered 204, `kill -9` of the daemon at once,
a restart on the same data: the readings are in history.

Usage: SENSEGATE_BIN=target/debug/sensegate interop/ingest_interop.py
"""

import gzip
import json
import os
import subprocess
import tempfile
import time
import ssl
import urllib.parse
import urllib.request

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

import harness
from harness import HERE, TIMEOUT, Demo, Stream, fail, wait_for

harness.NAME = "ingest interop"


def base(demo):
    return f"https://127.0.0.1:{demo.http}"


def history(demo, token, sensor):
    """Raw readings of `sensor` over the last day, through the HTTP API."""
    ctx = ssl.create_default_context(cafile=demo.cert)
    now = int(time.time() * 1_000_000)
    req = urllib.request.Request(
        f"{base(demo)}/api/v1/sensors/{urllib.parse.quote(sensor, safe='')}/history"
        f"?from={now - 86_400_000_000}&to={now + 1}",
        headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=TIMEOUT) as r:
        return [row["value"] for row in json.load(r)["readings"]]


def curl(demo, path, *args, data=None):
    """curl against the HTTP API; returns (status, body)."""
    cmd = ["curl", "-sS", "--cacert", demo.cert, "-o", "-", "-w", "\n%{http_code}",
           "-X", "POST", f"{base(demo)}{path}", *args]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT)
    if out.returncode != 0:
        fail(f"curl {path}: {out.stderr.decode().strip()}")
    body, _, status = out.stdout.decode().rpartition("\n")
    return int(status), body


def python_client(demo, device, gz):
    tag = "on" if gz else "off"
    with InfluxDBClient(url=base(demo), token=device, org="site", ssl_ca_cert=demo.cert,
                        enable_gzip=gz, timeout=TIMEOUT * 1000) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        now = time.time_ns()
        for n in (1, 2, 3):
            write.write(bucket="gw", record=Point("lp").tag("client", "py").tag("gzip", tag)
                        .field("value", n + 0.5).time(now - 3_000_000_000 + n * 1_000_000, WritePrecision.NS))
        # A batch of line-protocol strings, in milliseconds.
        ms = now // 1_000_000
        write.write(bucket="gw", write_precision=WritePrecision.MS,
                    record=[f"lpbulk,client=py,gzip={tag},i={i % 10} v={i}i {ms - 1000 + i}"
                            for i in range(300)])
        # Refusals as InfluxDB gives them, and nothing of them applied.
        for record, status, text in [
            (f"lp,client=py,gzip={tag} ok=1\nlp,client=py bad=\"open", 400, "line 2"),
            ("elsewhere value=1", 403, "not allowed"),
        ]:
            try:
                write.write(bucket="gw", record=record)
                fail(f"influxdb-client (python): {record!r} was accepted")
            except ApiException as e:
                if e.status != status or text not in (e.body or ""):
                    fail(f"influxdb-client (python): {record!r} gave {e.status} {e.body}")


def js_client(demo, device, gz):
    out = subprocess.run(["node", os.path.join(HERE, "influxjs.mjs"), base(demo), demo.cert,
                          device, "js", "on" if gz else "off"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"influxdb-client (js): {out.stderr.strip()}")


def curl_v1(demo, device, gz):
    tag = "on" if gz else "off"
    now = time.time_ns()
    lines = "".join(f"lp,client=curl,gzip={tag} value={n + 0.5} {now - 3_000_000_000 + n * 1_000_000}\n"
                    for n in (1, 2, 3))
    lines += "".join(f"lpbulk,client=curl,gzip={tag},i={i % 10} v={i}i {now - 1_000_000_000 + i * 1000}\n"
                     for i in range(300))
    body = lines.encode()
    args = ["-u", f"telegraf:{device}", "-H", "Content-Type: text/plain; charset=utf-8"]
    if gz:
        body = gzip.compress(body)
        args += ["-H", "Content-Encoding: gzip"]
    status, text = curl(demo, "/write?db=telegraf", *args, data=body)
    if status != 204:
        fail(f"curl /write ({tag}): {status} {text}")


def check_visible(demo, reader, stream, client, tag):
    sensor = f"lp/{client}/{tag}/value"
    out = demo.cli("read", sensor)
    if "3.5" not in out:
        fail(f"{client} ({tag}): native read of {sensor} gave {out.strip()}")
    values = history(demo, reader, sensor)
    if sorted(values) != [1.5, 2.5, 3.5]:
        fail(f"{client} ({tag}): HTTP history of {sensor} is {values}")
    bulk = sum(len(history(demo, reader, f"lpbulk/{client}/{tag}/{i}/v")) for i in range(10))
    if bulk != 300:
        fail(f"{client} ({tag}): {bulk} of 300 bulk readings in history")
    for value in (1.5, 2.5, 3.5):
        wait_for(lambda v=value: stream.has(sensor, v), f"{sensor} {value} on the HTTP stream")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "demo")
        demo = Demo(data)
        try:
            device = demo.token("device", "lp*")
            reader = demo.token("reader", "lp*")
            stream = Stream(demo, reader, "lp/*")
            for name, run in [("py", python_client), ("js", js_client), ("curl", curl_v1)]:
                for gz in (False, True):
                    run(demo, device, gz)
                    check_visible(demo, reader, stream, name, "on" if gz else "off")
                    print(f"ingest interop: {name} gzip {'on' if gz else 'off'}: ok")
            # A token in the URL is refused, and says to use the header.
            status, text = curl(demo, f"/write?db=x&u=telegraf&p={device}", data=b"lp v=1\n")
            if status != 401 or "Authorization header" not in text or device in text:
                fail(f"a token in the URL gave {status} {text}")
            # SenML through curl, with its units.
            pack = json.dumps([{"bn": "lp/senml/", "bu": "Cel", "n": "temp", "v": 21.5},
                               {"n": "rh", "u": "%RH", "v": 40}]).encode()
            status, text = curl(demo, "/api/v1/readings", "-H", f"Authorization: Bearer {device}",
                                "-H", "Content-Type: application/senml+json", data=pack)
            if status != 204:
                fail(f"SenML: {status} {text}")
            if "21.5" not in demo.cli("read", "lp/senml/temp"):
                fail("SenML reading not readable")
            print("ingest interop: a token in the URL refused (401); SenML via curl: ok")
            # Durable once answered: kill -9 right after the 204.
            status, text = curl(demo, "/api/v2/write?bucket=gw", "-H", f"Authorization: Token {device}",
                                data=b"lpdurable,host=gw1 value=42.125\n")
            if status != 204:
                fail(f"durable write: {status} {text}")
            demo.kill9()
            demo = Demo(data, demo.ports)
            out = demo.cli("query", "lpdurable/gw1/value", "--since", "1h")
            if "42.125" not in out:
                fail(f"the acknowledged reading is not in history after kill -9: {out.strip()}")
            print("ingest interop: a write answered 204, then kill -9: in history after restart")
        finally:
            demo.stop()


if __name__ == "__main__":
    main()
