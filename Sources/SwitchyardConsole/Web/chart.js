// Small SVG charts: lines over time with threshold lines, horizontal bars and stacked columns.
// Colours come from CSS classes (series-N, threshold); every chart carries a text summary for
// screen readers and a data table behind a disclosure, and data-points (how many values it drew).

import { h, formatClock, formatDateTime } from './app.js';

const W = 640;
const PAD = { left: 56, right: 16, top: 14, bottom: 26 };

/** A rounded-up top for the y axis: 0.0137 → 0.015, 730 → 800. */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/**
 * A line chart over time.
 * options: { title, series: [{name, points: [{t, v}], kind}], thresholds: [{value, label}], format(v), from, to, height, id }
 * `kind` picks the colour class (canary, stable, or any series-N); points with v null are gaps.
 */
export function lineChart(options) {
  const { title, series, thresholds = [], format = String, height = 170 } = options;
  const all = series.flatMap((s) => s.points.filter((p) => p.v !== null && Number.isFinite(p.v)));
  const times = all.map((p) => p.t);
  const from = options.from ?? (times.length ? Math.min(...times) : Date.now() - 60000);
  let to = options.to ?? (times.length ? Math.max(...times) : Date.now());
  if (to <= from) to = from + 1000;
  const top = niceCeiling(Math.max(options.minTop || 0, ...all.map((p) => p.v), ...thresholds.map((t) => t.value * 1.15)));
  const x = (t) => PAD.left + ((t - from) / (to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / top) * (height - PAD.top - PAD.bottom);

  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart', role: 'img', 'aria-label': summary(title, series, thresholds, format) });
  for (let i = 0; i <= 4; i++) {
    const value = (top * i) / 4;
    svg.append(h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value), class: 'grid' }),
               h('svg:text', { x: PAD.left - 6, y: y(value) + 4, class: 'axis', 'text-anchor': 'end' }, format(value)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) * i) / 4;
    svg.append(h('svg:text', { x: x(t), y: height - 8, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, formatClock(t)));
  }
  for (const threshold of thresholds) {
    svg.append(h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(threshold.value), y2: y(threshold.value), class: 'threshold' }),
               h('svg:text', { x: W - PAD.right - 4, y: y(threshold.value) - 4, class: 'threshold-label', 'text-anchor': 'end' },
                 `${threshold.label} ${format(threshold.value)}`));
  }
  let drawn = 0;
  series.forEach((s, index) => {
    const kind = s.kind || `series-${index}`;
    const gap = 3 * typicalSpacing(s.points);
    let d = '';
    let pen = false;
    let previous = null;
    for (const p of s.points) {
      if (p.v === null || !Number.isFinite(p.v) || p.t < from || p.t > to) { pen = false; continue; }
      // A pool without samples for a while (no traffic, not read) is a gap, not a slope.
      if (previous !== null && p.t - previous > gap) pen = false;
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
      previous = p.t;
      drawn += 1;
    }
    if (d && !s.markersOnly) svg.append(h('svg:path', { d, class: `line ${kind}` }));
    const visible = s.points.filter((p) => p.v !== null && Number.isFinite(p.v) && p.t >= from && p.t <= to);
    if (s.markersOnly || visible.length <= 40) {
      for (const p of visible) {
        svg.append(h('svg:circle', { cx: x(p.t), cy: y(p.v), r: s.markersOnly ? 4 : 2.5, class: `dot ${kind}${p.over ? ' over' : ''}` },
                     h('svg:title', {}, `${s.name} ${formatClock(p.t)}: ${format(p.v)}`)));
      }
    }
  });
  if (!drawn) {
    svg.append(h('svg:text', { x: W / 2, y: height / 2, class: 'empty', 'text-anchor': 'middle' }, 'no data yet'));
  }
  return h('figure', { class: 'chart-box', dataset: { points: String(drawn) }, id: options.id },
    h('figcaption', {}, title),
    svg,
    legend(series, thresholds),
    dataTable(series, format));
}

/** The median time between a series' samples (infinite with fewer than three). */
function typicalSpacing(points) {
  const times = points.filter((p) => p.v !== null && Number.isFinite(p.v)).map((p) => p.t);
  if (times.length < 3) return Infinity;
  const steps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  return Math.max(1, steps[Math.floor(steps.length / 2)]);
}

function summary(title, series, thresholds, format) {
  const parts = series.map((s) => {
    const values = s.points.filter((p) => p.v !== null && Number.isFinite(p.v));
    if (!values.length) return `${s.name}: no data`;
    const last = values[values.length - 1];
    const peak = Math.max(...values.map((p) => p.v));
    return `${s.name}: latest ${format(last.v)}, highest ${format(peak)} over ${values.length} points`;
  });
  for (const t of thresholds) parts.push(`${t.label} ${format(t.value)}`);
  return `${title}. ${parts.join('; ')}.`;
}

function legend(series, thresholds) {
  return h('ul', { class: 'legend', 'aria-hidden': 'true' },
    series.map((s, index) => h('li', {}, h('span', { class: `swatch ${s.kind || `series-${index}`}${s.markersOnly ? ' marker' : ''}` }), s.name)),
    thresholds.map((t) => h('li', {}, h('span', { class: 'swatch threshold' }), t.label)));
}

function dataTable(series, format) {
  const rows = [];
  for (const s of series) for (const p of s.points) if (p.v !== null && Number.isFinite(p.v)) rows.push([p.t, s.name, p.v]);
  rows.sort((a, b) => a[0] - b[0]);
  const shown = rows.slice(-30);
  return h('details', { class: 'chart-data' },
    h('summary', {}, `Data (${rows.length} values${rows.length > shown.length ? `, the latest ${shown.length} shown` : ''})`),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Series'), h('th', { scope: 'col' }, 'Value'))),
      h('tbody', {}, shown.map(([t, name, v]) => h('tr', {}, h('td', {}, formatDateTime(t)), h('td', {}, name), h('td', {}, format(v)))))));
}

/**
 * Horizontal bars, one per row, the value written at the end of each.
 * options: { title, bars: [{label, value, kind}], format, threshold: {value, label} }
 */
export function barChart(options) {
  const { title, bars, format = String, threshold } = options;
  const row = 24;
  const labelWidth = 190;
  const height = Math.max(1, bars.length) * row + 24;
  if (!bars.length) {
    return h('figure', { class: 'chart-box', dataset: { points: '0' } }, h('figcaption', {}, title), h('p', { class: 'muted' }, 'Nothing to show in this range.'));
  }
  const values = bars.map((b) => b.value).filter((v) => v !== null && Number.isFinite(v));
  const top = niceCeiling(Math.max(0, ...values, threshold ? threshold.value : 0));
  const width = W - labelWidth - 90;
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart bars', role: 'img',
                             'aria-label': `${title}. ${bars.map((b) => `${b.label}: ${b.value === null || b.value === undefined ? 'none' : format(b.value)}`).join('; ')}.` });
  let drawn = 0;
  bars.forEach((b, i) => {
    const y = 8 + i * row;
    svg.append(h('svg:text', { x: labelWidth - 8, y: y + 15, class: 'axis label', 'text-anchor': 'end' }, b.label.length > 30 ? `${b.label.slice(0, 29)}…` : b.label));
    if (b.value === null || b.value === undefined || !Number.isFinite(b.value)) {
      svg.append(h('svg:text', { x: labelWidth + 4, y: y + 15, class: 'axis muted' }, 'none'));
      return;
    }
    const length = Math.max(1, (b.value / top) * width);
    svg.append(h('svg:rect', { x: labelWidth, y: y + 3, width: length, height: row - 8, class: `bar ${b.kind || 'series-0'}` },
                 h('svg:title', {}, `${b.label}: ${format(b.value)}`)),
               h('svg:text', { x: labelWidth + length + 6, y: y + 15, class: 'axis value' }, format(b.value)));
    drawn += 1;
  });
  if (threshold) {
    const tx = labelWidth + (threshold.value / top) * width;
    svg.append(h('svg:line', { x1: tx, x2: tx, y1: 2, y2: height - 16, class: 'threshold' }),
               h('svg:text', { x: tx, y: height - 4, class: 'threshold-label', 'text-anchor': 'middle' }, `${threshold.label} ${format(threshold.value)}`));
  }
  return h('figure', { class: 'chart-box', dataset: { points: String(drawn) } }, h('figcaption', {}, title), svg);
}

/**
 * Stacked columns, e.g. deployments per day by outcome.
 * options: { title, columns: [{label, segments: [{value, kind, name}]}], keys: [{name, kind}] }
 */
export function columnChart(options) {
  const { title, columns, keys } = options;
  const height = 190;
  const totals = columns.map((c) => c.segments.reduce((sum, s) => sum + s.value, 0));
  const top = niceCeiling(Math.max(1, ...totals));
  const plot = W - PAD.left - PAD.right;
  const slot = plot / Math.max(1, columns.length);
  const y = (v) => PAD.top + (1 - v / top) * (height - PAD.top - PAD.bottom);
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart columns', role: 'img',
                             'aria-label': `${title}. ${columns.map((c, i) => `${c.label}: ${totals[i]}`).join('; ')}.` });
  for (let i = 0; i <= 4; i++) {
    const value = (top * i) / 4;
    svg.append(h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value), class: 'grid' }),
               h('svg:text', { x: PAD.left - 6, y: y(value) + 4, class: 'axis', 'text-anchor': 'end' }, Number.isInteger(value) ? String(value) : value.toFixed(1)));
  }
  let drawn = 0;
  const every = Math.max(1, Math.ceil(columns.length / 10));
  columns.forEach((c, i) => {
    let base = 0;
    const left = PAD.left + i * slot + slot * 0.15;
    for (const s of c.segments) {
      if (!(s.value > 0)) continue;
      svg.append(h('svg:rect', { x: left, y: y(base + s.value), width: Math.max(1, slot * 0.7), height: y(base) - y(base + s.value), class: `bar ${s.kind}` },
                   h('svg:title', {}, `${c.label}: ${s.value} ${s.name}`)));
      base += s.value;
      drawn += 1;
    }
    if (i % every === 0) svg.append(h('svg:text', { x: left + slot * 0.35, y: height - 8, class: 'axis', 'text-anchor': 'middle' }, c.label));
  });
  return h('figure', { class: 'chart-box', dataset: { points: String(drawn) } },
    h('figcaption', {}, title), svg,
    h('ul', { class: 'legend', 'aria-hidden': 'true' }, keys.map((k) => h('li', {}, h('span', { class: `swatch ${k.kind}` }), k.name))));
}
