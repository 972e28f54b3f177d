// Async requests: submit (202 + Location), poll (202 while pending, then the
// completion), unknown id 404, errors kept with their status, a pending
// job that survives a restart of the daemon and completes, and jobs left by
// a recovery cut short.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, startRedis, chatBody, errorOf, waitFor } from './lib.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

let fake, redis, gw, opts;
before(async () => {
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  opts = {
    providers: { openrouter: { fake, rpm: 60000, concurrent: 10 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url },
    gateway: { shutdown_grace_s: '0.3' },
  };
  gw = await startGateway(opts);
  cleanup.push(() => gw.stop());
  await waitFor('redis up', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
});

const poll = (g, loc) => fetch(`${g.url}${loc}`).then(async (r) => ({ status: r.status, json: await r.json() }));

test('submit, poll while pending, then the completion', async () => {
  const t0 = Date.now();
  const res = await gw.chat(chatBody('async work @fake:delay_ms=600'), { 'X-Async': 'true', 'X-Service-Name': 'batch', 'X-Priority': 'LOW' });
  assert.ok(Date.now() - t0 < 400, 'answered at once');
  assert.equal(res.status, 202, res.text);
  assert.equal(res.json.object, 'async_request');
  assert.equal(res.json.status, 'queued');
  const loc = res.headers.get('location');
  assert.equal(loc, `/v1/requests/${res.json.id}`);
  const pending = await poll(gw, loc);
  assert.equal(pending.status, 202);
  assert.equal(pending.json.id, res.json.id);
  const done = await waitFor('the result', async () => { const p = await poll(gw, loc); return p.status === 200 ? p : null; });
  assert.equal(done.json.choices[0].message.content, 'Echo: async work');
  const s = await (await fetch(`${gw.url}/stats`)).json();
  assert.equal(s.services.batch.requests, 1, 'booked under its service');
});

test('an unknown or malformed id is a 404 in the OpenAI shape', async () => {
  for (const id of ['areq_00000000000000000000000000000000', 'nope', '../../etc']) {
    const r = await fetch(`${gw.url}/v1/requests/${id}`);
    assert.equal(r.status, 404);
    const text = await r.text();
    assert.equal(errorOf({ status: 404, text, json: JSON.parse(text) }).code, 'not_found');
  }
});

test('a failed async job keeps its error and status', async () => {
  const res = await gw.chat(chatBody('async fails @fake:status=500'), { 'X-Async': 'true' });
  assert.equal(res.status, 202);
  const done = await waitFor('the result', async () => { const p = await poll(gw, res.headers.get('location')); return p.status !== 202 ? p : null; });
  assert.equal(done.status, 502);
  assert.equal(done.json.error.type, 'upstream_error');
});

test('X-Async with stream is refused with a 400 naming the header', async () => {
  const res = await gw.chat(chatBody('x', { stream: true }), { 'X-Async': 'true' });
  assert.equal(res.status, 400);
  assert.equal(errorOf(res).param, 'X-Async');
});

test('a result finished while Redis was stalled is written once Redis is back', async () => {
  const res = await gw.chat(chatBody('finish during the stall @fake:delay_ms=700'), { 'X-Async': 'true' });
  assert.equal(res.status, 202);
  const loc = res.headers.get('location');
  await waitFor('the job reached the provider', async () => (await fake.requests()).some((r) => JSON.stringify(r.body).includes('finish during the stall')));
  redis.proc.kill('SIGSTOP');
  try {
    // The job finishes while Redis does not answer: its write must not be lost.
    await waitFor('the job answered upstream', async () => (await fake.requests()).some((r) => JSON.stringify(r.body).includes('finish during the stall') && r.finish_ms));
    await waitFor('the gateway saw Redis down', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'down', { timeoutMs: 5000 });
  } finally {
    redis.proc.kill('SIGCONT');
  }
  const done = await waitFor('the result after the stall', async () => { const p = await poll(gw, loc); return p.status === 200 ? p : null; }, { timeoutMs: 10000 });
  assert.equal(done.json.choices[0].message.content, 'Echo: finish during the stall');
});

// Restarts the gateway on its port (the instance name) in front of a new
// slow fake provider, and returns that provider.
async function restartWithSlowProvider() {
  const slow = await startFake('slow');
  cleanup.push(() => slow.stop());
  const port = gw.port;
  await gw.stop();
  gw = await startGateway({ ...opts, port, providers: { openrouter: { fake: slow, rpm: 60000 } } });
  cleanup.push(() => gw.stop());
  await waitFor('redis up', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
  return slow;
}

test('a pending job survives a restart and completes', async () => {
  // The first gateway's provider is slow for this job: it is still in flight
  // when the grace period (0.3 s) ends; the next start resumes it.
  const slow = await restartWithSlowProvider();
  const port = gw.port;
  const res = await gw.chat(chatBody('survive the restart @fake:slow.delay_ms=5000'), { 'X-Async': 'true', 'X-Service-Name': 'durable' });
  assert.equal(res.status, 202);
  const loc = res.headers.get('location');
  await waitFor('the job reached the slow provider', async () => (await slow.requests()).length === 1);
  await gw.stop();
  // Same port (the instance name), same Redis, a provider that answers at once.
  gw = await startGateway({ ...opts, port });
  cleanup.push(() => gw.stop());
  await waitFor('the resume log line', () => /resumed 1 async request/.test(gw.log()));
  const done = await waitFor('the resumed result', async () => { const p = await poll(gw, loc); return p.status === 200 ? p : null; });
  assert.equal(done.json.choices[0].message.content, 'Echo: survive the restart');
});

test('ids left by a recovery cut short are resumed with the ones owed since', async () => {
  // Two jobs stay pending across a stop. Then Redis is put in the state a
  // recovery leaves when it dies between moving the owed set aside and
  // resuming it all: A in the set being recovered, B owed again. The next
  // start must resume both.
  const slow = await restartWithSlowProvider();
  const port = gw.port;
  const locs = [];
  for (const name of ['A', 'B']) {
    const res = await gw.chat(chatBody(`left over ${name} @fake:slow.delay_ms=5000`), { 'X-Async': 'true', 'X-Service-Name': 'durable' });
    assert.equal(res.status, 202);
    locs.push(res.headers.get('location'));
  }
  await waitFor('both jobs reached the slow provider', async () => (await slow.requests()).length === 2);
  await gw.stop();
  const owed = redis.cli('KEYS', `llmgw:v1:async:pending:*:${port}`);
  assert.match(owed, /^llmgw:v1:async:pending:/, 'the stopped gateway owes its jobs in Redis');
  const ids = locs.map((l) => l.split('/').pop());
  assert.deepEqual(redis.cli('SMEMBERS', owed).split('\n').sort(), [...ids].sort());
  assert.equal(redis.cli('RENAME', owed, `${owed}:recovering`), 'OK');
  assert.equal(redis.cli('SMOVE', `${owed}:recovering`, owed, ids[1]), '1');

  gw = await startGateway({ ...opts, port });
  cleanup.push(() => gw.stop());
  await waitFor('the resume log line', () => /resumed 2 async request/.test(gw.log()));
  for (const [i, loc] of locs.entries()) {
    const done = await waitFor(`result ${i}`, async () => { const p = await poll(gw, loc); return p.status === 200 ? p : null; });
    assert.equal(done.json.choices[0].message.content, `Echo: left over ${'AB'[i]}`);
  }
  assert.equal(redis.cli('EXISTS', `${owed}:recovering`), '0');
});

test('without Redis, X-Async is a 503 with Retry-After, not a lost job', async () => {
  const g = await startGateway({ ...opts, env: { LLMGW_REDIS_URL: 'redis://127.0.0.1:1/0' } });
  cleanup.push(() => g.stop());
  const res = await g.chat(chatBody('nowhere to keep it'), { 'X-Async': 'true' });
  assert.equal(res.status, 503);
  assert.equal(errorOf(res).code, 'async_unavailable');
  assert.ok(res.headers.get('retry-after'));
});
