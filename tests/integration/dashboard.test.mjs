// The usage dashboard (GET /dashboard) in a real browser: Debian's headless
// Chromium, driven by playwright-core, loads the page from the daemon after
// a mixed load (3 services, 4 priorities, cache hits, an error) and checks
// what it shows against /stats: names, totals, the Chart.js charts, the
// live queue and limiter tables, the refresh, a narrow window, an empty
// ledger, a gateway with an admin key, and a gateway that went away. It
// fails on any console error, failed request or request to a host other
// than loopback, and saves screenshots to tests/out/dashboard.png and
// tests/out/dashboard-narrow.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startFake, startGateway, startRedis, chatBody, waitFor } from './lib.mjs';

const CHROMIUM = process.env.LLMGW_CHROMIUM || '/usr/bin/chromium';
const OUT = path.resolve('../out');
const SERVICES = ['signal_validator', 'dex_scanner', 'news_sentiment'];
const PRIORITIES = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'];
const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-3-haiku', 'openai/gpt-4o'];
// The fake reports this as OpenRouter's usage.cost, so services differ clearly.
const COST = { signal_validator: '0.0042', dex_scanner: '0.0013', news_sentiment: '0.0006' };
// A client picks the model name; the page must show it as text, never as HTML.
const EVIL_MODEL = '<img src=x onerror="window.__xss=1">';
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

let fake, redis, gw, browser;
let sent = 0; // chat requests the gateway answered (and booked)
const stats = async (g = gw) => (await fetch(`${g.url}/stats`)).json();

function work(i) {
  const svc = SERVICES[i % SERVICES.length];
  const prio = PRIORITIES[i % PRIORITIES.length];
  const body = { ...chatBody(`dashboard load ${i} ${'tick '.repeat(1 + (i % 5))}@fake:cost=${COST[svc]}`), model: MODELS[i % MODELS.length] };
  return { body, headers: { 'X-Service-Name': svc, 'X-Priority': prio } };
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install the Debian package chromium`);
  mkdirSync(OUT, { recursive: true });
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 60000, concurrent: 2 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url },
  });
  cleanup.push(() => gw.stop());
  await waitFor('redis up', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');

  // 36 calls: every service at every priority, three models.
  const res = await Promise.all(Array.from({ length: 36 }, (_, i) => gw.chat(work(i).body, work(i).headers)));
  assert.ok(res.every((r) => r.status === 200), 'the load succeeds');
  sent += res.length;
  // Cache hits: the same calls again, once they are stored.
  for (let i = 0; i < 6; i++) {
    await waitFor(`a hit for call ${i}`, async () => {
      sent++;
      return (await gw.chat(work(i).body, work(i).headers)).headers.get('x-cache') === 'HIT';
    });
  }
  // One error, and one model name that looks like HTML.
  const failed = await gw.chat(chatBody('this one fails @fake:status=500'), { 'X-Service-Name': 'dex_scanner', 'X-Priority': 'HIGH' });
  assert.equal(failed.status, 502);
  const evil = await gw.chat({ ...chatBody('odd model @fake:cost=0.0001'), model: EVIL_MODEL }, { 'X-Service-Name': 'news_sentiment', 'X-Priority': 'LOW' });
  assert.equal(evil.status, 200);
  sent += 2;

  const userDataDir = mkdtempSync(path.join(tmpdir(), 'llmgw-chromium-'));
  cleanup.push(() => rmSync(userDataDir, { recursive: true, force: true }));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  cleanup.push(() => browser.close());
});

// A page that records everything that can go wrong on it.
async function openDashboard(url, viewport, { live = true } = {}) {
  const page = await browser.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const seen = { console: [], pageErrors: [], failed: [], badStatus: [], hosts: new Set(), stats: [] };
  page.on('console', (m) => { if (m.type() === 'error') seen.console.push(m.text()); });
  page.on('pageerror', (e) => seen.pageErrors.push(e.message));
  page.on('requestfailed', (r) => seen.failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:') seen.hosts.add(u.hostname);
  });
  page.on('response', async (r) => {
    if (r.status() >= 400) seen.badStatus.push(`${r.status()} ${r.url()}`);
    if (new URL(r.url()).pathname === '/stats' && r.request().resourceType() === 'fetch') {
      try { seen.stats.push(await r.json()); } catch { /* page closed */ }
    }
  });
  const resp = await page.goto(`${url}/dashboard`);
  assert.equal(resp.status(), 200);
  assert.match(resp.headers()['content-type'], /^text\/html/);
  if (live) await page.waitForFunction(() => document.querySelector('#status').classList.contains('live'), null, { timeout: 10000 });
  return { page, seen };
}

function assertClean(seen) {
  assert.deepEqual(seen.pageErrors, [], 'no uncaught exceptions');
  assert.deepEqual(seen.console, [], 'no console errors');
  assert.deepEqual(seen.failed, [], 'no failed requests');
  assert.deepEqual(seen.badStatus, [], 'no error responses');
  for (const h of seen.hosts) assert.ok(LOOPBACK.has(h), `a request went to ${h}, not loopback`);
}

// What the page's charts hold: size, Chart.js type, labels and data.
const chartState = (page) => page.evaluate(() => [...document.querySelectorAll('canvas')].map((c) => {
  const ch = window.Chart && window.Chart.getChart(c);
  const r = c.getBoundingClientRect();
  return {
    id: c.id, width: r.width, height: r.height, type: ch ? ch.config.type : null,
    labels: ch ? ch.data.labels.slice() : null,
    data: ch ? ch.data.datasets.map((d) => d.data.slice()) : null,
  };
}));

test('the dashboard shows /stats: names, totals, charts, live tables, exports', { timeout: 60000 }, async () => {
  const { page, seen } = await openDashboard(gw.url);
  const s = seen.stats.at(-1);
  assert.ok(s, 'the page fetched /stats');
  const now = await stats();
  assert.equal(now.totals.requests, s.totals.requests, 'the load is over: /stats is stable');
  assert.equal(s.totals.requests, sent);
  assert.ok(s.totals.cache_hits >= 6 && s.totals.errors >= 1);

  // Big numbers.
  const kpi = await page.evaluate(() => Object.fromEntries(['k-cost', 'k-requests', 'k-hits', 'k-errors']
    .map((id) => [id, { text: document.getElementById(id).textContent, value: Number(document.getElementById(id).dataset.value) }])));
  assert.equal(kpi['k-requests'].value, s.totals.requests);
  assert.equal(kpi['k-requests'].text.replace(/,/g, ''), String(s.totals.requests));
  assert.equal(kpi['k-cost'].value, s.totals.cost_usd);
  assert.match(kpi['k-cost'].text, /^\$\d/);
  assert.equal(kpi['k-hits'].value, s.totals.cache_hit_rate);
  assert.equal(kpi['k-errors'].value, s.totals.error_rate);
  assert.match(kpi['k-errors'].text, /%$/);

  // The per-service table: every service, with its requests.
  const rows = await page.$$eval('#t-breakdown tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  for (const name of SERVICES) {
    const row = rows.find((r) => r[0] === name);
    assert.ok(row, `${name} is in the table`);
    assert.equal(Number(row[1].replace(/,/g, '')), s.services[name].requests, `${name} requests`);
  }
  const body = await page.textContent('body');
  for (const name of SERVICES) assert.ok(body.includes(name));

  // Charts: drawn, sized, and holding the /stats numbers.
  const charts = Object.fromEntries((await chartState(page)).map((c) => [c.id, c]));
  for (const id of ['c-history', 'c-services', 'c-priorities', 'c-providers']) {
    assert.ok(charts[id], `canvas ${id}`);
    assert.ok(charts[id].width > 100 && charts[id].height > 100, `${id} has a size`);
    assert.ok(charts[id].type, `${id} is a Chart.js chart`);
  }
  assert.deepEqual(charts['c-priorities'].labels, PRIORITIES);
  assert.deepEqual(charts['c-priorities'].data[0], PRIORITIES.map((p) => s.priorities[p].requests));
  assert.deepEqual([...charts['c-services'].labels].sort(), [...SERVICES].sort());
  assert.equal(charts['c-history'].labels.length, s.history.length);
  const histReq = charts['c-history'].data[1].reduce((a, b) => a + b, 0);
  assert.equal(histReq, s.history.reduce((a, m) => a + m.requests, 0));
  assert.equal(charts['c-providers'].type, 'doughnut');
  const provTotal = charts['c-providers'].data[0].reduce((a, b) => a + b, 0);
  assert.equal(provTotal, s.totals.requests, 'the doughnut covers every request');

  // Live tables: four priorities in order, every limiter.
  const queues = await page.$$eval('#t-queues tbody tr', (trs) => trs.map((tr) => tr.cells[0].textContent.trim()));
  assert.deepEqual(queues, PRIORITIES);
  const limiters = await page.$$eval('#t-limiters tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.deepEqual(limiters.map((r) => r[0]), Object.keys(s.limiters));
  assert.match(limiters[0][3], /^0 \/ 2/);

  // Projections are shown; the export links answer.
  assert.match(await page.textContent('#p-monthly'), /^\$\d/);
  const links = await page.$$eval('a[download]', (as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links, ['/stats', '/stats?format=csv']);
  const types = await page.evaluate(async (hrefs) => Promise.all(hrefs.map(async (h) => {
    const r = await fetch(h);
    return `${r.status} ${r.headers.get('content-type')}`;
  })), links);
  assert.match(types[0], /^200 application\/json/);
  assert.match(types[1], /^200 text\/csv/);

  // A model name that looks like HTML stays text.
  await page.click('.tabs button[data-part="models"]');
  const models = await page.$$eval('#t-breakdown tbody tr', (trs) => trs.map((tr) => tr.cells[0].textContent));
  assert.ok(models.includes(EVIL_MODEL), 'the odd model name is shown as text');
  assert.equal(await page.$('#t-breakdown img'), null, 'no element was made from it');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await page.click('.tabs button[data-part="services"]');

  assertClean(seen);
  await page.close();
});

test('queues and limiters are live, and the page refreshes every 5 s', { timeout: 60000 }, async () => {
  const before = (await stats()).totals.requests;
  // Four slow calls on two slots: two in flight, two queued. The queued
  // two are sent once the first two hold the slots: connections are
  // served by several threads, so sending all four at once leaves which
  // two run first to chance.
  const call = (i) => gw.chat(chatBody(`slow ${i} @fake:delay_ms=4000 @fake:cost=0.002`),
    { 'X-Service-Name': SERVICES[i % 3], 'X-Priority': i < 2 ? 'MEDIUM' : 'LOW' });
  const slow = [call(0), call(1)];
  await waitFor('two in flight', async () => (await stats()).limiters.openrouter.in_flight === 2);
  slow.push(call(2), call(3));
  await waitFor('two in flight and two queued', async () => {
    const s = await stats();
    return s.limiters.openrouter.in_flight === 2 && s.queues.LOW.depth === 2;
  });
  const { page, seen } = await openDashboard(gw.url);
  const s = seen.stats.at(-1);
  const inflight = await page.textContent('#t-limiters tbody tr:first-child td:nth-child(4)');
  assert.ok(inflight.startsWith(`${s.limiters.openrouter.in_flight} / 2`), inflight);
  const depth = await page.$$eval('#t-queues tbody tr', (trs) => trs.map((tr) => Number(tr.cells[1].textContent)));
  assert.deepEqual(depth, PRIORITIES.map((p) => s.queues[p].depth));
  if (s.limiters.openrouter.in_flight === 2) assert.match(await page.textContent('#t-limiters tbody tr:first-child'), /all slots busy/);
  await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });

  assert.ok((await Promise.all(slow)).every((r) => r.status === 200));
  sent += slow.length;
  await waitFor('the page shows the four new requests', async () =>
    Number(await page.getAttribute('#k-requests', 'data-value')) === before + 4, { timeoutMs: 7000, intervalMs: 100 });
  assert.equal(before + 4, sent);
  assertClean(seen);
  await page.close();
});

test('a narrow window: one column, nothing wider than the window', { timeout: 30000 }, async () => {
  const { page, seen } = await openDashboard(gw.url, { width: 390, height: 844 });
  const fit = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, win: window.innerWidth }));
  assert.ok(fit.doc <= fit.win, `page is ${fit.doc}px wide in a ${fit.win}px window`);
  for (const c of await chartState(page)) assert.ok(c.width > 200 && c.height > 100 && c.type, `${c.id} is drawn`);
  await page.screenshot({ path: path.join(OUT, 'dashboard-narrow.png'), fullPage: true });
  assertClean(seen);
  await page.close();
});

test('an empty ledger shows zeros and empty charts without errors', { timeout: 30000 }, async () => {
  const fresh = await startGateway({ providers: { openrouter: { fake } }, order: ['openrouter'] });
  try {
    const { page, seen } = await openDashboard(fresh.url);
    assert.equal(await page.getAttribute('#k-requests', 'data-value'), '0');
    assert.equal(await page.textContent('#k-requests'), '0');
    assert.match(await page.textContent('#t-breakdown tbody'), /No requests yet/);
    const charts = await chartState(page);
    assert.equal(charts.length, 4);
    for (const c of charts) assert.ok(c.width > 0 && c.type, `${c.id} exists`);
    assert.deepEqual(charts.find((c) => c.id === 'c-priorities').labels, PRIORITIES);
    assert.ok(await page.isVisible('#c-providers ~ .empty'), 'the doughnut says there is nothing yet');
    assertClean(seen);
    await page.close();
  } finally {
    await fresh.stop();
  }
});

test('with an admin key the page asks for it, then shows and exports the data', { timeout: 30000 }, async () => {
  const sha = (k) => createHash('sha256').update(k).digest('hex');
  const guarded = await startGateway({
    providers: { openrouter: { fake } },
    order: ['openrouter'],
    extra: `[auth]\nadmin_key_sha256 = ${sha('admin-secret')}\n`,
  });
  try {
    await guarded.chat(chatBody('guarded @fake:cost=0.001'), { 'X-Service-Name': 'dex_scanner' });
    const { page, seen } = await openDashboard(guarded.url, undefined, { live: false });
    await page.waitForSelector('#auth-key', { state: 'visible', timeout: 10000 });
    assert.match(await page.textContent('#status'), /admin key needed/);
    await page.fill('#auth-key', 'wrong');
    await page.click('#auth-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#status').textContent.includes('admin key not accepted'), null, { timeout: 10000 });
    await page.fill('#auth-key', 'admin-secret');
    await page.click('#auth-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#status').classList.contains('live'), null, { timeout: 10000 });
    assert.ok(await page.isHidden('#auth'));
    assert.equal(await page.getAttribute('#k-requests', 'data-value'), '1');
    assert.match(await page.textContent('#t-breakdown tbody'), /dex_scanner/);
    // The export carries the key: the download is the CSV, not a 401.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a[href="/stats?format=csv"]')]);
    assert.equal(download.suggestedFilename(), 'llmgw-stats.csv');
    assert.match(readFileSync(await download.path(), 'utf8'), /^service,requests,/);
    // The only errors are the two refused /stats fetches, before the key.
    const refused = (u) => / 401 /.test(u) || /401 \(Unauthorized\)/.test(u);
    assert.equal(seen.badStatus.filter((u) => !/^401 .*\/stats$/.test(u)).length, 0, seen.badStatus.join('\n'));
    assert.deepEqual(seen.console.filter((m) => !refused(m)), []);
    assertClean({ ...seen, console: [], badStatus: [] });
    await page.close();
  } finally {
    await guarded.stop();
  }
});

test('when the gateway goes away the page says so and keeps the last data', { timeout: 30000 }, async () => {
  const { page, seen } = await openDashboard(gw.url);
  const shown = await page.getAttribute('#k-requests', 'data-value');
  await gw.stop();
  await page.waitForFunction(() => document.querySelector('#status').textContent.includes('gateway unreachable'), null, { timeout: 10000 });
  assert.match(await page.textContent('#status'), /showing data from \d\d:\d\d:\d\d/);
  assert.equal(await page.getAttribute('#k-requests', 'data-value'), shown);
  const body = await page.textContent('#t-breakdown tbody');
  for (const name of SERVICES) assert.ok(body.includes(name), `${name} is still shown`);
  assert.ok((await chartState(page)).every((c) => c.type), 'the charts are still there');
  // The refused fetch is logged by the browser; the page itself must not throw.
  assert.deepEqual(seen.pageErrors, []);
  await page.close();
});
