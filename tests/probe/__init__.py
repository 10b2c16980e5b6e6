"""Helpers shared by the runner's integration tests (test_run, test_lifecycle,
test_bad_input): starting kennel as the test user, copies of the rootfs,
bounded waits, and named containers that are always cleaned up."""

import json
import os
import select
import signal
import subprocess
import time

import pytest

# Docker's 14 default capabilities as a CapBnd/CapPrm/CapEff mask.
DEFAULT_CAPS = 0xA80425FB
CAP_SYS_ADMIN = 1 << 21


def kennel(h, *args, user=None, **kw):
    """`kennel ARGS...` as `user` (the harness user by default)."""
    kw.setdefault("timeout", 20)
    return (user or h.user).run([h.kennel, *map(str, args)], **kw)


def run(h, *flags, cmd, rootfs=None, user=None, **kw):
    """`kennel run --rootfs ROOTFS FLAGS -- CMD` as `user`."""
    return kennel(h, "run", "--rootfs", rootfs or h.rootfs, *flags, "--", *cmd, user=user, **kw)


def sh(h, script, *flags, **kw):
    """Runs a shell script inside the busybox rootfs."""
    return run(h, *flags, cmd=["sh", "-c", script], **kw)


def describe(cp):
    return f"exit {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"


def ok(cp):
    """The stdout of a run that must have succeeded."""
    assert cp.returncode == 0, describe(cp)
    return cp.stdout


def wait_until(pred, what, timeout=5.0, interval=0.02):
    """Polls pred() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# The first line of the /etc/resolv.conf mount point pasta's keeper makes
# in a writable rootfs that lacks one, while a container runs there.
LIVE_MOUNT_POINT = b"# kennel made this file as the mount point of a running container's"


def copy_rootfs(h, owner=None):
    """A private copy of the busybox rootfs, owned like the original,
    without the mount point of a container running on the original just
    now (it goes when that container ends; a copy would keep it)."""
    dest = h.tempdir(owner=owner)
    subprocess.run(["cp", "-a", h.rootfs + "/.", dest], check=True)
    point = os.path.join(dest, "etc", "resolv.conf")
    if os.path.isfile(point) and not os.path.islink(point):
        with open(point, "rb") as f:
            if f.read(len(LIVE_MOUNT_POINT)) == LIVE_MOUNT_POINT:
                os.unlink(point)
    return dest


def tree(path):
    """Everything under path (names, types, sizes, modes, owners, mtimes), to
    check that a failed run left a directory exactly as it was."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def status_fields(text):
    """/proc/PID/status as a dict."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def caps(text):
    """The five capability sets and NoNewPrivs from a /proc/self/status dump."""
    f = status_fields(text)
    sets = {k: int(f[k], 16) for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]}
    sets["NoNewPrivs"] = int(f["NoNewPrivs"])
    return sets


def id_map(text):
    return [tuple(int(n) for n in line.split()) for line in text.strip().splitlines()]


def stat_fields(pid):
    """(state, ppid) of a host pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def children(pid):
    """Host pids whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = stat_fields(int(entry))
            if f and f[1] == pid:
                out.append(int(entry))
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def read_line(stream, timeout, what):
    """One line from a pipe, with a deadline ("" at its end).

    It reads the pipe's fd a byte at a time, never through the stream's
    buffer: a buffered readline could take the next lines in with the
    first, and a select on the fd would then wait for lines already read."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (read so far: {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode()


def state_dir(user, name):
    return os.path.join(user.runtime_dir, "kennel", name)


def ps_json(h, user=None):
    cp = kennel(h, "ps", "--format", "json", user=user)
    return json.loads(ok(cp))


def ps_names(h, user=None):
    return [c["name"] for c in ps_json(h, user)]


class Containers:
    """Starts named containers in the background and always stops them."""

    def __init__(self, h):
        self.h = h
        self.procs = []

    def start(self, name, *flags, cmd=("sleep", "30"), user=None, rootfs=None):
        """Starts `kennel run --name NAME` and returns its Popen once
        `kennel ps` lists the container."""
        user = user or self.h.user
        argv = [self.h.kennel, "run", "--rootfs", rootfs or self.h.rootfs, "--name", name, *flags, "--", *cmd]
        proc = user.popen(argv, stdin=subprocess.DEVNULL)
        self.procs.append((proc, name, user))

        def listed():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"container {name} exited early ({proc.returncode}): {out} {err}")
            return name in ps_names(self.h, user)

        wait_until(listed, f"`kennel ps` to list {name}")
        return proc

    def close(self):
        for proc, name, user in self.procs:
            if proc.poll() is None:
                kennel(self.h, "kill", name, "KILL", user=user)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.fixture
def containers(h):
    c = Containers(h)
    yield c
    c.close()
