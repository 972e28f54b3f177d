#!/usr/bin/env python3
"""The old services/llm_helper.py API on top of llmgw, standard library only.

llm_request(), llm_cached_request(), get_llm_helper(), LLMServiceMixin and
the usage tracker's calls keep their names and arguments; underneath, each
call is one HTTP request to the gateway (urllib.request + json, no pip
package). Copy the part above "Demo" into your project as llm_helper.py.

Run the demo against a gateway (docs/migration.md explains each part):

    LLMGW_URL=http://localhost:8400 python3 python_stdlib.py [section ...]

Sections: simple cached critical services model async errors report (the
default: all of these), and budget, which needs a gateway whose conf has
[service.capped_service] budget_daily_usd = 0.000001. The demo exits 1
when a result is not what it expects.
"""

# region client
import json
import os
import time
import urllib.error
import urllib.request

LLMGW_URL = os.environ.get("LLMGW_URL", "http://localhost:8400").rstrip("/")

# Socket timeout of one call. The gateway answers 504 itself when a
# request's deadline passes (LOW: 600 s by default), so wait a bit longer.
TIMEOUT_S = 660


class LLMGatewayError(Exception):
    """An error answer of the gateway. The body has the OpenAI shape
    {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status, body, headers):
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.message = err.get("message", str(body))
        super().__init__(f"HTTP {status}: {self.message}")
        self.status = status
        self.type = err.get("type")
        self.code = err.get("code")
        self.param = err.get("param")
        retry_after = headers.get("Retry-After", "")
        # Seconds to wait before retrying: on every 429 and 503.
        self.retry_after = int(retry_after) if retry_after.isdigit() else None


def _http(method, path, body=None, headers=None):
    """One exchange with the gateway: (status, JSON body, response headers).
    An error status raises LLMGatewayError."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(LLMGW_URL + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        raise LLMGatewayError(e.code, parsed, e.headers) from None


def chat(prompt, service_name, priority="MEDIUM", cache_key=None, ttl=None,
         model="openai/gpt-4o-mini", extra_headers=None):
    """POST /v1/chat/completions with the helper's arguments as headers.
    Returns (status, body, headers): headers has X-Cache, X-Cost-USD,
    X-Provider, X-Queue-Ms and X-Request-Id."""
    headers = {"X-Service-Name": service_name, "X-Priority": priority}
    if cache_key is not None:
        headers["X-Cache-Key"] = cache_key      # else derived from the request
    if ttl is not None:
        headers["X-Cache-TTL"] = str(ttl)       # else the service's or the global TTL
    headers.update(extra_headers or {})
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    return _http("POST", "/v1/chat/completions", body, headers)


def llm_request(prompt, service_name, priority="MEDIUM", cache_key=None, ttl=None,
                model="openai/gpt-4o-mini", blocking=True):
    """The old helper's call. Returns the answer's text; with blocking=False,
    the id of a background job: wait_result(id) gives its text later.
    Raises LLMGatewayError where the old helper returned None."""
    if blocking:
        _, body, _ = chat(prompt, service_name, priority, cache_key, ttl, model)
        return body["choices"][0]["message"]["content"]
    status, body, _ = chat(prompt, service_name, priority, cache_key, ttl, model,
                           extra_headers={"X-Async": "true"})
    if status != 202:
        raise RuntimeError(f"the gateway answered X-Async: true with {status}, not 202: "
                           "this llmgw does not run requests in the background")
    return body["id"]


def wait_result(request_id, timeout_s=TIMEOUT_S, interval_s=0.2):
    """Polls GET /v1/requests/{id}: 202 while queued or running, then 200
    with the completion. A job that failed raises LLMGatewayError with the
    job's own status; an unknown or expired id raises it with 404. A 503
    async_unavailable (Redis out of reach for a moment) is waited out."""
    until = time.monotonic() + timeout_s
    while True:
        delay = interval_s
        try:
            status, body, _ = _http("GET", f"/v1/requests/{request_id}")
            if status == 200:
                return body["choices"][0]["message"]["content"]
        except LLMGatewayError as e:
            if e.code != "async_unavailable":
                raise  # the job's own error, or 404
            delay = e.retry_after or interval_s  # 503: the gateway cannot reach Redis just now
        if time.monotonic() > until:
            raise TimeoutError(f"request {request_id} not done after {timeout_s} s")
        time.sleep(delay)


def llm_cached_request(prompt, service_name, cache_key=None, ttl=None, **kwargs):
    """llm_request with an explicit cache key and TTL (seconds)."""
    return llm_request(prompt, service_name, cache_key=cache_key, ttl=ttl, **kwargs)
# endregion


# region helper
class LLMHelper:
    """What get_llm_helper() returned: one service's name and default priority."""

    def __init__(self, service_name, default_priority="MEDIUM"):
        self.service_name = service_name
        self.default_priority = default_priority

    def request(self, prompt, priority=None, **kwargs):
        return llm_request(prompt, self.service_name, priority or self.default_priority, **kwargs)

    def cached_request(self, prompt, cache_key=None, ttl=None, **kwargs):
        return self.request(prompt, cache_key=cache_key, ttl=ttl, **kwargs)

    def critical_request(self, prompt, **kwargs):
        return self.request(prompt, priority="CRITICAL", **kwargs)


def get_llm_helper(service_name, default_priority="MEDIUM"):
    return LLMHelper(service_name, default_priority)


class LLMServiceMixin:
    """The old mixin: _init_llm(), then llm_high() / llm_low()."""

    def _init_llm(self, service_name, default_priority="MEDIUM"):
        self.llm = LLMHelper(service_name, default_priority)

    def llm_high(self, prompt, **kwargs):
        return self.llm.request(prompt, priority="HIGH", **kwargs)

    def llm_low(self, prompt, **kwargs):
        return self.llm.request(prompt, priority="LOW", **kwargs)
# endregion


# region tracker
# The usage tracker: every number comes from GET /stats (the gateway's ledger).
def get_stats():
    return _http("GET", "/stats")[1]


def get_total_cost(stats=None):
    return (stats or get_stats())["totals"]["cost_usd"]


def get_service_breakdown(stats=None):
    return {name: {"cost": s["cost_usd"], "requests": s["requests"],
                   "cache_hits": s["cache_hits"], "errors": s["errors"]}
            for name, s in (stats or get_stats())["services"].items()}


def get_efficiency_metrics(stats=None):
    t = (stats or get_stats())["totals"]
    return {"overall_cache_hit_rate": t["cache_hit_rate"],
            "total_cost_saved_by_cache": t["saved_usd"],
            "error_rate": t["error_rate"],
            "avg_cost_per_request": t["avg_cost_usd"]}


def alert_on_cost_threshold(threshold_usd, stats=None):
    # Prefer budgets in the gateway's conf: they alert (log, webhook) and enforce.
    return get_total_cost(stats) >= threshold_usd


def format_report(stats=None, detailed=False):
    s = stats or get_stats()
    t, p = s["totals"], s["projection_usd"]
    lines = [f"LLM usage: {t['requests']} requests, ${t['cost_usd']:.6f}, "
             f"cache hit rate {t['cache_hit_rate']:.1%}, saved ${t['saved_usd']:.6f}, "
             f"error rate {t['error_rate']:.1%}",
             f"projected: ${p['daily']:.4f}/day, ${p['monthly']:.2f}/month"]
    if detailed:
        lines.append(f"{'service':<24}{'requests':>9}{'hits':>6}{'errors':>7}{'cost_usd':>12}")
        for name, v in s["services"].items():
            lines.append(f"{name:<24}{v['requests']:>9}{v['cache_hits']:>6}"
                         f"{v['errors']:>7}{v['cost_usd']:>12.6f}")
    return "\n".join(lines)
# endregion


# ---- Demo: each section runs one part of docs/migration.md and checks it.
import sys  # noqa: E402  (the demo's own import; the helper above needs none)


def check(ok, what):
    if not ok:
        print(f"FAILED: {what}", file=sys.stderr)
        raise SystemExit(1)


def demo_simple(run):
    # region simple
    response = llm_request(
        prompt="Analyze this stock: AAPL",
        service_name="stock_analyzer",
        priority="HIGH",
    )
    # endregion
    print("simple:", response)
    check(isinstance(response, str) and response, "simple: an answer text")


def demo_cached(run):
    # region cached
    key = f"aapl_analysis_{run}"  # your own key, e.g. "aapl_analysis_20251123"
    text = llm_cached_request(
        "Analyze AAPL",
        service_name="analyzer",
        cache_key=key,
        ttl=900,  # 15 minutes
    )
    # endregion
    print("cached: first call:", text)
    # region cached-headers
    # The same key again: answered from Redis with X-Cache: HIT and X-Cost-USD: 0.
    # The answer is stored just after it was sent, so allow a moment.
    for _ in range(50):
        status, body, headers = chat("Analyze AAPL", "analyzer", cache_key=key, ttl=900)
        if headers["X-Cache"] == "HIT":
            break
        time.sleep(0.02)
    print("cached: X-Cache", headers["X-Cache"], "X-Cost-USD", headers["X-Cost-USD"])
    # endregion
    check(headers["X-Cache"] == "HIT",
          f"cached: X-Cache HIT on a repeat (got {headers['X-Cache']}; BYPASS means Redis is down or the cache is off)")
    check(headers["X-Cost-USD"] == "0", "cached: a hit costs 0")
    check(body["choices"][0]["message"]["content"] == text, "cached: the hit has the first answer")


def demo_critical(run):
    # region critical
    class StockAnalyzer:
        def __init__(self):
            self.llm = get_llm_helper("stock_analyzer", default_priority="HIGH")

        def analyze_stock(self, symbol):
            return self.llm.cached_request(f"Analyze {symbol} for swing trading",
                                           cache_key=f"analysis_{symbol}", ttl=300)

        def validate_trade(self, trade_data):
            return self.llm.critical_request(f"Validate this trade: {trade_data}")

    analyzer = StockAnalyzer()
    analysis = analyzer.analyze_stock("AAPL")
    verdict = analyzer.validate_trade("BUY 10 AAPL @ 190")
    # endregion
    print("critical: analysis:", analysis)
    print("critical: verdict:", verdict)
    check(analysis and verdict, "critical: two answers")


def demo_services(run):
    # region services
    class MyTradingService(LLMServiceMixin):
        def __init__(self):
            super().__init__()
            self._init_llm("my_trading_service", default_priority="MEDIUM")

        def analyze_opportunity(self, data):
            return self.llm_high(f"Analyze this opportunity: {data}",
                                 cache_key=f"opp_{data['symbol']}", ttl=600)

        def get_market_sentiment(self):
            return self.llm_low("What is the current market sentiment?")

    service = MyTradingService()
    opportunity = service.analyze_opportunity({"symbol": "MSFT"})
    sentiment = service.get_market_sentiment()
    # endregion
    print("services: opportunity:", opportunity)
    print("services: sentiment:", sentiment)
    check(opportunity and sentiment, "services: two answers")


def demo_model(run):
    # region model
    # Cost-efficient (most tasks), then higher quality for a critical decision.
    summary = llm_request("Summarize today's AAPL news", "news_sentiment",
                          priority="LOW", model="openai/gpt-4o-mini")
    decision = llm_request("Should we hedge AAPL into earnings?", "trade_validator",
                           priority="CRITICAL", model="openai/gpt-4o")
    # endregion
    print("model: gpt-4o-mini:", summary)
    print("model: gpt-4o:", decision)
    check(summary and decision, "model: two answers")


def demo_async(run):
    # region async
    request_id = llm_request("Analyze market", service_name="analyzer",
                             priority="LOW", blocking=False)
    print("async: queued as", request_id)
    # ... other work; the gateway runs the job meanwhile ...
    text = wait_result(request_id)
    # endregion
    print("async: result:", text)
    check(isinstance(text, str) and text, "async: the job's answer")


def demo_errors(run):
    error = None
    # region errors
    try:
        llm_request("Analyze AAPL", "stock_analyzer", priority="URGENT")
    except LLMGatewayError as e:
        # 400 invalid_request_error: a bad header or body; fix the call, don't retry.
        print(f"errors: HTTP {e.status} {e.type}/{e.code} param={e.param}: {e.message}")
        error = e
    # endregion
    check(error is not None, "errors: a bad X-Priority was accepted")
    check(error.status == 400 and error.param == "X-Priority", "errors: 400 naming X-Priority")


def demo_budget(run):
    # region budget
    def analyze_or_fallback(prompt, service_name):
        try:
            return llm_request(prompt, service_name, priority="LOW")
        except LLMGatewayError as e:
            if e.status == 429 and e.code == "budget_exceeded":
                # The service's (or the gateway's) budget is spent until the
                # day or month ends (UTC); Retry-After says when.
                print(f"budget: HTTP {e.status} {e.code}, retry in {e.retry_after} s: {e.message}")
            elif e.status in (429, 503) and e.retry_after is not None and e.retry_after <= 30:
                # queue_full for this priority, or the gateway restarting: try again soon.
                time.sleep(e.retry_after)
                return llm_request(prompt, service_name, priority="LOW")
            elif e.status not in (502, 504):
                raise  # 400: the call itself is wrong
            # 502 every provider failed, 504 deadline passed: the old "None".
            return None

    answer = analyze_or_fallback("Summarize the news", "capped_service")
    # endregion
    check(answer is None, "budget: no answer for a service over its budget")


def demo_report(run):
    # region report
    stats = get_stats()
    print(f"Total LLM cost: ${get_total_cost(stats):.6f}")
    for service, s in get_service_breakdown(stats).items():
        print(f"{service}: ${s['cost']:.6f} ({s['requests']} requests)")
    efficiency = get_efficiency_metrics(stats)
    print(f"Cache hit rate: {efficiency['overall_cache_hit_rate']:.1%}")
    print(f"Savings: ${efficiency['total_cost_saved_by_cache']:.6f}")
    print(format_report(stats, detailed=True))
    if alert_on_cost_threshold(10.0, stats):
        print("Cost threshold exceeded!")
    # endregion
    check(stats["totals"]["requests"] > 0, "report: the ledger counted requests")


SECTIONS = {name[len("demo_"):]: fn for name, fn in globals().items() if name.startswith("demo_")}
DEFAULT = ["simple", "cached", "critical", "services", "model", "async", "errors", "report"]


def main(argv):
    run = os.urandom(4).hex()  # makes this run's cache keys new
    names = argv or DEFAULT
    unknown = [n for n in names if n not in SECTIONS]
    check(not unknown, f"unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    for name in names:
        try:
            SECTIONS[name](run)
        except (LLMGatewayError, RuntimeError, TimeoutError, OSError) as e:
            check(False, f"{name}: {e}")
    print("python_stdlib: all sections passed:", " ".join(names))


if __name__ == "__main__":
    main(sys.argv[1:])
