#!/bin/sh
# Installs the Debian packages kennel needs, and says so.
#   install-deps.sh build     what `make build` needs: libseccomp's
#                             archive, linked into the static binaries
#   install-deps.sh runtime   what `make install` needs (setcap)
#   install-deps.sh bench     what `make bench` needs (the test harness's
#                             users, busybox rootfs and pytest; bwrap,
#                             hyperfine and shadow's helpers to compare)
#   install-deps.sh bench-oci what `make bench-oci` needs: bench's set,
#                             runc and rootless podman (conmon,
#                             slirp4netns, fuse-overlayfs)
#   install-deps.sh bench-net what `make bench-net` needs: bench's set,
#                             iperf3, pasta and slirp4netns
#   install-deps.sh vm        what `make bench-vm` and the VM tests need
#                             (qemu, debootstrap, mkfs.ext4, a kernel)
#   install-deps.sh package   what `make deb` and `make rpm` need, and the
#                             package test: dpkg-buildpackage, debhelper,
#                             lintian, rpmbuild, libseccomp's shared
#                             library, man and groff to render the pages,
#                             bwrap and debootstrap for a fresh system
#   install-deps.sh test      what `make test` needs: all of the above,
#                             sudo for the install test, keyutils (keyctl)
#                             for the keyring attack, strace for
#                             kennel-idmap under ptrace, ip (iproute2)
#                             for the bridge tests' namespaces, runc for the
#                             bundles it writes; podman (with conmon,
#                             slirp4netns, fuse-overlayfs) and containerd
#                             (with ctr) for the client tests, and script
#                             to give `podman run -it` a terminal;
#                             distrobox, toolbox and mmdebstrap (their
#                             image, from the Debian mirror) for the
#                             distrobox and toolbox tests
set -eu
# A pair is PACKAGE:COMMAND, or PACKAGE:FILE-PATTERN for a file.
build="libseccomp-dev:/usr/lib/*/libseccomp.a"
runtime="libcap2-bin:setcap"
# bench/start-latency.py imports the harness in tests/conftest.py, which
# imports pytest: /usr/bin/python3's module comes with python3-pytest.
bench="$runtime busybox-static:busybox python3-pytest:pytest-3 uidmap:newuidmap util-linux:setpriv util-linux:unshare passwd:useradd bubblewrap:bwrap hyperfine:hyperfine"
# The real clients that drive a runtime (tests/test_podman.py and
# tests/test_containerd.py); ctr comes with containerd.
podman="podman:podman conmon:conmon slirp4netns:slirp4netns fuse-overlayfs:fuse-overlayfs"
clients="$podman containerd:containerd containerd:ctr bsdutils:script"
# tests/test_distrobox.py: both tools over rootless podman, on an image
# mmdebstrap makes; toolbox create asks for a system bus, which the test
# starts with dbus-daemon where none runs.
boxes="distrobox:distrobox podman-toolbox:toolbox mmdebstrap:mmdebstrap dbus-daemon:dbus-daemon skopeo:skopeo zstd:zstd"
package="dpkg-dev:dpkg-buildpackage debhelper:dh lintian:lintian rpm:rpmbuild libseccomp-dev:/usr/lib/*/libseccomp.so $runtime man-db:man groff-base:groff bubblewrap:bwrap debootstrap:debootstrap"
vm="qemu-system-x86:qemu-system-x86_64 debootstrap:debootstrap e2fsprogs:mkfs.ext4"
case "${1:-}" in
  build) need=$build ;;
  runtime) need=$runtime ;;
  bench) need=$bench ;;
  bench-oci) need="$bench runc:runc $podman" ;;
  bench-net) need="$bench iperf3:iperf3 slirp4netns:slirp4netns passt:pasta iproute2:ip" ;;
  vm) need=$vm ;;
  package) need=$package ;;
  test) need="$build $bench $vm $package sudo:sudo keyutils:keyctl strace:strace runc:runc passt:pasta iproute2:ip $clients $boxes" ;;
  *) echo "usage: $0 build|runtime|bench|bench-oci|bench-net|vm|package|test" >&2; exit 2 ;;
esac
missing=""
for pair in $need; do
  pkg=${pair%%:*}; cmd=${pair#*:}
  case " $missing " in *" $pkg "*) continue ;; esac
  case $cmd in
    /*) # shellcheck disable=SC2086
        ls $cmd >/dev/null 2>&1 && continue ;;
  esac
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
# The VM boots a Debian kernel under qemu: it needs one in /boot.
case "$1" in
  vm|test) ls /boot/vmlinuz-* >/dev/null 2>&1 || missing="$missing linux-image-amd64" ;;
esac
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
# $missing is a list of package names: split on purpose.
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
