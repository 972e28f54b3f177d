// The access log: one JSON line per answered request on stderr, written
// in batches by the threads that finish requests; every line must parse,
// carry the request's facts, and appear exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, chatBody, waitFor } from './lib.mjs';

let fake, gw;

before(async () => {
  fake = await startFake('openrouter');
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 600000, burst: 100000, concurrent: 1000 } },
    order: ['openrouter'],
    queue: { medium_max: 10000 },
  });
});

after(async () => {
  await gw?.stop();
  await fake?.stop();
});

// The access lines logged so far, parsed; a line that looks like one and
// does not parse fails the test.
function accessLines() {
  return gw.log().split('\n').filter((l) => l.startsWith('{"id":')).map((l) => {
    try {
      return JSON.parse(l);
    } catch (e) {
      throw new Error(`access line is not JSON: ${l}`);
    }
  });
}

async function lineFor(id) {
  let found;
  await waitFor(`access line for ${id}`, () => {
    found = accessLines().find((l) => l.id === id);
    return Boolean(found);
  });
  return found;
}

test('a line carries the request, and strange model names stay valid JSON', async () => {
  const model = 'we"ird\\mo\u0001del-é';
  const res = await gw.chat(chatBody('log me', { model }), {
    'X-Request-Id': 'log-odd-1', 'X-Service-Name': 'svc_log', 'X-Priority': 'high',
  });
  assert.equal(res.status, 200, res.text);
  const l = await lineFor('log-odd-1');
  assert.equal(l.model, model);
  assert.equal(l.service, 'svc_log');
  assert.equal(l.priority, 'HIGH');
  assert.equal(l.provider, 'openrouter');
  assert.equal(l.status, 200);
  assert.equal(l.stream, false);
  assert.equal(l.prompt_tokens, res.json.usage.prompt_tokens);
  assert.equal(l.completion_tokens, res.json.usage.completion_tokens);
  assert.match(l.cost_usd, /^\d+\.\d+$/);
  assert.ok(Number.isInteger(l.queue_ms) && Number.isInteger(l.upstream_ms));
});

test('a refused request is logged with its status', async () => {
  const res = await gw.chat(chatBody('too late @fake:openrouter.delay_ms=2000'), { 'X-Request-Id': 'log-late-1', 'X-Deadline-Ms': '200' });
  const l = await lineFor('log-late-1');
  assert.equal(l.status, res.status);
  assert.ok(l.status >= 400, `status ${l.status}`);
});

test('600 requests at once: every line once, none cut or merged', async () => {
  const n = 600;
  const ids = Array.from({ length: n }, (_, i) => `log-burst-${i}`);
  const results = await Promise.all(ids.map((id) => gw.chat(chatBody(`burst ${id}`), { 'X-Request-Id': id })));
  for (const r of results) assert.equal(r.status, 200, r.text);
  await waitFor('600 burst lines', () => accessLines().filter((l) => l.id.startsWith('log-burst-')).length >= n);
  const seen = new Map();
  for (const l of accessLines()) if (l.id.startsWith('log-burst-')) seen.set(l.id, (seen.get(l.id) || 0) + 1);
  assert.equal(seen.size, n);
  for (const id of ids) assert.equal(seen.get(id), 1, `${id} logged ${seen.get(id) || 0} times`);
});
