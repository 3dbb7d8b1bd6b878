// The JavaScript InfluxDB client (npm @influxdata/influxdb-client), as an
// application uses it, against sensegate's /api/v2/write.
// Usage: node influxjs.mjs URL CA_FILE TOKEN PREFIX_TAG GZIP(on|off)
// Writes `lp,client=js,gzip=<on|off> value=<n>` points (n = 1..3) and a
// few hundred `lpbulk` points in batches, then flushes and closes; exits 1
// on any error.
import { readFileSync } from 'node:fs';
import { InfluxDB, Point } from '@influxdata/influxdb-client';

const [url, ca, token, client, gzip] = process.argv.slice(2);
const influx = new InfluxDB({
  url,
  token,
  timeout: 20000,
  transportOptions: { ca: readFileSync(ca) },
});
const write = influx.getWriteApi('site', 'gw', 'ms', {
  batchSize: 100,
  flushInterval: 0,
  maxRetries: 0,
  // Bodies over the threshold are gzipped: 0 gzips every body, and one
  // larger than any body sends them all as they are.
  gzipThreshold: gzip === 'on' ? 0 : 1e9,
});
const now = Date.now();
for (let n = 1; n <= 3; n++) {
  write.writePoint(
    new Point('lp').tag('client', client).tag('gzip', gzip).floatField('value', n + 0.5).timestamp(new Date(now - 3000 + n)),
  );
}
for (let i = 0; i < 300; i++) {
  write.writeRecord(`lpbulk,client=${client},gzip=${gzip},i=${i % 10} v=${i}i ${now - 1000 + i}`);
}
try {
  await write.close();
} catch (e) {
  console.error(`influxdb-client (js): ${e}`);
  process.exit(1);
}
