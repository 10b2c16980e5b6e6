"""The README's recipe for a root filesystem ("A root filesystem"): an
image tarball unpacked inside a container, so each file's owner goes
through the user's id map, gives a tree that runs with the owners the
image meant."""

import io
import os
import tarfile

from conftest import write_rootfs_tar
from probe import describe, ok, run


def _image_tar(h, dest):
    """The harness's busybox tree as a root-owned layer, plus a file owned
    by uid 100 and gid 200, as an image would have."""
    write_rootfs_tar(h.rootfs, dest)
    with tarfile.open(dest, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("var/spool-owned-by-100")
        data = b"spool\n"
        info.size, info.uid, info.gid, info.mode = len(data), 100, 200, 0o640
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
