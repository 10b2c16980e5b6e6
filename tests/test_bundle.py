"""`kennel run --bundle DIR`: an OCI bundle's config.json runs as it is,
through the same engine as the flags."""

import json
import os
import shutil
import subprocess


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
