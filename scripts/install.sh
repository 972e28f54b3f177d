#!/usr/bin/env bash
# make install: copies the built daemon, its configuration, the systemd
# unit and the environment-file template into place.
#
#   PREFIX   where the program goes (default /usr/local): $PREFIX/bin/llmgwd,
#            $PREFIX/share/doc/llmgw/
#   DESTDIR  staging root prepended to every path (default empty), for
#            packaging or tests; nothing outside it is touched
#   UNITDIR  directory of the unit (default /etc/systemd/system)
#
# Configuration lives in /etc/llmgw whatever the PREFIX (the daemon looks
# for /etc/llmgw/llmgw.conf). An existing llmgw.conf or llmgw.env is never
# overwritten: a changed shipped conf is put next to it as llmgw.conf.new.
# The unit is replaced on every run; local changes belong in a drop-in
# (systemctl edit llmgw). Safe to run again: unchanged files are left
# alone. Never calls systemctl: enabling is scripts/service.sh's job.
set -euo pipefail
caller_pwd=$PWD
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
UNITDIR="${UNITDIR:-/etc/systemd/system}"
SYSCONFDIR=/etc/llmgw

die() {
	echo "install: $*" >&2
	exit 1
}

# The prefix ends up inside the unit's ExecStart= and in sed replacements:
# keep it to characters that need no quoting in either.
for v in PREFIX UNITDIR; do
	case "${!v}" in
	/*) ;;
	*) die "$v must be an absolute path, got '${!v}'" ;;
	esac
	if [[ ! "${!v}" =~ ^[A-Za-z0-9._/+-]+$ ]]; then
		die "$v may only hold letters, digits and . _ / + -, got '${!v}'"
	fi
done
PREFIX="${PREFIX%/}"
[ -n "$PREFIX" ] || PREFIX=/
[ -z "$DESTDIR" ] || [[ "$DESTDIR" = /* ]] || DESTDIR="$caller_pwd/$DESTDIR"
DESTDIR="${DESTDIR%/}"

[ -x bin/llmgwd ] || die "bin/llmgwd is missing: run 'make' first"

bindir="$PREFIX/bin"
[ "$PREFIX" = / ] && bindir=/bin
docdir="${PREFIX%/}/share/doc/llmgw"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# put SRC DEST MODE: installs SRC as DEST through a temporary file in the
# same directory and a rename, so a running binary or a reader never sees
# half a file. Prints what happened.
put() {
	local src=$1 dest=$2 mode=$3 what=${4:-installed}
	local dir
	dir=$(dirname "$dest")
	if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
		chmod "$mode" "$dest"
		echo "  unchanged  $dest"
		return
	fi
	[ -f "$dest" ] && what=updated
	mkdir -p "$dir"
	local t
	t=$(mktemp "$dir/.llmgw-install.XXXXXX")
	if ! install -m "$mode" "$src" "$t"; then
		rm -f "$t"
		die "cannot write $dest"
	fi
	mv -f "$t" "$dest"
	printf '  %-9s  %s (mode %s)\n' "$what" "$dest" "$mode"
}

echo "install: PREFIX=$PREFIX DESTDIR=${DESTDIR:-(none)}"

# The daemon.
put bin/llmgwd "$DESTDIR$bindir/llmgwd" 0755

# The unit, with the program paths moved to PREFIX.
sed -e "s|/usr/local/bin/llmgwd|$bindir/llmgwd|g" \
	-e "s|/usr/local/share/doc/llmgw|$docdir|g" systemd/llmgw.service >"$tmp/llmgw.service"
grep -q "^ExecStart=$bindir/llmgwd " "$tmp/llmgw.service" ||
	die "systemd/llmgw.service: no ExecStart=/usr/local/bin/llmgwd line to rewrite"
put "$tmp/llmgw.service" "$DESTDIR$UNITDIR/llmgw.service" 0644

# The configuration directory is world-readable: the daemon runs as a
# dynamic user and must read llmgw.conf. Secrets go in llmgw.env.
mkdir -p "$DESTDIR$SYSCONFDIR"
chmod 0755 "$DESTDIR$SYSCONFDIR"

conf="$DESTDIR$SYSCONFDIR/llmgw.conf"
if [ ! -e "$conf" ]; then
	put conf/llmgw.conf "$conf" 0644
elif cmp -s conf/llmgw.conf "$conf"; then
	echo "  unchanged  $conf"
	rm -f "$conf.new"
else
	put conf/llmgw.conf "$conf.new" 0644
	echo "  kept       $conf (it differs from the shipped one: compare with $conf.new)"
fi

env="$DESTDIR$SYSCONFDIR/llmgw.env"
if [ ! -e "$env" ]; then
	put systemd/llmgw.env "$env" 0600
else
	mode=$(stat -c %a "$env")
	echo "  kept       $env (never overwritten)"
	if [ "$mode" != 600 ] && [ "$mode" != 400 ]; then
		echo "install: warning: $env has mode $mode; it holds API keys: chmod 600 $env" >&2
	fi
fi

# Documentation.
for f in README.md docs/*.md; do
	put "$f" "$DESTDIR$docdir/$(basename "$f")" 0644
done

if [ -z "$DESTDIR" ]; then
	cat <<EOF
install: done. Next:
  1. put the provider keys in $SYSCONFDIR/llmgw.env
  2. $bindir/llmgwd -t -c $SYSCONFDIR/llmgw.conf
  3. scripts/service.sh enable     (systemctl daemon-reload && systemctl enable --now llmgw)
     or, after an upgrade: scripts/service.sh restart
EOF
else
	echo "install: done (staged under $DESTDIR)"
fi
