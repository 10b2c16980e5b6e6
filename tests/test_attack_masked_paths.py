"""The kernel paths a container must not read or write: runc's default
masked and read-only lists (engine/src/lib.rs MASKED_PATHS and
READONLY_PATHS), attacked from inside, and a masked path kennel cannot
mask, which must stop the container rather than run it unmasked."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from probe import describe, ok, sh
from test_bundle import base_config, write_bundle

# runc 1.1's `runc spec` defaults, which kennel's must cover.
RUNC_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
               "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
RUNC_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# For each path: what a reader finds (a file's first bytes counted, a
# directory's entries counted), and whether a write to it lands.
PROBE = r'''
for p in "$@"; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l)"; touch "$p/x" 2>/dev/null && echo "$p WRITABLE"
  elif [ -e "$p" ]; then
    echo "$p file $(head -c 4096 "$p" 2>/dev/null | wc -c)"
    # A masked file is /dev/null: a write may succeed, but must land nowhere.
    (echo x > "$p") 2>/dev/null; [ "$(head -c 1 "$p" 2>/dev/null | wc -c)" = 0 ] || echo "$p WRITABLE"
  else echo "$p absent"; fi
  umount "$p" 2>/dev/null && echo "$p UNMOUNTED"
done
true
'''


def test_runc_default_lists_are_kennels_too(h):
    """kennel's defaults are at least runc's (checked against the runc
    installed here when there is one)."""
    masked, readonly = RUNC_MASKED, RUNC_READONLY
    runc = shutil.which("runc")
    if runc:
        d = tempfile.mkdtemp()
        try:
            subprocess.run([runc, "spec", "--rootless"], cwd=d, check=True, capture_output=True)
            with open(os.path.join(d, "config.json")) as f:
                linux = json.load(f)["linux"]
            masked, readonly = linux["maskedPaths"], linux["readonlyPaths"]
        finally:
            shutil.rmtree(d)
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine", "src",
                           "lib.rs")) as f:
        lib = f.read()
    for p in masked + readonly:
        assert f'"{p}"' in lib, f"{p} is in runc's default list, not in kennel's"


def test_every_masked_path_reads_empty_and_takes_no_write(h):
    out = ok(h.user.run([h.kennel, "run", "--rootfs", h.rootfs, "--", "sh", "-c", PROBE, "sh", *RUNC_MASKED],
                        timeout=20))
    seen = dict((l.split(" ", 1)[0], l.split(" ", 1)[1]) for l in out.splitlines() if " WRITABLE" not in l
                and " UNMOUNTED" not in l)
    assert "WRITABLE" not in out and "UNMOUNTED" not in out, out
    for p in RUNC_MASKED:
        assert seen[p] in ("absent", "dir 0", "file 0"), (p, seen[p])
    # The masks were really there to attack: on this host, some of them
    # say a lot outside a container.
    assert any(seen[p] != "absent" for p in RUNC_MASKED), out


def test_read_only_paths_take_no_write(h):
    """Writes the container's own namespaces would otherwise allow (its
    network namespace's ip_forward, its hostname through /proc/sys) and the
    host-wide ones (sysrq-trigger) are all refused."""
    script = ("echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo WROTE-ip_forward; "
              "echo evil > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE-hostname; "
              "echo h > /proc/sysrq-trigger 2>/dev/null && echo WROTE-sysrq; "
              "cat /proc/sys/net/ipv4/ip_forward; hostname; "
              "grep -cE ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/self/mountinfo; "
              "grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/self/mountinfo | grep -vc ' ro,' ")
    cp = sh(h, script, "--hostname", "inside")
    lines = cp.stdout.split()
    assert "WROTE" not in cp.stdout, describe(cp)
    assert lines[:2] == ["0", "inside"], describe(cp)
    # Each that this kernel has is a mount of its own.
    present = sum(os.path.exists(p) for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"))
    assert lines[-2] == str(present), describe(cp)
    assert lines[-1] == "0", describe(cp)  # every one of them is mounted read-only


def _bundle_masking(h, path):
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    config["linux"]["maskedPaths"] = [path]
    return write_bundle(h, config)


@pytest.mark.parametrize("how", ["unreachable", "symlink-loop"])
def test_a_path_that_cannot_be_masked_stops_the_container(h, how):
    """A masked path kennel cannot reach (inside a directory of host root's
    that the container's root may not search) or cannot resolve (a symlink
    loop): the container must not start without that mask."""
    if how == "unreachable":
        bundle = _bundle_masking(h, "/secret/inner")
        secret = os.path.join(bundle, "rootfs", "secret")
        os.mkdir(secret, 0o700)
        open(os.path.join(secret, "inner"), "w").close()
        os.chown(secret, 0, 0)
    else:
        bundle = _bundle_masking(h, "/loop/inner")
        os.symlink("/loop", os.path.join(bundle, "rootfs", "loop"))
        os.lchown(os.path.join(bundle, "rootfs", "loop"), h.user.uid, h.user.gid)
    cp = h.user.run([h.kennel, "run", "--bundle", bundle], timeout=20)
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert "/loop/inner" in cp.stderr or "/secret/inner" in cp.stderr, cp.stderr
    assert "masked" in cp.stderr, cp.stderr
