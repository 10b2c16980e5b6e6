"""A small Debian VM with a real systemd and cgroup v2, for the cgroup tests.

These machines have no systemd as PID 1 and hybrid cgroups, so the cgroup
and systemd cases run in a VM under qemu (TCG). The base image (debootstrap
minbase + systemd, a user `kuser` with linger and subordinate ids, cpu/io/
memory/pids delegated to user managers) is built once and cached under
/var/cache/kennel-vm, keyed on everything that goes into it. Each run boots
it read-only (snapshot) with a small payload disk holding the freshly built
kennel binaries and the case scripts; a boot-time unit runs the cases and
powers off. Results come back framed on the serial console.
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

CACHE = "/var/cache/kennel-vm"
IMAGE_VERSION = "6"  # bump when the image recipe changes
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "dbus-user-session", "libpam-systemd",
    "uidmap", "iproute2", "procps", "busybox-static", "libcap2-bin", "util-linux",
    # for bench/vm-start.py, side by side with kennel
    "crun", "runc", "hyperfine",
    # rootless podman with the systemd cgroup manager, driving kennel-oci
    "podman", "containernetworking-plugins",
]
USER_UID = 1000

RUN_UNIT = """[Unit]
Description=kennel VM test cases
After=multi-user.target user@1000.service
Wants=user@1000.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /payload && mount -o ro /dev/vdb /payload && /bin/sh /payload/run.sh > /dev/ttyS0 2>&1'
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
"""

DELEGATE_CONF = "[Service]\nDelegate=cpu cpuset io memory pids\n"

RUN_SH = r"""#!/bin/sh
set -u
echo "@@KENNEL-VM-UP@@"
install -m 0755 /payload/bin/kennel /usr/local/bin/kennel
install -d /usr/local/libexec/kennel
install -m 0755 /payload/bin/kennel-idmap /usr/local/libexec/kennel/kennel-idmap
setcap cap_setuid,cap_setgid=ep /usr/local/libexec/kennel/kennel-idmap
[ -f /payload/bin/kennel-oci ] && install -m 0755 /payload/bin/kennel-oci /usr/local/bin/kennel-oci
# Where `make install` puts the generator with PREFIX=/usr/local, and
# systemd 252 looks.
for g in user system; do
  [ -f /payload/bin/kennel-generator ] && install -D -m 0755 /payload/bin/kennel-generator /usr/local/lib/systemd/$g-generators/kennel-generator
done
for i in $(seq 120); do [ -S /run/user/1000/bus ] && break; sleep 0.5; done
[ -S /run/user/1000/bus ] || echo "@@KENNEL-VM-NOTE no user bus after 60s@@"
for c in $(cat /payload/cases/ORDER); do
  u=$(cat /payload/cases/$c.user); t=$(cat /payload/cases/$c.timeout)
  echo "@@KENNEL-CASE-BEGIN $c@@"
  if [ "$u" = root ]; then
    timeout -k 5 "$t" /bin/sh /payload/cases/$c.sh 2>&1 < /dev/null
  else
    # Inside kuser's user manager, as a login session's process would be.
    timeout -k 5 "$t" runuser -u kuser -- env -i HOME=/home/kuser USER=kuser \
      XDG_RUNTIME_DIR=/run/user/1000 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus \
      PATH=/usr/local/bin:/usr/bin:/bin \
      systemd-run --user --wait --pipe --quiet --collect -- /bin/sh /payload/cases/$c.sh 2>&1 < /dev/null
  fi
  echo "@@KENNEL-CASE-END $c rc=$?@@"
done
echo "@@KENNEL-VM-DONE@@"
"""


@dataclass
class CaseResult:
    rc: int
    output: str


def _kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    for k in reversed(kernels):
        initrd = k.replace("vmlinuz-", "initrd.img-")
        if os.path.exists(initrd):
            return k, initrd
    return None, None


def vm_available():
    """(True, "") or (False, why): the tests skip with the reason."""
    for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs")]:
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return False, f"{tool} is missing (Debian package {pkg}; make test-deps installs it)"
    k, _ = _kernel()
    if not k:
        return False, "no /boot/vmlinuz-* with an initrd (Debian package linux-image-amd64; make test-deps installs it)"
    return True, ""


def _mirror():
    """The Debian mirror this host's apt uses (read, never hard-coded)."""
    text = ""
    for f in glob.glob("/etc/apt/sources.list.d/*.sources") + ["/etc/apt/sources.list"]:
        try:
            text += open(f).read() + "\n"
        except OSError:
            pass
    for block in text.split("\n\n"):
        if "bookworm" in block and "security" not in block:
            m = re.search(r"^URIs:\s*(\S+)", block, re.M)
            if m:
                return m.group(1)
    m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
    if m:
        return m.group(1)
    raise RuntimeError("cannot find the host's Debian mirror in /etc/apt")


def _key(kernel):
    h = hashlib.sha256()
    for part in [IMAGE_VERSION, " ".join(PACKAGES), RUN_UNIT, DELEGATE_CONF, os.path.basename(kernel)]:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def base_image(log=print):
    """Path of the cached base image, building it if needed."""
    kernel, _ = _kernel()
    os.makedirs(CACHE, exist_ok=True)
    image = os.path.join(CACHE, f"base-{_key(kernel)}.img")
    if os.path.exists(image):
        return image
    log("vm: building the base image (debootstrap, about a minute)...")
    work = tempfile.mkdtemp(dir=CACHE, prefix="build-")
    try:
        root = os.path.join(work, "root")
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), "bookworm", root, _mirror()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        _write(f"{root}/etc/hostname", "kennel-vm\n")
        _write(f"{root}/etc/fstab", "/dev/vda / ext4 rw 0 1\n")
        subprocess.run(["chroot", root, "useradd", "-m", "-u", str(USER_UID), "-s", "/bin/sh", "kuser"], check=True)
        _write(f"{root}/etc/subuid", "kuser:100000:65536\n")
        _write(f"{root}/etc/subgid", "kuser:100000:65536\n")
        os.makedirs(f"{root}/var/lib/systemd/linger", exist_ok=True)
        open(f"{root}/var/lib/systemd/linger/kuser", "w").close()
        _write(f"{root}/etc/systemd/system/user@.service.d/delegate.conf", DELEGATE_CONF)
        _write(f"{root}/etc/systemd/system/vm-cases.service", RUN_UNIT)
        wants = f"{root}/etc/systemd/system/multi-user.target.wants"
        os.makedirs(wants, exist_ok=True)
        os.symlink("/etc/systemd/system/vm-cases.service", f"{wants}/vm-cases.service")
        # Units that wait for hardware or the network this VM does not have.
        for unit in ["serial-getty@ttyS0.service", "getty@tty1.service", "systemd-timesyncd.service",
                     "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"]:
            link = f"{root}/etc/systemd/system/{unit}"
            if not os.path.lexists(link):
                os.symlink("/dev/null", link)
        shutil.rmtree(f"{root}/var/cache/apt/archives", ignore_errors=True)
        tmp_image = os.path.join(work, "base.img")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "kennelvm", "-d", root, tmp_image, "1200M"], check=True, stdout=subprocess.DEVNULL)
        os.rename(tmp_image, image)
        log(f"vm: base image cached at {image}")
        return image
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", work], check=False)


def run_batch(cases, binaries, log=print):
    """Boots the VM once and runs `cases` [(name, user, script, timeout_s)]
    in order. `binaries` maps kennel, kennel-oci, kennel-idmap and
    kennel-generator to host paths.
    Returns {name: CaseResult}; a case that did not finish has rc -1."""
    kernel, initrd = _kernel()
    image = base_image(log)
    work = tempfile.mkdtemp(prefix="kennel-vm-run-")
    try:
        payload = os.path.join(work, "payload")
        os.makedirs(f"{payload}/bin")
        os.makedirs(f"{payload}/cases")
        for name, path in binaries.items():
            shutil.copy(path, f"{payload}/bin/{name}")
            os.chmod(f"{payload}/bin/{name}", 0o755)
        _write(f"{payload}/run.sh", RUN_SH, 0o755)
        order = []
        for name, user, script, timeout in cases:
            order.append(name)
            _write(f"{payload}/cases/{name}.sh", "set -u\n" + script, 0o755)
            _write(f"{payload}/cases/{name}.user", user)
            _write(f"{payload}/cases/{name}.timeout", str(timeout))
        _write(f"{payload}/cases/ORDER", "\n".join(order) + "\n")
        os.chmod(payload, 0o755)
        os.chmod(f"{payload}/cases", 0o755)
        os.chmod(f"{payload}/bin", 0o755)
        payload_img = os.path.join(work, "payload.img")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", payload, payload_img, "64M"], check=True, stdout=subprocess.DEVNULL)
        console = os.path.join(work, "console.log")
        total = 240 + sum(c[3] + 10 for c in cases)
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 root=/dev/vda rw quiet loglevel=1 systemd.show_status=0 panic=-1",
            "-drive", f"file={image},format=raw,if=virtio,snapshot=on",
            "-drive", f"file={payload_img},format=raw,if=virtio",
            "-display", "none", "-serial", f"file:{console}", "-monitor", "none",
            "-no-reboot", "-nic", "none",
        ]
        started = time.monotonic()
        log(f"vm: booting for {len(cases)} case(s)...")
        try:
            subprocess.run(argv, check=False, timeout=total, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            log(f"vm: no power-off within {total}s; reading what the console has")
        log(f"vm: done in {time.monotonic() - started:.0f}s")
        text = open(console, errors="replace").read() if os.path.exists(console) else ""
        return parse_console(text, [c[0] for c in cases])
    finally:
        subprocess.run(["rm", "-rf", work], check=False)


def parse_console(text, names):
    text = text.replace("\r\n", "\n")
    results = {}
    for name in names:
        m = re.search(
            rf"@@KENNEL-CASE-BEGIN {re.escape(name)}@@\n(.*?)@@KENNEL-CASE-END {re.escape(name)} rc=(\d+)@@",
            text, re.S)
        if m:
            results[name] = CaseResult(int(m.group(2)), m.group(1))
        else:
            tail = text[-3000:]
            results[name] = CaseResult(-1, f"case did not finish; console tail:\n{tail}")
    return results
