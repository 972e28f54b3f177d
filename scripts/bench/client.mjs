// Helpers of scripts/bench.sh that neither wrk nor bin/loadgen play: free
// loopback ports, and start-to-ready timing with the idle resident set.
// Every mode is bounded in count and time, talks to 127.0.0.1 only, and
// prints one line on stdout; progress and problems go to stderr.
//
//   node client.mjs freeport [N]
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

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    o[argv[i].slice(2)] = argv[i + 1];
    i++;
  }
  return o;
}

// Nearest-rank percentile of a sorted array.
function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
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
const modes = { freeport: () => freeport(Number(rest[0] || 1)), ready: () => ready(o) };
if (!modes[mode]) {
  console.error('usage: client.mjs freeport|ready ...');
  process.exit(2);
}
modes[mode]().catch((e) => { console.error(`client ${mode}: ${e.stack || e}`); process.exit(1); });
