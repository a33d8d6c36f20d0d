#!/usr/bin/env bash
# Debian packages the test suite runs for real (issue 5): promtool and prometheus, amtool and
# alertmanager, docker-compose (config validation only: no Docker engine is needed), chromium
# (the dashboard test) and openssl (test certificates). Installs only what is missing; needs
# root or sudo the first time. `make test` calls it; so does `.ci/run`.
set -euo pipefail
PACKAGES=(prometheus prometheus-alertmanager docker-compose chromium openssl)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get > /dev/null; then
  echo "system-packages: apt-get not found; install ${missing[*]} (Debian package names) by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo > /dev/null; then
    echo "system-packages: run as root or install sudo; missing: ${missing[*]}" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "system-packages: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
