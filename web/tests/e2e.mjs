// End-to-end test of the dashboard in Debian's Chromium, driven by
// playwright-core: starts `sensegate demo` on free loopback ports, signs in
// with the demo's admin token, checks that a live chart's data and pixels
// change over two seconds, opens the history view (raw, bucketed, and a
// drag to zoom), creates a reader token on the admin page, then signs in
// with it in a fresh browser context and checks it gets no admin page and
// a 403 from the admin API. Any console error or page error fails the test.
//
// Usage: node tests/e2e.mjs   (env SENSEGATE_BIN: the binary to run;
// CHROMIUM: the browser, default /usr/bin/chromium; E2E_OUT: where the
// screenshots go, default ../target/e2e)

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = new URL('..', import.meta.url).pathname;
const bin = process.env.SENSEGATE_BIN ?? resolve(here, '../target/debug/sensegate');
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const out = resolve(process.env.E2E_OUT ?? resolve(here, '../target/e2e'));
const TIMEOUT_MS = 20_000;

function step(text) {
  console.log(`e2e: ${text}`);
}

// Starts the demo and resolves with its dashboard URL and admin token.
function startDemo(dataDir, extra = []) {
  const child = spawn(bin, ['demo', '--data-dir', dataDir, '--native-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--mqtt-addr', '127.0.0.1:0', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  let errors = '';
  child.stderr.on('data', (d) => {
    errors = (errors + d).slice(-4000);
  });
  const ready = new Promise((resolveReady, reject) => {
    // The demo prints its admin token: kept out of any error (CI logs).
    const shown = () => text.replace(/(admin token:\s+)\S+/, '$1[redacted]');
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${shown()}\n${errors}`)), TIMEOUT_MS);
    child.stdout.on('data', (d) => {
      text += d;
      const url = text.match(/dashboard \(TLS 1\.3\):\s+(https:\/\/\S+)/);
      const token = text.match(/admin token:\s+(\S+)/);
      if (url && token) {
        clearTimeout(timer);
        resolveReady({ url: url[1], token: token[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${shown()}\n${errors}`)));
  });
  return { child, ready };
}

// Stops a demo: SIGTERM, then SIGKILL after five seconds.
function stop(child) {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r();
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      r();
    }, 5000);
    child.on('exit', () => {
      clearTimeout(t);
      r();
    });
    child.kill('SIGTERM');
  });
}

// A page that fails the test on any console error or uncaught exception.
async function watchedPage(context, problems) {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.setDefaultTimeout(TIMEOUT_MS);
  return page;
}

async function signIn(page, url, token) {
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
}

const dataDir = await mkdtemp(join(tmpdir(), 'sensegate-e2e-'));
const busyDir = await mkdtemp(join(tmpdir(), 'sensegate-e2e-busy-'));
let busyChild;
await mkdir(out, { recursive: true });
const demo = startDemo(dataDir);
let browser;
const problems = [];
try {
  const { url, token } = await demo.ready;
  step(`demo at ${url}`);
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const admin = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await watchedPage(admin, problems);

  step('a wrong token is refused');
  await page.goto(url);
  await page.fill('#token', 'sgt_0000000000000000_nope');
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-error')?.textContent.includes('not accepted'));
  // The refusal is the expected 401 in the console; it is not a problem.
  problems.length = 0;

  step('sign in with the demo admin token');
  await signIn(page, url, token);
  assert.equal(await page.textContent('#who'), 'admin (admin)');
  assert.ok(!page.url().includes(token), 'the token is not in the address');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in local storage');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sensegate.token')), token);
  assert.ok(await page.isVisible('#nav-admin'), 'an admin sees the admin link');

  step('live charts update');
  const card = '#live-grid article[data-sensor="driver/sim-0"]';
  await page.waitForSelector(`${card} .chart canvas`);
  await page.waitForFunction((sel) => Number(document.querySelector(`${sel} .chart`).dataset.points) >= 3, card);
  const before = await page.evaluate((sel) => {
    const box = document.querySelector(`${sel} .chart`);
    return { last: Number(box.dataset.last), points: Number(box.dataset.points), pixels: box.querySelector('canvas').toDataURL() };
  }, card);
  await page.waitForTimeout(2000);
  const after = await page.evaluate((sel) => {
    const box = document.querySelector(`${sel} .chart`);
    return { last: Number(box.dataset.last), points: Number(box.dataset.points), pixels: box.querySelector('canvas').toDataURL() };
  }, card);
  assert.ok(after.last > before.last + 1, `the chart's newest point moved on (${before.last} -> ${after.last})`);
  assert.notEqual(after.pixels, before.pixels, 'the chart was redrawn with new data');
  const cards = await page.$$eval('#live-grid article', (a) => a.map((x) => x.dataset.sensor));
  assert.ok(cards.includes('sim/temperature') || cards.some((c) => c.startsWith('sim/')), `simulated sensors listed: ${cards}`);
  assert.equal(await page.textContent('#stream-status'), 'live');
  await page.screenshot({ path: join(out, 'live.png'), fullPage: true });

  step('history: raw, bucketed, zoom');
  await page.click(`${card} a.name`);
  await page.waitForSelector('#history-chart canvas');
  await page.waitForFunction(() => Number(document.querySelector('#history-chart').dataset.points) > 0);
  assert.equal(await page.inputValue('#history-sensor'), 'driver/sim-0');
  await page.click('button:text-is("1 h")');
  await page.waitForFunction(() => document.querySelector('#history-chart').dataset.bucket === '10000000');
  assert.match(await page.textContent('#history-info'), /buckets of 10 s/);
  await page.waitForFunction(() => Number(document.querySelector('#history-chart').dataset.points) > 0);
  // A few minutes around now, raw; then a drag across most of it zooms in.
  await page.evaluate(() => {
    const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    const minute = Math.floor(Date.now() / 60000) * 60000;
    document.querySelector('#history-from').value = local(minute - 120000);
    document.querySelector('#history-to').value = local(minute + 120000);
  });
  await page.click('button:text-is("Show")');
  await page.waitForFunction(() => document.querySelector('#history-chart').dataset.bucket === '0');
  await page.waitForFunction(() => Number(document.querySelector('#history-chart').dataset.points) > 0);
  const whole = await page.$eval('#history-chart', (b) => ({ from: Number(b.dataset.from), to: Number(b.dataset.to) }));
  const chartBox = await page.locator('#history-chart .u-over').boundingBox();
  const y = chartBox.y + chartBox.height / 2;
  await page.mouse.move(chartBox.x + chartBox.width * 0.1, y);
  await page.mouse.down();
  await page.mouse.move(chartBox.x + chartBox.width * 0.95, y, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction((f) => Number(document.querySelector('#history-chart').dataset.from) !== f, whole.from);
  assert.ok(await page.isEnabled('button:text-is("Zoom out")'), 'zoomed in');
  const zoomed = await page.$eval('#history-chart', (b) => ({ from: Number(b.dataset.from), to: Number(b.dataset.to), points: Number(b.dataset.points) }));
  const span = whole.to - whole.from;
  assert.ok(zoomed.from > whole.from + span * 0.05 && zoomed.to < whole.to - span * 0.02, `the zoom is the dragged part: ${JSON.stringify({ whole, zoomed })}`);
  assert.ok(zoomed.points > 0, 'readings in the zoomed range');
  await page.screenshot({ path: join(out, 'history.png'), fullPage: true });

  step('admin: create a reader token, see connections');
  await page.click('#nav-admin');
  await page.waitForSelector('#admin table');
  await page.fill('#token-form input[name=name]', 'e2e-reader');
  await page.selectOption('#token-form select[name=role]', 'reader');
  await page.fill('#token-form input[name=scope]', 'sim/*');
  await page.click('#token-form button[type=submit]');
  const secret = (await page.textContent('#new-secret code', { timeout: TIMEOUT_MS })).trim();
  assert.match(secret, /^sgt_[0-9a-f]{16}_/);
  await page.waitForFunction(() => [...document.querySelectorAll('#admin td')].some((td) => td.textContent === 'e2e-reader'));
  await page.waitForFunction(() => [...document.querySelectorAll('#admin td')].some((td) => td.textContent === 'http'));
  // The demo runs no uplink: its table says so.
  await page.waitForFunction(() => document.querySelector('#uplinks')?.textContent === 'No uplink configured.');
  await page.screenshot({ path: join(out, 'admin.png'), fullPage: true });

  step('a reader gets no admin page and a 403 from the admin API');
  const readerContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const reader = await watchedPage(readerContext, problems);
  await signIn(reader, url, secret);
  assert.equal(await reader.textContent('#who'), 'e2e-reader (reader)');
  assert.ok(!(await reader.isVisible('#nav-admin')), 'no admin link for a reader');
  await reader.waitForSelector('#live-grid article');
  const seen = await reader.$$eval('#live-grid article', (a) => a.map((x) => x.dataset.sensor));
  assert.ok(seen.length > 0 && seen.every((s) => s.startsWith('sim/')), `only sensors in scope: ${seen}`);
  await reader.goto(`${url}#/admin`);
  await reader.waitForSelector('#not-admin');
  assert.equal(await reader.$('#admin'), null, 'no admin page for a reader');
  const denied = await reader.evaluate(async () => {
    const t = sessionStorage.getItem('sensegate.token');
    const r = await fetch('/api/v1/tokens', { headers: { Authorization: `Bearer ${t}` } });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.error.code, 'FORBIDDEN');
  // The 403 above is the browser logging the refused fetch: expected.
  const expected403 = (p) => p.includes('403');
  await reader.screenshot({ path: join(out, 'reader.png'), fullPage: true });

  step('sign out clears the token');
  await reader.click('#logout');
  await reader.waitForSelector('#login');
  assert.equal(await reader.evaluate(() => sessionStorage.length), 0);

  step('50 sensors at 10 Hz, every chart on screen');
  const busy = startDemo(busyDir, ['--sim-sensors', '50', '--sim-rate-hz', '10']);
  busyChild = busy.child;
  const b = await busy.ready;
  const busyContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1600, height: 4000 } });
  const many = await watchedPage(busyContext, problems);
  await signIn(many, b.url, b.token);
  await many.waitForFunction(() => document.querySelectorAll('#live-grid article .chart canvas').length >= 53);
  await many.waitForFunction(() => [...document.querySelectorAll('#live-grid .chart')].every((c) => Number(c.dataset.points) > 0));
  const load = await many.evaluate(
    () =>
      new Promise((done) => {
        const charts = [...document.querySelectorAll('#live-grid .chart')];
        const first = charts.map((c) => Number(c.dataset.last));
        let frames = 0;
        let worstFrameGap = 0;
        let worstTimerLag = 0;
        let lastFrame = performance.now();
        const t0 = lastFrame;
        const frame = (now) => {
          frames += 1;
          worstFrameGap = Math.max(worstFrameGap, now - lastFrame);
          lastFrame = now;
          if (now - t0 < 5000) requestAnimationFrame(frame);
        };
        requestAnimationFrame(frame);
        const probe = () => {
          const asked = performance.now();
          setTimeout(() => {
            worstTimerLag = Math.max(worstTimerLag, performance.now() - asked - 50);
            if (performance.now() - t0 < 5000) probe();
            else {
              const advanced = charts.filter((c, i) => Number(c.dataset.last) > first[i]).length;
              done({ charts: charts.length, advanced, fps: frames / 5, worstFrameGap, worstTimerLag });
            }
          }, 50);
        };
        probe();
      }),
  );
  console.log(`e2e: 50 sensors x 10 Hz: ${JSON.stringify(load)}`);
  assert.equal(load.advanced, load.charts, 'every chart kept updating');
  // Usable, not a benchmark: generous bounds that only a page that stalls
  // (a redraw per reading, an unbounded buffer) would break.
  assert.ok(load.fps >= 10, `the page keeps painting (${load.fps} frames/s)`);
  assert.ok(load.worstTimerLag < 1000, `the main thread stays responsive (worst lag ${load.worstTimerLag} ms)`);
  await many.screenshot({ path: join(out, 'fifty-sensors.png') });
  await busyContext.close();

  const unexpected = problems.filter((p) => !expected403(p));
  assert.deepEqual(unexpected, [], 'no console or page errors');
  step(`passed; screenshots in ${out}`);
} catch (e) {
  console.error(e);
  if (problems.length) console.error('browser problems:', problems);
  process.exitCode = 1;
} finally {
  await browser?.close();
  await stop(demo.child);
  if (busyChild) await stop(busyChild);
  await rm(dataDir, { recursive: true, force: true });
  await rm(busyDir, { recursive: true, force: true });
}
