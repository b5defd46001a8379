// Service and environment: the proxies, pools and servers with health, weights, active pool,
// canary and lock; live traffic charts; the version history of an environment with "roll back
// to this version"; the rollouts and the audit trail.

import { h, fill, api, can, act, onFeed, coalesce, ago, at, badge, readProgress, parseTime, percent, number, duration,
         title, escapePath } from './app.js';
import { lineChart } from './chart.js';

export async function mount(container, [serviceName, environmentName], _query, page) {
  const isEnvironment = page === 'environment';
  title(isEnvironment ? `${serviceName} in ${environmentName}` : serviceName);
  const parts = { head: h('div', {}), live: h('div', {}), lower: h('div', {}), audit: h('div', {}) };
  container.append(parts.head, parts.live, parts.lower, parts.audit);
  const view = { serviceName, environmentName, isEnvironment, overview: null, environment: null, lowerSignature: null };

  const loadLive = async () => {
    view.overview = await api('GET', `/services/${escapePath(serviceName)}`);
    renderHead(view, parts.head);
    renderLive(view, parts.live);
  };
  const loadAll = async () => {
    await loadLive();
    if (isEnvironment) view.environment = await api('GET', `/services/${escapePath(serviceName)}/environments/${escapePath(environmentName)}`);
    renderLower(view, parts.lower);
    await renderAudit(view, parts.audit);
  };
  try {
    await loadAll();
  } catch (error) {
    if (error.status === 404) {
      fill(container, h('h1', {}, isEnvironment ? `No environment ${environmentName} of ${serviceName}` : `No service ${serviceName}`),
           h('p', {}, h('a', { href: '#/' }, 'Back to the overview.')));
      return null;
    }
    throw error;
  }
  const refresh = coalesce(loadAll, 400);
  const refreshLive = coalesce(loadLive, 100);
  const unsubscribe = onFeed((entry) => { if (entry.service === serviceName || entry.topic === 'reconnected') refresh(); });
  const timer = setInterval(refreshLive, 3000);
  return { unmount() { unsubscribe(); clearInterval(timer); refresh.cancel(); refreshLive.cancel(); } };
}

function renderHead(view, box) {
  const { service, plan } = view.overview;
  const running = service.rollout && ['running', 'pending'].includes(service.rollout.state) ? service.rollout : null;
  const sources = { config: 'registered in the console: it can deploy it', reported: 'reported by its runners', history: 'known from its history' };
  const deploy = service.deployable && can('deploy')
    ? h('a', { class: 'button primary', id: 'deploy-link', href: `#/deploy?service=${escapePath(service.name)}` }, `Deploy ${service.name}`) : null;
  const heading = view.isEnvironment
    ? h('h1', {}, h('a', { href: `#/services/${escapePath(service.name)}` }, service.name), ` in ${view.environmentName}`)
    : h('h1', {}, service.name);
  const signature = JSON.stringify([service.name, service.source, running && [running.id, running.progress, running.state], !!deploy, view.isEnvironment]);
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  fill(box,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Overview'), ' / ', view.isEnvironment ? [h('a', { href: `#/services/${escapePath(service.name)}` }, service.name), ' / environment'] : 'service'),
    h('div', { class: 'page-head' }, heading, h('span', { class: 'muted' }, sources[service.source] || service.source), h('div', { class: 'actions' }, deploy)),
    running ? h('p', { class: 'running' }, badge(readProgress(running.progress).kind === 'progressing' ? 'progressing' : readProgress(running.progress).kind),
      ' ', h('a', { href: `#/rollouts/${running.id}` }, `Rollout #${running.id} of ${running.version}`), running.environment ? ` in ${running.environment}: ${running.progress || ''}` : ' starting') : null,
    !view.isEnvironment && plan ? h('p', { class: 'muted' }, `Plan ${plan.path}: `, plan.environments.map((e) => `${e.name} (${e.strategy}${e.approval ? ', manual approval' : ''})`).join(' → ')) : null);
}

function renderLive(view, box) {
  const { service } = view.overview;
  const environments = view.isEnvironment ? service.environments.filter((e) => e.name === view.environmentName) : service.environments;
  if (!box.firstChild) box.append(h('h2', {}, view.isEnvironment ? 'Proxy' : 'Environments'), h('div', { class: 'env-cards' }));
  const cards = box.querySelector('.env-cards');
  if (!environments.length) { fill(cards, h('p', { class: 'muted' }, 'No environment known yet.')); return; }
  // Redraws the cards in place; keeps the open state of disclosures.
  const open = new Set([...cards.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
  fill(cards, environments.map((environment) => environmentCard(service, environment, view.isEnvironment)));
  for (const d of cards.querySelectorAll('details[data-key]')) if (open.has(d.dataset.key)) d.open = true;
}

function environmentCard(service, environment, wide) {
  const live = environment.live;
  const latest = environment.latest;
  const link = `#/services/${escapePath(service.name)}/environments/${escapePath(environment.name)}`;
  return h('section', { class: 'env-card', dataset: { environment: environment.name }, 'aria-labelledby': `card-${environment.name}` },
    h('h3', { id: `card-${environment.name}` }, wide ? environment.name : h('a', { href: link }, environment.name), ' ',
      environment.version ? h('code', { class: 'live-version' }, environment.version) : h('span', { class: 'muted' }, 'nothing promoted yet')),
    latest ? h('p', { class: 'muted' }, 'Last deployment: ', h('a', { href: `#/rollouts/${latest.rollout}` }, latest.version), ' ', badge(latest.outcome === 'running' ? 'progressing' : latest.outcome),
      ' ', ago(latest.ended_at || latest.started_at), ` by ${latest.actor}`) : null,
    live ? proxyFacts(live) : h('p', { class: 'muted' }, 'The console does not watch this environment\'s proxy (no plan with its admin address).'),
    live && live.servers.length ? serversTable(live) : null,
    live ? h('div', { class: 'charts' }, trafficCharts(live, environment.name)) : null);
}

function proxyFacts(live) {
  const proxies = live.proxies || [];
  return [
    live.drift ? h('p', { class: 'error drift', role: 'alert' }, h('strong', {}, 'Drift: '), live.drift) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, proxies.length > 1 ? 'Proxies' : 'Proxy'),
      h('dd', {}, proxies.length > 1 ? `${proxies.filter((p) => p.reachable).length} of ${proxies.length} reachable` : h('code', {}, live.admin), ' ',
        proxies.length > 1 ? null : live.reachable ? h('span', { class: 'health-up' }, 'reachable') : h('span', { class: 'health-down' }, 'unreachable'),
        live.checked_at ? [' (read ', ago(live.checked_at), ')'] : null),
      live.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error' }, live.error)] : null,
      h('dt', {}, 'Active pool'), h('dd', { class: 'active-pool' }, live.active ? h('strong', {}, live.active) : '—', live.standby ? `, standby ${live.standby}` : ''),
      h('dt', {}, 'Canary'), h('dd', { class: 'canary' }, live.canary_pool ? `${live.canary_pool} at ${live.canary_weight || '?'}` : 'none'),
      live.guard_trip ? [h('dt', {}, 'Guard'), h('dd', { class: 'over' }, `tripped: ${live.guard_trip}`)] : null),
    live.lock_owner ? h('p', { class: 'lock' }, h('strong', {}, 'Locked'), ` by ${live.lock_owner}`, live.lock_reason ? ` (${live.lock_reason})` : '',
      live.lock_since ? [' since ', ago(live.lock_since)] : null, live.lock_expires ? [', expires ', ago(live.lock_expires)] : null) : null,
    proxies.length > 1 ? proxiesTable(live) : null,
  ];
}

/** Each proxy of an environment: what it routes, its lock, whether it answered. */
function proxiesTable(live) {
  return h('div', { class: 'table-scroll' }, h('table', { class: 'proxies' },
    h('caption', { class: 'visually-hidden' }, `Proxies of ${live.environment}`),
    h('thead', {}, h('tr', {}, ['Proxy', 'Active pool', 'Canary', 'Lock', 'Generation'].map((t, i) => h('th', { scope: 'col', class: i === 4 ? 'number' : undefined }, t)))),
    h('tbody', {}, live.proxies.map((p) => h('tr', { dataset: { admin: p.admin } },
      h('td', {}, h('code', {}, p.admin), ' ', p.reachable ? h('span', { class: 'health-up' }, 'reachable') : h('span', { class: 'health-down', title: p.error || '' }, 'unreachable')),
      h('td', {}, p.active || '—', p.standby ? `, standby ${p.standby}` : ''),
      h('td', { class: 'canary' }, p.canary_pool ? `${p.canary_pool} at ${p.canary_weight || '?'}` : 'none'),
      h('td', {}, p.lock_owner ? `${p.lock_proxy_wide ? 'proxy-wide, ' : ''}${p.lock_owner}` : '—'),
      h('td', { class: 'number' }, p.generation === null || p.generation === undefined ? '—' : String(p.generation)))))));
}

function serversTable(live) {
  return h('div', { class: 'table-scroll' }, h('table', { class: 'servers' },
    h('caption', { class: 'visually-hidden' }, `Servers of ${live.environment}`),
    h('thead', {}, h('tr', {}, ['Pool', 'Server', 'Address', 'State', 'Health', 'Weight', 'Active requests'].map((t, i) => h('th', { scope: 'col', class: i >= 5 ? 'number' : undefined }, t)))),
    h('tbody', {}, live.servers.map((s) => h('tr', {},
      h('td', {}, s.pool, s.pool === live.active ? h('span', { class: 'muted' }, ' (active)') : s.pool === live.canary_pool ? h('span', { class: 'muted' }, ' (canary)') : ''),
      h('td', {}, s.name), h('td', {}, h('code', {}, s.address)), h('td', {}, s.state),
      h('td', { class: s.health === 'up' ? 'health-up' : s.health === 'down' ? 'health-down' : '' }, s.health),
      h('td', { class: 'number' }, s.effective_weight !== null && s.effective_weight !== undefined && s.effective_weight !== s.weight ? `${s.effective_weight} of ${s.weight}` : String(s.weight)),
      h('td', { class: 'number' }, String(s.active_requests)))))));
}

/** Requests per second, error rate and p99 per pool over the console's window. */
export function trafficCharts(live, name) {
  const pools = [...new Set(live.traffic.map((p) => p.pool))].sort();
  const kind = (pool, index) => (pool === live.canary_pool ? 'canary' : pool === live.active ? 'stable' : `series-${index + 2}`);
  const series = (field) => pools.map((pool, index) => ({
    name: `${pool}${pool === live.active ? ' (active)' : pool === live.canary_pool ? ' (canary)' : ''}`, kind: kind(pool, index),
    points: live.traffic.filter((p) => p.pool === pool).map((p) => ({ t: parseTime(p.time), v: p[field] ?? null })),
  }));
  const times = live.traffic.map((p) => parseTime(p.time));
  const from = times.length ? Math.min(...times) : Date.now() - 60000;
  const to = times.length ? Math.max(...times) : Date.now();
  return [
    lineChart({ title: `${name}: requests per second`, series: series('requests_per_second'), format: (v) => number(v, v < 10 ? 1 : 0), minTop: 1, from, to, height: 150, id: `traffic-${name}-rate` }),
    lineChart({ title: `${name}: error rate`, series: series('error_rate'), format: (v) => percent(v, v < 0.1 ? 1 : 0), minTop: 0.01, from, to, height: 150, id: `traffic-${name}-errors` }),
    lineChart({ title: `${name}: p99 latency`, series: series('p99_ms'), format: (v) => `${number(v, v < 10 ? 1 : 0)} ms`, minTop: 10, from, to, height: 150, id: `traffic-${name}-p99` }),
  ];
}

function renderLower(view, box) {
  const signature = JSON.stringify(view.isEnvironment ? [view.environment.versions, view.environment.deployments] : view.overview.rollouts);
  if (view.lowerSignature === signature) return;
  view.lowerSignature = signature;
  if (!view.isEnvironment) {
    fill(box, h('h2', {}, 'Rollouts'), rolloutsTable(view.overview.rollouts));
    return;
  }
  const { service } = view.overview;
  const current = service.environments.find((e) => e.name === view.environmentName);
  const currentVersion = current ? current.version : null;
  const mayRollBack = service.deployable && can('deploy');
  const seen = new Set();
  const versions = view.environment.versions.filter((d) => (seen.has(d.version) ? false : seen.add(d.version)));
  fill(box,
    h('h2', {}, 'Versions'),
    h('p', { class: 'help' }, 'Every version promoted here, newest first.', mayRollBack ? ' Rolling back starts a rollout of that version to this environment only, through its plan\'s steps.' : ''),
    h('div', { class: 'table-scroll' }, h('table', { id: 'versions-table' },
      h('thead', {}, h('tr', {}, ['Version', 'Promoted', 'By', 'Rollout', mayRollBack ? 'Action' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, versions.length ? versions.map((d) => h('tr', { dataset: { version: d.version } },
        h('td', {}, h('code', {}, d.version), d.version === currentVersion ? h('span', { class: 'muted' }, ' (live)') : ''),
        h('td', {}, at(d.ended_at || d.started_at)), h('td', {}, d.actor), h('td', {}, h('a', { href: `#/rollouts/${d.rollout}` }, `#${d.rollout}`)),
        mayRollBack ? h('td', {}, d.version === currentVersion ? '' : rollbackButton(service.name, view.environmentName, d.version)) : null))
        : h('tr', { class: 'empty' }, h('td', { colspan: '5' }, 'Nothing promoted here yet.'))))),
    h('h2', {}, 'Deployments'),
    deploymentsTable(view.environment.deployments));
}

function rollbackButton(service, environment, version) {
  const button = h('button', { type: 'button', class: 'rollback', dataset: { version } }, 'Roll back to this version');
  button.addEventListener('click', () => act(button, `Roll ${service} in ${environment} back to ${version}?`,
    `This starts a rollout of ${version} to ${environment} only, through the steps of its plan. The current version stays until it is promoted.`,
    'Roll back', async () => {
      const summary = await api('POST', `/services/${escapePath(service)}/environments/${escapePath(environment)}/rollback`, { version });
      window.location.hash = `#/rollouts/${summary.id}`;
      return `Rollback #${summary.id} to ${version} started`;
    }));
  return button;
}

export function rolloutsTable(rollouts) {
  return h('div', { class: 'table-scroll' }, h('table', { class: 'rollouts' },
    h('thead', {}, h('tr', {}, ['Rollout', 'Version', 'State', 'Environments', 'By', 'Started', 'Took'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rollouts.length ? rollouts.map((r) => h('tr', {},
      h('td', {}, h('a', { href: `#/rollouts/${r.id}` }, `#${r.id}`), r.kind === 'rollback' ? ' (rollback)' : ''),
      h('td', {}, h('code', {}, r.version)),
      h('td', {}, badge(r.state === 'running' ? readProgress(r.progress).kind : r.state), r.reason && !['running', 'pending'].includes(r.state) ? h('div', { class: 'muted' }, r.reason) : null),
      h('td', {}, r.environments.map((e) => `${e.name}: ${e.state.replace(/_/g, ' ')}`).join(', ')),
      h('td', {}, r.actor), h('td', {}, ago(r.started_at)),
      h('td', {}, r.ended_at ? duration((parseTime(r.ended_at) - parseTime(r.started_at)) / 1000) : '')))
      : h('tr', { class: 'empty' }, h('td', { colspan: '7' }, 'No rollout yet.')))));
}

export function deploymentsTable(deployments, withService = false) {
  const columns = ['#', withService ? 'Service' : null, 'Environment', 'Version', 'Outcome', 'By', 'Started', 'Took', 'Reason', 'Rollout'].filter(Boolean);
  return h('div', { class: 'table-scroll' }, h('table', { class: 'deployments', id: 'deployments-table' },
    h('thead', {}, h('tr', {}, columns.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, deployments.length ? deployments.map((d) => h('tr', { dataset: { outcome: d.outcome } },
      h('td', {}, String(d.id)),
      withService ? h('td', {}, h('a', { href: `#/services/${escapePath(d.service)}` }, d.service)) : null,
      h('td', {}, h('a', { href: `#/services/${escapePath(d.service)}/environments/${escapePath(d.environment)}` }, d.environment)),
      h('td', {}, h('code', {}, d.version)),
      h('td', {}, badge(d.outcome === 'running' ? 'progressing' : d.outcome)),
      h('td', {}, d.actor), h('td', {}, at(d.started_at)),
      h('td', {}, d.ended_at ? duration((parseTime(d.ended_at) - parseTime(d.started_at)) / 1000) : ''),
      h('td', {}, d.reason || ''),
      h('td', {}, h('a', { href: `#/rollouts/${d.rollout}` }, `#${d.rollout}`))))
      : h('tr', { class: 'empty' }, h('td', { colspan: String(columns.length) }, 'No deployment matches.')))));
}

async function renderAudit(view, box) {
  const ids = new Set(view.isEnvironment ? view.environment.deployments.map((d) => d.rollout) : view.overview.rollouts.map((r) => r.id));
  let entries = [];
  try {
    const answer = await api('GET', '/audit?limit=2000');
    entries = answer.audit.filter((a) => { const m = /^rollout\/(\d+)$/.exec(a.target); return m && ids.has(Number(m[1])); });
  } catch (error) {
    fill(box, h('h2', {}, 'Audit trail'), h('p', { class: 'muted' }, error.message));
    return;
  }
  const signature = JSON.stringify(entries.map((e) => e.id));
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  fill(box, h('h2', {}, 'Audit trail'),
    h('p', { class: 'help' }, `Who started, approved, paused, promoted or aborted the ${view.isEnvironment ? 'rollouts of this environment' : 'recent rollouts of this service'}, newest first.`),
    h('div', { class: 'table-scroll' }, h('table', { id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['Time', 'Who', 'Role', 'Action', 'Target', 'Detail', 'Outcome'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, entries.length ? entries.slice(0, 200).map((a) => h('tr', {},
        h('td', {}, at(a.time)), h('td', {}, a.actor), h('td', {}, a.role), h('td', {}, a.action),
        h('td', {}, a.target.startsWith('rollout/') ? h('a', { href: `#/rollouts/${a.target.slice(8)}` }, a.target) : a.target),
        h('td', {}, a.detail || ''), h('td', {}, a.outcome)))
        : h('tr', { class: 'empty' }, h('td', { colspan: '7' }, 'Nothing recorded yet.'))))));
}
