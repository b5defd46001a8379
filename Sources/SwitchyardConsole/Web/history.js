// History: every deployment, filterable by service, environment, outcome, actor and time
// (the filters are in the URL); exported as CSV or JSON by the API itself.

import { h, fill, api, onFeed, coalesce, title } from './app.js';
import { deploymentsTable } from './service.js';

const FIELDS = ['service', 'environment', 'outcome', 'actor', 'since', 'until', 'limit'];
const OUTCOMES = ['promoted', 'rolled_back', 'failed', 'crashed', 'running'];

export async function mount(container, _params, query) {
  title('History');
  const values = Object.fromEntries(FIELDS.map((f) => [f, query.get(f) || '']));
  const services = await api('GET', '/services').then((a) => a.services).catch(() => []);
  const environmentNames = [...new Set(services.flatMap((s) => s.environments.map((e) => e.name)))].sort();

  const input = (name, label, attributes = {}) => [h('label', { for: `history-${name}` }, label),
    h('input', { id: `history-${name}`, name, value: values[name], ...attributes })];
  const select = (name, label, options) => [h('label', { for: `history-${name}` }, label),
    h('select', { id: `history-${name}`, name }, h('option', { value: '' }, 'all'),
      options.map((o) => h('option', { value: o, selected: o === values[name] }, o.replace(/_/g, ' '))))];
  const form = h('form', { class: 'filters', id: 'history-filters', role: 'search', 'aria-label': 'Filter deployments' },
    select('service', 'Service', services.map((s) => s.name)),
    select('environment', 'Environment', environmentNames),
    select('outcome', 'Outcome', OUTCOMES),
    input('actor', 'By', { size: '12', autocomplete: 'off' }),
    input('since', 'From', { type: 'date' }),
    input('until', 'Before', { type: 'date' }),
    h('button', { type: 'submit', class: 'primary' }, 'Show'),
    h('button', { type: 'button', id: 'history-clear', onclick: () => { window.location.hash = '#/history'; } }, 'Clear'));
  const exports = h('div', { class: 'actions', id: 'history-export' });
  const result = h('div', { id: 'history-result' });
  const count = h('p', { class: 'muted', 'aria-live': 'polite', id: 'history-count' });
  container.append(h('div', { class: 'page-head' }, h('h1', {}, 'History'), h('div', { class: 'actions' }, exports)), form, count, result);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const element of form.elements) if (element.name && element.value) params.set(element.name, element.value);
    // A new URL (not a replacement): each search can be pasted and the Back button returns to the previous one.
    window.location.hash = `#/history${params.toString() ? `?${params}` : ''}`;
  });

  const params = new URLSearchParams();
  for (const f of FIELDS) if (values[f]) params.set(f, values[f]);
  if (!params.has('limit')) params.set('limit', '500');
  const csv = new URLSearchParams(params); csv.set('format', 'csv'); csv.set('limit', '10000');
  const json = new URLSearchParams(params); json.set('format', 'json'); json.set('limit', '10000');
  fill(exports,
    h('a', { class: 'button', id: 'export-csv', href: `/api/v1/deployments?${csv}`, download: 'deployments.csv' }, 'Export CSV'),
    h('a', { class: 'button', id: 'export-json', href: `/api/v1/deployments?${json}`, download: 'deployments.json' }, 'Export JSON'));

  const load = async () => {
    const answer = await api('GET', `/deployments?${params}`);
    fill(result, deploymentsTable(answer.deployments, true));
    count.textContent = `${answer.deployments.length} deployment${answer.deployments.length === 1 ? '' : 's'}${answer.deployments.length >= Number(params.get('limit')) ? ` (the latest ${params.get('limit')}; narrow the filters or export for more)` : ''}`;
  };
  await load();
  const refresh = coalesce(load, 1000);
  const unsubscribe = onFeed((entry) => { if (entry.topic === 'rollout' || entry.topic === 'reconnected') refresh(); });
  return { unmount() { unsubscribe(); refresh.cancel(); } };
}
