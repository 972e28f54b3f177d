// SIGHUP reloads the configuration without dropping a request; a broken
// file is refused with a log line and the running configuration stays.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { startFake, startGateway, chatBody, waitFor } from './lib.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

test('SIGHUP: a changed RPM changes the limiter, requests in flight are answered; a broken file keeps the old config', async () => {
  const fake = await startFake('openrouter');
  cleanup.push(() => fake.stop());
  const gw = await startGateway({ providers: { openrouter: { fake, rpm: 600, concurrent: 4 } }, order: ['openrouter'] });
  cleanup.push(() => gw.stop());
  const limiter = async () => (await (await fetch(`${gw.url}/stats`)).json()).limiters.openrouter;
  assert.equal((await limiter()).rpm, 600);

  const inflight = Array.from({ length: 8 }, (_, i) => gw.chat(chatBody(`across reload ${i} @fake:delay_ms=300`)));
  await waitFor('requests in flight', async () => (await limiter()).in_flight === 4);
  const original = readFileSync(gw.conf, 'utf8');
  writeFileSync(gw.conf, original.replace('rpm = 600', 'rpm = 1200').replace('concurrent = 4', 'concurrent = 6'));
  gw.proc.kill('SIGHUP');
  await waitFor('new limits', async () => { const l = await limiter(); return l.rpm === 1200 && l.concurrency === 6; });
  for (const r of await Promise.all(inflight)) assert.equal(r.status, 200, r.text);
  assert.match(gw.log(), /configuration reloaded/);

  writeFileSync(gw.conf, original.replace('rpm = 600', 'rpm = lots'));
  gw.proc.kill('SIGHUP');
  await waitFor('the refusal logged', async () => /reload refused/.test(gw.log()));
  assert.match(gw.log(), /reload refused.*rpm/);
  const l = await limiter();
  assert.equal(l.rpm, 1200, 'the running configuration stayed');
  const res = await gw.chat(chatBody('still serving'));
  assert.equal(res.status, 200);
});

test('SIGHUP: upstream headers follow the new configuration, calls in flight keep theirs', async () => {
  const fake = await startFake('openrouter');
  cleanup.push(() => fake.stop());
  const gw = await startGateway({ providers: { openrouter: { fake, title: 'before-reload' } }, order: ['openrouter'] });
  cleanup.push(() => gw.stop());
  const titles = async () => (await fake.requests()).map((r) => r.headers['x-title']);

  const first = await gw.chat(chatBody('one'));
  assert.equal(first.status, 200, first.text);
  const slow = gw.chat(chatBody('across the reload @fake:delay_ms=400'));
  await waitFor('the slow call upstream', async () => (await titles()).length === 2);
  writeFileSync(gw.conf, readFileSync(gw.conf, 'utf8').replace('title = before-reload', 'title = after-reload'));
  gw.proc.kill('SIGHUP');
  await waitFor('the reload', async () => /configuration reloaded/.test(gw.log()));
  const next = await gw.chat(chatBody('two'));
  assert.equal(next.status, 200, next.text);
  assert.equal((await slow).status, 200);
  assert.deepEqual(await titles(), ['before-reload', 'before-reload', 'after-reload']);
});
