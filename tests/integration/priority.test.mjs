// Priority: with one provider slot held by a slow blocker, LOW requests
// queued first still reach the provider after CRITICAL and HIGH ones.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startGateway, chatBody, waitFor } from './lib.mjs';

let fake, gw;
after(async () => { await gw?.stop(); await fake?.stop(); });

const stats = async () => (await fetch(`${gw.url}/stats`)).json();

test('CRITICAL and HIGH overtake LOW queued before them; FIFO within a level', async () => {
  fake = await startFake('openrouter');
  gw = await startGateway({
    providers: { openrouter: { fake, concurrent: 1, rpm: 6000 } },
    order: ['openrouter'],
    queue: { aging_ms: 600000 },
  });
  const blocker = gw.chat(chatBody('blocker @fake:delay_ms=800'), { 'X-Priority': 'LOW' });
  await waitFor('blocker at the provider', async () => (await stats()).limiters.openrouter.in_flight === 1);

  // Each call is sent once the one before it is queued: connections are
  // served by several threads, so calls sent at the same moment reach the
  // queue in no defined order, and FIFO within a level is what is tested.
  const sent = [];
  const send = async (label, prio, level) => {
    const depth = (await stats()).queues[level].depth;
    sent.push(gw.chat(chatBody(label), { 'X-Priority': prio, 'X-Service-Name': 'prio_test' }));
    await waitFor(`${label} queued`, async () => (await stats()).queues[level].depth === depth + 1);
  };
  for (let i = 1; i <= 3; i++) await send(`low-${i}`, 'LOW', 'LOW');
  await send('medium-1', 'MEDIUM', 'MEDIUM');
  await send('high-1', 'HIGH', 'HIGH');
  await send('critical-1', 'CRITICAL', 'CRITICAL');
  await send('high-2', '2', 'HIGH');

  const results = await Promise.all([blocker, ...sent]);
  for (const r of results) assert.equal(r.status, 200, r.text);

  const order = (await fake.requests())
    .map((r) => r.body.messages[0].content)
    .filter((c) => !c.startsWith('blocker'));
  assert.deepEqual(order, ['critical-1', 'high-1', 'high-2', 'medium-1', 'low-1', 'low-2', 'low-3']);
  // X-Queue-Ms shows the LOW ones waited.
  const low1 = results[1];
  assert.ok(Number(low1.headers.get('x-queue-ms')) > 0);
});

test('aging: LOW is not starved by a steady stream of HIGH', async () => {
  await gw.stop();
  gw = await startGateway({
    providers: { openrouter: { fake, concurrent: 1, rpm: 60000 } },
    order: ['openrouter'],
    queue: { aging_ms: 200 },
  });
  await fake.reset();
  const blocker = gw.chat(chatBody('blocker @fake:delay_ms=300'), { 'X-Priority': 'HIGH' });
  await waitFor('blocker at the provider', async () => (await stats()).limiters.openrouter.in_flight === 1);
  const low = gw.chat(chatBody('the-low-one'), { 'X-Priority': 'LOW' });
  await waitFor('LOW queued', async () => (await stats()).queues.LOW.depth === 1);
  // A steady stream of HIGH work arriving faster than it is served (one every
  // 40 ms, 50 ms each) keeps the HIGH queue non-empty for 2 s. Without aging,
  // LOW would run last; with 200 ms aging it climbs three levels in 600 ms
  // and overtakes the HIGH work that arrives after that.
  const highs = [];
  for (let i = 0; i < 50; i++) {
    highs.push(gw.chat(chatBody(`high-${i} @fake:delay_ms=50`), { 'X-Priority': 'HIGH' }));
    await new Promise((r) => setTimeout(r, 40));
  }
  const all = await Promise.all([blocker, low, ...highs]);
  for (const r of all) assert.equal(r.status, 200, r.text);
  const order = (await fake.requests()).map((r) => r.body.messages[0].content);
  const lowAt = order.indexOf('the-low-one');
  assert.ok(lowAt > 1 && lowAt < order.length - 10, `LOW ran at position ${lowAt} of ${order.length}`);
});
