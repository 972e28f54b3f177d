#!/usr/bin/env bash
# Runs llmgw as a systemd service, after `make install`.
#
#   scripts/service.sh enable    daemon-reload, check the conf, enable --now
#   scripts/service.sh start     check the conf, start
#   scripts/service.sh status    systemctl status
#   scripts/service.sh reload    check the conf, then SIGHUP (systemctl reload)
#   scripts/service.sh restart   check the conf, then restart (drains first)
#   scripts/service.sh stop      stop (drains: up to shutdown_grace_s)
#   scripts/service.sh disable   disable --now
#   scripts/service.sh logs      follow the journal (journalctl -u llmgw -f -o cat)
#   scripts/service.sh check     llmgwd -t -c /etc/llmgw/llmgw.conf
#
# Environment: LLMGWD (the daemon, default: llmgwd on PATH, else
# /usr/local/bin/llmgwd), LLMGW_CONF (default /etc/llmgw/llmgw.conf),
# LLMGW_ENV (default /etc/llmgw/llmgw.env).
# Commands that change the service need root.
set -uo pipefail

UNIT=llmgw.service
CONF="${LLMGW_CONF:-/etc/llmgw/llmgw.conf}"
ENVFILE="${LLMGW_ENV:-/etc/llmgw/llmgw.env}"

# Makes a path absolute: check() runs the daemon from a scratch directory.
abs() {
	case "$1" in
	/*) echo "$1" ;;
	*) echo "$PWD/$1" ;;
	esac
}
CONF=$(abs "$CONF")
ENVFILE=$(abs "$ENVFILE")

usage() {
	sed -n '2,/^# Commands that change/p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
	echo "service: $*" >&2
	exit 1
}

llmgwd_path() {
	if [ -n "${LLMGWD:-}" ]; then
		abs "$LLMGWD"
	elif command -v llmgwd >/dev/null 2>&1; then
		command -v llmgwd
	else
		echo /usr/local/bin/llmgwd
	fi
}

# Checks the configuration the way the daemon will load it: the conf file
# plus the environment file (handed to llmgwd as its .env, so it is parsed,
# never executed), in an otherwise empty environment.
check() {
	local bin dir out rc
	bin=$(llmgwd_path)
	[ -x "$bin" ] || die "$bin not found or not executable: run 'make install' (or set LLMGWD)"
	[ -r "$CONF" ] || die "$CONF is missing or unreadable: run 'make install'"
	dir=$(mktemp -d) || die "mktemp failed"
	if [ -r "$ENVFILE" ]; then
		ln -s "$ENVFILE" "$dir/.env"
	elif [ -e "$ENVFILE" ]; then
		echo "service: cannot read $ENVFILE (root only): checking without it" >&2
	fi
	out=$(cd "$dir" && env -i PATH=/usr/bin:/bin "$bin" -t -c "$CONF" 2>&1)
	rc=$?
	rm -rf "$dir"
	if [ $rc -ne 0 ]; then
		echo "$out" >&2
		die "configuration check failed; nothing was changed"
	fi
	echo "service: $out"
}

# Fails with an explanation unless systemctl can talk to a running systemd.
need_systemd() {
	command -v systemctl >/dev/null 2>&1 ||
		die "systemctl not found: this machine does not use systemd. Run the daemon directly:
  $(llmgwd_path) -c $CONF"
	local state
	state=$(systemctl is-system-running 2>/dev/null)
	case "$state" in
	offline | "")
		die "systemd is not running as PID 1 here (a container or chroot?), so the unit cannot be used. Run the daemon directly:
  $(llmgwd_path) -c $CONF" ;;
	esac
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "'$1' changes the service: run it as root (sudo $0 $1)"
}

sc() {
	echo "service: systemctl $*"
	systemctl "$@"
}

cmd="${1:-}"
case "$cmd" in
check)
	check
	;;
enable)
	need_systemd
	need_root enable
	sc daemon-reload || die "daemon-reload failed"
	check
	sc enable --now "$UNIT" || die "enable failed: see 'systemctl status $UNIT' and '$0 logs'"
	sc --no-pager status "$UNIT"
	;;
start)
	need_systemd
	need_root start
	check
	sc start "$UNIT" || die "start failed: see '$0 logs'"
	;;
status)
	need_systemd
	systemctl --no-pager status "$UNIT"
	;;
reload)
	need_systemd
	need_root reload
	check
	sc reload "$UNIT" || die "reload failed: see '$0 logs'"
	;;
restart)
	need_systemd
	need_root restart
	check
	sc restart "$UNIT" || die "restart failed: see '$0 logs'"
	;;
stop)
	need_systemd
	need_root stop
	sc stop "$UNIT"
	;;
disable)
	need_systemd
	need_root disable
	sc disable --now "$UNIT"
	;;
logs)
	need_systemd
	command -v journalctl >/dev/null 2>&1 || die "journalctl not found"
	exec journalctl -u "$UNIT" -f -o cat
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
