// The Ace Radio inspector's pages. Each page is an empty shell (`data-page` on <body>) that this
// script fills from the JSON API and keeps current with the server-sent events of /api/events.
// Text from jobs (captions and lyrics come from Discord users) only ever enters the page as text
// nodes: nothing here writes HTML from data.
'use strict';

// ---- small helpers -------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element: `h('a', { href: '/x', class: 'y' }, 'text', child)`. Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    // Through the CSSOM: the policy (style-src 'self') refuses style attributes written as markup.
    else if (key === 'style') el.style.cssText = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces `parent`'s children, skipping the absent ones. */
function fill(parent, ...children) {
  parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function age(ms) {
  if (ms === null || ms === undefined) return '-';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function utc(ms) {
  if (!ms) return '-';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function bytes(n) {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

const STAGES = {
  llm: 'writing the song',
  text_encode: 'reading the prompt',
  diffusion: 'generating',
  vae_decode: 'decoding audio',
  encode: 'encoding',
};

function progressText(p) {
  if (!p) return '';
  return `${STAGES[p.stage] || p.stage} ${Math.round(p.fraction * 100)}%`;
}

function progressBar(p) {
  const fraction = p ? Math.min(1, Math.max(0, p.fraction)) : 0;
  return h('span', { class: 'progress' },
    h('span', { class: 'bar' }, h('span', { class: 'fill', style: `width:${(fraction * 100).toFixed(1)}%` })),
    h('span', { class: 'progress-text' }, progressText(p)));
}

function badge(state) {
  return h('span', { class: `badge ${state}` }, state);
}

function jobLink(id) {
  return h('a', { href: `/jobs/${encodeURIComponent(id)}`, class: 'mono' }, id);
}

/**
 * Wraps an async `render(isLatest)` so that overlapping calls (a live event, the timer, an action)
 * cannot let a slow, older answer overwrite a newer one: `isLatest()` is false once a later call began.
 */
function latestOnly(render) {
  let generation = 0;
  return () => {
    generation += 1;
    const mine = generation;
    return render(() => mine === generation);
  };
}

/** Runs `fn` at most once per `ms`, and once more after the last call. */
function throttle(fn, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(function tick() {
      timer = null;
      if (again) {
        again = false;
        fn();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}

// ---- the API -------------------------------------------------------------------------------------

async function api(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

/** An action: POST with the header that tells the server it comes from these pages. */
async function act(path) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { accept: 'application/json', 'x-radio-inspector': '1' },
  });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

/** Says something above the page; it stays until the next notice (page refreshes leave it). */
function notice(text, kind = 'info') {
  const box = $('#notice');
  box.hidden = false;
  box.className = `notice ${kind}`;
  fill(box, text);
  if (kind === 'error' && /sign in at \/login/.test(text)) {
    box.append(' ', h('a', { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}` }, 'Sign in'));
  }
}

/** Asks in the page's dialog; resolves true when confirmed. */
function confirmAction(text, label) {
  return new Promise((resolve) => {
    const dialog = $('#confirm');
    $('#confirm-text').textContent = text;
    $('#confirm-yes').textContent = label;
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
  });
}

/** A button that asks first, then runs `action` and reports its outcome. */
function actionButton(label, question, action, after, danger = true) {
  return h('button', {
    class: danger ? 'danger' : '',
    type: 'button',
    onclick: async (event) => {
      const button = event.currentTarget;
      if (!(await confirmAction(question, label))) return;
      button.disabled = true;
      try {
        const result = await action();
        notice(`${label}: ${summarise(result)}`, 'ok');
        after();
      } catch (e) {
        notice(`${label} failed: ${e.message}`, 'error');
      } finally {
        button.disabled = false;
      }
    },
  }, label);
}

function summarise(result) {
  if (result.outcome) return result.outcome;
  if (result.retried) {
    const skipped = result.skipped && result.skipped.length ? `, ${result.skipped.length} skipped` : '';
    return `${result.retried.length} queued again${skipped}`;
  }
  if (result.purged !== undefined) return `${result.purged} dead letters deleted`;
  return 'done';
}

// ---- live updates --------------------------------------------------------------------------------

/** Follows /api/events (optionally one job's) and calls `onEvent` with each; `resync` when behind. */
function follow(query, onEvent) {
  const indicator = $('#live');
  const source = new EventSource(`/api/events${query}`);
  let opened = false;
  source.onopen = () => {
    indicator.textContent = 'live';
    indicator.classList.add('on');
    // Events sent while the connection was down are gone: read the state again.
    if (opened) onEvent({ type: 'resync' });
    opened = true;
  };
  source.onerror = () => {
    indicator.textContent = 'reconnecting…';
    indicator.classList.remove('on');
  };
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    onEvent(event);
  };
  source.addEventListener('resync', () => onEvent({ type: 'resync' }));
  return source;
}

// ---- overview ------------------------------------------------------------------------------------

async function overviewPage(main) {
  const render = latestOnly(async (isLatest) => {
    let o;
    try {
      o = await api('/api/overview');
    } catch (e) {
      if (isLatest()) notice(`Cannot read the queue: ${e.message}`, 'error');
      return;
    }
    if (!isLatest()) return;
    const streams = h('table', { id: 'streams' },
      h('thead', {}, h('tr', {}, ['Stream', 'Waiting', 'Running', 'Oldest running', 'Length'].map((c) => h('th', {}, c)))),
      h('tbody', {}, o.streams.map((s) => h('tr', { 'data-stream': s.priority },
        h('td', {}, h('a', { href: `/jobs?stream=${s.priority}` }, s.priority)),
        h('td', { class: 'num' }, s.waiting),
        h('td', { class: 'num' }, s.pending),
        h('td', { class: 'num' }, age(s.oldest_pending_age_ms)),
        h('td', { class: 'num' }, s.length)))));
    const memory = o.memory.max_bytes
      ? `${bytes(o.memory.used_bytes)} of ${bytes(o.memory.max_bytes)} (${Math.round(o.memory.used_share * 100)} %)`
      : `${bytes(o.memory.used_bytes)} (no maxmemory)`;
    const figures = h('div', { class: 'figures' },
      figure('Delayed retries', o.delayed, 'delayed'),
      figure('Dead letters', o.dead, 'dead', '/jobs?state=failed'),
      figure('Results stored', o.results_stored, 'results'),
      figure('Redis memory', memory, 'memory'));
    const deadActions = h('div', { class: 'actions' },
      actionButton('Retry all dead', `Put all ${o.dead} dead jobs back in their streams?`, () => act('/api/dead/retry'), render, false),
      actionButton('Purge dead', `Delete all ${o.dead} dead letters? Their jobs stay failed and cannot be retried from the dead stream.`, () => act('/api/dead/purge'), render));
    for (const b of deadActions.querySelectorAll('button')) b.disabled = o.dead === 0;
    const workers = o.workers.length === 0
      ? h('p', { id: 'workers', class: 'muted' }, 'No live workers.')
      : h('table', { id: 'workers' },
        h('thead', {}, h('tr', {}, ['Worker', 'GPU', 'Plan', 'Longest track', 'Heartbeat', 'Done', 'Current job'].map((c) => h('th', {}, c)))),
        h('tbody', {}, o.workers.map((w) => h('tr', { 'data-worker': w.id },
          h('td', { class: 'mono' }, w.id),
          h('td', {}, w.gpu, w.vram_total_bytes ? ` (${bytes(w.vram_total_bytes)})` : ''),
          h('td', { title: w.plan }, w.profile),
          h('td', { class: 'num' }, `${Math.round(w.max_duration_s)} s`),
          h('td', { class: 'num' }, w.heartbeat_age_ms === null ? '-' : `${age(w.heartbeat_age_ms)} ago`),
          h('td', { class: 'num' }, w.jobs_done),
          h('td', {}, w.job ? [jobLink(w.job.id), ' ', progressBar(w.job.progress)] : h('span', { class: 'muted' }, 'idle'))))));
    fill(main,
      h('h1', {}, 'Queue'),
      streams, figures, deadActions,
      h('h2', {}, 'Workers'), workers,
      h('h2', {}, `Jobs finished per minute, last ${o.per_minute.length} minutes`),
      outcomeChart(o.per_minute));
  });
  await render();
  follow('', throttle(render, 1000));
  // Heartbeat ages move on their own.
  setInterval(render, 5000);
}

function figure(label, value, id, href) {
  const shown = href ? h('a', { href }, value) : value;
  return h('div', { class: 'figure', id: `figure-${id}` }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, shown));
}

function outcomeChart(minutes) {
  const most = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed + m.cancelled));
  const totals = minutes.reduce((t, m) => ({
    succeeded: t.succeeded + m.succeeded,
    failed: t.failed + m.failed,
    cancelled: t.cancelled + m.cancelled,
  }), { succeeded: 0, failed: 0, cancelled: 0 });
  const bars = minutes.map((m) => {
    const title = `${utc(m.minute_ms).slice(11, 16)} UTC: ${m.succeeded} succeeded, ${m.failed} failed, ${m.cancelled} cancelled`;
    return h('div', { class: 'column', title },
      ['cancelled', 'failed', 'succeeded'].map((k) => m[k] ? h('div', { class: `segment ${k}`, style: `height:${(100 * m[k] / most).toFixed(1)}%` }) : null));
  });
  return h('div', { id: 'outcomes' },
    h('div', { class: 'chart' }, bars),
    h('p', { class: 'legend' },
      h('span', { class: 'key succeeded' }), `${totals.succeeded} succeeded `,
      h('span', { class: 'key failed' }), `${totals.failed} failed `,
      h('span', { class: 'key cancelled' }), `${totals.cancelled} cancelled`));
}

// ---- jobs ----------------------------------------------------------------------------------------

const STATES = ['queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'];

async function jobsPage(main) {
  const params = new URLSearchParams(location.search);
  const select = (name, options) => h('select', { name },
    h('option', { value: '' }, 'any'),
    options.map((o) => h('option', { value: o, selected: params.get(name) === o }, o)));
  const form = h('form', { id: 'filter', class: 'filter' },
    h('label', {}, 'State ', select('state', STATES)),
    h('label', {}, 'Stream ', select('stream', ['interactive', 'radio'])),
    h('label', {}, 'Guild ', h('input', { name: 'guild', value: params.get('guild') || '', size: 20 })),
    h('label', {}, 'Text ', h('input', { name: 'q', type: 'search', value: params.get('q') || '', placeholder: 'caption, title, error, id…' })),
    h('button', { type: 'submit' }, 'Filter'));
  const table = h('div', { id: 'jobs' });
  const pager = h('div', { class: 'pager' });
  let page = Math.max(1, Number(params.get('page')) || 1);
  fill(main, h('h1', {}, 'Jobs'), form, table, pager);

  const query = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) q.set(k, String(v).trim());
    if (page > 1) q.set('page', page);
    return q;
  };
  const render = latestOnly(async (isLatest) => {
    const q = query();
    history.replaceState(null, '', `/jobs${q.toString() ? `?${q}` : ''}`);
    let found;
    try {
      found = await api(`/api/jobs?${q}`);
    } catch (e) {
      if (isLatest()) notice(`Cannot list jobs: ${e.message}`, 'error');
      return;
    }
    if (!isLatest()) return;
    fill(table, found.jobs.length === 0
      ? h('p', { class: 'muted' }, 'No jobs match.')
      : h('table', {},
        h('thead', {}, h('tr', {}, ['Job', 'State', 'Stream', 'Guild', 'Attempts', 'Worker', 'Created', 'Song or error'].map((c) => h('th', {}, c)))),
        h('tbody', {}, found.jobs.map((j) => h('tr', { 'data-job': j.id },
          h('td', {}, jobLink(j.id)),
          h('td', {}, badge(j.state)),
          h('td', {}, j.priority || '-'),
          h('td', { class: 'mono' }, j.guild || '-'),
          h('td', { class: 'num' }, j.attempts),
          h('td', { class: 'mono' }, j.worker || '-'),
          h('td', {}, utc(j.created_ms)),
          h('td', { class: j.error ? 'error' : '' }, j.title || j.error || ''))))));
    fill(pager,
      h('button', { type: 'button', disabled: page <= 1, onclick: () => { page -= 1; render(); } }, '← Newer'),
      ` Page ${found.page} of ${Math.max(1, found.pages)} (${found.total} jobs) `,
      h('button', { type: 'button', disabled: page >= found.pages, onclick: () => { page += 1; render(); } }, 'Older →'));
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    page = 1;
    render();
  });
  await render();
  const refresh = throttle(render, 1000);
  follow('', (event) => {
    if (event.type !== 'progress') refresh();
  });
}

// ---- one job -------------------------------------------------------------------------------------

async function jobPage(main) {
  const id = decodeURIComponent(location.pathname.replace(/^\/jobs\//, ''));
  const render = latestOnly(async (isLatest) => {
    let job;
    try {
      job = await api(`/api/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (isLatest()) fill(main, h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)), h('p', { class: 'notice error' }, e.message));
      return;
    }
    if (!isLatest()) return;
    document.title = `${job.result ? job.result.title : id} · Ace Radio inspector`;
    const actions = h('div', { class: 'actions' });
    if (['queued', 'running', 'retrying'].includes(job.state)) {
      actions.append(actionButton('Cancel job', job.state === 'running'
        ? 'Cancel this job? Its worker stops at the next step.'
        : 'Cancel this job? It will not run.', () => act(`/api/jobs/${encodeURIComponent(id)}/cancel`), render));
    }
    if (job.state === 'failed') {
      actions.append(actionButton('Retry job', 'Put this job back in its stream with its attempts reset?', () => act(`/api/jobs/${encodeURIComponent(id)}/retry`), render, false));
    }
    const running = job.state === 'running';
    fill(main,
      h('h1', {}, 'Job ', h('span', { class: 'mono', id: 'job-id' }, id), ' ', h('span', { id: 'job-state' }, badge(job.state))),
      job.result ? h('p', { class: 'title', id: 'song-title' }, job.result.title) : null,
      actions,
      h('div', { id: 'progress-box', hidden: !running }, progressBar(job.progress)),
      job.cancel_requested && running ? h('p', { class: 'muted' }, 'Cancel requested: the worker stops at its next step.') : null,
      job.error ? h('p', { class: 'notice error', id: 'job-error' }, job.error) : null,
      audioSection(job),
      h('h2', {}, 'Song'), songSection(job),
      h('h2', {}, 'Record'), recordSection(job),
      h('h2', {}, 'Attempts'), attemptsSection(job),
      h('h2', {}, 'History'), historySection(job),
      h('h2', {}, 'Spec'), job.spec_error
        ? h('p', { class: 'notice error' }, `Unreadable spec: ${job.spec_error}`)
        : h('pre', { id: 'spec' }, JSON.stringify(job.spec, null, 2)));
  });
  await render();
  const refresh = throttle(render, 300);
  follow(`?job=${encodeURIComponent(id)}`, (event) => {
    if (event.type === 'progress') {
      // In place: the bar and its text move without reading the record again.
      const box = $('#progress-box');
      if (box) {
        box.hidden = false;
        fill(box, progressBar(event.progress));
      }
      const state = $('#job-state');
      if (state) fill(state, badge('running'));
      return;
    }
    refresh();
  });
}

function audioSection(job) {
  if (job.audio) {
    // The same track as on screen: keep its player, so a refresh does not stop what is playing.
    const shown = $('#audio');
    if (shown && shown.dataset.url === job.audio.url) return shown;
    return h('section', { id: 'audio', 'data-url': job.audio.url },
      h('audio', { controls: true, preload: 'metadata', src: job.audio.url }),
      h('p', { class: 'muted' }, `${job.audio.content_type}, ${bytes(job.audio.bytes)} · `,
        h('a', { href: job.audio.url, download: '' }, 'download')));
  }
  if (job.state === 'succeeded') {
    return h('p', { id: 'audio', class: 'muted' }, 'The audio is no longer in Redis: it was delivered (the bot keeps tracks in its own cache) or expired.');
  }
  return null;
}

function songSection(job) {
  const spec = job.spec || {};
  const station = spec.station || {};
  const wanted = spec.song || {};
  const made = job.result;
  const rows = made
    ? [
      ['Title', made.title],
      ['Caption', made.caption],
      ['Lyrics', h('pre', { class: 'lyrics' }, made.lyrics)],
      ['Tempo', made.bpm ? `${made.bpm} bpm` : '-'],
      ['Key', made.keyscale || '-'],
      ['Time signature', made.timesignature ? `${made.timesignature}/4` : '-'],
      ['Language', made.language],
      ['Length', `${made.duration_s.toFixed(1)} s`],
      ['Seed', made.seed],
      ['Written by', made.writer],
    ]
    : [
      ['Caption', wanted.caption || h('span', { class: 'muted' }, 'the song writer chooses')],
      ['Lyrics', wanted.lyrics ? h('pre', { class: 'lyrics' }, wanted.lyrics) : h('span', { class: 'muted' }, 'the song writer chooses')],
      ['Length', `${wanted.duration_s} s`],
    ];
  rows.push(['Station', [station.genre, station.theme, station.style].filter(Boolean).join(' · ') || '-']);
  return definitionList(rows, 'song');
}

function recordSection(job) {
  const made = job.result;
  const rows = [
    ['Stream', job.priority || '-'],
    ['Guild', job.guild || '-'],
    ['Attempts', `${job.attempts} of ${job.max_attempts ?? '?'}`],
    ['Worker', job.worker || (made ? made.worker : '-')],
    ['Created', utc(job.created_ms)],
    ['Started', utc(job.started_ms)],
    ['Finished', utc(job.finished_ms)],
  ];
  if (job.retry_at_ms) rows.push(['Next attempt', utc(job.retry_at_ms)]);
  if (made) {
    // In pipeline order (STAGES lists them so), stages this build does not know last.
    const order = Object.keys(STAGES);
    const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
    const stages = Object.entries(made.stage_seconds || {})
      .sort(([a], [b]) => rank(a) - rank(b))
      .map(([k, v]) => `${STAGES[k] || k} ${v.toFixed(2)} s`)
      .join(', ');
    rows.push(['Took', `${made.total_seconds.toFixed(2)} s (${(made.duration_s / made.total_seconds).toFixed(1)}× real time)`]);
    if (stages) rows.push(['Stages', stages]);
    if (made.peak_vram_bytes) rows.push(['Peak GPU memory', bytes(made.peak_vram_bytes)]);
  }
  return definitionList(rows, 'record');
}

function definitionList(rows, id) {
  return h('dl', { id }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function attemptsSection(job) {
  const attempts = job.attempts_detail || [];
  if (attempts.length === 0) return h('p', { class: 'muted', id: 'attempts' }, 'Not claimed yet.');
  return h('table', { id: 'attempts' },
    h('thead', {}, h('tr', {}, ['#', 'Worker', 'Started', 'Ended', 'Outcome', 'Error'].map((c) => h('th', {}, c)))),
    h('tbody', {}, attempts.map((a) => h('tr', {},
      h('td', { class: 'num' }, a.number),
      h('td', { class: 'mono' }, a.worker),
      h('td', {}, utc(a.started_ms)),
      h('td', {}, utc(a.ended_ms)),
      h('td', {}, a.outcome || 'running'),
      h('td', { class: 'error' }, a.error || '')))));
}

function historySection(job) {
  return h('table', { id: 'history' },
    h('thead', {}, h('tr', {}, ['Time', 'State', 'Note'].map((c) => h('th', {}, c)))),
    h('tbody', {}, job.history.map((line) => h('tr', {},
      h('td', {}, utc(line.t)),
      h('td', {}, badge(line.state)),
      h('td', {}, line.note)))));
}

// ---- start ---------------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  const main = $('#main');
  const pages = { overview: overviewPage, jobs: jobsPage, job: jobPage };
  const page = pages[document.body.dataset.page];
  if (page) page(main).catch((e) => notice(`This page failed: ${e.message}`, 'error'));
});
