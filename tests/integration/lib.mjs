// Shared helpers of the integration tests: start the real llmgwd and fake
// provider processes on free loopback ports, wait on conditions with
// timeouts (never a bare sleep), and read what the fake provider recorded.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';

export const LLMGW_BIN = process.env.LLMGW_BIN || path.resolve('../../bin/llmgwd');
export const FAKE_BIN = process.env.FAKE_BIN || path.resolve('../../bin/fake_provider');

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export async function waitFor(what, fn, { timeoutMs = 10000, intervalMs = 20 } = {}) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function track(proc) {
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  proc.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return proc;
}

// A fake provider process. name scopes "@fake:NAME.key=value" directives.
export async function startFake(name = 'fake', extraArgs = []) {
  const proc = track(spawn(FAKE_BIN, ['--listen', '127.0.0.1:0', '--name', name, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  }));
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('fake provider did not start')), 10000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on [^\s:]+:(\d+)/);
      if (m) { clearTimeout(t); resolve(Number(m[1])); }
    });
    proc.on('exit', () => reject(new Error('fake provider exited')));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    name, port, base, proc,
    async requests() {
      const r = await fetch(`${base}/_requests`);
      return r.json();
    },
    async reset() { await fetch(`${base}/_reset`, { method: 'POST' }); },
    async stop() { proc.kill('SIGTERM'); await proc.exited; },
  };
}

// A redis-server of the test's own on a free loopback port (no persistence).
export async function startRedis(port) {
  port = port || await freePort();
  const proc = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const cli = (...args) => spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();
  await waitFor(`redis-server on ${port}`, () => cli('ping') === 'PONG');
  return {
    port, proc, cli,
    url: `redis://127.0.0.1:${port}/0`,
    async stop() { proc.kill('SIGKILL'); await proc.exited; },
  };
}

// Builds a conf file: providers maps name -> {url, rpm, concurrent, ...}.
export function confText({ providers = {}, order, queue = {}, gateway = {}, extra = '' } = {}) {
  const lines = ['[gateway]'];
  for (const [k, v] of Object.entries(gateway)) lines.push(`${k} = ${v}`);
  if (order) lines.push(`fallback_order = ${order.join(', ')}`);
  lines.push('[queue]');
  for (const [k, v] of Object.entries(queue)) lines.push(`${k} = ${v}`);
  for (const [name, p] of Object.entries(providers)) {
    lines.push(`[provider.${name}]`);
    for (const [k, v] of Object.entries(p)) if (k !== 'key') lines.push(`${k} = ${v}`);
  }
  lines.push(extra);
  return lines.join('\n') + '\n';
}

// Starts llmgwd. opts.providers: {openrouter: {fake, key, ...conf keys}}.
export async function startGateway(opts = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmgw-it-'));
  const port = opts.port || await freePort();
  const providers = {};
  const env = { PATH: process.env.PATH, LLMGW_LOG_LEVEL: opts.logLevel || 'info' };
  for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']) {
    if (process.env[k]) env[k] = process.env[k];
  }
  for (const [name, p] of Object.entries(opts.providers || {})) {
    const { fake, key, ...rest } = p;
    const urlPath = name === 'anthropic' ? '' : name === 'openrouter' ? '/api/v1' : '/v1';
    providers[name] = { url: `${fake.base}${urlPath}`, ...rest };
    if (key !== null) env[`${name.toUpperCase()}_API_KEY`] = key || `key-${name}`;
  }
  const conf = path.join(dir, 'llmgw.conf');
  writeFileSync(conf, confText({
    providers,
    order: opts.order,
    queue: opts.queue,
    gateway: { listen: `127.0.0.1:${port}`, state_dir: opts.stateDir || path.join(dir, 'state'), ...(opts.gateway || {}) },
    extra: opts.extra || '',
  }));
  Object.assign(env, opts.env || {});
  const args = ['-c', conf, ...(opts.args || [])];
  const proc = track(spawn(LLMGW_BIN, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; if (process.env.LLMGW_TEST_VERBOSE) process.stderr.write(d); });
  const url = `http://127.0.0.1:${port}`;
  const gw = {
    url, port, proc, dir, conf, pid: proc.pid, stateDir: opts.stateDir || path.join(dir, 'state'),
    log: () => log,
    threads: () => readdirSync(`/proc/${proc.pid}/task`).length,
    rssKb: () => Number(readFileSync(`/proc/${proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]),
    // Stops the daemon; a SIGTERM must end in exit 0 with no sanitizer report.
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const res = await proc.exited;
      if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(log)) {
        throw new Error(`sanitizer report from llmgwd:\n${log.slice(-4000)}`);
      }
      if (signal === 'SIGTERM' && res.code !== 0) {
        throw new Error(`llmgwd exited with ${res.code ?? res.signal} after SIGTERM:\n${log.slice(-2000)}`);
      }
      return res;
    },
    chat: (body, headers = {}) => chat(url, body, headers),
  };
  await waitFor('llmgwd /health', async () => {
    if (proc.exitCode !== null) throw new Error(`llmgwd exited: ${log}`);
    const r = await fetch(`${url}/health`);
    return r.status === 200;
  });
  return gw;
}

export function chatBody(content, extra = {}) {
  return { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }], ...extra };
}

export async function chat(url, body, headers = {}) {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

// Asserts the OpenAI error shape and returns the error object.
export function errorOf(res) {
  const e = res.json && res.json.error;
  if (!e || typeof e.message !== 'string' || typeof e.type !== 'string' || !('param' in e) || !('code' in e)) {
    throw new Error(`not an OpenAI error body (status ${res.status}): ${res.text}`);
  }
  return e;
}
