// The live view: every sensor in the token's scope with its state, its
// latest value and, for the first MAX_CHARTS, a chart of the last minute fed
// by the server-sent event stream. Charts are redrawn at most every
// REDRAW_MS and only while on screen, so 50 sensors at 10 Hz cost a few
// redraws a second, not 500.

import uPlot from 'uplot';
import { get, stream, ApiError } from './api.js';
import { el, clear, fmtValue, fmtAge } from './dom.js';
import { Ring } from './ring.js';

const WINDOW_S = 60;
const RING_POINTS = 2400;
const MAX_CHARTS = 64;
const REDRAW_MS = 250;
const LIST_REFRESH_MS = 5000;
const KNOWN_STATES = new Set(['ok', 'idle', 'faulted', 'restarting']);

export function stateBadge(state) {
  const s = KNOWN_STATES.has(state) ? state : 'unknown';
  return el('span', { class: `badge state-${s}`, text: state || 'unknown' });
}

export function mountLive(root, ctx) {
  const abort = new AbortController();
  const cards = new Map(); // name -> card
  const visible = new Set();
  let charted = 0;

  const filter = el('input', { type: 'search', placeholder: 'Filter sensors', 'aria-label': 'Filter sensors' });
  const status = el('span', { class: 'status', id: 'stream-status', text: 'connecting' });
  const grid = el('div', { class: 'grid', id: 'live-grid' });
  const note = el('p', { class: 'muted', id: 'live-note' });
  clear(root).append(el('section', {}, el('div', { class: 'toolbar' }, el('h1', { text: 'Live' }), filter, status), note, grid));

  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.sensor;
      if (e.isIntersecting) visible.add(name);
      else visible.delete(name);
    }
  });

  filter.addEventListener('input', () => {
    const f = filter.value.toLowerCase();
    for (const [name, c] of cards) c.node.hidden = f !== '' && !name.toLowerCase().includes(f);
  });

  function makeChart(card) {
    const width = Math.max(200, card.chartBox.clientWidth || 300);
    card.chart = new uPlot(
      {
        width,
        height: 120,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: true } },
        axes: [{ size: 24, stroke: '#8a93a6', grid: { stroke: '#2a3140' } }, { size: 60, stroke: '#8a93a6', grid: { stroke: '#2a3140' } }],
        series: [{}, { stroke: '#4fa3ff', width: 1.5, points: { show: false } }],
      },
      [[], []],
      card.chartBox,
    );
  }

  function addCard(s) {
    const value = el('span', { class: 'value', text: '–' });
    const age = el('span', { class: 'age muted' });
    const reason = el('div', { class: 'reason muted' });
    const chartBox = el('div', { class: 'chart', 'data-points': '0' });
    const link = el('a', { href: `#/history/${encodeURIComponent(s.name)}`, class: 'name', text: s.name });
    const badge = el('span');
    const node = el(
      'article',
      { class: 'card', 'data-sensor': s.name },
      el('header', {}, link, badge),
      el('div', { class: 'reading' }, value, el('span', { class: 'unit', text: s.unit }), age),
      reason,
      chartBox,
    );
    const card = { node, value, age, reason, badge, chartBox, ring: new Ring(RING_POINTS), chart: null, dirty: false, lastUs: s.last_timestamp_us, state: '' };
    cards.set(s.name, card);
    grid.append(node);
    if (charted < MAX_CHARTS) {
      charted += 1;
      makeChart(card);
      observer.observe(node);
    } else {
      chartBox.remove();
    }
    return card;
  }

  function update(list) {
    for (const s of list) {
      const card = cards.get(s.name) ?? addCard(s);
      if (card.state !== s.state) {
        card.state = s.state;
        card.badge.replaceWith((card.badge = stateBadge(s.state)));
      }
      card.reason.textContent = s.fault_reason || '';
      card.lastUs = Math.max(card.lastUs || 0, s.last_timestamp_us || 0);
    }
    note.textContent = cards.size > MAX_CHARTS ? `Charts for the first ${MAX_CHARTS} of ${cards.size} sensors.` : cards.size ? '' : 'No sensors in this token\u2019s scope yet.';
  }

  async function refreshList() {
    try {
      const list = await get('/api/v1/sensors');
      // The view may have been left while the request was out.
      if (!abort.signal.aborted) update(list);
    } catch (e) {
      if (!abort.signal.aborted) ctx.failed(e);
    }
  }

  function onEvent(name, data) {
    if (name === 'goodbye') throw new Error('the stream fell behind');
    if (name !== 'readings') return;
    const batch = JSON.parse(data);
    for (const r of batch.readings) {
      const card = cards.get(r.sensor);
      if (!card) {
        // A sensor registered since the last list: picked up on refresh.
        continue;
      }
      card.ring.push(r.timestamp_us / 1e6, r.value ?? NaN);
      card.latest = r.value;
      card.lastUs = r.timestamp_us;
      card.dirty = true;
    }
  }

  async function runStream() {
    let delay = 500;
    while (!abort.signal.aborted) {
      try {
        await stream('*', onEvent, abort.signal, () => {
          status.textContent = 'live';
          status.className = 'status live';
          delay = 500;
        });
      } catch (e) {
        if (abort.signal.aborted) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          status.textContent = e.status === 403 ? 'not allowed' : 'signed out';
          status.className = 'status down';
          ctx.failed(e);
          return;
        }
      }
      if (abort.signal.aborted) return;
      status.textContent = 'reconnecting';
      status.className = 'status down';
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }

  function redraw() {
    const now = Date.now();
    for (const [name, card] of cards) {
      if (card.latest !== undefined) card.value.textContent = fmtValue(card.latest);
      card.age.textContent = fmtAge(card.lastUs, now);
      if (!card.chart || !card.dirty || !visible.has(name)) continue;
      card.dirty = false;
      const data = card.ring.data(now / 1000 - WINDOW_S);
      card.chart.setData(data);
      card.chartBox.dataset.points = String(data[0].length);
      card.chartBox.dataset.last = data[0].length ? String(data[0][data[0].length - 1]) : '';
    }
  }

  const resize = new ResizeObserver(() => {
    for (const card of cards.values()) {
      if (card.chart) card.chart.setSize({ width: Math.max(200, card.chartBox.clientWidth), height: 120 });
    }
  });
  resize.observe(grid);

  const timers = [setInterval(redraw, REDRAW_MS), setInterval(refreshList, LIST_REFRESH_MS)];
  refreshList().then(() => {
    if (!abort.signal.aborted) runStream();
  });

  return () => {
    abort.abort();
    timers.forEach(clearInterval);
    observer.disconnect();
    resize.disconnect();
    for (const card of cards.values()) card.chart?.destroy();
  };
}
