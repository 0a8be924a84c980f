#!/usr/bin/env bash
# Sets up fluxedge on a fresh Debian (or Raspberry Pi OS) machine for the demo and the tests:
# mosquitto, InfluxDB and chromium from apt, the package with its collector, science, web, cluster and s3 extras
# and test tools into ./.venv.
# Run as root or as a user with sudo. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

packages=()
have mosquitto || packages+=(mosquitto mosquitto-clients)
have influxd || packages+=(influxdb)
have openssl || packages+=(openssl)  # the tests make the TLS certificates of their brokers
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
have chromium || packages+=(chromium)  # the web page's tests drive Debian's chromium headless
have chromedriver || packages+=(chromium-driver)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "setup: installing ${packages[*]} with apt"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
echo "setup: installing fluxedge into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test,collector,science,web,cluster,s3]'
echo "setup: done (.venv/bin/fluxedge --help)"
