// The history view: one sensor over a chosen range. Short ranges show raw
// readings; longer ones ask the server for buckets (min, max, mean, count
// computed in SQL) sized for about TARGET_POINTS points. Dragging across
// the chart zooms in and fetches that range again at finer resolution.

import uPlot from 'uplot';
import { get } from './api.js';
import { el, clear, fmtTime } from './dom.js';

const TARGET_POINTS = 600;
const RAW_UP_TO_US = 10 * 60 * 1e6;
const NICE_BUCKETS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const RANGES = [
  ['15 min', 15 * 60],
  ['1 h', 3600],
  ['6 h', 6 * 3600],
  ['24 h', 86400],
  ['7 d', 7 * 86400],
  ['30 d', 30 * 86400],
];

// The bucket (µs) for a range, or 0 for raw readings.
export function bucketFor(rangeUs, force = false) {
  if (rangeUs <= RAW_UP_TO_US && !force) return 0;
  const want = rangeUs / 1e6 / TARGET_POINTS;
  const s = NICE_BUCKETS_S.find((b) => b >= want) ?? Math.ceil(want / 86400) * 86400;
  return s * 1e6;
}

function label(bucketUs) {
  const s = bucketUs / 1e6;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${s / 60} min`;
  if (s < 86400) return `${s / 3600} h`;
  return `${s / 86400} d`;
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function mountHistory(root, ctx, sensor) {
  let chart = null;
  let range = null; // [fromUs, toUs]
  const zooms = [];
  let seq = 0;
  let gone = false;

  const select = el('select', { id: 'history-sensor', 'aria-label': 'Sensor' });
  const from = el('input', { type: 'datetime-local', id: 'history-from', 'aria-label': 'From' });
  const to = el('input', { type: 'datetime-local', id: 'history-to', 'aria-label': 'To' });
  const info = el('p', { class: 'muted', id: 'history-info' });
  const box = el('div', { class: 'chart big', id: 'history-chart' });
  const back = el('button', { type: 'button', text: 'Zoom out', disabled: true });
  const buttons = RANGES.map(([name, secs]) =>
    el('button', { type: 'button', text: name, onclick: () => show(Date.now() * 1000 - secs * 1e6, Date.now() * 1000 + 1, true) }),
  );
  const apply = el('button', {
    type: 'button',
    text: 'Show',
    onclick: () => {
      const f = Date.parse(from.value);
      const t = Date.parse(to.value);
      if (Number.isFinite(f) && Number.isFinite(t) && t > f) show(f * 1000, t * 1000, true);
      else info.textContent = 'Pick a start before the end.';
    },
  });
  back.addEventListener('click', () => {
    const prev = zooms.pop();
    back.disabled = zooms.length === 0;
    if (prev) show(prev[0], prev[1], false);
  });
  select.addEventListener('change', () => {
    location.hash = `#/history/${encodeURIComponent(select.value)}`;
  });

  clear(root).append(
    el(
      'section',
      {},
      el('div', { class: 'toolbar' }, el('h1', { text: 'History' }), select),
      el('div', { class: 'toolbar' }, ...buttons, from, to, apply, back),
      info,
      box,
    ),
  );

  function draw(data, bucketUs, [fromUs, toUs]) {
    chart?.destroy();
    const width = Math.max(300, box.clientWidth || 800);
    const series = bucketUs
      ? [
          {},
          { label: 'min', stroke: '#2f6fb3', width: 1, points: { show: false } },
          { label: 'mean', stroke: '#4fa3ff', width: 2, points: { show: false } },
          { label: 'max', stroke: '#2f6fb3', width: 1, points: { show: false } },
        ]
      : [{}, { label: 'value', stroke: '#4fa3ff', width: 1.5, points: { show: data[0].length < 200 } }];
    chart = new uPlot(
      {
        width,
        height: 360,
        // The x axis spans the range asked for, however few points came
        // back (uPlot would otherwise widen a single point to years).
        scales: { x: { time: true, range: () => [fromUs / 1e6, toUs / 1e6] } },
        axes: [{ stroke: '#8a93a6', grid: { stroke: '#2a3140' } }, { size: 64, stroke: '#8a93a6', grid: { stroke: '#2a3140' } }],
        series,
        bands: bucketUs ? [{ series: [3, 1], fill: 'rgba(79,163,255,0.15)' }] : [],
        cursor: { drag: { x: true, y: false, setScale: false } },
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width < 4) return;
              const a = u.posToVal(u.select.left, 'x') * 1e6;
              const b = u.posToVal(u.select.left + u.select.width, 'x') * 1e6;
              u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
              if (b - a >= 1000) {
                zooms.push(range);
                back.disabled = false;
                show(Math.floor(a), Math.ceil(b), false);
              }
            },
          ],
        },
      },
      data,
      box,
    );
    box.dataset.points = String(data[0].length);
    box.dataset.bucket = String(bucketUs);
    box.dataset.from = String(fromUs);
    box.dataset.to = String(toUs);
  }

  async function show(fromUs, toUs, fresh, forcedBucket) {
    if (!select.value) return;
    if (fresh) {
      zooms.length = 0;
      back.disabled = true;
    }
    range = [fromUs, toUs];
    from.value = toLocalInput(fromUs / 1000);
    to.value = toLocalInput(toUs / 1000);
    const bucket = forcedBucket ?? bucketFor(toUs - fromUs);
    const mine = ++seq;
    info.textContent = 'Loading…';
    try {
      const q = new URLSearchParams({ from: String(Math.floor(fromUs)), to: String(Math.ceil(toUs)) });
      if (bucket) q.set('bucket', String(bucket));
      const h = await get(`/api/v1/sensors/${encodeURIComponent(select.value)}/history?${q}`);
      if (!bucket && h.truncated && mine === seq && !gone) {
        // More raw readings than one reply holds (the server sends the
        // oldest): show the whole range as buckets of at least a second.
        return show(fromUs, toUs, false, bucketFor(toUs - fromUs, true));
      }
      if (mine !== seq || gone) return; // a later request won, or the view was left
      let data;
      if (bucket) {
        const b = h.buckets;
        data = [b.map((x) => x.start_us / 1e6), b.map((x) => x.min), b.map((x) => x.mean), b.map((x) => x.max)];
        const n = b.reduce((s, x) => s + x.count, 0);
        info.textContent = `${b.length} buckets of ${label(bucket)} (${n} readings), ${fmtTime(fromUs)} to ${fmtTime(toUs)}`;
      } else {
        const r = h.readings;
        data = [r.map((x) => x.timestamp_us / 1e6), r.map((x) => x.value)];
        info.textContent = `${r.length} readings, ${fmtTime(fromUs)} to ${fmtTime(toUs)}`;
      }
      if (h.truncated) info.textContent += ' (truncated: zoom in for the rest)';
      info.textContent += '. Drag across the chart to zoom in.';
      draw(data, bucket, range);
    } catch (e) {
      if (mine === seq && !gone) {
        info.textContent = `Could not load history: ${e.message}`;
        ctx.failed(e, true);
      }
    }
  }

  (async () => {
    try {
      const list = await get('/api/v1/sensors');
      if (gone) return;
      for (const s of list) select.append(el('option', { value: s.name, text: s.name }));
      if (!list.length) {
        info.textContent = 'No sensors in this token\u2019s scope.';
        return;
      }
      select.value = list.some((s) => s.name === sensor) ? sensor : list[0].name;
      const now = Date.now() * 1000;
      show(now - 15 * 60 * 1e6, now + 1, true);
    } catch (e) {
      ctx.failed(e);
    }
  })();

  return () => {
    gone = true;
    chart?.destroy();
  };
}
