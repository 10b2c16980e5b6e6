"""kennel on a kernel without the new mount API (open_tree, move_mount,
fsopen, fsconfig, fsmount, mount_setattr: Linux 5.2 to 5.12). A seccomp
filter makes those calls answer ENOSYS, as such a kernel does, and the
container must come out the same as with them: same mounts, same flags,
read-only where asked."""

import os
import platform
import subprocess

import pytest

from probe import copy_rootfs, describe, ok

PYTHON = "/usr/bin/python3"

# Installs a filter under which the new mount API answers ENOSYS (x86-64
# numbers), checks that it does, then runs argv. no_new_privs first: an
# ordinary user may install a filter only then.
HIDE_MOUNT_API = r"""
import ctypes, errno, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
HIDDEN = [428, 429, 430, 431, 432, 433, 442]
ALLOW, HIDE = 0x7FFF0000, 0x00050000 | errno.ENOSYS
def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
LOAD, JEQ, RET = 0x20, 0x15, 0x06
prog = [insn(LOAD, 0, 0, 4), insn(JEQ, 1, 0, 0xC000003E), insn(RET, 0, 0, ALLOW), insn(LOAD, 0, 0, 0)]
prog += [insn(JEQ, len(HIDDEN) - i, 0, nr) for i, nr in enumerate(HIDDEN)]
prog += [insn(RET, 0, 0, ALLOW), insn(RET, 0, 0, HIDE)]
code = ctypes.create_string_buffer(b"".join(prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.cast(code, ctypes.c_void_p))
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit(f"cannot install the filter: {os.strerror(ctypes.get_errno())}")
if libc.syscall(442, -1, None, 0, None, 0) != -1 or ctypes.get_errno() != errno.ENOSYS:
    sys.exit("the filter does not hide mount_setattr")
os.execv(sys.argv[1], sys.argv[1:])
"""

# What the container sees of its mounts: each mount point with its
# read-only or read-write flag and the other per-mount flags, in order;
# then what writes get through.
SURVEY = r"""
awk '{print $5, $6}' /proc/self/mountinfo
echo x > /v/f 2>/dev/null && echo VOLUME-WRITABLE
echo x > /v/sub/f 2>/dev/null && echo SUBMOUNT-WRITABLE
touch /root-file 2>/dev/null && echo ROOT-WRITABLE
echo x > /t/f && echo TMPFS-WRITABLE
echo hi > /dev/null && echo NULL-WORKS
echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo PROC-SYS-WRITABLE
ls /dev | tr '\n' ' '
"""


def test_without_the_mount_api_the_container_is_the_same(h):
    if platform.machine() != "x86_64":
        pytest.skip(f"the filter is written with x86-64 system call numbers; this is {platform.machine()}")
    rootfs = copy_rootfs(h)
    volume = h.tempdir()
    sub = os.path.join(volume, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"uid={h.user.uid}", "tmpfs", sub], check=True)
    try:
        argv = [h.kennel, "run", "--userns", "single", "--read-only", "--rootfs", rootfs,
                "-v", f"{volume}:/v:ro", "--tmpfs", "/t", "--", "sh", "-c", SURVEY]
        with_api = h.user.run(argv, timeout=20)
        without = h.user.run([PYTHON, "-c", HIDE_MOUNT_API, *argv], timeout=20)
    finally:
        subprocess.run(["umount", sub], check=True)
    seen = ok(without)
    assert seen == ok(with_api), f"--- with the mount API\n{with_api.stdout}\n--- without\n{seen}"
    mounts = dict(line.split(" ", 1) for line in seen.splitlines() if line.startswith("/"))
    for point in ["/", "/v", "/v/sub", "/proc/sys"]:
        assert mounts.get(point, "").startswith("ro,"), describe(without)
    assert mounts["/v"].startswith("ro,nosuid"), describe(without)
    assert "NULL-WORKS" in seen and "TMPFS-WRITABLE" in seen, seen
    assert "WRITABLE\n" not in seen.replace("TMPFS-WRITABLE\n", ""), seen
