#!/bin/sh
# Installs what the VM tests (tests/vm, tests/test_vm_*.py) need to build and
# boot their small systemd VM, and says what it installs. Idempotent: exits 0
# at once when everything is already there.
#   qemu-system-x86     qemu-system-x86_64, run under TCG emulation
#   debootstrap         builds the guest's Debian root filesystem
#   linux-image-amd64   a /boot/vmlinuz-* with its /lib/modules to boot (the
#                       running kernel may have neither; the VM makes its own
#                       small initramfs from these modules)
#   e2fsprogs           mkfs.ext4 -d: the disk images, without mounting
set -eu
PATH="$PATH:/usr/sbin:/sbin"

have_kernel() {
  for k in /boot/vmlinuz-*; do
    [ -f "$k" ] && [ -f "/lib/modules/${k#/boot/vmlinuz-}/modules.dep" ] && return 0
  done
  return 1
}

missing=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$missing qemu-system-x86"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v mkfs.ext4 >/dev/null 2>&1 || missing="$missing e2fsprogs"
have_kernel || missing="$missing linux-image-amd64"

if [ -z "$missing" ]; then
  echo "install-vm-deps: qemu, debootstrap, mkfs.ext4 and a kernel with its modules are present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-vm-deps: please install:$missing (no apt-get here)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-vm-deps: installing:$missing needs root: run with sudo" >&2
  exit 1
fi
echo "install-vm-deps: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: qemu's recommends pull in a graphics stack, the
# kernel's pull in firmware; the tests need neither.
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null

if ! have_kernel; then
  echo "install-vm-deps: still no /boot/vmlinuz-* with its /lib/modules/*/modules.dep" >&2
  exit 1
fi
echo "install-vm-deps: done"
