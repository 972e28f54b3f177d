#!/usr/bin/env bash
# make run: start llmgwd on 127.0.0.1:8400 (or $LLMGW_LISTEN).
# With no provider key in the environment or .env, start the bundled fake
# provider and point every provider at it (demo mode), and say so.
set -euo pipefail
cd "$(dirname "$0")/.."

conf="${LLMGW_CONFIG:-conf/llmgw.conf}"
has_key=0
for k in OPENROUTER_API_KEY ANTHROPIC_API_KEY OPENAI_API_KEY; do
	if [ -n "${!k:-}" ]; then has_key=1; fi
	if [ -f .env ] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?$k=[\"']?[^\"'[:space:]]" .env; then has_key=1; fi
done

args=(-c "$conf")
fake_pid=""
redis_pid=""
cleanup() {
	if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; fi
	if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The cache needs a Redis: when none answers at a local URL, start one
# (no persistence) for the life of this run. A remote URL is left alone.
redis_url="${LLMGW_REDIS_URL:-$(sed -n 's/^[[:space:]]*redis_url[[:space:]]*=[[:space:]]*//p' "$conf" | head -1)}"
redis_url="${redis_url:-redis://127.0.0.1:6379/0}"
hostport="${redis_url#redis://}"
hostport="${hostport%%/*}"
rhost="${hostport%%:*}"
rport="${hostport##*:}"
[ "$rport" = "$hostport" ] && rport=6379
if [ "$rhost" = 127.0.0.1 ] || [ "$rhost" = localhost ]; then
	if ! redis-cli -h "$rhost" -p "$rport" ping >/dev/null 2>&1; then
		echo "run: no Redis answers at $rhost:$rport; starting a local redis-server there for the cache."
		redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no >/dev/null &
		redis_pid=$!
		for _ in $(seq 1 50); do
			redis-cli -h "$rhost" -p "$rport" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
	fi
fi

if [ "$has_key" = 0 ]; then
	port="${LLMGW_DEMO_PORT:-8401}"
	echo "run: no provider key found (OPENROUTER_API_KEY, ANTHROPIC_API_KEY, OPENAI_API_KEY)."
	echo "run: DEMO MODE - starting the fake provider on 127.0.0.1:$port; answers are canned, not from a real LLM."
	bin/fake_provider --listen "127.0.0.1:$port" --name demo >/dev/null &
	fake_pid=$!
	export LLMGW_OPENROUTER_URL="http://127.0.0.1:$port/api/v1"
	export LLMGW_ANTHROPIC_URL="http://127.0.0.1:$port"
	export LLMGW_OPENAI_URL="http://127.0.0.1:$port/v1"
	args+=(--demo)
fi

echo "run: llmgwd ${args[*]}  (Ctrl-C to stop)"
bin/llmgwd "${args[@]}" &
gw_pid=$!
trap 'kill -TERM $gw_pid 2>/dev/null || true' INT TERM
wait "$gw_pid" || true
wait "$gw_pid" 2>/dev/null || true
