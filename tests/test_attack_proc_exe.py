"""runc's CVE-2019-5736 against kennel: a container reaches the host's
kennel binary through /proc/PID/exe of a kennel process it can see (the
--init PID 1, a `kennel exec` entering it, kennel itself run as the
interpreter of a `#!/proc/self/exe` script) and writes to it, directly or
by reopening an fd it holds through /proc/self/fd. The binary is a copy
the user owns (as after `cargo install`), so file permissions alone would
not stop the write: only kennel can. Its hash, and kennel-idmap's, must
not change."""

import hashlib
import os
import shutil
import subprocess

from probe import copy_rootfs, describe, ok, ps_names, wait_until

PYTHON = "/usr/bin/python3"

# Opens /proc/PID/exe of every process it sees (PIDs given, or every new
# one until the deadline) for writing, and holds read and O_PATH fds to
# reopen for writing through /proc/self/fd. Prints WROTE on success.
ATTACK = r'''
import os, sys, time
pids, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
me, seen, held = str(os.getpid()), set(), []
def write_through(path, flags):
    # A sealed copy opens for writing and refuses the write: close what
    # opened, or a long watch runs out of descriptors.
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        os.write(fd, b"PWNED")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
def attempt(pid):
    for flags in (os.O_WRONLY, os.O_RDWR):
        if write_through(f"/proc/{pid}/exe", flags):
            print("WROTE", pid, "directly", flush=True)
    for flags in (os.O_PATH, os.O_RDONLY):
        try:
            fd = os.open(f"/proc/{pid}/exe", flags)
        except OSError as e:
            print("REFUSED", pid, e.strerror, flush=True)
            continue
        held.append((pid, fd))
        # Which binary: a process may have exec'd its payload by the open.
        try:
            print("HELD", pid, os.readlink(f"/proc/self/fd/{fd}"), flush=True)
        except OSError:
            print("HELD", pid, "?", flush=True)
while True:
    for pid in (pids.split(",") if pids != "new" else os.listdir("/proc")):
        if pid.isdigit() and pid not in seen and pid != me:
            seen.add(pid)
            attempt(pid)
    for pid, fd in held:
        if write_through(f"/proc/self/fd/{fd}", os.O_WRONLY):
            print("WROTE", pid, "through its fd", flush=True)
    if pids != "new" or time.monotonic() > deadline:
        break
print("DONE", flush=True)
'''


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _users_kennel(h):
    """A copy of kennel the user owns and could write, out of the
    container's sight (the sandbox gets a fresh /tmp)."""
    d = h.tempdir()
    path = os.path.join(d, "kennel")
    shutil.copy2(h.kennel, path)
    os.chown(path, h.user.uid, h.user.gid)
    os.chmod(path, 0o755)
    return path


def _unchanged(h, kennel, before):
    assert sha256(kennel) == before[0], "the host's kennel binary was changed from inside"
    assert sha256(h.idmap) == before[1], "kennel-idmap was changed from inside"


def test_the_init_pid1_exe_cannot_be_written(h):
    """--init's PID 1 is the kennel binary (forked, never exec'd)."""
    kennel = _users_kennel(h)
    before = (sha256(kennel), sha256(h.idmap))
    cp = h.user.run([kennel, "run", "--init", "--", PYTHON, "-c", ATTACK, "1", "0"], timeout=30)
    out = ok(cp)
    assert "DONE" in out and "WROTE" not in out, out
    assert "HELD 1" not in out, out  # not even a handle on it
    _unchanged(h, kennel, before)


def test_kennel_exec_entering_the_container_cannot_be_written(h):
    """The container watches for every new process (each `kennel exec`
    before and after it execs its command) and grabs its exe."""
    kennel = _users_kennel(h)
    before = (sha256(kennel), sha256(h.idmap))
    name = f"atk-exe-{os.getpid()}"
    watcher = h.user.popen([kennel, "run", "--name", name, "--", PYTHON, "-c", ATTACK, "new", "6"],
                           stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: name in ps_names(h), f"{name} to run")
        execs = 0
        for _ in range(40):
            cp = h.user.run([kennel, "exec", name, "--", "true"], timeout=20)
            if cp.returncode != 0 and watcher.poll() is not None:
                break
            assert cp.returncode == 0, describe(cp)
            execs += 1
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert execs >= 10, f"only {execs} kennel exec ran while the watcher watched"
    # The race was run: the watcher reached kennel exec's processes.
    assert out.count("REFUSED") + out.count("HELD") >= 2, out
    print(f"{execs} execs; exe refused {out.count('REFUSED')} times, held {out.count('HELD')} times")
    assert "DONE" in out and "WROTE" not in out, out
    _unchanged(h, kennel, before)


def test_a_script_run_by_proc_self_exe_cannot_rewrite_kennel(h):
    """`#!/proc/self/exe` as an interpreter runs the binary of whoever
    execs the script: kennel's, when kennel execs it (the kernel does
    this; kennel cannot stop it), so the container can reach kennel's
    binary through /proc/PID/exe. Writing it is what the fence (below)
    refuses; here the interpreted kennel runs and the binary stays as it
    was."""
    kennel = _users_kennel(h)
    before = (sha256(kennel), sha256(h.idmap))
    rootfs = copy_rootfs(h)
    evil = os.path.join(rootfs, "bin", "evil")
    with open(evil, "w") as f:
        f.write("#!/proc/self/exe\n")
    os.chmod(evil, 0o755)
    os.chown(evil, h.user.uid, h.user.gid)
    cp = h.user.run([kennel, "run", "--rootfs", rootfs, "--", "/bin/evil", "--version"], timeout=20)
    assert "kennel" in cp.stdout + cp.stderr, describe(cp)
    _unchanged(h, kennel, before)


def test_the_fence_keeps_host_files_behind_magic_links_unwritable(h, tmp_path):
    """The Landlock fence, on by default: a host file the caller handed in
    read-only (an fd, --preserve-fds) cannot be reopened for writing
    through /proc/self/fd, which is how a held /proc/PID/exe is written.
    --landlock=false shows the reopen would work without it."""
    d = h.tempdir()
    victim = os.path.join(d, "victim")
    with open(victim, "w") as f:
        f.write("original\n")
    os.chown(victim, h.user.uid, h.user.gid)
    script = "(echo PWNED > /proc/self/fd/3) 2>/dev/null && echo WROTE || echo REFUSED"

    def attempt(*flags):
        return h.user.run(["sh", "-c", 'exec "$0" run --preserve-fds 1 "$@" 3<"$VICTIM"', _users_kennel(h),
                           "--rootfs", h.rootfs, *flags, "--", "sh", "-c", script],
                          env={"VICTIM": victim}, timeout=20)
    cp = attempt()
    assert cp.stdout.strip() == "REFUSED", describe(cp)
    with open(victim) as f:
        assert f.read() == "original\n"
    cp = attempt("--landlock=false")
    assert cp.stdout.strip() == "WROTE", describe(cp)
