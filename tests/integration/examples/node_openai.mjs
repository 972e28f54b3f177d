// The old llm_request() calls with the official `openai` npm package
// (docs/migration.md). The file lives under tests/integration, whose
// node_modules has the package, so `import OpenAI from 'openai'` resolves:
//
//   cd tests/integration && LLMGW_URL=http://localhost:8400 node examples/node_openai.mjs [section ...]
//
// Sections: simple stream cached critical services async errors stats (the
// default: all of them), and budget, which needs a gateway whose conf has
// [service.capped_service] budget_daily_usd = 0.000001. Exits 1 when a
// result is not what it expects.
import { randomBytes } from 'node:crypto';
// region client
import OpenAI from 'openai';

const LLMGW = (process.env.LLMGW_URL || 'http://localhost:8400').replace(/\/+$/, '');

// One client per service: its name and default priority go in defaultHeaders.
const client = new OpenAI({
  baseURL: `${LLMGW}/v1`,
  apiKey: 'unused', // the gateway adds the provider's key; this one is never forwarded
  defaultHeaders: { 'X-Service-Name': 'stock_analyzer', 'X-Priority': 'HIGH' },
});
// endregion

const RUN = randomBytes(4).toString('hex'); // makes this run's cache keys new

function check(ok, what) {
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const sections = {
  async simple() {
    // region simple
    const reply = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Analyze this stock: AAPL' }],
    });
    console.log('simple:', reply.choices[0].message.content);
    // endregion
    check(reply.choices[0].message.content, 'simple: an answer text');
  },

  async stream() {
    // region stream
    const stream = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Summarize the AAPL news' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    console.log('stream:', text);
    // endregion
    check(text, 'stream: an answer text');
  },

  async cached() {
    // region cached
    const params = {
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Analyze AAPL' }],
    };
    const options = {
      headers: { 'X-Service-Name': 'analyzer', 'X-Cache-Key': `aapl_analysis_${RUN}`, 'X-Cache-TTL': '900' },
    };
    const first = await client.chat.completions.create(params, options).withResponse();
    console.log('cached: first call X-Cache', first.response.headers.get('x-cache'),
      'X-Cost-USD', first.response.headers.get('x-cost-usd'));
    // The answer is stored just after it was sent: allow a moment for the HIT.
    let again;
    for (let i = 0; i < 50; i++) {
      again = await client.chat.completions.create(params, options).withResponse();
      if (again.response.headers.get('x-cache') === 'HIT') break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    console.log('cached: repeat X-Cache', again.response.headers.get('x-cache'),
      'X-Cost-USD', again.response.headers.get('x-cost-usd'));
    // endregion
    check(first.response.headers.get('x-cache') === 'MISS', 'cached: the first call is a MISS');
    check(again.response.headers.get('x-cache') === 'HIT',
      `cached: a repeat is a HIT (got ${again.response.headers.get('x-cache')}; BYPASS means Redis is down or the cache is off)`);
    check(again.response.headers.get('x-cost-usd') === '0', 'cached: a hit costs 0');
    check(again.data.choices[0].message.content === first.data.choices[0].message.content,
      'cached: the hit has the first answer');
  },

  async critical() {
    // region critical
    // Per-request headers (the second argument) override the client's defaults.
    const verdict = await client.chat.completions.create(
      {
        model: 'openai/gpt-4o',
        messages: [{ role: 'user', content: 'Validate this trade: BUY 10 AAPL @ 190' }],
      },
      { headers: { 'X-Priority': 'CRITICAL', 'X-Service-Name': 'trade_validator', 'X-Deadline-Ms': '20000' } },
    );
    console.log('critical:', verdict.choices[0].message.content);
    // endregion
    check(verdict.choices[0].message.content, 'critical: an answer text');
  },

  async services() {
    // region services
    const llmFor = (service, priority) => new OpenAI({
      baseURL: `${LLMGW}/v1`,
      apiKey: 'unused',
      defaultHeaders: { 'X-Service-Name': service, 'X-Priority': priority },
    });
    const dexHunter = llmFor('dex_hunter', 'HIGH');
    const newsSentiment = llmFor('news_sentiment', 'LOW');
    const token = await dexHunter.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Analyze token 0xabc' }],
    });
    const mood = await newsSentiment.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'What is the current market sentiment?' }],
    });
    console.log('services:', token.choices[0].message.content, '|', mood.choices[0].message.content);
    // endregion
    check(token.choices[0].message.content && mood.choices[0].message.content, 'services: two answers');
  },

  async async() {
    // region async
    // X-Async: true answers 202 at once: {"id", "object": "async_request", "status": "queued"}.
    const { data: job, response } = await client.chat.completions.create(
      { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Analyze market' }] },
      { headers: { 'X-Async': 'true', 'X-Priority': 'LOW', 'X-Service-Name': 'analyzer' } },
    ).withResponse();
    console.log('async: HTTP', response.status, 'queued as', job.id);
    // endregion
    check(response.status === 202 && job.id,
      `async: X-Async: true answered ${response.status}, not 202 with an id: this gateway does not run requests in the background`);
    // region async-poll
    // GET /v1/requests/{id}: 202 while queued or running, then 200 with the
    // completion; a failed job throws its error (an OpenAI.APIError subclass).
    let result;
    while (!result) {
      let delayMs = 200;
      try {
        const polled = await client.get(`/requests/${job.id}`, { maxRetries: 0 }).withResponse();
        if (polled.response.status === 200) result = polled.data;
      } catch (err) {
        // 503 async_unavailable: the gateway cannot reach Redis just now.
        if (err.code !== 'async_unavailable') throw err;
        delayMs = 1000 * Number(err.headers['retry-after']);
      }
      if (!result) await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    console.log('async: result:', result.choices[0].message.content);
    // endregion
    check(result.choices[0].message.content, 'async: the job answer');
  },

  async errors() {
    let caught;
    // region errors
    try {
      await client.chat.completions.create(
        { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Analyze AAPL' }] },
        { headers: { 'X-Priority': 'URGENT' } },
      );
    } catch (err) {
      if (!(err instanceof OpenAI.BadRequestError)) throw err;
      // 400: a bad header or body; err.param names it. Fix the call, don't retry.
      console.log(`errors: ${err.status} ${err.type}/${err.code} param=${err.param}: ${err.message}`);
      caught = err;
    }
    // endregion
    check(caught, 'errors: a bad X-Priority was accepted');
    check(caught.param === 'X-Priority', 'errors: the 400 names X-Priority');
  },

  async budget() {
    let caught;
    // region budget
    try {
      await client.chat.completions.create(
        { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Summarize the news' }] },
        // The SDK retries 429 and 5xx twice by default; a spent budget stays spent.
        { headers: { 'X-Service-Name': 'capped_service', 'X-Priority': 'LOW' }, maxRetries: 0 },
      );
    } catch (err) {
      if (err instanceof OpenAI.RateLimitError) {
        // 429: code budget_exceeded (until the UTC day or month ends) or
        // queue_full (this priority level is full); Retry-After in seconds.
        console.log(`budget: ${err.status} ${err.code}, retry after ${err.headers['retry-after']} s`);
        caught = err;
      } else if (err instanceof OpenAI.InternalServerError) {
        // 502 every provider failed, 503 gateway draining, 504 deadline passed.
        console.log(`budget: ${err.status} ${err.code}: ${err.message}`);
      } else {
        throw err;
      }
    }
    // endregion
    check(caught?.code === 'budget_exceeded', 'budget: 429 budget_exceeded');
  },

  async stats() {
    // region stats
    const stats = await (await fetch(`${LLMGW}/stats`)).json();
    const t = stats.totals;
    console.log(`stats: ${t.requests} requests, $${t.cost_usd.toFixed(6)},`,
      `cache hit rate ${(t.cache_hit_rate * 100).toFixed(1)}%, saved $${t.saved_usd.toFixed(6)}`);
    for (const [service, s] of Object.entries(stats.services)) {
      console.log(`stats: ${service}: $${s.cost_usd.toFixed(6)} (${s.requests} requests)`);
    }
    // endregion
    check(t.requests > 0, 'stats: the ledger counted requests');
  },
};

const DEFAULT = ['simple', 'stream', 'cached', 'critical', 'services', 'async', 'errors', 'stats'];
const names = process.argv.slice(2).length ? process.argv.slice(2) : DEFAULT;
for (const name of names) {
  check(Object.hasOwn(sections, name), `unknown section '${name}' (known: ${Object.keys(sections).join(' ')})`);
  try {
    await sections[name]();
  } catch (err) {
    check(false, `${name}: ${err.constructor.name}: ${err.message}`);
  }
}
console.log('node_openai: all sections passed:', names.join(' '));
