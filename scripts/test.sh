#!/usr/bin/env bash
# Runs llmgw's tests and prints one summary line "N passed, N failed".
#   scripts/test.sh              unit + integration
#   scripts/test.sh unit         Check unit tests only
#   scripts/test.sh integration  integration tests only (LLMGW_BIN picks the daemon,
#                                e.g. bin/san/llmgwd for the sanitizer build)
# Integration tests start their own llmgwd, fake provider and redis-server
# processes on free loopback ports and stop them when done.
set -uo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
bindir="${LLMGW_BINDIR:-bin}"
out="tests/out"
mkdir -p "$out"
passed=0
failed=0

if [ "$what" = all ] || [ "$what" = unit ]; then
	echo "== unit tests ($bindir/unit_tests)"
	"$bindir/unit_tests" 2>&1 | tee "$out/unit.log"
	line=$(grep -E '^unit tests: [0-9]+ passed, [0-9]+ failed' "$out/unit.log" | tail -1)
	if [ -z "$line" ]; then
		echo "unit tests did not report a result"
		failed=$((failed + 1))
	else
		p=$(sed -E 's/^unit tests: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
		f=$(sed -E 's/^unit tests: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
		passed=$((passed + p))
		failed=$((failed + f))
	fi
fi

if [ "$what" = all ] || [ "$what" = integration ]; then
	echo "== integration tests (daemon: $bindir/llmgwd)"
	export LLMGW_BIN="$PWD/$bindir/llmgwd"
	export FAKE_BIN="$PWD/$bindir/fake_provider"
	(cd tests/integration && node --test --test-concurrency=1 --test-reporter=spec \
		--test-reporter-destination=stdout --test-reporter=tap \
		--test-reporter-destination=../out/integration.tap ./*.test.mjs) 2>&1 |
		tee "$out/integration.log"
	p=$(grep -E '^# pass [0-9]+' "$out/integration.tap" | awk '{print $3}')
	f=$(grep -E '^# fail [0-9]+' "$out/integration.tap" | awk '{print $3}')
	if [ -z "$p" ]; then
		echo "integration tests did not report a result"
		failed=$((failed + 1))
	else
		passed=$((passed + p))
		failed=$((failed + ${f:-0}))
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
