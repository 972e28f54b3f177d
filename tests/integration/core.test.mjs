// Gateway core: headers in and out, keys, model mapping, deadlines,
// queue bounds, demo mode, config check, graceful shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFake, startGateway, chatBody, errorOf, waitFor, LLMGW_BIN } from './lib.mjs';

let orFake, oaFake, gw;

before(async () => {
  orFake = await startFake('openrouter');
  oaFake = await startFake('openai');
  gw = await startGateway({
    providers: {
      openrouter: { fake: orFake, concurrent: 1, rpm: 6000 },
      openai: { fake: oaFake, rpm: 6000 },
    },
    order: ['openrouter', 'openai'],
    queue: { low_max: 2, aging_ms: 600000 },
  });
});

after(async () => {
  await gw?.stop();
  await orFake?.stop();
  await oaFake?.stop();
});

test('answers through the first provider with the contract headers', async () => {
  const res = await gw.chat(chatBody('hello there'), {
    'X-Priority': 'high', 'X-Service-Name': 'stock_analyzer', 'X-Request-Id': 'trade-42',
    Authorization: 'Bearer client-secret-must-not-leak',
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.choices[0].message.content, 'Echo: hello there');
  assert.equal(res.headers.get('x-request-id'), 'trade-42');
  assert.equal(res.headers.get('x-provider'), 'openrouter');
  assert.match(res.headers.get('x-queue-ms'), /^\d+$/);
  const reqs = await orFake.requests();
  const last = reqs[reqs.length - 1];
  assert.equal(last.headers.authorization, 'Bearer key-openrouter');
  assert.equal(last.body.model, 'openai/gpt-4o-mini');
});

test('a generated request id when none is sent', async () => {
  const res = await gw.chat(chatBody('no id'));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('x-request-id'), /^req_[0-9a-f]+$/);
});

test('model is mapped per provider on fallback, and the OpenAI key is used there', async () => {
  const res = await gw.chat(chatBody('map me @fake:openrouter.status=500'));
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get('x-provider'), 'openai');
  const reqs = await oaFake.requests();
  const last = reqs[reqs.length - 1];
  assert.equal(last.body.model, 'gpt-4o-mini');
  assert.equal(last.headers.authorization, 'Bearer key-openai');
});

test('an unknown model passes through OpenRouter as is', async () => {
  const res = await gw.chat({ ...chatBody('x'), model: 'nobody/serves-this' });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get('x-provider'), 'openrouter');
  const reqs = await orFake.requests();
  assert.equal(reqs[reqs.length - 1].body.model, 'nobody/serves-this');
});

test('a model no provider serves is a 400 naming the model', async () => {
  const fake = await startFake('openai');
  const g = await startGateway({ providers: { openai: { fake } }, order: ['openai'] });
  try {
    const res = await g.chat({ ...chatBody('x'), model: 'nobody/serves-this' });
    assert.equal(res.status, 400, res.text);
    const e = errorOf(res);
    assert.equal(e.code, 'model_not_found');
    assert.match(e.message, /nobody\/serves-this/);
    assert.equal((await fake.requests()).length, 0);
  } finally {
    await g.stop();
    await fake.stop();
  }
});

test('X-Deadline-Ms passed in flight is a 504', async () => {
  const t0 = Date.now();
  const res = await gw.chat(chatBody('slow @fake:delay_ms=3000'), { 'X-Deadline-Ms': '300' });
  assert.equal(res.status, 504, res.text);
  assert.equal(errorOf(res).code, 'deadline_exceeded');
  assert.ok(Date.now() - t0 < 2500, 'answered near the deadline, not after the provider');
});

test('a full level answers 429 with Retry-After; other levels still admit', async () => {
  // The one slot is held by a slow request; LOW holds 2.
  const blocker = gw.chat(chatBody('block @fake:delay_ms=1500'), { 'X-Priority': 'CRITICAL' });
  await waitFor('blocker in flight', async () => (await (await fetch(`${gw.url}/stats`)).json()).limiters.openrouter.in_flight === 1);
  const lows = [gw.chat(chatBody('low 1'), { 'X-Priority': 'LOW' }), gw.chat(chatBody('low 2'), { 'X-Priority': 'LOW' })];
  await waitFor('two LOW queued', async () => (await (await fetch(`${gw.url}/stats`)).json()).queues.LOW.depth === 2);
  const full = await gw.chat(chatBody('low 3'), { 'X-Priority': 'LOW' });
  assert.equal(full.status, 429, full.text);
  assert.equal(errorOf(full).code, 'queue_full');
  assert.match(full.headers.get('retry-after'), /^\d+$/);
  assert.equal(full.headers.get('x-should-retry'), null, 'a full queue may be retried');
  const high = await gw.chat(chatBody('high'), { 'X-Priority': 'HIGH' });
  assert.equal(high.status, 200);
  for (const r of [await blocker, ...(await Promise.all(lows))]) assert.equal(r.status, 200);
});

test('health, ready, models', async () => {
  const h = await (await fetch(`${gw.url}/health`)).json();
  assert.equal(h.status, 'ok');
  assert.equal(h.mode, 'normal');
  assert.equal(typeof h.uptime_s, 'number');
  const ready = await fetch(`${gw.url}/ready`);
  assert.equal(ready.status, 200);
  const models = await (await fetch(`${gw.url}/v1/models`)).json();
  assert.equal(models.object, 'list');
  assert.ok(models.data.some((m) => m.id === 'openai/gpt-4o-mini'));
});

test('demo mode without keys says so in /health and answers from the fake', async () => {
  const fake = await startFake('demo');
  const demo = await startGateway({
    providers: { openrouter: { fake, key: null }, anthropic: { fake, key: null }, openai: { fake, key: null } },
    args: ['--demo'],
  });
  try {
    const h = await (await fetch(`${demo.url}/health`)).json();
    assert.equal(h.mode, 'demo');
    await waitFor('the demo-mode log line', () => /demo mode/.test(demo.log()));
    const res = await demo.chat(chatBody('hi demo'));
    assert.equal(res.status, 200, res.text);
  } finally {
    await demo.stop();
    await fake.stop();
  }
});

test('no provider key at all: 503 with Retry-After, and /ready is 503', async () => {
  const fake = await startFake('none');
  const g = await startGateway({ providers: { openrouter: { fake, key: null } }, order: ['openrouter'] });
  try {
    const res = await g.chat(chatBody('x'));
    assert.equal(res.status, 503, res.text);
    assert.equal(errorOf(res).code, 'no_provider');
    assert.ok(res.headers.get('retry-after'));
    assert.equal((await fetch(`${g.url}/ready`)).status, 503);
  } finally {
    await g.stop();
    await fake.stop();
  }
});

test('llmgwd -t reports file:line for a bad config and exits non-zero', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmgw-t-'));
  const bad = path.join(dir, 'bad.conf');
  writeFileSync(bad, '[gateway]\nlisten = 127.0.0.1:8400\n\n[provider.openai]\nrpm = zero\n');
  const r = spawnSync(LLMGW_BIN, ['-t', '-c', bad], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr + r.stdout, new RegExp(`${bad.replace(/[.]/g, '\\.')}:5`));
  const unknown = path.join(dir, 'unknown.conf');
  writeFileSync(unknown, '[gateway]\nlisten_port = 1\n');
  const u = spawnSync(LLMGW_BIN, ['-t', '-c', unknown], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
  assert.notEqual(u.status, 0);
  assert.match(u.stderr + u.stdout, /:2:.*listen_port/);
  const good = spawnSync(LLMGW_BIN, ['-t', '-c', path.resolve('../../conf/llmgw.conf')], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
  assert.equal(good.status, 0, good.stderr);
});

test('SIGTERM with requests in flight: every one answered, exit 0', async () => {
  const fake = await startFake('openrouter');
  const g = await startGateway({ providers: { openrouter: { fake, concurrent: 2, rpm: 6000 } }, order: ['openrouter'] });
  try {
    const pending = [];
    for (let i = 0; i < 6; i++) pending.push(g.chat(chatBody(`drain ${i} @fake:delay_ms=400`)));
    await waitFor('2 in flight and 4 queued', async () => {
      const st = await (await fetch(`${g.url}/stats`)).json();
      return st.limiters.openrouter.in_flight === 2 && st.queues.MEDIUM.depth === 4;
    });
    const exited = g.stop('SIGTERM');
    const results = await Promise.all(pending);
    for (const r of results) assert.equal(r.status, 200, r.text);
    const { code } = await exited;
    assert.equal(code, 0);
    // The listener is gone: new connections are refused.
    await assert.rejects(fetch(`${g.url}/health`));
  } finally {
    await g.stop();
    await fake.stop();
  }
});

test('http_threads sets how many threads serve clients, and each answers', async () => {
  const fake = await startFake('openrouter');
  const g = await startGateway({
    providers: { openrouter: { fake, rpm: 6000 } }, order: ['openrouter'], gateway: { http_threads: 3 },
  });
  try {
    const names = readdirSync(`/proc/${g.pid}/task`).map((t) => readFileSync(`/proc/${g.pid}/task/${t}/comm`, 'utf8').trim());
    assert.equal(names.filter((n) => n === 'llmgw-http').length, 3, names.join(','));
    // Connections are spread over the threads: many at once all get answers.
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => g.chat(chatBody(`spread ${i}`))));
    for (const r of res) assert.equal(r.status, 200, r.text);
  } finally {
    await g.stop();
    await fake.stop();
  }
});
