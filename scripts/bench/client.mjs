// Load clients of scripts/bench.sh that wrk cannot play: thousands of
// slow requests at once, a fixed request rate, and start-to-ready timing.
// Every mode is bounded in count and time, talks to 127.0.0.1 only, and
// prints one JSON line on stdout; progress and problems go to stderr.
//
//   node client.mjs freeport [N]
//   node client.mjs burst --url URL --n 5000 [--pid PID] [--timeout-ms 60000]
//   node client.mjs rate  --url URL --rps 200 --seconds 10 [--warmup-s 1]
//   node client.mjs ready --bin PATH --conf PATH --cwd DIR [--runs 10] [--idle-ms 500]
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

// Daemons started by "ready": never left behind, whatever ends this process.
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));

const BODY = (tag) => JSON.stringify({
  model: 'openai/gpt-4o-mini',
  messages: [{ role: 'user', content: `bench ${tag}: say hi` }],
});

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    o[argv[i].slice(2)] = argv[i + 1];
    i++;
  }
  return o;
}

function loopbackUrl(s) {
  const u = new URL(s);
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing non-loopback target ${s}`);
  return u;
}

// Nearest-rank percentile of a sorted array.
function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function summary(lat) {
  const s = Float64Array.from(lat).sort();
  const r = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
  return {
    n: s.length,
    p50_ms: r(pct(s, 50)), p90_ms: r(pct(s, 90)), p99_ms: r(pct(s, 99)),
    max_ms: r(s.length ? s[s.length - 1] : null), min_ms: r(s.length ? s[0] : null),
  };
}

function procSample(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const num = (k) => Number((st.match(new RegExp(`${k}:\\s+(\\d+)`)) || [0, 0])[1]);
    return { rss: num('VmRSS'), hwm: num('VmHWM'), anon: num('RssAnon'), file: num('RssFile'),
      threads: readdirSync(`/proc/${pid}/task`).length };
  } catch {
    return null;
  }
}

// One POST; resolves {status, ms, ok} and never rejects.
function post(u, agent, body, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let done = false;
    const finish = (status, ok, err) => {
      if (done) return;
      done = true;
      resolve({ status, ok, ms: performance.now() - t0, err });
    };
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
        'X-Service-Name': 'bench' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => finish(res.statusCode, res.statusCode === 200 && text.includes('"choices"')));
      res.on('error', (e) => finish(res.statusCode, false, e.code || e.message));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => finish(0, false, e.code || e.message));
    req.end(body);
  });
}

async function freeport(n) {
  const servers = [];
  const ports = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise((res, rej) => { s.once('error', rej); s.listen(0, '127.0.0.1', res); });
    servers.push(s);
    ports.push(s.address().port);
  }
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  console.log(ports.join(' '));
}

// n requests started at once on n fresh connections.
async function burst(o) {
  const u = loopbackUrl(o.url);
  const n = Number(o.n || 5000);
  const timeoutMs = Number(o['timeout-ms'] || 60000);
  const pid = o.pid ? Number(o.pid) : 0;
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  // peak: over the whole run; holding: until the first answer arrives,
  // i.e. the cost of requests waiting, before the wave of completions.
  let peak = pid ? procSample(pid) : null;
  let holding = peak ? peak.rss : null;
  let answered = 0;
  const sample = () => {
    const s = procSample(pid);
    if (!s || !peak) return;
    peak = { rss: Math.max(peak.rss, s.rss), hwm: Math.max(peak.hwm, s.hwm),
      threads: Math.max(peak.threads, s.threads) };
    if (answered === 0) holding = Math.max(holding, s.rss);
  };
  const sampler = pid ? setInterval(sample, 20) : null;
  const before = peak ? { ...peak } : null;
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: n }, (_, i) => post(u, agent, BODY(`burst ${i}`), timeoutMs)
    .then((r) => { answered++; return r; })));
  const wall = performance.now() - t0;
  if (sampler) clearInterval(sampler);
  let after = null;
  if (pid) {
    sample();
    after = procSample(pid);
  }
  const ok = res.filter((r) => r.ok);
  const statuses = {};
  for (const r of res) {
    const k = r.status ? String(r.status) : (r.err || 'error');
    statuses[k] = (statuses[k] || 0) + 1;
  }
  console.log(JSON.stringify({
    mode: 'burst', n, ok: ok.length, statuses, wall_ms: Math.round(wall),
    latency: summary(ok.map((r) => r.ms)),
    before_rss_kb: before ? before.rss : null,
    peak_rss_kb: peak ? peak.rss : null, peak_hwm_kb: peak ? peak.hwm : null,
    holding_rss_kb: holding, after_rss_kb: after ? after.rss : null,
    peak_threads: peak ? peak.threads : null,
  }));
}

// Open loop: request i is sent at start + i/rps whatever the answers do.
async function rate(o) {
  const u = loopbackUrl(o.url);
  const rps = Number(o.rps || 200);
  const seconds = Number(o.seconds || 10);
  const warm = Math.round(rps * Number(o['warmup-s'] ?? 1));
  const total = warm + Math.round(rps * seconds);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const pending = [];
  let maxLag = 0;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rps;
    const wait = due - performance.now();
    if (wait > 0.5) await new Promise((r) => setTimeout(r, wait));
    maxLag = Math.max(maxLag, performance.now() - due);
    pending.push(post(u, agent, BODY('rate'), 10000).then((r) => ({ ...r, warm: i < warm })));
  }
  const res = (await Promise.all(pending)).filter((r) => !r.warm);
  agent.destroy();
  const ok = res.filter((r) => r.ok);
  console.log(JSON.stringify({
    mode: 'rate', rps, seconds, sent: res.length, ok: ok.length,
    max_send_lag_ms: Math.round(maxLag * 10) / 10,
    latency: summary(ok.map((r) => r.ms)),
  }));
}

function health(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.setTimeout(1000, () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function freePortOne() {
  const s = net.createServer();
  await new Promise((res, rej) => { s.once('error', rej); s.listen(0, '127.0.0.1', res); });
  const { port } = s.address();
  await new Promise((res) => s.close(res));
  return port;
}

// Spawn to first 200 on /health, then the resident set after idle-ms.
async function ready(o) {
  const runs = Number(o.runs || 10);
  const idleMs = Number(o['idle-ms'] || 500);
  const readyMs = [];
  const idleKb = [];
  const idleParts = [];
  for (let i = 0; i < runs; i++) {
    const port = await freePortOne();
    const env = { ...process.env, LLMGW_LISTEN: `127.0.0.1:${port}` };
    const t0 = performance.now();
    const proc = spawn(o.bin, ['-c', o.conf], { cwd: o.cwd, env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.add(proc);
    const exited = new Promise((r) => proc.on('exit', r));
    exited.then(() => children.delete(proc));
    let gone = false;
    exited.then(() => { gone = true; });
    const until = t0 + 10000;
    let ok = false;
    while (!gone && performance.now() < until) {
      if (await health(port) === 200) { ok = true; break; }
      await new Promise((r) => setTimeout(r, 1));
    }
    const ms = performance.now() - t0;
    if (!ok) {
      proc.kill('SIGKILL');
      throw new Error(`llmgwd did not answer /health within 10 s (run ${i + 1})`);
    }
    readyMs.push(Math.round(ms * 100) / 100);
    await new Promise((r) => setTimeout(r, idleMs));
    const s = procSample(proc.pid);
    if (s) {
      idleKb.push(s.rss);
      let pss = null;
      try {
        pss = Number(readFileSync(`/proc/${proc.pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+)/m)[1]);
      } catch { /* no smaps_rollup */ }
      idleParts.push({ rss: s.rss, anon: s.anon, file: s.file, pss });
    }
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  }
  const s = Float64Array.from(readyMs).sort();
  console.log(JSON.stringify({
    mode: 'ready', runs, ready_ms: readyMs,
    ready_min_ms: s[0], ready_median_ms: pct(s, 50), ready_max_ms: s[s.length - 1],
    idle_rss_kb: idleKb, idle_rss_max_kb: Math.max(...idleKb),
    idle_at_max: idleParts.find((x) => x.rss === Math.max(...idleKb)) || null,
  }));
}

const [mode, ...rest] = process.argv.slice(2);
const o = parseArgs(rest);
// Nothing here may outlive its run: a hard stop well past every bound.
setTimeout(() => { console.error(`client ${mode}: hard time limit reached`); process.exit(3); },
  Number(o['hard-limit-ms'] || 180000)).unref();
const modes = { freeport: () => freeport(Number(rest[0] || 1)), burst: () => burst(o), rate: () => rate(o), ready: () => ready(o) };
if (!modes[mode]) {
  console.error('usage: client.mjs freeport|burst|rate|ready ...');
  process.exit(2);
}
modes[mode]().catch((e) => { console.error(`client ${mode}: ${e.stack || e}`); process.exit(1); });
