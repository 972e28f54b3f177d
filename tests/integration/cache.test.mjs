// The Redis cache against a real redis-server: MISS then HIT, Cache-Control,
// explicit keys, TTL, streamed answers replayed, scopes, and Redis dying and
// coming back while requests keep flowing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, startRedis, chatBody, waitFor } from './lib.mjs';

let fake, redis, gw;
const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

before(async () => {
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 60000, concurrent: 50 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url, LLM_ENABLE_CACHE: 'True' },
  });
  cleanup.push(() => gw.stop());
  await waitFor('gateway connected to redis', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
});

// How many times the fake provider saw a prompt containing marker.
async function upstreamCalls(marker) {
  return (await fake.requests()).filter((r) => JSON.stringify(r.body).includes(marker)).length;
}

test('MISS then HIT: the provider is called once, the hit costs nothing', async () => {
  const body = chatBody('cache me once');
  const a = await gw.chat(body, { 'X-Service-Name': 'svc_a' });
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('x-cache'), 'MISS');
  assert.notEqual(a.headers.get('x-cost-usd'), '0');
  const b = await waitFor('a HIT', async () => {
    const r = await gw.chat(body, { 'X-Service-Name': 'svc_b' });
    return r.headers.get('x-cache') === 'HIT' ? r : null;
  });
  assert.equal(b.status, 200);
  assert.equal(b.headers.get('x-cost-usd'), '0');
  assert.equal(b.json.choices[0].message.content, a.json.choices[0].message.content);
  assert.equal(await upstreamCalls('cache me once'), 1);
  // Transport details do not change the key: a different "user" still hits.
  const c = await gw.chat({ ...body, user: 'someone-else' });
  assert.equal(c.headers.get('x-cache'), 'HIT');
  // What determines the answer does: another temperature misses.
  const d = await gw.chat({ ...body, temperature: 0.3 });
  assert.equal(d.headers.get('x-cache'), 'MISS');
});

test('Cache-Control: no-cache skips the lookup but stores; no-store does neither', async () => {
  const first = await gw.chat(chatBody('no-cache prompt'));
  assert.equal(first.headers.get('x-cache'), 'MISS');
  await waitFor('stored', async () => (await gw.chat(chatBody('no-cache prompt'))).headers.get('x-cache') === 'HIT');
  const nc = await gw.chat(chatBody('no-cache prompt'), { 'Cache-Control': 'no-cache' });
  assert.equal(nc.headers.get('x-cache'), 'MISS');
  assert.equal(await upstreamCalls('no-cache prompt'), 2);

  const ns = await gw.chat(chatBody('no-store prompt'), { 'Cache-Control': 'no-store' });
  assert.equal(ns.headers.get('x-cache'), 'BYPASS');
  const after1 = await gw.chat(chatBody('no-store prompt'));
  assert.equal(after1.headers.get('x-cache'), 'MISS', 'a no-store answer was not stored');
});

test('an explicit X-Cache-Key shares one answer across prompts of one model', async () => {
  const a = await gw.chat(chatBody('explicit one'), { 'X-Cache-Key': 'analysis_AAPL_20251123' });
  assert.equal(a.headers.get('x-cache'), 'MISS');
  const b = await waitFor('explicit HIT', async () => {
    const r = await gw.chat(chatBody('explicit two, other words'), { 'X-Cache-Key': 'analysis_AAPL_20251123' });
    return r.headers.get('x-cache') === 'HIT' ? r : null;
  });
  assert.equal(b.json.choices[0].message.content, 'Echo: explicit one');
  const other = await gw.chat({ ...chatBody('explicit two'), model: 'openai/gpt-4o' }, { 'X-Cache-Key': 'analysis_AAPL_20251123' });
  assert.equal(other.headers.get('x-cache'), 'MISS', 'explicit keys are per model');
});

test('X-Cache-TTL: the answer expires after its TTL', async () => {
  const body = chatBody('short lived');
  await gw.chat(body, { 'X-Cache-TTL': '1' });
  // The key with a 1 s TTL, as Redis holds it (others in the db have 300 s).
  const short = await waitFor('the answer stored with TTL 1', async () => {
    const keys = redis.cli('--scan', '--pattern', 'llmgw:v1:*').split('\n').filter(Boolean);
    const found = keys.filter((k) => { const t = Number(redis.cli('pttl', k)); return t > 0 && t <= 1000; });
    return found.length ? found : null;
  });
  assert.equal(short.length, 1);
  const hit = await gw.chat(body);
  assert.equal(hit.headers.get('x-cache'), 'HIT');
  // Wait for Redis to expire it (observed in Redis, not by sleeping).
  await waitFor('expiry', async () => redis.cli('exists', short[0]) === '0', { timeoutMs: 5000 });
  const miss = await gw.chat(body);
  assert.equal(miss.headers.get('x-cache'), 'MISS');
});

test('a completed stream is stored and replayed as SSE; a plain request hits it too', async () => {
  const body = chatBody('stream into the cache', { stream: true });
  const send = async (b) => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(b) });
    return { headers: r.headers, text: await r.text() };
  };
  const text = (sse) => sse.split('\n\n').filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6))).map((c) => c.choices?.[0]?.delta?.content || '').join('');
  const first = await send(body);
  assert.equal(first.headers.get('x-cache'), 'MISS');
  const replay = await waitFor('a streamed HIT', async () => {
    const r = await send(body);
    return r.headers.get('x-cache') === 'HIT' ? r : null;
  });
  assert.equal(replay.headers.get('content-type'), 'text/event-stream');
  assert.equal(text(replay.text), text(first.text));
  assert.match(replay.text, /data: \[DONE\]\n\n$/);
  const plain = await gw.chat({ ...body, stream: false });
  assert.equal(plain.headers.get('x-cache'), 'HIT');
  assert.equal(plain.json.choices[0].message.content, 'Echo: stream into the cache');
  // A broken stream is never stored.
  await send(chatBody('broken stream @fake:cut_after=1', { stream: true }));
  const again = await send(chatBody('broken stream @fake:cut_after=1', { stream: true }));
  assert.equal(again.headers.get('x-cache'), 'MISS');
});

test('scope = service keeps two services apart', async () => {
  const g = await startGateway({
    providers: { openrouter: { fake, rpm: 60000 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url },
    extra: '[cache]\nscope = service\n',
  });
  try {
    await waitFor('redis up', async () => (await (await fetch(`${g.url}/ready`)).json()).redis === 'up');
    const body = chatBody('scoped prompt');
    await g.chat(body, { 'X-Service-Name': 'alpha' });
    await waitFor('alpha HIT', async () => (await g.chat(body, { 'X-Service-Name': 'alpha' })).headers.get('x-cache') === 'HIT');
    const beta = await g.chat(body, { 'X-Service-Name': 'beta' });
    assert.equal(beta.headers.get('x-cache'), 'MISS');
  } finally {
    await g.stop();
  }
});

test('Redis killed mid-run: answers keep coming (BYPASS); Redis back: hits resume', async () => {
  const body = chatBody('survives redis');
  await gw.chat(body);
  await waitFor('HIT before the kill', async () => (await gw.chat(body)).headers.get('x-cache') === 'HIT');
  const port = redis.port;
  await redis.stop();
  const times = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    const r = await gw.chat(chatBody(`during outage ${i}`));
    times.push(performance.now() - t0);
    assert.equal(r.status, 200, r.text);
    if (i > 0) assert.equal(r.headers.get('x-cache'), 'BYPASS');
  }
  times.sort((a, b) => a - b);
  // Each answer took a normal upstream round trip, not a Redis timeout chain.
  assert.ok(times[times.length - 2] < 200, `slowest answers during the outage: ${times.slice(-3).map((t) => t.toFixed(1))} ms`);
  assert.equal((await (await fetch(`${gw.url}/ready`)).json()).redis, 'down');
  redis = await startRedis(port);
  cleanup.push(() => redis.stop());
  const t0 = Date.now();
  await waitFor('cache back', async () => {
    await gw.chat(body);
    return (await gw.chat(body)).headers.get('x-cache') === 'HIT';
  }, { timeoutMs: 10000, intervalMs: 100 });
  assert.ok(Date.now() - t0 < 10000);
});
