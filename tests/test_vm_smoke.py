"""The test VM itself works: a real systemd with cgroup v2 controllers, a user
manager for kuser with its bus and delegated controllers, and kennel's
freshly built binaries installed and running.

All cases run in one boot (a session fixture). Without qemu or a kernel to
boot (and no way to install them) every test here is skipped, with the
reason; the VM tests need root, as CI runs.
"""

import os
import re
import sys

import pytest

from vm import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.environ.get("KENNEL_BUILD_DIR", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "release"))

BUSYBOX_ROOTFS = r"""
R=$(mktemp -d)
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/etc"
cp /bin/busybox "$R/bin/"
ln -s busybox "$R/bin/sh"
ln -s busybox "$R/bin/true"
"""

CASES = [
    ("root_controllers", "root", "cat /sys/fs/cgroup/cgroup.controllers\n", 30),
    ("kuser_delegated_scope", "kuser", r"""
systemd-run --user --scope -p Delegate=yes sh -c 'cat /proc/self/cgroup; cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cgroup.controllers'
""", 60),
    ("kuser_bus", "kuser", r"""
echo "BUS=$DBUS_SESSION_BUS_ADDRESS"
busctl --user status >/dev/null && echo BUSCTL-OK
busctl --user get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version
""", 60),
    ("kennel_binaries", "root", r"""
ls -l /usr/local/bin/kennel /usr/local/libexec/kennel/kennel-idmap
getcap /usr/local/libexec/kennel/kennel-idmap
kennel --version
""", 30),
    ("kennel_rootless_run", "kuser", BUSYBOX_ROOTFS + r"""
kennel run --userns=single --rootfs "$R" -- /bin/busybox true
echo "RC=$?"
rm -rf "$R"
""", 60),
]


@pytest.fixture(scope="session")
def smoke(pytestconfig):
    ok, why = runner.vm_available(install=True)
    if not ok:
        pytest.skip(f"no test VM here: {why}")
    binaries = {b: os.path.join(BUILD_DIR, b) for b in ["kennel", "kennel-idmap"]}
    for path in binaries.values():
        if not os.path.isfile(path):
            pytest.fail(f"{path} is not built: run `make build` first (or set KENNEL_BUILD_DIR)")
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(msg):
        # Live on the terminal: a first image build takes a minute.
        with capman.global_and_fixture_disabled():
            print(msg, file=sys.stderr, flush=True)

    return runner.run_batch(CASES, binaries, progress=progress)


def case(smoke, name):
    r = smoke[name]
    assert r.finished, r
    return r


def test_root_sees_cgroup_v2_controllers(smoke):
    r = case(smoke, "root_controllers")
    assert r.rc == 0, r
    controllers = r.output.split()
    for c in ["cpu", "memory", "pids"]:
        assert c in controllers, r


def test_kuser_scope_gets_a_delegated_subtree_with_controllers(smoke):
    r = case(smoke, "kuser_delegated_scope")
    assert r.rc == 0, r
    lines = r.output.strip().splitlines()
    path = next((l for l in lines if l.startswith("0::")), None)
    assert path, r
    assert re.match(r"^0::/user\.slice/user-1000\.slice/user@1000\.service/.+\.scope$", path), r
    controllers = lines[-1].split()
    for c in ["cpu", "memory", "pids"]:
        assert c in controllers, r


def test_kuser_has_its_session_bus_and_user_manager(smoke):
    r = case(smoke, "kuser_bus")
    assert r.rc == 0, r
    assert "BUS=unix:path=/run/user/1000/bus" in r.output, r
    assert "BUSCTL-OK" in r.output, r
    assert re.search(r'^s "252', r.output, re.M), r


def test_kennel_binaries_are_installed_with_capabilities(smoke):
    r = case(smoke, "kennel_binaries")
    assert r.rc == 0, r
    assert re.search(r"^kennel \d+\.\d+", r.output, re.M), r
    assert re.search(r"kennel-idmap cap_setgid,cap_setuid=ep", r.output), r


def test_kennel_runs_a_rootless_container(smoke):
    r = case(smoke, "kennel_rootless_run")
    assert r.rc == 0, r
    assert "RC=0" in r.output, r
