#!/usr/bin/env bash
# The README's main-job command (`make demo`): brings up the built-in demo lab (routers, a
# middlebox that strips MP_CAPABLE from SYNs, a kernel MPTCP server), traces through it over
# IPv4 and IPv6, and takes the lab down again, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: the lab needs root (network namespaces); run: sudo make demo" >&2
  exit 77
fi
scripts/install-deps.sh
swift build
bin="$(swift build --show-bin-path)/mptracebox"
name="demo"

"$bin" lab down "$name" >/dev/null 2>&1 || true
trap '"$bin" lab down "$name" >/dev/null 2>&1 || true' EXIT INT TERM

up="$("$bin" lab up --name "$name" --scenario demo)"
echo "$up" | sed -n '1,3p'
server4="$(echo "$up" | sed -nE 's/.*server mptcp:80 at ([0-9.]+) and \[([0-9a-f:]+)\].*/\1/p' | head -n1)"
server6="$(echo "$up" | sed -nE 's/.*server mptcp:80 at ([0-9.]+) and \[([0-9a-f:]+)\].*/\2/p' | head -n1)"
echo

echo "\$ mptracebox trace -n --max-ttl 8 $server4"
"$bin" lab exec "$name" client -- "$bin" trace -n --max-ttl 8 "$server4"
echo "\$ mptracebox trace -n --max-ttl 8 $server6"
"$bin" lab exec "$name" client -- "$bin" trace -n --max-ttl 8 "$server6"
echo "The middlebox at hop 3 strips MP_CAPABLE in its forward hook: hop 4 is the first to quote the probe without it."
