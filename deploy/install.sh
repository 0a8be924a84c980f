#!/usr/bin/env bash
# Installs fluxedge as a service on Raspberry Pi OS / Debian (bookworm or later):
#   user and group 'fluxedge' (in dialout), venv /opt/fluxedge/venv, configs /etc/fluxedge,
#   data /var/lib/fluxedge, systemd units, udev rules for stable serial names.
# Idempotent: run it again after 'git pull' to upgrade; existing configs are never overwritten.
#
#   sudo deploy/install.sh                 # install (station and collector units; none enabled)
#   sudo deploy/install.sh --station-only  # a tower's node: without the collector's notification libraries
#   deploy/install.sh --dry-run --destdir /tmp/root   # write files under /tmp/root, print the rest
#
# Then: edit /etc/fluxedge/station.toml, 'fluxedge station check -c /etc/fluxedge/station.toml',
# 'systemctl enable --now fluxedge-station', and follow it with 'journalctl -u fluxedge-station -f'.
set -euo pipefail

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0"
    echo "options: --dry-run (print commands that need root instead of running them), --destdir DIR (install"
    echo "         files under DIR; implies nothing about services), --no-apt (do not install Debian packages),"
    echo "         --station-only (leave out the collector's notification libraries)"
}

DRY_RUN=0
DESTDIR=""
APT=1
PACKAGE_EXTRAS="[collector,science,web,cluster,s3]"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --destdir) [ $# -ge 2 ] || { echo "install.sh: --destdir needs a directory" >&2; exit 2; }
                   DESTDIR="${2%/}"; shift ;;
        --no-apt) APT=0 ;;
        --station-only) PACKAGE_EXTRAS="" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/fluxedge
CONF=/etc/fluxedge
DATA=/var/lib/fluxedge
USER_NAME=fluxedge

# Commands that change the system (users, packages, services) run only for real.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

if [ "$DRY_RUN" -eq 0 ] && [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0), or try --dry-run --destdir DIR" >&2
    exit 1
fi

# File operations go to DESTDIR when given; a dry run without DESTDIR only prints them.
fs() {
    if [ "$DRY_RUN" -eq 1 ] && [ -z "$DESTDIR" ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# install -D with mode, only if the content changed; configs are kept when present.
put() {  # put MODE SRC DEST [keep]
    local mode="$1" src="$2" dest="$DESTDIR$3" keep="${4:-}"
    if [ -e "$dest" ] && { [ -n "$keep" ] || cmp -s "$src" "$dest"; }; then
        echo "kept $3"
        return
    fi
    fs install -D -m "$mode" "$src" "$dest"
    echo "installed $3"
}

# 1. Packages (Python venv support; serial access needs nothing else).
if [ "$APT" -eq 1 ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

# 2. A system user with no login, in dialout for the serial ports.
if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin \
        --groups dialout "$USER_NAME"
else
    echo "kept user $USER_NAME"
    id -nG "$USER_NAME" | grep -qw dialout || run usermod -a -G dialout "$USER_NAME"
fi

# 3. Directories.
fs install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$CONF"
fs install -d -m 0750 "$DESTDIR$DATA"
run chown "$USER_NAME:$USER_NAME" "$DESTDIR$DATA"
run chgrp "$USER_NAME" "$DESTDIR$CONF"

# 4. The package in its own venv (upgraded in place on re-runs).
if [ ! -x "$DESTDIR$PREFIX/venv/bin/python" ]; then
    run python3 -m venv "$PREFIX/venv"
fi
run "$PREFIX/venv/bin/python" -m pip install -q --upgrade "$SRC$PACKAGE_EXTRAS"

# 5. Configs: the documented examples, only where none exists yet (they hold passwords: 0640).
put 0640 "$SRC/deploy/examples/station.toml" "$CONF/station.toml" keep
put 0640 "$SRC/deploy/examples/collector.toml" "$CONF/collector.toml" keep
run chgrp "$USER_NAME" "$DESTDIR$CONF/station.toml" "$DESTDIR$CONF/collector.toml"

# 6. systemd units and udev rules.
put 0644 "$SRC/deploy/systemd/fluxedge-station.service" /etc/systemd/system/fluxedge-station.service
put 0644 "$SRC/deploy/systemd/fluxedge-collector.service" /etc/systemd/system/fluxedge-collector.service
put 0644 "$SRC/deploy/udev/99-fluxedge-serial.rules" /etc/udev/rules.d/99-fluxedge-serial.rules
if [ -z "$DESTDIR" ]; then
    run systemctl daemon-reload
    run udevadm control --reload-rules
    run udevadm trigger --subsystem-match=tty
fi

cat <<MSG
fluxedge installed. Next:
  1. edit $CONF/station.toml (site, instruments: ports such as /dev/fluxedge-sonic, MQTT broker)
     and the serials in /etc/udev/rules.d/99-fluxedge-serial.rules (see the comments there)
  2. check:  sudo -u $USER_NAME $PREFIX/venv/bin/fluxedge station check -c $CONF/station.toml
  3. start:  sudo systemctl enable --now fluxedge-station
  4. watch:  journalctl -u fluxedge-station -f      (warnings only: add -p warning)
MSG
