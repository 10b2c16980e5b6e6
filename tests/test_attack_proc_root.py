"""An image whose /proc is a symlink (to a host directory, to /, up and
out with ../..) or a regular file: kennel either refuses with a clear
error or mounts the fresh procfs inside the root. The host path the link
names is never mounted on or changed."""

import os

import pytest

from probe import copy_rootfs, describe, tree
from probe.leaks import mounts_under
from test_bundle import base_config, write_bundle

LINKS = {"host-dir": "{target}", "oldroot": "/oldroot{target}", "root": "/", "up-and-out": "../../../..{target}"}


def _hostile(rootfs, kind, target, owner):
    proc = os.path.join(rootfs, "proc")
    os.rmdir(proc)
    if kind == "file":
        with open(proc, "w") as f:
            f.write("not a directory\n")
        os.chown(proc, owner.uid, owner.gid)
    else:
        os.symlink(LINKS[kind].format(target=target), proc)
        os.lchown(proc, owner.uid, owner.gid)


def _check(cp, target, before):
    assert tree(target) == before, describe(cp)
    assert mounts_under(target) == []
    if cp.returncode == 0:
        # Started: the procfs it got is its own (its pid 1 is the command).
        assert cp.stdout.split()[:1] == ["1"], describe(cp)
    else:
        assert cp.returncode == 125, describe(cp)
        assert "RAN" not in cp.stdout
        assert "/proc" in cp.stderr, cp.stderr


@pytest.mark.parametrize("kind", [*LINKS, "file"])
def test_run_with_a_hostile_proc(h, kind):
    rootfs = copy_rootfs(h)
    target = h.tempdir()
    before = tree(target)
    _hostile(rootfs, kind, target, h.user)
    cp = h.user.run([h.kennel, "run", "--rootfs", rootfs, "--", "sh", "-c", "cat /proc/self/stat | cut -d' ' -f1; echo RAN"],
                    timeout=20)
    _check(cp, target, before)
    if kind != "file":
        assert cp.returncode == 125 and "symlink" in cp.stderr, describe(cp)


@pytest.mark.parametrize("kind", [*LINKS, "file"])
def test_bundle_with_a_hostile_proc(h, kind):
    """A bundle is run as written, so the check of kennel run's flags does
    not apply: the engine's own resolution must hold."""
    target = h.tempdir()
    before = tree(target)
    bundle = write_bundle(h, base_config(["/bin/sh", "-c", "cat /proc/self/stat | cut -d' ' -f1; echo RAN"]))
    _hostile(os.path.join(bundle, "rootfs"), kind, target, h.user)
    cp = h.user.run([h.kennel, "run", "--bundle", bundle], timeout=20)
    _check(cp, target, before)
