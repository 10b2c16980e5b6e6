"""Attacks on kennel from inside a container and with hostile images and
flags. Each test is the attack itself and asserts that the host is
unchanged: no file made or read outside the root, no byte typed into the
caller's terminal, no key of the caller's visible, no process left."""

import fcntl
import os
import random
import select
import signal
import subprocess
import termios
import time

import pytest

from conftest import require_tool
from probe import containers  # noqa: F401 (a fixture)
from probe import children, copy_rootfs, describe, kennel, ok, run, sh, state_dir, tree, wait_until

# --------------------------------------------------------------------------
# Descriptors: the caller's, the runner's, and the working directory


def _host_dir(h):
    """A directory of the user's on the host, with one file in it."""
    d = h.tempdir()
    with open(os.path.join(d, "host-file"), "w") as f:
        f.write("host\n")
    os.chown(os.path.join(d, "host-file"), h.user.uid, h.user.gid)
    return d


# The attacker's script: walk every fd of PID 1 and of itself, write a file
# through each directory it leads to, and list what is there.
ESCAPE = r'''
for fd in /proc/1/fd/* /proc/self/fd/*; do
  for up in "" /.. /../.. /../../..; do
    touch "$fd$up/escaped" 2>/dev/null && echo "WROTE $fd$up"
  done
done
ls /proc/1/fd | tr '\n' ' '; echo
'''


def _container_init(runner):
    """The host pid of the runner's child that is PID 1 of its namespace."""
    for pid in children(runner):
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next(l for l in f.read().splitlines() if l.startswith("NSpid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
    return None


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_the_callers_fds_never_reach_the_container(h, init):
    """`exec 7<file 8<dir; kennel run --init`: PID 1 (kennel's own init)
    holds stdio and nothing else, and no fd leads to the host."""
    target = _host_dir(h)
    before = tree(target)
    script = 'exec 7<"$0" 8<"$1"; shift; exec "$@"'
    proc = h.user.popen(["sh", "-c", script, os.path.join(target, "host-file"), target, h.kennel, "run",
                         "--rootfs", h.rootfs, *(["--init"] if init else []), "--",
                         "sh", "-c", ESCAPE + "sleep 1"])
    try:
        if init:
            # Seen from the host (the container may not even list them):
            # once the command runs, the init holds stdio and nothing else.
            init_pid = wait_until(lambda: _container_init(proc.pid), "the container's init")
            wait_until(lambda: children(init_pid), "the init to start the command")
            wait_until(lambda: sorted(os.listdir(f"/proc/{init_pid}/fd"), key=int) == ["0", "1", "2"],
                       "the init to hold only fds 0, 1 and 2")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "WROTE" not in out, out
    assert tree(target) == before


# The caller's shell holds its host directory at fds 3 to 9 (all that dash
# can name); fd 3 is also passed on with --preserve-fds 1.
OPEN_HOST_DIR = 'for fd in 3 4 5 6 7 8 9; do eval "exec $fd<\\"\\$0\\""; done; exec "$@"'


@pytest.mark.parametrize("fd", range(3, 10))
def test_workdir_through_an_fd_is_refused(h, fd):
    """`-w /proc/self/fd/N` with N any fd kennel or the caller holds: the
    start fails before the command runs, and nothing lands on the host."""
    target = _host_dir(h)
    before = tree(target)
    cp = h.user.run(["sh", "-c", OPEN_HOST_DIR, target, h.kennel, "run", "--rootfs", h.rootfs,
                     "--preserve-fds", "1", "-w", f"/proc/self/fd/{fd}", "--",
                     "sh", "-c", "touch escaped; echo RAN; pwd"], timeout=20)
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert "working directory" in cp.stderr, cp.stderr
    assert tree(target) == before


def test_bundle_cwd_through_an_fd_is_refused(h):
    from test_bundle import base_config, write_bundle
    target = _host_dir(h)
    before = tree(target)
    config = base_config(["/bin/sh", "-c", "touch escaped; echo RAN"])
    config["process"]["cwd"] = "/proc/self/fd/3"
    bundle = write_bundle(h, config)
    cp = h.user.run(["sh", "-c", OPEN_HOST_DIR, target, h.kennel, "run", "--preserve-fds", "1",
                     "--bundle", bundle], timeout=20)
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert tree(target) == before


def test_exec_workdir_through_an_fd_is_refused(h, containers):
    containers.start("atk-exec")
    target = _host_dir(h)
    before = tree(target)
    for fd in range(3, 10):
        cp = h.user.run(["sh", "-c", OPEN_HOST_DIR, target, h.kennel, "exec", "-w", f"/proc/self/fd/{fd}",
                         "atk-exec", "--", "sh", "-c", "touch escaped; echo RAN"], timeout=20)
        assert cp.returncode == 125, describe(cp)
        assert "RAN" not in cp.stdout
    assert tree(target) == before


@pytest.mark.parametrize("count", ["4294967295", "2147483645", "99999999"])
def test_preserve_fds_beyond_the_fd_limit_is_refused(h, count):
    cp = run(h, "--preserve-fds", count, cmd=["echo", "RAN"])
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert f"--preserve-fds {count}" in cp.stderr and "ulimit -n" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------
# The caller's terminal and keyring

# The host's python, which the host sandbox shows at the same path.
PYTHON = "/usr/bin/python3"

# Pushes a command into the input of its stdin's terminal, as a shell reading
# that terminal would then run it. Exit 0: typed; 1: refused (errno printed).
TIOCSTI = r'''
import fcntl, os, sys, termios
request = termios.TIOCSTI | (1 << 32 if sys.argv[1] == "wide" else 0)
try:
    for c in b"echo INJECTED\n":
        fcntl.ioctl(0, request, bytes([c]))
except OSError as e:
    print("refused:", e.strerror, flush=True)
    sys.exit(1)
print("typed", flush=True)
'''


def _pending_input(fd, wait=0.3):
    """What a reader of the terminal (the caller's shell) would read next."""
    out = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 4096)
    return out


def _on_a_terminal(h, argv):
    """Runs argv as the user with a fresh pty as its controlling terminal and
    stdio, non-canonical so injected bytes are readable at once. Returns
    (exit code, what it printed, input left for the caller's shell)."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~(termios.ICANON | termios.ECHO)
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(slave, False)

    def make_ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = h.user.popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        start_new_session=True, preexec_fn=make_ctty, text=True)
    out, err = proc.communicate(timeout=30)
    pending = _pending_input(slave)
    os.close(master)
    os.close(slave)
    return proc.returncode, out + err, pending


@pytest.mark.parametrize("variant", ["plain", "wide"])
def test_no_tiocsti_into_the_callers_terminal(h, variant):
    """Without -t the container's stdin is the caller's terminal, but never
    its controlling terminal, so TIOCSTI cannot type into the caller's
    shell (bubblewrap's CVE-2017-5226). The host sandbox has python3."""
    code, out, pending = _on_a_terminal(h, [PYTHON, "-c", TIOCSTI, variant])
    if code != 0:
        pytest.skip(f"this kernel refuses TIOCSTI even outside a container ({out.strip()}; "
                    "dev.tty.legacy_tiocsti=0?), so the attack cannot be shown")
    assert b"INJECTED" in pending  # the attack works on a plain process
    code, out, pending = _on_a_terminal(h, [h.kennel, "run", "--", PYTHON, "-c", TIOCSTI, variant])
    assert code == 1, out
    assert "refused: Operation not permitted" in out
    assert pending == b"", pending


def test_tiocsti_is_refused_even_on_the_containers_own_terminal(h):
    """The seccomp filter is a second line behind the new session: TIOCSTI
    is refused on any terminal, the container's own pty (-t) included."""
    code, out, _ = _on_a_terminal(h, [h.kennel, "run", "-t", "--", PYTHON, "-c", TIOCSTI, "wide"])
    assert code == 1, out
    assert "refused: Operation not permitted" in out, out


def test_the_terminal_stays_usable_as_plain_stdio(h):
    code, out, _ = _on_a_terminal(h, [h.kennel, "run", "--rootfs", h.rootfs, "--", "sh", "-c",
                                      "test -t 0 && echo STDIN-IS-A-TTY; cat /proc/self/stat"])
    assert code == 0, out
    assert "STDIN-IS-A-TTY" in out
    # A session of its own: field 6 (session) is the container's own pid 1.
    fields = out.splitlines()[-1].rsplit(")", 1)[1].split()
    assert fields[3] == "1", out  # session id: the container's PID 1


def test_the_callers_terminal_settings_are_put_back(h):
    """Without -t the container may change the caller's terminal settings
    (echo off, raw mode) while it runs; kennel puts them back after it."""
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    try:
        proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--", "sh", "-c",
                             "stty raw -echo && echo CHANGED"], stdin=slave)
        out, err = proc.communicate(timeout=20)
        after = termios.tcgetattr(slave)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0 and "CHANGED" in out, err
    assert after == before


def test_the_callers_session_keyring_is_out_of_reach(h):
    keyctl = require_tool("keyctl", "keyutils")
    script = ('keyctl add user kennel_secret hunter2 @s >/dev/null || exit 3; '
              'keyctl print %user:kennel_secret; '
              'exec "$@"')
    # /proc/keys may list the key (its owner's uid is mapped inside), but
    # its payload must be out of reach, by name and by id.
    inside = ("keyctl print %user:kennel_secret 2>&1 || echo NOT-FOUND; "
              "for id in $(grep kennel_secret /proc/keys | cut -d' ' -f1); do "
              "keyctl print 0x$id 2>&1 || echo DENIED; done")
    cp = h.user.run([keyctl, "session", "-", "sh", "-c", script, "sh", h.kennel, "run", "--",
                     "sh", "-c", inside], timeout=20)
    out = ok(cp).splitlines()
    assert out[0] == "hunter2", out  # the caller has the key
    assert "hunter2" not in out[1:], out
    assert "NOT-FOUND" in out, out


# The caller ignores SIGHUP, SIGINT (as under `nohup` or `&` in a
# non-interactive shell) and signals 32 and 33, and blocks SIGUSR1, SIGTERM and a real-time
# signal; then runs its arguments.
CALLER_WITH_SIGNALS = r'''
import ctypes, os, signal, sys
class KernelSigaction(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulong) for n in ("handler", "flags", "restorer", "mask")]
# glibc's own 32 and 33 too, which only the raw rt_sigaction (13) can set.
libc = ctypes.CDLL(None, use_errno=True)
for n in (32, 33):
    libc.syscall(13, n, ctypes.byref(KernelSigaction(1, 0, 0, 0)), None, 8)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM, signal.SIGRTMIN + 3})
os.execv(sys.argv[1], sys.argv[1:])
'''


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
def test_signal_dispositions_of_the_caller_are_not_inherited(h, init):
    """Every signal starts at its default and unblocked in the container,
    whatever the caller ignored or blocked: a shell inside could not even
    trap an ignored SIGHUP."""
    argv = [PYTHON, "-c", CALLER_WITH_SIGNALS, h.kennel, "run", "--rootfs", h.rootfs,
            *(["--init"] if init else []), "--", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
    lines = ok(h.user.run(argv, timeout=20)).split()
    assert lines == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], lines
    # The caller's own settings were really in place.
    own = ok(h.user.run([PYTHON, "-c", CALLER_WITH_SIGNALS, "/bin/grep", "-E", "^Sig(Ign|Blk)",
                         "/proc/self/status"])).split()
    assert own[1] != "0000000000000000" and own[3] != "0000000000000000", own


def test_the_callers_user_keyring_is_out_of_reach(h):
    """The container's root is the caller's uid on the host, so the caller's
    user keyring would be its to link by serial number and read."""
    keyctl = require_tool("keyctl", "keyutils")
    script = ('k=$(keyctl add user kennel_u_secret TOPSECRET @u) || exit 3; u=$(keyctl id @u); '
              'keyctl link "$u" @s && keyctl print "$k" && echo ATTACK-WORKS-OUTSIDE; keyctl unlink "$u" @s; '
              'exec "$@" "keyctl link $u @s; keyctl print $k; keyctl unlink $k @u; true"')
    cp = h.user.run([keyctl, "session", "-", "sh", "-c", script, "sh", h.kennel, "run", "--",
                     "sh", "-c"], timeout=20)
    out = ok(cp)
    assert "ATTACK-WORKS-OUTSIDE" in out, out
    assert out.count("TOPSECRET") == 1, out  # the caller's own print only
    h.user.run([keyctl, "purge", "user", "kennel_u_secret"], timeout=20)


def test_the_init_shows_nothing_of_the_caller(h):
    """The --init PID 1 is kennel forked from the runner, never exec'd: its
    environment and memory are the caller's. (Its command line, like any
    process's, stays readable: it is the one the caller typed.)"""
    cp = h.user.run([h.kennel, "run", "--init", "--rootfs", h.rootfs, "--", "sh", "-c",
                     "cat /proc/1/environ; readlink /proc/1/exe; "
                     "dd if=/proc/1/mem bs=4096 skip=1 count=4096 2>/dev/null | tr -cd 'A-Za-z0-9=_'; "
                     "echo; echo DONE"],
                    env={"SECRET_TOKEN": "hunter2"}, timeout=20)
    assert "DONE" in ok(cp)
    assert "hunter2" not in cp.stdout and h.kennel not in cp.stdout, cp.stdout
    assert "environ': Permission denied" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------
# Hostile images


def _host_file(h):
    """A file of the user's on the host, with an odd mode and an old mtime,
    so that a chown, chmod, write or touch through a link shows."""
    path = os.path.join(h.tempdir(), "victim")
    with open(path, "w") as f:
        f.write("victim\n")
    os.chown(path, h.user.uid, h.user.gid)
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return path


def _file_state(path):
    """What a chown, chmod, write or touch would change: owner, group, mode,
    mtime and contents."""
    st = os.lstat(path)
    with open(path, "rb") as f:
        return st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns, f.read()


def _plant_link(rootfs, path, target, owner):
    """A symlink at `path` inside the image, made where a lookup inside the
    root finds it (its parents as directories, owned by the user)."""
    full = os.path.join(rootfs, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if os.path.isdir(full) and not os.path.islink(full):
        os.rmdir(full)
    os.symlink(target, full)
    subprocess.run(["chown", "-R", "--no-dereference", f"{owner.uid}:{owner.gid}", rootfs], check=True)


# Three ways an image can name a host path: through where kennel keeps the
# host during set-up, with enough `..` to climb out of any rootfs, and by the
# host path itself (which a runner resolving links on the host would follow).
HOST_LINKS = {"oldroot": "/oldroot{}", "dotdot": "../../../../../../../../oldroot{}", "host-path": "{}"}


@pytest.mark.parametrize("how", ["run", "bundle"])
@pytest.mark.parametrize("form", HOST_LINKS, ids=list(HOST_LINKS))
def test_dev_and_dev_null_links_cannot_reach_the_host(h, form, how):
    """The image's /dev is a link to a host directory, and its /dev/null
    (where /dev leads inside the root) a link to a host file. With
    `kennel run` a fresh /dev is mounted there; in a bundle without one,
    the host's /dev/null is bound onto the image's /dev/null, as rootless
    podman does. Either way the host directory and file stay as they were:
    not written, not chmodded, not chowned."""
    from test_bundle import base_config, write_bundle
    victim_dir, victim_file = _host_dir(h), _host_file(h)
    dir_before, file_before = tree(victim_dir), _file_state(victim_file)
    link = HOST_LINKS[form]
    script = "echo hi > /dev/null && echo NULL-WORKS; cat /dev/null; echo end"
    if how == "run":
        rootfs = copy_rootfs(h)
    else:
        config = base_config(["/bin/sh", "-c", script])
        config["mounts"] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev/null", "type": "bind", "source": "/dev/null",
             "options": ["bind", "nosuid", "noexec"]},
        ]
        bundle = write_bundle(h, config)
        rootfs = os.path.join(bundle, "rootfs")
    # Where /dev leads when the link is resolved inside the root.
    dev_inside = victim_dir if form == "host-path" else "/oldroot" + victim_dir
    _plant_link(rootfs, "/dev", link.format(victim_dir), h.user)
    _plant_link(rootfs, dev_inside + "/null", link.format(victim_file), h.user)
    image_before = tree(rootfs)

    if how == "run":
        cp = sh(h, script, rootfs=rootfs)
    else:
        cp = h.user.run([h.kennel, "run", "--bundle", bundle], timeout=20)
    if how == "run" and form == "host-path":
        # /dev is made at that path inside the root, which the container's
        # fresh /tmp then hides: the image is broken, the host untouched.
        assert cp.returncode != 125, describe(cp)
    else:
        assert "NULL-WORKS" in ok(cp)
    if how == "bundle":
        # The bind followed both links inside the root; the root being
        # read-only, its mount point was made in kennel's layer over the
        # image, not in the image.
        assert tree(rootfs) == image_before, describe(cp)
    assert tree(victim_dir) == dir_before, describe(cp)
    assert _file_state(victim_file) == file_before, describe(cp)


# Links from the image's /data to the host's root: absolute, and with as
# many `..` as it takes to climb from the rootfs (at /tmp/kennel-tests-*/tmp*)
# to /. Followed on the host, both are the host's /.
ROOT_LINKS = {"slash": "/", "dotdot": "../../.."}


@pytest.mark.parametrize("form", ["oldroot", *ROOT_LINKS])
def test_volume_target_symlink_cannot_leave_the_root(h, form):
    """`-v SRC:/data/NEW` where the image's /data is a link to the host's
    root (or to where kennel keeps the host during set-up): NEW is made
    inside the root, the volume is mounted there, and nothing appears on
    the host."""
    rootfs = copy_rootfs(h)
    elsewhere = h.tempdir()
    src = _host_dir(h)
    name = f"kennel-escape-{os.getpid()}-{random.randrange(1 << 32):x}"
    link = ROOT_LINKS.get(form, f"/oldroot{elsewhere}")
    _plant_link(rootfs, "/data", link, h.user)
    if form in ROOT_LINKS:
        assert os.path.realpath(os.path.join(rootfs, "data")) == "/", "the link must lead to the host's /"
    host_root = sorted(os.listdir("/"))
    cp = sh(h, f"cat /data/{name}/host-file", "-v", f"{src}:/data/{name}", rootfs=rootfs)
    assert ok(cp) == "host\n"
    assert sorted(os.listdir("/")) == host_root
    assert os.listdir(elsewhere) == []
    made_in = os.path.join(rootfs, "oldroot" + elsewhere) if form == "oldroot" else rootfs
    assert os.path.isdir(os.path.join(made_in, name)), "the mount point is made inside the root"


@pytest.mark.parametrize("form", ROOT_LINKS)
def test_a_volume_onto_a_link_to_the_root_covers_only_the_containers_root(h, form):
    """`-v SRC:/data` where the image's /data is a link to /: resolved
    inside the root, it is the container's own root that the volume covers
    (here a second image, which the command then runs in); the host's root
    is neither covered nor changed."""
    rootfs, volume = copy_rootfs(h), copy_rootfs(h)
    with open(os.path.join(volume, "marker"), "w") as f:
        f.write("the volume\n")
    _plant_link(rootfs, "/data", ROOT_LINKS[form], h.user)
    assert os.path.realpath(os.path.join(rootfs, "data")) == "/", "the link must lead to the host's /"
    host_root = sorted(os.listdir("/"))
    rootfs_before = tree(rootfs)
    cp = run(h, "-v", f"{volume}:/data", cmd=["/bin/cat", "/marker"], rootfs=rootfs)
    assert ok(cp) == "the volume\n"
    assert sorted(os.listdir("/")) == host_root
    assert tree(rootfs) == rootfs_before


# Swaps two paths back and forth as fast as it can (renameat2
# RENAME_EXCHANGE), as a second container sharing the directory could, and
# keeps the number of swaps made in a file the test reads.
EXCHANGER = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (p.encode() for p in sys.argv[1:3])
count = mmap.mmap(os.open(sys.argv[3], os.O_RDWR), 8)
done = 0
while True:
    if libc.renameat2(-100, a, -100, b, 2) == 0:
        done += 1
        count[:] = done.to_bytes(8, "little")
"""

SWAP_STARTS = 200
SWAPS_DURING_STARTS = 10_000


def _swaps(counter):
    with open(counter, "rb") as f:
        return int.from_bytes(f.read(8), "little")


def _mounts_of(mountinfo, source):
    """(mount point, options) of each mount in a mountinfo dump whose root
    is the directory `source` (a bind of it)."""
    out = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[3].endswith("/" + os.path.basename(source)):
            out.append((fields[4], fields[5]))
    return out


@pytest.mark.parametrize("shared", ["volume", "rootfs"])
def test_a_swapped_mount_destination_never_leaves_the_root(h, shared):
    """`-v SECRET:DST:ro` while another process of the user swaps DST with
    a link to a host directory, SWAP_STARTS times, the swaps counted while
    each start runs. DST lies in a volume shared with that process, or in a
    rootfs it shares. In every start that gets through, SECRET is mounted
    read-only wherever it landed; nothing is ever written to SECRET, and
    nothing is made in the host directory the link names."""
    rootfs = copy_rootfs(h)
    secret, outside = _host_dir(h), h.tempdir()
    secret_before, outside_before = tree(secret), tree(outside)
    if shared == "volume":
        volume = h.tempdir()
        flags = ["-v", f"{volume}:/shared", "-v", f"{secret}:/shared/vol:ro"]
        base, inside = volume, "/shared"
    else:
        flags = ["-v", f"{secret}:/vol:ro"]
        base, inside = rootfs, ""
    os.mkdir(os.path.join(base, "vol"))
    # Made by a runner that follows the link on the host: outside/x.
    os.symlink(f"/oldroot{outside}/x", os.path.join(base, "volalt"))
    for p in ("vol", "volalt"):
        os.lchown(os.path.join(base, p), h.user.uid, h.user.gid)
    counter = os.path.join(h.tempdir(), "swaps")
    with open(counter, "wb") as f:
        f.write(bytes(8))
    os.chown(counter, h.user.uid, h.user.gid)
    script = (f"echo pwned > {inside}/vol/pwned; echo pwned > {inside}/volalt/pwned; "
              "cat /proc/self/mountinfo")
    swapper = h.user.popen([PYTHON, "-c", EXCHANGER, os.path.join(base, "vol"),
                            os.path.join(base, "volalt"), counter], stdout=subprocess.DEVNULL)
    swaps_during, started, through_link = 0, 0, 0
    try:
        wait_until(lambda: _swaps(counter) > 0, "the swapper to start swapping")
        for _ in range(SWAP_STARTS):
            before = _swaps(counter)
            cp = sh(h, script, *flags, rootfs=rootfs)
            swaps_during += _swaps(counter) - before
            assert tree(secret) == secret_before, describe(cp)
            assert tree(outside) == outside_before, describe(cp)
            if cp.returncode == 125:
                continue
            started += 1
            mounts = _mounts_of(cp.stdout, secret)
            assert mounts, describe(cp)
            assert all(opts.split(",")[0] == "ro" for _, opts in mounts), mounts
            # Where the link leads inside the root: the attack met the lookup.
            through_link += any(point.startswith(f"/oldroot{outside}/") for point, _ in mounts)
    finally:
        swapper.kill()
        swapper.wait()
    print(f"{swaps_during} swaps during {SWAP_STARTS} starts; {started} got through, "
          f"{through_link} of them with DST resolved through the link")
    assert swaps_during >= SWAPS_DURING_STARTS, f"only {swaps_during} swaps while kennel was starting"
    assert started > 0, "no start got past the set-up while the paths were swapped"
    assert through_link > 0, "no start met the link: the swaps never reached kennel's lookup"


def test_a_relative_bind_source_is_the_bundles_not_the_images(h):
    """A bundle's relative bind source names a path in the bundle (as runc
    reads it); the image must not steer it, e.g. with a link planted where
    kennel happened to be working, to a host directory of the caller's."""
    from test_bundle import base_config, write_bundle
    secret = _host_dir(h)
    before = tree(secret)
    config = base_config(["/bin/sh", "-c", "cat /data/*; echo pwned > /data/written; true"])
    config["root"]["readonly"] = False
    config["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]}]
    bundle = write_bundle(h, config)
    os.mkdir(os.path.join(bundle, "data"))
    with open(os.path.join(bundle, "data", "meant"), "w") as f:
        f.write("BUNDLE-DATA\n")
    for name, target in [("proc/data", f"/oldroot{secret}"), ("data", f"/oldroot{secret}")]:
        link = os.path.join(bundle, "rootfs", name)
        if os.path.isdir(link) and not os.path.islink(link):
            os.rmdir(link)
        os.symlink(target, link)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", bundle], check=True)
    cp = h.user.run([h.kennel, "run", "--bundle", bundle], timeout=20)
    assert cp.returncode == 0, describe(cp)
    assert "BUNDLE-DATA" in cp.stdout and "host" not in cp.stdout, cp.stdout
    assert tree(secret) == before


def test_a_read_only_volume_has_no_writable_mount_inside(h):
    """`-v SRC:DST:ro` binds SRC with the mounts below it: every one of
    them is read-only (and nosuid) in the container, not only the top."""
    src = _host_dir(h)
    sub = os.path.join(src, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"uid={h.user.uid}", "tmpfs", sub], check=True)
    try:
        before = tree(src)
        cp = sh(h, "echo x > /v/sub/x; echo x > /v/file; grep ' /v/sub ' /proc/self/mountinfo",
                "-v", f"{src}:/v:ro")
        assert tree(src) == before, describe(cp)
        assert " ro," in cp.stdout and "nosuid" in cp.stdout, cp.stdout
    finally:
        subprocess.run(["umount", sub], check=True)


def _image_with_passwd(h, make):
    rootfs = copy_rootfs(h)
    path = os.path.join(rootfs, "etc", "passwd")
    os.unlink(path)
    make(path)
    return rootfs


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "link-to-device"])
def test_hostile_passwd_is_refused_quickly(h, kind):
    """The runner reads the image's /etc/passwd (for HOME, without -u): a
    FIFO must not hang it, a device or a huge file must not grow it."""
    makers = {
        "fifo": os.mkfifo,
        "device": lambda p: os.mknod(p, 0o644 | 0o020000, os.makedev(1, 5)),  # /dev/zero
        "huge": lambda p: open(p, "wb").truncate(64 << 20),
        "link-to-device": lambda p: os.symlink("/dev/zero", p),
    }
    rootfs = _image_with_passwd(h, makers[kind])
    if kind == "link-to-device":
        # Inside the root the link leads to the image's own /dev/zero.
        os.mknod(os.path.join(rootfs, "dev", "zero"), 0o644 | 0o020000, os.makedev(1, 5))
    started = time.monotonic()
    # A 256 MiB address-space limit: reading /dev/zero whole would hit it.
    cp = h.user.run(["sh", "-c", 'ulimit -v 262144; exec "$@"', "sh", h.kennel, "run",
                     "--rootfs", rootfs, "--", "echo", "RAN"], timeout=20)
    assert time.monotonic() - started < 10
    assert cp.returncode == 125, describe(cp)
    assert "/etc/passwd" in cp.stderr, cp.stderr
    assert "not a regular file" in cp.stderr or "bytes, more than" in cp.stderr, cp.stderr


def test_passwd_link_to_a_host_file_stays_in_the_root(h):
    host = os.path.join(h.tempdir(), "passwd")
    with open(host, "w") as f:
        f.write("evil:x:0:0::/evil-home:/bin/sh\n")
    os.chmod(host, 0o644)
    rootfs = _image_with_passwd(h, lambda p: os.symlink(host, p))
    cp = run(h, "-u", "evil", cmd=["echo", "RAN"], rootfs=rootfs)
    assert cp.returncode == 125, describe(cp)
    assert "unknown user" in cp.stderr, cp.stderr


def test_exec_user_survives_a_swapped_passwd(h, containers):
    """A running container swaps its /etc/passwd for a FIFO to hang
    `kennel exec -u NAME`."""
    rootfs = copy_rootfs(h)
    containers.start("atk-passwd", cmd=["sh", "-c", "rm /etc/passwd; mkfifo /etc/passwd; exec sleep 30"],
                     rootfs=rootfs)
    wait_until(lambda: os.path.exists(os.path.join(rootfs, "etc", "passwd"))
               and not os.path.isfile(os.path.join(rootfs, "etc", "passwd")), "the FIFO")
    started = time.monotonic()
    cp = kennel(h, "exec", "-u", "user", "atk-passwd", "--", "echo", "RAN")
    assert time.monotonic() - started < 10
    assert cp.returncode == 125, describe(cp)
    assert "not a regular file" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------
# State directory


@pytest.mark.parametrize("how", ["world-writable", "other-owner"])
def test_a_shared_state_root_is_refused(h, how):
    root = os.path.join(h.tempdir(), "runtime")
    os.mkdir(root, 0o700)
    os.chown(root, h.user.uid, h.user.gid)
    state = os.path.join(root, "kennel")
    os.mkdir(state)
    if how == "world-writable":
        os.chmod(state, 0o777)
        os.chown(state, h.user.uid, h.user.gid)
    else:
        os.chown(state, h.other.uid, h.other.gid)
        os.chmod(state, 0o755)
    before = tree(root)
    cp = run(h, "--name", "shared", cmd=["echo", "RAN"], env={"XDG_RUNTIME_DIR": root})
    assert cp.returncode == 125, describe(cp)
    assert "RAN" not in cp.stdout
    assert "refusing the state directory" in cp.stderr, cp.stderr
    # Beside it, kennel-seccomp keeps compiled seccomp programs: a cache of
    # kennel's own (engine/src/seccomp/cache.rs), not the refused state.
    after = {k: v for k, v in tree(root).items() if not k.startswith("kennel-seccomp")}
    assert after == before
    cp = kennel(h, "ps", env={"XDG_RUNTIME_DIR": root})
    assert cp.returncode == 125 and "refusing the state directory" in cp.stderr


# --------------------------------------------------------------------------
# A runner killed while it starts the container


def _survivors(h):
    """Live (non-zombie) processes of the user, inside or outside the
    container: the runner's helpers, the child, the command."""
    ids = {h.user.uid} | set(range(h.user.subid_start, h.user.subid_start + 65536))
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields["Uid"].split()[0])
        if uid in ids and not fields["State"].strip().startswith("Z"):
            out.append(f"{entry} {fields['State'].strip()} ppid={fields['PPid'].strip()} {cmdline}")
    return out


@pytest.mark.parametrize("userns", ["auto", "single"])
def test_killed_during_start_leaves_no_container(h, userns):
    """300 runners killed at a random moment 0-8 ms into the start, with
    kennel-idmap (auto) and without (single): no container process may
    outlive its runner, and every name killed while starting is free."""
    wait_until(lambda: not _survivors(h), "earlier tests' processes to end")
    marker = f"{random.randrange(1 << 30)}"
    rng = random.Random(marker)
    names = []
    for i in range(300):
        name = f"kill-{userns}-{i % 5}"
        flags = ["--name", name] if i % 3 == 0 else []
        if flags:
            names.append(name)
        proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, f"--userns={userns}", *flags, "--",
                             "sleep", f"60.{marker}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.008))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    survivors = []

    def settled():
        survivors[:] = _survivors(h)
        return not survivors
    try:
        wait_until(settled, "killed runners' containers to be gone", timeout=5)
    except pytest.fail.Exception:
        subprocess.run(["pkill", "-KILL", "-f", f"sleep 60.{marker}"])
        pytest.fail("processes outlived their killed runner:\n" + "\n".join(survivors))
    for name in sorted(set(names)):
        cp = run(h, "--name", name, f"--userns={userns}", cmd=["echo", "CLAIMED"])
        assert ok(cp) == "CLAIMED\n", name
        assert not os.path.exists(state_dir(h.user, name))
    leftovers = [e for e in os.listdir(os.path.dirname(state_dir(h.user, "x")))
                 if e.startswith(".kill-")]
    kennel(h, "ps")
    left_after_ps = [e for e in os.listdir(os.path.dirname(state_dir(h.user, "x")))
                     if e.startswith(".kill-")]
    assert not left_after_ps, (leftovers, left_after_ps)
