"""`kennel-oci features` tells containerd and podman what they may put in
config.json; each claim is tried here: every namespace it lists makes a
container, every mount option it lists is taken by a mount, and what it
leaves out (the time namespace, idmapped mounts) is refused by name."""

import json

import pytest

from probe import describe
from test_oci_lifecycle import Oci

# Options that need a source to bind. A plain bind is of a directory with
# no mounts below it: the kernel refuses to reveal what a locked submount
# covers.
NEEDS_BIND = {"bind", "rbind"}


@pytest.fixture(scope="module")
def features(h, oci_runtime):
    o = Oci(h, oci_runtime, "rootless")
    return json.loads(o.ok("features", root=False).stdout)


@pytest.fixture
def oci(h, oci_runtime):
    o = Oci(h, oci_runtime, "rootless")
    yield o
    o.cleanup()


def test_every_listed_namespace_makes_a_container(oci, features):
    listed = features["linux"]["namespaces"]
    assert {"user", "mount", "pid", "network"} <= set(listed), listed

    def edit(config):
        config["linux"]["namespaces"] = [{"type": t} for t in listed]
    cp = oci("run", "--bundle", oci.bundle(["readlink", "/proc/self/ns/uts"], edit=edit), "ns-all")
    assert cp.returncode == 0, describe(cp)
    assert cp.stdout.startswith("uts:["), cp.stdout


def test_a_namespace_not_listed_is_refused(oci, features):
    assert "time" not in features["linux"]["namespaces"]

    def edit(config):
        config["linux"]["namespaces"].append({"type": "time"})
    cp = oci("run", "--bundle", oci.bundle(["true"], edit=edit), "ns-time")
    assert cp.returncode != 0 and "time namespace" in cp.stderr, describe(cp)
    assert oci.leftovers() == []


def test_every_listed_mount_option_is_taken(oci, features):
    options = features["mountOptions"]
    assert "rslave" in options and "tmpcopyup" in options, options
    mounts = []
    source = oci.tempdir()
    for i, option in enumerate(options):
        if option in NEEDS_BIND:
            mounts.append({"destination": f"/mnt/o{i}", "type": "bind", "source": source,
                           "options": [option, "ro"]})
        else:
            mounts.append({"destination": f"/mnt/o{i}", "type": "tmpfs", "source": "tmpfs",
                           "options": [option]})

    def edit(config):
        config["mounts"].extend(mounts)
    script = f"for i in $(seq 0 {len(options) - 1}); do grep -q \" /mnt/o$i \" /proc/self/mountinfo && echo ok; done"
    cp = oci("run", "--bundle", oci.bundle(["sh", "-c", script], edit=edit), "opts-all")
    assert cp.returncode == 0, describe(cp)
    assert cp.stdout.split() == ["ok"] * len(options), (options, cp.stdout)


def test_idmapped_mounts_are_not_claimed_and_refused(oci, features):
    assert features["linux"]["mountExtensions"]["idmap"]["enabled"] is False

    def edit(config):
        config["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/",
                                 "options": ["rbind", "ro"],
                                 "uidMappings": [{"containerID": 0, "hostID": 0, "size": 1}],
                                 "gidMappings": [{"containerID": 0, "hostID": 0, "size": 1}]})
    cp = oci("run", "--bundle", oci.bundle(["true"], edit=edit), "idmap")
    assert cp.returncode != 0 and "uidMappings" in cp.stderr, describe(cp)
    assert oci.leftovers() == []
