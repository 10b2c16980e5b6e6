"""Many containers at once, as a CI runner or a test suite starts them:
200 named containers through kennel-idmap, 20 at a time, in 10 rounds.
Every one must run, see only its own stdio, and leave nothing behind."""

import os
import subprocess
import time

from probe import describe
from probe.leaks import assert_nothing_left, mounts_under, processes_of, state_entries, unique_marker

ROUNDS = 10
AT_ONCE = 20


def test_200_named_containers_20_at_a_time(h):
    marker = unique_marker()
    failures = []
    started = time.monotonic()
    for r in range(ROUNDS):
        procs = []
        for i in range(AT_ONCE):
            name = f"conc-{marker}-{r}-{i}"
            # The marker is $0 of the shell, so every process of the run
            # (runner, child, command) carries it.
            argv = [h.kennel, "run", "--rootfs", h.rootfs, "--userns=auto", "--name", name, "--",
                    "sh", "-c", 'echo "$(hostname) $(ls /proc/self/fd | tr "\\n" " ")"', f"marker-{marker}"]
            procs.append((name, h.user.popen(argv, stdin=subprocess.DEVNULL)))
        for name, proc in procs:
            out, err = proc.communicate(timeout=60)
            cp = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            # ls holds fd 3 for the directory it lists; nothing else is open.
            if proc.returncode != 0 or out.split() != [name, "0", "1", "2", "3"]:
                failures.append(f"{name}: {describe(cp)}")
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} of {ROUNDS * AT_ONCE} failed:\n" + "\n".join(failures[:5])
    assert_nothing_left(h, marker)
    root = os.path.join(h.user.runtime_dir, "kennel")
    left = [e for e in os.listdir(root) if marker in e] if os.path.isdir(root) else []
    assert left == [], left
    assert processes_of(h.idmap) == []
    assert mounts_under(h.rootfs) == []
    assert state_entries(h.user, f"conc-{marker}-0-0") == []
    print(f"{ROUNDS * AT_ONCE} containers in {elapsed:.1f} s")
