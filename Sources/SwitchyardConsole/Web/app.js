// The console's shell: the router (one URL per page, in the hash, so links can be pasted), the
// API client (session cookie plus its CSRF header), the live feed (server-sent events with
// reconnect), the confirmation dialog and the small helpers every page uses.

import * as overview from './overview.js';
import * as rollout from './rollout.js';
import * as service from './service.js';
import * as deploy from './deploy.js';
import * as historyPage from './history.js';
import * as statistics from './statistics.js';

// ---------------------------------------------------------------- DOM

/** Builds an element: h('a', {href: '#/'}, 'text', child). Text is always text, never HTML. */
export function h(tag, attributes, ...children) {
  const svg = tag.startsWith('svg:');
  const element = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (!svg && name in element && typeof value !== 'string') element[name] = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the content of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// ---------------------------------------------------------------- formats

export function escapePath(text) { return encodeURIComponent(text); }

const dateTime = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

/** "12 min ago", "in 3 s" */
export function relative(ms, now = Date.now()) {
  const seconds = Math.round((now - ms) / 1000);
  const past = seconds >= 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 5) return 'just now';
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400 * 2) text = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else text = `${Math.floor(s / 86400)} days`;
  return past ? `${text} ago` : `in ${text}`;
}

/** A <time> that shows "5 min ago" (kept current) and the full time on hover. */
export function ago(iso) {
  const ms = parseTime(iso);
  if (ms === null) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: dateTime.format(ms), class: 'relative' }, relative(ms));
}

/** A <time> with the local date and time. */
export function at(iso, short = false) {
  const ms = parseTime(iso);
  if (ms === null) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, short ? clock.format(ms) : dateTime.format(ms));
}

export function formatClock(ms) { return clock.format(ms); }
export function formatDateTime(ms) { return dateTime.format(ms); }

export function percent(fraction, digits = 2) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return '—';
  return `${(fraction * 100).toFixed(digits)}%`;
}

export function milliseconds(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value >= 100 ? `${Math.round(value)} ms` : `${value.toFixed(1)} ms`;
}

/** 95 → "1 min 35 s", 7200 → "2 h", 200000 → "2.3 days" */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return Math.round(seconds % 60) ? `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s` : `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

export function number(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

const stateWords = {
  idle: 'idle', pending: 'starting', running: 'progressing', progressing: 'progressing', paused: 'paused',
  approval: 'waiting for approval', promoted: 'promoted', rolled_back: 'rolled back', failed: 'failed', crashed: 'crashed',
  waiting: 'not reached', queued: 'queued',
};

/** A state as a word on a coloured badge (the word carries the meaning, the colour helps). */
export function badge(state, text) {
  return h('span', { class: `badge state-${state}` }, text || stateWords[state] || state.replace(/_/g, ' '));
}

export function stateWord(state) { return stateWords[state] || state.replace(/_/g, ' '); }

/** What a running rollout's progress text says it does: approval, paused or progressing, and how far. */
export function readProgress(text) {
  const progress = text || '';
  const kind = /waiting for approval/i.test(progress) ? 'approval' : /^paused/i.test(progress) || /until `deploy promote`/.test(progress) ? 'paused' : 'progressing';
  let fraction = null;
  const step = /(?:step|server) (\d+)\/(\d+)/.exec(progress);
  if (step) {
    const [done, total] = [Number(step[1]), Number(step[2])];
    // Step i of n is under way: i - 1 done, the current one half-way on average.
    if (total > 0 && done > 0) fraction = Math.min(1, (done - 0.5) / total);
  }
  const weight = /at (\d+(?:\.\d+)?)%/.exec(progress);
  return { kind, fraction, weight: weight ? `${weight[1]}%` : null, text: progress };
}

// ---------------------------------------------------------------- API

export class APIError extends Error {
  constructor(status, message, field) { super(message); this.status = status; this.field = field; }
}

export const session = { actor: null, role: null, csrf: null, permissions: [] };

export function can(permission) { return session.permissions.includes(permission); }

/** Calls the console's API; answers the parsed JSON (null for 204) or throws an APIError with the console's message. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  let answer;
  try {
    answer = await fetch(`/api/v1${path}`, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new APIError(0, `the console did not answer (${error.message}); check that it runs`);
  }
  if (answer.status === 204) return null;
  const text = await answer.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!answer.ok) {
    if (answer.status === 401 && path !== '/session') showLogin('Your session ended; log in again.');
    throw new APIError(answer.status, (json && json.error) || `${method} ${path} answered ${answer.status}`, json && json.field);
  }
  return json;
}

// ---------------------------------------------------------------- live feed

const feedListeners = new Set();
let feedSource = null;
let feedLast = null;
let feedRetry = 1000;
let feedTimer = null;

/** Calls `listener(entry)` for every feed entry, and with `{topic: 'reconnected'}` after a gap. Returns the unsubscribe function. */
export function onFeed(listener) {
  feedListeners.add(listener);
  return () => feedListeners.delete(listener);
}

function feedState(text, state) {
  const element = document.getElementById('feed-state');
  element.textContent = text;
  element.dataset.state = state;
}

function openFeed() {
  clearTimeout(feedTimer);
  if (feedSource) feedSource.close();
  const source = new EventSource(feedLast === null ? '/api/v1/events/stream' : `/api/v1/events/stream?after=${feedLast}`);
  feedSource = source;
  let hadGap = feedLast !== null;
  source.onopen = () => {
    feedRetry = 1000;
    feedState('live', 'live');
    if (hadGap) { hadGap = false; dispatch({ topic: 'reconnected' }); }
  };
  const deliver = (event) => {
    if (event.lastEventId) feedLast = Number(event.lastEventId);
    let entry;
    try { entry = JSON.parse(event.data); } catch { return; }
    dispatch(entry);
  };
  for (const topic of ['rollout', 'event', 'control', 'lock', 'service', 'message']) source.addEventListener(topic, deliver);
  source.onerror = () => {
    hadGap = true;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the console answered with an error): try again, slower each time.
      feedState('offline, retrying', 'offline');
      feedTimer = setTimeout(openFeed, feedRetry);
      feedRetry = Math.min(30000, feedRetry * 2);
    } else {
      feedState('reconnecting…', 'reconnecting');
    }
  };
}

function dispatch(entry) {
  for (const listener of [...feedListeners]) {
    try { listener(entry); } catch (error) { console.error(error); }
  }
}

/** Runs `task` at most once per `ms`, never twice at once; calls while it runs schedule one more run. */
export function coalesce(task, ms = 300) {
  let timer = null, running = false, again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await task(); } catch (error) { console.error(error); }
    running = false;
    if (again) { again = false; schedule(); }
  };
  const schedule = () => { if (!timer) timer = setTimeout(run, ms); };
  schedule.now = run;
  schedule.cancel = () => { clearTimeout(timer); timer = null; };
  return schedule;
}

// ---------------------------------------------------------------- messages and confirmation

let noticeTimer = null;

/** A short message for everyone (screen readers hear it). */
export function notice(text) {
  const element = document.getElementById('notice');
  element.textContent = text;
  element.classList.add('shown');
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => element.classList.remove('shown'), 6000);
}

/** An error that needs attention; stays until closed or the next page. */
export function alertError(error) {
  const element = document.getElementById('alert');
  fill(element, h('span', {}, error instanceof Error ? error.message : String(error)),
       h('button', { type: 'button', class: 'link', onclick: () => { element.hidden = true; } }, 'Dismiss'));
  element.hidden = false;
}

function clearAlert() { document.getElementById('alert').hidden = true; }

/** Asks before an action; resolves true when confirmed. */
export function confirmAction(title, message, confirmLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-message').textContent = message;
  document.getElementById('confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

/** Confirms, then runs `action` with the button disabled; shows its message or error. */
export async function act(button, title, message, confirmLabel, action) {
  if (!(await confirmAction(title, message, confirmLabel))) return;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    const text = await action();
    if (text) notice(text);
  } catch (error) {
    alertError(error);
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- pages and router

const routes = [
  { pattern: /^\/$/, page: overview, name: 'overview' },
  { pattern: /^\/rollouts\/(\d+)$/, page: rollout, name: 'rollout' },
  { pattern: /^\/services\/([^/]+)$/, page: service, name: 'service' },
  { pattern: /^\/services\/([^/]+)\/environments\/([^/]+)$/, page: service, name: 'environment' },
  { pattern: /^\/deploy$/, page: deploy, name: 'deploy' },
  { pattern: /^\/history$/, page: historyPage, name: 'history' },
  { pattern: /^\/statistics$/, page: statistics, name: 'statistics' },
];

let current = null;

/** The hash as a path and its query: "#/history?service=web" → ["/history", URLSearchParams]. */
export function location() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?', 2);
  return { path: path || '/', query: new URLSearchParams(query || '') };
}

/** Changes the query of the current page's URL without reloading it (filters, sort order). */
export function replaceQuery(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') query.set(key, value);
  const text = query.toString();
  window.history.replaceState(null, '', `#${location().path}${text ? `?${text}` : ''}`);
}

/** Sets the page's title (tab and heading). */
export function title(text) { document.title = `${text} · Switchyard console`; }

async function route() {
  if (current && current.unmount) {
    try { current.unmount(); } catch (error) { console.error(error); }
  }
  current = null;
  clearAlert();
  const { path, query } = location();
  const main = document.getElementById('main');
  const match = routes.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (match && link.dataset.nav === (match.r.name === 'environment' || match.r.name === 'service' || match.r.name === 'rollout' ? '' : match.r.name)) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!match) {
    title('Not found');
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no page at this address. ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  const params = match.m.slice(1).map(decodeURIComponent);
  const container = h('div', { class: `page page-${match.r.name}` });
  fill(main, container);
  try {
    current = await match.r.page.mount(container, params, query, match.r.name) || null;
  } catch (error) {
    console.error(error);
    fill(container, h('h1', {}, 'This page could not load'), h('p', { class: 'error' }, error.message));
  }
}

function focusMain() {
  const heading = document.querySelector('#main h1');
  if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus({ preventScroll: false }); }
}

// ---------------------------------------------------------------- session and login

async function loadSession() {
  try {
    const answer = await api('GET', '/session');
    Object.assign(session, { actor: answer.actor, role: answer.role, csrf: answer.csrf_token || null, permissions: answer.permissions || [] });
    return true;
  } catch (error) {
    if (error.status === 401) return false;
    throw error;
  }
}

function showSession() {
  const name = document.getElementById('session-name');
  const anonymous = session.actor === 'anonymous' && !session.csrf;
  name.textContent = session.actor ? `${session.actor} (${session.role})` : '';
  document.getElementById('login-button').hidden = !anonymous;
  document.getElementById('logout-button').hidden = anonymous || !session.actor;
  for (const link of document.querySelectorAll('[data-needs]')) link.hidden = !can(link.dataset.needs);
}

let loginShown = false;

/** Replaces the page with the token form; after a login the page comes back. */
export function showLogin(message) {
  if (loginShown) return;
  loginShown = true;
  if (current && current.unmount) { try { current.unmount(); } catch (error) { console.error(error); } }
  current = null;
  title('Log in');
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const input = h('input', { type: 'password', id: 'login-token', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false',
                             'aria-describedby': 'login-help login-error' });
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'Log in to the Switchyard console'),
    message ? h('p', {}, message) : null,
    h('label', { for: 'login-token' }, 'Access token'),
    input,
    h('p', { class: 'help', id: 'login-help' }, 'A token an admin created for you, or the console\'s bootstrap token (SWITCHYARD_CONSOLE_ADMIN_TOKEN). The console keeps you logged in with a cookie; the browser does not store the token.'),
    error,
    h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      const answer = await api('POST', '/session', { token: input.value.trim() });
      session.csrf = answer.csrf_token;
      input.value = '';
      loginShown = false;
      await start();
    } catch (failure) {
      error.textContent = failure.status === 401 ? 'That token is not known or was revoked.' : failure.message;
      input.focus();
    }
  });
  fill(document.getElementById('main'), form);
  showSession();
  input.focus();
}

async function logout() {
  try { await api('DELETE', '/session'); } catch (error) { alertError(error); return; }
  Object.assign(session, { actor: null, role: null, csrf: null, permissions: [] });
  // The stream was opened with the old session; the next one starts with whoever is left.
  if (feedSource) { feedSource.close(); feedSource = null; }
  await start();
}

async function start() {
  let known;
  try {
    known = await loadSession();
  } catch (error) {
    fill(document.getElementById('main'), h('h1', {}, 'The console does not answer'), h('p', { class: 'error' }, error.message),
         h('button', { type: 'button', onclick: () => start() }, 'Try again'));
    return;
  }
  if (!known) { Object.assign(session, { actor: null, role: null, csrf: null, permissions: [] }); showLogin(); return; }
  loginShown = false;
  showSession();
  if (!feedSource || feedSource.readyState === EventSource.CLOSED) openFeed();
  await route();
}

// Keeps every "5 min ago" current.
setInterval(() => {
  const now = Date.now();
  for (const element of document.querySelectorAll('time.relative')) {
    const ms = parseTime(element.getAttribute('datetime'));
    if (ms !== null) element.textContent = relative(ms, now);
  }
}, 15000);

window.addEventListener('hashchange', async () => { if (!loginShown) { await route(); focusMain(); } });
document.getElementById('login-button').addEventListener('click', () => showLogin('Log in with a token to act on rollouts.'));
document.getElementById('logout-button').addEventListener('click', () => logout());
start();
