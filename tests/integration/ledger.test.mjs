// The ledger: exact cost against the fake provider's usage and the price
// table, savings, breakdowns, persistence across a restart, CSV, metrics
// accepted by promtool, and budgets (alert webhook, 429, CRITICAL, and the
// bound under concurrency).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { startFake, startGateway, startRedis, chatBody, errorOf, waitFor } from './lib.mjs';

// DESIGN.md's price table in pico-dollars per token (USD per 1M tokens x 1e6).
const PRICE = {
  'openai/gpt-4o-mini': [150000n, 600000n],
  'openai/gpt-4o': [2500000n, 10000000n],
  'anthropic/claude-3-haiku': [250000n, 1250000n],
  'anthropic/claude-3.5-sonnet': [3000000n, 15000000n],
  'meta-llama/llama-3.1-70b': [350000n, 400000n],
};
// Upstream names the shipped table sends to OpenRouter, back to the client name.
const CLIENT_MODEL = {
  'openai/gpt-4o-mini': 'openai/gpt-4o-mini',
  'openai/gpt-4o': 'openai/gpt-4o',
  'anthropic/claude-3-haiku': 'anthropic/claude-3-haiku',
  'anthropic/claude-3.5-sonnet': 'anthropic/claude-3.5-sonnet',
  'meta-llama/llama-3.1-70b-instruct': 'meta-llama/llama-3.1-70b',
};

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

let fake, redis, gw, opts;
const stats = async (g = gw) => (await fetch(`${g.url}/stats`)).json();

before(async () => {
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  opts = {
    providers: { openrouter: { fake, rpm: 60000, concurrent: 50 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url },
  };
  gw = await startGateway(opts);
  cleanup.push(() => gw.stop());
  await waitFor('redis up', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
});

test('after a mixed run, cost is exact to the pico-dollar and breakdowns add up', async () => {
  const models = Object.keys(PRICE);
  const work = [];
  for (let i = 0; i < 30; i++) {
    const model = models[i % models.length];
    const svc = ['scanner', 'validator', 'sentiment'][i % 3];
    const prio = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'][i % 4];
    const words = 'lorem ipsum dolor sit amet '.repeat(1 + (i % 7));
    work.push(gw.chat({ ...chatBody(`mixed ${i} ${words}`), model }, { 'X-Service-Name': svc, 'X-Priority': prio }));
  }
  // Some failures (booked as errors, no cost) and a streamed answer.
  work.push(gw.chat(chatBody('fails @fake:status=500'), { 'X-Service-Name': 'scanner' }));
  work.push(fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Service-Name': 'streamer' },
    body: JSON.stringify(chatBody('streamed and booked', { stream: true, stream_options: { include_usage: true } })),
  }).then((r) => r.text()));
  await Promise.all(work);
  // Hits: repeat a few of them once they are stored.
  for (let i = 0; i < 3; i++) {
    const model = models[i % models.length];
    const words = 'lorem ipsum dolor sit amet '.repeat(1 + (i % 7));
    await waitFor('a hit', async () => (await gw.chat({ ...chatBody(`mixed ${i} ${words}`), model }, { 'X-Service-Name': 'repeat' })).headers.get('x-cache') === 'HIT');
  }

  let expected = 0n;
  for (const r of await fake.requests()) {
    if (r.status !== 200 || !r.usage) continue;
    const [pin, pout] = PRICE[CLIENT_MODEL[r.model]];
    expected += BigInt(r.usage.prompt_tokens) * pin + BigInt(r.usage.completion_tokens) * pout;
  }
  const s = await stats();
  assert.equal(BigInt(s.totals.cost_pusd), expected);
  assert.ok(s.totals.cache_hits >= 3);
  assert.ok(BigInt(s.totals.saved_pusd) > 0n, 'savings are shown for hits');
  assert.equal(BigInt(s.services.repeat.saved_pusd), BigInt(s.totals.saved_pusd));
  assert.equal(s.totals.requests, 30 + 2 + s.services.repeat.requests);
  assert.ok(s.totals.errors >= 1);
  for (const part of ['services', 'providers', 'models', 'priorities']) {
    const sum = Object.values(s[part]).reduce((a, v) => ({
      requests: a.requests + v.requests, cost: a.cost + BigInt(v.cost_pusd), hits: a.hits + v.cache_hits,
    }), { requests: 0, cost: 0n, hits: 0 });
    assert.equal(sum.requests, s.totals.requests, `${part} requests add up`);
    assert.equal(sum.cost, BigInt(s.totals.cost_pusd), `${part} cost adds up`);
    assert.equal(sum.hits, s.totals.cache_hits, `${part} hits add up`);
  }
  assert.deepEqual(Object.keys(s.priorities).sort(), ['CRITICAL', 'HIGH', 'LOW', 'MEDIUM']);
  assert.ok(s.services.streamer.requests === 1 && BigInt(s.services.streamer.cost_pusd) > 0n, 'the stream was booked from its usage');
  for (const k of ['hourly', 'daily', 'monthly']) assert.equal(typeof s.projection_usd[k], 'number');
});

test('CSV: a header row and one row per service', async () => {
  const r = await fetch(`${gw.url}/stats?format=csv`);
  assert.match(r.headers.get('content-type'), /text\/csv/);
  const lines = (await r.text()).trim().split('\n');
  assert.equal(lines[0], 'service,requests,cache_hits,errors,prompt_tokens,completion_tokens,cost_usd,saved_usd,cache_hit_rate,error_rate,avg_cost_usd');
  const s = await stats();
  assert.equal(lines.length - 1, Object.keys(s.services).length);
  const validator = lines.find((l) => l.startsWith('validator,')).split(',');
  assert.equal(Number(validator[1]), s.services.validator.requests);
});

test('promtool check metrics accepts /metrics', async () => {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(text, /^# HELP llmgw_/m);
  assert.match(text, /llmgw_requests_total\{/);
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'promtool is installed (Debian package prometheus)');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('SIGTERM and start again: /stats totals are unchanged', async () => {
  const before1 = (await stats()).totals;
  await gw.stop();
  gw = await startGateway({ ...opts, stateDir: gw.stateDir });
  cleanup.push(() => gw.stop());
  assert.deepEqual((await stats()).totals, before1);
});

test('no snapshot file (a wiped state directory): the books come back from Redis', async () => {
  const before1 = (await stats()).totals;
  const { port, stateDir } = gw;
  await gw.stop();
  rmSync(path.join(stateDir, 'ledger.json'));
  gw = await startGateway({ ...opts, stateDir, port });
  cleanup.push(() => gw.stop());
  await waitFor('the restore log line', () => /ledger restored from redis/.test(gw.log()));
  assert.deepEqual((await stats()).totals, before1);
});

test('budgets: one alert at the threshold, 429 at the limit, CRITICAL passes', async () => {
  const hooks = [];
  const hookSrv = http.createServer((req, res) => {
    let b = '';
    req.on('data', (d) => { b += d; });
    req.on('end', () => { hooks.push(JSON.parse(b)); res.end('ok'); });
  });
  await new Promise((r) => hookSrv.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => hookSrv.close(r)));
  // Each call: about 10 prompt tokens, 8 completion tokens of gpt-4o ($2.5/$10 per 1M):
  // ~$0.0001 each; the budget holds about ten of them.
  const g = await startGateway({
    ...opts,
    extra: `[budget]\nwebhook_url = http://127.0.0.1:${hookSrv.address().port}/hook\nalert_percent = 50\n\n[service.capped]\nbudget_daily_usd = 0.001\n`,
  });
  cleanup.push(() => g.stop());
  const call = (i, prio = 'HIGH') => g.chat({ ...chatBody(`budget call number ${i} with a few words more`), model: 'openai/gpt-4o', max_tokens: 8 },
    { 'X-Service-Name': 'capped', 'X-Priority': prio, 'Cache-Control': 'no-store' });
  let refused = null;
  for (let i = 0; i < 40 && !refused; i++) {
    const r = await call(i);
    if (r.status === 429) refused = r;
    else assert.equal(r.status, 200, r.text);
  }
  assert.ok(refused, 'the budget refused a call');
  const e = errorOf(refused);
  assert.equal(e.code, 'budget_exceeded');
  assert.equal(refused.headers.get('x-should-retry'), 'false', 'SDKs are told not to retry a spent budget');
  const ra = Number(refused.headers.get('retry-after'));
  assert.ok(ra >= 1 && ra <= 86400, `Retry-After ${ra}`);
  const crit = await call(999, 'CRITICAL');
  assert.equal(crit.status, 200, 'CRITICAL passes a spent budget');
  const low = await call(1000, 'LOW');
  assert.equal(low.status, 429);
  await waitFor('the alert webhook', async () => hooks.length >= 1);
  assert.equal(hooks.length, 1, 'one alert, not one per request');
  assert.match(hooks[0].text, /capped/);
  assert.equal(hooks[0].text, hooks[0].content);
  const spent = BigInt((await stats(g)).services.capped.cost_pusd);
  assert.ok(spent <= 1000000000n + 200000000n, `spent ${spent} pico-dollars against a 1e9 budget`);
});

test('50 concurrent requests overshoot a budget by at most one estimate', async () => {
  // gpt-4o, max_tokens 8: the estimate is ceil(chars/4) prompt tokens at $2.5/1M
  // plus 8 completion tokens at $10/1M.
  const g = await startGateway({
    ...opts,
    extra: '[service.burst]\nbudget_daily_usd = 0.0005\n',
  });
  cleanup.push(() => g.stop());
  const body = (i) => ({ ...chatBody(`concurrent budget ${i} @fake:delay_ms=200`), model: 'openai/gpt-4o', max_tokens: 8 });
  const res = await Promise.all(Array.from({ length: 50 }, (_, i) => g.chat(body(i), { 'X-Service-Name': 'burst', 'X-Priority': 'HIGH', 'Cache-Control': 'no-store' })));
  const ok = res.filter((r) => r.status === 200).length;
  const refused = res.filter((r) => r.status === 429 && errorOf(r).code === 'budget_exceeded').length;
  assert.equal(ok + refused, 50);
  assert.ok(refused > 0, 'some were refused');
  const bodyChars = JSON.stringify(body(10)).length;
  const estimate = BigInt(Math.ceil(bodyChars / 4)) * 2500000n + 8n * 10000000n;
  const spent = BigInt((await stats(g)).services.burst.cost_pusd);
  assert.ok(spent <= 500000000n + estimate, `spent ${spent} > limit + one estimate (${estimate})`);
});
