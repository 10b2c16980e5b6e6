"""linux.devices as runc makes them, seen from inside the container: as
real root (no user namespace) the node is made with mknod, with the mode
and owner config.json gives; rootless (a user namespace, where no device
node can be made) the host's node at that path is bound, as runc binds it.
Bad input is refused by field and index with nothing made, and an image's
/dev that links out of the rootfs never gets a node made on the host.

The device cgroup (linux.resources.devices) needs a cgroup v2 tree with
controllers: see test_vm_cgroups.py."""

import json
import os
import shutil
import subprocess

import pytest

from probe import describe
from test_oci_lifecycle import MODES, Oci, one_error_line

RUNC = shutil.which("runc")

# Rootless, the host's node at the same path is bound: the `host_node`
# fixture makes one there for the test.
NODE = "/dev/kennel-test-mydev"
MYDEV = {"path": NODE, "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o620, "uid": 1, "gid": 2}

# What the container sees of the node, and whether a write to it works.
LOOK = (f"stat -c '%F %t,%T %a %u %g' {NODE} > /out/stat; "
        f"echo hello > {NODE} && echo written >> /out/stat")


@pytest.fixture(params=MODES)
def oci(request, h, oci_runtime, host_node):
    o = Oci(h, oci_runtime, request.param)
    yield o
    o.cleanup()


@pytest.fixture
def host_node():
    """NODE on the host: the null device, c 1:3, as root makes it."""
    if os.path.lexists(NODE):
        os.unlink(NODE)
    subprocess.run(["mknod", "-m", "0666", NODE, "c", "1", "3"], check=True)
    yield NODE
    os.unlink(NODE)


def with_devices(*devices):
    def edit(config):
        config.setdefault("linux", {})["devices"] = list(devices)
    return edit


def run(oci, bundle, cid):
    return oci("run", "--bundle", bundle, cid, timeout=60)


def seen(oci, devices=(MYDEV,)):
    out = oci.outdir()

    def edit(config):
        with_devices(*devices)(config)
        if not oci.user:
            # The node's owner, who may write to it (root without
            # CAP_DAC_OVERRIDE, as the spec's default, may not).
            config["process"]["user"] = {"uid": 1, "gid": 2}

    bundle = oci.bundle(["sh", "-c", LOOK], out=out, edit=edit)
    cp = run(oci, bundle, "dev1")
    assert cp.returncode == 0, describe(cp)
    with open(os.path.join(out, "stat")) as f:
        return f.read().split("\n")


def test_the_node_is_the_device_asked_for(oci):
    kind, written = seen(oci)[:2]
    if oci.user:
        # The host's /dev/null, bound: its mode, owned by a host root the
        # user namespace does not map.
        assert kind == "character special file 1,3 666 65534 65534", kind
        assert os.stat(NODE).st_mode & 0o7777 == 0o666, "the host's node is unchanged"
    else:
        assert kind == "character special file 1,3 620 1 2", kind
    assert written == "written"


@pytest.mark.skipif(RUNC is None, reason="runc is not installed: nothing to compare with")
def test_runc_makes_the_same_node(oci, h):
    ours = seen(oci)
    theirs = seen(Oci(h, RUNC, oci.mode))
    assert ours == theirs


def test_a_spec_device_takes_the_place_of_a_default_one(oci):
    # /dev/null as /dev/zero's numbers: kennel's default /dev/null is not
    # bound there too.
    zero = {"path": "/dev/null", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640}
    if oci.user:
        # Rootless, the host's node is bound, and must be the one asked for.
        out = oci.outdir()
        bundle = oci.bundle(["true"], out=out, edit=with_devices(zero))
        cp = run(oci, bundle, "dev2")
        assert cp.returncode != 0, describe(cp)
        assert "not that device" in cp.stderr, describe(cp)
        return
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", "stat -c '%t,%T %a' /dev/null > /out/stat; grep -c ' /dev/null ' /proc/self/mountinfo >> /out/stat; true"],
                        out=out, edit=with_devices(zero))
    cp = run(oci, bundle, "dev2")
    assert cp.returncode == 0, describe(cp)
    with open(os.path.join(out, "stat")) as f:
        assert f.read().split() == ["1,5", "640", "0"]


def test_a_node_the_host_lacks_is_a_clear_error_rootless(h, oci_runtime, host_node):
    oci = Oci(h, oci_runtime, "rootless")
    try:
        out = oci.outdir()
        missing = dict(MYDEV, path="/dev/kennel-no-such-device")
        bundle = oci.bundle(["sh", "-c", "touch /out/ran"], out=out, edit=with_devices(missing))
        cp = run(oci, bundle, "dev3")
        assert cp.returncode != 0, describe(cp)
        assert "/dev/kennel-no-such-device" in cp.stderr and "the host has no" in cp.stderr, describe(cp)
        assert not os.path.exists(os.path.join(out, "ran"))
    finally:
        oci.cleanup()


@pytest.mark.parametrize("device,says", [
    (dict(MYDEV, path="dev/mydev"), "linux.devices[0].path dev/mydev is relative"),
    (dict(MYDEV, type="x"), "is not a device type: use c (character)"),
    ({"path": NODE, "type": "c", "minor": 3}, "linux.devices[0].major is missing"),
])
def test_bad_input_is_refused_by_field_and_nothing_is_made(oci, device, says):
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", "touch /out/ran"], out=out, edit=with_devices(device))
    rootfs = os.path.join(bundle, "rootfs")
    before = sorted(os.listdir(os.path.join(rootfs, "dev")))
    cp = run(oci, bundle, "dev4")
    assert cp.returncode != 0, describe(cp)
    assert says in one_error_line(cp), describe(cp)
    assert oci.leftovers() == []
    assert not os.path.exists(os.path.join(out, "ran"))
    assert sorted(os.listdir(os.path.join(rootfs, "dev"))) == before
    assert not os.path.exists(os.path.join(rootfs, "dev/mydev"))


def test_an_image_dev_linking_to_the_host_gets_no_node_there(oci):
    """The attack: the image's /dev is a symlink to a host directory, and
    the spec mounts nothing on /dev, so the node is made through the link.
    It lands inside the rootfs; the host directory stays empty."""
    target = oci.tempdir(0o777)
    out = oci.outdir()

    def edit(config):
        with_devices(MYDEV)(config)
        config["mounts"] = [m for m in config["mounts"] if not m["destination"].startswith("/dev")]

    bundle = oci.bundle(["sh", "-c", f"stat -c '%t,%T' {NODE} > /out/stat"], out=out, edit=edit)
    rootfs = os.path.join(bundle, "rootfs")
    shutil.rmtree(os.path.join(rootfs, "dev"))
    os.symlink(target, os.path.join(rootfs, "dev"))
    if oci.user:
        subprocess.run(["chown", "-h", f"{oci.user.uid}:{oci.user.gid}", os.path.join(rootfs, "dev")], check=True)
    cp = run(oci, bundle, "dev5")
    assert os.listdir(target) == [], describe(cp)
    assert cp.returncode == 0, describe(cp)
    with open(os.path.join(out, "stat")) as f:
        assert f.read().strip() == "1,3"
    # Made where the link leads inside the rootfs.
    inside = os.path.join(rootfs, target.lstrip("/"), os.path.basename(NODE))
    assert os.path.lexists(inside), os.listdir(rootfs)


def test_a_fifo_is_made_in_either_mode(oci):
    out = oci.outdir()
    fifo = {"path": "/run/kennel.fifo", "type": "p", "fileMode": 0o600}
    bundle = oci.bundle(["sh", "-c", "stat -c '%F %a' /run/kennel.fifo > /out/stat"],
                        out=out, edit=with_devices(fifo))
    cp = run(oci, bundle, "dev6")
    assert cp.returncode == 0, describe(cp)
    with open(os.path.join(out, "stat")) as f:
        assert f.read().strip() == "fifo 600"


def test_a_written_spec_is_refused_before_parse(oci):
    """The field is named even where the spec types would fail to parse."""
    out = oci.outdir()
    bundle = oci.bundle(["true"], out=out, edit=with_devices({"path": "/dev/x"}))
    cp = run(oci, bundle, "dev7")
    assert cp.returncode != 0
    assert "linux.devices[0].type is missing" in cp.stderr, describe(cp)
    with open(os.path.join(bundle, "config.json")) as f:
        assert json.load(f)["linux"]["devices"] == [{"path": "/dev/x"}]


KMSG = {"path": "/dev/mykmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666}
WRITE_BOTH = ("echo kennel-device-rules-test > /dev/mykmsg && echo KMSG-WRITTEN; "
              "echo x > /dev/null && echo NULL-WRITTEN")


def unified_tree():
    """Where a device program can go: the cgroup2 mount (all of
    /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


@pytest.mark.parametrize("allow_kmsg", [False, True], ids=["deny-all", "kmsg-allowed"])
def test_device_rules_hold_for_root_without_a_limit(h, oci_runtime, allow_kmsg):
    """Root, no resource limit, the spec's deny-all device rules: a node of
    linux.devices the rules do not open (c 1:11, which anyone could write)
    is refused by the device program, /dev/null is open; an allow rule
    opens it. On a hybrid host the container gets a unified leaf for the
    program alone, and it goes with the container."""
    tree = unified_tree()
    if tree is None:
        pytest.skip("no cgroup2 mount on this host: nowhere for a device program")
    o = Oci(h, oci_runtime, "root")
    try:
        def edit(config):
            with_devices(KMSG)(config)
            rules = config["linux"]["resources"]["devices"]
            assert rules and rules[0]["allow"] is False, rules
            if allow_kmsg:
                rules.append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"})
            config["linux"]["cgroupsPath"] = "kennel-test-device-rules"
        bundle = o.bundle(["sh", "-c", WRITE_BOTH], edit=edit)
        cp = run(o, bundle, "devrules")
        assert "NULL-WRITTEN" in cp.stdout, describe(cp)
        if allow_kmsg:
            assert "KMSG-WRITTEN" in cp.stdout, describe(cp)
        else:
            assert "KMSG-WRITTEN" not in cp.stdout and "Operation not permitted" in cp.stderr, describe(cp)
        left = [d for d, _, _ in os.walk(tree) if d.endswith("kennel-test-device-rules")]
        assert left == [], left
    finally:
        o.cleanup()


def pure_v1_wrapper(h, oci_runtime):
    """kennel-oci run in a mount namespace of its own where the hybrid
    host's cgroup2 mount is gone: what a pure cgroup v1 host looks like
    to it (the host's mounts are untouched: the namespace is private)."""
    path = os.path.join(h.tempdir(), "kennel-oci-pure-v1")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "exec unshare --mount --propagation private sh -c "
                f"'umount /sys/fs/cgroup/unified && exec {oci_runtime} \"$@\"' kennel-oci \"$@\"\n")
    os.chmod(path, 0o755)
    return path


@pytest.mark.parametrize("allow_kmsg", [False, True], ids=["deny-all", "kmsg-allowed"])
def test_device_rules_hold_on_pure_cgroup_v1(h, oci_runtime, allow_kmsg):
    """Root on a host whose controllers are all on cgroup v1: the v1
    devices controller keeps the spec's rules, as on v2 the program does,
    and the container's devices cgroup goes with it."""
    if unified_tree() != "/sys/fs/cgroup/unified" or not os.path.isdir("/sys/fs/cgroup/devices"):
        pytest.skip("not a hybrid host with a v1 devices hierarchy: no pure v1 view to make")
    o = Oci(h, pure_v1_wrapper(h, oci_runtime), "root")
    try:
        def edit(config):
            with_devices(KMSG)(config)
            rules = config["linux"]["resources"]["devices"]
            if allow_kmsg:
                rules.append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"})
            config["linux"]["cgroupsPath"] = "kennel-test-device-rules-v1"
        bundle = o.bundle(["sh", "-c", WRITE_BOTH], edit=edit)
        cp = o("--debug", "run", "--bundle", bundle, "devrules-v1", timeout=60)
        assert "NULL-WRITTEN" in cp.stdout, describe(cp)
        assert "cgroup v1 devices controller" in cp.stderr, describe(cp)
        if allow_kmsg:
            assert "KMSG-WRITTEN" in cp.stdout, describe(cp)
        else:
            assert "KMSG-WRITTEN" not in cp.stdout and "Operation not permitted" in cp.stderr, describe(cp)
        left = [d for d, _, _ in os.walk("/sys/fs/cgroup/devices") if d.endswith("kennel-test-device-rules-v1")]
        assert left == [], left
    finally:
        o.cleanup()


def test_device_rules_v1_cannot_keep_are_refused(h, oci_runtime):
    """A deny narrower than an earlier allow, which the v1 controller would
    leave open: an error naming the device, and no container, no cgroup."""
    if unified_tree() != "/sys/fs/cgroup/unified" or not os.path.isdir("/sys/fs/cgroup/devices"):
        pytest.skip("not a hybrid host with a v1 devices hierarchy: no pure v1 view to make")
    o = Oci(h, pure_v1_wrapper(h, oci_runtime), "root")
    try:
        def edit(config):
            config["linux"]["resources"]["devices"] = [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "access": "rw"},
                {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rw"}]
            config["linux"]["cgroupsPath"] = "kennel-test-device-rules-v1"
        bundle = o.bundle(["true"], edit=edit)
        cp = o("run", "--bundle", bundle, "devrules-v1-bad", timeout=60)
        assert cp.returncode != 0 and "cannot be kept on cgroup v1" in cp.stderr, describe(cp)
        assert "char 1:11" in cp.stderr, describe(cp)
        assert o("state", "devrules-v1-bad").returncode != 0
        left = [d for d, _, _ in os.walk("/sys/fs/cgroup/devices") if d.endswith("kennel-test-device-rules-v1")]
        assert left == [], left
    finally:
        o.cleanup()
