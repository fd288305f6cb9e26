#!/usr/bin/env bash
# Installs the Debian packages mptracebox builds and tests with. Idempotent: when every
# package is already installed it only checks (dpkg) and returns; it runs apt-get update
# and install only for what is missing. Needs root for the install step.
set -euo pipefail

packages=(
  libpcap-dev libnet1-dev libssl-dev libnetfilter-queue-dev libsqlite3-dev
  nftables iptables iproute2 tshark tcpdump ethtool python3 pkg-config
  python3-xmlschema python3-junitparser iputils-ping
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
