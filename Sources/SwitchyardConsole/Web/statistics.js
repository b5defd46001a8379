// Statistics: deploy frequency, lead time, change failure rate and time to restore per service
// and environment (the console computes them), as charts with the numbers; and deployments per day.

import { h, fill, api, title, percent, duration, number, parseTime } from './app.js';
import { barChart, columnChart } from './chart.js';

const DAY = 86400000;

export async function mount(container, _params, query) {
  title('Statistics');
  const today = new Date();
  const defaultSince = new Date(today.getTime() - 30 * DAY).toISOString().slice(0, 10);
  const values = { service: query.get('service') || '', environment: query.get('environment') || '', since: query.get('since') || defaultSince, until: query.get('until') || '' };
  const services = await api('GET', '/services').then((a) => a.services).catch(() => []);
  const environmentNames = [...new Set(services.flatMap((s) => s.environments.map((e) => e.name)))].sort();
  const select = (name, label, options) => [h('label', { for: `stats-${name}` }, label),
    h('select', { id: `stats-${name}`, name }, h('option', { value: '' }, 'all'), options.map((o) => h('option', { value: o, selected: o === values[name] }, o)))];
  const form = h('form', { class: 'filters', id: 'stats-filters', role: 'search', 'aria-label': 'Choose what to count' },
    select('service', 'Service', services.map((s) => s.name)),
    select('environment', 'Environment', environmentNames),
    h('label', { for: 'stats-since' }, 'From'), h('input', { type: 'date', id: 'stats-since', name: 'since', value: values.since }),
    h('label', { for: 'stats-until' }, 'Before'), h('input', { type: 'date', id: 'stats-until', name: 'until', value: values.until }),
    h('button', { type: 'submit', class: 'primary' }, 'Show'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const element of form.elements) if (element.name && element.value) params.set(element.name, element.value);
    window.location.hash = `#/statistics?${params}`;
  });
  const body = h('div', { id: 'stats-body' });
  container.append(h('h1', {}, 'Deploy statistics'), form,
    h('p', { class: 'help' }, 'Deploy frequency counts deployments per day; lead time runs from the commit to its promotion; the change failure rate is the share of deployments rolled back, failed or crashed; time to restore runs from a failed deployment to the next promotion in the same environment.'),
    body);

  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value) params.set(key, value);
  const [stats, deployments] = await Promise.all([
    api('GET', `/statistics?${params}`),
    api('GET', `/deployments?${params}&limit=10000`),
  ]);
  render(body, stats.statistics || [], deployments.deployments || [], values);
  return null;
}

function render(body, rows, deployments, values) {
  if (!rows.length) { fill(body, h('p', { class: 'muted' }, 'No finished deployment in this range.')); return; }
  const label = (r) => `${r.service} / ${r.environment}`;
  // Each chart shows the 12 pairs with the highest figure (pairs without one are left out); the table has every pair.
  const top = (value) => rows.filter((r) => value(r) !== null && value(r) !== undefined)
    .sort((a, b) => value(b) - value(a) || label(a).localeCompare(label(b))).slice(0, 12);
  const bars = (value, kind) => top(value).map((r) => ({ label: label(r), value: value(r), kind }));
  const totals = rows.reduce((t, r) => ({ deployments: t.deployments + r.deployments, failed: t.failed + r.failed, promoted: t.promoted + r.promoted }), { deployments: 0, failed: 0, promoted: 0 });
  fill(body,
    h('ul', { class: 'legend totals', id: 'stats-totals' },
      h('li', {}, h('strong', {}, String(totals.deployments)), ' deployments'),
      h('li', {}, h('strong', {}, String(totals.promoted)), ' promoted'),
      h('li', {}, h('strong', {}, String(totals.failed)), ' failed or rolled back'),
      h('li', {}, 'change failure rate ', h('strong', {}, totals.promoted + totals.failed ? percent(totals.failed / (totals.promoted + totals.failed), 1) : '—'))),
    h('div', { class: 'charts wide' },
      perDay(deployments, values),
      barChart({ title: 'Deploy frequency (per day)', bars: bars((r) => r.deploy_frequency_per_day, 'neutral'), format: (v) => number(v, 2) }),
      barChart({ title: 'Lead time (median)', bars: bars((r) => r.lead_time.median_seconds, 'neutral'), format: duration }),
      barChart({ title: 'Change failure rate', bars: bars((r) => r.change_failure_rate, 'bad'), format: (v) => percent(v, 0) }),
      barChart({ title: 'Time to restore (median)', bars: bars((r) => r.time_to_restore.median_seconds, 'bad'), format: duration })),
    h('h2', {}, 'By service and environment'),
    h('div', { class: 'table-scroll' }, h('table', { id: 'stats-table' },
      h('thead', {}, h('tr', {}, ['Service', 'Environment', 'Deployments', 'Promoted', 'Failed', 'Per day', 'Lead time (median)', 'Change failure rate', 'Time to restore (median)']
        .map((t, i) => h('th', { scope: 'col', class: i >= 2 ? 'number' : undefined }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', { dataset: { service: r.service, environment: r.environment } },
        h('th', { scope: 'row' }, h('a', { href: `#/services/${encodeURIComponent(r.service)}` }, r.service)),
        h('td', {}, r.environment),
        h('td', { class: 'number' }, String(r.deployments)), h('td', { class: 'number' }, String(r.promoted)), h('td', { class: 'number' }, String(r.failed)),
        h('td', { class: 'number' }, number(r.deploy_frequency_per_day, 2)),
        h('td', { class: 'number' }, duration(r.lead_time.median_seconds), r.lead_time.count ? h('span', { class: 'muted' }, ` (${r.lead_time.count})`) : ''),
        h('td', { class: 'number' }, percent(r.change_failure_rate, 1)),
        h('td', { class: 'number' }, duration(r.time_to_restore.median_seconds), r.time_to_restore.count ? h('span', { class: 'muted' }, ` (${r.time_to_restore.count})`) : '')))))));
}

/** Deployments per day, promoted against failed, over the chosen range (at most 60 days drawn). */
function perDay(deployments, values) {
  const finished = deployments.filter((d) => d.outcome !== 'running');
  const times = finished.map((d) => parseTime(d.started_at)).filter((t) => t !== null);
  const start = Math.max(values.since ? Date.parse(`${values.since}T00:00:00`) : Math.min(...times), (values.until ? Date.parse(`${values.until}T00:00:00`) : Date.now()) - 60 * DAY);
  const end = values.until ? Date.parse(`${values.until}T00:00:00`) : Date.now();
  const days = [];
  for (let t = new Date(start).setHours(0, 0, 0, 0); t < end; t += DAY) days.push(t);
  const key = (t) => new Date(t).toDateString();
  const counts = new Map(days.map((t) => [key(t), { good: 0, bad: 0 }]));
  for (const d of finished) {
    const c = counts.get(key(parseTime(d.started_at)));
    if (!c) continue;
    if (d.outcome === 'promoted') c.good += 1; else c.bad += 1;
  }
  const format = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  return columnChart({
    title: 'Deployments per day',
    columns: days.map((t) => ({ label: format.format(t), segments: [{ value: counts.get(key(t)).good, kind: 'good', name: 'promoted' }, { value: counts.get(key(t)).bad, kind: 'bad', name: 'failed or rolled back' }] })),
    keys: [{ name: 'promoted', kind: 'good' }, { name: 'failed or rolled back', kind: 'bad' }],
  });
}
