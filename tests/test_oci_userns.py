"""Root running a bundle whose user namespace leaves host root out of its
maps (a rootfs owned by root, the container's ids from 100000 on): runc
runs it, the container's root being host 100000 and the rootfs's files
showing as the overflow id; kennel-oci must too, the same way."""

import os
import shutil
import subprocess

import pytest

from probe import describe
from test_oci_lifecycle import Oci

OUTER = 100000
REPORT = "id -u; id -g; stat -c %u /bin/busybox; mkdir /scratch/dir && stat -c %u /scratch/dir"


@pytest.fixture
def oci(h, oci_runtime):
    o = Oci(h, oci_runtime, "root")
    yield o
    o.cleanup()


def unmapped_bundle(oci, scratch):
    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": OUTER, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": OUTER, "size": 65536}]
        config["mounts"].append({"destination": "/scratch", "type": "bind", "source": scratch,
                                 "options": ["rbind", "rw"]})
    bundle = oci.bundle(["sh", "-c", REPORT], edit=edit)
    # Host root's directory, which the container's root cannot write: the
    # mount point is there already, as runc needs it.
    os.mkdir(os.path.join(bundle, "rootfs", "scratch"))
    return bundle


def test_root_runs_a_bundle_whose_maps_leave_host_root_out(oci, h):
    scratch = oci.tempdir()
    os.chown(scratch, OUTER, OUTER)
    bundle = unmapped_bundle(oci, scratch)
    cp = oci("run", "--bundle", bundle, "unmapped-root")
    assert cp.returncode == 0, describe(cp)
    uid, gid, image_owner, made_owner = cp.stdout.split()
    assert (uid, gid) == ("0", "0"), cp.stdout
    # Host root's files have no id inside: the kernel shows the overflow id.
    assert image_owner == "65534", cp.stdout
    assert made_owner == "0", cp.stdout
    # What the container made is the mapped root's on the host, not root's.
    assert os.stat(os.path.join(scratch, "dir")).st_uid == OUTER
    assert oci.leftovers() == []


def test_runc_agrees_on_the_same_bundle(oci, h):
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("runc is not installed (make test-deps installs it): nothing to compare with")
    outputs = []
    for binary in (oci.binary, runc):
        scratch = oci.tempdir()
        os.chown(scratch, OUTER, OUTER)
        bundle = unmapped_bundle(oci, scratch)
        root = oci.tempdir(0o700)
        cp = subprocess.run([binary, "--root", root, "run", "--bundle", bundle, "cmp"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, (binary, cp.stdout, cp.stderr)
        outputs.append(cp.stdout)
    assert outputs[0] == outputs[1], outputs
