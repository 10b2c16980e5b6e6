"""Set-up shared by the benchmarks: the test harness's user, binaries and
busybox rootfs (tests/conftest.py), made as root before dropping to that
user."""

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))


def setup_as_root(binaries=("kennel", "kennel-idmap")):
    """(user, bindir, rootfs, scratch): the benchmark user (the harness's,
    with its subordinate ids), `binaries` copied from the build directory
    into a world-readable scratch directory (kennel-idmap with its file
    capabilities), and a busybox rootfs owned by the user. The caller
    removes `scratch`."""
    import conftest  # noqa: E402  (the harness lives with the tests)

    pw = conftest._ensure_user(conftest.USER)
    start = conftest.USER_SUBID_START
    conftest._ensure_subid("/etc/subuid", conftest.USER, start, conftest.SUBID_COUNT)
    conftest._ensure_subid("/etc/subgid", conftest.USER, start, conftest.SUBID_COUNT)
    user = conftest.TestUser(conftest.USER, pw.pw_uid, pw.pw_gid, pw.pw_dir, conftest._runtime_dir(pw), start)
    scratch = tempfile.mkdtemp(prefix="kennel-bench-")
    os.chmod(scratch, 0o755)
    bindir = os.path.join(scratch, "bin")
    os.mkdir(bindir, 0o755)
    for b in binaries:
        built = os.path.join(conftest.BUILD_DIR, b)
        if not os.path.exists(built):
            raise SystemExit(f"bench: {built} is not built: run `make build` first")
        shutil.copy2(built, os.path.join(bindir, b))
        os.chmod(os.path.join(bindir, b), 0o755)
    if "kennel-idmap" in binaries:
        subprocess.run(["setcap", "cap_setuid,cap_setgid=ep", os.path.join(bindir, "kennel-idmap")], check=True)
    rootfs = os.path.join(scratch, "rootfs")
    conftest._build_rootfs(rootfs, user)
    return user, bindir, rootfs, scratch
