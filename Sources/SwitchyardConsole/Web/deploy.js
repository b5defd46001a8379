// Deploy: start a rollout of a version to chosen environments (the hotfix path), with the
// plan's steps shown before anything starts.

import { h, fill, api, can, act, title, replaceQuery, escapePath, badge } from './app.js';

const VERSION = /^[A-Za-z0-9._+-]{1,200}$/;

export async function mount(container, _params, query) {
  title('Deploy');
  const answer = await api('GET', '/services');
  const services = (answer.services || []).filter((s) => s.deployable);
  container.append(h('h1', {}, 'Deploy a version'));
  if (!services.length) {
    container.append(h('p', {}, 'The console runs rollouts only for services whose plan is registered in its configuration (under plans:), and none is yet. ',
      'Rollouts that runners report show on the ', h('a', { href: '#/' }, 'overview'), '.'));
    return null;
  }
  const allowed = can('deploy');
  if (!allowed) container.append(h('p', { class: 'reason' }, 'Your role may not start rollouts; you can look at the plans here. Log in with a deployer\'s token to deploy.'));

  const chosen = services.find((s) => s.name === query.get('service')) || services[0];
  const serviceSelect = h('select', { id: 'deploy-service', name: 'service', required: true },
    services.map((s) => h('option', { value: s.name, selected: s === chosen }, s.name)));
  const version = h('input', { id: 'deploy-version', name: 'version', required: true, autocomplete: 'off', spellcheck: 'false',
                               maxlength: '200', value: query.get('version') || '', 'aria-describedby': 'version-help version-error',
                               list: 'deploy-versions' });
  const versionsList = h('datalist', { id: 'deploy-versions' });
  const versionError = h('p', { class: 'error', id: 'version-error', 'aria-live': 'polite' });
  const environments = h('fieldset', { id: 'deploy-environments' }, h('legend', {}, 'Environments'));
  const preview = h('div', { id: 'deploy-preview', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'deploy-submit', hidden: !allowed }, 'Start rollout');
  const form = h('form', { id: 'deploy-form', novalidate: true },
    h('div', { class: 'form-grid' },
      h('label', { for: 'deploy-service' }, 'Service'), serviceSelect,
      h('label', { for: 'deploy-version' }, 'Version'),
      h('div', {}, version, versionsList,
        h('p', { class: 'help', id: 'version-help' }, 'Letters, digits and - _ . + (e.g. from `switchyard version --ticket OPS-142`).'), versionError)),
    environments,
    h('h2', {}, 'What will happen'),
    preview,
    h('div', { class: 'actions' }, submit));
  container.append(form);

  let plan = null;
  let service = chosen;
  const showPlan = async () => {
    service = services.find((s) => s.name === serviceSelect.value) || services[0];
    try { plan = await api('GET', `/plans/${escapePath(service.name)}`); } catch (error) { plan = null; fill(preview, h('p', { class: 'error' }, error.message)); return; }
    const wanted = new Set((query.get('environments') || '').split(',').filter(Boolean));
    fill(environments, h('legend', {}, 'Environments, in promotion order'),
      h('div', { class: 'checks' }, plan.environments.map((e) => h('label', {},
        h('input', { type: 'checkbox', name: 'environment', value: e.name, checked: wanted.size ? wanted.has(e.name) : true, onchange: () => renderPreview() }), e.name))));
    fill(versionsList, [...new Set((await recentVersions(service.name)))].map((v) => h('option', { value: v })));
    renderPreview();
  };
  const selected = () => [...environments.querySelectorAll('input[name=environment]:checked')].map((i) => i.value);
  const renderPreview = () => {
    if (!plan) return;
    const names = new Set(selected());
    const live = new Map(service.environments.map((e) => [e.name, e]));
    fill(preview,
      h('ol', { class: 'plan-preview' }, plan.environments.map((e) => {
        const skipped = !names.has(e.name);
        const now = live.get(e.name);
        return h('li', { class: skipped ? 'skipped muted' : '', dataset: { environment: e.name } },
          h('strong', {}, e.name), skipped ? ' — skipped' : '',
          `: ${e.strategy}`, e.approval ? ', waits for approval' : '',
          now && now.version ? [' (now ', h('code', {}, now.version), ')'] : '',
          skipped ? null : h('ol', { class: 'steps', 'aria-label': `Steps in ${e.name}` }, e.steps.length ? e.steps.map((s) => h('li', {}, s)) : h('li', {}, e.strategy === 'canary' ? 'all at once' : e.strategy)),
          !skipped && e.guardrail ? h('div', { class: 'help' }, `Guard: the proxy drops the canary above ${Math.round(e.guardrail.max_error_rate * 100)}% errors over ${e.guardrail.window_seconds} s.`) : null);
      })),
      plan.analysis ? h('p', { class: 'help' }, `Analysis every ${plan.analysis.interval_seconds} s with at least ${plan.analysis.min_requests} requests`,
        plan.analysis.max_error_rate != null ? `, error rate at most ${(plan.analysis.max_error_rate * 100).toFixed(2)}%` : '',
        plan.analysis.max_p99_ms != null ? `, p99 at most ${plan.analysis.max_p99_ms} ms` : '',
        `; ${plan.analysis.failure_limit} failed interval(s) roll back.`) : null,
      service.rollout && ['running', 'pending'].includes(service.rollout.state)
        ? h('p', { class: 'reason' }, badge('progressing'), ' ', h('a', { href: `#/rollouts/${service.rollout.id}` }, `Rollout #${service.rollout.id}`),
            ` of ${service.rollout.version} is running; a new one can start when it ends or is aborted.`) : null);
    replaceQuery({ service: service.name, version: version.value, environments: names.size === plan.environments.length ? '' : [...names].join(',') });
  };
  serviceSelect.addEventListener('change', showPlan);
  version.addEventListener('input', () => { versionError.textContent = ''; version.removeAttribute('aria-invalid'); renderPreview(); });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = version.value.trim();
    if (!VERSION.test(text)) {
      versionError.textContent = text ? 'The version may hold only letters, digits and - _ . +' : 'Give the version to deploy.';
      version.setAttribute('aria-invalid', 'true');
      version.focus();
      return;
    }
    const names = selected();
    if (!names.length) { versionError.textContent = 'Choose at least one environment.'; return; }
    act(submit, `Deploy ${service.name} ${text}?`, `This starts a rollout of ${service.name} ${text} to ${names.join(', then ')}, through the steps shown.`, 'Start rollout', async () => {
      const summary = await api('POST', '/rollouts', { service: service.name, version: text, environments: names });
      window.location.hash = `#/rollouts/${summary.id}`;
      return `Rollout #${summary.id} started`;
    });
  });
  await showPlan();
  return null;
}

async function recentVersions(service) {
  try {
    const answer = await api('GET', `/rollouts?service=${escapePath(service)}&limit=20`);
    return answer.rollouts.map((r) => r.version);
  } catch {
    return [];
  }
}
