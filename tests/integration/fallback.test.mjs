// Fallback: each failure class of the first provider sends the request to
// the next one; X-Provider names who answered; all down is a 502 naming
// every attempt; a 400 goes back as is.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, chatBody, errorOf, waitFor } from './lib.mjs';

let orFake, oaFake, gw;

before(async () => {
  orFake = await startFake('openrouter');
  oaFake = await startFake('openai');
  gw = await startGateway({
    providers: {
      openrouter: { fake: orFake, rpm: 60000, concurrent: 20 },
      openai: { fake: oaFake, rpm: 60000, concurrent: 20 },
    },
    order: ['openrouter', 'openai'],
    env: { OPENROUTER_TIMEOUT: '0.5' },
  });
});
after(async () => { await gw?.stop(); await orFake?.stop(); await oaFake?.stop(); });

const classes = [
  ['HTTP 500', '@fake:openrouter.status=500', /openrouter: HTTP 500/],
  ['HTTP 503', '@fake:openrouter.status=503', /openrouter: HTTP 503/],
  ['HTTP 529', '@fake:openrouter.status=529', /openrouter: HTTP 529/],
  ['HTTP 408', '@fake:openrouter.status=408', /openrouter: HTTP 408/],
  ['hang past the timeout', '@fake:openrouter.hang=1', /openrouter: timeout after 500 ms/],
  ['connection reset', '@fake:openrouter.reset=1', /openrouter: connection reset/],
  ['garbage body', '@fake:openrouter.garbage=1', /openrouter: unparseable body/],
];

for (const [name, directive, reason] of classes) {
  test(`falls back on ${name}`, async () => {
    const before = (await orFake.requests()).length;
    const res = await gw.chat(chatBody(`fallback ${name} ${directive}`));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-provider'), 'openai');
    // The first provider really was tried.
    await waitFor('the attempt recorded', async () => (await orFake.requests()).length === before + 1);
    // The reason is in the gateway log? It is in the 502 message when all fail:
    const all = await gw.chat(chatBody(`all fail ${name} ${directive} @fake:openai.status=500`));
    assert.equal(all.status, 502, all.text);
    const e = errorOf(all);
    assert.equal(e.type, 'upstream_error');
    assert.match(e.message, reason);
    assert.match(e.message, /openai: HTTP 500/);
  });
}

test('a 400 from the provider goes back to the client as is, without fallback', async () => {
  const before = (await oaFake.requests()).length;
  const res = await gw.chat(chatBody('bad @fake:openrouter.status=400'));
  assert.equal(res.status, 400, res.text);
  assert.equal(errorOf(res).type, 'invalid_request_error');
  assert.equal(res.headers.get('x-provider'), 'openrouter');
  assert.equal((await oaFake.requests()).length, before);
});

test('a 429 with Retry-After cools the provider down: later requests skip it', async () => {
  const res = await gw.chat(chatBody('limited @fake:openrouter.status=429 @fake:openrouter.retry_after=2'));
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get('x-provider'), 'openai');
  const stats = await (await fetch(`${gw.url}/stats`)).json();
  assert.ok(stats.limiters.openrouter.cooldown_ms > 1000, JSON.stringify(stats.limiters.openrouter));
  const before = (await orFake.requests()).length;
  const next = await gw.chat(chatBody('during cooldown'));
  assert.equal(next.status, 200);
  assert.equal(next.headers.get('x-provider'), 'openai');
  assert.equal((await orFake.requests()).length, before, 'openrouter was not called while cooling');
  // After the cooldown, openrouter is first again.
  await waitFor('cooldown over', async () => (await (await fetch(`${gw.url}/stats`)).json()).limiters.openrouter.cooldown_ms === 0, { timeoutMs: 5000 });
  const later = await gw.chat(chatBody('after cooldown'));
  assert.equal(later.headers.get('x-provider'), 'openrouter');
});

test('a single provider in cooldown: requests wait for it instead of failing', async () => {
  const fake = await startFake('openrouter');
  const g = await startGateway({ providers: { openrouter: { fake, rpm: 60000 } }, order: ['openrouter'] });
  try {
    const first = await g.chat(chatBody('x @fake:status=429 @fake:retry_after=1'));
    assert.equal(first.status, 502, first.text);
    assert.match(errorOf(first).message, /openrouter: HTTP 429/);
    const t0 = Date.now();
    const second = await g.chat(chatBody('waits'));
    assert.equal(second.status, 200, second.text);
    assert.ok(Date.now() - t0 >= 500, 'it waited for the cooldown');
  } finally {
    await g.stop();
    await fake.stop();
  }
});
