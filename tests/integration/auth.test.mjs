// Gateway keys: 401 without or with a wrong key, 403 for a service the key
// does not own, the right service booked, the admin key guarding the admin
// surfaces, and cached answers kept apart per key when configured so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { startFake, startGateway, startRedis, chatBody, errorOf, waitFor } from './lib.mjs';

const sha = (s) => createHash('sha256').update(s).digest('hex');
const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

let fake, redis, gw;
const admin = { Authorization: 'Bearer admin-secret' };
before(async () => {
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 60000, concurrent: 10 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url },
    extra: [
      '[cache]', 'scope = key',
      '[auth]', 'enabled = true', `admin_key_sha256 = ${sha('admin-secret')}`,
      '[key.trading]', `sha256 = ${sha('trade-key')}`, 'services = trade_validator, risk_check', 'default_service = trade_validator',
      '[key.research]', `sha256 = ${sha('research-key')}`,
    ].join('\n'),
  });
  cleanup.push(() => gw.stop());
  await waitFor('redis up', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
});

test('401 without a key or with a wrong one', async () => {
  const none = await gw.chat(chatBody('x'));
  assert.equal(none.status, 401);
  assert.equal(errorOf(none).type, 'authentication_error');
  const wrong = await gw.chat(chatBody('x'), { Authorization: 'Bearer not-a-key' });
  assert.equal(wrong.status, 401);
  assert.equal((await fake.requests()).length, 0, 'nothing reached the provider');
});

test('403 for a service the key does not own', async () => {
  const r = await gw.chat(chatBody('x'), { Authorization: 'Bearer trade-key', 'X-Service-Name': 'news_sentiment' });
  assert.equal(r.status, 403);
  const e = errorOf(r);
  assert.equal(e.type, 'permission_error');
  assert.match(e.message, /trading.*news_sentiment/);
});

test('the right service is booked: the key default, or an owned service; the SDK key is the gateway key', async () => {
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'trade-key', maxRetries: 0 });
  const a = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'booked by default' }] });
  assert.equal(a.choices[0].message.content, 'Echo: booked by default');
  const b = await gw.chat(chatBody('booked as risk'), { Authorization: 'Bearer trade-key', 'X-Service-Name': 'risk_check' });
  assert.equal(b.status, 200);
  const c = await gw.chat(chatBody('research anything'), { Authorization: 'Bearer research-key', 'X-Service-Name': 'scanner' });
  assert.equal(c.status, 200);
  const s = await (await fetch(`${gw.url}/stats`, { headers: admin })).json();
  assert.equal(s.services.trade_validator.requests, 1);
  assert.equal(s.services.risk_check.requests, 1);
  assert.equal(s.services.scanner.requests, 1);
  // The gateway key never goes upstream.
  for (const r of await fake.requests()) assert.equal(r.headers.authorization, 'Bearer key-openrouter');
});

test('admin surfaces need the admin key; health does not', async () => {
  for (const p of ['/stats', '/stats?format=csv', '/metrics']) {
    assert.equal((await fetch(`${gw.url}${p}`)).status, 401, p);
    assert.equal((await fetch(`${gw.url}${p}`, { headers: { Authorization: 'Bearer trade-key' } })).status, 401, p);
    assert.equal((await fetch(`${gw.url}${p}`, { headers: admin })).status, 200, p);
  }
  assert.equal((await fetch(`${gw.url}/health`)).status, 200);
});

test('scope = key: two keys never share a cached answer', async () => {
  const body = chatBody('per key cache');
  const t = { Authorization: 'Bearer trade-key' };
  await gw.chat(body, t);
  await waitFor('trading HIT', async () => (await gw.chat(body, t)).headers.get('x-cache') === 'HIT');
  const other = await gw.chat(body, { Authorization: 'Bearer research-key' });
  assert.equal(other.headers.get('x-cache'), 'MISS');
});
