"""Joining another container's user and pid namespaces by path, as
containerd does for a pod's containers and podman for `--pid
container:NAME`: the second container sees the first one's processes,
has its ids, and the host is left as it was. A mount namespace by path is
refused by name (kennel would re-root the namespace it joins)."""

import os

import pytest

from probe import describe, wait_until
from test_oci_lifecycle import Oci, oci  # noqa: F401


def start_first(oci, name):
    bundle = oci.bundle(["sh", "-c", f"exec sleep 300 # {name}"])
    oci.ok("run", "--detach", "--bundle", bundle, name)
    return oci.wait_status(name, "running")["pid"]


# config.json's names where /proc/PID/ns has others.
PROC_NAME = {"network": "net", "mount": "mnt"}


def ns_id(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def joining(first_pid, kinds, mappings=True):
    def edit(config):
        namespaces = config["linux"]["namespaces"]
        for kind in kinds:
            namespaces[:] = [n for n in namespaces if n["type"] != kind]
            namespaces.append({"type": kind, "path": f"/proc/{first_pid}/ns/{PROC_NAME.get(kind, kind)}"})
        if not mappings:
            config["linux"].pop("uidMappings", None)
            config["linux"].pop("gidMappings", None)
    return edit


def test_a_second_container_joins_the_first_ones_pid_namespace(oci):
    first = start_first(oci, "pid-first")
    kinds = ["pid"] + (["user"] if oci.user else [])
    bundle = oci.bundle(["sh", "-c", "echo self=$$; ps -o pid,args | grep -c 'sleep 30[0]'"],
                        edit=joining(first, kinds))
    cp = oci("run", "--bundle", bundle, "pid-second")
    assert cp.returncode == 0, describe(cp)
    lines = dict(line.split("=", 1) for line in cp.stdout.split() if "=" in line)
    # Not the namespace's init: the first container's process is.
    assert lines["self"] != "1", cp.stdout
    assert cp.stdout.split()[-1] == "1", f"the first container's sleep is not visible: {cp.stdout}"
    # The first container is untouched by the second's end.
    assert oci.state("pid-first")["status"] == "running"


def test_the_joined_namespaces_are_the_first_containers(oci):
    first = start_first(oci, "ns-first")
    kinds = ["pid"] + (["user"] if oci.user else [])
    bundle = oci.bundle(["sleep", "300"], edit=joining(first, kinds))
    oci.ok("run", "--detach", "--bundle", bundle, "ns-second")
    second = oci.wait_status("ns-second", "running")["pid"]
    for kind in kinds:
        assert ns_id(second, kind) == ns_id(first, kind), kind
    # A namespace it did not join is its own.
    assert ns_id(second, "mnt") != ns_id(first, "mnt")
    oci.ok("kill", "ns-second", "KILL")
    wait_until(lambda: oci.state("ns-second")["status"] == "stopped", "the second to stop")
    assert oci.state("ns-first")["status"] == "running"


def test_joined_user_namespace_with_other_mappings_is_refused(oci):
    if not oci.user:
        pytest.skip("as root the first container has no user namespace of its own to join")
    first = start_first(oci, "maps-first")

    def edit(config):
        joining(first, ["user", "pid"])(config)
        for key in ("uidMappings", "gidMappings"):
            config["linux"][key] = [{"containerID": 0, "hostID": oci.user.uid, "size": 1},
                                    {"containerID": 5, "hostID": 999999, "size": 1}]
    cp = oci("run", "--bundle", oci.bundle(["true"], edit=edit), "maps-second")
    assert cp.returncode != 0, describe(cp)
    assert "user namespace joined by path" in cp.stderr, cp.stderr
    assert "maps-second" not in oci.leftovers()


def test_a_missing_namespace_path_is_a_clear_error(oci):
    def edit(config):
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "pid"]
        config["linux"]["namespaces"].append({"type": "pid", "path": "/proc/999999999/ns/pid"})
    cp = oci("run", "--bundle", oci.bundle(["true"], edit=edit), "gone-ns")
    assert cp.returncode != 0, describe(cp)
    assert "/proc/999999999/ns/pid" in cp.stderr, cp.stderr
    assert oci.leftovers() == []


def test_a_mount_namespace_by_path_is_refused_and_changes_nothing(oci):
    first = start_first(oci, "mnt-first")
    before = open(f"/proc/{first}/mountinfo").read()
    cp = oci("run", "--bundle", oci.bundle(["true"], edit=joining(first, ["mount"])), "mnt-second")
    assert cp.returncode != 0, describe(cp)
    assert "mount namespace by path" in cp.stderr, cp.stderr
    assert open(f"/proc/{first}/mountinfo").read() == before


def test_sysfs_in_a_network_namespace_of_another_user_namespace(h, oci_runtime):
    """As root, two containers with user namespaces of their own (ids from
    100000 and from 200000), the second joining the first one's network
    namespace, which belongs to the first's user namespace: the kernel
    refuses the second a sysfs there, so /sys is the host's, bound
    read-only, as runc binds it; the container runs, in the first one's
    network. (Rootless, the kernel lets no runner join such a namespace.)"""
    oci = Oci(h, oci_runtime, "root")
    try:
        def own_user(outer):
            def edit(config):
                namespaces = config["linux"]["namespaces"]
                namespaces.append({"type": "user"})
                if not any(n["type"] == "network" for n in namespaces):
                    namespaces.append({"type": "network"})
                for key in ("uidMappings", "gidMappings"):
                    config["linux"][key] = [{"containerID": 0, "hostID": outer, "size": 65536}]
            return edit
        bundle = oci.bundle(["sleep", "300"], edit=own_user(100000))
        oci.ok("run", "--detach", "--bundle", bundle, "sys-first")
        first = oci.wait_status("sys-first", "running")["pid"]

        def edit(config):
            own_user(200000)(config)
            joining(first, ["network"])(config)
            # The host's cgroup tree is not the second container's to mount
            # over the bound /sys; a cgroup namespace of its own needs none.
            config["mounts"] = [m for m in config["mounts"]
                                if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
            config["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                                     "options": ["nosuid", "noexec", "nodev", "ro"]})
        script = "readlink /proc/self/ns/net; ls /sys/kernel >/dev/null && echo sys-ok; touch /sys/x 2>/dev/null || echo ro"
        cp = oci("run", "--bundle", oci.bundle(["sh", "-c", script], edit=edit), "sys-second")
        assert cp.returncode == 0, describe(cp)
        net, sys_ok, ro = cp.stdout.split()
        assert net == ns_id(first, "net"), cp.stdout
        assert (sys_ok, ro) == ("sys-ok", "ro"), cp.stdout
    finally:
        oci.cleanup()
