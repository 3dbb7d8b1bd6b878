// The dashboard of a site view (history.backend = "postgres") in Debian's
// Chromium, driven by playwright-core: signs in, checks that the live page
// lists every gateway's sensors (named <gateway>/<sensor>), and that the
// history page of one of them draws readings the site's database holds.
// Run by the site-view integration test (crates/cli/tests/site_view.rs),
// which starts the gateways, the database and the site view.
//
// Environment: SITE_URL (the dashboard), SITE_TOKEN (a reader's token),
// SITE_SENSORS (comma-separated names the live page must list),
// SITE_HISTORY (the sensor whose history is drawn), SITE_HISTORY_READINGS
// (how many readings the database holds for it in the last 15 minutes),
// CHROMIUM (default
// /usr/bin/chromium), E2E_OUT (where the screenshots go).

import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = new URL('..', import.meta.url).pathname;
const url = process.env.SITE_URL;
const token = process.env.SITE_TOKEN;
const sensors = (process.env.SITE_SENSORS ?? '').split(',').filter(Boolean);
const historySensor = process.env.SITE_HISTORY;
const historyReadings = process.env.SITE_HISTORY_READINGS;
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const out = resolve(process.env.E2E_OUT ?? resolve(here, '../target/e2e'));
assert.ok(url && token && sensors.length > 0 && historySensor, 'SITE_URL, SITE_TOKEN, SITE_SENSORS and SITE_HISTORY are required');

await mkdir(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  console.log('site e2e: sign in');
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');

  console.log('site e2e: every gateway\'s sensors on the live page');
  await page.waitForFunction(
    (want) => {
      const have = [...document.querySelectorAll('#live-grid article')].map((a) => a.dataset.sensor);
      return want.every((s) => have.includes(s));
    },
    sensors,
  );
  await page.screenshot({ path: join(out, 'site-live.png'), fullPage: true });

  console.log(`site e2e: history of ${historySensor}`);
  await page.goto(`${url}#/history/${encodeURIComponent(historySensor)}`);
  await page.waitForSelector('#history-chart canvas');
  await page.waitForFunction(() => Number(document.querySelector('#history-chart').dataset.points) > 0);
  assert.equal(await page.inputValue('#history-sensor'), historySensor);
  if (historyReadings) {
    const info = await page.textContent('#history-info');
    assert.ok(info.includes(`(${historyReadings} readings)`), `the history view counts the database's readings: ${info}`);
  }
  await page.screenshot({ path: join(out, 'site-history.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no console or page errors');
  console.log('site e2e: passed');
} finally {
  await browser.close();
}
