// gnomon console: a small front end over the HTTP API (/v1/…), Preact + htm, no build step.
// Every read and action goes through the API from the browser, so the API's authorizer applies.
// Charts: Chart.js (+ chartjs-chart-matrix for the heatmap); spec in words: cronstrue; diffs: jsdiff.
import {
  html, render, useState, useEffect, useRef, useCallback,
} from './vendor/htm-preact-standalone-3.1.1.mjs';

const Chart = window.Chart;
const matrix = window['chartjs-chart-matrix'];
if (Chart && matrix && matrix.MatrixController) Chart.register(matrix.MatrixController, matrix.MatrixElement);

// --- auth: none on `gnomon dev`; OIDC authorization code + PKCE in AWS ------------------------

const TOKEN_KEY = 'gnomon.console.token';
let CONFIG = { auth: { mode: 'none' } };

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
function randomString(n = 48) { return b64url(crypto.getRandomValues(new Uint8Array(n))); }
function redirectUri() { return `${location.origin}/console/`; }

async function discovery() {
  const res = await fetch(`${CONFIG.auth.issuer}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`the issuer's discovery document answered ${res.status}`);
  return res.json();
}

async function signIn() {
  const d = await discovery();
  const verifier = randomString(48);
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = randomString(16);
  sessionStorage.setItem('gnomon.console.pkce', JSON.stringify({ verifier, state, hash: location.hash }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: CONFIG.auth.client_id, redirect_uri: redirectUri(),
    scope: CONFIG.auth.scopes, state, code_challenge: challenge, code_challenge_method: 'S256',
  });
  location.assign(`${d.authorization_endpoint}?${q}`);
}

async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (!code) return;
  const saved = JSON.parse(sessionStorage.getItem('gnomon.console.pkce') || 'null');
  sessionStorage.removeItem('gnomon.console.pkce');
  if (!saved || saved.state !== params.get('state')) throw new Error('sign-in state mismatch: try again');
  const d = await discovery();
  const res = await fetch(d.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri(),
      client_id: CONFIG.auth.client_id, code_verifier: saved.verifier,
    }),
  });
  if (!res.ok) throw new Error(`the token endpoint answered ${res.status}`);
  const tok = await res.json();
  const token = tok.access_token || tok.id_token;
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token, expires: Date.now() + 1000 * (tok.expires_in || 3600) }));
  history.replaceState(null, '', `${location.pathname}${saved.hash || ''}`);
}

function currentToken() {
  const t = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
  return t && t.expires > Date.now() + 5000 ? t.token : null;
}
function signOut() { sessionStorage.removeItem(TOKEN_KEY); location.reload(); }

// --- the API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.code = e.code || `http_${status}`; this.details = e.details;
  }
}

// API calls in flight: with no `.loading` left in <main>, 0 means the page has everything it asked
// for (read by the browser tests and bench/console.py).
window.gnomonInflight = 0;

async function api(path, opts = {}) {
  window.gnomonInflight += 1;
  try { return await apiCall(path, opts); } finally { window.gnomonInflight -= 1; }
}

async function apiCall(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (CONFIG.auth.mode === 'oidc') {
    const token = currentToken();
    if (!token) throw new ApiError(401, { error: { code: 'unauthorized', message: 'sign in to continue' } });
    headers.authorization = `Bearer ${token}`;
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** {data, error, loading, reload} of one GET; `path` null = nothing to load. */
function useApi(path) {
  const [state, setState] = useState({ data: null, error: null, loading: !!path });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return undefined;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    api(path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => { live = false; };
  }, [path, tick]);
  return { ...state, reload: useCallback(() => setTick((t) => t + 1), []) };
}

// --- formatting -------------------------------------------------------------------------------

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
function ms(iso) { return iso ? Date.parse(iso) : NaN; }
function relative(iso) {
  const t = ms(iso);
  if (Number.isNaN(t)) return '';
  const d = Math.round((t - Date.now()) / 1000);
  const a = Math.abs(d);
  const txt = a < 90 ? `${a} s` : a < 5400 ? `${Math.round(a / 60)} min` : a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return d >= 0 ? `in ${txt}` : `${txt} ago`;
}
function When({ t }) {
  if (!t) return html`<span class="muted">—</span>`;
  return html`<time datetime=${t} title=${t}>${t.replace('T', ' ').replace('Z', ' UTC')} <span class="muted">(${relative(t)})</span></time>`;
}
function duration(msv) {
  if (msv === null || msv === undefined || Number.isNaN(msv)) return '—';
  if (msv < 1000) return `${Math.round(msv)} ms`;
  if (msv < 120000) return `${(msv / 1000).toFixed(1)} s`;
  return `${(msv / 60000).toFixed(1)} min`;
}
function lateness(run) {
  const l = ms(run.started_at) - ms(run.scheduled_time);
  return Number.isNaN(l) ? null : l;
}
function json(v) { return JSON.stringify(v, null, 2); }

// --- the spec in words (cronstrue) ------------------------------------------------------------

const MACROS = {
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *',
};
function cronWords(expr) {
  const e = MACROS[expr.trim().toLowerCase()] || expr;
  try {
    return window.cronstrue.toString(e, { use24HourTimeFormat: true, throwExceptionOnParseError: true });
  } catch (err) {
    return `cron “${expr}”`;
  }
}
function calField(v, dflt) {
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'number' || typeof v === 'string') return String(v);
  if (Array.isArray(v)) {
    return v.map((r) => {
      const end = r.end ?? r.start;
      let s = end === r.start ? `${r.start}` : `${r.start}-${end}`;
      if (r.step && r.step > 1) s += `/${r.step}`;
      return s;
    }).join(',');
  }
  return dflt;
}
function calendarWords(c) {
  const expr = [calField(c.second, '0'), calField(c.minute, '0'), calField(c.hour, '0'),
    calField(c.day_of_month, '*'), calField(c.month, '*'), calField(c.day_of_week, '*'), calField(c.year, '*')].join(' ');
  let words = cronWords(expr);
  const restricted = (v) => v !== undefined && v !== null && v !== '*';
  if (restricted(c.day_of_month) && restricted(c.day_of_week)) words += ' (day of month and day of week must both match)';
  return c.comment ? `${words} — ${c.comment}` : words;
}
function secondsWords(s) {
  const units = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [n, name] of units) {
    if (s % n === 0) { const k = s / n; return k === 1 ? `every ${name}` : `every ${k} ${name}s`; }
  }
  return `every ${s} seconds`;
}
/** Lines describing a spec, e.g. "At 09:00, Monday through Friday (Europe/Riga)". */
function specWords(spec) {
  const tz = spec.timezone || 'UTC';
  const lines = [];
  (spec.cron || []).forEach((c) => lines.push(`${cronWords(c)} (${tz}) — cron “${c}”`));
  (spec.calendars || []).forEach((c) => lines.push(`${calendarWords(c)} (${tz})`));
  (spec.intervals || []).forEach((i) => lines.push(`${secondsWords(i.every_seconds)}${i.offset_seconds ? `, offset ${i.offset_seconds} s` : ''} (since the Unix epoch)`));
  (spec.at || []).forEach((t) => lines.push(`once at ${t}`));
  (spec.exclude_calendars || []).forEach((c) => lines.push(`except ${calendarWords(c)}`));
  (spec.exclude_calendar_refs || []).forEach((n) => lines.push(`except the days of calendar “${n}”`));
  if (spec.start_at) lines.push(`not before ${spec.start_at}`);
  if (spec.end_at) lines.push(`not after ${spec.end_at}`);
  if (spec.jitter_seconds) lines.push(`each firing delayed by up to ${spec.jitter_seconds} s of jitter`);
  return lines;
}

// --- small components -------------------------------------------------------------------------

function Chip({ status }) {
  return status ? html`<span class="chip ${status}">${status.replace('_', ' ')}</span>` : html`<span class="muted">—</span>`;
}
function ErrorBox({ error, what }) {
  if (!error) return null;
  return html`<div class="alert" role="alert"><strong>${what ? `Could not load ${what}: ` : ''}</strong>
    ${error.message} <span class="mono">(${error.code}${error.status ? `, HTTP ${error.status}` : ''})</span>
    ${error.details && Array.isArray(error.details) ? html`<ul>${error.details.map((d) => html`<li><code>${d.field}</code>: ${d.message}</li>`)}</ul>` : ''}
    ${error.status === 401 || error.status === 403 ? html`<p>Your session may have expired. <button onClick=${() => signIn()}>Sign in</button></p>` : ''}
  </div>`;
}
function Loading({ what }) { return html`<p class="loading" role="status">Loading ${what}…</p>`; }
function Empty({ children }) { return html`<div class="empty" role="status">${children}</div>`; }
function Result({ result }) {
  if (!result) return null;
  if (result.error) return html`<${ErrorBox} error=${result.error} />`;
  return html`<div class="success" role="status">${result.message}</div>`;
}
function Pager({ token, onNext, onFirst, hasPrev }) {
  return html`<div class="pager">
    ${hasPrev ? html`<button onClick=${onFirst}>First page</button>` : ''}
    ${token ? html`<button onClick=${() => onNext(token)}>Next page</button>` : html`<span class="muted">End of the list.</span>`}
  </div>`;
}

/** One Chart.js chart on a canvas; `config` is rebuilt by the caller, the chart follows it. */
function ChartBox({ config, label, small, summary }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!Chart || !ref.current) return undefined;
    const chart = new Chart(ref.current, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } });
    return () => chart.destroy();
  }, [JSON.stringify(config.data), JSON.stringify(config.options || {})]);
  return html`<figure class="chart-fig" style="margin:0">
    <div class="chart ${small ? 'small' : ''}"><canvas ref=${ref} role="img" aria-label=${label}></canvas></div>
    ${summary ? html`<figcaption class="muted">${summary}</figcaption>` : ''}
  </figure>`;
}

/** A linear time axis in UTC; ticks show the date too when the chart spans more than a day. */
function timeAxis(days = false) {
  return { type: 'linear', ticks: { callback: (v) => new Date(v).toISOString().slice(days ? 5 : 11, 16).replace('T', ' '), maxTicksLimit: 8 }, title: { display: true, text: 'time (UTC)' } };
}

function LatenessChart({ buckets, label, from, to }) {
  if (!buckets || !buckets.length) return html`<${Empty}>No started runs in this window, so no lateness to plot.</${Empty}>`;
  const p50 = buckets.map((b) => ({ x: ms(b.start), y: b.p50_ms }));
  const p99 = buckets.map((b) => ({ x: ms(b.start), y: b.p99_ms }));
  const worst = Math.max(...buckets.map((b) => b.p99_ms));
  const config = {
    type: 'line',
    data: { datasets: [
      { label: 'p50 ms', data: p50, borderColor: '#0b5cad', backgroundColor: '#0b5cad', pointRadius: 2 },
      { label: 'p99 ms', data: p99, borderColor: '#a40e26', backgroundColor: '#a40e26', pointRadius: 2, borderDash: [5, 3] },
    ] },
    options: { parsing: true, scales: { x: { ...timeAxis(ms(to) - ms(from) > 86400000), min: from ? ms(from) : undefined, max: to ? ms(to) : undefined }, y: { beginAtZero: true, title: { display: true, text: 'start lateness (ms)' } } } },
  };
  return html`<${ChartBox} config=${config} label=${label}
    summary=${`${buckets.length} buckets, ${buckets.reduce((a, b) => a + b.count, 0)} runs; worst p99 ${duration(worst)}.`} />`;
}

function Sparkline({ values, label }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!Chart || !ref.current || !values.length) return undefined;
    const chart = new Chart(ref.current, {
      type: 'line',
      data: { labels: values.map((_, i) => i), datasets: [{ data: values, borderColor: '#0b5cad', borderWidth: 1.5, pointRadius: 0, fill: false }] },
      options: { responsive: false, animation: false, events: [], plugins: { legend: { display: false }, tooltip: { enabled: false } }, scales: { x: { display: false }, y: { display: false, beginAtZero: true } } },
    });
    return () => chart.destroy();
  }, [values.join(',')]);
  if (!values.length) return html`<span class="muted">—</span>`;
  return html`<span class="spark"><canvas ref=${ref} width="120" height="28" role="img" aria-label=${label}></canvas></span>`;
}

/** Firings by day of week × hour of day: `grid[d][h]` counts, d = 0 for Monday, h local to `tz`. */
function HeatmapGrid({ grid, tz, label, summary }) {
  const max = Math.max(...grid.flat());
  const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'));
  const data = [];
  for (let y = 0; y < 7; y += 1) for (let x = 0; x < 24; x += 1) data.push({ x: HOURS[x], y: DAYS[y], v: grid[y][x] });
  const config = {
    type: 'matrix',
    data: { datasets: [{
      label: 'firings', data,
      backgroundColor: (c) => { const v = c.raw ? c.raw.v : 0; return v ? `rgba(11,92,173,${0.15 + 0.85 * (v / max)})` : '#eef1f4'; },
      borderColor: '#ffffff', borderWidth: 1,
      width: ({ chart }) => ((chart.chartArea || {}).width || 0) / 24 - 1,
      height: ({ chart }) => ((chart.chartArea || {}).height || 0) / 7 - 1,
    }] },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { title: () => '', label: (c) => `${c.raw.y} ${c.raw.x}:00 ${tz} — ${c.raw.v} firings` } } },
      scales: {
        x: { type: 'category', labels: HOURS, offset: true, grid: { display: false }, title: { display: true, text: `hour of day (${tz})` } },
        y: { type: 'category', labels: DAYS, offset: true, grid: { display: false } },
      },
    },
  };
  return html`<${ChartBox} config=${config} label=${label} small=${true} summary=${summary(max)} />`;
}

/** Firings by day of week × hour of day (UTC), from runs' nominal times. */
function Heatmap({ runs, label }) {
  if (!runs.length) return html`<${Empty}>No runs yet, so no firing pattern to show.</${Empty}>`;
  const grid = DAYS.map(() => new Array(24).fill(0));
  for (const r of runs) {
    const d = new Date(r.nominal_time);
    grid[(d.getUTCDay() + 6) % 7][d.getUTCHours()] += 1;
  }
  return html`<${HeatmapGrid} grid=${grid} tz="UTC" label=${label}
    summary=${(max) => `${runs.length} runs by day of week and hour (UTC); darkest cell: ${max} firings.`} />`;
}

/** A bar chart of counts per bin; `series` = [[name, counts, colour], …], stacked when several. */
function BinChart({ names, series, label, summary, legend = series.length > 1 }) {
  const config = {
    type: 'bar',
    data: { labels: names, datasets: series.map(([name, data, colour]) => ({ label: name, data, backgroundColor: colour })) },
    options: {
      plugins: { legend: { display: legend } },
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'runs' } } },
    },
  };
  return html`<${ChartBox} config=${config} label=${label} small=${true} summary=${summary} />`;
}

/** Run durations as a histogram. */
function DurationHistogram({ runs, label }) {
  const values = runs.map((r) => r.duration_ms).filter((v) => typeof v === 'number');
  if (!values.length) return html`<${Empty}>No finished runs with a duration yet.</${Empty}>`;
  const edges = [10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, Infinity];
  const names = ['<10 ms', '10–50 ms', '50–100 ms', '100–250 ms', '250–500 ms', '0.5–1 s', '1–2.5 s', '2.5–5 s', '5–10 s', '10–30 s', '30–60 s', '1–5 min', '>5 min'];
  const counts = new Array(edges.length).fill(0);
  for (const v of values) counts[edges.findIndex((e) => v < e)] += 1;
  const sorted = [...values].sort((a, b) => a - b);
  const med = sorted[Math.floor((sorted.length - 1) / 2)];
  return html`<${BinChart} names=${names} series=${[['runs', counts, '#0b5cad']]} label=${label}
    summary=${`${values.length} runs; median ${duration(med)}, longest ${duration(sorted[sorted.length - 1])}.`} />`;
}

/** A bin of the server's duration histogram (1-2-5 ms steps) as a short label: "50–100 ms". */
function binLabel({ lower_ms: lo, upper_ms: up }) {
  const unit = (v) => (v < 1000 ? `${v} ms` : `${v / 1000} s`);
  if (up === null) return `≥ ${unit(lo)}`;
  if (lo === 0) return `< ${unit(up)}`;
  if (up < 1000) return `${lo}–${up} ms`;
  if (lo >= 1000) return `${lo / 1000}–${up / 1000} s`;
  return `${unit(lo)}–${unit(up)}`;
}

/** The server's duration histogram (`/metrics/lateness?include=durations`), empty edge bins
 * left out, completed runs apart from the other closed ones (failed, timed out, canceled, terminated). */
function DurationBins({ durations, label, truncated }) {
  const { bins } = durations;
  const first = bins.findIndex((b) => b.count);
  if (first < 0) return html`<${Empty}>No run in this window finished an attempt, so no durations to show.</${Empty}>`;
  const last = bins.length - 1 - [...bins].reverse().findIndex((b) => b.count);
  const shown = bins.slice(first, last + 1);
  const completed = shown.map((b) => b.by_status.completed || 0);
  const other = shown.map((b) => b.count - (b.by_status.completed || 0));
  const series = [['completed', completed, '#0b5cad'], ['failed, timed out, canceled or terminated', other, '#a40e26']]
    .filter(([, counts]) => counts.some((n) => n));
  return html`<${BinChart} names=${shown.map(binLabel)} label=${label} series=${series} legend=${true}
    summary=${`${durations.count} closed runs${truncated ? ' (the newest of the window)' : ''}; median ${duration(durations.p50_ms)}, p95 ${duration(durations.p95_ms)}, longest ${duration(durations.max_ms)}.`} />`;
}

// --- routing ----------------------------------------------------------------------------------

function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = h.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: Object.fromEntries(new URLSearchParams(query)), query };
}
function go(path, params = {}) { location.hash = `#${path}${qs(params)}`; }
function link(path, params = {}) { return `#${path}${qs(params)}`; }

const NAV = [
  ['overview', 'Overview'], ['schedules', 'Schedules'], ['runs', 'Runs'], ['tasks', 'Tasks & leases'],
  ['definitions', 'Definitions'], ['operators', 'Operators'], ['dlq', 'Dead letters'],
];

function Header({ section, signedIn }) {
  return html`<header class="top">
    <a class="brand" href="#/overview">gnomon</a>
    <nav aria-label="Console sections"><ul>
      ${NAV.map(([id, name]) => html`<li><a href=${`#/${id}`} aria-current=${section === id ? 'page' : undefined}>${name}</a></li>`)}
    </ul></nav>
    <div class="auth">${CONFIG.auth.mode === 'oidc'
      ? (signedIn ? html`signed in <button onClick=${signOut}>Sign out</button>` : html`<button class="primary" onClick=${() => signIn()}>Sign in</button>`)
      : html`local stack · open access`}</div>
  </header>`;
}

function Page({ title, children, id }) {
  const ref = useRef(null);
  useEffect(() => { document.title = `${title} · gnomon console`; }, [title]);
  return html`<section aria-labelledby="page-title" data-page=${id}>
    <h1 id="page-title" tabindex="-1" ref=${ref}>${title}</h1>${children}</section>`;
}

// --- overview -----------------------------------------------------------------------------------

// The overview's windows (hours → name, lateness bucket seconds); `#/overview?window=<hours>`.
const WINDOWS = { 1: ['last hour', 60], 6: ['last 6 hours', 300], 24: ['last 24 hours', 900], 168: ['last 7 days', 3600] };

function Overview({ params }) {
  const stats = useApi('/stats');
  const windowH = Object.hasOwn(WINDOWS, params.window || '') ? Number(params.window) : 1;
  const [span, bucket] = WINDOWS[windowH];
  const to = new Date(Math.ceil(Date.now() / 60000) * 60000);
  const from = new Date(to.getTime() - windowH * 3600000);
  // One call feeds all three charts: the lateness percentiles, and from the same projected
  // reads of the window's runs the firings by day and hour and the duration histogram.
  const lat = useApi(`/metrics/lateness${qs({ from: from.toISOString(), to: to.toISOString(), bucket_seconds: bucket, include: 'firings,durations' })}`);
  const s = stats.data;
  const m = lat.data;
  const firings = m && m.firings;
  return html`<${Page} title="Overview" id="overview">
    <${ErrorBox} error=${stats.error} what="today's counts" />
    ${s ? html`<div class="stats" aria-label="Runs today (${s.timezone})">
      <div class="stat"><span class="n" id="stat-running">${s.running}</span>running</div>
      <div class="stat"><span class="n">${s.pending}</span>pending</div>
      <div class="stat"><span class="n">${s.completed_today}</span>completed today</div>
      <div class="stat"><span class="n">${s.failed_today}</span>failed today</div>
    </div>` : stats.loading ? html`<${Loading} what="today's counts" />` : ''}
    <form class="inline" onSubmit=${(e) => e.preventDefault()}>
      <label>window of the charts <select value=${windowH} onChange=${(e) => go('/overview', e.target.value === '1' ? {} : { window: e.target.value })}>
        ${Object.entries(WINDOWS).map(([h, [name]]) => html`<option value=${h}>${name}</option>`)}</select></label>
    </form>
    <${ErrorBox} error=${lat.error} what="run metrics" />
    ${m && m.truncated ? html`<p class="muted" role="status">This window holds more runs than the charts read: they show its newest ${firings ? firings.total : ''} runs.</p>` : ''}
    <div class="grid">
      <div class="card"><h2>Start lateness, all schedules, ${span}</h2>
        ${m ? html`<${LatenessChart} buckets=${m.buckets} from=${m.from} to=${m.to} label=${`Start lateness p50 and p99 over time, all schedules, ${span}`} />` : lat.loading ? html`<${Loading} what="lateness" />` : ''}
      </div>
      <div class="card"><h2>Firings by day and hour, ${span}</h2>
        ${firings ? (firings.total
          ? html`<${HeatmapGrid} grid=${firings.by_day_hour} tz=${firings.timezone} label=${`Heatmap of firings by day of week and hour (${firings.timezone}), ${span}`}
              summary=${(max) => `${firings.total} runs by day of week and hour of their nominal time (${firings.timezone}); darkest cell: ${max} firings.`} />`
          : html`<${Empty}>No runs in this window, so no firing pattern to show.</${Empty}>`)
          : lat.loading ? html`<${Loading} what="firings" />` : ''}
      </div>
      <div class="card"><h2>Run durations, ${span}</h2>
        ${m && m.durations ? html`<${DurationBins} durations=${m.durations} truncated=${m.truncated} label=${`Histogram of run durations, ${span}`} />` : lat.loading ? html`<${Loading} what="durations" />` : ''}
      </div>
    </div>
  </${Page}>`;
}

// --- schedules ----------------------------------------------------------------------------------

function FilterForm({ fields, params, base }) {
  const submit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const out = {};
    for (const [k, v] of f.entries()) if (v) out[k] = v;
    go(base, out);
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Filters">
    ${fields.map(([name, label, options]) => (options
      ? html`<label>${label}<select name=${name} value=${params[name] || ''}>${options.map(([v, t]) => html`<option value=${v}>${t}</option>`)}</select></label>`
      : html`<label>${label}<input name=${name} value=${params[name] || ''} size="16" /></label>`))}
    <button type="submit" class="primary">Apply</button>
    <button type="button" onClick=${() => go(base)}>Clear</button>
  </form>`;
}

/** Last run status and a lateness sparkline of one schedule, loaded after the table shows. */
function ScheduleRowExtra({ id }) {
  const runs = useApi(`/runs${qs({ schedule: id, page_size: 20 })}`);
  // `lazy`: filled in after the table shows (bench/console.py times the table and these apart)
  if (runs.loading) return html`<td class="muted loading lazy">…</td><td class="muted loading lazy">…</td>`;
  if (runs.error) return html`<td colspan="2" class="muted">(${runs.error.code})</td>`;
  const items = runs.data.items;
  const last = items.find((r) => r.status !== 'skipped') || items[0];
  const lat = items.map(lateness).filter((v) => v !== null).reverse();
  return html`<td>${last ? html`<a href=${link(`/runs/${encodeURIComponent(last.run_id)}`)}><${Chip} status=${last.status} /></a>` : html`<span class="muted">no runs</span>`}</td>
    <td><${Sparkline} values=${lat} label=${`start lateness of the last ${lat.length} runs of ${id}`} /></td>`;
}

function Schedules({ params }) {
  const { page_token: token, ...filters } = params;
  // 25 a page: each row then asks for its own recent runs (last status, lateness sparkline).
  const list = useApi(`/schedules${qs({ ...filters, page_size: 25, page_token: token })}`);
  return html`<${Page} title="Schedules" id="schedules">
    <${FilterForm} base="/schedules" params=${params} fields=${[
      ['group', 'group'], ['definition', 'definition'], ['tag', 'tag'],
      ['paused', 'paused', [['', 'any'], ['true', 'paused'], ['false', 'active']]]]} />
    <${ErrorBox} error=${list.error} what="schedules" />
    ${list.loading && !list.data ? html`<${Loading} what="schedules" />` : ''}
    ${list.data && !list.data.items.length ? html`<${Empty}>${Object.keys(filters).length ? 'No schedules match these filters.' : html`No schedules yet. Create one with <code>POST /v1/schedules</code> or <code>gnomon schedules create</code>.`}</${Empty}>` : ''}
    ${list.data && list.data.items.length ? html`<div class="table-wrap"><table id="schedules-table">
      <caption class="sr-only">Schedules</caption>
      <thead><tr><th scope="col">schedule</th><th scope="col">group</th><th scope="col">definition</th><th scope="col">state</th>
        <th scope="col">next fire</th><th scope="col">last fire</th><th scope="col">last run</th><th scope="col">lateness</th></tr></thead>
      <tbody>${list.data.items.map((s) => html`<tr key=${s.schedule_id}>
        <td><a href=${link(`/schedules/${encodeURIComponent(s.schedule_id)}`)}>${s.schedule_id}</a></td>
        <td>${s.group}</td><td><a href=${link(`/definitions/${encodeURIComponent(s.definition)}`)}>${s.definition}</a></td>
        <td>${s.paused ? html`<${Chip} status="paused" /> <span class="muted">${s.note}</span>` : html`<${Chip} status="active" />`}</td>
        <td><${When} t=${s.next_fire_time} /></td><td><${When} t=${s.last_fire_time} /></td>
        <${ScheduleRowExtra} id=${s.schedule_id} />
      </tr>`)}</tbody></table></div>
      <${Pager} token=${list.data.next_page_token} hasPrev=${!!token} onFirst=${() => go('/schedules', filters)} onNext=${(t) => go('/schedules', { ...filters, page_token: t })} />` : ''}
  </${Page}>`;
}

function useAction(reload) {
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (fn, message) => {
    setBusy(true); setResult(null);
    try {
      const answer = await fn();
      setResult({ message: typeof message === 'function' ? message(answer) : message });
      if (reload) reload();
      return answer;
    } catch (error) {
      setResult({ error });
      return null;
    } finally { setBusy(false); }
  };
  return { result, busy, run, setResult };
}

function parseJsonField(text, field) {
  if (!text.trim()) return undefined;
  try { return JSON.parse(text); } catch (e) {
    throw new ApiError(0, { error: { code: 'invalid_json', message: `${field} is not valid JSON: ${e.message}` } });
  }
}

function PauseControls({ s, reload }) {
  const id = s.schedule_id;
  const { result, busy, run } = useAction(reload);
  const paused = s.state.paused;
  const submit = (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    if (paused) {
      run(() => api(`/schedules/${encodeURIComponent(id)}/unpause`, { method: 'POST', body: { note: f.note || undefined, catch_up: f.catch_up } }), 'Unpaused.');
    } else {
      run(() => api(`/schedules/${encodeURIComponent(id)}/pause`, { method: 'POST', body: { note: f.note || undefined, until: f.until || undefined } }), 'Paused.');
    }
  };
  return html`<form class="stack" onSubmit=${submit} aria-label=${paused ? 'Unpause' : 'Pause'}>
    <label>note <input name="note" id="pause-note" placeholder=${paused ? 'unpaused' : 'paused'} /></label>
    ${paused
      ? html`<label>catch up firings missed while paused <select name="catch_up"><option value="none">none</option><option value="latest">latest</option><option value="all">all</option></select></label>`
      : html`<label>until (optional, RFC 3339 with offset) <input name="until" placeholder="2026-12-01T10:00:00Z" /></label>`}
    <div><button type="submit" class="primary" id=${paused ? 'unpause-button' : 'pause-button'} disabled=${busy}>${paused ? 'Unpause' : 'Pause'}</button></div>
    <${Result} result=${result} />
  </form>`;
}

function TriggerControls({ s, reload }) {
  const { result, busy, run } = useAction(reload);
  const submit = (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    run(async () => {
      const body = {};
      const input = parseJsonField(f.input, 'input');
      if (input !== undefined) body.input = input;
      if (f.overlap) body.overlap = f.overlap;
      return api(`/schedules/${encodeURIComponent(s.schedule_id)}/trigger`, { method: 'POST', body });
    }, (r) => html`Triggered: <a href=${link(`/runs/${encodeURIComponent(r.run_id)}`)}>${r.run_id}</a> (${r.status}).`);
  };
  return html`<form class="stack" onSubmit=${submit} aria-label="Trigger now">
    <label>input (JSON, optional: the schedule's input when empty) <textarea name="input" rows="3"></textarea></label>
    <label>overlap (optional) <select name="overlap"><option value="">the schedule's (${s.policies.overlap})</option>
      ${['skip', 'buffer_one', 'buffer_all', 'cancel_other', 'terminate_other', 'allow_all'].map((o) => html`<option value=${o}>${o}</option>`)}</select></label>
    <div><button type="submit" class="primary" disabled=${busy} id="trigger-button">Trigger now</button></div>
    <${Result} result=${result} />
  </form>`;
}

function BackfillControls({ s, reload }) {
  const { result, busy, run, setResult } = useAction(reload);
  const [preview, setPreview] = useState(null);
  const body = (f, dry) => ({ start: f.start, end: f.end, overlap: f.overlap || undefined, dry_run: dry });
  const [form, setForm] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    setPreview(null); setForm(f);
    const answer = await run(() => api(`/schedules/${encodeURIComponent(s.schedule_id)}/backfill`, { method: 'POST', body: body(f, true) }),
      (r) => `Dry run: ${r.fire_times.length} fire times in the range (nothing created yet).`);
    if (answer) setPreview(answer);
  };
  const confirm = async () => {
    const answer = await run(() => api(`/schedules/${encodeURIComponent(s.schedule_id)}/backfill`, { method: 'POST', body: body(form, false) }),
      (r) => `Backfill started: ${r.runs_created} runs created (times that already had a run are left alone).`);
    if (answer) setPreview(null);
  };
  return html`<form class="stack" onSubmit=${submit} aria-label="Backfill">
    <div class="inline" style="display:flex;gap:8px;flex-wrap:wrap">
      <label>start (inclusive) <input name="start" required placeholder="2026-11-01T00:00:00Z" /></label>
      <label>end (inclusive) <input name="end" required placeholder="2026-11-02T00:00:00Z" /></label>
      <label>overlap <select name="overlap"><option value="">the schedule's</option>
        ${['skip', 'buffer_one', 'buffer_all', 'allow_all'].map((o) => html`<option value=${o}>${o}</option>`)}</select></label>
    </div>
    <div><button type="submit" disabled=${busy} id="backfill-preview">Preview (dry run)</button></div>
    <${Result} result=${result} />
    ${preview ? html`<div class="notice" id="backfill-dry-run">
      <p>${preview.fire_times.length ? `${preview.fire_times.length} fire times, first ${preview.fire_times[0]}, last ${preview.fire_times[preview.fire_times.length - 1]}.` : 'No fire times in this range.'}</p>
      ${preview.fire_times.length ? html`<button type="button" class="danger" onClick=${confirm} disabled=${busy} id="backfill-confirm">Confirm: backfill ${preview.fire_times.length} runs</button>
        <button type="button" onClick=${() => { setPreview(null); setResult(null); }}>Cancel</button>` : ''}
    </div>` : ''}
  </form>`;
}

function ScheduleDetail({ id }) {
  const d = useApi(`/schedules/${encodeURIComponent(id)}`);
  const runs = useApi(`/runs${qs({ schedule: id, page_size: 300 })}`);
  const to = new Date(Math.ceil(Date.now() / 60000) * 60000);
  const lat = useApi(`/metrics/lateness${qs({ schedule: id, from: new Date(to - 6 * 3600000).toISOString(), to: to.toISOString(), bucket_seconds: 300 })}`);
  const reload = useCallback(() => { d.reload(); runs.reload(); lat.reload(); }, [d.reload, runs.reload, lat.reload]);
  if (d.error) return html`<${Page} title=${`Schedule ${id}`} id="schedule"><${ErrorBox} error=${d.error} what="the schedule" />
    <p><a href="#/schedules">Back to the schedules</a></p></${Page}>`;
  if (!d.data) return html`<${Page} title=${`Schedule ${id}`} id="schedule"><${Loading} what="the schedule" /></${Page}>`;
  const s = d.data;
  const info = s.info || {};
  const c = info.counters || {};
  return html`<${Page} title=${`Schedule ${id}`} id="schedule">
    <p>${s.state.paused ? html`<${Chip} status="paused" /> <span id="schedule-note">${s.state.note}</span>${s.state.paused_until ? html` — until <${When} t=${s.state.paused_until} />` : ''}` : html`<${Chip} status="active" />`}
      · group <strong>${s.group}</strong> · definition <a href=${link(`/definitions/${encodeURIComponent(s.definition)}`)}>${s.definition}</a>
      · <a href=${link('/runs', { schedule: id })}>all runs</a>
      · <button type="button" id="refresh-button" onClick=${reload}>Refresh</button></p>
    <div class="grid">
      <div class="card"><h2>When it fires</h2>
        <ul class="words" id="spec-words">${specWords(s.spec).map((l) => html`<li>${l}</li>`)}</ul>
        <p class="muted">overlap <strong>${s.policies.overlap}</strong>, catch-up window ${s.policies.catchup_window_seconds} s${s.policies.pause_on_failure ? ', pauses on failure' : ''}${s.state.remaining_actions !== null ? `, ${s.state.remaining_actions} actions left` : ''}.</p>
        <h3>Next 10 times</h3>
        ${(info.next_fire_times || []).length ? html`<ol class="mono">${info.next_fire_times.map((t) => html`<li><${When} t=${t} /></li>`)}</ol>` : html`<${Empty}>No future firings${s.state.paused ? ' while paused' : ''}.</${Empty}>`}
      </div>
      <div class="card"><h2>${s.state.paused ? 'Unpause' : 'Pause'}</h2><${PauseControls} s=${s} reload=${reload} />
        <h2>Trigger now</h2><${TriggerControls} s=${s} reload=${reload} /></div>
    </div>
    <h2>Counters</h2>
    <div class="stats">${[['actions', 'actions run'], ['skipped_overlap', 'skipped: overlap'], ['missed_catchup_window', 'missed: catch-up window'], ['skipped_paused', 'skipped: paused'], ['buffer_dropped', 'dropped: buffer full'], ['dropped_stale', 'dropped: stale after update'], ['quota_delayed', 'delayed: group quota']].map(([k, name]) => html`<div class="stat"><span class="n">${c[k] ?? 0}</span>${name}</div>`)}</div>
    <h2>Recent actions</h2>
    ${(info.recent_actions || []).length ? html`<div class="table-wrap"><table id="recent-actions"><thead><tr><th scope="col">nominal time</th><th scope="col">actual time</th><th scope="col">run</th><th scope="col">status</th></tr></thead>
      <tbody>${info.recent_actions.map((a) => html`<tr><td><${When} t=${a.nominal_time} /></td><td><${When} t=${a.actual_time} /></td>
        <td><a href=${link(`/runs/${encodeURIComponent(a.run_id)}`)}>${a.run_id}</a></td><td><${Chip} status=${a.status} /></td></tr>`)}</tbody></table></div>`
      : html`<${Empty}>No actions yet.</${Empty}>`}
    <div class="grid">
      <div class="card"><h2>Start lateness (last 6 hours)</h2><${ErrorBox} error=${lat.error} what="lateness" />
        ${lat.data ? html`<${LatenessChart} buckets=${lat.data.buckets} from=${lat.data.from} to=${lat.data.to} label=${`Start lateness p50 and p99 of ${id} over the last 6 hours`} />` : html`<${Loading} what="lateness" />`}</div>
      <div class="card"><h2>Firings by day and hour</h2><${ErrorBox} error=${runs.error} what="runs" />
        ${runs.data ? html`<${Heatmap} runs=${runs.data.items} label=${`Heatmap of the firings of ${id} by day and hour`} />` : html`<${Loading} what="runs" />`}</div>
      <div class="card"><h2>Run durations</h2>
        ${runs.data ? html`<${DurationHistogram} runs=${runs.data.items} label=${`Histogram of the run durations of ${id}`} />` : html`<${Loading} what="runs" />`}</div>
    </div>
    <h2>Backfill</h2>
    <div class="card"><${BackfillControls} s=${s} reload=${reload} /></div>
    ${(info.backfills || []).length ? html`<h3>Backfills</h3><pre>${json(info.backfills)}</pre>` : ''}
    <details class="data"><summary>The whole schedule as JSON</summary><pre>${json(s)}</pre></details>
  </${Page}>`;
}

// --- runs ---------------------------------------------------------------------------------------

const STATUSES = ['pending', 'running', 'completed', 'failed', 'timed_out', 'canceled', 'terminated', 'skipped'];

function Runs({ params }) {
  const { page_token: token, status, ...rest } = params;
  const statuses = status ? status.split(',') : [];
  const list = useApi(`/runs${qs({ ...rest, status: statuses, page_size: 100, page_token: token })}`);
  const toggle = (st) => {
    const next = statuses.includes(st) ? statuses.filter((x) => x !== st) : [...statuses, st];
    go('/runs', { ...rest, status: next.join(',') || undefined });
  };
  return html`<${Page} title="Runs" id="runs">
    <${FilterForm} base="/runs" params=${params} fields=${[['schedule', 'schedule'], ['definition', 'definition'], ['from', 'from (nominal, RFC 3339)'], ['to', 'to']]} />
    <div role="group" aria-label="Filter by status" style="display:flex;gap:6px;flex-wrap:wrap;margin-bottom:10px">
      ${STATUSES.map((st) => html`<button type="button" class="chip-toggle" aria-pressed=${statuses.includes(st) ? 'true' : 'false'} onClick=${() => toggle(st)}>${st.replace('_', ' ')}</button>`)}
    </div>
    <p><button type="button" id="refresh-button" onClick=${list.reload}>Refresh</button></p>
    <${ErrorBox} error=${list.error} what="runs" />
    ${list.loading && !list.data ? html`<${Loading} what="runs" />` : ''}
    ${list.data && !list.data.items.length ? html`<${Empty}>No runs match these filters.</${Empty}>` : ''}
    ${list.data && list.data.items.length ? html`<div class="table-wrap"><table id="runs-table"><caption class="sr-only">Runs, newest nominal time first</caption>
      <thead><tr><th scope="col">run</th><th scope="col">status</th><th scope="col">schedule / definition</th><th scope="col">trigger</th>
        <th scope="col">nominal time</th><th scope="col" class="num">attempt</th><th scope="col" class="num">lateness</th><th scope="col" class="num">duration</th></tr></thead>
      <tbody>${list.data.items.map((r) => html`<tr key=${r.run_id}>
        <td><a href=${link(`/runs/${encodeURIComponent(r.run_id)}`)} class="mono">${r.run_id}</a></td>
        <td><${Chip} status=${r.status} />${r.reason ? html` <span class="muted">${r.reason}</span>` : ''}</td>
        <td>${r.schedule_id ? html`<a href=${link(`/schedules/${encodeURIComponent(r.schedule_id)}`)}>${r.schedule_id}</a>` : html`<span class="muted">—</span>`} / ${r.definition}</td>
        <td>${r.trigger}</td><td><${When} t=${r.nominal_time} /></td><td class="num">${r.attempt}</td>
        <td class="num">${duration(lateness(r))}</td><td class="num">${duration(r.duration_ms)}</td></tr>`)}</tbody></table></div>
      <${Pager} token=${list.data.next_page_token} hasPrev=${!!token} onFirst=${() => go('/runs', { ...rest, status })} onNext=${(t) => go('/runs', { ...params, page_token: t })} />
      <div class="card"><h2>Durations of the runs listed</h2><${DurationHistogram} runs=${list.data.items} label="Histogram of the durations of the runs listed" /></div>` : ''}
  </${Page}>`;
}

function AttemptTimeline({ attempts }) {
  const rows = attempts.filter((a) => a.started_at);
  if (!rows.length) return html`<${Empty}>No attempt has started yet.</${Empty}>`;
  const t0 = ms(rows[0].started_at);
  const colour = { completed: '#116329', failed: '#a40e26', timed_out: '#a40e26', running: '#0b5cad', canceled: '#7a4a00', terminated: '#a40e26' };
  const config = {
    type: 'bar',
    data: { labels: rows.map((a) => `attempt ${a.attempt}`), datasets: [{
      label: 'attempt (ms since the first start)',
      data: rows.map((a) => [ms(a.started_at) - t0, (a.closed_at ? ms(a.closed_at) : Date.now()) - t0]),
      backgroundColor: rows.map((a) => colour[a.status] || '#4a5260'),
    }] },
    options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, title: { display: true, text: 'ms since the first attempt started' } } } },
  };
  return html`<${ChartBox} config=${config} small=${true} label="Timeline of the run's attempts" summary=${`${rows.length} attempts.`} />
    <div class="table-wrap"><table id="attempts"><thead><tr><th scope="col" class="num">attempt</th><th scope="col">status</th><th scope="col">started</th><th scope="col">closed</th><th scope="col" class="num">duration</th><th scope="col">error</th></tr></thead>
    <tbody>${attempts.map((a) => html`<tr><td class="num">${a.attempt}</td><td><${Chip} status=${a.status} /></td><td><${When} t=${a.started_at} /></td><td><${When} t=${a.closed_at} /></td>
      <td class="num">${duration(a.duration_ms)}</td><td>${a.error ? html`<code>${a.error.code || ''}</code> ${a.error.message || ''}` : ''}</td></tr>`)}</tbody></table></div>`;
}

function RunDetail({ id }) {
  const r = useApi(`/runs/${encodeURIComponent(id)}`);
  const h = useApi(`/runs/${encodeURIComponent(id)}/history`);
  const reload = useCallback(() => { r.reload(); h.reload(); }, [r.reload, h.reload]);
  const { result, busy, run } = useAction(reload);
  if (r.error) return html`<${Page} title=${`Run ${id}`} id="run"><${ErrorBox} error=${r.error} what="the run" /><p><a href="#/runs">Back to the runs</a></p></${Page}>`;
  if (!r.data) return html`<${Page} title=${`Run ${id}`} id="run"><${Loading} what="the run" /></${Page}>`;
  const run_ = r.data;
  const closed = ['completed', 'failed', 'canceled', 'terminated', 'timed_out', 'skipped'].includes(run_.status);
  const act = (action, label) => run(() => api(`/runs/${encodeURIComponent(id)}/${action}`, { method: 'POST', body: { reason: action === 'retry' ? undefined : 'from the console' } }), label);
  return html`<${Page} title=${`Run ${id}`} id="run">
    <p><span id="run-status"><${Chip} status=${run_.status} /></span>${run_.reason ? html` <span class="muted">reason: ${run_.reason}</span>` : ''}</p>
    <div class="grid"><div class="card"><dl class="kv">
      <dt>definition</dt><dd><a href=${link(`/definitions/${encodeURIComponent(run_.definition)}`)}>${run_.definition}</a> v${run_.definition_version}</dd>
      <dt>schedule</dt><dd>${run_.schedule_id ? html`<a href=${link(`/schedules/${encodeURIComponent(run_.schedule_id)}`)}>${run_.schedule_id}</a>` : '—'}</dd>
      <dt>trigger</dt><dd>${run_.trigger}</dd>
      <dt>nominal time</dt><dd><${When} t=${run_.nominal_time} /></dd>
      <dt>scheduled time</dt><dd><${When} t=${run_.scheduled_time} /></dd>
      <dt>started</dt><dd><${When} t=${run_.started_at} /></dd>
      <dt>closed</dt><dd><${When} t=${run_.closed_at} /></dd>
      <dt>start lateness</dt><dd>${duration(lateness(run_))}</dd>
      <dt>duration</dt><dd>${duration(run_.duration_ms)}</dd>
      <dt>attempt</dt><dd>${run_.attempt}</dd>
    </dl></div>
    <div class="card"><h2>Actions</h2>
      <div style="display:flex;gap:8px;flex-wrap:wrap">
        <button disabled=${busy || closed} onClick=${() => act('cancel', 'Cancel requested.')}>Cancel</button>
        <button disabled=${busy || closed} class="danger" onClick=${() => act('terminate', 'Terminated.')}>Terminate</button>
        <button disabled=${busy || !['failed', 'timed_out', 'canceled', 'terminated'].includes(run_.status)} onClick=${() => act('retry', 'A new attempt is pending.')}>Retry</button>
      </div><${Result} result=${result} /></div></div>
    <h2>Attempts</h2><${ErrorBox} error=${h.error} what="the history" />
    ${h.data ? html`<${AttemptTimeline} attempts=${h.data.attempts || []} />` : h.loading ? html`<${Loading} what="the history" />` : ''}
    <div class="grid">
      <div><h2>Input</h2><pre id="run-input">${json(run_.input)}</pre></div>
      <div><h2>Result${run_.result_truncated ? ' (truncated)' : ''}</h2>${run_.result === null || run_.result === undefined ? html`<${Empty}>No result.</${Empty}>` : html`<pre>${json(run_.result)}</pre>`}</div>
      <div><h2>Error${run_.error_truncated ? ' (truncated)' : ''}</h2>${run_.error ? html`<pre class="alert" style="color:inherit">${json(run_.error)}</pre>` : html`<${Empty}>No error.</${Empty}>`}</div>
    </div>
    <h2>Events</h2>
    ${h.data && (h.data.events || []).length ? html`<div class="table-wrap"><table id="events"><thead><tr><th scope="col">time</th><th scope="col">type</th><th scope="col">details</th></tr></thead>
      <tbody>${h.data.events.map((e) => html`<tr><td><${When} t=${e.time} /></td><td>${e.type}</td><td><code>${e.details ? JSON.stringify(e.details) : ''}</code></td></tr>`)}</tbody></table></div>
      ${h.data.truncated ? html`<p class="muted">Only the first events are shown.</p>` : ''}` : h.data ? html`<${Empty}>No events.</${Empty}>` : ''}
  </${Page}>`;
}

// --- tasks and leases ---------------------------------------------------------------------------

function Tasks({ params }) {
  const { page_token: token, ...filters } = params;
  const tasks = useApi(`/tasks${qs({ ...filters, page_size: 100, page_token: token })}`);
  const leases = useApi(`/leases${qs({ topic: filters.topic })}`);
  const topic = useApi(filters.topic ? `/topics/${encodeURIComponent(filters.topic)}` : null);
  return html`<${Page} title="Tasks and leases" id="tasks">
    <${FilterForm} base="/tasks" params=${params} fields=${[['topic', 'topic'], ['task_group_id', 'task group'],
      ['status', 'status', [['', 'any'], ...['ready', 'leased', 'snoozed', 'completed', 'failed'].map((s) => [s, s])]]]} />
    ${topic.data ? html`<div class="stats" aria-label=${`Topic ${filters.topic}`}>${Object.entries(topic.data).filter(([, v]) => typeof v === 'number').map(([k, v]) => html`<div class="stat"><span class="n">${v}</span>${k.replace(/_/g, ' ')}</div>`)}</div>` : ''}
    <h2>Leases now</h2>
    <${ErrorBox} error=${leases.error} what="leases" />
    ${leases.data && !leases.data.items.length ? html`<${Empty}>No task is leased or snoozed${filters.topic ? ` on topic ${filters.topic}` : ''} right now.</${Empty}>` : ''}
    ${leases.data && leases.data.items.length ? html`<div class="table-wrap"><table id="leases-table"><thead><tr><th scope="col">task</th><th scope="col">topic</th><th scope="col">status</th><th scope="col">lease owner</th><th scope="col">expires</th><th scope="col">not before</th></tr></thead>
      <tbody>${leases.data.items.map((t) => html`<tr><td class="mono">${t.task_id}</td><td>${t.topic}</td><td><${Chip} status=${t.status} /></td>
        <td>${t.lease ? t.lease.owner : '—'}</td><td><${When} t=${t.lease && t.lease.expires_at} /></td><td><${When} t=${t.not_before} /></td></tr>`)}</tbody></table></div>` : ''}
    <h2>Tasks</h2>
    <${ErrorBox} error=${tasks.error} what="tasks" />
    ${tasks.loading && !tasks.data ? html`<${Loading} what="tasks" />` : ''}
    ${tasks.data && !tasks.data.items.length ? html`<${Empty}>No tasks match these filters.</${Empty}>` : ''}
    ${tasks.data && tasks.data.items.length ? html`<div class="table-wrap"><table id="tasks-table"><thead><tr><th scope="col">task</th><th scope="col">topic</th><th scope="col">group</th><th scope="col">status</th><th scope="col" class="num">attempts</th><th scope="col">lease owner</th><th scope="col">lease expires</th><th scope="col">created</th></tr></thead>
      <tbody>${tasks.data.items.map((t) => html`<tr><td class="mono">${t.task_id}</td><td><a href=${link('/tasks', { topic: t.topic })}>${t.topic}</a>${t.sub_topic ? ` / ${t.sub_topic}` : ''}</td><td>${t.task_group_id || '—'}</td>
        <td><${Chip} status=${t.status} /></td><td class="num">${t.attempts}/${t.max_attempts}</td><td>${t.lease ? t.lease.owner : '—'}</td><td><${When} t=${t.lease && t.lease.expires_at} /></td><td><${When} t=${t.created_at} /></td></tr>`)}</tbody></table></div>
      <${Pager} token=${tasks.data.next_page_token} hasPrev=${!!token} onFirst=${() => go('/tasks', filters)} onNext=${(t) => go('/tasks', { ...filters, page_token: t })} />` : ''}
  </${Page}>`;
}

// --- definitions --------------------------------------------------------------------------------

function Definitions({ params }) {
  const { page_token: token, ...filters } = params;
  const list = useApi(`/definitions${qs({ ...filters, page_size: 100, page_token: token })}`);
  return html`<${Page} title="Definitions" id="definitions">
    <${FilterForm} base="/definitions" params=${params} fields=${[['tag', 'tag']]} />
    <${ErrorBox} error=${list.error} what="definitions" />
    ${list.loading && !list.data ? html`<${Loading} what="definitions" />` : ''}
    ${list.data && !list.data.items.length ? html`<${Empty}>No definitions${filters.tag ? ' with this tag' : ' yet'}.</${Empty}>` : ''}
    ${list.data && list.data.items.length ? html`<div class="table-wrap"><table id="definitions-table"><thead><tr><th scope="col">name</th><th scope="col">target</th><th scope="col" class="num">version</th><th scope="col">tags</th><th scope="col">description</th></tr></thead>
      <tbody>${list.data.items.map((d) => html`<tr><td><a href=${link(`/definitions/${encodeURIComponent(d.name)}`)}>${d.name}</a></td>
        <td>${d.target ? d.target.type : ''}</td><td class="num">${d.version}</td><td>${(d.tags || []).join(', ')}</td><td>${d.description || ''}</td></tr>`)}</tbody></table></div>
      <${Pager} token=${list.data.next_page_token} hasPrev=${!!token} onFirst=${() => go('/definitions', filters)} onNext=${(t) => go('/definitions', { ...filters, page_token: t })} />` : ''}
  </${Page}>`;
}

function stable(v) {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, stable(v[k])]));
  return v;
}
const VOLATILE = ['updated_at', 'updated_by', 'created_at', 'version', 'identity'];
function versionText(v) {
  const copy = { ...v };
  VOLATILE.forEach((k) => delete copy[k]);
  return `${JSON.stringify(stable(copy), null, 2)}\n`;
}

function VersionDiff({ older, newer }) {
  if (!window.Diff) return html`<p class="alert">The diff library did not load.</p>`;
  const parts = window.Diff.diffLines(versionText(older), versionText(newer));
  const changed = parts.some((p) => p.added || p.removed);
  const lines = (p, mark) => p.value.replace(/\n$/, '').split('\n').map((l) => `${mark} ${l}`);
  const context = (p, i) => {
    // Unchanged stretches keep 3 lines of context next to each change, like a unified diff.
    const all = lines(p, ' ');
    const keepHead = i > 0 ? 3 : 0;
    const keepTail = i < parts.length - 1 ? 3 : 0;
    if (all.length <= keepHead + keepTail + 1) return all.join('\n');
    return [...all.slice(0, keepHead), `  … ${all.length - keepHead - keepTail} unchanged lines`, ...all.slice(all.length - keepTail)].join('\n');
  };
  return html`<div class="diff" id="version-diff" aria-label=${`Changes from version ${older.version} to ${newer.version}`}>
    ${changed ? parts.map((p, i) => (p.added ? html`<ins>${lines(p, '+').join('\n')}</ins>`
      : p.removed ? html`<del>${lines(p, '-').join('\n')}</del>`
        : html`<span>${context(p, i)}</span>`))
      : html`<span>No change in the definition's fields.</span>`}
  </div>`;
}

function DefinitionDetail({ name }) {
  const d = useApi(`/definitions/${encodeURIComponent(name)}`);
  const v = useApi(`/definitions/${encodeURIComponent(name)}/versions?page_size=100`);
  const [sel, setSel] = useState(null);
  if (d.error) return html`<${Page} title=${`Definition ${name}`} id="definition"><${ErrorBox} error=${d.error} what="the definition" /></${Page}>`;
  const versions = (v.data && v.data.items) || [];
  const idx = sel === null ? 0 : versions.findIndex((x) => x.version === sel);
  const cur = versions[idx];
  const prev = versions[idx + 1];
  return html`<${Page} title=${`Definition ${name}`} id="definition">
    ${d.data ? html`<p>version ${d.data.version} · target <strong>${d.data.target.type}</strong> · <a href=${link('/schedules', { definition: name })}>schedules using it</a> · <a href=${link('/runs', { definition: name })}>runs</a></p>` : html`<${Loading} what="the definition" />`}
    <h2>Version history</h2>
    <${ErrorBox} error=${v.error} what="the versions" />
    ${versions.length ? html`<div class="grid"><div><table id="versions-table"><thead><tr><th scope="col">version</th><th scope="col">changed</th><th scope="col">by</th></tr></thead>
      <tbody>${versions.map((x, i) => html`<tr aria-selected=${i === idx ? 'true' : 'false'}>
        <td><button type="button" class=${i === idx ? 'primary' : ''} aria-pressed=${i === idx ? 'true' : 'false'} onClick=${() => setSel(x.version)}>v${x.version}</button></td>
        <td><${When} t=${x.updated_at || x.created_at} /></td><td>${x.updated_by || '—'}${x.identity ? ` (${x.identity})` : ''}</td></tr>`)}</tbody></table></div>
      <div><h3>${prev ? `Changes from v${prev.version} to v${cur.version}` : `v${cur.version} is the first version`}</h3>
        ${prev ? html`<${VersionDiff} older=${prev} newer=${cur} />` : html`<pre>${versionText(cur)}</pre>`}</div></div>`
      : v.loading ? html`<${Loading} what="the versions" />` : html`<${Empty}>No versions recorded.</${Empty}>`}
    ${d.data ? html`<details class="data"><summary>The current definition as JSON</summary><pre>${json(d.data)}</pre></details>` : ''}
  </${Page}>`;
}

// --- operators (event-triggered definitions) ----------------------------------------------------

function Operators() {
  const list = useApi('/operators');
  const { result, busy, run } = useAction(list.reload);
  const restart = (def, key) => run(() => api(`/operators/${encodeURIComponent(def)}/restart`, { method: 'POST', body: key ? { key } : {} }), `Restart requested for ${def}${key ? ` (key ${key})` : ''}.`);
  const notThere = list.error && (list.error.status === 404 || list.error.status === 405);
  const items = (list.data && list.data.items) || [];
  return html`<${Page} title="Event-triggered operators" id="operators">
    ${notThere ? html`<div class="notice" role="status" id="operators-unavailable">This gnomon does not serve operators yet: <code>GET /v1/operators</code> answered ${list.error.status} (${list.error.code}). Event-triggered definitions appear here once the API has them.</div>`
      : html`<${ErrorBox} error=${list.error} what="operators" />`}
    ${list.loading && !list.data ? html`<${Loading} what="operators" />` : ''}
    <${Result} result=${result} />
    ${list.data && !items.length ? html`<${Empty}>No event-triggered definitions. A definition with <code>triggers: [{"event_type": …}]</code> shows up here.</${Empty}>` : ''}
    ${items.length ? html`<div class="table-wrap"><table id="operators-table"><thead><tr><th scope="col">definition</th><th scope="col">status</th><th scope="col">halted keys</th><th scope="col">since</th><th scope="col">action</th></tr></thead>
      <tbody>${items.map((o) => {
        const halted = o.halted_keys || o.halted || [];
        return html`<tr><td><a href=${link(`/definitions/${encodeURIComponent(o.definition)}`)}>${o.definition}</a></td><td><${Chip} status=${o.status} /></td>
          <td>${halted.length ? html`<ul>${halted.map((k) => html`<li><code>${k.key ?? k}</code>${(k.error || (k === o.key && o.error)) ? html` — ${(k.error || o.error).message || JSON.stringify(k.error || o.error)}` : ''} <button disabled=${busy} onClick=${() => restart(o.definition, k.key ?? k)}>Restart key</button></li>`)}</ul>` : html`<span class="muted">none</span>`}</td>
          <td><${When} t=${o.since} /></td>
          <td>${o.status === 'halted' ? html`<button class="primary" disabled=${busy} onClick=${() => restart(o.definition)}>Restart all</button>` : ''}</td></tr>`;
      })}</tbody></table></div>` : ''}
  </${Page}>`;
}

// --- dead letters -------------------------------------------------------------------------------

function DeadLetters() {
  const list = useApi('/dlq?page_size=100');
  const { result, busy, run } = useAction(list.reload);
  const items = (list.data && list.data.items) || [];
  return html`<${Page} title="Dead letters" id="dlq">
    <p class="muted">Firing messages the worker failed to process five times. Redrive moves them back to the firing queue (receive, send, delete).</p>
    <${ErrorBox} error=${list.error} what="dead letters" />
    <${Result} result=${result} />
    ${list.data && !items.length ? html`<${Empty}>The dead-letter queue is empty.</${Empty}>` : ''}
    ${items.length ? html`<p><button class="primary" disabled=${busy} onClick=${() => run(() => api('/dlq/redrive', { method: 'POST', body: { max_messages: 1000 } }), (r) => `${r.redriven} messages redriven.`)}>Redrive all</button></p>
      <div class="table-wrap"><table><thead><tr><th scope="col">message</th><th scope="col">sent</th><th scope="col" class="num">receives</th><th scope="col">reason</th><th scope="col">body</th></tr></thead>
      <tbody>${items.map((m) => html`<tr><td class="mono">${m.message_id}</td><td><${When} t=${m.sent_at} /></td><td class="num">${m.receive_count}</td><td>${m.reason}</td><td><code>${JSON.stringify(m.body).slice(0, 200)}</code></td></tr>`)}</tbody></table></div>` : ''}
  </${Page}>`;
}

// --- the app ------------------------------------------------------------------------------------

function NotFoundPage({ path }) {
  return html`<${Page} title="Page not found" id="not-found"><${Empty}>The console has no page <code>${path}</code>. <a href="#/overview">Go to the overview</a>.</${Empty}></${Page}>`;
}

function App() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => {
      setRoute(parseHash());
      window.scrollTo(0, 0);
      const h = document.getElementById('page-title');
      if (h) setTimeout(() => h.focus(), 0);  // announce the new page to screen readers
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const signedIn = CONFIG.auth.mode !== 'oidc' || !!currentToken();
  const [section, id] = route.parts;
  let page;
  if (!signedIn) {
    page = html`<${Page} title="Sign in" id="sign-in"><p>This console reads gnomon's API with your identity from ${CONFIG.auth.issuer}.</p>
      <button class="primary" onClick=${() => signIn()}>Sign in</button></${Page}>`;
  } else if (!section || section === 'overview') page = html`<${Overview} params=${route.params} />`;
  else if (section === 'schedules') page = id ? html`<${ScheduleDetail} id=${id} key=${id} />` : html`<${Schedules} params=${route.params} key=${route.query} />`;
  else if (section === 'runs') page = id ? html`<${RunDetail} id=${id} key=${id} />` : html`<${Runs} params=${route.params} key=${route.query} />`;
  else if (section === 'tasks') page = html`<${Tasks} params=${route.params} key=${route.query} />`;
  else if (section === 'definitions') page = id ? html`<${DefinitionDetail} name=${id} key=${id} />` : html`<${Definitions} params=${route.params} key=${route.query} />`;
  else if (section === 'operators') page = html`<${Operators} />`;
  else if (section === 'dlq') page = html`<${DeadLetters} />`;
  else page = html`<${NotFoundPage} path=${location.hash} />`;
  return html`<${Header} section=${section || 'overview'} signedIn=${signedIn} /><main id="main">${page}</main>`;
}

async function start() {
  const root = document.getElementById('app');
  try {
    const res = await fetch('config.json');
    if (res.ok) CONFIG = await res.json();
    if (CONFIG.auth.mode === 'oidc') await finishSignIn();
  } catch (err) {
    root.innerHTML = '';
    render(html`<main id="main"><${ErrorBox} error=${{ message: err.message, code: 'console_start' }} /></main>`, root);
    return;
  }
  root.innerHTML = '';
  render(html`<${App} />`, root);
}

// The classic scripts (Chart.js, cronstrue, jsdiff) are `defer`: modules run after them.
start();
