// Limiter at the provider's side: requests per minute and concurrency, as
// the fake provider saw them (arrival and finish times it recorded).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, chatBody } from './lib.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

test('at 120 RPM no window holds more starts than the bucket allows, and nothing fails', async () => {
  const fake = await startFake('openrouter');
  cleanup.push(() => fake.stop());
  const gw = await startGateway({ providers: { openrouter: { fake, rpm: 120, concurrent: 50 } }, order: ['openrouter'] });
  cleanup.push(() => gw.stop());
  const n = 12;
  const res = await Promise.all(Array.from({ length: n }, (_, i) => gw.chat(chatBody(`rate ${i}`))));
  for (const r of res) assert.equal(r.status, 200, r.text);
  const t = (await fake.requests()).map((r) => r.arrival_ms).sort((a, b) => a - b);
  assert.equal(t.length, n);
  const burst = 2;            // one second's worth of 120 RPM
  const intervalMs = 500;     // 60000 / 120
  const slackMs = 30;         // loopback delivery jitter between gateway and fake
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const allowed = burst + Math.floor((t[j] - t[i] + slackMs) / intervalMs);
      assert.ok(j - i + 1 <= allowed, `${j - i + 1} starts within ${(t[j] - t[i]).toFixed(1)} ms; bucket allows ${allowed}`);
    }
  }
  // And the limiter did not starve the provider either: the whole run took about
  // (n - burst) intervals.
  const span = t[n - 1] - t[0];
  assert.ok(span >= (n - burst) * intervalMs - slackMs, `span ${span} ms`);
  assert.ok(span <= (n - burst) * intervalMs + 1000, `span ${span} ms`);
});

test('the provider never sees more than the configured concurrency', async () => {
  const fake = await startFake('openrouter');
  cleanup.push(() => fake.stop());
  const gw = await startGateway({ providers: { openrouter: { fake, rpm: 60000, concurrent: 3 } }, order: ['openrouter'] });
  cleanup.push(() => gw.stop());
  const res = await Promise.all(Array.from({ length: 15 }, (_, i) => gw.chat(chatBody(`conc ${i} @fake:delay_ms=150`))));
  for (const r of res) assert.equal(r.status, 200, r.text);
  const reqs = await fake.requests();
  const events = [];
  for (const r of reqs) {
    events.push([r.arrival_ms, 1]);
    events.push([r.finish_ms, -1]);
  }
  // Finishes sort before starts at the same instant.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0;
  let peak = 0;
  for (const [, d] of events) { cur += d; peak = Math.max(peak, cur); }
  assert.ok(peak <= 3, `peak concurrency ${peak}`);
  assert.equal(peak, 3, 'the slots were used');
});
