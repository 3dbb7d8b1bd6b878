// MQTT.js (npm `mqtt`) against the daemon: for one protocol version,
// subscribes with a reader token, publishes at QoS 0 and 1 with a device
// token, and checks what arrives (the retained latest at subscribe, then
// live readings). Prints one JSON line with what it saw; exits non-zero on
// any failure.
//
// Usage: node mqttjs.mjs URL CA_FILE DEVICE_TOKEN READER_TOKEN PREFIX VERSION
//   PREFIX: the sensor-name prefix to use (`field/js5`); VERSION: 4 or 5.
import fs from 'node:fs';
import mqtt from 'mqtt';

const [url, caFile, device, reader, prefix, version] = process.argv.slice(2);
const protocolVersion = Number(version);
const ca = fs.readFileSync(caFile);
const base = { ca, rejectUnauthorized: true, protocolVersion, reconnectPeriod: 0, connectTimeout: 10_000 };

function fail(why) {
  console.error(`mqttjs v${version}: ${why}`);
  process.exit(1);
}
const timer = setTimeout(() => fail('timed out'), 30_000);

const pub = await mqtt.connectAsync(url, { ...base, username: 'js-device', password: device, clientId: `js-pub-${version}` });
// A first reading, so that the subscriber gets it retained.
await pub.publishAsync(`sensors/${prefix}/q1`, '1.25', { qos: 1 });

const sub = await mqtt.connectAsync(url, { ...base, username: 'js-reader', password: reader, clientId: `js-sub-${version}` });
const seen = [];
const waiters = [];
sub.on('message', (topic, payload, packet) => {
  seen.push({ topic, payload: payload.toString(), retain: packet.retain });
  for (const w of waiters.splice(0)) w();
});
const until = async (pred) => {
  while (!pred()) await new Promise((r) => waiters.push(r));
};
const granted = await sub.subscribeAsync(`sensors/${prefix}/#`, { qos: 1 });
if (!granted.length || granted[0].qos > 1) fail(`subscription not granted: ${JSON.stringify(granted)}`);
await until(() => seen.some((m) => m.retain && m.topic === `sensors/${prefix}/q1`));

// Live: QoS 0 and QoS 1 publishes arrive, not retained.
await pub.publishAsync(`sensors/${prefix}/q0`, '20.5', { qos: 0 });
await pub.publishAsync(`sensors/${prefix}/q1`, '21.5', { qos: 1 });
await until(() => seen.some((m) => !m.retain && m.topic === `sensors/${prefix}/q0` && m.payload === '20.5')
  && seen.some((m) => !m.retain && m.topic === `sensors/${prefix}/q1` && m.payload === '21.5'));

// Outside the device's scope: MQTT 5 gets reason code 0x87 in the PUBACK.
if (protocolVersion === 5) {
  let refused = null;
  try {
    await pub.publishAsync('sensors/elsewhere/x', '1', { qos: 1 });
  } catch (e) {
    refused = e.code ?? e.message;
  }
  if (refused !== 135) fail(`out-of-scope publish not refused with 0x87: ${refused}`);
}

await sub.endAsync();
await pub.endAsync();
clearTimeout(timer);
console.log(JSON.stringify({ client: `mqttjs-v${version}`, seen }));
