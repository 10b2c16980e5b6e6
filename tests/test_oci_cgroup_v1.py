"""cgroup v1 limits (memory, pids, cpu) with kennel-oci as root on a
cgroup v1 or hybrid host, side by side with runc on the same bundle: the
container's process sits in the cgroups linux.cgroupsPath names (read from
the host in /proc/PID/cgroup), their files hold the limits, the limits
bite (a fork loop stops at pids.max, an allocation past the memory limit
is OOM-killed), and after delete no cgroup is left. Rootless, v1 limits
are refused with the cause and the fix.

The bundles use a relative cgroupsPath, which both runtimes put below
their own cgroup in each hierarchy, so nothing lands outside the cgroups
the test itself runs in."""

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from probe import describe, wait_until
from test_oci_lifecycle import Oci

MIB = 1 << 20


def hybrid_or_v1():
    """Why this host is no cgroup v1 or hybrid host, or None."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "/sys/fs/cgroup is cgroup v2 (unified): no v1 hierarchy to test"
    with open("/proc/self/cgroup") as f:
        v1 = [l for l in f.read().splitlines() if l.split(":")[1] and not l.split(":")[1].startswith("name=")]
    if not v1:
        return "no cgroup v1 controller in /proc/self/cgroup"
    for c in ("memory", "pids", "cpu"):
        if not any(c in l.split(":")[1].split(",") for l in v1):
            return f"the {c} controller is not on a cgroup v1 hierarchy here"
    return None


PARENT = "kennel-test-v1"


@pytest.fixture(autouse=True)
def needs_v1():
    why = hybrid_or_v1()
    if why:
        pytest.skip(why)
    yield
    # runc makes its cgroup in every hierarchy and, as kennel-oci, leaves
    # the parents it made: remove ours (empty by now, or rmdir fails).
    for d in set(cgroup_dirs(os.getpid()).values()):
        top = os.path.join(d, PARENT)
        for sub, _, _ in sorted(os.walk(top), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass


def mounts():
    """controller (or "" for the unified tree) -> mount point."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _, opts = right.split()[:3]
            if left.split()[3] != "/":
                continue
            if fstype == "cgroup2":
                out.setdefault("", left.split()[4])
            elif fstype == "cgroup":
                for c in opts.split(","):
                    out.setdefault(c, left.split()[4])
    return out


def cgroup_dirs(pid):
    """controller (or "") -> the host directory of pid's cgroup."""
    m = mounts()
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                if c in m:
                    out[c] = os.path.join(m[c], path.lstrip("/"))
    return out


def read(path):
    with open(path) as f:
        return f.read().strip()


def own_dir(controller):
    return cgroup_dirs(os.getpid())[controller]


class Runtime:
    """kennel-oci or runc as root, each with a private --root."""

    def __init__(self, oci, binary):
        self.oci, self.binary = oci, binary
        self.root = os.path.join(oci.tempdir(0o700), "state")

    def __call__(self, *args, timeout=30):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cp = subprocess.run([self.binary, "--root", self.root] + [str(a) for a in args],
                                env=self.oci.env(), timeout=timeout, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, cwd="/")
            out.seek(0)
            err.seek(0)
            cp.stdout = out.read().decode(errors="replace")
            cp.stderr = err.read().decode(errors="replace")
            return cp

    def ok(self, *args, **kw):
        cp = self(*args, **kw)
        assert cp.returncode == 0, f"{self.binary} {' '.join(map(str, args))}: " + describe(cp)
        return cp


@pytest.fixture
def root_oci(h, oci_runtime):
    o = Oci(h, oci_runtime, "root")
    yield o
    o.cleanup()


RUNC = shutil.which("runc")


def runtimes(oci):
    out = [("kennel-oci", Runtime(oci, oci.binary))]
    if RUNC:
        out.append(("runc", Runtime(oci, RUNC)))
    else:
        print("runc is not installed: kennel-oci alone")
    return out


def limited(path, memory=32 * MIB, pids=16, quota=20000, period=100000):
    def edit(config):
        config["linux"]["cgroupsPath"] = path
        config["linux"]["resources"] = {
            "memory": {"limit": memory, "swap": memory, "reservation": memory // 2},
            "pids": {"limit": pids},
            "cpu": {"quota": quota, "period": period, "shares": 512},
        }
    return edit


def test_limits_are_written_where_cgroups_path_says_and_removed_on_delete(root_oci):
    for name, rt in runtimes(root_oci):
        rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
        bundle = root_oci.bundle(["sleep", "60"], edit=limited(rel))
        cid = f"v1-{name}"
        rt.ok("create", "--bundle", bundle, cid)
        try:
            pid = json.loads(rt.ok("state", cid).stdout)["pid"]
            dirs = cgroup_dirs(pid)
            for c in ("memory", "pids", "cpu"):
                want = os.path.join(own_dir(c), rel)
                assert dirs[c] == want, f"{name}: {c} cgroup {dirs[c]}, not {want}"
            assert read(f"{dirs['memory']}/memory.limit_in_bytes") == str(32 * MIB), name
            assert read(f"{dirs['memory']}/memory.soft_limit_in_bytes") == str(16 * MIB), name
            memsw = f"{dirs['memory']}/memory.memsw.limit_in_bytes"
            if os.path.exists(memsw):
                assert read(memsw) == str(32 * MIB), name
            assert read(f"{dirs['pids']}/pids.max") == "16", name
            assert read(f"{dirs['cpu']}/cpu.cfs_quota_us") == "20000", name
            assert read(f"{dirs['cpu']}/cpu.cfs_period_us") == "100000", name
            assert read(f"{dirs['cpu']}/cpu.shares") == "512", name
            # On a hybrid host both runtimes also place it in the unified tree.
            if "" in mounts():
                assert dirs[""] == os.path.join(own_dir(""), rel), f"{name}: {dirs['']}"
            made = [d for c, d in dirs.items() if d.endswith(rel)]
            rt.ok("start", cid)
        finally:
            rt("delete", "--force", cid)
        left = [d for d in made if os.path.exists(d)]
        assert left == [], f"{name} left cgroups behind: {left}"


def test_exec_joins_the_containers_v1_cgroups(root_oci):
    rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
    rt = Runtime(root_oci, root_oci.binary)
    bundle = root_oci.bundle(["sleep", "60"], edit=limited(rel))
    rt.ok("create", "--bundle", bundle, "v1-exec")
    try:
        rt.ok("start", "v1-exec")
        cp = rt.ok("exec", "v1-exec", "cat", "/proc/self/cgroup")
        lines = cp.stdout.splitlines()
        for c in ("memory", "pids", "cpu"):
            line = next(l for l in lines if c in l.split(":")[1].split(","))
            assert line.endswith(rel), f"exec'd command's {c} cgroup: {line}"
        # kennel-oci itself went back where it was.
        assert os.path.exists(os.path.join(own_dir("pids"), rel, "cgroup.procs"))
    finally:
        rt("delete", "--force", "v1-exec")
    for c in ("memory", "pids", "cpu", ""):
        assert not os.path.exists(os.path.join(own_dir(c), rel)), c


FORK_LOOP = "n=0; for i in $(seq 1 30); do sleep 5 & n=$((n+1)); done; echo forked; kill $(jobs -p) 2>/dev/null; true"


def test_pids_limit_stops_a_fork_loop_as_with_runc(root_oci):
    results = {}
    for name, rt in runtimes(root_oci):
        rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
        bundle = root_oci.bundle(["sh", "-c", FORK_LOOP], edit=limited(rel, pids=8))
        cp = rt("run", "--bundle", bundle, f"v1-pids-{name}", timeout=60)
        rt("delete", "--force", f"v1-pids-{name}")
        results[name] = cp
        failed = "can't fork" in cp.stderr or "Resource temporarily unavailable" in cp.stderr
        assert failed, f"{name}: 30 forks under pids.max=8 all succeeded: " + describe(cp)
    for name, cp in results.items():
        print(name, cp.returncode, cp.stderr.count("can't fork"))


def test_memory_limit_oom_kills_as_with_runc(root_oci):
    codes = {}
    for name, rt in runtimes(root_oci):
        rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
        # dd touches its whole 64 MiB block: past a 16 MiB limit.
        bundle = root_oci.bundle(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                                 edit=limited(rel, memory=16 * MIB))
        cp = rt("run", "--bundle", bundle, f"v1-oom-{name}", timeout=60)
        rt("delete", "--force", f"v1-oom-{name}")
        codes[name] = cp.returncode
        assert cp.returncode == 137, f"{name}: dd of 64 MiB under 16 MiB: " + describe(cp)
    # Without the limit the same command runs.
    rt = Runtime(root_oci, root_oci.binary)
    bundle = root_oci.bundle(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    rt.ok("run", "--bundle", bundle, "v1-no-oom")
    rt("delete", "--force", "v1-no-oom")
    print(codes)


def test_a_limit_the_kernel_refuses_names_the_file_and_leaves_nothing(root_oci):
    rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
    rt = Runtime(root_oci, root_oci.binary)
    # A quota below the kernel's minimum (1000 microseconds).
    bundle = root_oci.bundle(["true"], edit=limited(rel, quota=10))
    cp = rt("run", "--bundle", bundle, "v1-bad")
    assert cp.returncode != 0, describe(cp)
    assert "cpu.cfs_quota_us=10" in cp.stderr and "Invalid argument" in cp.stderr, describe(cp)
    for c in ("memory", "pids", "cpu"):
        assert not os.path.exists(os.path.join(own_dir(c), rel)), c


def test_a_v2_only_field_is_refused_on_v1(root_oci):
    rt = Runtime(root_oci, root_oci.binary)

    def edit(config):
        config["linux"]["resources"] = {"unified": {"cpu.weight": "100"}}
    cp = rt("run", "--bundle", root_oci.bundle(["true"], edit=edit), "v1-unified")
    assert cp.returncode != 0, describe(cp)
    assert "cpu.weight is a cgroup v2 file" in cp.stderr and "cpu.shares" in cp.stderr, describe(cp)


def test_rootless_limits_on_v1_are_refused_with_cause_and_fix(h, oci_runtime):
    o = Oci(h, oci_runtime, "rootless")
    try:
        def edit(config):
            config["linux"]["resources"] = {"pids": {"limit": 10}}
        cp = o("run", "--bundle", o.bundle(["true"], edit=edit), "v1-rootless")
        assert cp.returncode != 0, describe(cp)
        assert "cgroup v1 need root" in cp.stderr, describe(cp)
        assert "run as root, or on a cgroup v2 host" in cp.stderr, describe(cp)
        assert o.leftovers() == []
    finally:
        o.cleanup()


def test_update_and_pause_act_on_the_v1_cgroups(root_oci):
    rel = f"{PARENT}/{uuid.uuid4().hex[:8]}"
    rt = Runtime(root_oci, root_oci.binary)
    rt.ok("create", "--bundle", root_oci.bundle(["sleep", "60"], edit=limited(rel)), "v1-upd")
    try:
        rt.ok("start", "v1-upd")
        pid = json.loads(rt.ok("state", "v1-upd").stdout)["pid"]
        rt.ok("update", "--pids-limit", "20", "--memory", "64M", "--memory-swap", "64M", "v1-upd")
        dirs = cgroup_dirs(pid)
        assert read(f"{dirs['pids']}/pids.max") == "20"
        assert read(f"{dirs['memory']}/memory.limit_in_bytes") == str(64 * MIB)
        if "" in mounts():
            # The unified tree's freezer, on a hybrid host.
            rt.ok("pause", "v1-upd")
            assert json.loads(rt.ok("state", "v1-upd").stdout)["status"] == "paused"
            assert read(f"{dirs['']}/cgroup.freeze") == "1"
            rt.ok("resume", "v1-upd")
            assert json.loads(rt.ok("state", "v1-upd").stdout)["status"] == "running"
    finally:
        rt("delete", "--force", "v1-upd")
    assert not os.path.exists(os.path.join(own_dir("pids"), rel))


def test_kennel_run_as_root_takes_the_same_path(h):
    """`kennel run` shares the engine's path: its --memory is a v1 limit
    here, an OOM kill is reported with the v1 file, and the leaf goes."""
    r = subprocess.run([h.kennel, "run", "--rootfs", h.rootfs, "--net", "private", "-m", "16M",
                        "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 137, r.stderr
    assert "killed by the OOM killer (memory.limit_in_bytes=16M)" in r.stderr, r.stderr
    for m in set(mounts().values()):
        top = os.path.join(m, "kennel")
        left = [d for d in os.listdir(top) if d.startswith("kennel-")] if os.path.isdir(top) else []
        assert left == [], f"left in {top}: {left}"
        try:
            os.rmdir(os.path.join(m, "kennel"))
        except OSError:
            pass
