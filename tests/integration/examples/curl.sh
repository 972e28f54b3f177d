#!/usr/bin/env bash
# The old llm_request() calls as plain HTTP with curl (docs/migration.md).
#
#   LLMGW_URL=http://localhost:8400 ./curl.sh [section ...]
#
# Sections: simple cached critical async errors csv (the default: all of
# them). Each checks the response headers it shows and the script exits
# non-zero when one is not what it expects.
set -euo pipefail

# region helpers
LLMGW="${LLMGW_URL:-http://localhost:8400}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# header NAME: a header of the last response (curl -D "$tmp/headers").
header() {
    tr -d '\r' <"$tmp/headers" | sed -n "s/^$1: //Ip" | tail -n 1
}
# endregion

RUN="$$$RANDOM" # makes this run's cache keys new

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# expect_header NAME VALUE: the last response's header NAME is VALUE.
expect_header() {
    [ "$(header "$1")" = "$2" ] || fail "$1 is '$(header "$1")', not '$2' (status $status): $(cat "$tmp/body")"
}

simple() {
    # region simple
    status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
        "$LLMGW/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -H 'X-Priority: HIGH' \
        -H 'X-Service-Name: stock_analyzer' \
        -d '{"model": "openai/gpt-4o-mini",
             "messages": [{"role": "user", "content": "Analyze this stock: AAPL"}]}')
    echo "simple: HTTP $status, X-Provider $(header X-Provider), X-Queue-Ms $(header X-Queue-Ms)"
    cat "$tmp/body"
    # endregion
    echo
    [ "$status" = 200 ] || fail "simple: HTTP $status"
    [ -n "$(header X-Request-Id)" ] || fail "simple: no X-Request-Id"
}

cached_call() {
    # region cached
    status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
        "$LLMGW/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -H 'X-Service-Name: analyzer' \
        -H "X-Cache-Key: aapl_analysis_$RUN" \
        -H 'X-Cache-TTL: 900' \
        -d '{"model": "openai/gpt-4o-mini",
             "messages": [{"role": "user", "content": "Analyze AAPL"}]}')
    echo "cached: HTTP $status, X-Cache $(header X-Cache), X-Cost-USD $(header X-Cost-USD)"
    # endregion
}

cached() {
    cached_call
    [ "$status" = 200 ] || fail "cached: HTTP $status: $(cat "$tmp/body")"
    expect_header X-Cache MISS
    # The answer is stored just after it was sent: a repeat a few
    # milliseconds later may still miss.
    for _ in $(seq 50); do
        cached_call
        [ "$(header X-Cache)" = HIT ] && break
        sleep 0.02
    done
    expect_header X-Cache HIT
    expect_header X-Cost-USD 0
    cat "$tmp/body"
    echo
}

critical() {
    # region critical
    status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
        "$LLMGW/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -H 'X-Priority: CRITICAL' \
        -H 'X-Service-Name: trade_validator' \
        -H 'X-Deadline-Ms: 20000' \
        -d '{"model": "openai/gpt-4o",
             "messages": [{"role": "user", "content": "Validate this trade: BUY 10 AAPL @ 190"}]}')
    echo "critical: HTTP $status, X-Provider $(header X-Provider), X-Cost-USD $(header X-Cost-USD)"
    cat "$tmp/body"
    # endregion
    echo
    [ "$status" = 200 ] || fail "critical: HTTP $status"
}

async() {
    # region async-submit
    status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
        "$LLMGW/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -H 'X-Async: true' \
        -H 'X-Priority: LOW' \
        -H 'X-Service-Name: analyzer' \
        -d '{"model": "openai/gpt-4o-mini",
             "messages": [{"role": "user", "content": "Analyze market"}]}')
    location=$(header Location) # /v1/requests/<id>
    echo "async: HTTP $status, Location $location, $(cat "$tmp/body")"
    # endregion
    [ "$status" = 202 ] || fail "async: X-Async: true answered $status, not 202: this gateway does not run requests in the background"
    [ -n "$location" ] || fail "async: no Location header"
    # region async-poll
    for _ in $(seq 3000); do
        status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$LLMGW$location")
        if [ "$status" = 202 ]; then
            sleep 0.2 # queued or running
        elif grep -q '"code":"async_unavailable"' "$tmp/body"; then
            sleep "$(header Retry-After)" # 503: the gateway cannot reach Redis just now
        else
            break
        fi
    done
    echo "async: result HTTP $status"
    cat "$tmp/body" # the completion, or the job's error with its status
    # endregion
    echo
    [ "$status" = 200 ] || fail "async: result HTTP $status"
}

errors() {
    # region errors
    status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
        "$LLMGW/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -H 'X-Priority: URGENT' \
        -d '{"model": "openai/gpt-4o-mini",
             "messages": [{"role": "user", "content": "Analyze AAPL"}]}')
    echo "errors: HTTP $status $(cat "$tmp/body")"
    # endregion
    [ "$status" = 400 ] || fail "errors: a bad X-Priority got $status"
    grep -q '"param":"X-Priority"' "$tmp/body" || fail "errors: the 400 does not name X-Priority"
}

csv() {
    # region csv
    curl -sS --fail "$LLMGW/stats?format=csv" -o "$tmp/llm_usage.csv"
    # endregion
    echo "csv:"
    cat "$tmp/llm_usage.csv"
    head -n 1 "$tmp/llm_usage.csv" | grep -q '^service,requests,cache_hits,errors,' ||
        fail "csv: unexpected header row"
    [ "$(wc -l <"$tmp/llm_usage.csv")" -ge 2 ] || fail "csv: no service rows"
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(simple cached critical async errors csv)
for s in "${sections[@]}"; do
    case "$s" in
    simple | cached | critical | async | errors | csv) "$s" ;;
    *) fail "unknown section '$s' (known: simple cached critical async errors csv)" ;;
    esac
done
echo "curl.sh: all sections passed: ${sections[*]}"
