// Streaming and the Anthropic dialect, driven by the official OpenAI SDK
// (npm "openai") exactly as an application would use it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake, startGateway, chatBody, waitFor } from './lib.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

function sdk(gw, headers = {}) {
  return new OpenAI({
    baseURL: `${gw.url}/v1`,
    apiKey: 'client-key-never-forwarded',
    maxRetries: 0,
    defaultHeaders: { 'X-Service-Name': 'stream_test', ...headers },
  });
}

async function collect(stream) {
  let text = '';
  let usage = null;
  const times = [];
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const piece = chunk.choices?.[0]?.delta?.content;
    if (piece) { text += piece; times.push(Date.now()); }
  }
  return { text, usage, times };
}

// Raw SSE text of a streamed request (for error events and [DONE]).
async function rawStream(gw, content, headers = {}) {
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(chatBody(content, { stream: true })),
  });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

let orFake, anFake, oaFake, gw, anOnly;

before(async () => {
  orFake = await startFake('openrouter');
  anFake = await startFake('anthropic');
  oaFake = await startFake('openai');
  cleanup.push(() => orFake.stop(), () => anFake.stop(), () => oaFake.stop());
  gw = await startGateway({
    providers: {
      openrouter: { fake: orFake, rpm: 60000, concurrent: 50 },
      openai: { fake: oaFake, rpm: 60000, concurrent: 50 },
    },
    order: ['openrouter', 'openai'],
    queue: { low_max: 1 },
  });
  cleanup.push(() => gw.stop());
  anOnly = await startGateway({
    providers: { anthropic: { fake: anFake, rpm: 60000, concurrent: 50 } },
  });
  cleanup.push(() => anOnly.stop());
});

for (const [label, getGw] of [['OpenRouter', () => gw], ['Anthropic (only its key set)', () => anOnly]]) {
  test(`plain and streamed completions via ${label} give the same text`, async () => {
    const client = sdk(getGw());
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'stream me some words please' },
    ];
    const plain = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages });
    assert.equal(plain.choices[0].message.content, 'Echo: stream me some words please');
    assert.ok(plain.usage.prompt_tokens > 0 && plain.usage.completion_tokens > 0);
    const streamed = await collect(await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages, stream: true }));
    assert.equal(streamed.text, plain.choices[0].message.content);
    assert.equal(streamed.usage, null, 'no usage chunk unless asked for');
    const withUsage = await collect(await client.chat.completions.create({
      model: 'openai/gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true },
    }));
    assert.equal(withUsage.text, plain.choices[0].message.content);
    assert.deepEqual(
      { p: withUsage.usage.prompt_tokens, c: withUsage.usage.completion_tokens },
      { p: plain.usage.prompt_tokens, c: plain.usage.completion_tokens },
    );
  });

  test(`bytes reach the client as they arrive via ${label}`, async () => {
    const client = sdk(getGw());
    const t0 = Date.now();
    const s = await collect(await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'one two three four five six @fake:chunk_delay_ms=250' }],
      stream: true,
    }));
    assert.equal(s.text, 'Echo: one two three four five six');
    const first = s.times[0] - t0;
    const last = s.times[s.times.length - 1] - t0;
    assert.ok(last - first >= 1000, `first text at ${first} ms, last at ${last} ms`);
  });
}

test('the Anthropic upstream saw a translated request with the provider key', async () => {
  const reqs = await anFake.requests();
  assert.ok(reqs.length > 0);
  const r = reqs[reqs.length - 1];
  assert.equal(r.dialect, 'anthropic');
  assert.equal(r.headers['x-api-key'], 'key-anthropic');
  assert.equal(r.headers.authorization, undefined);
  assert.equal(r.body.model, 'claude-3-haiku-20240307');
  assert.ok(r.body.max_tokens > 0);
});

test('SDK error classes: invalid X-Priority is a BadRequestError, a full queue a RateLimitError', async () => {
  const bad = sdk(gw, { 'X-Priority': 'URGENT' });
  await assert.rejects(
    bad.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /X-Priority/.test(e.message),
  );
  // Fill the LOW level (bound 1) behind a blocked provider slot set: 50 slow requests.
  const low = sdk(gw, { 'X-Priority': 'LOW' });
  const hold = [];
  for (let i = 0; i < 50; i++) hold.push(sdk(gw, { 'X-Priority': 'HIGH' }).chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `hold ${i} @fake:delay_ms=800` }] }));
  await waitFor('slots full', async () => (await (await fetch(`${gw.url}/stats`)).json()).limiters.openrouter.in_flight === 50);
  const queued = low.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'queued' }] });
  await waitFor('LOW full', async () => (await (await fetch(`${gw.url}/stats`)).json()).queues.LOW.depth === 1);
  await assert.rejects(
    low.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'refused' }] }),
    (e) => e instanceof OpenAI.RateLimitError && e.status === 429,
  );
  await Promise.all([...hold, queued]);
});

test('a stream whose first provider fails before the first byte falls back', async () => {
  const client = sdk(gw);
  const { data, response } = await client.chat.completions.create({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'fall back please @fake:openrouter.stream_status=500' }],
    stream: true,
  }).withResponse();
  const s = await collect(data);
  assert.equal(response.headers.get('x-provider'), 'openai');
  assert.equal(s.text, 'Echo: fall back please');
});

test('a stream cut mid-way ends with an error event and no [DONE]; the daemon serves on', async () => {
  const r = await rawStream(gw, 'cut me off here please @fake:cut_after=2 @fake:openai.status=500');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/event-stream');
  assert.match(r.text, /^data: \{.*"chat\.completion\.chunk"/);
  assert.match(r.text, /data: \{"error":\{/);
  assert.doesNotMatch(r.text, /\[DONE\]/);
  // The openai fake was never asked: no fallback after the first byte.
  assert.ok(!(await oaFake.requests()).some((q) => JSON.stringify(q.body).includes('cut me off')));
  const ok = await rawStream(gw, 'after the cut');
  assert.match(ok.text, /data: \[DONE\]\n\n$/);
});

test('an upstream error event mid-stream reaches the client as an OpenAI error event', async () => {
  const r = await rawStream(gw, 'error mid way @fake:error_event_after=2');
  assert.equal(r.status, 200);
  assert.match(r.text, /data: \{"error":\{/);
  assert.doesNotMatch(r.text, /\[DONE\]/);
});

test('a client that disconnects mid-stream cancels the upstream transfer', async () => {
  const ac = new AbortController();
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(chatBody('a b c d e f g h i j k l m n o p @fake:chunk_delay_ms=300 @fake:leaver=1', { stream: true })),
    signal: ac.signal,
  });
  const reader = r.body.getReader();
  await reader.read();
  ac.abort();
  const find = async () => (await orFake.requests()).find((q) => JSON.stringify(q.body).includes('leaver'));
  const rec = await waitFor('the upstream transfer ended', async () => {
    const q = await find();
    return q && q.finish_ms ? q : null;
  }, { timeoutMs: 4000 });
  assert.equal(rec.outcome, 'client_closed');
  await waitFor('slot released', async () => (await (await fetch(`${gw.url}/stats`)).json()).limiters.openrouter.in_flight === 0);
});
