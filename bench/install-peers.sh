#!/usr/bin/env bash
# Installs what `make bench` needs besides Python packages, idempotently: Debian's Prosody and
# ejabberd (their system services are neither started nor enabled here: the harness runs each
# server from a private config on loopback ports), and util-linux's taskset for core pinning.
# Nothing is installed when every package is already present.
set -euo pipefail
packages=(prosody ejabberd util-linux openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  # Keep the packages' services from starting on install: the benchmark starts its own
  # servers, and a system Prosody/ejabberd on 5222 would only be in the way.
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod 755 "$policy"
    created_policy=1
  fi
  trap '[ -n "$created_policy" ] && $sudo_cmd rm -f "$policy"' EXIT
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
for cmd in prosody erl taskset; do
  command -v "$cmd" >/dev/null || { echo "install-peers: $cmd is missing after install" >&2; exit 1; }
done
