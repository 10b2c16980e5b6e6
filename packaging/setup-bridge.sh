#!/bin/sh
# make install's optional bridge for --net bridge, only when asked
# (KENNEL_BRIDGE and KENNEL_BRIDGE_SUBNET): creates the bridge with the
# subnet's first address, and adds to /etc/kennel/net.conf the bridge's
# line and one granting the installing user 4 veths on it, unless
# lines for them are there already. Nothing else (no NAT, no forwarding).
#   setup-bridge.sh KENNEL_NET BRIDGE SUBNET [USER] [DESTDIR]
set -eu
helper=$1 bridge=$2 subnet=$3 user=${4:-} destdir=${5:-}
if [ -z "$bridge" ] || [ -z "$subnet" ]; then
  echo "make install: set both KENNEL_BRIDGE and KENNEL_BRIDGE_SUBNET (e.g. KENNEL_BRIDGE=kennel0 KENNEL_BRIDGE_SUBNET=10.88.0.0/24)" >&2
  exit 1
fi
if [ -n "$destdir" ]; then
  echo "make install: KENNEL_BRIDGE creates a bridge on this machine, which a DESTDIR install does not touch; run kennel-net setup-bridge on the target instead" >&2
  exit 1
fi
"$helper" setup-bridge "$bridge" "$subnet"
conf=/etc/kennel/net.conf
install -d -m 0755 /etc/kennel
[ -e "$conf" ] || install -m 0644 /dev/null "$conf"
if ! grep -Eq "^[[:space:]]*bridge[[:space:]]+$bridge[[:space:]]" "$conf"; then
  echo "bridge $bridge $subnet" >> "$conf"
  echo "make install: added to $conf: bridge $bridge $subnet"
fi
if [ -n "$user" ] && ! grep -Eq "^[[:space:]]*$user[[:space:]]+veth[[:space:]]+$bridge[[:space:]]" "$conf"; then
  echo "$user veth $bridge 4" >> "$conf"
  echo "make install: added to $conf: $user veth $bridge 4"
fi
