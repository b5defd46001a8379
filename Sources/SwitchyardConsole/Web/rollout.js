// Rollout: the pipeline through its environments (the progress viewer), per environment its
// steps, canary weight, analysis against the plan's thresholds, guard, hook output and traffic
// charts; a log that follows the rollout live; and the controls the caller's role allows.

import { h, fill, api, can, act, onFeed, coalesce, ago, at, badge, stateWord, readProgress, parseTime, percent, milliseconds, number, duration,
         title, escapePath } from './app.js';
import { lineChart } from './chart.js';

export async function mount(container, [idText]) {
  const id = Number(idText);
  title(`Rollout #${id}`);
  const parts = {
    head: h('div', {}),
    controls: h('section', { class: 'controls', id: 'rollout-controls', 'aria-label': 'Controls', hidden: true }),
    pipeline: h('ol', { class: 'pipeline', id: 'pipeline', 'aria-label': 'Environments in promotion order' }),
    environments: h('div', { id: 'environments' }),
    log: h('div', { class: 'log', id: 'rollout-log', role: 'log', tabindex: '0', 'aria-label': 'Rollout log: events and hook output' }),
    history: h('div', {}),
  };
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  container.append(parts.head, parts.controls,
    h('h2', {}, 'Pipeline'), parts.pipeline,
    parts.environments,
    h('section', { 'aria-labelledby': 'log-title' },
      h('h2', { id: 'log-title' }, 'Log'),
      h('div', { class: 'log-tools' }, h('label', {}, follow, ' Follow new lines'), h('span', { class: 'muted' }, 'Events and hook output, oldest first.')),
      parts.log),
    parts.history);

  const view = { id, detail: null, plan: undefined, service: null, logKeys: [], sections: new Map(), follow };
  const load = async () => {
    const detail = await api('GET', `/rollouts/${id}`);
    view.detail = detail;
    if (view.plan === undefined) {
      try { view.plan = await api('GET', `/plans/${escapePath(detail.rollout.service)}`); } catch { view.plan = null; }
    }
    await loadTraffic(view);
    render(view, parts, load);
  };
  const traffic = async () => {
    if (!view.detail) return;
    await loadTraffic(view);
    renderCharts(view);
  };
  try {
    await load();
  } catch (error) {
    if (error.status === 404) { fill(container, h('h1', {}, `No rollout #${id}`), h('p', {}, h('a', { href: '#/history' }, 'Find it in the history.'))); return null; }
    throw error;
  }
  const refresh = coalesce(load, 250);
  const unsubscribe = onFeed((entry) => { if (entry.rollout === id || entry.topic === 'reconnected') refresh(); });
  // Traffic comes from the proxies, not the feed: read it on an interval while the rollout runs.
  const timer = setInterval(() => { if (view.detail && isLive(view.detail.rollout)) traffic(); }, 2000);
  return { unmount() { unsubscribe(); clearInterval(timer); refresh.cancel(); } };
}

function isLive(rollout) { return rollout.state === 'pending' || rollout.state === 'running'; }

async function loadTraffic(view) {
  const rollout = view.detail.rollout;
  const ended = parseTime(rollout.ended_at);
  // The console keeps the proxies' traffic for its window (15 minutes by default); older rollouts chart their analysis only.
  if (ended !== null && Date.now() - ended > 20 * 60 * 1000) { view.service = null; return; }
  try { view.service = await api('GET', `/services/${escapePath(rollout.service)}`); } catch { view.service = null; }
}

function liveOf(view, environment) {
  const service = view.service && view.service.service;
  const entry = service && service.environments.find((e) => e.name === environment);
  return entry ? entry.live || null : null;
}

function planEnvironment(view, name) {
  return view.plan ? view.plan.environments.find((e) => e.name === name) || null : null;
}

// ---------------------------------------------------------------- rendering

function render(view, parts, reload) {
  const { rollout, deployments, events, controls } = view.detail;
  title(`Rollout #${rollout.id} · ${rollout.service} ${rollout.version}`);
  renderHead(view, parts.head);
  renderControls(view, parts.controls, reload);
  renderPipeline(view, parts.pipeline);
  renderEnvironments(view, parts.environments);
  renderLog(view, parts.log, events, deployments);
  fill(parts.history, controls.length ? [
    h('h2', {}, 'Controls given'),
    h('div', { class: 'table-scroll' }, h('table', { id: 'controls-table' },
      h('thead', {}, h('tr', {}, ['Command', 'By', 'Asked', 'Answered', 'Result'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, controls.map((c) => h('tr', {},
        h('td', {}, c.command, c.argument ? ` ${c.argument}` : ''), h('td', {}, c.actor), h('td', {}, at(c.created_at)),
        h('td', {}, at(c.handled_at)), h('td', {}, c.result || h('span', { class: 'muted' }, 'waiting for the runner')))))))] : []);
}

function renderHead(view, head) {
  const r = view.detail.rollout;
  const progress = isLive(r) ? readProgress(r.progress) : null;
  const state = r.state === 'running' ? progress.kind : r.state;
  const change = r.change || {};
  fill(head,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Overview'), ' / ', h('a', { href: `#/services/${escapePath(r.service)}` }, r.service), ' / rollout'),
    h('div', { class: 'page-head' },
      h('h1', {}, `${r.kind === 'rollback' ? 'Rollback' : 'Rollout'} #${r.id}: ${r.service} `, h('code', {}, r.version)),
      h('span', { id: 'rollout-state', dataset: { state: r.state } }, badge(state))),
    r.reason && !isLive(r) ? h('div', { class: `reason ${r.state}`, id: 'rollout-reason' }, h('strong', {}, `${stateWord(r.state)}: `), r.reason) : null,
    progress ? h('p', { id: 'rollout-progress' }, h('strong', {}, r.environment ? `${r.environment}: ` : ''), r.progress || 'starting',
                 progress.fraction !== null ? h('progress', { max: '1', value: String(progress.fraction), 'aria-label': 'Progress in this environment' }) : null) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Started'), h('dd', {}, at(r.started_at), ' by ', h('strong', {}, r.actor), r.host ? ` on ${r.host}` : '', ` (${r.mode === 'executed' ? 'run by the console' : 'reported by its runner'})`),
      r.ended_at ? [h('dt', {}, 'Ended'), h('dd', {}, at(r.ended_at), ` after ${duration((parseTime(r.ended_at) - parseTime(r.started_at)) / 1000)}`)] : null,
      change.commit ? [h('dt', {}, 'Commit'), h('dd', {}, h('code', {}, change.commit), change.commit_time ? [' committed ', ago(change.commit_time)] : null)] : null,
      change.ticket ? [h('dt', {}, 'Ticket'), h('dd', {}, change.ticket)] : null,
      change.link ? [h('dt', {}, 'Link'), h('dd', {}, /^https?:\/\//.test(change.link) ? h('a', { href: change.link, rel: 'noopener noreferrer' }, change.link) : change.link)] : null,
      change.changelog ? [h('dt', {}, 'Changes'), h('dd', {}, change.changelog)] : null));
}

function renderControls(view, box, reload) {
  const r = view.detail.rollout;
  const progress = readProgress(r.progress);
  const buttons = [];
  const control = (command, label, message, argument, klass) => {
    const button = h('button', { type: 'button', id: `control-${command}${argument === 'full' ? '-full' : ''}`, class: klass });
    button.textContent = label;
    button.addEventListener('click', () => act(button, `${label}?`, message, label, async () => {
      const body = { wait: 10 };
      if (argument) body.argument = argument;
      const answer = await api('POST', `/rollouts/${r.id}/${command}`, body);
      reload();
      return answer.result ? `${label}: ${answer.result}` : `${label} requested; the rollout has not answered yet`;
    }));
    buttons.push(button);
  };
  const target = `rollout #${r.id} of ${r.service} ${r.version}`;
  if (isLive(r)) {
    if (progress.kind === 'approval' && can('approve')) {
      control('approve', `Approve ${r.environment || ''}`.trim(), `Approve ${r.environment || 'the environment'} for ${target}. The rollout continues there at once.`, r.environment || undefined, 'primary');
    }
    if (can('control')) {
      const userPaused = /^paused:/.test(r.progress || '');
      if (progress.kind !== 'approval') {
        control('promote', 'Promote to next step', `Skip the rest of the current step of ${target} and go on to the next one.`);
        control('promote', 'Promote fully', `Skip every remaining step and analysis of ${target} in ${r.environment || 'this environment'} and send it all traffic.`, 'full');
      }
      if (userPaused) control('resume', 'Resume', `Resume ${target}.`, undefined, 'primary');
      else control('pause', 'Pause', `Pause ${target}: it stays where it is, with its current traffic split, until resumed.`);
      control('abort', 'Abort and roll back', `Abort ${target} and roll back every environment it changed.`, undefined, 'danger');
    }
  } else if (r.state === 'crashed' && can('control')) {
    control('abort', 'Abort and roll back', `${target} crashed: its runner stopped reporting. Roll back what it changed, from the console.`, undefined, 'danger');
  }
  box.hidden = buttons.length === 0;
  fill(box, h('h2', { class: 'visually-hidden' }, 'Controls'), h('div', { class: 'actions' }, buttons,
    h('span', { class: 'muted' }, 'Each control is confirmed first and recorded in the audit trail.')));
}

function renderPipeline(view, list) {
  const { rollout, deployments } = view.detail;
  fill(list, rollout.environments.map((environment) => {
    const deployment = [...deployments].reverse().find((d) => d.environment === environment.name);
    const current = isLive(rollout) && rollout.environment === environment.name;
    const progress = current ? readProgress(rollout.progress) : null;
    const state = current ? (progress.kind === 'progressing' ? 'running' : progress.kind) : environment.state;
    return h('li', { class: `state-${environment.state}${current ? ' current' : ''}`, dataset: { environment: environment.name, state: environment.state }, 'aria-current': current ? 'step' : undefined },
      h('a', { class: 'name', href: `#/rollouts/${rollout.id}`, onclick: (e) => { e.preventDefault(); document.getElementById(`env-${environment.name}`)?.scrollIntoView(); document.getElementById(`env-${environment.name}-title`)?.focus(); } }, environment.name),
      badge(state === 'running' ? 'progressing' : state),
      current && progress.fraction !== null ? h('progress', { max: '1', value: String(progress.fraction), 'aria-label': `${environment.name} progress` }) : null,
      h('span', { class: 'detail' }, current ? rollout.progress || 'starting' : deployment ? `${deployment.strategy}, ${deployment.ended_at ? 'ended' : 'since'} ` : 'not reached yet',
        !current && deployment ? ago(deployment.ended_at || deployment.started_at) : null));
  }));
}

function renderEnvironments(view, box) {
  const { rollout, deployments } = view.detail;
  const wanted = [];
  for (const environment of rollout.environments) {
    const deployment = [...deployments].reverse().find((d) => d.environment === environment.name) || null;
    const live = liveOf(view, environment.name);
    const signature = JSON.stringify([deployment, environment, rollout.environment, rollout.progress, rollout.state,
                                      live && [live.canary_pool, live.canary_weight, live.guard_trip, live.active], !!view.plan]);
    let section = view.sections.get(environment.name);
    if (!section || section.dataset.signature !== signature) {
      const fresh = renderEnvironment(view, environment, deployment, live);
      fresh.dataset.signature = signature;
      if (section) {
        // Keep the charts (redrawn on their own) and which hook outputs are open.
        const open = new Set([...section.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
        for (const d of fresh.querySelectorAll('details[data-key]')) if (open.has(d.dataset.key)) d.open = true;
      }
      section = fresh;
      view.sections.set(environment.name, section);
    }
    wanted.push(section);
  }
  if (wanted.length !== box.children.length || wanted.some((s, i) => box.children[i] !== s)) fill(box, wanted);
  renderCharts(view);
}

function renderEnvironment(view, environment, deployment, live) {
  const { rollout } = view.detail;
  const plan = planEnvironment(view, environment.name);
  const current = isLive(rollout) && rollout.environment === environment.name;
  const steps = deployment ? deployment.steps || [] : [];
  const analysis = steps.filter((s) => s.kind === 'analysis' || s.verdict);
  const thresholds = view.plan && view.plan.analysis ? view.plan.analysis : null;
  const lastWeight = [...steps].reverse().find((s) => s.weight)?.weight || null;
  const weight = current && live && live.canary_weight ? live.canary_weight : deployment && deployment.outcome === 'promoted' ? '100%' : lastWeight;
  return h('section', { class: 'environment-block', id: `env-${environment.name}`, 'aria-labelledby': `env-${environment.name}-title`, dataset: { environment: environment.name } },
    h('h2', { id: `env-${environment.name}-title`, tabindex: '-1' }, `${environment.name} `, badge(current ? readProgress(rollout.progress).kind : environment.state)),
    deployment ? null : h('p', { class: 'muted' }, 'Not reached yet.'),
    deployment && deployment.reason ? h('div', { class: `reason ${deployment.outcome}`, dataset: { role: 'reason' } }, h('strong', {}, `${stateWord(deployment.outcome)}: `), deployment.reason) : null,
    deployment ? h('dl', { class: 'facts' },
      h('dt', {}, 'Strategy'), h('dd', {}, deployment.strategy, plan && plan.approval ? ' (manual approval)' : ''),
      h('dt', {}, 'Pools'), h('dd', {}, deployment.pool ? [h('strong', {}, deployment.pool), ' (new)'] : '—', deployment.previous_pool ? ` replacing ${deployment.previous_pool}` : '',
                                    deployment.previous_version ? [' at ', h('code', {}, deployment.previous_version)] : ''),
      h('dt', {}, 'Canary weight'), h('dd', { class: 'canary-weight' }, weight || '—'),
      h('dt', {}, 'Time'), h('dd', {}, at(deployment.started_at), deployment.ended_at ? [' to ', at(deployment.ended_at)] : ' (running)'),
      h('dt', {}, 'Guard'), h('dd', {}, guardText(plan, live, view.detail.events, environment.name))) : null,
    plan || steps.length ? h('h3', {}, 'Steps') : null,
    plan ? h('ol', { class: 'steps', 'aria-label': `Steps of ${environment.name}` }, stepStates(plan.steps, steps, deployment, current)) : null,
    steps.length ? h('details', { class: 'step-log', dataset: { key: `steps-${environment.name}` } },
      h('summary', {}, `Step log (${steps.length})`),
      h('div', { class: 'table-scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Detail', 'Weight'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, steps.map((s) => h('tr', {}, h('td', {}, at(s.time, true)), h('td', {}, s.kind), h('td', {}, s.detail), h('td', {}, s.weight || '')))))))
      : null,
    analysis.length ? [h('h3', {}, 'Analysis'), analysisTable(analysis, thresholds, environment.name)] : null,
    deployment ? [h('h3', {}, 'Traffic'), h('div', { class: 'charts', dataset: { charts: environment.name } })] : null,
    deployment && (deployment.hooks || []).length ? [h('h3', {}, 'Hooks'), h('div', { class: 'hooks' }, deployment.hooks.map((hook) => hookBlock(hook)))] : null);
}

function guardText(plan, live, events, environment) {
  const parts = [];
  if (plan && plan.guardrail) {
    const g = plan.guardrail;
    parts.push(`trips above ${percent(g.max_error_rate, 0)} errors over ${number(g.window_seconds)} s (at least ${g.min_requests} requests)`);
  }
  const trips = events.filter((e) => e.kind === 'guard_tripped' && (!e.environment || e.environment === environment));
  if (live && live.guard_trip) parts.push(h('strong', { class: 'over' }, ` tripped: ${live.guard_trip}`));
  else if (trips.length) parts.push(h('strong', { class: 'over' }, ` tripped: ${trips[trips.length - 1].message}`));
  else if (plan && plan.guardrail) parts.push(' — not tripped');
  return parts.length ? parts : 'none';
}

/** The plan's steps, each done, current, failed, skipped or still to come. */
function stepStates(planSteps, records, deployment, current) {
  // Each step the runner takes leaves one weight or pause record; analysis records name their step.
  let reached = records.filter((r) => r.kind === 'weight' || r.kind === 'pause').length;
  for (const record of records) {
    const match = /^step (\d+)\b/.exec(record.detail || '') || /\(step (\d+) of \d+\)/.exec(record.detail || '');
    if (match) reached = Math.max(reached, Number(match[1]));
  }
  const outcome = deployment ? deployment.outcome : 'waiting';
  return planSteps.map((text, index) => {
    const n = index + 1;
    let state = 'todo';
    if (outcome === 'promoted') state = reached && n > reached ? 'skipped' : 'done';
    else if (outcome === 'running') state = n < reached ? 'done' : n === reached ? (current ? 'current' : 'done') : 'todo';
    else if (['rolled_back', 'failed', 'crashed'].includes(outcome)) state = n < reached ? 'done' : n === reached ? 'failed' : 'skipped';
    const words = { todo: 'to come', done: 'done', current: 'current', failed: 'where it stopped', skipped: 'skipped' };
    return h('li', { class: state, 'aria-current': state === 'current' ? 'step' : undefined }, text, h('span', { class: 'visually-hidden' }, ` (${words[state]})`));
  });
}

function analysisTable(analysis, thresholds, environment) {
  const maxError = thresholds ? thresholds.max_error_rate : null;
  const maxP99 = thresholds ? thresholds.max_p99_ms : null;
  const vsBaseline = thresholds ? thresholds.max_error_rate_vs_baseline : null;
  const errorOver = (s) => s.error_rate !== null && s.error_rate !== undefined &&
    ((maxError !== null && maxError !== undefined && s.error_rate > maxError) ||
     (vsBaseline && s.baseline_error_rate > 0 && s.error_rate > s.baseline_error_rate * vsBaseline));
  const p99Over = (s) => maxP99 !== null && maxP99 !== undefined && s.p99_ms > maxP99;
  return h('div', { class: 'table-scroll' }, h('table', { class: 'analysis', dataset: { environment } },
    h('caption', { class: 'visually-hidden' }, `Analysis of ${environment} per interval`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Weight'), h('th', { scope: 'col', class: 'number' }, 'Requests'),
      h('th', { scope: 'col', class: 'number' }, 'Error rate', maxError != null ? h('span', { class: 'muted' }, ` (max ${percent(maxError)})`) : null),
      h('th', { scope: 'col', class: 'number' }, 'Stable error rate', vsBaseline ? h('span', { class: 'muted' }, ` (canary ≤ ${vsBaseline}×)`) : null),
      h('th', { scope: 'col', class: 'number' }, 'p99', maxP99 != null ? h('span', { class: 'muted' }, ` (max ${milliseconds(maxP99)})`) : null),
      h('th', { scope: 'col' }, 'Verdict'))),
    h('tbody', {}, analysis.map((s) => h('tr', {},
      h('td', {}, at(s.time, true)), h('td', {}, s.weight || ''), h('td', { class: 'number' }, s.requests ?? '—'),
      h('td', { class: `number${errorOver(s) ? ' over' : ''}` }, percent(s.error_rate), errorOver(s) ? ' over' : ''),
      h('td', { class: 'number' }, percent(s.baseline_error_rate)),
      h('td', { class: `number${p99Over(s) ? ' over' : ''}` }, milliseconds(s.p99_ms), p99Over(s) ? ' over' : ''),
      h('td', {}, s.verdict ? badge(s.verdict === 'pass' ? 'ok' : s.verdict === 'fail' ? 'failed' : 'waiting', s.verdict) : s.detail))))));
}

function hookBlock(hook) {
  const failed = hook.exit_code !== null && hook.exit_code !== undefined && hook.exit_code !== 0;
  return h('details', { open: failed, dataset: { key: `hook-${hook.local_id}` }, class: 'hook' },
    h('summary', {}, h('strong', {}, hook.phase), ' ', h('code', {}, hook.command), ' — ',
      hook.exit_code === null || hook.exit_code === undefined ? 'running' : failed ? h('span', { class: 'over' }, `exit ${hook.exit_code}`) : 'exit 0',
      hook.duration_ms != null ? `, ${duration(hook.duration_ms / 1000)}` : ''),
    h('pre', { class: 'hook-output' }, hook.output && hook.output.length ? hook.output : '(no output)'));
}

// ---------------------------------------------------------------- charts

function renderCharts(view) {
  const { rollout, deployments } = view.detail;
  for (const environment of rollout.environments) {
    const box = document.querySelector(`[data-charts="${CSS.escape(environment.name)}"]`);
    if (!box) continue;
    const deployment = [...deployments].reverse().find((d) => d.environment === environment.name);
    if (!deployment) continue;
    fill(box, environmentCharts(view, deployment, liveOf(view, environment.name)));
  }
}

/** Request rate, error rate and p99 of the canary and the stable pool over the deployment, with the plan's thresholds. */
export function environmentCharts(view, deployment, live) {
  const from = parseTime(deployment.started_at) - 10000;
  const to = deployment.ended_at ? parseTime(deployment.ended_at) + 10000 : Date.now();
  const traffic = (live && live.traffic ? live.traffic : []).filter((p) => { const t = parseTime(p.time); return t >= from && t <= to; });
  const canaryPool = deployment.pool;
  const stablePool = deployment.previous_pool;
  const pools = [[canaryPool, 'canary'], [stablePool, 'stable']].filter(([pool]) => pool);
  const series = (field) => pools.map(([pool, kind]) => ({
    name: `${kind} (${pool})`, kind,
    points: traffic.filter((p) => p.pool === pool).map((p) => ({ t: parseTime(p.time), v: p[field] ?? null })),
  }));
  const plan = view.plan && view.plan.analysis ? view.plan.analysis : null;
  const environmentPlan = planEnvironment(view, deployment.environment);
  const analysis = (deployment.steps || []).filter((s) => s.kind === 'analysis' || s.verdict);
  const interval = plan ? plan.interval_seconds : null;
  const marks = (value, over) => ({ name: 'analysis', kind: 'analysis', markersOnly: true,
    points: analysis.map((s) => ({ t: parseTime(s.time), v: value(s), over: over ? over(s) : false })).filter((p) => p.v !== null && p.v !== undefined) });
  const fallback = !traffic.length;

  const rate = fallback && interval
    ? [{ name: 'canary (analysis)', kind: 'canary', points: analysis.map((s) => ({ t: parseTime(s.time), v: s.requests != null ? s.requests / interval : null })) }]
    : series('requests_per_second');
  if (!fallback && interval) rate.push(marks((s) => (s.requests != null ? s.requests / interval : null)));
  const errors = fallback
    ? [{ name: 'canary (analysis)', kind: 'canary', points: analysis.map((s) => ({ t: parseTime(s.time), v: s.error_rate ?? null })) },
       { name: 'stable (analysis)', kind: 'stable', points: analysis.map((s) => ({ t: parseTime(s.time), v: s.baseline_error_rate ?? null })) }]
    : [...series('error_rate'), marks((s) => s.error_rate ?? null, (s) => plan && plan.max_error_rate != null && s.error_rate > plan.max_error_rate)];
  const p99 = fallback
    ? [{ name: 'canary (analysis)', kind: 'canary', points: analysis.map((s) => ({ t: parseTime(s.time), v: s.p99_ms ?? null })) }]
    : [...series('p99_ms'), marks((s) => s.p99_ms ?? null, (s) => plan && plan.max_p99_ms != null && s.p99_ms > plan.max_p99_ms)];

  const errorThresholds = [];
  if (plan && plan.max_error_rate != null) errorThresholds.push({ value: plan.max_error_rate, label: 'analysis max' });
  if (environmentPlan && environmentPlan.guardrail) errorThresholds.push({ value: environmentPlan.guardrail.max_error_rate, label: 'guard' });
  const rateThresholds = plan && interval ? [{ value: plan.min_requests / interval, label: 'analysis needs' }] : [];
  const p99Thresholds = plan && plan.max_p99_ms != null ? [{ value: plan.max_p99_ms, label: 'max' }] : [];
  const name = deployment.environment;
  const count = (list) => list.reduce((sum, s) => sum + s.points.filter((p) => p.v !== null && p.v !== undefined).length, 0);
  if (deployment.ended_at && !count(rate) && !count(errors) && !count(p99)) {
    return [h('p', { class: 'muted' }, 'No traffic figures for this deployment: it had no analysis, and the console keeps the proxies\' traffic only for its window (15 minutes by default).')];
  }
  return [
    lineChart({ title: `${name}: requests per second`, series: rate, thresholds: rateThresholds, format: (v) => number(v, v < 10 ? 1 : 0), minTop: 1, from, to, id: `chart-${name}-rate` }),
    lineChart({ title: `${name}: error rate`, series: errors, thresholds: errorThresholds, format: (v) => percent(v, v < 0.1 ? 1 : 0), minTop: 0.01, from, to, id: `chart-${name}-errors` }),
    lineChart({ title: `${name}: p99 latency`, series: p99, thresholds: p99Thresholds, format: (v) => `${number(v, v < 10 ? 1 : 0)} ms`, minTop: 10, from, to, id: `chart-${name}-p99` }),
  ];
}

// ---------------------------------------------------------------- log

function renderLog(view, box, events, deployments) {
  const lines = events.map((e, index) => ({ key: `e${index}`, t: parseTime(e.time) || 0, time: e.time, kind: e.kind, environment: e.environment, text: e.message }));
  for (const d of deployments) {
    for (const hook of d.hooks || []) {
      if (!hook.output) continue;
      lines.push({ key: `h${hook.local_id}`, t: (parseTime(hook.time) || 0) + 0.5, time: hook.time, kind: `${hook.phase} output`, environment: d.environment, output: hook.output });
    }
  }
  lines.sort((a, b) => a.t - b.t);
  const keys = lines.map((l) => l.key);
  const follow = view.follow.checked;
  const prefix = view.logKeys.length <= keys.length && view.logKeys.every((k, i) => keys[i] === k);
  const start = prefix ? view.logKeys.length : 0;
  if (!prefix) box.replaceChildren();
  for (const line of lines.slice(start)) {
    box.append(h('div', { class: `line kind-${line.kind.replace(/\W+/g, '_')}`, dataset: { key: line.key } },
      at(line.time, true), h('span', { class: 'kind' }, line.environment ? `${line.environment} ${line.kind}` : line.kind),
      line.output ? h('div', { class: 'hook-output' }, line.output.replace(/\n$/, '')) : line.text));
  }
  if (!lines.length && !box.children.length) box.append(h('div', { class: 'line muted' }, 'Nothing yet.'));
  else if (lines.length && box.firstChild && box.firstChild.classList.contains('muted')) box.firstChild.remove();
  view.logKeys = keys;
  if (follow && lines.length > start) box.scrollTop = box.scrollHeight;
}
