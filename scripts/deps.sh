#!/usr/bin/env bash
# Installs the Debian packages llmgw builds, runs and tests with, and the
# npm packages of the integration tests. Installs only what is missing,
# so a second run costs a few dpkg queries.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
	build-essential pkg-config
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libssl-dev libhiredis-dev
	libinih-dev libsystemd-dev check libjs-chart.js
	redis-server nodejs npm curl python3 systemd
)
# Test and benchmark extras; skipped with LLMGW_DEPS_MINIMAL=1 (make run).
EXTRA=(prometheus chromium wrk nginx-light hyperfine)
if [ "${LLMGW_DEPS_MINIMAL:-0}" != 1 ]; then
	PKGS+=("${EXTRA[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
	# nodejs/npm may come from elsewhere (e.g. a preinstalled Node): accept the commands.
	case "$p" in
	nodejs) command -v node >/dev/null && continue ;;
	npm) command -v npm >/dev/null && continue ;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${LLMGW_DEPS_MINIMAL:-0}" != 1 ] && { [ ! -d tests/integration/node_modules/openai ] ||
	[ ! -d tests/integration/node_modules/playwright-core ]; }; then
	echo "deps: installing npm packages for tests/integration"
	(cd tests/integration && npm install --no-audit --no-fund --silent)
fi
