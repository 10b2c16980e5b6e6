"""Root filesystems as a new user brings them: one made by docs/run.md's
recipe ("A root filesystem": an image tarball unpacked inside a
container, so each owner goes through the user's id map), and trees
that lack mount points, run --read-only without a write to them."""

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from conftest import write_rootfs_tar
from probe import copy_rootfs, describe, ok, run, tree


def _image_tar(h, dest):
    """The harness's busybox tree as a root-owned layer, plus a file owned
    by uid 100 and gid 200, as an image would have, a file in its /dev and
    one in another directory named dev."""
    write_rootfs_tar(h.rootfs, dest)
    with tarfile.open(dest, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("var/spool-owned-by-100")
        data = b"spool\n"
        info.size, info.uid, info.gid, info.mode = len(data), 100, 200, 0o640
        tar.addfile(info, io.BytesIO(data))
        for name in ["usr/lib/dev/kept", "dev/not-a-device"]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.chmod(dest, 0o644)


def test_an_image_unpacked_inside_a_container_keeps_its_owners(h):
    u = h.user
    images = h.tempdir(owner=u)
    _image_tar(h, os.path.join(images, "image.tar"))
    os.mkdir(os.path.join(images, "unpacked"))
    os.chown(os.path.join(images, "unpacked"), u.uid, u.gid)
    cp = run(h, "--net=private", "-v", f"{images}:/images",
             cmd=["tar", "-xf", "/images/image.tar", "-C", "/images/unpacked", "--numeric-owner"])
    assert cp.returncode == 0, describe(cp)
    unpacked = os.path.join(images, "unpacked")
    # On the host: root's files are the user's, uid 100's are subordinate.
    assert os.lstat(os.path.join(unpacked, "bin", "busybox")).st_uid == u.uid
    st = os.lstat(os.path.join(unpacked, "var", "spool-owned-by-100"))
    assert (st.st_uid, st.st_gid) == (u.subid_start + 99, u.subid_start + 199)
    # Inside the new rootfs, the owners are the image's.
    out = ok(run(h, "--net=private", rootfs=unpacked,
                 cmd=["stat", "-c", "%u:%g", "/bin/busybox", "/var/spool-owned-by-100"]))
    assert out.split() == ["0:0", "100:200"]


@pytest.mark.parametrize("owner", ["user", "root"])
def test_read_only_root_gets_mount_points_without_a_write_to_it(h, owner):
    """--read-only on a tree without /run and without the -v targets: the
    container has them, and the tree is exactly as it was, whoever owns
    it. (In a tree of another user's, a point inside a directory of theirs,
    /etc/x say, still has to exist: the kernel will not copy up a
    directory whose owner the container does not map.)"""
    rootfs = copy_rootfs(h)
    shutil.rmtree(os.path.join(rootfs, "run"))
    volume = h.tempdir()
    with open(os.path.join(volume, "from-host"), "w") as f:
        f.write("host\n")
    # A top-level name no earlier test can have made in the shared rootfs
    # this one is copied from (a -v onto /data there leaves /data behind).
    point = f"/{os.path.basename(volume)}/in/here"
    assert not os.path.lexists(rootfs + point.split("/in/")[0])
    flags = ["--read-only", "--net=private", "-v", f"{volume}:{point}:ro"]
    script = f"cat {point}/from-host; touch /run/x && echo run-ok; touch /bin/x || echo ro"
    if owner == "root":
        subprocess.run(["chown", "-R", "0:0", rootfs], check=True)
    else:
        flags += ["-v", f"{volume}/from-host:/etc/from-host:ro"]
        script += "; cat /etc/from-host"
    before = tree(rootfs)
    cp = run(h, *flags, rootfs=rootfs, cmd=["sh", "-c", script])
    assert cp.returncode == 0, describe(cp)
    expected = ["host", "run-ok", "ro"] + (["host"] if owner == "user" else [])
    assert cp.stdout.split() == expected, describe(cp)
    assert tree(rootfs) == before


def test_rootfs_import_unpacks_an_image_through_the_users_map(h):
    u = h.user
    images = h.tempdir(owner=u)
    tarball = os.path.join(images, "image.tar")
    _image_tar(h, tarball)
    dest = os.path.join(images, "imported")
    cp = u.run([h.kennel, "rootfs", "import", tarball, dest], timeout=60)
    assert cp.returncode == 0, describe(cp)
    assert os.lstat(os.path.join(dest, "bin", "busybox")).st_uid == u.uid
    st = os.lstat(os.path.join(dest, "var", "spool-owned-by-100"))
    assert (st.st_uid, st.st_gid) == (u.subid_start + 99, u.subid_start + 199)
    # Only the image's own /dev is left out, not another directory named dev.
    assert os.path.isfile(os.path.join(dest, "usr", "lib", "dev", "kept")), "a file under usr/lib/dev was dropped"
    assert os.listdir(os.path.join(dest, "dev")) == [], os.listdir(os.path.join(dest, "dev"))
    out = ok(run(h, "--net=private", rootfs=dest,
                 cmd=["stat", "-c", "%u:%g", "/bin/busybox", "/var/spool-owned-by-100"]))
    assert out.split() == ["0:0", "100:200"]
    # Never over an existing tree.
    again = u.run([h.kennel, "rootfs", "import", tarball, dest], timeout=20)
    assert again.returncode == 125 and "is not empty" in again.stderr, describe(again)


def test_rootfs_import_without_subordinate_ids_names_the_fix(h):
    images = h.tempdir(owner=h.nosub)
    tarball = os.path.join(images, "image.tar")
    _image_tar(h, tarball)
    out = os.path.join(images, "out")
    cp = h.nosub.run([h.kennel, "rootfs", "import", tarball, out], timeout=20)
    assert cp.returncode == 125, describe(cp)
    assert "/etc/subuid" in cp.stderr and "usermod" in cp.stderr, cp.stderr
    # In the command's own terms (the user never typed --userns), with the
    # way on for a one-id container, and nothing made.
    assert "--userns" not in cp.stderr, cp.stderr
    assert f"mkdir {out} && tar -xf {tarball} -C {out}" in cp.stderr, cp.stderr
    assert not os.path.lexists(out), "the refused import left its directory behind"
