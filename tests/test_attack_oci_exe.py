"""runc's CVE-2019-5736 against kennel-oci: a created container's process
is kennel-oci's own code until `start`, and `exec` puts kennel-oci's code
into a running container until its command execs. A process of the
container that opens /proc/PID/exe of either and keeps the fd can write
kennel-oci's binary on the host once no kennel-oci runs from it. Each
test runs the attack against a private copy the container's root could
write (root-owned for root, the user's own for rootless), with
noNewPrivileges false (podman's default, and no Landlock fence), and
asserts the binary unchanged. The attacker is the host's python3, bound
read-only into the bundle."""

import os
import shutil
import subprocess
import time

import pytest

from probe import describe, wait_until
from test_attack_proc_exe import ATTACK, sha256
from test_oci_lifecycle import MODES, Oci

PYTHON = "/usr/bin/python3"
PTRACE = "CAP_SYS_PTRACE"


def private_runtime(h, oci_runtime, mode, read_only=False):
    """A copy of kennel-oci in a directory of its own, owned by whoever the
    container's root is on the host; `read_only` puts it on a read-only
    bind mount (torn down by the caller)."""
    d = h.tempdir()
    path = os.path.join(d, "kennel-oci")
    shutil.copy2(oci_runtime, path)
    if mode == "rootless":
        os.chown(path, h.user.uid, h.user.gid)
    os.chmod(path, 0o755)
    if read_only:
        subprocess.run(["mount", "--bind", d, d], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", d], check=True)
    return path


def attacker_bundle(o, seconds, caps=(), args=None):
    """A bundle whose root can run the host's python3, no_new_privs off,
    with `caps` added to every capability set."""
    out = o.outdir()

    def edit(config):
        config["process"]["noNewPrivileges"] = False
        for src in ("/usr", "/lib", "/lib64"):
            if os.path.exists(src):
                config["mounts"].append({"destination": src, "type": "bind", "source": src,
                                         "options": ["rbind", "ro"]})
        sets = config["process"].setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            sets[name] = sorted(set(sets.get(name, [])) | set(caps))

    cmd = args or watcher(seconds)
    return o.bundle(cmd, out=out, edit=edit), out


def watcher(seconds):
    """The container's side: grabs /proc/PID/exe of every process it sees
    for `seconds`, and keeps trying to write through what it holds."""
    return ["sh", "-c", f'exec {PYTHON} -c "$0" new {seconds} > /out/attack.log 2>&1', ATTACK]


def attack_log(out, timeout=30):
    path = os.path.join(out, "attack.log")
    wait_until(lambda: os.path.exists(path) and "DONE" in open(path).read(), "the attacker to finish",
               timeout=timeout, interval=0.1)
    with open(path) as f:
        return f.read()


@pytest.fixture
def cleanups():
    undo = []
    yield undo
    for f in reversed(undo):
        f()


def oci_with(h, binary, mode, cleanups):
    o = Oci(h, binary, mode)
    cleanups.append(o.cleanup)
    return o


@pytest.mark.parametrize("mode", MODES)
def test_a_created_containers_process_cannot_be_reached_through_exec(h, oci_runtime, mode, cleanups):
    """The issue's attack: `exec -d` a watcher into a created container,
    which holds /proc/1/exe (kennel-oci, waiting for start) and writes
    through it once `start` has made it exec its command."""
    binary = private_runtime(h, oci_runtime, mode)
    o = oci_with(h, binary, mode, cleanups)
    before = sha256(binary)
    bundle, out = attacker_bundle(o, 0, args=["sleep", "8"])
    cid = f"atk-created-{mode}"
    o.ok("create", "--bundle", bundle, cid)
    cp = o("exec", "-d", cid, *watcher(8))
    if mode == "rootless":
        # Nobody without CAP_SYS_PTRACE of the host may enter before start.
        assert cp.returncode != 0, describe(cp)
        assert "before `start`" in cp.stderr and "CVE-2019-5736" in cp.stderr, describe(cp)
        o.ok("start", cid)
    else:
        assert cp.returncode == 0, describe(cp)
        time.sleep(0.5)
        o.ok("start", cid)
        log = attack_log(out)
        assert "REFUSED 1 " in log, log  # not even a handle on it
        assert "WROTE" not in log, log
    assert sha256(binary) == before, "kennel-oci's binary was changed from inside the container"


def exec_race(o, cid, out, execs=35):
    """Runs `exec CID true` again and again while the watcher watches."""
    done = 0
    for _ in range(execs):
        cp = o("exec", cid, "true")
        assert cp.returncode == 0, describe(cp)
        done += 1
    log = attack_log(out)
    print(f"{done} execs; exe refused {log.count('REFUSED')} times, held {log.count('HELD')} times")
    return log


def test_exec_children_are_sealed_copies_for_a_container_with_ptrace_in_our_namespace(h, oci_runtime, cleanups):
    """Root without a user namespace, CAP_SYS_PTRACE in the container: the
    watcher reaches every `exec`'s process in spite of its being not
    dumpable, so each runs from a sealed copy and the writes fail."""
    binary = private_runtime(h, oci_runtime, "root")
    o = oci_with(h, binary, "root", cleanups)
    before = sha256(binary)
    bundle, out = attacker_bundle(o, 10, caps=[PTRACE])
    o.ok("run", "-d", "--bundle", bundle, "atk-ptrace")
    log = exec_race(o, "atk-ptrace", out)
    assert log.count("HELD") >= 2, f"the watcher never reached an exec's process:\n{log}"
    assert "WROTE" not in log, log
    assert sha256(binary) == before, "kennel-oci's binary was changed from inside the container"


def test_a_read_only_mount_needs_no_copy_and_holds(h, oci_runtime, cleanups):
    """The case kennel-oci runs as is in spite of CAP_SYS_PTRACE: a binary
    on a read-only mount. The watcher holds the host's binary itself, and
    still cannot write it."""
    binary = private_runtime(h, oci_runtime, "root", read_only=True)
    cleanups.append(lambda: subprocess.run(["umount", os.path.dirname(binary)], check=False))
    o = oci_with(h, binary, "root", cleanups)
    before = sha256(binary)
    bundle, out = attacker_bundle(o, 10, caps=[PTRACE])
    o.ok("run", "-d", "--bundle", bundle, "atk-ro")
    log = exec_race(o, "atk-ro", out)
    assert log.count("HELD") >= 2, f"the watcher never reached an exec's process:\n{log}"
    assert "WROTE" not in log, log
    assert sha256(binary) == before, "kennel-oci's binary was changed from inside the container"


def test_rootless_needs_no_copy_even_for_a_binary_the_user_owns(h, oci_runtime, cleanups):
    """Rootless, the container's CAP_SYS_PTRACE is its own user
    namespace's: the processes `exec` puts in are not dumpable and stay
    out of its reach, although the binary is the user's to write."""
    binary = private_runtime(h, oci_runtime, "rootless")
    o = oci_with(h, binary, "rootless", cleanups)
    before = sha256(binary)
    bundle, out = attacker_bundle(o, 10, caps=[PTRACE])
    o.ok("run", "-d", "--bundle", bundle, "atk-userns")
    log = exec_race(o, "atk-userns", out)
    assert log.count("REFUSED") >= 2, f"the watcher never reached an exec's process:\n{log}"
    # A command that has exec'd (`true`) is dumpable again and may be
    # held: what must never be held is kennel-oci, or a binary unnamed.
    runtime_held = [line for line in log.splitlines() if line.startswith("HELD ")
                    and not line.startswith("HELD 1 ")
                    and (os.path.basename(binary) in line or line.endswith(" ?"))]
    assert not runtime_held, log
    assert "WROTE" not in log, log
    assert sha256(binary) == before, "kennel-oci's binary was changed from inside the container"


def test_exec_with_ptrace_into_a_created_container_is_refused(h, oci_runtime, cleanups):
    """A created container without CAP_SYS_PTRACE runs kennel-oci as is
    until start; an exec that would bring CAP_SYS_PTRACE in is refused, by
    name, and the container still starts."""
    binary = private_runtime(h, oci_runtime, "root")
    o = oci_with(h, binary, "root", cleanups)
    before = sha256(binary)
    bundle, out = attacker_bundle(o, 0, args=["sh", "-c", "echo started > /out/started"])
    o.ok("create", "--bundle", bundle, "atk-created-ptrace")
    cp = o("exec", "-d", "--cap", PTRACE, "atk-created-ptrace", *watcher(3))
    assert cp.returncode != 0, describe(cp)
    assert "CAP_SYS_PTRACE" in cp.stderr and "start the container first" in cp.stderr, describe(cp)
    assert not os.path.exists(os.path.join(out, "attack.log"))
    o.ok("start", "atk-created-ptrace")
    wait_until(lambda: os.path.exists(os.path.join(out, "started")), "the container to start")
    assert sha256(binary) == before
