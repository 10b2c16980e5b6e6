"""`kennel run --bundle DIR`: an OCI bundle's config.json runs as it is,
through the same engine as the flags."""

import json
import os
import shutil
import subprocess

import pytest


def write_bundle(h, config):
    bundle = h.tempdir(owner=h.user)
    rootfs = os.path.join(bundle, "rootfs")
    subprocess.run(["cp", "-a", h.rootfs, rootfs], check=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", bundle], check=True)
    return bundle


def base_config(args):
    return {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "from-bundle",
        "process": {
            "args": args,
            "cwd": "/",
            "env": ["PATH=/bin", "FROM_BUNDLE=yes"],
            "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": True,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ["user", "mount", "pid", "ipc", "uts", "network"]],
        },
    }


def test_bundle_config_is_run_as_written(h):
    script = "hostname; echo $FROM_BUNDLE; grep -E '^Cap(Eff|Bnd)' /proc/self/status; cat /proc/self/uid_map; touch /x 2>/dev/null || echo ro-root; exit 7"
    bundle = write_bundle(h, base_config(["/bin/sh", "-c", script]))
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 7, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "from-bundle"
    assert lines[1] == "yes"
    assert "CapEff:\t0000000000000020" in r.stdout  # CAP_KILL only
    assert "CapBnd:\t0000000000000020" in r.stdout
    # No maps in the bundle: the --userns plan (auto, with the helper) fills them.
    assert f"0 {h.user.uid} 1" in " ".join(r.stdout.split())
    assert "ro-root" in r.stdout


def test_bundle_without_config_is_a_clear_error(h):
    bundle = h.tempdir(owner=h.user)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "config.json" in r.stderr and r.stderr.startswith("kennel: ")


def test_bundle_must_ask_for_user_namespace(h):
    config = base_config(["/bin/true"])
    config["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "user, mount and pid namespaces" in r.stderr


def test_bundle_with_missing_rootfs(h):
    bundle = write_bundle(h, base_config(["/bin/true"]))
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "rootfs" in r.stderr


def _set(config, dotted, value):
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


@pytest.mark.parametrize("field,value", [
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
    ("hooks", {"prestart": [{"path": "/bin/true"}]}),
    ("linux.sysctl", {"kernel.domainname": "example.org"}),
    ("linux.resources.cpu.shares", 512),
    ("linux.rootfsPropagation", "shared"),
    ("process.apparmorProfile", "kennel-test"),
    ("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
])
def test_a_spec_field_kennel_cannot_apply_is_refused_by_name(h, field, value):
    """A bundle that asks for a seccomp filter, hooks, a sysctl ... must never
    run without them: nothing runs, and the error names the field."""
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    _set(config, field, value)
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125, r.stderr
    assert "RAN" not in r.stdout
    assert r.stderr.startswith("kennel: unsupported in config.json: ") and field in r.stderr, r.stderr


def test_bundle_umask_and_oom_score_adj_are_applied(h):
    config = base_config(["/bin/sh", "-c", "umask; cat /proc/self/oom_score_adj"])
    config["process"]["user"]["umask"] = 0o027
    config["process"]["oomScoreAdj"] = 500
    config["linux"]["rootfsPropagation"] = "rprivate"
    r = h.user.run([h.kennel, "run", "--bundle", write_bundle(h, config)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0027", "500"]
    # Lowering it below kennel's own needs privilege: refused, never ignored.
    config["process"]["oomScoreAdj"] = -500
    r = h.user.run([h.kennel, "run", "--bundle", write_bundle(h, config)])
    assert r.returncode == 125, r.stderr
    assert "process.oomScoreAdj -500" in r.stderr, r.stderr


def test_a_runc_spec_rootless_bundle_runs_unchanged(h):
    """`runc spec --rootless` writes a `cgroup` mount (v1's type, which a
    user namespace cannot mount) and ambient capabilities without
    inheritable ones; only process.args is changed here."""
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("runc is not installed (Debian package runc; make test-deps installs it)")
    bundle = h.tempdir(owner=h.user)
    r = h.user.run([runc, "spec", "--rootless"], cwd=bundle)
    assert r.returncode == 0, r.stderr
    subprocess.run(["cp", "-a", h.rootfs, os.path.join(bundle, "rootfs")], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    assert any(m["type"] == "cgroup" for m in config["mounts"])
    assert config["process"]["capabilities"]["ambient"] and "inheritable" not in config["process"]["capabilities"]
    config["process"]["args"] = ["sh", "-c", "grep ^CapAmb /proc/self/status; touch /sys/fs/cgroup/x || echo CGROUP-RO; id -u"]
    with open(path, "w") as f:
        json.dump(config, f)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", bundle], check=True)
    r = h.user.run([h.kennel, "run", "--bundle", bundle], stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\r", "").split("\n")
    assert lines[0] == "CapAmb:\t0000000020000420", lines  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert "CGROUP-RO" in lines and lines[-2] == "0", lines
