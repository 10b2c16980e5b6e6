"""The kill matrix: kennel run is held at each sync point of its start
(KENNEL_TEST_STOP_AT, see engine/src/stop_at.rs), then the runner, the
child or kennel-idmap is SIGKILLed there. Whatever was killed, nothing of
the container may remain: no process, no mount, no kennel-idmap, no state
entry, `kennel ps` does not list it, and its name can be claimed again.

cgroup leaves and systemd scopes exist only in the VM (tests/vm_cases.py);
this host has neither."""

import os
import signal
import subprocess

import pytest

from probe import describe, wait_until
from probe.leaks import assert_nothing_left, claim_again, processes_of, unique_marker

# Each point, and which process stops there.
POINTS = {
    "cloned": "runner",
    "maps-written": "runner",
    "started": "runner",
    "child-born": "child",
    "child-mapped": "child",
    "root-built": "child",
    "before-exec": "child",
}

CASES = [(point, victim, userns)
         for userns in ("auto", "single")
         for point in POINTS
         for victim in ("runner", "child")]
# kennel-idmap lives from before the clone until it has written the maps:
# at `cloned` it waits for the child's pidfd.
CASES.append(("cloned", "helper", "auto"))


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _container_child(runner):
    """The runner's clone: the one of its children that is not
    kennel-idmap and has a pid namespace of its own (NSpid has two
    numbers)."""
    for pid in _children(runner):
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = [l for l in f.read().splitlines() if l.startswith("NSpid:")][0].split()[1:]
        except (OSError, IndexError):
            continue
        if len(nspid) == 2:
            return pid
    return None


def _stopped(runner, where):
    """The pid that stopped (renamed itself kennel-stopped), once it has."""
    if where == "runner":
        if _comm(runner) != "kennel-stopped":
            return None
        with open(f"/proc/{runner}/stat") as f:
            return runner if f.read().rsplit(")", 1)[1].split()[0] == "T" else None
    child = _container_child(runner)
    return child if child and _comm(child) == "kennel-stopped" else None


@pytest.mark.parametrize("point,victim,userns", CASES, ids=["-".join(c) for c in CASES])
def test_killed_at_a_sync_point_leaves_nothing(h, point, victim, userns):
    marker = unique_marker()
    name = f"km-{point}-{victim}-{userns}"
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--name", name, f"--userns={userns}",
                         "--", "sleep", f"1000.{marker}"],
                        env={"KENNEL_TEST_STOP_AT": point}, stdin=subprocess.DEVNULL)
    try:
        def stopped():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"kennel ended before stopping at {point}: {describe_exit(proc, out, err)}")
            return _stopped(proc.pid, POINTS[point])
        wait_until(stopped, f"kennel to stop at {point}", timeout=10)
        if userns == "auto" and point == "cloned":
            helpers = processes_of(h.idmap)
            assert helpers, "kennel-idmap is not waiting at `cloned`"
        targets = {"runner": proc.pid, "child": _container_child(proc.pid),
                   "helper": (processes_of(h.idmap) or [None])[0]}
        assert targets[victim], f"no {victim} to kill at {point}"
        os.kill(targets[victim], signal.SIGKILL)
        # What was stopped goes on, and must notice.
        if victim != "runner" and POINTS[point] == "runner":
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if victim == "runner":
        assert proc.returncode == -signal.SIGKILL
    else:
        # The command never ran to its end: kennel reports the failure or
        # the command's death (137), it does not claim success.
        assert proc.returncode in (125, 137), describe_exit(proc, out, err)
    assert_nothing_left(h, marker, name)
    claim_again(h, name, f"--userns={userns}")


def describe_exit(proc, out, err):
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def test_an_unknown_stop_point_is_refused(h):
    """A typo in the test variable must not let the start run through."""
    cp = h.user.run([h.kennel, "run", "--rootfs", h.rootfs, "--", "echo", "RAN"],
                    env={"KENNEL_TEST_STOP_AT": "nowhere"}, timeout=20)
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert "KENNEL_TEST_STOP_AT" in cp.stderr and "cloned" in cp.stderr, cp.stderr
