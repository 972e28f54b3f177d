// The systemd notify protocol without systemd: llmgwd talks to a datagram
// socket of the test's own (NOTIFY_SOCKET) with a watchdog of 400 ms
// (WATCHDOG_USEC). It says READY=1 once it serves, pings WATCHDOG=1 every
// 200 ms for as long as each of its loops (workers, scheduler, Redis
// client) keeps beating, idle ones included (and /health says "ok"), and
// says STOPPING=1 on SIGTERM.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFake, startGateway, startRedis, chatBody, waitFor } from './lib.mjs';

const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

// A NOTIFY_SOCKET listener: every datagram with the time it arrived.
async function notifySink() {
  const dir = mkdtempSync(path.join(tmpdir(), 'llmgw-notify-'));
  const sock = path.join(dir, 'notify.sock');
  const proc = spawn('python3', ['-u', '-c', [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print("bound")',
    'while True:',
    '    print(s.recv(4096).decode().replace("\\n", " ").strip())',
  ].join('\n'), sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  const msgs = [];
  let buf = '';
  proc.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      msgs.push({ at: Date.now(), text: buf.slice(0, i) });
      buf = buf.slice(i + 1);
    }
  });
  cleanup.push(async () => { proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  await waitFor('the notify socket', () => msgs.some((m) => m.text === 'bound'));
  return { sock, msgs };
}

test('READY=1, then watchdog pings while every loop beats, idle or busy, then STOPPING=1', async () => {
  const sink = await notifySink();
  const fake = await startFake('openrouter');
  const redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  const gw = await startGateway({
    providers: { openrouter: { fake } },
    order: ['openrouter'],
    env: { NOTIFY_SOCKET: sink.sock, WATCHDOG_USEC: '400000', LLMGW_REDIS_URL: redis.url },
  });
  cleanup.push(() => gw.stop());
  const ready = await waitFor('READY=1', () => sink.msgs.find((m) => m.text === 'READY=1'));
  // Idle for more than three beat intervals (3 s): every loop must have
  // woken and beaten by itself, or the pings stop and this wait times out.
  const pings = (from, to) => sink.msgs.filter((m) => m.text === 'WATCHDOG=1' && m.at >= from && m.at < to).length;
  await waitFor('three pings more than 3.5 s after READY=1', () => pings(ready.at + 3500, Infinity) >= 3,
    { timeoutMs: 8000 });
  // /health, the liveness probe where there is no systemd, agrees.
  const health = await fetch(`${gw.url}/health`);
  const h = await health.json();
  assert.equal(health.status, 200, JSON.stringify(h));
  assert.equal(h.status, 'ok');
  assert.equal(h.stuck_loop, undefined);
  // Busy: calls go through, and the pings go on.
  const t0 = Date.now();
  for (let i = 0; i < 5; i++) assert.equal((await gw.chat(chatBody(`beat ${i}`))).status, 200);
  await waitFor('a ping after the calls', () => pings(t0, Infinity) >= 2);
  assert.doesNotMatch(gw.log(), /watchdog ping withheld/);
  await gw.stop();
  await waitFor('STOPPING=1', () => sink.msgs.some((m) => m.text === 'STOPPING=1'));
});
