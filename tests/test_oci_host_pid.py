"""A bundle with no pid namespace, as podman sends for `--pid host` and
for every distrobox or toolbox box: the container runs in the host's pid
namespace, and kennel-oci still tells its processes from everyone else's
(by the container's own mount namespace): `ps`, `kill --all` and
`delete --force` reach the container's processes, even one that left its
first process's tree, and never a process of the same user outside."""

import json
import os
import subprocess

from probe import describe, wait_until
from test_oci_lifecycle import alive, marked, oci, pid_ns, wait_gone  # noqa: F401


def host_pid(oci):
    def edit(config):
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "pid"]
        if oci.user:
            # A procfs belongs to the pid namespace of whoever mounts it, and
            # the host's is not the user's to mount: podman binds the host's
            # /proc for a rootless --pid host, and so does this bundle.
            for m in config["mounts"]:
                if m["destination"] == "/proc":
                    m.update(type="bind", source="/proc", options=["rbind", "nosuid", "noexec", "nodev"])
    return edit


def decoy(oci):
    """A process of the same user, outside any container, marked as the
    container's are: what must survive."""
    argv = ["sleep", "600"]
    p = subprocess.Popen(oci.user.argv(argv) if oci.user else argv, env=oci.env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: p.pid in marked(oci.token), "the decoy to start", timeout=5)
    return p


def container_pids(oci, cid, count):
    """The container's host pids as `kennel-oci ps` lists them, once
    `count` processes are up."""
    def listed():
        cp = oci.ok("ps", "--format", "json", cid)
        pids = sorted(int(p) for p in cp.stdout.strip().strip("[]").split(",") if p.strip())
        return len(pids) == count and pids
    return wait_until(listed, f"{count} processes in container {cid}", timeout=5)


def start(oci, cid, script):
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", script], out=out, edit=host_pid(oci))
    oci.ok("run", "--detach", "--bundle", bundle, cid)
    return oci.wait_status(cid, "running")["pid"], out


def test_the_container_runs_in_the_hosts_pid_namespace(oci):
    pid, out = start(oci, "hostpid-ns", "echo $$ > /out/pid; exec sleep 300")
    path = os.path.join(out, "pid")
    wait_until(lambda: os.path.exists(path) and open(path).read().strip(), "the container to say its pid")
    with open(path) as f:
        inside = int(f.read())
    # The pid it sees is its host pid: one namespace.
    assert inside == pid
    assert pid_ns(pid) == pid_ns(os.getpid())
    oci.ok("delete", "--force", "hostpid-ns")
    wait_gone("the container's process", lambda: alive(pid))


def test_ps_and_kill_all_reach_the_container_and_nothing_else(oci):
    keep = decoy(oci)
    try:
        first, _ = start(oci, "hostpid-kill", "sleep 301 & sleep 302 & exec sleep 300")
        pids = container_pids(oci, "hostpid-kill", 3)
        assert first in pids and keep.pid not in pids, (pids, keep.pid)
        oci.ok("kill", "--all", "hostpid-kill", "KILL")
        wait_gone("the container's processes", lambda: [p for p in pids if alive(p)])
        assert keep.poll() is None, "kill --all killed a process outside the container"
        oci.ok("delete", "--force", "hostpid-kill")
        assert keep.poll() is None
    finally:
        keep.kill()
        keep.wait()


def test_delete_force_kills_a_process_that_left_the_first_ones_tree(oci):
    keep = decoy(oci)
    try:
        # setsid in a subshell that exits: the sleep is reparented away from
        # the container's first process, as a daemon would be.
        first, _ = start(oci, "hostpid-orphan", "(setsid sleep 303 &); exec sleep 300")
        pids = container_pids(oci, "hostpid-orphan", 2)
        orphan = next(p for p in pids if p != first)
        assert os.readlink(f"/proc/{orphan}/ns/mnt") == os.readlink(f"/proc/{first}/ns/mnt")
        oci.ok("delete", "--force", "hostpid-orphan")
        wait_gone("the container's processes", lambda: [p for p in pids if alive(p)])
        assert keep.poll() is None, "delete --force killed a process outside the container"
        assert "hostpid-orphan" not in oci.leftovers()
    finally:
        keep.kill()
        keep.wait()


def test_a_record_from_before_is_read_as_owning_its_pid_namespace(oci):
    """A record written before kennel recorded the field: its container has
    a pid namespace of its own (the only kind kennel made then)."""
    pid, _ = start(oci, "hostpid-old", "exec sleep 300")
    record = os.path.join(oci.record("hostpid-old"), "state.json")
    with open(record) as f:
        state = json.load(f)
    assert state["kennel"]["own_pid_namespace"] is False
    del state["kennel"]["own_pid_namespace"]
    with open(record, "w") as f:
        json.dump(state, f)
    # Read as its own pid namespace, which is the caller's: refused rather
    # than signalling every process of the namespace.
    cp = oci("kill", "--all", "hostpid-old", "KILL")
    assert cp.returncode != 0 and "cannot be told from ours" in cp.stderr, describe(cp)
    assert alive(pid)
    oci.ok("delete", "--force", "hostpid-old")
