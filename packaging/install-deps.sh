#!/bin/sh
# Installs the Debian packages kennel needs, and says so.
#   install-deps.sh runtime   what `make install` needs (setcap)
#   install-deps.sh test      what `make test` needs (busybox rootfs, pytest, shadow's helpers to compare)
set -eu
case "${1:-}" in
  runtime) need="libcap2-bin:setcap" ;;
  test) need="libcap2-bin:setcap busybox-static:busybox python3-pytest:pytest-3 uidmap:newuidmap util-linux:setpriv passwd:useradd bubblewrap:bwrap hyperfine:hyperfine qemu-system-x86:qemu-system-x86_64 debootstrap:debootstrap e2fsprogs:mkfs.ext4" ;;
  *) echo "usage: $0 runtime|test" >&2; exit 2 ;;
esac
missing=""
for pair in $need; do
  pkg=${pair%%:*}; cmd=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
# The cgroup tests boot a Debian kernel under qemu: they need one in /boot.
if [ "$1" = test ] && ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
  missing="$missing linux-image-amd64"
fi
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "kennel: please install:$missing (no apt-get here)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "kennel: installing:$missing needs root: run with sudo" >&2
  exit 1
fi
echo "kennel: installing Debian packages:$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
