// Overview: one row per service, one column per environment in promotion order. Each cell says
// what runs there and what happens to it. Sortable, filterable (kept in the URL) and live.

import { h, fill, api, onFeed, coalesce, ago, badge, readProgress, parseTime, title, replaceQuery, escapePath } from './app.js';

/** What a cell shows: the state of `environment` of `service`. */
export function cellState(service, environment) {
  const latest = environment.latest || null;
  const rollout = service.rollout || null;
  const out = {
    version: environment.version || null,
    state: 'idle',
    since: latest ? latest.ended_at || latest.started_at : null,
    actor: latest ? latest.actor : null,
    detail: null,
    fraction: null,
    rollout: latest ? latest.rollout : null,
    target: null,
  };
  if (latest && latest.outcome !== 'promoted') {
    out.state = latest.outcome === 'running' ? 'progressing' : latest.outcome;
    out.detail = latest.reason || null;
    out.target = latest.version;
  }
  if (rollout && ['running', 'pending'].includes(rollout.state)) {
    const here = rollout.environments.find((e) => e.name === environment.name);
    if (here) {
      out.rollout = rollout.id;
      out.target = rollout.version;
      const first = rollout.environments[0] && rollout.environments[0].name === environment.name;
      if ((rollout.state === 'pending' && first) || (rollout.environment === environment.name && ['running', 'waiting'].includes(here.state))) {
        const progress = readProgress(rollout.progress);
        out.state = rollout.state === 'pending' ? 'pending' : progress.kind;
        out.detail = rollout.progress || (rollout.state === 'pending' ? 'starting' : null);
        out.fraction = progress.fraction;
        out.actor = rollout.actor;
        out.since = rollout.started_at;
      } else if (here.state === 'waiting') {
        out.state = out.state === 'idle' ? 'queued' : out.state;
        out.detail = `${rollout.version} queued`;
      }
    }
  }
  return out;
}

const severity = { failed: 0, crashed: 0, rolled_back: 1, approval: 2, paused: 3, progressing: 4, pending: 4, queued: 5, idle: 6 };

/** The environments of every service merged into one promotion order. */
export function columnOrder(services) {
  const order = [];
  // Plans know the promotion order; services known only from their history list theirs by name.
  const planned = services.filter((s) => s.source !== 'history');
  for (const service of [...planned, ...services.filter((s) => s.source === 'history')]) {
    let previous = -1;
    for (const environment of service.environments) {
      const at = order.indexOf(environment.name);
      if (at === -1) { order.splice(previous + 1, 0, environment.name); previous += 1; } else previous = at;
    }
  }
  return order;
}

export async function mount(container, _params, query) {
  title('Overview');
  const filter = { q: query.get('q') || '', state: query.get('state') || '', sort: query.get('sort') || 'service', dir: query.get('dir') || 'asc' };
  const count = h('p', { class: 'muted', id: 'overview-count', 'aria-live': 'polite' });
  const search = h('input', { type: 'search', id: 'overview-filter', value: filter.q, placeholder: 'service or version', autocomplete: 'off' });
  const stateSelect = h('select', { id: 'overview-state' },
    [['', 'every state'], ['active', 'rolling out (progressing, paused, waiting)'], ['attention', 'needs attention (failed, rolled back, crashed)'],
     ['idle', 'idle']].map(([value, text]) => h('option', { value, selected: value === filter.state }, text)));
  const table = h('table', { class: 'overview', id: 'overview-table' });
  container.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Services'), count),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'overview-filter' }, 'Filter'), search,
      h('label', { for: 'overview-state' }, 'State'), stateSelect),
    h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Services by environment' }, table));

  let services = [];
  const rows = new Map();
  const render = () => {
    const started = performance.now();
    renderTable(table, services, filter, rows, count);
    const ms = performance.now() - started;
    table.dataset.renderMs = ms.toFixed(1);
    window.switchyardRenderTimes = window.switchyardRenderTimes || [];
    window.switchyardRenderTimes.push({ page: 'overview', services: services.length, ms });
  };
  const load = async () => {
    const answer = await api('GET', '/services');
    services = answer.services || [];
    render();
  };
  const refresh = coalesce(load, 400);
  search.addEventListener('input', () => { filter.q = search.value; saveQuery(filter); render(); });
  stateSelect.addEventListener('change', () => { filter.state = stateSelect.value; saveQuery(filter); render(); });
  table.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-sort]');
    if (!button) return;
    const key = button.dataset.sort;
    filter.dir = filter.sort === key && filter.dir === 'asc' ? 'desc' : 'asc';
    filter.sort = key;
    saveQuery(filter);
    render();
    table.querySelector(`button[data-sort="${CSS.escape(key)}"]`)?.focus();
  });

  await load();
  const unsubscribe = onFeed((entry) => { if (['rollout', 'event', 'control', 'lock', 'service', 'reconnected'].includes(entry.topic)) refresh(); });
  // The proxies' live state is not in the feed; read it again now and then.
  const timer = setInterval(refresh, 15000);
  return { unmount() { unsubscribe(); clearInterval(timer); refresh.cancel(); } };
}

function saveQuery(filter) {
  replaceQuery({ q: filter.q, state: filter.state, sort: filter.sort === 'service' ? '' : filter.sort, dir: filter.dir === 'asc' ? '' : filter.dir });
}

function matches(service, states, filter) {
  if (filter.q) {
    const q = filter.q.toLowerCase();
    const text = [service.name, ...service.environments.map((e) => e.version || ''), service.rollout ? service.rollout.version : ''].join(' ').toLowerCase();
    if (!text.includes(q)) return false;
  }
  if (filter.state === 'active') return states.some((s) => ['progressing', 'pending', 'paused', 'approval'].includes(s.state));
  if (filter.state === 'attention') return states.some((s) => ['failed', 'rolled_back', 'crashed'].includes(s.state));
  if (filter.state === 'idle') return states.every((s) => ['idle', 'queued'].includes(s.state));
  return true;
}

function renderTable(table, services, filter, rows, count) {
  const columns = columnOrder(services);
  const header = ['service', ...columns].join('\u0000');
  if (table.dataset.columns !== header || !table.tHead) {
    table.dataset.columns = header;
    rows.clear();
    fill(table,
      h('caption', { class: 'visually-hidden' }, 'Each service by environment, in promotion order: the version live there, its state, since when and by whom. Column buttons sort.'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, sortButton('service', 'Service')),
        columns.map((name) => h('th', { scope: 'col' }, sortButton(`env:${name}`, name))))),
      h('tbody', {}));
  }
  for (const th of table.tHead.rows[0].cells) {
    const button = th.querySelector('button');
    const key = button.dataset.sort;
    th.setAttribute('aria-sort', key === filter.sort ? (filter.dir === 'asc' ? 'ascending' : 'descending') : 'none');
  }
  const entries = services.map((service) => {
    const byName = new Map(service.environments.map((e) => [e.name, e]));
    const states = columns.map((name) => (byName.has(name) ? cellState(service, byName.get(name)) : null));
    return { service, states };
  }).filter(({ service, states }) => matches(service, states.filter(Boolean), filter));
  sortEntries(entries, filter, columns);

  const body = table.tBodies[0];
  const wanted = [];
  for (const { service, states } of entries) {
    const signature = JSON.stringify([service.name, service.deployable, states]);
    let row = rows.get(service.name);
    if (!row || row.dataset.signature !== signature) {
      const fresh = renderRow(service, states, columns);
      fresh.dataset.signature = signature;
      if (row && row.parentNode) row.replaceWith(fresh);
      row = fresh;
      rows.set(service.name, row);
    }
    wanted.push(row);
  }
  // Moves rows only where the order changed, so focus stays where it was.
  const keep = new Set(wanted);
  for (const row of [...body.rows]) if (!keep.has(row)) row.remove();
  wanted.forEach((row, index) => { if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null); });
  if (!wanted.length) {
    body.append(h('tr', { class: 'empty' }, h('td', { colspan: String(columns.length + 1) },
      services.length ? 'No service matches the filter.' : 'No service yet: register a plan in the console\'s configuration, or report a rollout with `switchyard deploy run --console`.')));
  }
  count.textContent = `${entries.length} of ${services.length} services`;
}

function sortButton(key, text) {
  return h('button', { type: 'button', class: 'sort', dataset: { sort: key } }, text);
}

function sortEntries(entries, filter, columns) {
  const direction = filter.dir === 'desc' ? -1 : 1;
  const key = filter.sort;
  const column = key.startsWith('env:') ? columns.indexOf(key.slice(4)) : -1;
  const value = ({ service, states }) => {
    if (column >= 0) {
      const s = states[column];
      return s ? [severity[s.state] ?? 9, -(parseTime(s.since) || 0), service.name] : [99, 0, service.name];
    }
    return [service.name];
  };
  entries.sort((a, b) => {
    const x = value(a), y = value(b);
    for (let i = 0; i < x.length; i++) {
      if (x[i] < y[i]) return -direction;
      if (x[i] > y[i]) return direction;
    }
    return 0;
  });
}

function renderRow(service, states, columns) {
  const live = service.rollout && ['running', 'pending'].includes(service.rollout.state) ? service.rollout : null;
  return h('tr', { dataset: { service: service.name } },
    h('th', { scope: 'row' },
      h('a', { href: `#/services/${escapePath(service.name)}` }, service.name),
      live ? h('a', { class: 'rollout-link', href: `#/rollouts/${live.id}`, title: `rollout #${live.id}` }, `#${live.id}`) : null),
    columns.map((name, index) => renderCell(service, name, states[index])));
}

function renderCell(service, environment, s) {
  if (!s) return h('td', { class: 'cell none' }, h('span', { class: 'visually-hidden' }, 'not in this service'));
  const link = `#/services/${escapePath(service.name)}/environments/${escapePath(environment)}`;
  const active = ['progressing', 'pending', 'paused', 'approval'].includes(s.state);
  return h('td', { class: `cell state-${s.state}`, dataset: { environment, state: s.state, version: s.version || '' } },
    h('div', { class: 'cell-top' },
      h('a', { class: 'version', href: link, title: `${service.name} in ${environment}` }, s.version || 'nothing live'),
      s.state !== 'idle' ? (s.rollout ? h('a', { href: `#/rollouts/${s.rollout}`, class: 'badge-link' }, badge(s.state)) : badge(s.state)) : null),
    active && s.fraction !== null ? h('progress', { max: '1', value: String(s.fraction), 'aria-label': `${environment}: ${s.detail || ''}` }) : null,
    s.detail && s.state !== 'idle' ? h('div', { class: 'detail', title: s.detail }, active && s.target && s.target !== s.version ? `${s.target}: ${s.detail}` : s.detail) : null,
    s.since ? h('div', { class: 'meta' }, ago(s.since), s.actor ? ` by ${s.actor}` : '') : null);
}
