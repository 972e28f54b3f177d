// Malformed requests: each gets the right 4xx in the OpenAI error shape,
// and the daemon serves normally afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startFake, startGateway, chatBody, errorOf } from './lib.mjs';

let fake, gw;
before(async () => {
  fake = await startFake('openrouter');
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 60000 } },
    order: ['openrouter'],
    gateway: { max_body_bytes: 4096 },
  });
});
after(async () => { await gw?.stop(); await fake?.stop(); });

const msgs = [{ role: 'user', content: 'x' }];
const J = (o) => JSON.stringify(o);
const cases = [
  // [name, method, path, body, headers, status, param-or-header]
  ['not JSON', 'POST', '/v1/chat/completions', '{"model":', {}, 400],
  ['JSON array', 'POST', '/v1/chat/completions', '[1,2]', {}, 400],
  ['JSON string', 'POST', '/v1/chat/completions', '"hi"', {}, 400],
  ['empty body', 'POST', '/v1/chat/completions', '', {}, 400],
  ['missing model', 'POST', '/v1/chat/completions', J({ messages: msgs }), {}, 400, 'model'],
  ['model not a string', 'POST', '/v1/chat/completions', J({ model: 7, messages: msgs }), {}, 400, 'model'],
  ['missing messages', 'POST', '/v1/chat/completions', J({ model: 'm' }), {}, 400, 'messages'],
  ['empty messages', 'POST', '/v1/chat/completions', J({ model: 'm', messages: [] }), {}, 400, 'messages'],
  ['messages not array', 'POST', '/v1/chat/completions', J({ model: 'm', messages: 'hi' }), {}, 400, 'messages'],
  ['message without role', 'POST', '/v1/chat/completions', J({ model: 'm', messages: [{ content: 'x' }] }), {}, 400, 'messages'],
  ['unknown role', 'POST', '/v1/chat/completions', J({ model: 'm', messages: [{ role: 'robot', content: 'x' }] }), {}, 400, 'messages'],
  ['content a number', 'POST', '/v1/chat/completions', J({ model: 'm', messages: [{ role: 'user', content: 1 }] }), {}, 400, 'messages'],
  ['stream not boolean', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs, stream: 'yes' }), {}, 400, 'stream'],
  ['temperature out of range', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs, temperature: 9 }), {}, 400, 'temperature'],
  ['max_tokens negative', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs, max_tokens: -1 }), {}, 400, 'max_tokens'],
  ['max_tokens a string', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs, max_tokens: '10' }), {}, 400, 'max_tokens'],
  ['duplicate keys', 'POST', '/v1/chat/completions', '{"model":"a","model":"b","messages":[]}', {}, 400],
  ['bad X-Priority', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Priority': 'URGENT' }, 400, 'X-Priority'],
  ['X-Priority 0', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Priority': '0' }, 400, 'X-Priority'],
  ['bad X-Service-Name', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Service-Name': 'a b/c' }, 400, 'X-Service-Name'],
  ['X-Service-Name too long', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Service-Name': 'x'.repeat(65) }, 400, 'X-Service-Name'],
  ['bad X-Deadline-Ms', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Deadline-Ms': 'soon' }, 400, 'X-Deadline-Ms'],
  ['X-Deadline-Ms zero', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Deadline-Ms': '0' }, 400, 'X-Deadline-Ms'],
  ['bad X-Cache-TTL', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Cache-TTL': 'forever' }, 400, 'X-Cache-TTL'],
  ['X-Cache-Key with blanks', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Cache-Key': 'a b' }, 400, 'X-Cache-Key'],
  ['bad X-Async', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Async': 'maybe' }, 400, 'X-Async'],
  ['bad X-Request-Id', 'POST', '/v1/chat/completions', J({ model: 'm', messages: msgs }), { 'X-Request-Id': 'a"b' }, 400, 'X-Request-Id'],
  ['body over the limit (Content-Length)', 'POST', '/v1/chat/completions', J({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] }), {}, 413],
  ['GET on chat', 'GET', '/v1/chat/completions', undefined, {}, 405],
  ['DELETE on chat', 'DELETE', '/v1/chat/completions', undefined, {}, 405],
  ['POST on health', 'POST', '/health', '{}', {}, 405],
  ['PUT on models', 'PUT', '/v1/models', '{}', {}, 405],
  ['unknown path', 'GET', '/v2/chat', undefined, {}, 404],
  ['root path', 'GET', '/', undefined, {}, 404],
  ['completions (legacy) path', 'POST', '/v1/completions', '{}', {}, 404],
];

for (const [name, method, p, body, headers, status, param] of cases) {
  test(`${status} for ${name}`, async () => {
    const r = await fetch(`${gw.url}${p}`, { method, body, headers: { 'Content-Type': 'application/json', ...headers } });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* asserted below */ }
    assert.equal(r.status, status, text);
    const e = errorOf({ status: r.status, text, json });
    if (status === 400) assert.equal(e.type, 'invalid_request_error');
    if (param) {
      assert.equal(e.param, param);
      assert.ok(e.message.includes(param.startsWith('X-') ? param : ''), e.message);
    }
    if (status === 405) assert.ok(r.headers.get('allow'));
  });
}

test('413 for a chunked body over the limit', async () => {
  // fetch with a stream body sends Transfer-Encoding: chunked (no Content-Length).
  const big = J({ model: 'm', messages: [{ role: 'user', content: 'y'.repeat(8000) }] });
  const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(big)); c.close(); } });
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', body: stream, duplex: 'half', headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 413);
  const text = await r.text();
  assert.equal(errorOf({ status: r.status, text, json: JSON.parse(text) }).code, 'body_too_large');
});

test('garbage on the socket does not hurt the daemon', async () => {
  await new Promise((resolve) => {
    const s = net.connect(gw.port, '127.0.0.1', () => {
      s.write('THIS IS NOT HTTP\r\n\r\n\x00\x01\x02');
      s.end();
    });
    s.on('close', resolve);
    s.on('error', resolve);
    s.resume();
  });
});

test('the daemon still serves after all of that, and the provider saw none of it', async () => {
  const res = await gw.chat(chatBody('still alive'));
  assert.equal(res.status, 200, res.text);
  const reqs = await fake.requests();
  assert.equal(reqs.length, 1);
});
