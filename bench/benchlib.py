"""Set-up shared by the benchmarks: the test harness's user, binaries and
busybox rootfs (tests/conftest.py), made as root before dropping to that
user; and the interleaved timing both benchmarks report."""

import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

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


def time_interleaved(commands, runs, warmup=20, env=None, raw=None):
    """Runs the commands ({name: argv}) in turn, one run each, `runs` times,
    in a new order each round: every command meets the machine in the same
    states (another container's namespaces still being torn down, say). Times spawn to
    reaped, medians in ms; stdio is /dev/null. Each command's times, in
    round order, go to `raw` ({name: [ms]}) when it is given."""
    devnull = os.open(os.devnull, os.O_RDWR)
    quiet = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
    env = env or dict(os.environ)
    times = {name: [] for name in commands}
    # Each command is slowed by what ran just before it (the kernel still
    # tearing down that one's namespaces): in a fixed order the same
    # command always follows the same one, which showed as a bias of half
    # a millisecond. A fresh shuffle each round (seeded, so a rerun is the
    # same sequence) gives every command every predecessor.
    order = list(commands.items())
    shuffle = random.Random(0x6B656E6E).shuffle
    for i in range(warmup + runs):
        shuffle(order)
        for name, argv in order:
            start = time.perf_counter_ns()
            pid = os.posix_spawnp(argv[0], argv, env, file_actions=quiet)
            _, status = os.waitpid(pid, 0)
            elapsed = time.perf_counter_ns() - start
            if status != 0:
                raise SystemExit(f"bench: {shlex.join(argv)} failed ({status:#x})")
            if i >= warmup:
                times[name].append(elapsed / 1e6)
    os.close(devnull)
    if raw is not None:
        raw.update(times)
    return {name: statistics.median(t) for name, t in times.items()}


def paired_cost(with_it, without_it):
    """What one thing costs, from two commands timed in the same rounds
    (`time_interleaved`'s raw times): the median of the per-round
    differences, which cancels what drifts between rounds (another
    process's burst, the page cache), and a distribution-free 95%
    confidence interval of that median (order statistics). In ms."""
    diffs = sorted(a - b for a, b in zip(with_it, without_it))
    n = len(diffs)
    half = 0.98 * n ** 0.5  # 1.96 * sqrt(n) / 2
    low = max(0, int(n / 2 - half))
    high = min(n - 1, int(n / 2 + half + 1))
    return statistics.median(diffs), diffs[low], diffs[high]
