"""Landlock (`kennel run --landlock`, on by default for the host sandbox,
the annotation run.kennel.landlock for bundles): the container writes only
to its volumes and its own filesystems, never to its root, even where the
root is mounted writable. Each test is the write a container would try,
checked from the host."""

import ctypes
import os
import re
import struct
import subprocess
import uuid

import pytest

from probe import containers, copy_rootfs, describe, kennel, ok, run, sh  # noqa: F401
from test_oci_lifecycle import Oci

EACCES_TEXT = "Permission denied"


def kernel_landlock_abi():
    """The kernel's Landlock ABI, or the errno saying why it has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return abi if abi > 0 else -ctypes.get_errno()


@pytest.fixture(scope="module")
def landlock(h):
    abi = kernel_landlock_abi()
    if abi <= 0:
        pytest.skip(f"this kernel has no Landlock (landlock_create_ruleset: {os.strerror(-abi)}); "
                    "the refusal is tested under a seccomp filter instead")
    return abi


def private_rootfs(h):
    """A copy of the busybox rootfs, writable by the test user (so the
    mount is writable too: only Landlock stands in the way)."""
    return copy_rootfs(h)


# --------------------------------------------------------------------------
# kennel run --rootfs --landlock


def test_a_write_into_a_writable_rootfs_is_refused(h, landlock):
    rootfs = private_rootfs(h)
    passwd = os.path.join(rootfs, "etc", "passwd")
    with open(passwd) as f:
        before = f.read()
    script = ("echo x > /etc/landlocked; echo etc=$?; mkdir /home/landlocked; echo home=$?; "
              "echo root:: >> /etc/passwd; echo passwd=$?; rm /bin/not-executable; echo rm=$?")
    r = sh(h, script, "--landlock", rootfs=rootfs)
    out = ok(r)
    for what in ["etc", "home", "passwd", "rm"]:
        assert f"{what}=0" not in out, describe(r)
    assert EACCES_TEXT in r.stderr, describe(r)
    assert not os.path.exists(os.path.join(rootfs, "etc", "landlocked"))
    assert not os.path.exists(os.path.join(rootfs, "home", "landlocked"))
    assert os.path.exists(os.path.join(rootfs, "bin", "not-executable"))
    with open(passwd) as f:
        assert f.read() == before


@pytest.mark.parametrize("flags", [[], ["--landlock=false"]])
def test_without_landlock_the_same_write_succeeds(h, landlock, flags):
    rootfs = private_rootfs(h)
    ok(sh(h, "echo x > /etc/landlocked && mkdir /home/landlocked", *flags, rootfs=rootfs))
    assert os.path.exists(os.path.join(rootfs, "etc", "landlocked"))
    assert os.path.isdir(os.path.join(rootfs, "home", "landlocked"))


def test_truncating_a_rootfs_file_is_refused(h, landlock):
    if landlock < 3:
        pytest.skip(f"this kernel's Landlock ABI is {landlock}: truncate is confined from ABI 3 on")
    rootfs = private_rootfs(h)
    r = sh(h, "truncate -s 0 /etc/passwd; echo rc=$?", "--landlock", rootfs=rootfs)
    assert "rc=0" not in ok(r), describe(r)
    assert os.path.getsize(os.path.join(rootfs, "etc", "passwd")) > 0


def test_volumes_and_the_containers_own_paths_stay_writable(h, landlock):
    rootfs = private_rootfs(h)
    vol = h.tempdir()
    ro_vol = h.tempdir()
    script = ("set -e; echo vol > /data/written; mkdir /data/dir; mv /data/written /data/dir/moved; "
              "echo tmp > /tmp/t; cat /tmp/t; echo shm > /dev/shm/s; echo run > /run/r; "
              "echo null > /dev/null; mkdir /scratch/d; echo $$ > /proc/self/comm; "
              "if echo no > /ro/x; then echo RO-WRITTEN; fi; echo done")
    r = sh(h, script, "--landlock", "-v", f"{vol}:/data", "-v", f"{ro_vol}:/ro:ro",
           "--tmpfs", "/scratch", rootfs=rootfs)
    out = ok(r)
    assert out.splitlines()[-1] == "done", describe(r)
    assert "tmp" in out and "RO-WRITTEN" not in out
    with open(os.path.join(vol, "dir", "moved")) as f:
        assert f.read() == "vol\n"
    assert os.listdir(ro_vol) == []


def test_stdout_can_be_reopened_by_path(h, landlock):
    """A script's `echo > /dev/stdout` still reaches the file the caller
    redirected stdout to, though that file lies outside the container."""
    out_file = os.path.join(h.tempdir(), "out")
    with open(out_file, "w") as f:
        os.chown(out_file, h.user.uid, h.user.gid)
        argv = [h.kennel, "run", "--rootfs", h.rootfs, "--landlock", "--",
                "sh", "-c", "echo reopened > /dev/stdout"]
        r = subprocess.run(h.user.argv(argv), env=h.user.env(), stdout=f, stderr=subprocess.PIPE,
                           text=True, timeout=20, cwd="/")
    assert r.returncode == 0, r.stderr
    with open(out_file) as f:
        assert f.read() == "reopened\n"


def test_verbose_names_the_abi(h, landlock):
    r = kennel(h, "--verbose", "run", "--rootfs", h.rootfs, "--landlock", "--", "true")
    ok(r)
    m = re.search(r"Landlock ABI (\d+) \(of the kernel's (\d+)\)", r.stderr)
    assert m, describe(r)
    assert int(m.group(2)) == landlock
    assert int(m.group(1)) == min(landlock, 5)


def test_the_fence_leaves_a_process_that_keeps_cap_sys_admin_free_to_mount(h, landlock):
    """The default fence would make the kernel refuse every mount(2); a
    container given CAP_SYS_ADMIN (podman --privileged, a distrobox init)
    holds it to mount, so it gets no fence."""
    script = "mount -t tmpfs scratch /tmp && echo MOUNTED"
    cp = sh(h, script, "--cap-add", "CAP_SYS_ADMIN")
    assert cp.stdout.split() == ["MOUNTED"], describe(cp)
    # Without the capability the same mount is refused by the kernel (no
    # Landlock needed for that): the test above proves the fence is off.
    cp = sh(h, script)
    assert "MOUNTED" not in cp.stdout, describe(cp)


def test_landlock_with_allow_new_privs_is_refused(h, landlock):
    r = run(h, "--landlock", "--allow-new-privs", cmd=["echo", "RAN"])
    assert r.returncode == 125, describe(r)
    assert "RAN" not in r.stdout
    assert "no_new_privs" in r.stderr and "--allow-new-privs" in r.stderr, r.stderr


def test_exec_into_a_confined_container_is_confined_too(h, landlock, containers):
    rootfs = private_rootfs(h)
    vol = h.tempdir()
    name = f"ll-{uuid.uuid4().hex[:12]}"
    containers.start(name, "--landlock", "-v", f"{vol}:/data", rootfs=rootfs)
    r = kennel(h, "exec", name, "--", "sh", "-c",
               "echo x > /etc/landlocked; echo etc=$?; echo vol > /data/from-exec")
    assert "etc=0" not in ok(r) and EACCES_TEXT in r.stderr, describe(r)
    assert not os.path.exists(os.path.join(rootfs, "etc", "landlocked"))
    with open(os.path.join(vol, "from-exec")) as f:
        assert f.read() == "vol\n"


def test_exec_into_an_unconfined_container_can_write_its_root(h, landlock, containers):
    rootfs = private_rootfs(h)
    name = f"ll-{uuid.uuid4().hex[:12]}"
    containers.start(name, rootfs=rootfs)
    ok(kennel(h, "exec", name, "--", "sh", "-c", "echo x > /etc/landlocked"))
    assert os.path.exists(os.path.join(rootfs, "etc", "landlocked"))


# --------------------------------------------------------------------------
# The host sandbox: on by default


def sandbox_write_through_fd(h, *flags):
    """In the host sandbox, writes into a host directory the test user owns
    and that is no volume, reached through an fd handed to the container
    (--preserve-fds): the one way such a directory is in reach there."""
    outside = h.tempdir()
    script = "echo x > /proc/self/fd/3/escaped; echo rc=$?; ls /proc/self/fd/3/"
    with open(os.path.join(outside, "present"), "w"):
        pass
    r = h.user.run(["sh", "-c", 'exec "$0" run --preserve-fds 1 "$@" 3<"$ARG_DIR"', h.kennel,
                    *flags, "--", "sh", "-c", script], env={"ARG_DIR": outside})
    return r, outside


def test_sandbox_confines_writes_by_default(h, landlock):
    r, outside = sandbox_write_through_fd(h)
    out = ok(r)
    assert "rc=0" not in out and EACCES_TEXT in r.stderr, describe(r)
    assert "present" in out, "reading through the fd must still work: " + describe(r)
    assert os.listdir(outside) == ["present"]


def test_sandbox_opt_out_writes_through_the_fd(h, landlock):
    r, outside = sandbox_write_through_fd(h, "--landlock=false")
    assert "rc=0" in ok(r), describe(r)
    assert sorted(os.listdir(outside)) == ["escaped", "present"]


def test_sandbox_home_stays_writable(h, landlock):
    name = f"kennel-landlock-{uuid.uuid4().hex}"
    path = os.path.join(h.user.home, name)
    try:
        r = kennel(h, "run", "--", "sh", "-c", f'echo home > "$HOME/{name}" && echo tmp > /tmp/t && cat /tmp/t')
        assert ok(r) == "tmp\n"
        with open(path) as f:
            assert f.read() == "home\n"
    finally:
        if os.path.exists(path):
            os.unlink(path)


# --------------------------------------------------------------------------
# Bundles: the annotation


def test_oci_bundle_with_the_annotation_is_confined(h, landlock, oci_runtime):
    oci = Oci(h, oci_runtime, "rootless")
    try:
        out = oci.outdir()
        script = ("(echo x > /etc/landlocked) 2>/out/err; echo etc=$? > /out/result; "
                  "echo vol > /out/written")

        def annotate(config):
            config.setdefault("annotations", {})["run.kennel.landlock"] = "true"
            config["root"]["readonly"] = False

        bundle = oci.bundle(["sh", "-c", script], out=out, edit=annotate)
        oci.ok("create", "--bundle", bundle, "ll")
        oci.ok("start", "ll")
        oci.wait_status("ll", "stopped", timeout=10)
        oci.ok("delete", "ll")
        with open(os.path.join(out, "result")) as f:
            assert f.read().strip() != "etc=0"
        with open(os.path.join(out, "err")) as f:
            assert EACCES_TEXT in f.read()
        assert not os.path.exists(os.path.join(bundle, "rootfs", "etc", "landlocked"))
        with open(os.path.join(out, "written")) as f:
            assert f.read() == "vol\n"
    finally:
        oci.cleanup()


def test_a_bad_annotation_value_is_refused(h, landlock, oci_runtime):
    oci = Oci(h, oci_runtime, "rootless")
    try:
        def annotate(config):
            config.setdefault("annotations", {})["run.kennel.landlock"] = "maybe"

        bundle = oci.bundle(["true"], edit=annotate)
        cp = oci("create", "--bundle", bundle, "bad")
        assert cp.returncode != 0, describe(cp)
        assert "run.kennel.landlock" in cp.stderr and "maybe" in cp.stderr, describe(cp)
        assert oci.leftovers() == []
    finally:
        oci.cleanup()


# --------------------------------------------------------------------------
# A kernel without Landlock, as a seccomp filter around kennel shows it:
# landlock_create_ruleset fails with ENOSYS (not built in) or EOPNOTSUPP
# (not enabled at boot), as it does on such kernels.

NO_LANDLOCK = r"""
import ctypes, os, struct, sys
err = int(sys.argv[1])
LD_NR, JEQ, RET = 0x20, 0x15, 0x06
prog = b"".join(struct.pack("HBBI", *i) for i in [
    (LD_NR, 0, 0, 0),               # the system call's number
    (JEQ, 0, 1, 444),               # landlock_create_ruleset
    (RET, 0, 0, 0x00050000 | err),  # SECCOMP_RET_ERRNO
    (RET, 0, 0, 0x7FFF0000),        # SECCOMP_RET_ALLOW
])
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
fbuf = ctypes.create_string_buffer(fprog)
assert libc.prctl(38, 1, 0, 0, 0) == 0           # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(fbuf)), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP
os.execv(sys.argv[2], sys.argv[2:])
"""


def without_landlock(h, errno_value, *args):
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("the filter names landlock_create_ruleset by its number on x86_64 and aarch64")
    return h.user.run(["python3", "-c", NO_LANDLOCK, str(errno_value), h.kennel, *args], timeout=30)


@pytest.mark.parametrize("errno_name,says", [("ENOSYS", "CONFIG_SECURITY_LANDLOCK"), ("EOPNOTSUPP", "lsm=")])
def test_landlock_on_a_kernel_without_it_is_an_error(h, errno_name, says):
    import errno
    vol = h.tempdir()
    r = without_landlock(h, getattr(errno, errno_name), "run", "--userns", "single", "--rootfs", h.rootfs,
                         "--landlock", "-v", f"{vol}:/out", "--", "touch", "/out/ran")
    assert r.returncode == 125, describe(r)
    assert says in r.stderr and "lsm=" in r.stderr and "Landlock" in r.stderr, describe(r)
    assert len(r.stderr.strip().splitlines()) == 1, describe(r)
    assert os.listdir(vol) == [], "the command ran without the Landlock it asked for"


def test_sandbox_default_without_landlock_runs_and_says_so(h):
    import errno
    r = without_landlock(h, errno.ENOSYS, "--verbose", "run", "--", "sh", "-c", "echo ran")
    assert ok(r) == "ran\n"
    assert "Landlock is off" in r.stderr and "CONFIG_SECURITY_LANDLOCK" in r.stderr, describe(r)
    quiet = without_landlock(h, errno.ENOSYS, "run", "--", "sh", "-c", "echo ran")
    assert ok(quiet) == "ran\n" and "Landlock" not in quiet.stderr, describe(quiet)
