// The runnable examples of docs/migration.md (tests/integration/examples/):
// each runs as a child process against a real llmgwd, fake provider and
// redis-server, must exit 0 and print its key lines, and the ledger must
// have booked its service names. The code blocks of docs/migration.md
// that show an example must be the example's code, verbatim.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFake, startGateway, startRedis, waitFor, chatBody, LLMGW_BIN } from './lib.mjs';

const EXAMPLES = path.resolve('examples');
const MIGRATION = path.resolve('../../docs/migration.md');
// A service whose budget no request fits in: the "budget" sections get 429.
const CAPPED = '[service.capped_service]\nbudget_daily_usd = 0.000001\n';

let fake, redis, gw;
const cleanup = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

before(async () => {
  fake = await startFake('openrouter');
  redis = await startRedis();
  cleanup.push(() => fake.stop(), () => redis.stop());
  gw = await startGateway({
    providers: { openrouter: { fake, rpm: 60000, concurrent: 50 } },
    order: ['openrouter'],
    env: { LLMGW_REDIS_URL: redis.url, LLM_ENABLE_CACHE: 'True' },
    extra: CAPPED,
  });
  cleanup.push(() => gw.stop());
  await waitFor('gateway connected to redis', async () => (await (await fetch(`${gw.url}/ready`)).json()).redis === 'up');
});

// Runs an example; resolves {code, stdout, stderr} (a timeout kills it).
function run(cmd, args, timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: process.cwd(), // tests/integration: node_modules/openai resolves from here
      env: { ...process.env, LLMGW_URL: gw.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(t);
      reject(new Error(`cannot run ${cmd}: ${e.message}${e.code === 'ENOENT' && cmd === 'python3'
        ? ' (python3 is missing: scripts/deps.sh must install the Debian package python3)' : ''}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

function assertRan(res, what) {
  assert.equal(res.code, 0, `${what} exited ${res.code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`
    + `\n--- gateway log (last lines)\n${gw.log().split('\n').slice(-15).join('\n')}`);
}

async function services() {
  return (await (await fetch(`${gw.url}/stats`)).json()).services;
}

// Every service of want booked at least want[name] more requests in after than in before.
function assertBooked(before, after, want) {
  for (const [name, n] of Object.entries(want)) {
    const delta = (after[name]?.requests ?? 0) - (before[name]?.requests ?? 0);
    assert.ok(delta >= n, `the ledger booked ${delta} requests for service ${name}, expected at least ${n}`);
  }
}

const EXAMPLE_CMDS = {
  'curl.sh': ['bash', [path.join(EXAMPLES, 'curl.sh')]],
  'python_stdlib.py': ['python3', [path.join(EXAMPLES, 'python_stdlib.py')]],
  'node_openai.mjs': [process.execPath, [path.join(EXAMPLES, 'node_openai.mjs')]],
};

function runExample(file, sections) {
  const [cmd, args] = EXAMPLE_CMDS[file];
  return run(cmd, [...args, ...sections]);
}

test('curl.sh: plain request, cached MISS then HIT, critical, a 400, /stats CSV', async () => {
  const before = await services();
  const res = await runExample('curl.sh', ['simple', 'cached', 'critical', 'errors', 'csv']);
  assertRan(res, 'curl.sh');
  const out = res.stdout;
  assert.match(out, /^simple: HTTP 200, X-Provider openrouter, X-Queue-Ms \d+$/m);
  assert.match(out, /"content":"Echo: Analyze this stock: AAPL"/);
  assert.match(out, /^cached: HTTP 200, X-Cache MISS, X-Cost-USD 0\.\d+$/m);
  assert.match(out, /^cached: HTTP 200, X-Cache HIT, X-Cost-USD 0$/m);
  assert.match(out, /^critical: HTTP 200, X-Provider openrouter/m);
  assert.match(out, /"content":"Echo: Validate this trade: BUY 10 AAPL @ 190"/);
  assert.match(out, /^errors: HTTP 400 .*"param":"X-Priority","code":"invalid_header"/m);
  assert.match(out, /^service,requests,cache_hits,errors,prompt_tokens,completion_tokens,cost_usd,saved_usd,cache_hit_rate,error_rate,avg_cost_usd$/m);
  assert.match(out, /^stock_analyzer,\d+,/m);
  assert.match(out, /^curl\.sh: all sections passed/m);
  assertBooked(before, await services(), { stock_analyzer: 1, analyzer: 2, trade_validator: 1 });
  assert.ok((await services()).analyzer.cache_hits >= 1, 'the HIT is booked as a cache hit');
});

test('python_stdlib.py: llm_request and friends, errors, the usage report', async () => {
  const before = await services();
  const res = await runExample('python_stdlib.py',
    ['simple', 'cached', 'critical', 'services', 'model', 'errors', 'budget', 'report']);
  assertRan(res, 'python_stdlib.py');
  const out = res.stdout;
  assert.match(out, /^simple: Echo: Analyze this stock: AAPL$/m);
  assert.match(out, /^cached: first call: Echo: Analyze AAPL$/m);
  assert.match(out, /^cached: X-Cache HIT X-Cost-USD 0$/m);
  assert.match(out, /^critical: analysis: Echo: Analyze AAPL for swing trading$/m);
  assert.match(out, /^critical: verdict: Echo: Validate this trade: BUY 10 AAPL @ 190$/m);
  assert.match(out, /^services: opportunity: Echo: Analyze this opportunity: \{'symbol': 'MSFT'\}$/m);
  assert.match(out, /^services: sentiment: Echo: What is the current market sentiment\?$/m);
  assert.match(out, /^model: gpt-4o: Echo: Should we hedge AAPL into earnings\?$/m);
  assert.match(out, /^errors: HTTP 400 invalid_request_error\/invalid_header param=X-Priority: /m);
  assert.match(out, /^budget: HTTP 429 budget_exceeded, retry in \d+ s: service capped_service daily budget/m);
  assert.match(out, /^Total LLM cost: \$\d+\.\d{6}$/m);
  assert.match(out, /^stock_analyzer: \$\d+\.\d{6} \(\d+ requests\)$/m);
  assert.match(out, /^Cache hit rate: \d+\.\d%$/m);
  assert.match(out, /^Savings: \$\d+\.\d{6}$/m);
  assert.match(out, /^LLM usage: \d+ requests, \$/m);
  assert.match(out, /^my_trading_service\s+\d+\s+\d+\s+\d+\s+\d+\.\d{6}$/m);
  assert.match(out, /^python_stdlib: all sections passed/m);
  assertBooked(before, await services(), {
    stock_analyzer: 3, analyzer: 2, trade_validator: 1, my_trading_service: 2,
    news_sentiment: 1, capped_service: 1,
  });
  const st = await (await fetch(`${gw.url}/stats`)).json();
  assert.ok(st.models['openai/gpt-4o'].requests >= 1, 'the gpt-4o call is booked under its model');
  assert.ok(st.services.capped_service.errors >= 1, 'the 429 is booked as an error');
});

test('node_openai.mjs: plain, streamed, cached (withResponse), per-service clients, BadRequestError, RateLimitError', async () => {
  const before = await services();
  const res = await runExample('node_openai.mjs',
    ['simple', 'stream', 'cached', 'critical', 'services', 'errors', 'budget', 'stats']);
  assertRan(res, 'node_openai.mjs');
  const out = res.stdout;
  assert.match(out, /^simple: Echo: Analyze this stock: AAPL$/m);
  assert.match(out, /^stream: Echo: Summarize the AAPL news$/m);
  assert.match(out, /^cached: first call X-Cache MISS X-Cost-USD 0\.\d+$/m);
  assert.match(out, /^cached: repeat X-Cache HIT X-Cost-USD 0$/m);
  assert.match(out, /^critical: Echo: Validate this trade: BUY 10 AAPL @ 190$/m);
  assert.match(out, /^services: Echo: Analyze token 0xabc \| Echo: What is the current market sentiment\?$/m);
  assert.match(out, /^errors: 400 invalid_request_error\/invalid_header param=X-Priority: /m);
  assert.match(out, /^budget: 429 budget_exceeded, retry after \d+ s$/m);
  assert.match(out, /^stats: \d+ requests, \$\d+\.\d{6}, cache hit rate \d+\.\d%, saved \$/m);
  assert.match(out, /^stats: dex_hunter: \$\d+\.\d{6} \(\d+ requests\)$/m);
  assert.match(out, /^node_openai: all sections passed/m);
  assertBooked(before, await services(), {
    stock_analyzer: 2, analyzer: 2, trade_validator: 1, dex_hunter: 1, news_sentiment: 1, capped_service: 1,
  });
  // The streamed request went upstream as a stream.
  const reqs = await fake.requests();
  assert.ok(reqs.some((r) => r.stream && JSON.stringify(r.body).includes('Summarize the AAPL news')));
});

test('async (X-Async: true, then polling /v1/requests/{id}): curl, Python blocking=False, Node', async () => {
  // Says plainly when the gateway lacks the feature, rather than three opaque failures.
  // A 503 async_unavailable (Redis out of reach for a moment, under load) is retried.
  const probe = await waitFor('an X-Async answer other than 503', async () => {
    const r = await gw.chat(chatBody('async probe'), { 'X-Async': 'true', 'X-Service-Name': 'async_probe' });
    return r.status === 503 && /async_unavailable/.test(r.text) ? null : r;
  }, { timeoutMs: 20000, intervalMs: 500 });
  assert.equal(probe.status, 202,
    `POST /v1/chat/completions with X-Async: true answered ${probe.status} ${probe.text} instead of 202 `
    + '{"id","object":"async_request","status":"queued"} with Location: /v1/requests/{id} (DESIGN.md, Async requests)'
    + `${probe.status === 200 ? ': X-Async is not implemented by this llmgwd' : ''}\n--- gateway log\n${gw.log().slice(-3000)}`);
  const before = await services();
  const curl = await runExample('curl.sh', ['async']);
  assertRan(curl, 'curl.sh async');
  assert.match(curl.stdout, /^async: HTTP 202, Location \/v1\/requests\/\S+, \{.*"object":\s*"async_request"/m);
  assert.match(curl.stdout, /^async: result HTTP 200$/m);
  assert.match(curl.stdout, /"content":"Echo: Analyze market"/);
  const py = await runExample('python_stdlib.py', ['async']);
  assertRan(py, 'python_stdlib.py async');
  assert.match(py.stdout, /^async: queued as \S+$/m);
  assert.match(py.stdout, /^async: result: Echo: Analyze market$/m);
  const node = await runExample('node_openai.mjs', ['async']);
  assertRan(node, 'node_openai.mjs async');
  assert.match(node.stdout, /^async: HTTP 202 queued as \S+$/m);
  assert.match(node.stdout, /^async: result: Echo: Analyze market$/m);
  assertBooked(before, await services(), { analyzer: 3 });
});

// Regions of the example files: "# region NAME" / "// region NAME" up to
// the next "endregion", dedented.
function regions(file) {
  const out = {};
  let name = null;
  let lines = [];
  for (const line of readFileSync(path.join(EXAMPLES, file), 'utf8').split('\n')) {
    const start = line.match(/^\s*(?:#|\/\/) region (\S+)\s*$/);
    if (start) { name = start[1]; lines = []; continue; }
    if (/^\s*(?:#|\/\/) endregion\s*$/.test(line)) {
      const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)[0].length));
      out[name] = lines.map((l) => l.slice(indent)).join('\n');
      name = null;
      continue;
    }
    if (name) lines.push(line);
  }
  return out;
}

// Blocks of the doc marked <!-- example: FILE#REGION --> (or FILE alone for the whole file).
function docExamples() {
  const doc = readFileSync(MIGRATION, 'utf8');
  const re = /<!-- example: ([\w.]+)(?:#([\w-]+))? -->\n```[\w-]*\n([\s\S]*?)\n```/g;
  return [...doc.matchAll(re)].map((m) => ({ file: m[1], region: m[2], text: m[3] }));
}

test('docs/migration.md shows the examples verbatim, and every region of them', () => {
  const blocks = docExamples();
  assert.ok(blocks.length >= 20, `only ${blocks.length} example blocks found in docs/migration.md`);
  const shown = new Set();
  for (const b of blocks) {
    assert.ok(EXAMPLE_CMDS[b.file], `docs/migration.md shows an unknown example file ${b.file}`);
    const r = regions(b.file);
    assert.ok(b.region in r, `docs/migration.md shows region ${b.region} that ${b.file} does not have`);
    assert.equal(b.text, r[b.region], `docs/migration.md, ${b.file}#${b.region} differs from the file`);
    shown.add(`${b.file}#${b.region}`);
  }
  for (const file of Object.keys(EXAMPLE_CMDS)) {
    for (const region of Object.keys(regions(file))) {
      assert.ok(shown.has(`${file}#${region}`), `docs/migration.md does not show ${file}#${region}`);
    }
  }
});

test('the conf snippets of docs/migration.md pass llmgwd -t', () => {
  const doc = readFileSync(MIGRATION, 'utf8');
  const confs = [...doc.matchAll(/<!-- conf -->\n```ini\n([\s\S]*?)\n```/g)].map((m) => m[1]);
  assert.ok(confs.length >= 1, 'no <!-- conf --> block in docs/migration.md');
  const dir = mkdtempSync(path.join(tmpdir(), 'llmgw-migration-'));
  confs.forEach((text, i) => {
    const file = path.join(dir, `snippet${i}.conf`);
    writeFileSync(file, `${text}\n`);
    const r = spawnSync(LLMGW_BIN, ['-t', '-c', file], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(r.status, 0, `conf block ${i + 1} of docs/migration.md fails llmgwd -t:\n${text}\n${r.stderr}${r.stdout}`);
  });
});
