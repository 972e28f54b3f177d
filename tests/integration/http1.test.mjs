// The HTTP/1.1 server under the front, spoken to on a raw socket: keep-alive,
// pipelining, chunked bodies, Expect: 100-continue, HEAD, HTTP/1.0, and
// requests it refuses (each refusal in the OpenAI error shape).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startFake, startGateway, chatBody, errorOf, waitFor } from './lib.mjs';

let fake;
let gw;
before(async () => {
  fake = await startFake('openrouter');
  gw = await startGateway({ providers: { openrouter: { fake, rpm: 6000 } }, order: ['openrouter'],
    env: { LLM_ENABLE_CACHE: 'False' } });
});
after(async () => {
  await gw?.stop();
  await fake?.stop();
});

const CHAT = JSON.stringify(chatBody('raw socket'));

// Parses whole responses off the front of buf: [{status, headers, body}], rest.
function parseResponses(buf, headOnly = new Set()) {
  const out = [];
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    let rest = buf.subarray(end + 4);
    let body;
    if (status === 100 || headOnly.has(out.length)) {
      body = Buffer.alloc(0);
    } else if (headers['transfer-encoding'] === 'chunked') {
      const parts = [];
      let p = rest;
      let done = false;
      for (;;) {
        const nl = p.indexOf('\r\n');
        if (nl < 0) break;
        const n = parseInt(p.subarray(0, nl).toString(), 16);
        if (p.length < nl + 2 + n + 2) break;
        if (n === 0) { p = p.subarray(nl + 4); done = true; break; }
        parts.push(p.subarray(nl + 2, nl + 2 + n));
        p = p.subarray(nl + 2 + n + 2);
      }
      if (!done) break;
      body = Buffer.concat(parts);
      rest = p;
    } else {
      const n = Number(headers['content-length'] ?? 0);
      if (rest.length < n) break;
      body = rest.subarray(0, n);
      rest = rest.subarray(n);
    }
    out.push({ status, headers, body: body.toString() });
    buf = rest;
  }
  return [out, buf];
}

// A raw connection: send bytes, wait for n responses (or the close).
function connect() {
  const s = net.connect(gw.port, '127.0.0.1');
  const st = { buf: Buffer.alloc(0), responses: [], closed: false, headOnly: new Set() };
  s.on('data', (d) => {
    st.buf = Buffer.concat([st.buf, d]);
    const [rs, rest] = parseResponses(st.buf, new Set([...st.headOnly].map((i) => i - st.responses.length)));
    st.responses.push(...rs);
    st.buf = rest;
  });
  s.on('close', () => { st.closed = true; });
  s.on('error', () => { st.closed = true; });
  return {
    st,
    send: (data) => s.write(data),
    responses: async (n) => {
      await waitFor(`${n} responses`, () => st.responses.length >= n || st.closed, { timeoutMs: 10000 });
      return st.responses;
    },
    closed: () => waitFor('the server to close', () => st.closed, { timeoutMs: 10000 }),
    end: () => s.destroy(),
  };
}

const post = (body, extra = '') =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

const jsonError = (r) => errorOf({ status: r.status, text: r.body, json: JSON.parse(r.body) });

test('pipelined requests are answered in order on one connection', async () => {
  const c = connect();
  c.send(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n${post(CHAT)}GET /nope HTTP/1.1\r\nHost: x\r\n\r\n`);
  const rs = await c.responses(3);
  assert.deepEqual(rs.map((r) => r.status), [200, 200, 404]);
  assert.equal(JSON.parse(rs[0].body).status, 'ok');
  assert.equal(JSON.parse(rs[1].body).object, 'chat.completion');
  assert.equal(jsonError(rs[2]).code, 'not_found');
  assert.equal(c.st.closed, false, 'kept alive');
  c.end();
});

test('a connection is kept alive across requests, and an early error keeps it', async () => {
  const c = connect();
  // 404 answered before its body is read: the body is dropped, the connection kept.
  c.send('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
  assert.equal((await c.responses(1))[0].status, 404);
  c.send(post(CHAT));
  assert.equal((await c.responses(2))[1].status, 200);
  c.send('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal((await c.responses(3))[2].status, 200);
  assert.equal(c.st.closed, false);
  c.end();
});

test('a chunked request body with extensions and a trailer is read whole', async () => {
  const c = connect();
  const a = CHAT.slice(0, 10);
  const b = CHAT.slice(10);
  c.send('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    'Transfer-Encoding: chunked\r\n\r\n' +
    `${a.length.toString(16)};ext=1\r\n${a}\r\n`);
  c.send(`${b.length.toString(16)}\r\n${b}\r\n0\r\nX-Trailer: t\r\n\r\n`);
  const [r] = await c.responses(1);
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).object, 'chat.completion');
  c.end();
});

test('Expect: 100-continue gets 100 before the body, and the answer after it', async () => {
  const c = connect();
  c.send('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${CHAT.length}\r\nExpect: 100-continue\r\n\r\n`);
  const [cont] = await c.responses(1);
  assert.equal(cont.status, 100);
  c.send(CHAT);
  const rs = await c.responses(2);
  assert.equal(rs[1].status, 200, rs[1].body);
  c.end();
});

test('Expect: 100-continue with a body over the limit: 413 at once, no 100, closed', async () => {
  const c = connect();
  c.send('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    'Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n');
  const [r] = await c.responses(1);
  assert.equal(r.status, 413);
  assert.equal(jsonError(r).code, 'body_too_large');
  assert.equal(r.headers.connection, 'close');
  await c.closed();
});

test('HEAD answers the headers of GET without the body', async () => {
  const c = connect();
  c.st.headOnly.add(0);
  c.send('HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  const rs = await c.responses(2);
  assert.equal(rs[0].status, 200);
  assert.ok(Number(rs[0].headers['content-length']) > 0);
  assert.equal(rs[0].body, '');
  assert.equal(JSON.parse(rs[1].body).status, 'ok', 'the next response starts right after the head');
  c.end();
});

test('HTTP/1.0 is answered and closed, or kept with keep-alive', async () => {
  const c = connect();
  c.send('GET /health HTTP/1.0\r\n\r\n');
  const [r] = await c.responses(1);
  assert.equal(r.status, 200);
  await c.closed();
  const k = connect();
  k.send('GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  const [r2] = await k.responses(1);
  assert.equal(r2.headers.connection, 'keep-alive');
  k.send('GET /health HTTP/1.0\r\n\r\n');
  assert.equal((await k.responses(2))[1].status, 200);
  await k.closed();
});

test('a request trickled in one byte at a time is read whole', async () => {
  const c = connect();
  const bytes = post(CHAT);
  for (const ch of bytes) {
    c.send(ch);
    await new Promise((r) => setImmediate(r));
  }
  const [r] = await c.responses(1);
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).object, 'chat.completion');
  c.end();
});

test('a large answer to a client that stops reading for a while arrives whole', async () => {
  const full = Buffer.from(await (await fetch(`${gw.url}/dashboard/chart.js`)).arrayBuffer());
  assert.ok(full.length > 100000, `chart.js is ${full.length} bytes`);
  const s = net.connect(gw.port, '127.0.0.1');
  const chunks = [];
  s.on('data', (d) => chunks.push(d));
  s.write('GET /dashboard/chart.js HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  // Stop reading once the first bytes are in: the server meets a full socket.
  await waitFor('the first bytes', () => chunks.length > 0);
  s.pause();
  await new Promise((r) => setTimeout(r, 300));
  s.resume();
  const got = () => Buffer.concat(chunks);
  await waitFor('both answers', () => parseResponses(got())[0].length === 2, { timeoutMs: 10000 });
  const [rs] = parseResponses(got());
  assert.equal(rs[0].status, 200);
  assert.equal(Number(rs[0].headers['content-length']), full.length);
  assert.ok(rs[0].body === full.toString(), 'the same bytes as a plain fetch');
  assert.equal(JSON.parse(rs[1].body).status, 'ok');
  s.destroy();
});

const refusals = [
  ['headers over 8 KiB', `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`, 431, 'headers_too_large'],
  ['a header line without a colon', 'GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'malformed_request'],
  ['a folded header line', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n', 400, 'malformed_request'],
  ['Content-Length and Transfer-Encoding together',
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'malformed_request'],
  ['two different Content-Lengths', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400, 'malformed_request'],
  ['a Content-Length that is no number', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n', 400, 'malformed_request'],
  ['a transfer coding other than chunked', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n', 501, 'not_implemented'],
  ['HTTP/2.0 on this port', 'GET /health HTTP/2.0\r\n\r\n', 505, 'http_version_not_supported'],
  ['a request line with no target', 'GET\r\n\r\n', 400, 'malformed_request'],
  ['a broken chunk size', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n', 400, null],
];

for (const [name, bytes, status, code] of refusals) {
  test(`${status} in the OpenAI error shape for ${name}, then the connection is closed`, async () => {
    const c = connect();
    c.send(bytes);
    const rs = await c.responses(1);
    assert.equal(rs.length, 1, 'an answer, not a bare close');
    assert.equal(rs[0].status, status, rs[0].body);
    const e = jsonError(rs[0]);
    if (code) assert.equal(e.code, code);
    assert.equal(rs[0].headers['content-type'], 'application/json');
    await c.closed();
  });
}

test('a client that goes away while its request waits upstream leaves the daemon serving', async () => {
  const c = connect();
  c.send(post(JSON.stringify(chatBody('slow @fake:delay_ms=300'))));
  await waitFor('the fake to see it', async () => (await fake.requests()).some((r) => JSON.stringify(r).includes('slow')));
  c.end();
  const r = await gw.chat(chatBody('after the gone client'));
  assert.equal(r.status, 200, r.text);
});

test('after all of that the ledger has booked every chat that reached the provider, the gone client\'s too', async () => {
  // Answered 200 above: pipelined 1, kept-alive 1, chunked 1, expect 1, trickled 1,
  // gone client 1 (booked when its provider answers, 300 ms after it was sent),
  // and the one after it.
  const total = async () => (await (await fetch(`${gw.url}/stats`)).json()).totals.requests;
  await waitFor('the ledger to book all seven', async () => (await total()) >= 7);
  assert.equal(await total(), 7);
});

test('with front threads of its own (http_threads = 2) the same connection handling holds', async () => {
  const g2 = await startGateway({ providers: { openrouter: { fake, rpm: 6000 } }, order: ['openrouter'],
    gateway: { http_threads: 2 }, env: { LLM_ENABLE_CACHE: 'False' } });
  const saved = gw;
  gw = g2;
  try {
    const c = connect();
    const half = CHAT.slice(0, 7);
    c.send(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n${post(CHAT)}` +
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked\r\n\r\n${half.length.toString(16)}\r\n${half}\r\n`);
    const rest = CHAT.slice(7);
    c.send(`${rest.length.toString(16)}\r\n${rest}\r\n0\r\n\r\n`);
    const rs = await c.responses(3);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200], rs.map((r) => r.body).join('\n'));
    assert.equal(JSON.parse(rs[2].body).object, 'chat.completion');
    c.send(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`);
    const r4 = (await c.responses(4))[3];
    assert.equal(r4.status, 431);
    assert.equal(jsonError(r4).code, 'headers_too_large');
    await c.closed();
  } finally {
    gw = saved;
    await g2.stop();
  }
});
