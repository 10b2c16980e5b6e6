"""The VM's base disk image: Debian bookworm with systemd, built once, cached.

`base_image()` returns the path of a raw ext4 image under CACHE_DIR, building
it first when no image with the same key exists. The key hashes everything
that goes into the image (IMAGE_VERSION, the package list, every file this
module writes into it, and the kernel it boots with, whose modules are copied
in), so a change to any of them builds a new image and an unchanged recipe
reuses the old one. The image is booted with snapshot=on, so it stays
pristine; a build goes to a temporary name and is renamed into place, under a
lock, so concurrent test runs neither see a half-built image nor build twice.

Nothing here touches the host's systemd or cgroups: debootstrap and a few
`chroot` calls (useradd, depmod) work inside the build directory only.
"""

import ctypes
import fcntl
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Bump when the recipe changes in a way the key below would not notice.
IMAGE_VERSION = "1"

CACHE_DIR = os.environ.get("KENNEL_VM_CACHE", "/var/cache/kennel-vm")
IMAGE_PREFIX = "vmbase-"  # this module's images in CACHE_DIR
IMAGE_SIZE = "1536M"
SUITE = "bookworm"
HOSTNAME = "kennel-vm"
USER = "kuser"
USER_UID = 1000
SUBID_RANGE = "100000:65536"

PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "dbus-user-session", "libpam-systemd",
    "uidmap", "iproute2", "procps", "busybox-static", "crun", "runc",
    "util-linux", "libcap2-bin", "kmod",
]

# Units that would slow the boot or wait for something this VM has not: the
# serial gettys wait 90 s for a device unit that never appears (there is no
# udev); the "needs update" and first-boot units run on every boot of a
# snapshot; timers are of no use in a VM that lives a minute.
MASKED_UNITS = [
    "serial-getty@ttyS0.service", "serial-getty@ttyS1.service", "getty@tty1.service",
    "console-getty.service", "systemd-firstboot.service", "systemd-hwdb-update.service",
    "ldconfig.service", "systemd-journal-catalog-update.service", "systemd-update-done.service",
    "systemd-networkd-wait-online.service", "systemd-timesyncd.service",
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "man-db.timer", "systemd-tmpfiles-clean.timer",
    # Modules and file systems for hardware this VM has not; the random seed
    # unit may wait for entropy; the journal is volatile, nothing to flush.
    "modprobe@drm.service", "modprobe@efi_pstore.service", "modprobe@dm_mod.service",
    "systemd-pstore.service", "systemd-random-seed.service", "systemd-journal-flush.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "proc-sys-fs-binfmt_misc.automount",
    "systemd-binfmt.service",
]

# Port the results go to; ttyS0 is the kernel's and systemd's console.
RESULTS_TTY = "/dev/ttyS1"

RUN_UNIT_NAME = "kennel-vm-run.service"
RUN_UNIT = f"""[Unit]
Description=kennel VM tests: run the payload disk's run.sh, then power off
After=multi-user.target user@{USER_UID}.service
Wants=user@{USER_UID}.service

[Service]
Type=oneshot
TimeoutStartSec=infinity
StandardInput=null
ExecStart=/usr/local/sbin/kennel-vm-run
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
"""

RUN_SCRIPT = f"""#!/bin/sh
# Mounts the payload disk at /payload and runs its run.sh, everything it
# prints going to {RESULTS_TTY} (read by the host as results.log).
exec >{RESULTS_TTY} 2>&1 </dev/null
stty -F {RESULTS_TTY} -opost -echo 2>/dev/null
echo "@@KENNEL-VM-UP@@"
mkdir -p /payload
if mount -o ro /dev/vdb /payload; then
  # Through a pipe, so the cases' output is not a terminal: no colours, no
  # pager, no columns cut to the width of a tty, as under a test harness.
  /bin/sh /payload/run.sh 2>&1 | cat
  echo "@@KENNEL-VM-DONE@@"
else
  echo "@@KENNEL-VM-ERROR cannot mount the payload disk /dev/vdb@@"
fi
sync
"""

# systemd 252 delegates only memory and pids to user managers by default.
DELEGATE_CONF = "[Service]\nDelegate=cpu cpuset io memory pids\n"

JOURNALD_CONF = "[Journal]\nStorage=volatile\nForwardToConsole=no\n"

# The initramfs: busybox (from the image) loads just what mounting the root
# disk needs and switches to systemd. Debian's own initrd spends about 4 s
# under emulation (unpacking 30 MB, udev) to do the same.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
INIT_SCRIPT = """#!/bin/busybox sh
export PATH=/bin
busybox mkdir -p /dev /proc /sys /root
busybox mount -t devtmpfs devtmpfs /dev
for m in $(busybox cat /modules.order); do
  busybox insmod /modules/$m || echo "initramfs: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do busybox sleep 0.1; i=$((i+1)); done
if ! busybox mount -t ext4 -o rw /dev/vda /root; then
  echo "initramfs: cannot mount the root disk /dev/vda"
  busybox ls -l /dev
  exit 1
fi
busybox mount --move /dev /root/dev
exec busybox switch_root /root /sbin/init
"""

# The module directories copied in (overlay, fuse, veth, tun, netfilter...):
# the guest has no network and no hardware beyond virtio.
MODULE_DIRS = ["kernel/arch", "kernel/block", "kernel/crypto", "kernel/fs", "kernel/lib",
               "kernel/mm", "kernel/net", "kernel/virt", "kernel/drivers/block",
               "kernel/drivers/char", "kernel/drivers/virtio", "kernel/drivers/net/*.ko*"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def kernel():
    """(vmlinuz, modules directory, version) of the newest /boot kernel whose
    modules are installed, or (None, None, None). The VM boots it with an
    initramfs of its own (INIT_SCRIPT), not the kernel's initrd.img."""

    def vkey(path):
        v = path[len("/boot/vmlinuz-"):]
        return [int(p) if p.isdigit() else p for p in re.split(r"[.-]", v)]

    for k in sorted(glob.glob("/boot/vmlinuz-*"), key=vkey, reverse=True):
        version = k[len("/boot/vmlinuz-"):]
        modules = f"/lib/modules/{version}"
        if os.path.isfile(k) and os.path.isfile(f"{modules}/modules.dep"):
            return k, modules, version
    return None, None, None


def _apt_entries():
    """(uri, suites, components) of every enabled `deb` entry in the host's
    apt configuration, in file order."""
    entries = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
            if m:
                entries.append((m.group(1), [m.group(2)], m.group(3).split()))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path).read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#"):
                    continue
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).split()
            if "deb" not in fields.get("types", []):
                continue
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            for uri in fields.get("uris", []):
                entries.append((uri, fields.get("suites", []), fields.get("components", [])))
    return entries


def mirror():
    """The Debian archive URL the host's apt uses for the main suite (read
    from /etc/apt, never hard-coded)."""
    entries = _apt_entries()
    for want in (SUITE, None):
        for uri, suites, comps in entries:
            plain = [s for s in suites if re.fullmatch(r"[a-z]+", s)]
            if "main" in comps and plain and (want is None or want in plain):
                if "security" not in uri and not uri.startswith("cdrom:"):
                    return uri.rstrip("/")
    raise RuntimeError("vm: cannot find the host's Debian mirror (a `deb` entry for "
                       f"{SUITE} main) in /etc/apt/sources.list or /etc/apt/sources.list.d")


def _files():
    """path in the image -> (content, mode): every file the recipe writes."""
    return {
        "/etc/hostname": (HOSTNAME + "\n", 0o644),
        "/etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n::1 localhost\n", 0o644),
        "/etc/fstab": ("/dev/vda / ext4 rw,noatime 0 0\n", 0o644),
        "/etc/subuid": (f"{USER}:{SUBID_RANGE}\n", 0o644),
        "/etc/subgid": (f"{USER}:{SUBID_RANGE}\n", 0o644),
        f"/var/lib/systemd/linger/{USER}": ("", 0o644),
        "/etc/systemd/system/user@.service.d/delegate.conf": (DELEGATE_CONF, 0o644),
        "/etc/systemd/journald.conf.d/kennel-vm.conf": (JOURNALD_CONF, 0o644),
        f"/etc/systemd/system/{RUN_UNIT_NAME}": (RUN_UNIT, 0o644),
        "/usr/local/sbin/kennel-vm-run": (RUN_SCRIPT, 0o755),
    }


def image_key(kernel_path):
    h = hashlib.sha256()
    parts = [IMAGE_VERSION, SUITE, IMAGE_SIZE, USER, str(USER_UID), " ".join(PACKAGES),
             " ".join(MASKED_UNITS), " ".join(MODULE_DIRS), " ".join(INITRD_MODULES), INIT_SCRIPT]
    for path, (content, mode) in sorted(_files().items()):
        parts += [path, oct(mode), content]
    for part in parts:
        h.update(part.encode() + b"\0")
    with open(kernel_path, "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def image_path(kernel_path):
    return os.path.join(CACHE_DIR, f"{IMAGE_PREFIX}{image_key(kernel_path)}.img")


def initrd_path(image):
    return image[: -len(".img")] + ".initrd"


def _write(root, path, content, mode):
    full = root + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(content)
    os.chmod(full, mode)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, so a
    killed test run leaves no debootstrap or qemu behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(argv, what, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                       preexec_fn=die_with_parent, **kw)
    if p.returncode != 0:
        tail = "\n".join(p.stdout.splitlines()[-30:])
        raise RuntimeError(f"vm: {what} failed (exit {p.returncode}): {' '.join(argv)}\n{tail}")
    return p.stdout


def _remove_tree(path):
    """rm -rf that first unmounts whatever an interrupted debootstrap left
    mounted below `path` and never crosses into another file system."""
    try:
        mounts = [line.split()[1] for line in open("/proc/self/mounts")]
    except OSError:
        mounts = []
    prefix = os.path.realpath(path) + "/"
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def _copy_modules(root, version):
    src = f"/lib/modules/{version}"
    if not os.path.isdir(src):
        return
    dst = f"{root}/lib/modules/{version}"
    for pattern in MODULE_DIRS:
        for path in glob.glob(os.path.join(src, pattern)):
            rel = os.path.relpath(path, src)
            target = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.isdir(path):
                shutil.copytree(path, target, symlinks=True)
            else:
                shutil.copy2(path, target)
    for f in glob.glob(os.path.join(src, "modules.builtin*")) + glob.glob(os.path.join(src, "modules.order")):
        shutil.copy2(f, dst)
    _run(["chroot", root, "depmod", "-a", version], "depmod")


def _cpio(entries):
    """A newc cpio archive of (name, mode, data) entries (data None for a
    directory)."""
    out = bytearray()

    def add(name, mode, data, ino):
        name_b = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + name_b)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        add(name, mode, data if data is not None else b"", ino)
    add("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def _module_order(version):
    """Module files (relative to /lib/modules/VERSION) to insmod, in
    dependency order, for INITRD_MODULES; built-in ones are skipped."""
    base = f"/lib/modules/{version}"
    deps = {}
    for line in open(f"{base}/modules.dep"):
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {re.sub(r"\.ko(\..*)?$", "", os.path.basename(m)).replace("-", "_"): m for m in deps}
    builtin = {re.sub(r"\.ko$", "", os.path.basename(l.strip())).replace("-", "_")
               for l in open(f"{base}/modules.builtin")}
    order = []

    def visit(mod):
        if mod in order:
            return
        # modules.dep lists all dependencies, nearest last.
        for d in reversed(deps[mod]):
            visit(d)
        order.append(mod)

    for name in INITRD_MODULES:
        if name in builtin:
            continue
        if name not in by_name:
            raise RuntimeError(f"vm: kernel {version} has no module {name} (and it is not built in)")
        visit(by_name[name])
    for mod in order:
        if not mod.endswith(".ko"):
            raise RuntimeError(f"vm: compressed kernel modules are not handled: {mod}")
    return order


def _build_initrd(root, version, target):
    order = _module_order(version)
    entries = [("bin", 0o40755, None), ("modules", 0o40755, None),
               ("bin/busybox", 0o100755, open(f"{root}/bin/busybox", "rb").read()),
               ("init", 0o100755, INIT_SCRIPT.encode()),
               ("modules.order", 0o100644, "".join(os.path.basename(m) + "\n" for m in order).encode())]
    for mod in order:
        entries.append((f"modules/{os.path.basename(mod)}", 0o100644,
                        open(f"/lib/modules/{version}/{mod}", "rb").read()))
    with open(target, "wb") as f:
        f.write(_cpio(entries))


def _build(root, tmp_image, version, key, log=log):
    started = time.monotonic()
    source = mirror()
    argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, root, source]
    for attempt in (1, 2):
        log(f"vm: debootstrap {SUITE} from {source}...")
        try:
            _run(argv, "debootstrap")
            break
        except RuntimeError as e:
            try:
                details = "\n".join(open(f"{root}/debootstrap/debootstrap.log").read().splitlines()[-20:])
            except OSError:
                details = ""
            if attempt == 2:
                raise RuntimeError(f"{e}\n--- debootstrap.log (tail) ---\n{details}") from None
            log(f"vm: debootstrap failed, trying once more:\n{details}")
            _remove_tree(root)
    log(f"vm: debootstrap done in {time.monotonic() - started:.0f}s; configuring")
    for path, (content, mode) in _files().items():
        _write(root, path, content, mode)
    # A fixed machine-id: no first-boot logic, and the same id in every boot.
    _write(root, "/etc/machine-id", hashlib.md5(key.encode()).hexdigest() + "\n", 0o444)
    _run(["chroot", root, "useradd", "--create-home", "--uid", str(USER_UID), "--user-group",
          "--shell", "/bin/sh", USER], "useradd")
    for unit in MASKED_UNITS:
        link = f"{root}/etc/systemd/system/{unit}"
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink("/dev/null", link)
    wants = f"{root}/etc/systemd/system/multi-user.target.wants"
    os.makedirs(wants, exist_ok=True)
    os.symlink(f"/etc/systemd/system/{RUN_UNIT_NAME}", f"{wants}/{RUN_UNIT_NAME}")
    _copy_modules(root, version)
    for d in ["/var/cache/apt/archives", "/var/lib/apt/lists", "/var/log"]:
        for entry in glob.glob(f"{root}{d}/*"):
            if os.path.isfile(entry) and not os.path.islink(entry):
                os.unlink(entry)
    log("vm: writing the disk image (mkfs.ext4 -d)...")
    _run(["mkfs.ext4", "-q", "-F", "-L", "kennel-vm", "-E", "root_owner=0:0", "-d", root, tmp_image, IMAGE_SIZE],
         "mkfs.ext4")


def _prune(keep):
    """Drops this module's older images but the newest one (so switching
    between two branches does not rebuild each time), and the leftovers of
    interrupted builds (called with the lock held, so no build is running)."""
    old = sorted((p for p in glob.glob(os.path.join(CACHE_DIR, IMAGE_PREFIX + "*.img")) if p != keep),
                 key=os.path.getmtime, reverse=True)
    for p in old[1:]:
        os.unlink(p)
        if os.path.exists(initrd_path(p)):
            os.unlink(initrd_path(p))
    for stale in glob.glob(os.path.join(CACHE_DIR, "vmbuild-*")):
        _remove_tree(stale)


def base_image(progress=log):
    """Path of the cached base image for the current kernel, built if needed."""
    kpath, _, version = kernel()
    if not kpath:
        raise RuntimeError("vm: no /boot/vmlinuz-* with its /lib/modules: run packaging/install-vm-deps.sh")
    path = image_path(kpath)
    if os.path.exists(path) and os.path.exists(initrd_path(path)):
        return path
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".vmbase.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("vm: waiting for another test run that is building the base image...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path) and os.path.exists(initrd_path(path)):
            return path  # another run built it while we waited
        _prune(keep=path)
        started = time.monotonic()
        progress(f"vm: building base image (about a minute) for kernel {version}...")
        work = tempfile.mkdtemp(dir=CACHE_DIR, prefix="vmbuild-")
        try:
            tmp_image = os.path.join(work, "image.img")
            tmp_initrd = os.path.join(work, "image.initrd")
            root = os.path.join(work, "root")
            _build(root, tmp_image, version, os.path.basename(path), progress)
            _build_initrd(root, version, tmp_initrd)
            os.rename(tmp_initrd, initrd_path(path))  # the image's presence says "complete"
            os.rename(tmp_image, path)
        finally:
            _remove_tree(work)
        progress(f"vm: base image built in {time.monotonic() - started:.0f}s: {path}")
    return path


if __name__ == "__main__":
    image = base_image()
    print(image, initrd_path(image))
