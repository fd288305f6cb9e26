#!/usr/bin/env bash
# `make demo`: brings up the demo lab (3 routers and a middlebox that strips MP_CAPABLE from
# SYNs, in front of a kernel MPTCP server), shows what happens to a real MPTCP connection
# through it, and takes it down again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: the lab needs root (network namespaces); run: sudo make demo" >&2
  exit 1
fi

swift build >/dev/null
bin=.build/debug/mptracebox
name="demo$$"
name=${name:0:12}
trap '"$bin" lab down "$name" >/dev/null 2>&1 || true' EXIT INT TERM

"$bin" lab up --name "$name" --scenario demo
server=198.18.4.2

echo
echo "== A kernel MPTCP client connects to $server:80 through the lab"
"$bin" lab exec "$name" hop3 -- timeout 3 tcpdump -lnv -i left -c 1 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0' 2>/dev/null \
  | sed 's/^/  hop3 in : /' &
"$bin" lab exec "$name" hop3 -- timeout 3 tcpdump -lnv -i right -c 1 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0' 2>/dev/null \
  | sed 's/^/  hop3 out: /' &
sleep 0.5
"$bin" lab exec "$name" client -- python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)  # IPPROTO_MPTCP
s.connect(('$server', 80)); s.sendall(b'hello through the lab'); s.shutdown(socket.SHUT_WR)
print('  echoed:', s.recv(100))"
wait

echo
echo "== The kernel's verdict (client nstat): the SYN/ACK came back without MP_CAPABLE"
"$bin" lab exec "$name" client -- nstat -az 'MPTcpExt*' | awk '$2 != 0 && /MPTcp/ {print "  " $1, $2}'

if "$bin" --help | grep -q '^ *trace '; then
  echo
  echo "== mptracebox trace through the lab"
  "$bin" lab exec "$name" client -- "$PWD/$bin" trace "$server" --port 80 || true
fi

echo
"$bin" lab status "$name" | sed -n '/middlebox rules/,$p'
