#!/usr/bin/env bash
# make bench: measure llmgwd against the fake provider and an nginx proxy
# hop, print one results table and the targets, and write
# docs/BENCHMARKS.md.
#
# Everything runs on 127.0.0.1 on free ports picked at run time: the fake
# provider (--fast), a throwaway redis-server, an nginx with a generated
# config (the reference proxy hop), bin/stack_floor twice (the cheapest
# proxy llmgwd's libraries allow, and the same behind libmicrohttpd) and
# llmgwd with limits far above the load.
# Every load run is bounded in time and count, every wait for a process
# has a timeout, and every process started here is stopped on exit.
# The exit status is non-zero only when the harness itself fails (a process
# does not start, a load tool gives no result); missed targets are printed,
# not failed.
#
# Knobs (environment): BENCH_ROUNDS (3: throughput runs are repeated and
# the median round by req/s is reported), BENCH_DURATION (s, 7),
# BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
# BENCH_NGINX_WORKERS (2), BENCH_BURST (5000), BENCH_RATE (200 req/s),
# BENCH_RATE_SECONDS (10), BENCH_HOLD_SECONDS (10: the sustained run that
# keeps BENCH_BURST requests in flight), BENCH_READY_RUNS (10), BENCH_QUIET_WAIT (s to
# wait for other work on the machine to stop, 20), BENCH_PROFILE (1 = perf
# stat and perf record of llmgwd under load), BENCH_OUT (docs/BENCHMARKS.md;
# "-" = print only), LLMGW_BINDIR (bin).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN="${LLMGW_BINDIR:-bin}"
ROUNDS="${BENCH_ROUNDS:-3}"
DUR="${BENCH_DURATION:-7}"
WARM="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
NGX_WORKERS="${BENCH_NGINX_WORKERS:-2}"
BURST_N="${BENCH_BURST:-5000}"
RATE="${BENCH_RATE:-200}"
RATE_S="${BENCH_RATE_SECONDS:-10}"
HOLD_S="${BENCH_HOLD_SECONDS:-10}"
READY_RUNS="${BENCH_READY_RUNS:-10}"
PROFILE="${BENCH_PROFILE:-1}"
QUIET_WAIT="${BENCH_QUIET_WAIT:-20}"
OUT="${BENCH_OUT:-docs/BENCHMARKS.md}"
CLIENT="$ROOT/scripts/bench/client.mjs"
LOADGEN="$ROOT/$BIN/loadgen"
LUA="$ROOT/scripts/bench/post.lua"
# llmgwd's bounds: rpm at most 6000000 (100000/s), burst at most 1000000,
# far above what this machine can push through, so runs with the cache off
# measure the gateway, not its limiter (measure_gw_nocache checks).
GW_RPM=6000000
GW_BURST=1000000
CHAT_BODY='{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"bench: say hi"}]}'

TMP=""
PIDS=()

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: FAILED: %s\n' "$*" >&2
	exit 1
}

now_ms() { date +%s%3N; }

# user + nice + system jiffies of the whole machine, and steal.
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4, $9 }' /proc/stat; }

# OWN_CPU = CPU seconds of this shell and of every child it has waited
# for (bash's times: shell user, sys, then children user, sys). Not in a
# $(...): a subshell would report its own times.
own_cpu() {
	times >"$TMP/times.txt"
	OWN_CPU=$(tr 'ms' '  ' <"$TMP/times.txt" |
		awk '{ for (i = 1; i < NF; i += 2) t += $i * 60 + $(i + 1) } END { printf "%.2f", t }')
}

# Waits up to QUIET_WAIT s for the machine to be under 10 % busy; prints
# the last busy percentage.
wait_quiet() {
	local end=$(($(now_ms) + QUIET_WAIT * 1000)) b
	while :; do
		b=$(cpu_busy)
		if [ "$b" -lt 10 ] || [ "$(now_ms)" -ge "$end" ]; then
			printf '%s' "$b"
			return 0
		fi
		log "machine ${b}% busy with other work; waiting (up to ${QUIET_WAIT}s) for it to calm down"
	done
}

# Percent of all CPUs busy over one second, whoever uses them: other work
# on the machine skews every number here, so the report states it.
cpu_busy() {
	local a b
	a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; idle = y[2] - x[2];
		printf "%.0f", ((busy + idle) > 0 ? 100 * busy / (busy + idle) : 0) }'
}

# Stops one process we started: TERM, up to 5 s, then KILL.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 250; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.02
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

# run_fg CMD...: runs CMD to completion, but as a background job that the
# shell waits for, so that INT or TERM stop the benchmark at once (bash
# runs traps only after a foreground command ends) and cleanup kills it.
run_fg() {
	local pid rc=0
	"$@" &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	stop_pid "$pid"
	return "$rc"
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		if [ "$rc" -ne 0 ]; then
			log "logs kept in $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESC TIMEOUT_S PID CMD...: poll CMD every 20 ms until it
# succeeds; fail when PID (if not empty) dies or the timeout passes.
wait_for() {
	local desc=$1 timeout=$2 pid=$3
	shift 3
	local end=$(($(now_ms) + timeout * 1000))
	while :; do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			die "$desc: process $pid exited"
		fi
		[ "$(now_ms)" -lt "$end" ] || die "$desc: not ready after ${timeout}s"
		sleep 0.02
	done
}

free_ports() { timeout 20 node "$CLIENT" freeport "$1"; }

# A JSON field of a file: jget FILE a.b.c (empty when absent).
jget() {
	node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
const v=process.argv[2].split(".").reduce((a,k)=>a==null?a:a[k],o);
console.log(v==null?"":typeof v==="object"?JSON.stringify(v):v)' "$1" "$2"
}

# awk arithmetic on up to three numbers: calc 'EXPR of a, b, c' A B C
calc() {
	local expr=$1
	shift
	awk -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" "BEGIN { printf \"%s\", ($expr) }"
}

# ---------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------

# start_fake TAG ARGS... -> FAKE_PID, FAKE_PORT
start_fake() {
	local tag=$1
	shift
	local out="$TMP/fake-$tag.out"
	"$ROOT/$BIN/fake_provider" --listen 127.0.0.1:0 --name openrouter "$@" >"$out" 2>&1 &
	FAKE_PID=$!
	PIDS+=("$FAKE_PID")
	wait_for "fake provider ($tag)" 10 "$FAKE_PID" grep -q 'listening on' "$out"
	FAKE_PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$out" | head -1)
	[ -n "$FAKE_PORT" ] || die "fake provider ($tag): no port in: $(cat "$out")"
}

# utime + stime of a process, in clock ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# -> REDIS_PID, REDIS_PORT
start_redis() {
	REDIS_PORT=$(free_ports 1)
	mkdir -p "$TMP/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--daemonize no --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	wait_for "redis-server" 10 "$REDIS_PID" redis_ping "$REDIS_PORT"
}

http_200() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@")" = 200 ]
}

post_200() {
	http_200 -H 'Content-Type: application/json' --data-binary "$CHAT_BODY" "$1"
}

# start_nginx UPSTREAM_PORT -> NGX_PID, NGX_PORT. With more than one
# worker nginx runs a master (in the foreground); TERM to it stops all.
start_nginx() {
	local up=$1 dir="$TMP/nginx" master=on
	NGX_PORT=$(free_ports 1)
	mkdir -p "$dir"
	[ "$NGX_WORKERS" -gt 1 ] || master=off
	cat >"$dir/nginx.conf" <<EOF
# Generated by scripts/bench.sh: the reference proxy hop.
daemon off;
master_process $master;
worker_processes $NGX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 20000; }
http {
	access_log off;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	keepalive_requests 1000000;
	upstream fake {
		server 127.0.0.1:$up;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$NGX_PORT;
		location / {
			proxy_pass http://fake;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
	nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
	NGX_PID=$!
	PIDS+=("$NGX_PID")
	wait_for "nginx" 10 "$NGX_PID" post_200 "http://127.0.0.1:$NGX_PORT/api/v1/chat/completions"
}

# The processes that serve nginx's requests: its workers, or itself.
nginx_pids() {
	local kids
	kids=$(pgrep -P "$NGX_PID" | paste -sd, -)
	printf '%s' "${kids:-$NGX_PID}"
}

# start_floor TAG UPSTREAM_PORT FRONT -> FL_PID, FL_PORT: bin/stack_floor
# with libcurl multi in one worker per core and nothing between it and the
# client but FRONT: raw (an epoll reader in each worker thread, as llmgwd's
# own front runs: the cheapest proxy its libraries allow) or mhd
# (libmicrohttpd with two threads, llmgwd's front until it got its own).
start_floor() {
	local tag=$1 up=$2 front=$3
	FL_PORT=$(free_ports 1)
	"$ROOT/$BIN/stack_floor" --listen "$FL_PORT" --front "$front" \
		--upstream "http://127.0.0.1:$up/api/v1/chat/completions" >"$TMP/floor-$tag.log" 2>&1 &
	FL_PID=$!
	PIDS+=("$FL_PID")
	wait_for "stack_floor ($tag)" 10 "$FL_PID" post_200 "$(floor_url "$FL_PORT")"
}

floor_url() { printf 'http://127.0.0.1:%s/v1/chat/completions' "$1"; }

# write_gw_conf DIR UPSTREAM_PORT LISTEN_PORT: limits far above the load,
# so what is measured is the gateway, not its limiter or queue bounds.
write_gw_conf() {
	cat >"$1/llmgw.conf" <<EOF
# Generated by scripts/bench.sh.
[gateway]
listen = 127.0.0.1:$3
state_dir = $1/state
fallback_order = openrouter
max_connections = 20000
[queue]
critical_max = 1000000
high_max = 1000000
medium_max = 1000000
low_max = 1000000
[provider.openrouter]
url = http://127.0.0.1:$2/api/v1
rpm = $GW_RPM
burst = $GW_BURST
concurrent = 10000
timeout_s = 60
EOF
}

# start_gw TAG UPSTREAM_PORT CACHE(True|False) -> GW_PID, GW_PORT, GW_DIR.
# A clean environment (no provider keys or .env of the caller), the cache
# switched by LLM_ENABLE_CACHE and pointed at our Redis by LLMGW_REDIS_URL.
# The access log (one line per request on stderr) goes to a file.
start_gw() {
	local tag=$1 up=$2 cache=$3
	GW_DIR="$TMP/gw-$tag"
	GW_PORT=$(free_ports 1)
	mkdir -p "$GW_DIR"
	write_gw_conf "$GW_DIR" "$up" "$GW_PORT"
	(cd "$GW_DIR" && exec env -i PATH="$PATH" OPENROUTER_API_KEY=bench-placeholder-key \
		LLMGW_LOG_LEVEL=warn LLM_ENABLE_CACHE="$cache" \
		LLMGW_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0" \
		"$ROOT/$BIN/llmgwd" -c "$GW_DIR/llmgw.conf") >"$GW_DIR/llmgwd.log" 2>&1 &
	GW_PID=$!
	PIDS+=("$GW_PID")
	wait_for "llmgwd ($tag)" 10 "$GW_PID" http_200 "http://127.0.0.1:$GW_PORT/health"
}

gw_url() { printf 'http://127.0.0.1:%s/v1/chat/completions' "$GW_PORT"; }

gw_tokens() {
	curl -s --max-time 2 "http://127.0.0.1:$GW_PORT/stats" >"$TMP/stats.json" 2>/dev/null || return 0
	jget "$TMP/stats.json" limiters.openrouter.tokens 2>/dev/null || true
}

# ---------------------------------------------------------------------
# wrk runs
# ---------------------------------------------------------------------

WRK_T=$THREADS
WRK_C=$CONNS

# run_wrk NAME URL SECONDS [--latency]: sets R_* from the BENCH line that
# post.lua's done() prints.
run_wrk() {
	local name=$1 url=$2 secs=$3 lat=${4:-} out="$TMP/wrk-$1.txt" line
	log "wrk -t$WRK_T -c$WRK_C -d${secs}s $lat $url"
	run_fg timeout $((secs + 30)) wrk -t"$WRK_T" -c"$WRK_C" -d"${secs}s" $lat -s "$LUA" "$url" >"$out" 2>&1 ||
		die "wrk ($name) failed: $(tail -5 "$out")"
	line=$(grep '^BENCH ' "$out" | tail -1)
	[ -n "$line" ] || die "wrk ($name) printed no result: $(tail -5 "$out")"
	R_requests=$(sed 's/.* requests=\([0-9]*\).*/\1/' <<<"$line")
	R_duration=$(sed 's/.* duration_us=\([0-9]*\).*/\1/' <<<"$line")
	R_p50=$(sed 's/.* p50_us=\([0-9]*\).*/\1/' <<<"$line")
	R_p99=$(sed 's/.* p99_us=\([0-9]*\).*/\1/' <<<"$line")
	R_errors=$(awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^(connect|read|write|status|timeout)=/) { split($i, kv, "="); n += kv[2] } print n }' <<<"$line")
	[ "$R_requests" -gt 0 ] || die "wrk ($name) completed no request"
	R_rps=$(calc 'a / (b / 1e6)' "$R_requests" "$R_duration")
}

# measure KEY LABEL URL [SECONDS] [WARMUP]: a warm-up, then the measured
# run; appends "rps p50_ms p99_ms errors seconds" to $TMP/res-KEY.
measure() {
	local key=$1 label=$2 url=$3 secs=${4:-$DUR} warm=${5:-$WARM}
	if [ "$warm" -gt 0 ]; then run_wrk "$key-warmup" "$url" "$warm"; fi
	run_wrk "$key" "$url" "$secs" --latency
	printf '%s %s %s %s %s\n' "$R_rps" "$(calc 'a / 1000' "$R_p50")" "$(calc 'a / 1000' "$R_p99")" \
		"$R_errors" "$secs" >>"$TMP/res-$key"
	log "$label: $(printf '%.0f' "$R_rps") req/s, p50 $(calc 'a / 1000' "$R_p50") ms, p99 $(calc 'a / 1000' "$R_p99") ms, errors $R_errors"
}

# pick KEY: the median round by req/s into RPS P50 P99 ERRS SECS, and the
# min-max of req/s over the rounds into SPREAD.
declare -A RPS P50 P99 ERRS SECS SPREAD NOTE
pick() {
	local key=$1 f="$TMP/res-$1" n line
	[ -s "$f" ] || return 0
	n=$(wc -l <"$f")
	line=$(sort -g -k1,1 "$f" | sed -n "$(((n + 1) / 2))p")
	read -r RPS[$key] P50[$key] P99[$key] ERRS[$key] SECS[$key] <<<"$line"
	SPREAD[$key]="$(sort -g -k1,1 "$f" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f–%.0f", lo, hi }')"
}

# Run (c): llmgwd with the cache off. Its token bucket (GW_BURST) drains
# only if the rate passes GW_RPM / 60, so after a 1 s warm-up the measured
# run is cut to what the bucket still holds at 1.3 times the fastest rate
# seen so far, less 10 % (DUR when it holds more). A round that still
# empties the bucket measured the limiter, not the gateway: it is set aside
# (res-KEY.dry) and counted.
C_MAXRATE=0
C_DRY=0
measure_gw_nocache() {
	local key=$1 label=$2 url tokens rate secs refill
	url=$(gw_url)
	refill=$(calc 'a / 60' "$GW_RPM")
	run_wrk "$key-warmup" "$url" 1
	C_MAXRATE=$(calc 'a > b ? a : b' "$C_MAXRATE" "$R_rps")
	rate=$(calc 'a * 1.3' "$C_MAXRATE")
	tokens=$(gw_tokens)
	tokens=${tokens:-$GW_BURST}
	secs=$(calc 'int(0.9 * a / ((b - c) > 1 ? (b - c) : 1))' "$tokens" "$rate" "$refill")
	if [ "$secs" -gt "$DUR" ]; then secs=$DUR; fi
	if [ "$secs" -lt 1 ]; then secs=1; fi
	measure "$key" "$label" "$url" "$secs" 0
	C_MAXRATE=$(calc 'a > b ? a : b' "$C_MAXRATE" "$R_rps")
	tokens=$(gw_tokens)
	if [ -n "$tokens" ] && [ "$(calc 'a < 1000 ? 1 : 0' "$tokens")" = 1 ]; then
		C_DRY=$((C_DRY + 1))
		tail -1 "$TMP/res-$key" >>"$TMP/res-$key.dry"
		sed -i '$d' "$TMP/res-$key"
		log "warning: ($key) the rpm bucket ran dry ($(printf '%.0f' "$tokens") tokens left): round set aside"
	fi
}

# Is the cache wired? Send the wrk body until an answer says X-Cache: HIT.
cache_hits() {
	local end
	end=$(($(now_ms) + 3000))
	while [ "$(now_ms)" -lt "$end" ]; do
		if curl -s -o /dev/null -D - --max-time 2 -H 'Content-Type: application/json' \
			-H 'X-Service-Name: bench' --data-binary "$CHAT_BODY" "$(gw_url)" |
			grep -qi '^x-cache: *hit'; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# cpu_cost TAG PIDS URL: perf stat of PIDS while wrk drives URL for 4 s;
# prints "cpu_us_per_req syscalls_per_req ctxsw_per_req" (syscalls "-"
# when the tracepoint is not available).
cpu_cost() {
	local tag=$1 pids=$2 url=$3 out="$TMP/perfstat-$1.txt" wpid reqs clock sys cs
	timeout 40 wrk -t"$THREADS" -c"$CONNS" -d5s -s "$LUA" "$url" >"$TMP/wrk-cost-$tag.txt" 2>&1 &
	wpid=$!
	PIDS+=("$wpid")
	if ! run_fg timeout 20 perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pids" \
		-o "$out" -- sleep 4 >/dev/null 2>&1; then
		run_fg timeout 20 perf stat -x, -e task-clock,context-switches -p "$pids" -o "$out" -- sleep 4 \
			>/dev/null 2>&1 || true
	fi
	wait "$wpid" 2>/dev/null || true
	stop_pid "$wpid"
	reqs=$(sed -n 's/^BENCH requests=\([0-9]*\) duration_us=\([0-9]*\).*/\1 \2/p' "$TMP/wrk-cost-$tag.txt")
	[ -n "$reqs" ] || { printf -- '- - -'; return 0; }
	# Requests inside the 4 s window: wrk's rate times 4 s.
	reqs=$(calc 'a / (b / 1e6) * 4' $reqs)
	clock=$(awk -F, '$3 == "task-clock" { print $1 }' "$out" 2>/dev/null)
	cs=$(awk -F, '$3 == "context-switches" { print $1 }' "$out" 2>/dev/null)
	sys=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$out" 2>/dev/null)
	printf '%s %s %s' \
		"$([ -n "$clock" ] && calc 'sprintf("%.1f", a * 1000 / b)' "$clock" "$reqs" || printf -)" \
		"$([ -n "$sys" ] && calc 'sprintf("%.1f", a / b)' "$sys" "$reqs" || printf -)" \
		"$([ -n "$cs" ] && calc 'sprintf("%.2f", a / b)' "$cs" "$reqs" || printf -)"
}

# ---------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------

for cmd in wrk nginx redis-server redis-cli node curl awk pgrep; do
	command -v "$cmd" >/dev/null || die "$cmd not found (make deps installs it)"
done
for f in "$BIN/llmgwd" "$BIN/fake_provider" "$BIN/loadgen" "$BIN/rss_floor" "$BIN/stack_floor"; do
	[ -x "$f" ] || die "$f missing: run make bench (or make $f) first"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((BURST_N * 2 + 1000)) ]; then
	log "warning: open files limit $NOFILE is low for $BURST_N clients"
fi

TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
START_MS=$(now_ms)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
NPROC=$(nproc)
KERNEL=$(uname -sr)
MEM_MB=$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_START=$(wait_quiet)
if [ "$BUSY_START" -ge 10 ]; then
	log "warning: the machine is ${BUSY_START}% busy with other work; every number will be low"
fi
read -r JIF0 STEAL0 <<<"$(cpu_jiffies)"
own_cpu
OWN0=$OWN_CPU
RUN0_MS=$(now_ms)
GW_VERSION=$("$BIN/llmgwd" --version 2>/dev/null | head -1 || true)
log "machine: $NPROC x $CPU_MODEL, $KERNEL, ${MEM_MB} MB, load $LOAD_START; logs in $TMP"

start_redis
start_fake fast --fast
FAST_PID=$FAKE_PID
FAST_PORT=$FAKE_PORT
start_nginx "$FAST_PORT"
FAKE_URL="http://127.0.0.1:$FAST_PORT/api/v1/chat/completions"
NGX_URL="http://127.0.0.1:$NGX_PORT/api/v1/chat/completions"
start_floor fast "$FAST_PORT" raw
SF_PID=$FL_PID
SF_PORT=$FL_PORT
start_floor fast-mhd "$FAST_PORT" mhd
SM_PID=$FL_PID
SM_PORT=$FL_PORT

# Throughput, ROUNDS times over, interleaved so that a disturbance of the
# machine hits one round of every run rather than all rounds of one.
CACHE_WIRED=""
for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r/$ROUNDS"
	# (a) the fake provider alone, (b) through nginx.
	measure a "(a) fake direct" "$FAKE_URL"
	measure b "(b) nginx proxy" "$NGX_URL"
	# (s) the stack floor: llmgwd's libraries with nothing between; (m)
	# the same behind libmicrohttpd.
	measure s "(s) stack floor" "$(floor_url "$SF_PORT")"
	measure m "(m) libmicrohttpd floor" "$(floor_url "$SM_PORT")"
	# (c) llmgwd, cache off: every request through queue, limiter and a
	# worker to the provider. A fresh daemon per round: a full bucket.
	start_gw "c$r" "$FAST_PORT" False
	measure_gw_nocache c "(c) llmgw cache off"
	stop_pid "$GW_PID"
	# (d) llmgwd, cache on, the same request every time: all hits after one.
	if [ "$CACHE_WIRED" != 0 ]; then
		start_gw "d$r" "$FAST_PORT" True
		if cache_hits; then
			CACHE_WIRED=1
			measure d "(d) llmgw cache hit" "$(gw_url)"
		else
			CACHE_WIRED=0
			NOTE[d]="n/a (cache not wired): no X-Cache: HIT after 3 s of identical requests"
			log "(d) ${NOTE[d]}"
		fi
		stop_pid "$GW_PID"
	fi
done
if [ ! -s "$TMP/res-c" ] && [ -s "$TMP/res-c.dry" ]; then
	mv "$TMP/res-c.dry" "$TMP/res-c"
	C_DRY=0
	NOTE[c]="every round emptied the rpm bucket: limiter-bound, a floor for the gateway. "
fi
stop_pid "$SF_PID"
stop_pid "$SM_PID"
for k in a b s m c d; do pick "$k"; done
NOTE[c]="${NOTE[c]:-}fresh llmgwd per round"
if [ "$C_DRY" -gt 0 ]; then NOTE[c]+="; $C_DRY round(s) emptied the bucket and were left out"; fi

# Unloaded: one connection, one request at a time: the latency a single
# request pays for the extra hop.
WRK_T=1
WRK_C=1
measure ua "unloaded, fake direct" "$FAKE_URL" 3 1
measure un "unloaded, nginx" "$NGX_URL" 3 1
start_gw unloaded "$FAST_PORT" False
measure ug "unloaded, llmgw cache off" "$(gw_url)" 3 1
stop_pid "$GW_PID"
WRK_T=$THREADS
WRK_C=$CONNS
for k in ua un ug; do pick "$k"; done

# CPU cost per request (perf stat, software events) and a profile of
# llmgwd with the cache off (perf record, cpu-clock: this machine may have
# no hardware counters). Each on a fresh daemon: a full rpm bucket.
COST_NGX="- - -"
COST_GW="- - -"
PROFILE_TXT=""
PROFILE_CMD=""
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
	log "perf stat: CPU per request, nginx and llmgw"
	COST_NGX=$(cpu_cost nginx "$(nginx_pids)" "$NGX_URL")
	start_gw cost "$FAST_PORT" False
	COST_GW=$(cpu_cost llmgw "$GW_PID" "$(gw_url)")
	stop_pid "$GW_PID"

	log "perf record: llmgwd, cache off"
	start_gw prof "$FAST_PORT" False
	timeout 40 wrk -t"$THREADS" -c"$CONNS" -d5s -s "$LUA" "$(gw_url)" >"$TMP/wrk-prof.txt" 2>&1 &
	WRK_PID=$!
	PIDS+=("$WRK_PID")
	PROFILE_CMD="\`perf record -F 999 -e cpu-clock -g -p LLMGWD_PID -- sleep 4\` during \`wrk -t$THREADS -c$CONNS -d5s\` (cache off)"
	if run_fg timeout 30 perf record -q -F 999 -e cpu-clock -g -p "$GW_PID" -o "$TMP/perf.data" -- sleep 4 \
		>"$TMP/perf-record.log" 2>&1; then
		PROFILE_TXT=$( {
			echo "by shared object (self time):"
			timeout 60 perf report -i "$TMP/perf.data" --stdio --no-children -g none \
				--sort dso --percent-limit 1 2>/dev/null | grep -E '^ +[0-9.]+%' |
				sed 's/[[:space:]-]*$//' | head -12
			echo
			echo "top symbols (self time):"
			timeout 60 perf report -i "$TMP/perf.data" --stdio --no-children -g none \
				--sort dso,symbol --percent-limit 0.7 2>/dev/null | grep -E '^ +[0-9.]+%' |
				sed 's/[[:space:]-]*$//' | head -30
		} ) || PROFILE_TXT=""
	else
		log "perf record failed ($(tail -1 "$TMP/perf-record.log")); no profile"
	fi
	stop_pid "$WRK_PID"
	stop_pid "$GW_PID"
fi
stop_pid "$NGX_PID"
stop_pid "$FAST_PID"
read -r CG_CPU CG_SYS CG_CS <<<"$COST_GW"
read -r CN_CPU CN_SYS CN_CS <<<"$COST_NGX"

# LLM-shaped: a 1.5 s provider and BURST_N requests in flight, two ways.
# Burst: BURST_N clients at once, each on its own connection; the same
# burst straight at the fake gives the floor of the client and the fake.
# Hold: an open loop at BURST_N / 1.5 s req/s on kept-alive connections for
# HOLD_S s, which keeps BURST_N requests in flight in a steady state; the
# gateway-added time is its latency over the direct run's.
log "LLM-shaped: $BURST_N requests in flight, provider delay 1500 ms"
start_fake slow --fast --delay-ms 1500
SLOW_PID=$FAKE_PID
SLOW_PORT=$FAKE_PORT
SLOW_URL="http://127.0.0.1:$SLOW_PORT/api/v1/chat/completions"
HOLD_RPS=$(calc 'sprintf("%.0f", a / 1.5)' "$BURST_N")
HOLD_CONNS=$((BURST_N * 2 + 100))
# burst TAG URL [PID]: BURST_N at once at URL, into $TMP/burst-TAG.json.
burst() {
	run_fg timeout 120 "$LOADGEN" burst --url "$2" --n "$BURST_N" ${3:+--pid "$3"} --timeout-ms 60000 \
		>"$TMP/burst-$1.json" || die "burst client ($1) failed"
}
# hold TAG URL [PID]: the held run at URL, into $TMP/hold-TAG.json;
# HOLD_TICKS = the CPU ticks PID used over it (warm-up included).
hold() {
	local t0=0
	[ -z "${3:-}" ] || t0=$(proc_ticks "$3")
	run_fg timeout $((HOLD_S + 90)) "$LOADGEN" rate --url "$2" --rps "$HOLD_RPS" --seconds "$HOLD_S" \
		--warmup-s 2 --max-conns "$HOLD_CONNS" ${3:+--pid "$3"} --timeout-ms $(((HOLD_S + 60) * 1000)) \
		>"$TMP/hold-$1.json" || die "hold client ($1) failed"
	HOLD_TICKS=0
	[ -z "${3:-}" ] || HOLD_TICKS=$(($(proc_ticks "$3") - t0))
}
burst direct "$SLOW_URL"
start_floor slow "$SLOW_PORT" raw
SF_PID=$FL_PID
SF_PORT=$FL_PORT
burst floor "$(floor_url "$SF_PORT")" "$SF_PID"
start_gw burst "$SLOW_PORT" False
burst gw "$(gw_url)" "$GW_PID"
stop_pid "$GW_PID"
hold direct "$SLOW_URL"
hold floor "$(floor_url "$SF_PORT")" "$SF_PID"
S_TICKS=$HOLD_TICKS
stop_pid "$SF_PID"
start_gw hold "$SLOW_PORT" False
hold gw "$(gw_url)" "$GW_PID"
H_TICKS=$HOLD_TICKS
stop_pid "$GW_PID"
stop_pid "$SLOW_PID"
mb() { calc 'sprintf("%.1f", a / 1024)' "$1"; }
B_OK=$(jget "$TMP/burst-gw.json" ok)
B_STATUSES=$(jget "$TMP/burst-gw.json" statuses)
B_RSS_MB=$(mb "$(jget "$TMP/burst-gw.json" peak_hwm_kb)")
B_HOLD_MB=$(mb "$(jget "$TMP/burst-gw.json" holding_rss_kb)")
B_AFTER_MB=$(mb "$(jget "$TMP/burst-gw.json" after_rss_kb)")
B_THREADS=$(jget "$TMP/burst-gw.json" peak_threads)
B_P50=$(jget "$TMP/burst-gw.json" latency.p50_ms)
B_P99=$(jget "$TMP/burst-gw.json" latency.p99_ms)
B_MAX=$(jget "$TMP/burst-gw.json" latency.max_ms)
B_WALL=$(jget "$TMP/burst-gw.json" wall_ms)
B_SPREAD=$(jget "$TMP/burst-gw.json" connect_spread_ms)
B_ADD_P50=$(calc 'sprintf("%.1f", a - 1500)' "$B_P50")
B_ADD_P99=$(calc 'sprintf("%.1f", a - 1500)' "$B_P99")
BD_OK=$(jget "$TMP/burst-direct.json" ok)
BD_P50=$(jget "$TMP/burst-direct.json" latency.p50_ms)
BD_P99=$(jget "$TMP/burst-direct.json" latency.p99_ms)
BD_SPREAD=$(jget "$TMP/burst-direct.json" connect_spread_ms)
BD_ADD_P99=$(calc 'sprintf("%.1f", a - 1500)' "$BD_P99")
B_OVER_P99=$(calc 'sprintf("%.1f", a - b)' "$B_P99" "$BD_P99")
BS_OK=$(jget "$TMP/burst-floor.json" ok)
BS_P50=$(jget "$TMP/burst-floor.json" latency.p50_ms)
BS_P99=$(jget "$TMP/burst-floor.json" latency.p99_ms)
BS_RSS_MB=$(mb "$(jget "$TMP/burst-floor.json" peak_hwm_kb)")
BS_OVER_P99=$(calc 'sprintf("%.1f", a - b)' "$BS_P99" "$BD_P99")
H_OK=$(jget "$TMP/hold-gw.json" ok)
H_SENT=$(jget "$TMP/hold-gw.json" sent)
H_STATUSES=$(jget "$TMP/hold-gw.json" statuses)
H_INFL=$(jget "$TMP/hold-gw.json" peak_in_flight)
H_RSS_MB=$(mb "$(jget "$TMP/hold-gw.json" peak_hwm_kb)")
H_THREADS=$(jget "$TMP/hold-gw.json" peak_threads)
H_LAG=$(jget "$TMP/hold-gw.json" max_send_lag_ms)
H_P50=$(jget "$TMP/hold-gw.json" latency.p50_ms)
H_P99=$(jget "$TMP/hold-gw.json" latency.p99_ms)
HD_OK=$(jget "$TMP/hold-direct.json" ok)
HD_SENT=$(jget "$TMP/hold-direct.json" sent)
HD_P50=$(jget "$TMP/hold-direct.json" latency.p50_ms)
HD_P99=$(jget "$TMP/hold-direct.json" latency.p99_ms)
# llmgwd's CPU over the run (2 s warm-up included) per request sent.
H_CPU_US=$(calc 'sprintf("%.0f", a / c * 1e6 / b)' "$H_TICKS" \
	"$(calc 'a * (b + 2)' "$HOLD_RPS" "$HOLD_S")" "$(getconf CLK_TCK)")
HS_OK=$(jget "$TMP/hold-floor.json" ok)
HS_SENT=$(jget "$TMP/hold-floor.json" sent)
HS_P50=$(jget "$TMP/hold-floor.json" latency.p50_ms)
HS_P99=$(jget "$TMP/hold-floor.json" latency.p99_ms)
HS_RSS_MB=$(mb "$(jget "$TMP/hold-floor.json" peak_hwm_kb)")
HS_CPU_US=$(calc 'sprintf("%.0f", a / c * 1e6 / b)' "$S_TICKS" \
	"$(calc 'a * (b + 2)' "$HOLD_RPS" "$HOLD_S")" "$(getconf CLK_TCK)")
HS_ADD50=$(calc 'sprintf("%.3f", a - b)' "$HS_P50" "$HD_P50")
HS_ADD99=$(calc 'sprintf("%.3f", a - b)' "$HS_P99" "$HD_P99")
H_ADD50=$(calc 'sprintf("%.3f", a - b)' "$H_P50" "$HD_P50")
H_ADD99=$(calc 'sprintf("%.3f", a - b)' "$H_P99" "$HD_P99")
# 1 when the burst and the hold both had every request answered.
INFL_ALL=0
if [ "$B_OK" = "$BURST_N" ] && [ "$H_OK" = "$H_SENT" ]; then INFL_ALL=1; fi
INFL_RSS_MB=$(calc 'a > b ? a : b' "$B_RSS_MB" "$H_RSS_MB")
INFL_THREADS=$(calc 'a > b ? a : b' "$B_THREADS" "$H_THREADS")
log "LLM-shaped burst: $B_OK/$BURST_N ok, peak RSS $B_RSS_MB MB, peak threads $B_THREADS, p99 $B_P99 ms (direct: $BD_P99 ms)"
log "LLM-shaped hold: $H_OK/$H_SENT ok, $H_INFL in flight, peak RSS $H_RSS_MB MB, added p50 $H_ADD50 ms, p99 $H_ADD99 ms"

# Overhead: a 60 ms provider at a fixed rate, direct and through llmgwd.
log "overhead: $RATE req/s for ${RATE_S}s, provider delay 60 ms"
start_fake d60 --fast --delay-ms 60
D60_PID=$FAKE_PID
D60_PORT=$FAKE_PORT
start_gw rate "$D60_PORT" False
run_fg timeout $((RATE_S + 60)) "$LOADGEN" rate --url "http://127.0.0.1:$D60_PORT/api/v1/chat/completions" \
	--rps "$RATE" --seconds "$RATE_S" --warmup-s 1 --timeout-ms $(((RATE_S + 40) * 1000)) \
	>"$TMP/rate-direct.json" || die "rate client (direct) failed"
run_fg timeout $((RATE_S + 60)) "$LOADGEN" rate --url "$(gw_url)" \
	--rps "$RATE" --seconds "$RATE_S" --warmup-s 1 --timeout-ms $(((RATE_S + 40) * 1000)) \
	>"$TMP/rate-gw.json" || die "rate client (llmgw) failed"
stop_pid "$GW_PID"
stop_pid "$D60_PID"
O_D50=$(jget "$TMP/rate-direct.json" latency.p50_ms)
O_D99=$(jget "$TMP/rate-direct.json" latency.p99_ms)
O_G50=$(jget "$TMP/rate-gw.json" latency.p50_ms)
O_G99=$(jget "$TMP/rate-gw.json" latency.p99_ms)
O_DOK=$(jget "$TMP/rate-direct.json" ok)
O_GOK=$(jget "$TMP/rate-gw.json" ok)
O_SENT=$(jget "$TMP/rate-gw.json" sent)
O_LAG=$(jget "$TMP/rate-gw.json" max_send_lag_ms)
O_ADD50=$(calc 'sprintf("%.3f", a - b)' "$O_G50" "$O_D50")
O_ADD99=$(calc 'sprintf("%.3f", a - b)' "$O_G99" "$O_D99")
log "overhead: added p50 $O_ADD50 ms, p99 $O_ADD99 ms"

# Start-to-ready and idle RSS: fresh daemons, nothing else running. The
# conf's listen is overridden per run by LLMGW_LISTEN (a free port).
log "start-to-ready: $READY_RUNS runs"
mkdir -p "$TMP/gw-ready"
write_gw_conf "$TMP/gw-ready" 9 8400
run_fg timeout 120 env -i -C "$TMP/gw-ready" PATH="$PATH" OPENROUTER_API_KEY=bench-placeholder-key \
	LLMGW_LOG_LEVEL=warn LLM_ENABLE_CACHE=False \
	node "$CLIENT" ready --bin "$ROOT/$BIN/llmgwd" --conf "$TMP/gw-ready/llmgw.conf" \
	--cwd "$TMP/gw-ready" --runs "$READY_RUNS" --idle-ms 500 --hard-limit-ms 110000 \
	>"$TMP/ready.json" || die "ready client failed"
RD_MED=$(jget "$TMP/ready.json" ready_median_ms)
RD_MIN=$(jget "$TMP/ready.json" ready_min_ms)
RD_MAX=$(jget "$TMP/ready.json" ready_max_ms)
IDLE_MB=$(mb "$(jget "$TMP/ready.json" idle_rss_max_kb)")
IDLE_ANON_MB=$(mb "$(jget "$TMP/ready.json" idle_at_max.anon)")
IDLE_FILE_MB=$(mb "$(jget "$TMP/ready.json" idle_at_max.file)")
IDLE_PSS=$(jget "$TMP/ready.json" idle_at_max.pss)
IDLE_PSS_MB=$([ -n "$IDLE_PSS" ] && mb "$IDLE_PSS" || printf 'n/a')
# The floor: llmgwd's libraries alone, linked and started the same way.
for i in 1 2 3; do
	timeout 20 "$BIN/rss_floor" --idle-ms 500 >>"$TMP/floor.json" || die "rss_floor failed"
done
FLOOR_KB=$(node -e 'const r=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);
console.log(Math.max(...r.map((x)=>x.rss_kb)))' "$TMP/floor.json")
FLOOR_MB=$(mb "$FLOOR_KB")
IDLE_OVER_MB=$(calc 'sprintf("%.1f", a - b)' "$IDLE_MB" "$FLOOR_MB")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
read -r JIF1 STEAL1 <<<"$(cpu_jiffies)"
own_cpu
OWN1=$OWN_CPU
HZ=$(getconf CLK_TCK)
# CPU that processes other than ours used while we measured, in percent of
# the whole machine; steal is CPU the hypervisor gave to someone else.
OTHERS_PCT=$(awk -v j="$((JIF1 - JIF0))" -v hz="$HZ" -v own="$(calc 'a - b' "$OWN1" "$OWN0")" \
	-v wall="$(calc '(a - b) / 1000' "$(now_ms)" "$RUN0_MS")" -v n="$NPROC" \
	'BEGIN { o = (j / hz - own) / (wall * n) * 100; printf "%.0f", (o < 0 ? 0 : o) }')
STEAL_PCT=$(awk -v s="$((STEAL1 - STEAL0))" -v hz="$HZ" -v wall="$(calc '(a - b) / 1000' "$(now_ms)" "$RUN0_MS")" \
	-v n="$NPROC" 'BEGIN { printf "%.0f", s / hz / (wall * n) * 100 }')
BUSY_END=$(cpu_busy)
DISTURBED=""
if [ "$OTHERS_PCT" -ge 5 ] || [ "$STEAL_PCT" -ge 5 ] || [ "$BUSY_START" -ge 10 ]; then
	DISTURBED="**Disturbed run**: other work used ${OTHERS_PCT}% of the machine during the benchmark (steal ${STEAL_PCT}%, ${BUSY_START}% busy just before). Every number below is low and noisy; rerun on a quiet machine before drawing conclusions."
	log "warning: other work used ${OTHERS_PCT}% of the machine during the run (steal ${STEAL_PCT}%): numbers are disturbed"
fi

# ---------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------

fmt_ms() { if [ -n "$1" ]; then printf '%.3f' "$1"; else printf 'n/a'; fi; }
# ratio KEY [BASE]: req/s of KEY over BASE (b, nginx, by default).
ratio() {
	local base=${2:-b}
	if [ -n "${RPS[$1]:-}" ] && [ -n "${RPS[$base]:-}" ]; then
		calc 'sprintf("%.2f", a / b)' "${RPS[$1]}" "${RPS[$base]}"
	else
		printf 'n/a'
	fi
}
# verdict MEASURED OP TARGET
verdict() {
	case "$1" in "" | n/a* | -) printf 'n/a'; return ;; esac
	if [ "$(calc "a $2 b ? 1 : 0" "$1" "$3")" = 1 ]; then printf 'met'; else printf '**missed**'; fi
}
row() {
	local key=$1 label=$2
	if [ -n "${RPS[$key]:-}" ]; then
		printf '| %s | %.0f | %s | %s | %s | %s | %s s | %s |\n' "$label" "${RPS[$key]}" "${SPREAD[$key]}" \
			"$(fmt_ms "${P50[$key]}")" "$(fmt_ms "${P99[$key]}")" "${ERRS[$key]}" "${SECS[$key]}" "${NOTE[$key]:-}"
	else
		printf '| %s | n/a | | | | | | %s |\n' "$label" "${NOTE[$key]:-}"
	fi
}

RC=$(ratio c)
RD=$(ratio d)
RS=$(ratio s)
RM=$(ratio m)
RCS=$(ratio c s)
RCM=$(ratio c m)
[ "$RD" = n/a ] && RD="n/a (cache not wired)"
UA_ADD50=$(calc 'sprintf("%.3f", a - b)' "${P50[ug]}" "${P50[ua]}")
UN_ADD50=$(calc 'sprintf("%.3f", a - b)' "${P50[un]}" "${P50[ua]}")
TABLE=$(
	echo "| run | req/s (median of $ROUNDS) | req/s min–max | p50 ms | p99 ms | errors | measured | note |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	row a "(a) fake provider direct"
	row b "(b) nginx proxy"
	row s "(s) stack floor: an epoll front in each worker + libcurl, nothing between"
	row m "(m) libmicrohttpd floor: libmicrohttpd + libcurl, nothing between"
	row c "(c) llmgw, cache off"
	row d "(d) llmgw, every request a cache hit"
)
TARGETS=$(
	echo "| target | measured | verdict |"
	echo "| --- | --- | --- |"
	echo "| (c) ≥ 0.6 × nginx req/s | $RC × (the stack floor (s) itself: $RS ×) | $(verdict "$RC" '>=' 0.6) |"
	echo "| (d) ≥ 0.6 × nginx req/s | $RD | $(verdict "$RD" '>=' 0.6) |"
	echo "| $BURST_N in flight, all answered (burst; hold) | $B_OK / $BURST_N; $H_OK / $H_SENT | $(verdict "$INFL_ALL" '>=' 1) |"
	echo "| RSS < 150 MB with $BURST_N in flight (peak VmHWM, burst and hold) | $INFL_RSS_MB MB | $(verdict "$INFL_RSS_MB" '<' 150) |"
	echo "| < 16 threads with $BURST_N in flight | $INFL_THREADS | $(verdict "$INFL_THREADS" '<' 16) |"
	echo "| gateway-added p99 < 1 ms with $BURST_N in flight (hold: llmgw p99 − direct p99) | $H_ADD99 ms (stack floor: $HS_ADD99 ms) | $(verdict "$H_ADD99" '<' 1) |"
	echo "| gateway-added p99 < 1 ms, all $BURST_N sent at once (burst: llmgw p99 − direct p99) | $B_OVER_P99 ms (stack floor: $BS_OVER_P99 ms) | $(verdict "$B_OVER_P99" '<' 1) |"
	echo "| added p99 < 1 ms ($RATE req/s, 60 ms provider) | $O_ADD99 ms | $(verdict "$O_ADD99" '<' 1) |"
	echo "| idle RSS < 10 MB | $IDLE_MB MB (libraries alone: $FLOOR_MB MB) | $(verdict "$IDLE_MB" '<' 10) |"
)
OTHER=$(
	echo "| measurement | result |"
	echo "| --- | --- |"
	echo "| Unloaded (wrk -t1 -c1, 3 s) p50 / p99: fake direct | $(fmt_ms "${P50[ua]}") / $(fmt_ms "${P99[ua]}") ms |"
	echo "| Unloaded: nginx | $(fmt_ms "${P50[un]}") / $(fmt_ms "${P99[un]}") ms (+$UN_ADD50 ms p50) |"
	echo "| Unloaded: llmgw, cache off | $(fmt_ms "${P50[ug]}") / $(fmt_ms "${P99[ug]}") ms (+$UA_ADD50 ms p50) |"
	echo "| CPU per request at wrk -c$CONNS (perf stat task-clock): nginx / llmgw cache off | $CN_CPU / $CG_CPU µs |"
	echo "| Syscalls per request: nginx / llmgw | $CN_SYS / $CG_SYS |"
	echo "| Context switches per request: nginx / llmgw | $CN_CS / $CG_CS |"
	echo "| LLM-shaped burst: $BURST_N clients at once, provider 1500 ms | $B_OK ok ($B_STATUSES), the last answered after $B_WALL ms; the client took $B_SPREAD ms to open and send all (direct: $BD_SPREAD ms) |"
	echo "| Burst: llmgw latency (from each request's send) p50 / p99 / max | $B_P50 / $B_P99 / $B_MAX ms (latency − 1500 ms: $B_ADD_P50 / $B_ADD_P99 ms) |"
	echo "| Burst: same burst straight at the fake, p50 / p99 | $BD_P50 / $BD_P99 ms ($BD_OK ok) |"
	echo "| Burst: llmgw p99 − direct p99 | $B_OVER_P99 ms |"
	echo "| Burst: through the stack floor (s), p50 / p99; p99 − direct p99 | $BS_P50 / $BS_P99 ms ($BS_OK ok); $BS_OVER_P99 ms; peak VmHWM $BS_RSS_MB MB |"
	echo "| Burst: llmgwd RSS holding $BURST_N (before the first answer) / peak VmHWM / after | $B_HOLD_MB / $B_RSS_MB / $B_AFTER_MB MB; peak threads $B_THREADS |"
	echo "| LLM-shaped hold: $HOLD_RPS req/s open loop for $HOLD_S s, provider 1500 ms | $H_OK / $H_SENT ok ($H_STATUSES), $H_INFL in flight at the peak; client send lag ≤ $H_LAG ms |"
	echo "| Hold: direct p50 / p99 | $HD_P50 / $HD_P99 ms ($HD_OK / $HD_SENT ok) |"
	echo "| Hold: through llmgw p50 / p99 | $H_P50 / $H_P99 ms |"
	echo "| Hold: llmgw − direct, p50 / p99 | $H_ADD50 / $H_ADD99 ms |"
	echo "| Hold: stack floor (s) − direct, p50 / p99 | $HS_ADD50 / $HS_ADD99 ms ($HS_OK / $HS_SENT ok; peak VmHWM $HS_RSS_MB MB; CPU $HS_CPU_US µs per request) |"
	echo "| Hold: llmgwd peak VmHWM / threads / CPU per request | $H_RSS_MB MB / $H_THREADS / $H_CPU_US µs |"
	echo "| Overhead, $RATE req/s open loop, 60 ms provider: direct p50 / p99 | $O_D50 / $O_D99 ms ($O_DOK ok) |"
	echo "| Overhead: through llmgw p50 / p99 | $O_G50 / $O_G99 ms ($O_GOK / $O_SENT ok; client send lag ≤ $O_LAG ms) |"
	echo "| Overhead: llmgw − direct, p50 / p99 | $O_ADD50 / $O_ADD99 ms |"
	echo "| Start to first 200 on /health ($READY_RUNS runs) min / median / max | $RD_MIN / $RD_MED / $RD_MAX ms |"
	echo "| Idle RSS (VmRSS 0.5 s after ready, max over runs) | $IDLE_MB MB: $IDLE_ANON_MB MB anonymous, $IDLE_FILE_MB MB file pages (shared libraries); PSS $IDLE_PSS_MB MB |"
	echo "| Idle RSS of llmgwd's libraries alone (\`bin/rss_floor\`, max of 3) | $FLOOR_MB MB; llmgwd is $IDLE_OVER_MB MB above it |"
)

ELAPSED=$(calc 'sprintf("%.0f", a / 1000)' "$(($(now_ms) - START_MS))")
echo
echo "llmgw benchmarks  ($DATE; $NPROC x $CPU_MODEL; $KERNEL)"
echo "other work on the machine: ${BUSY_START}% busy before, ${OTHERS_PCT}% during (steal ${STEAL_PCT}%), ${BUSY_END}% after"
[ -z "$DISTURBED" ] || echo "$DISTURBED"
echo "wrk -t$THREADS -c$CONNS, ${WARM} s warm-up, ${DUR} s measured, median of $ROUNDS rounds; fake --fast; nginx $NGX_WORKERS worker(s)"
echo
echo "$TABLE"
echo
echo "req/s ratios: (c)/(b) = $RC   (d)/(b) = $RD   (s)/(b) = $RS   (m)/(b) = $RM   (c)/(s) = $RCS   (c)/(m) = $RCM"
echo
echo "$OTHER"
echo
echo "$TARGETS"
if [ -n "$PROFILE_TXT" ]; then
	echo
	echo "perf profile of llmgwd, cache off:"
	echo "$PROFILE_TXT"
fi
echo
log "done in $ELAPSED s"

[ "$OUT" = - ] && exit 0

# Keep a "Where the time goes" section someone has written; else a stub.
WHERE=""
if [ -f "$OUT" ]; then
	WHERE=$(awk '/^## Where the time goes/ { on = 1; next } on && /^## / { exit } on { print }' "$OUT")
fi
if [ -z "$(tr -d '[:space:]' <<<"$WHERE")" ] || grep -q 'BENCH-PLACEHOLDER' <<<"$WHERE"; then
	WHERE="<!-- BENCH-PLACEHOLDER: make bench keeps this section once it no longer holds this marker. -->

_To be written from the profile above (perf/callgrind)._"
fi

NGX_MODE="master_process off; worker_processes 1"
[ "$NGX_WORKERS" -gt 1 ] && NGX_MODE="master_process on (in the foreground); worker_processes $NGX_WORKERS"
{
	cat <<EOF
# llmgw benchmarks

Written by \`make bench\` (\`scripts/bench.sh\`) on $DATE, in $ELAPSED s.
One run on one small machine: read the numbers as ratios between runs on the
same machine, not as capacity.

${DISTURBED:+$DISTURBED

}## Machine

- CPU: $NPROC × $CPU_MODEL (\`nproc\` = $NPROC)
- Kernel: $KERNEL
- Memory: $MEM_MB MB
- Other work on the machine: ${BUSY_START}% of the CPU busy in the second
  before the benchmark, ${OTHERS_PCT}% used by processes other than the
  benchmark's during it (hypervisor steal ${STEAL_PCT}%), ${BUSY_END}% in the
  second after (load average $LOAD_START at start, $LOAD_END at end).
  Anything above a few percent lowers every number.
- llmgwd: ${GW_VERSION:-bin/llmgwd}, release build (\`make\`: \`-O2 -g\`)
- The load generator, the fake provider, the proxy and Redis share these
  $NPROC cores with the process measured: every throughput number is bounded
  by that sharing.

## How it is run

All processes listen on 127.0.0.1, on ports picked at run time.

- Fake provider: \`bin/fake_provider --listen 127.0.0.1:0 --name openrouter --fast\`
  (canned OpenAI completion, no JSON parsing).
- nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), the reference hop: generated config, \`daemon off; $NGX_MODE\`,
  \`access_log off\`, \`upstream { server FAKE; keepalive 64; }\`, \`proxy_http_version 1.1\`,
  \`proxy_set_header Connection ""\`.
- Stack floor (s): \`bin/stack_floor --front raw --listen PORT --upstream FAKE_URL\`
  (\`scripts/bench/stack_floor.c\`): libcurl multi in one worker thread per
  core (socket action on epoll, kept-alive connections, reused handles,
  lanes of 256 transfers), and in each worker a bare epoll HTTP/1.1 reader
  (Content-Length bodies, keep-alive) for the clients, as llmgwd's own front
  runs in its workers: a request never changes threads. Nothing in between:
  no JSON, queue, limiter, cache, ledger or log. The cheapest proxy llmgwd's
  libraries allow; what separates it from nginx is libcurl's and the
  machine's, what separates llmgw from it is llmgw's.
- libmicrohttpd floor (m): \`bin/stack_floor --front mhd ...\`: the same
  workers behind libmicrohttpd 0.9.75 as llmgwd ran it until it got its own
  server (epoll thread pool of two, suspend while upstream, resume from the
  worker). Kept as the measured reason for that change.
- redis-server: \`--save '' --appendonly no\`.
- llmgwd: \`[provider.openrouter] rpm = $GW_RPM, burst = $GW_BURST, concurrent = 10000\`
  (rpm and burst at their upper bounds), every \`[queue] *_max = 1000000\`,
  \`max_connections = 20000\`, \`fallback_order = openrouter\`; environment
  \`LLM_ENABLE_CACHE=False\` for (c), \`LLM_ENABLE_CACHE=True LLMGW_REDIS_URL=redis://127.0.0.1:PORT/0\`
  for (d), \`LLMGW_LOG_LEVEL=warn\`; its access log (a line per request on
  stderr) goes to a file.
- Every request (\`scripts/bench/post.lua\`, \`scripts/bench/loadgen.c\`):
  \`POST\` with \`Content-Type: application/json\`, \`X-Service-Name: bench\` and
  \`$CHAT_BODY\`

Throughput, $ROUNDS rounds of (a) (b) (c) (d) in turn; the table shows the
round with the median req/s:

\`\`\`
wrk -t$THREADS -c$CONNS -d${WARM}s -s scripts/bench/post.lua URL             # warm-up, not counted
wrk -t$THREADS -c$CONNS -d${DUR}s --latency -s scripts/bench/post.lua URL   # measured
  (a) URL = http://127.0.0.1:FAKE/api/v1/chat/completions
  (b) URL = http://127.0.0.1:NGINX/api/v1/chat/completions
  (s) URL = http://127.0.0.1:FLOOR/v1/chat/completions   bin/stack_floor --front raw
  (m) URL = http://127.0.0.1:FLOOR/v1/chat/completions   bin/stack_floor --front mhd
  (c) URL = http://127.0.0.1:LLMGW/v1/chat/completions   fresh llmgwd, cache off, 1 s warm-up
  (d) URL = http://127.0.0.1:LLMGW/v1/chat/completions   cache on, identical requests
wrk -t1 -c1 -d3s --latency -s scripts/bench/post.lua URL     # unloaded, after a 1 s warm-up
perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p PIDS -- sleep 4   # during wrk -d5s
\`\`\`

LLM-shaped, overhead and start-up runs (\`bin/loadgen\`, built from
\`scripts/bench/loadgen.c\`: one epoll thread in C; latencies from each
request's send; Node $(node --version) for start-up):

\`\`\`
fake_provider --fast --delay-ms 1500
loadgen burst --url URL --n $BURST_N --pid LLMGWD_PID        # a connection per request, all at once
                                                     # (URL: the fake, the stack floor, llmgwd)
loadgen rate --url URL --rps $HOLD_RPS --seconds $HOLD_S --warmup-s 2 --max-conns $HOLD_CONNS --pid LLMGWD_PID
                                                     # open loop, keep-alive: $BURST_N in flight, held
fake_provider --fast --delay-ms 60
loadgen rate --url URL --rps $RATE --seconds $RATE_S --warmup-s 1   # open loop, keep-alive
node scripts/bench/client.mjs ready --bin bin/llmgwd --conf CONF --runs $READY_RUNS --idle-ms 500
rss_floor --idle-ms 500                                # llmgwd's libraries alone, 3 runs
\`\`\`

## Results

Throughput, wrk -t$THREADS -c$CONNS (wrk's latencies: closed loop):

$TABLE

req/s ratios: **(c)/(b) = $RC**, **(d)/(b) = $RD**; the stack floor
(s)/(b) = $RS, and llmgw against it, (c)/(s) = $RCS; the libmicrohttpd
floor (m)/(b) = $RM, and llmgw against it, (c)/(m) = $RCM.

Latency, cost per request, LLM-shaped load, start-up:

$OTHER

## Targets

$TARGETS

## Profile

EOF
	if [ -n "$PROFILE_TXT" ]; then
		echo "$PROFILE_CMD, then \`perf report --no-children --sort dso,symbol\`."
		echo "The build keeps no frame pointers, so only self time is reliable here; use"
		echo "\`--call-graph dwarf\` for callers."
		echo
		echo '```'
		echo "$PROFILE_TXT"
		echo '```'
	else
		echo "No profile in this run (perf missing or not permitted, or BENCH_PROFILE=0)."
	fi
	echo
	echo "## Where the time goes"
	echo
	echo "$WHERE"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
