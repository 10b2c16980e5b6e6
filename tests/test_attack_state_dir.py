"""Another ordinary user against your containers' records: reading them,
killing, deleting or entering your containers through your state
directory (kennel's XDG_RUNTIME_DIR/kennel, kennel-oci's --root), and
planting a record or a symlink where you will look. Every attempt is
refused and your container runs on untouched."""

import json
import os
import subprocess

import pytest

from probe import containers, ps_names, state_dir  # noqa: F401 (a fixture)
from probe.leaks import live


def _victim(h, containers, name):
    containers.start(name, cmd=("sleep", "30"))
    with open(os.path.join(state_dir(h.user, name), "state.json")) as f:
        return json.load(f)["pid"]


def _refused(cp):
    assert cp.returncode != 0, f"{cp.args} succeeded:\n{cp.stdout}{cp.stderr}"
    assert "RAN" not in cp.stdout


@pytest.mark.parametrize("attempt", ["read", "ps", "kill", "exec", "oci-state", "oci-kill", "oci-delete"])
def test_another_user_cannot_reach_your_containers(h, containers, oci_runtime, attempt):
    name = f"atk-state-{attempt}"
    pid = _victim(h, containers, name)
    root = os.path.join(h.user.runtime_dir, "kennel")
    as_them = {"XDG_RUNTIME_DIR": h.user.runtime_dir}
    argv = {
        "read": ["cat", os.path.join(root, name, "state.json")],
        "ps": [h.kennel, "ps"],
        "kill": [h.kennel, "kill", name, "KILL"],
        "exec": [h.kennel, "exec", name, "--", "echo", "RAN"],
        "oci-state": [oci_runtime, "--root", root, "state", name],
        "oci-kill": [oci_runtime, "--root", root, "kill", name, "KILL"],
        "oci-delete": [oci_runtime, "--root", root, "delete", "--force", name],
    }[attempt]
    cp = h.other.run(argv, env=as_them, timeout=20)
    _refused(cp)
    assert str(pid) not in cp.stdout and "sleep" not in cp.stdout, cp.stdout
    assert live(pid), "the container was killed"
    assert name in ps_names(h)
    assert os.path.exists(os.path.join(root, name, "state.json"))


def _planted_root(h, how):
    """A state root prepared by the other user where the victim will look:
    their own directory, or a symlink of theirs in the victim's runtime
    directory. Either holds a record naming a process of the victim's."""
    theirs = h.tempdir(owner=h.other, mode=0o755)
    record = os.path.join(theirs, "planted")
    os.mkdir(record)
    with open(os.path.join(record, "state.json"), "w") as f:
        json.dump({"ociVersion": "1.2.0", "id": "planted", "status": "running", "pid": os.getpid(),
                   "bundle": "", "kennel": {"start_time": 0, "rootfs": None, "command": ["x"], "created": 0,
                                            "process": {"cwd": "/", "args": ["x"], "user": {"uid": 0, "gid": 0}}}},
                  f)
    subprocess.run(["chown", "-R", f"{h.other.uid}:{h.other.gid}", theirs], check=True)
    runtime = h.tempdir(owner=h.user, mode=0o700)
    if how == "their-directory":
        os.rename(theirs, os.path.join(runtime, "kennel"))
    else:
        os.symlink(theirs, os.path.join(runtime, "kennel"))
        os.lchown(os.path.join(runtime, "kennel"), h.other.uid, h.other.gid)
    return runtime, os.path.join(runtime, "kennel")


@pytest.mark.parametrize("how", ["their-directory", "their-symlink"])
def test_a_planted_state_root_is_refused(h, oci_runtime, how):
    runtime, root = _planted_root(h, how)
    env = {"XDG_RUNTIME_DIR": runtime}
    for argv in ([h.kennel, "ps"], [h.kennel, "kill", "planted", "KILL"],
                 [h.kennel, "run", "--rootfs", h.rootfs, "--name", "x", "--", "echo", "RAN"],
                 [oci_runtime, "--root", root, "list"], [oci_runtime, "--root", root, "kill", "planted", "KILL"],
                 [oci_runtime, "--root", root, "delete", "--force", "planted"]):
        cp = h.user.run(argv, env=env, timeout=20)
        _refused(cp)
        assert "refusing the state directory" in cp.stderr, (argv, cp.stderr)
    assert live(os.getpid())
    assert os.path.exists(os.path.join(root, "planted", "state.json"))
