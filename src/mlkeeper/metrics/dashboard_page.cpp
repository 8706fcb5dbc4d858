#include "mlkeeper/metrics/dashboard_page.hpp"

namespace mlk::metrics {

namespace {

// Kept as plain HTML rather than generated, so that it reads (and diffs) like the page it is.
// Every value from the summary goes into the DOM through textContent or attributes, never as
// markup; the SVG charts are parsed with DOMParser as XML, which runs no scripts.
constexpr std::string_view kPage = R"MLKPAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<title>mlkeeper</title>
<style>
:root {
  --bg: #f6f8fa; --card: #ffffff; --fg: #1f2328; --muted: #59636e; --border: #d1d9e0;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0969da; --track: #e6eaef;
  --ok-bg: #dafbe1; --warn-bg: #fff8c5; --bad-bg: #ffebe9;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #151b23; --fg: #e6edf3; --muted: #9198a1; --border: #3d444d;
    --ok: #3fb950; --warn: #d29922; --bad: #f85149; --accent: #4493f8; --track: #2a313c;
    --ok-bg: #12261e; --warn-bg: #2b2111; --bad-bg: #3a1c1f;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1.2rem;
  padding: .7rem 1.25rem; background: var(--card); border-bottom: 1px solid var(--border); }
header h1 { font-size: 1.1rem; margin: 0; }
#updated { margin-left: auto; }
main { display: grid; gap: 1rem; padding: 1rem 1.25rem 2rem; max-width: 1600px; margin: 0 auto; }
section { background: var(--card); border: 1px solid var(--border); border-radius: 8px;
  padding: .75rem 1rem; min-width: 0; }
h2 { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; font-size: .95rem;
  margin: 0 0 .6rem; }
h2 .muted { font-weight: normal; font-size: .85rem; }
.row { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(440px, 100%), 1fr)); }
.muted { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; margin: .2rem 0; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .8rem;
  font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.s-ok, .s-pass, .s-running, .s-success { color: var(--ok); }
.s-warning, .s-warn, .s-starting, .s-stopping { color: var(--warn); }
.s-critical, .s-fail, .s-failed, .s-error, .s-firing { color: var(--bad); }
.s-unknown, .s-stopped, .s-resolved, .s-idle { color: var(--muted); }
.cards { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fill, minmax(min(280px, 100%), 1fr)); }
.card { border: 1px solid var(--border); border-radius: 8px; padding: .6rem .75rem; }
.card.gpu-critical { border-color: var(--bad); } .card.gpu-warning { border-color: var(--warn); }
.card .title { display: flex; gap: .5rem; align-items: baseline; }
.card .title .name { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.stats { display: flex; flex-wrap: wrap; gap: .2rem 1.2rem; margin: .4rem 0; }
.stat b { font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.stat small { display: block; color: var(--muted); font-size: .75rem; }
.bar { height: 8px; background: var(--track); border-radius: 4px; overflow: hidden; margin: .2rem 0; }
.bar > span { display: block; height: 100%; background: var(--accent); }
.findings { margin: .4rem 0 0; padding-left: 1.1rem; font-size: .85rem; }
.toggle { display: inline-flex; border: 1px solid var(--border); border-radius: 6px;
  overflow: hidden; margin-left: auto; }
.toggle button { font: inherit; font-size: .8rem; padding: .1rem .7rem; border: 0; cursor: pointer;
  background: transparent; color: var(--fg); }
.toggle button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.charts { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fit, minmax(min(460px, 100%), 1fr)); }
.chart { margin: 0; min-height: 120px; border: 1px solid var(--border); border-radius: 6px;
  padding: .25rem; }
.chart svg { display: block; width: 100%; height: auto; }
.chart .chart-error { color: var(--bad); padding: .5rem; }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--border);
  vertical-align: top; }
th { color: var(--muted); font-size: .8rem; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.row-fail td { background: var(--bad-bg); } tr.row-warn td { background: var(--warn-bg); }
.mark { font-weight: 600; white-space: nowrap; }
.wrap { overflow-x: auto; }
ul.alerts { list-style: none; margin: 0; padding: 0; }
ul.alerts li { border-left: 3px solid var(--border); padding: .3rem .6rem; margin-bottom: .4rem; }
ul.alerts li.alert-firing { border-left-color: var(--bad); background: var(--bad-bg); }
ul.alerts .meta { color: var(--muted); font-size: .8rem; }
#banner { margin: .75rem 1.25rem 0; padding: .5rem .75rem; border: 1px solid var(--bad);
  border-radius: 6px; background: var(--bad-bg); color: var(--bad); }
#auth { max-width: 460px; margin: 2rem auto; }
#auth form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
#auth input { flex: 1; min-width: 200px; font: inherit; padding: .3rem .5rem; color: var(--fg);
  background: var(--bg); border: 1px solid var(--border); border-radius: 6px; }
#auth button { font: inherit; padding: .3rem .9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
#auth-msg { flex-basis: 100%; color: var(--bad); font-size: .85rem; }
[hidden] { display: none !important; }
</style>
</head>
<body data-errors="[]">
<header>
  <h1>mlkeeper</h1>
  <span id="host" class="muted">&mdash;</span>
  <span id="version" class="muted"></span>
  <span id="uptime" class="muted"></span>
  <span id="score" class="badge s-unknown" title="health score">health &mdash;</span>
  <span id="updated" class="muted">loading&hellip;</span>
</header>
<div id="banner" role="alert" hidden></div>
<section id="auth" hidden>
  <h2>Sign in</h2>
  <form id="auth-form">
    <p class="muted" style="margin:0 0 .3rem">This agent needs an API token (kept in this tab only).</p>
    <input id="token" type="password" autocomplete="off" placeholder="API token" aria-label="API token">
    <button type="submit">Show status</button>
    <span id="auth-msg"></span>
  </form>
</section>
<main id="content">
  <section id="gpus"><h2>GPUs</h2><div class="body"></div></section>
  <section id="charts">
    <h2>GPU history
      <span class="toggle" role="group" aria-label="time range">
        <button type="button" data-range="1h">1h</button><button type="button" data-range="24h">24h</button><button type="button" data-range="7d">7d</button>
      </span>
    </h2>
    <div class="charts">
      <figure class="chart" data-metric="temp"></figure>
      <figure class="chart" data-metric="util"></figure>
      <figure class="chart" data-metric="memory"></figure>
      <figure class="chart" data-metric="power"></figure>
    </div>
  </section>
  <div class="row">
    <section id="health"><h2>Health checks <span class="muted" id="health-at"></span></h2><div class="body"></div></section>
    <section id="alerts"><h2>Alerts</h2><div class="body"></div></section>
  </div>
  <section id="backups"><h2>Backups</h2><div class="body wrap"></div></section>
  <div class="row">
    <section id="schedule"><h2>Schedule</h2><div class="body wrap"></div></section>
    <section id="models"><h2>Models</h2><div class="body wrap"></div></section>
  </div>
</main>
<script>
'use strict';
(() => {
  const REFRESH_MS = 15000;
  const RANGES = ['1h', '24h', '7d'];
  const DASH = '\u2014';
  const MARKS = { pass: '\u2713 pass', warn: '! warn', fail: '\u2717 fail' };
  const errors = [];
  // sessionStorage can be switched off; the page then keeps the token in memory only.
  const store = {
    get(k) { try { return sessionStorage.getItem(k); } catch (_) { return null; } },
    set(k, v) { try { if (v) sessionStorage.setItem(k, v); else sessionStorage.removeItem(k); } catch (_) { /* in memory */ } },
  };
  let token = store.get('mlk-token') || '';
  let range = store.get('mlk-range');
  if (!RANGES.includes(range)) range = '1h';
  let timer = null;
  let waitingForToken = false;
  let now = Date.now();  // the summary's generated_at: "5m ago" is relative to the agent's clock

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && isFinite(v);

  // Builds an element; children are nodes or text (never parsed as HTML).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v; else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function recordError(message) {
    const text = String(message);
    errors.push(text);
    if (errors.length > 20) errors.shift();
    document.body.dataset.errors = JSON.stringify(errors);
    const banner = $('banner');
    banner.textContent = text + ' \u2014 retrying every ' + REFRESH_MS / 1000 + ' s';
    banner.hidden = false;
  }
  window.onerror = (msg, src, line, col, err) => {
    recordError('script error: ' + ((err && err.message) || msg) + (line ? ' (line ' + line + ')' : ''));
  };
  window.addEventListener('unhandledrejection', (ev) => {
    const r = ev.reason;
    recordError('unhandled rejection: ' + ((r && r.message) || r));
  });

  // ---- formatting -------------------------------------------------------------------------
  function fmtBytes(n) {
    if (!isNum(n)) return DASH;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
    let v = n, i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? v + ' B' : v.toFixed(1) + ' ' + units[i];
  }
  // The two most significant units, as the CLI prints them: "45s", "2m 5s", "3d 4h".
  function fmtDuration(s) {
    if (!isNum(s)) return DASH;
    const sign = s < 0 ? '-' : '';
    s = Math.abs(s);
    if (s < 10 && s !== Math.floor(s)) return sign + s.toFixed(1) + 's';
    s = Math.floor(s);
    const out = [];
    for (const [n, u] of [[86400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']]) {
      if (out.length === 2) break;
      if (s >= n) { out.push(Math.floor(s / n) + u); s %= n; } else if (out.length) break;
    }
    return sign + (out.length ? out.join(' ') : '0s');
  }
  const pad = (n) => String(n).padStart(2, '0');
  function parseTime(iso) {
    if (typeof iso !== 'string' || !iso) return null;
    const t = Date.parse(iso);
    return isNaN(t) ? null : new Date(t);
  }
  function fmtClock(d) { return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
  function fmtDate(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  function relative(d) {
    const s = (now - d.getTime()) / 1000;
    if (Math.abs(s) < 5) return 'now';
    return s > 0 ? fmtDuration(s) + ' ago' : 'in ' + fmtDuration(-s);
  }
  // A time cell: local date and time, how long ago, the exact stamp as a tooltip.
  function timeNode(iso) {
    const d = parseTime(iso);
    if (!d) return document.createTextNode(DASH);
    return el('span', {}, el('time', { datetime: iso, title: iso }, fmtDate(d)), ' ',
              el('span', { class: 'muted' }, '(' + relative(d) + ')'));
  }
  function num(n, unit) {
    if (!isNum(n)) return DASH;
    const text = Math.abs(n) >= 100 ? Math.round(n).toString() : (Math.round(n * 10) / 10).toString();
    return unit ? text + (unit === '%' ? '%' : '\u2009' + unit) : text;
  }
  const count = (n) => isNum(n) ? n.toLocaleString('en-US') : DASH;
  const text = (v) => (v === null || v === undefined || v === '') ? DASH : String(v);
  const statusClass = (s) => 's-' + String(s || 'unknown').toLowerCase().replace(/[^a-z]/g, '');
  const badge = (s) => el('span', { class: 'badge ' + statusClass(s) }, text(s));
  const empty = (message) => el('p', { class: 'empty' }, message);

  function table(columns, rows) {
    return el('table', {},
      el('thead', {}, el('tr', {}, columns.map(([label, cls]) => el('th', { class: cls }, label)))),
      el('tbody', {}, rows));
  }
  const td = (content, cls) => el('td', { class: cls }, content);
  function fill(sectionId, node) { document.querySelector('#' + sectionId + ' .body').replaceChildren(node); }

  // ---- sections ---------------------------------------------------------------------------
  function worstStatus(checks) {
    let worst = 'pass';
    for (const c of checks) {
      if (c.status === 'fail') return 'fail';
      if (c.status === 'warn') worst = 'warn';
    }
    return worst;
  }

  function renderHeader(d) {
    document.title = 'mlkeeper \u2014 ' + text(d.host);
    $('host').textContent = text(d.host);
    $('version').textContent = d.version ? 'v' + d.version : '';
    $('uptime').textContent = isNum(d.uptime_seconds) ? 'up ' + fmtDuration(d.uptime_seconds) : '';
    const h = d.health || {};
    const checks = Array.isArray(h.checks) ? h.checks : [];
    let status = 'unknown';
    if (checks.length) status = worstStatus(checks);
    else if (isNum(h.score)) status = h.score >= 90 ? 'pass' : h.score >= 70 ? 'warn' : 'fail';
    const score = $('score');
    score.className = 'badge ' + statusClass(status);
    score.dataset.status = status;
    score.textContent = 'health ' + (isNum(h.score) ? Math.round(h.score) : DASH);
    const gen = parseTime(d.generated_at);
    $('updated').textContent = 'updated ' + fmtClock(gen || new Date());
  }

  function renderGpus(gpus) {
    if (!gpus.length) return fill('gpus', empty('no GPUs found'));
    fill('gpus', el('div', { class: 'cards' }, gpus.map((g) => {
      const used = g.mem_used_bytes, total = g.mem_total_bytes;
      const pct = isNum(used) && isNum(total) && total > 0 ? Math.min(100, used / total * 100) : null;
      const findings = Array.isArray(g.findings) ? g.findings : [];
      return el('div', { class: 'card gpu gpu-' + String(g.status || 'unknown'), 'data-gpu': g.id },
        el('div', { class: 'title' },
          el('strong', {}, 'GPU ' + text(g.id)),
          el('span', { class: 'name muted', title: text(g.name) + (g.uuid ? ' \u00b7 ' + g.uuid : '') }, text(g.name)),
          badge(g.status)),
        el('div', { class: 'stats' },
          el('span', { class: 'stat' }, el('b', {}, num(g.temp, '\u00b0C')), el('small', {}, 'temperature')),
          el('span', { class: 'stat' }, el('b', {}, num(g.util_gpu, '%')), el('small', {}, 'utilisation')),
          el('span', { class: 'stat' },
            el('b', {}, num(g.power_draw_w, 'W')),
            el('small', {}, 'power' + (isNum(g.power_limit_w) ? ' of ' + num(g.power_limit_w, 'W') : '')))),
        el('div', { class: 'muted' }, 'memory ' + fmtBytes(used) + ' / ' + fmtBytes(total) +
          (pct === null ? '' : ' (' + Math.round(pct) + '%)')),
        el('div', { class: 'bar' }, el('span', { style: 'width:' + (pct || 0).toFixed(1) + '%' })),
        findings.length ? el('ul', { class: 'findings' }, findings.map((f) => el('li', {}, text(f)))) : null);
    })));
  }

  function renderHealth(h) {
    const checks = Array.isArray(h.checks) ? h.checks : [];
    const at = parseTime(h.at);
    $('health-at').textContent = at ? 'checked ' + fmtDate(at) + ' (' + relative(at) + ')' : '';
    if (!checks.length) return fill('health', empty('no health checks yet'));
    fill('health', table([['Check'], ['Status'], ['Message']], checks.map((c) =>
      el('tr', { class: 'row-' + String(c.status), 'data-status': c.status },
        td(text(c.check)),
        td(el('span', { class: 'mark ' + statusClass(c.status) }, MARKS[c.status] || text(c.status))),
        td(text(c.message))))));
  }

  function renderBackups(backups) {
    if (!backups.length) return fill('backups', empty('no backups yet'));
    fill('backups', table([['Time'], ['Archive'], ['Kind'], ['Size', 'num'], ['Files', 'num'],
                           ['Duration', 'num'], ['Verified'], ['Result']],
      backups.map((b) => el('tr', { class: b.ok === false ? 'row-fail' : null },
        td(timeNode(b.at)), td(text(b.archive)), td(text(b.kind)), td(fmtBytes(b.bytes_out), 'num'),
        td(count(b.files), 'num'), td(fmtDuration(b.seconds), 'num'),
        td(b.verified === true ? el('span', { class: 'mark s-pass' }, '\u2713 yes')
           : b.verified === false ? el('span', { class: 'muted' }, 'no') : DASH),
        td(b.ok === false ? el('span', { class: 'mark s-fail' }, '\u2717 ' + text(b.error))
           : b.ok === true ? el('span', { class: 'mark s-pass' }, '\u2713 ok') : DASH)))));
  }

  function renderSchedule(jobs) {
    if (!jobs.length) return fill('schedule', empty('no scheduled jobs'));
    fill('schedule', table([['Job'], ['Last run'], ['Outcome'], ['Duration', 'num'], ['Next run']],
      jobs.map((j) => el('tr', { class: /fail|error|timeout/i.test(j.last_outcome || '') ? 'row-fail' : null },
        td(text(j.job)), td(timeNode(j.last)),
        td(j.running ? badge('running') : j.last_outcome ? badge(j.last_outcome) : DASH),
        td(fmtDuration(j.last_duration_seconds), 'num'), td(timeNode(j.next))))));
  }

  function renderModels(models) {
    if (!models.length) return fill('models', empty('no models configured'));
    fill('models', table([['Model'], ['State'], ['Requests', 'num'], ['In flight', 'num'], ['Idle for', 'num']],
      models.map((m) => el('tr', {},
        td(text(m.name)), td(badge(m.state)), td(count(m.requests), 'num'), td(count(m.in_flight), 'num'),
        td(fmtDuration(m.idle_seconds), 'num')))));
  }

  function renderAlerts(alerts) {
    if (!alerts.length) return fill('alerts', empty('no alerts'));
    const sorted = alerts.slice().sort((a, b) =>
      ((b.state === 'firing') - (a.state === 'firing')) ||
      ((parseTime(b.last_seen) || 0) - (parseTime(a.last_seen) || 0)));
    fill('alerts', el('ul', { class: 'alerts' }, sorted.map((a) =>
      el('li', { class: 'alert alert-' + String(a.state), 'data-state': a.state },
        el('div', {}, badge(a.severity), ' ', text(a.summary)),
        el('div', { class: 'meta' }, text(a.key) + ' \u00b7 ' + text(a.state) + ' \u00b7 last seen ',
           timeNode(a.last_seen))))));
  }

  function render(d) {
    if (!d || typeof d !== 'object' || Array.isArray(d)) throw new Error('summary is not a JSON object');
    const list = (v) => Array.isArray(v) ? v : [];
    const gen = parseTime(d.generated_at);
    now = gen ? gen.getTime() : Date.now();
    renderHeader(d);
    renderGpus(list(d.gpus));
    renderHealth(d.health && typeof d.health === 'object' ? d.health : {});
    renderBackups(list(d.backups));
    renderSchedule(list(d.schedule));
    renderModels(list(d.models));
    renderAlerts(list(d.alerts));
  }

  // ---- fetching ---------------------------------------------------------------------------
  class AuthNeeded extends Error {}

  async function get(url) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const path = url.split('?')[0];
    let r;
    try {
      r = await fetch(url, { headers, cache: 'no-store' });
    } catch (e) {
      throw new Error('cannot reach the agent (' + path + '): ' + e.message);
    }
    if (r.status === 401) throw new AuthNeeded(path);
    if (!r.ok) {
      let detail = '';
      try { detail = (await r.text()).slice(0, 200); } catch (_) { /* the status says enough */ }
      throw new Error(path + ': HTTP ' + r.status + (detail ? ' ' + detail : ''));
    }
    return r;
  }

  // Charts come as SVG text (fetched with the token, which an <img> could not send) and are
  // inlined. Returns the number that failed.
  async function loadCharts() {
    const figures = Array.from(document.querySelectorAll('figure.chart'));
    const results = await Promise.all(figures.map(async (fig) => {
      const path = 'charts/gpu/' + fig.dataset.metric + '.svg';
      try {
        const r = await get(path + '?range=' + encodeURIComponent(range) + '&_=' + Date.now());
        const doc = new DOMParser().parseFromString(await r.text(), 'image/svg+xml');
        const svg = doc.documentElement;
        if (!svg || svg.localName !== 'svg' || doc.getElementsByTagName('parsererror').length) {
          throw new Error(path + ': not an SVG document');
        }
        fig.replaceChildren(document.importNode(svg, true));
        return true;
      } catch (e) {
        if (e instanceof AuthNeeded) throw e;
        fig.replaceChildren(el('div', { class: 'chart-error' }, 'chart unavailable: ' + e.message));
        recordError(e.message);
        return false;
      }
    }));
    return results.filter((ok) => !ok).length;
  }

  function showAuth(rejected) {
    waitingForToken = true;
    $('auth').hidden = false;
    $('content').hidden = true;
    $('auth-msg').textContent = rejected ? 'That token was not accepted.' : '';
    $('token').focus();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const r = await get('api/dashboard/summary');
      let data;
      try { data = await r.json(); } catch (e) { throw new Error('api/dashboard/summary: not JSON (' + e.message + ')'); }
      render(data);
      waitingForToken = false;
      $('auth').hidden = true;
      $('content').hidden = false;
      const failed = await loadCharts();
      if (!failed) {
        $('banner').hidden = true;
        document.body.dataset.ready = '1';
      }
    } catch (e) {
      if (e instanceof AuthNeeded) showAuth(token !== '');
      else recordError(e.message || String(e));
    } finally {
      // Without a token there is nothing to retry until the form is sent.
      if (!waitingForToken) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    store.set('mlk-token', token);
    refresh();
  });

  function markRange() {
    for (const b of document.querySelectorAll('.toggle button')) {
      b.setAttribute('aria-pressed', String(b.dataset.range === range));
    }
  }
  for (const b of document.querySelectorAll('.toggle button')) {
    b.addEventListener('click', () => {
      range = b.dataset.range;
      store.set('mlk-range', range);
      markRange();
      loadCharts().catch((e) => { if (e instanceof AuthNeeded) showAuth(token !== ''); else recordError(e.message); });
    });
  }
  markRange();
  refresh();
})();
</script>
</body>
</html>
)MLKPAGE";

}  // namespace

std::string_view dashboard_html() {
    return kPage;
}

}  // namespace mlk::metrics
