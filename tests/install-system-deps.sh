#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests need, idempotently: Net::Jabber for the
# legacy-client tests, slapd and ldap-utils for the LDAP provider (the tests run their own
# slapd from a temporary folder on loopback), chromium for the browser tests (Playwright drives
# /usr/bin/chromium; it never downloads a browser of its own) and fonts-dejavu-core so its
# screenshots have legible text, nginx for the reverse-proxy test of docs/web.md (run from a
# temporary folder, never as the system service), and libnginx-mod-rtmp with ffmpeg for the
# stream authority's end-to-end test (nginx-rtmp asks chatgate's hooks; ffmpeg publishes and
# plays), and php-cli, whose built-in server runs the remote-HTTP authentication service of
# docs/admin.md (the seed's own example script, extracted at test time), postgresql and
# redis-server for the storage and cluster tests (each test session runs a throwaway
# PostgreSQL cluster, initdb'd as the postgres user under a temporary folder, and its own
# redis-server, both on free loopback ports; the system services are never used). Nothing is installed
# when every package is already present, and no package's system service is started by the install.
set -euo pipefail
packages=(openssl libnet-jabber-perl slapd ldap-utils sqlite3 chromium fonts-dejavu-core nginx
  libnginx-mod-rtmp ffmpeg php-cli postgresql redis-server prosody prosody-modules)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  # A system slapd listening on every interface is not wanted: keep services from starting.
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod 755 "$policy"
    created_policy=1
  fi
  trap '[ -n "$created_policy" ] && $sudo_cmd rm -f "$policy"' EXIT
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
