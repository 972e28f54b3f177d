// 2,000 clients held open at once by a slow provider all get their answer,
// while the daemon's thread count stays under 16.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, chatBody, waitFor } from './lib.mjs';

let fake, gw;
after(async () => { await gw?.stop(); await fake?.stop(); });

test('2000 concurrent slow requests, few threads', { timeout: 120000 }, async () => {
  fake = await startFake('openrouter');
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 100000, burst: 5000, concurrent: 5000 } },
    order: ['openrouter'],
    queue: { medium_max: 5000 },
  });
  const n = 2000;
  let maxThreads = gw.threads();
  const pending = Array.from({ length: n }, (_, i) => gw.chat(chatBody(`scale ${i} @fake:delay_ms=8000`)));
  // While they are all held open, sample the thread count.
  // Each answer takes 8 s, far longer than opening 2000 connections takes,
  // so all of them are held open at once at some moment.
  let peak = 0;
  await waitFor('all 2000 in flight at the provider', async () => {
    maxThreads = Math.max(maxThreads, gw.threads());
    const s = await (await fetch(`${gw.url}/stats`)).json();
    peak = Math.max(peak, s.limiters.openrouter.in_flight);
    return peak === n;
  }, { timeoutMs: 60000, intervalMs: 50 });
  maxThreads = Math.max(maxThreads, gw.threads());
  const res = await Promise.all(pending);
  const ok = res.filter((r) => r.status === 200).length;
  assert.equal(ok, n, `answered 200: ${ok}; first other: ${res.find((r) => r.status !== 200)?.text}`);
  assert.ok(maxThreads < 16, `threads peaked at ${maxThreads}`);
  const seen = new Set(res.map((r) => r.json.choices[0].message.content));
  assert.equal(seen.size, n, 'every client got its own answer');
});
