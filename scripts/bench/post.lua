-- wrk script of scripts/bench.sh: every request is the same small OpenAI
-- chat completion POST, so the same bytes go to the fake provider, nginx
-- and llmgwd (and, with the cache on, every request after the first is a
-- hit). done() prints one machine-readable line that bench.sh parses;
-- latencies are wrk's, in microseconds.

wrk.method = "POST"
wrk.body = '{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"bench: say hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Service-Name"] = "bench"

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
		"connect=%d read=%d write=%d status=%d timeout=%d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
		e.connect, e.read, e.write, e.status, e.timeout))
end
