"""What a container can leave behind on the host, found without touching
anything another session's containers own: processes by a marker in their
command line, mounts by path, state entries by name."""

import os
import random

from probe import kennel, ok, ps_names, wait_until


def unique_marker():
    """A number to put in a container's command (`sleep 1000.MARKER`): the
    runner, its forks and the command all carry it in their argv."""
    return f"{random.randrange(1 << 40)}"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def live(pid):
    """Whether pid runs (a zombie has done its harm: it holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_with(marker):
    """Live processes whose argv holds `marker`, as 'pid argv' lines."""
    needle = marker.encode()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = cmdline(entry)
            if any(needle in a for a in argv) and live(entry):
                out.append(f"{entry} {b' '.join(argv).decode(errors='replace')}")
    return out


def processes_of(program):
    """Live processes executing `program` (a path of the harness's own
    bindir, which no other session shares)."""
    want = program.encode()
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and cmdline(e)[:1] == [want] and live(e)]


def mounts_under(*paths):
    """Lines of the host's mountinfo whose mount point lies under one of
    `paths`."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in paths):
                out.append(line.strip())
    return out


def state_entries(user, name):
    """Entries of the user's kennel state directory that belong to `name`:
    its record and any claim made aside (`.NAME.PID`)."""
    root = os.path.join(user.runtime_dir, "kennel")
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return []
    return [e for e in entries if e == name or e.startswith(f".{name}.")]


def assert_nothing_left(h, marker, name=None, rootfs=None, timeout=5):
    """Waits for every process carrying `marker` to be gone, then checks
    that no kennel-idmap of the harness runs, no mount remains under the
    rootfs or the state directory, and `kennel ps` neither lists `name`
    nor leaves an entry of it behind."""
    left = []

    def gone():
        left[:] = processes_with(marker)
        return not left
    try:
        wait_until(gone, "the container's processes to end", timeout=timeout)
    except BaseException:
        raise AssertionError("processes outlived the container:\n" + "\n".join(left)) from None
    # A helper that was waiting on the runner ends once it reads the
    # runner's end, a moment after the container's processes may be gone.
    helpers = []

    def helpers_gone():
        helpers[:] = processes_of(h.idmap)
        return not helpers
    try:
        wait_until(helpers_gone, "kennel-idmap to end", timeout=timeout)
    except BaseException:
        raise AssertionError(f"kennel-idmap still runs: {helpers}") from None
    stray = mounts_under(rootfs or h.rootfs, os.path.join(h.user.runtime_dir, "kennel"))
    assert not stray, stray
    if name:
        assert name not in ps_names(h), f"kennel ps lists {name} after its end"
        assert state_entries(h.user, name) == [], state_entries(h.user, name)


def claim_again(h, name, *flags):
    """A new container of the same name starts and runs."""
    cp = kennel(h, "run", "--rootfs", h.rootfs, "--name", name, *flags, "--", "echo", "CLAIMED")
    assert ok(cp) == "CLAIMED\n"
