"""Integration tests of kennel-idmap, the helper that writes uid_map/gid_map.

Every request is made by an ordinary test user against a real target, a
`unshare -U sleep 30` that user started, and the outcome is read from
/proc/PID/{uid_map,gid_map,setgroups} from outside: a refusal must leave the
maps empty, a success must leave exactly the requested maps.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import OTHER_SUBID_START, UNUSED_SUBID_START, USER_SUBID_START, require_tool, subid_lines_added

PREFIX = "kennel-idmap: "
SUB_START = USER_SUBID_START  # kennel-test's /etc/subuid and /etc/subgid range
OTHER_SUB_START = OTHER_SUBID_START  # kennel-test2's
OUTSIDE = UNUSED_SUBID_START  # a host id in no entry of either file
SUB_COUNT = 65536


# --------------------------------------------------------------------------
# Targets and probes


def _wait_for_exec(proc, comm, what):
    """Waits until proc runs `comm` (so unshare has done its work)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == comm:
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.skip(f"cannot start {what} as a test user ({err.strip()}): unprivileged user namespaces unavailable?")
        time.sleep(0.01)
    pytest.fail(f"{what} did not start within 10s")


@pytest.fixture
def targets():
    """Factory: start(user, unshare=True) -> pid of a process of that user,
    in a new user namespace unless unshare=False. All killed afterwards."""
    procs = []

    def start(user, unshare=True):
        argv = (["unshare", "-U"] if unshare else []) + ["sleep", "30"]
        proc = user.popen(argv, stdin=subprocess.DEVNULL)
        procs.append(proc)
        _wait_for_exec(proc, "sleep", " ".join(argv))
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def gone_pid(user):
    """The pid of a process of `user` that had its own namespace and has
    exited and been reaped."""
    proc = user.popen(["unshare", "-U", "true"], stdin=subprocess.DEVNULL)
    proc.communicate(timeout=10)
    return proc.pid


def read_proc(pid, name):
    with open(f"/proc/{pid}/{name}") as f:
        return f.read()


def id_map(pid, kind):
    """The uid or gid map as a list of (inner, outer, count)."""
    text = read_proc(pid, f"{kind}_map")
    return [tuple(int(n) for n in line.split()) for line in text.splitlines()]


def setgroups(pid):
    return read_proc(pid, "setgroups").strip()


def assert_untouched(pid):
    assert id_map(pid, "uid") == []
    assert id_map(pid, "gid") == []
    assert setgroups(pid) == "allow"


def assert_ok(res):
    assert res.returncode == 0, f"refused: {res.stderr!r}"
    assert res.stderr == ""


def assert_refused(res, *needles):
    """Exit 1 with one stderr line naming the reason."""
    assert res.returncode == 1, f"expected a refusal, got {res.returncode}: {res.stderr!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(PREFIX), res.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def run_idmap(h, user, args, exe=None, **kw):
    return user.run([exe or h.idmap] + [str(a) for a in args], **kw)


def full_request(user):
    """The request `kennel run` makes: own id as root, the range above it."""
    return [
        "--uid", f"0:{user.uid}:1", "--uid", f"1:{SUB_START}:{SUB_COUNT}",
        "--gid", f"0:{user.gid}:1", "--gid", f"1:{SUB_START}:{SUB_COUNT}",
    ]


def full_maps(user):
    return (
        [(0, user.uid, 1), (1, SUB_START, SUB_COUNT)],
        [(0, user.gid, 1), (1, SUB_START, SUB_COUNT)],
    )


# A wrapper the user runs: it prepares fd 3 (or closes fds 0-2) and execs
# the helper, the way kennel run hands over its pidfd.
WRAPPER = r"""
import os, subprocess, sys, time
mode, arg, exe, *args = sys.argv[1:]

def child_gone():
    p = subprocess.Popen(["unshare", "-U", "sleep", "30"])
    for _ in range(1000):
        if open(f"/proc/{p.pid}/comm").read().strip() == "sleep":
            break
        time.sleep(0.01)
    return p

if mode == "proc":
    fd = os.open(f"/proc/{arg}", os.O_RDONLY | os.O_DIRECTORY)
elif mode == "pidfd":
    fd = os.pidfd_open(int(arg))
elif mode == "path":
    fd = os.open(arg, os.O_RDONLY)
elif mode in ("gone-proc", "gone-pidfd"):
    p = child_gone()
    fd = os.open(f"/proc/{p.pid}", os.O_RDONLY | os.O_DIRECTORY) if mode == "gone-proc" else os.pidfd_open(p.pid)
    p.kill()
    p.wait()
elif mode == "closed-std":
    os.closerange(0, 3)
    fd = None
elif mode.startswith("sock-"):
    # kennel run's call: the helper starts first and gets the pidfd later
    # over a socket (or never, or fd 3 is no socket at all).
    import socket
    os.open("/dev/null", os.O_RDONLY)  # keeps fd 3 out of the pair
    ours, theirs = socket.socketpair()
    if mode == "sock-file":
        os.dup2(os.open("/etc/passwd", os.O_RDONLY), 3)
    else:
        os.dup2(theirs.fileno(), 3)
    theirs.close()
    helper = subprocess.Popen([exe] + args, pass_fds=[3])
    os.close(3)
    if mode == "sock-pidfd":
        time.sleep(0.05)  # the helper is checking the ranges meanwhile
        socket.send_fds(ours, [b"p"], [os.pidfd_open(int(arg))])
        code = helper.wait()
        # What came back before the helper's end closed: b"k" once both
        # maps are written, nothing otherwise.
        print("REPLY:" + ours.recv(16).decode(), flush=True)
        sys.exit(code)
    ours.close()
    sys.exit(helper.wait())
if fd is not None:
    if fd != 3:
        os.dup2(fd, 3)
    os.set_inheritable(3, True)
os.execv(exe, [exe] + args)
"""


def run_wrapped(h, user, mode, arg, args, exe=None):
    return user.run([sys.executable, "-c", WRAPPER, mode, str(arg), exe or h.idmap] + [str(a) for a in args])


# --------------------------------------------------------------------------
# Success, native form


def test_native_form_writes_both_maps(h, targets):
    pid = targets(h.user)
    assert_untouched(pid)
    assert_ok(run_idmap(h, h.user, [pid] + full_request(h.user)))
    uids, gids = full_maps(h.user)
    assert id_map(pid, "uid") == uids
    assert id_map(pid, "gid") == gids
    # A subordinate range is mapped: setgroups stays as it was.
    assert setgroups(pid) == "allow"


@pytest.mark.parametrize(
    "args, uid_map, gid_map, groups",
    [
        (["--uid", "0:{uid}:1"], [(0, "uid", 1)], [], "allow"),
        (["--uid", f"0:{SUB_START}:{SUB_COUNT}"], [(0, SUB_START, SUB_COUNT)], [], "allow"),
        # The last id of the range, and the largest id inside.
        (["--uid", f"4294967294:{SUB_START + SUB_COUNT - 1}:1"], [(4294967294, SUB_START + SUB_COUNT - 1, 1)], [], "allow"),
        # Only the caller's own gid: setgroups is denied first (CVE-2018-7169).
        (["--gid", "0:{gid}:1"], [], [(0, "gid", 1)], "deny"),
        (["--gid", "0:{gid}:1", "--gid", f"1:{SUB_START}:10"], [], [(0, "gid", 1), (1, SUB_START, 10)], "allow"),
        (["--gid", f"0:{SUB_START}:1"], [], [(0, SUB_START, 1)], "allow"),
        (["--uid=0:{uid}:1", "--gid=0:{gid}:1"], [(0, "uid", 1)], [(0, "gid", 1)], "deny"),
    ],
    ids=["own-uid", "whole-subuid", "top-edges", "own-gid-only", "own-gid-and-subgid", "subgid-only", "equals-form"],
)
def test_native_form_accepts(h, targets, args, uid_map, gid_map, groups):
    ids = {"uid": h.user.uid, "gid": h.user.gid}
    pid = targets(h.user)
    assert_ok(run_idmap(h, h.user, [pid] + [a.format(**ids) for a in args]))
    expand = lambda m: [tuple(ids.get(v, v) for v in line) for line in m]  # noqa: E731
    assert id_map(pid, "uid") == expand(uid_map)
    assert id_map(pid, "gid") == expand(gid_map)
    assert setgroups(pid) == groups


def test_user_without_subids_may_map_only_own_ids(h, targets):
    pid = targets(h.nosub)
    res = run_idmap(h, h.nosub, [pid, "--uid", f"0:{h.nosub.uid}:1", "--uid", f"1:{SUB_START}:10"])
    assert_refused(res, f"1:{SUB_START}:10", "/etc/subuid", "you have none", "usermod --add-subuids")
    assert_untouched(pid)
    assert_ok(run_idmap(h, h.nosub, [pid, "--uid", f"0:{h.nosub.uid}:1", "--gid", f"0:{h.nosub.gid}:1"]))
    assert id_map(pid, "uid") == [(0, h.nosub.uid, 1)]
    assert id_map(pid, "gid") == [(0, h.nosub.gid, 1)]
    assert setgroups(pid) == "deny"


# --------------------------------------------------------------------------
# Refusals of the requested ranges (rule 2, rule 6)

TOO_MANY = [a for i in range(341) for a in ("--uid", f"{i}:{SUB_START + i}:1")]
TOO_LONG = [a for i in range(210) for a in ("--uid", f"{4000000000 + i}:{SUB_START + 10 * i}:1")]

REFUSALS = {
    "outside-subuid": (["--uid", f"0:{OUTSIDE}:1"], [f"uid range 0:{OUTSIDE}:1 is neither your own uid", f"/etc/subuid ranges ({SUB_START}-{SUB_START + SUB_COUNT - 1})"]),
    "one-past-end": (["--uid", f"0:{SUB_START}:{SUB_COUNT + 1}"], [f"0:{SUB_START}:{SUB_COUNT + 1} is neither"]),
    "one-before-start": (["--uid", f"0:{SUB_START - 1}:2"], [f"0:{SUB_START - 1}:2 is neither"]),
    "other-users-uid": (["--uid", "0:{other}:1"], ["0:{other}:1 is neither your own uid ({uid})"]),
    "own-uid-count-2": (["--uid", "0:{uid}:2"], ["0:{uid}:2 is neither your own uid ({uid}) with count 1"]),
    "other-users-subuid": (["--uid", f"0:{OTHER_SUB_START}:1"], [f"0:{OTHER_SUB_START}:1 is neither"]),
    "gid-outside-subgid": (["--gid", f"0:{OUTSIDE}:1"], [f"gid range 0:{OUTSIDE}:1", "/etc/subgid ranges"]),
    "own-gid-count-2": (["--gid", "0:{gid}:2"], ["your own gid ({gid}) with count 1"]),
    "count-zero": (["--uid", f"0:{SUB_START}:0"], ["has count 0"]),
    "inner-overflow": (["--uid", f"4294967295:{SUB_START}:1"], ["past the largest id (4294967294) inside the namespace"]),
    "outer-overflow": (["--uid", "0:4294967295:1"], ["past the largest host id"]),
    "overlap-inside": (["--uid", f"0:{SUB_START}:10", "--uid", f"9:{SUB_START + 100}:1"], [f"0:{SUB_START}:10 and 9:{SUB_START + 100}:1 overlap inside"]),
    "overlap-outside": (["--uid", f"0:{SUB_START}:10", "--uid", f"100:{SUB_START + 9}:1"], ["overlap on the host"]),
    "duplicate-own": (["--uid", "0:{uid}:1", "--uid", "1:{uid}:1"], ["overlap on the host"]),
    "too-many-lines": (TOO_MANY, ["341 ranges", "at most 340"]),
    "too-long": (TOO_LONG, ["bytes of text", "single write"]),
    # One map valid, the other not: neither is written.
    "valid-uid-invalid-gid": (["--uid", "0:{uid}:1", "--gid", f"0:{OUTSIDE}:1"], [f"gid range 0:{OUTSIDE}:1"]),
    "valid-gid-invalid-uid": (["--gid", "0:{gid}:1", "--uid", "0:{other}:1"], ["uid range 0:{other}:1"]),
    # Command-line errors.
    "not-a-range": (["--uid", "0:abc:1"], ["usage:", "INNER:OUTER:COUNT"]),
    "hex-number": (["--uid", "0:0x493e0:1"], ["usage:"]),
    "no-maps": ([], ["usage:", "--uid or --gid"]),
    "unknown-option": (["--map", "0:1:1"], ["usage:", "--map"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals(h, targets, case):
    args, needles = REFUSALS[case]
    ids = {"uid": h.user.uid, "gid": h.user.gid, "other": h.other.uid}
    pid = targets(h.user)
    res = run_idmap(h, h.user, [pid] + [a.format(**ids) for a in args])
    assert_refused(res, *[n.format(**ids) for n in needles])
    assert_untouched(pid)


def test_bad_target_arguments(h):
    for target, needle in [("abc", "neither a pid, fd:N nor sock:N"), ("0", "neither a pid, fd:N nor sock:N"), ("fd:x", "neither a pid, fd:N nor sock:N"), ("sock:", "neither a pid, fd:N nor sock:N")]:
        assert_refused(run_idmap(h, h.user, [target, "--uid", f"0:{h.user.uid}:1"]), "usage:", needle)
    assert_refused(run_idmap(h, h.user, ["--uid", f"0:{h.user.uid}:1"]), "usage:", "no TARGET")


def test_help_needs_no_privilege(h):
    res = run_idmap(h, h.user, ["--help"], no_new_privs=True)
    assert res.returncode == 0 and "usage: kennel-idmap TARGET" in res.stdout


def test_host_uid_0_needs_root(h, targets):
    """Rule 3: even a /etc/subuid entry covering uid 0 does not let a
    non-root user map host root."""
    with subid_lines_added([f"{h.nosub.name}:0:10"], files=["/etc/subuid"]):
        pid = targets(h.nosub)
        assert_refused(run_idmap(h, h.nosub, [pid, "--uid", "0:0:1"]), "0:0:1 maps host uid 0", "only root")
        assert_refused(run_idmap(h, h.nosub, [pid, "--uid", "0:0:10"]), "maps host uid 0")
        assert_untouched(pid)
        # The rest of that entry is usable: the rule is about host 0 only.
        assert_ok(run_idmap(h, h.nosub, [pid, "--uid", "0:1:9"]))
        assert id_map(pid, "uid") == [(0, 1, 9)]


# --------------------------------------------------------------------------
# The target (rule 1, rule 6, the pid race)


def test_target_of_another_user(h, targets):
    pid = targets(h.other)
    # Ranges the caller may use, so only ownership can refuse.
    res = run_idmap(h, h.user, [pid, "--uid", f"0:{h.user.uid}:1"])
    msg = assert_refused(res, f"process {pid} does not exist or is not yours")
    assert_untouched(pid)
    # Not yours and no such process read the same.
    missing = 4194305
    res = run_idmap(h, h.user, [missing, "--uid", f"0:{h.user.uid}:1"])
    assert assert_refused(res).replace(str(missing), "PID") == msg.replace(str(pid), "PID")
    # Through a /proc/PID fd as well.
    res = run_wrapped(h, h.user, "proc", pid, ["fd:3", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "does not exist or is not yours")
    assert_untouched(pid)


def test_target_in_callers_own_namespace(h, targets):
    pid = targets(h.user, unshare=False)
    res = run_idmap(h, h.user, [pid, "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, f"process {pid} is in this user namespace")


def test_target_that_exited(h):
    pid = gone_pid(h.user)
    res = run_idmap(h, h.user, [pid, "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, f"process {pid} does not exist or is not yours")


@pytest.mark.parametrize("mode", ["gone-proc", "gone-pidfd"])
def test_fd_target_that_exited_before_the_write(h, mode):
    """The caller holds a /proc/PID fd or pidfd, but the process is reaped
    before the helper runs: refused, even if the pid were reused."""
    res = run_wrapped(h, h.user, mode, "-", ["fd:3", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "the process at fd:3 does not exist or is not yours")


def test_second_write_is_refused(h, targets):
    pid = targets(h.user)
    uids, gids = full_maps(h.user)
    assert_ok(run_idmap(h, h.user, [pid] + full_request(h.user)))
    for kind in ["uid", "gid"]:
        res = run_idmap(h, h.user, [pid, f"--{kind}", f"0:{SUB_START}:1"])
        assert_refused(res, f"the {kind} map of process {pid} is already written")
    # Uid written alone first: a later uid+gid request writes no gid map.
    pid2 = targets(h.user)
    assert_ok(run_idmap(h, h.user, [pid2, "--uid", f"0:{h.user.uid}:1"]))
    assert_refused(run_idmap(h, h.user, [pid2] + full_request(h.user)), "already written")
    assert id_map(pid2, "gid") == []
    assert (id_map(pid, "uid"), id_map(pid, "gid")) == (uids, gids)


# --------------------------------------------------------------------------
# fd:N targets


@pytest.mark.parametrize("mode", ["pidfd", "proc"])
def test_fd_target(h, targets, mode):
    """kennel run's exact call: `fd:3` with a pidfd (or a /proc/PID dir)."""
    pid = targets(h.user)
    assert_ok(run_wrapped(h, h.user, mode, pid, ["fd:3"] + full_request(h.user)))
    uids, gids = full_maps(h.user)
    assert (id_map(pid, "uid"), id_map(pid, "gid")) == (uids, gids)


def test_socket_target(h, targets):
    """kennel run's call: `sock:3`, the pidfd sent once the helper runs."""
    pid = targets(h.user)
    res = run_wrapped(h, h.user, "sock-pidfd", pid, ["sock:3"] + full_request(h.user))
    assert_ok(res)
    uids, gids = full_maps(h.user)
    assert (id_map(pid, "uid"), id_map(pid, "gid")) == (uids, gids)
    # The new process learns from the socket that its maps are in place.
    assert "REPLY:k\n" in res.stdout, res.stdout
    # A refusal after the pidfd arrived (the maps are written now) sends
    # nothing back.
    res = run_wrapped(h, h.user, "sock-pidfd", pid, ["sock:3"] + full_request(h.user))
    assert_refused(res, "map of")
    assert "REPLY:\n" in res.stdout, res.stdout


def test_socket_target_refusals(h, targets):
    pid = targets(h.user)
    res = run_wrapped(h, h.user, "sock-none", pid, ["sock:3"] + full_request(h.user))
    assert_refused(res, "no process arrived on fd:3")
    res = run_wrapped(h, h.user, "sock-file", pid, ["sock:3"] + full_request(h.user))
    assert_refused(res, "receiving the target on fd:3")
    res = run_idmap(h, h.user, ["sock:9", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "fd:9 is not an open file descriptor")
    # Ranges are judged before anything arrives: a bad one is refused even
    # though no process is ever sent.
    res = run_wrapped(h, h.user, "sock-none", pid, ["sock:3", "--uid", f"0:{OUTSIDE}:1"])
    assert_refused(res, f"uid range 0:{OUTSIDE}:1 is neither your own uid")
    assert_untouched(pid)


def test_fd_target_not_on_procfs(h, targets):
    pid = targets(h.user)
    tmp = h.tempdir()
    res = run_wrapped(h, h.user, "path", tmp, ["fd:3", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "fd:3 is neither a pidfd nor a /proc/PID directory")
    res = run_wrapped(h, h.user, "path", "/proc/self/status", ["fd:3", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "fd:3 is neither a pidfd nor a /proc/PID directory")
    res = run_idmap(h, h.user, ["fd:9", "--uid", f"0:{h.user.uid}:1"])
    assert_refused(res, "fd:9 is not an open file descriptor")
    assert_untouched(pid)


# --------------------------------------------------------------------------
# Drop-in form


@pytest.fixture
def dropin(h):
    """newuidmap and newgidmap links to the helper (file capabilities
    belong to the link's target)."""
    d = h.tempdir()
    for name in ["newuidmap", "newgidmap"]:
        os.symlink(h.idmap, os.path.join(d, name))
    return {name: os.path.join(d, name) for name in ["newuidmap", "newgidmap"]}


def test_drop_in_form(h, targets, dropin):
    u = h.user
    pid = targets(u)
    assert_ok(run_idmap(h, u, [pid, 0, u.uid, 1, 1, SUB_START, SUB_COUNT], exe=dropin["newuidmap"]))
    assert id_map(pid, "gid") == []
    assert_ok(run_idmap(h, u, [pid, 0, u.gid, 1], exe=dropin["newgidmap"]))
    assert id_map(pid, "uid") == [(0, u.uid, 1), (1, SUB_START, SUB_COUNT)]
    assert id_map(pid, "gid") == [(0, u.gid, 1)]
    assert setgroups(pid) == "deny"
    # fd:N in the drop-in form, and the drop-in form's refusals.
    pid2 = targets(u)
    assert_ok(run_wrapped(h, u, "pidfd", pid2, ["fd:3", 0, SUB_START, 1], exe=dropin["newgidmap"]))
    assert id_map(pid2, "gid") == [(0, SUB_START, 1)] and setgroups(pid2) == "allow"
    assert_refused(run_idmap(h, u, [pid2, 0, OUTSIDE, 1], exe=dropin["newuidmap"]), f"uid range 0:{OUTSIDE}:1")
    assert_refused(run_idmap(h, u, [pid2, 0, u.uid], exe=dropin["newuidmap"]), "usage: newuidmap <pid>")
    assert id_map(pid2, "uid") == []


@pytest.mark.parametrize("name", ["newuidmap", "newgidmap"])
def test_help_through_a_shadow_name_prints_that_forms_usage(h, dropin, name):
    res = h.user.run([dropin[name], "--help"], timeout=10)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    kind = name[3:6]
    assert res.stdout.startswith(f"usage: {name} <pid> <{kind}> <lower{kind}> <count>"), res.stdout
    assert "see --help" not in res.stdout


# --------------------------------------------------------------------------
# The helper's own privilege


def copy_helper(h, name="kennel-idmap"):
    d = h.tempdir(owner=None)
    os.chown(d, 0, 0)
    path = os.path.join(d, name)
    shutil.copy(h.idmap, path)  # copies no xattrs: no capabilities
    os.chmod(path, 0o755)
    return path


def test_without_capabilities(h, targets):
    path = copy_helper(h)
    pid = targets(h.user)
    res = run_idmap(h, h.user, [pid] + full_request(h.user), exe=path)
    assert_refused(res, f"sudo setcap cap_setuid,cap_setgid=ep {path}")
    # Even a request that needs no range from /etc/subuid.
    res = run_idmap(h, h.user, [pid, "--gid", f"0:{h.user.gid}:1"], exe=path)
    assert_refused(res, "setcap")
    assert_untouched(pid)


def test_under_no_new_privs(h, targets):
    pid = targets(h.user)
    started = time.monotonic()
    res = run_idmap(h, h.user, [pid] + full_request(h.user), no_new_privs=True)
    assert time.monotonic() - started < 5
    assert_refused(res, "no_new_privs is set on the caller: file capabilities are ignored")
    assert_untouched(pid)


def test_under_a_tracer_names_the_tracer_not_setcap(h, targets):
    """strace (or gdb) makes the kernel exec the helper without its file
    capabilities; the helper is installed right, so the refusal must say
    it is traced, by whom, and not send the user to setcap."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed (Debian package strace): kennel-idmap cannot be run under a tracer here")
    pid = targets(h.user)
    proc = h.user.popen([strace, "-f", "-o", "/dev/null", h.idmap, str(pid)] + full_request(h.user),
                        stdin=subprocess.DEVNULL)
    _, err = proc.communicate(timeout=30)
    if err.startswith("strace:"):
        pytest.skip(f"strace cannot trace here: {err.strip()}")
    # setpriv execs strace in the process we started: it is the tracer.
    res = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    line = assert_refused(res, f"being traced (TracerPid {proc.pid}): the kernel drops file capabilities under ptrace",
                          "run it without strace or gdb")
    assert "setcap" not in line
    assert_untouched(pid)
    # The same helper, untraced, writes the maps.
    assert_ok(run_idmap(h, h.user, [pid] + full_request(h.user)))
    assert (id_map(pid, "uid"), id_map(pid, "gid")) == full_maps(h.user)


@pytest.mark.parametrize("how", ["extra-capability", "setuid", "setgid"])
def test_refuses_stray_privilege(h, targets, how):
    path = copy_helper(h)
    if how == "extra-capability":
        subprocess.run(["setcap", "cap_setuid,cap_setgid,cap_net_raw=ep", path], check=True)
        needle = "beyond cap_setuid,cap_setgid (cap_net_raw)"
    else:
        os.chmod(path, 0o4755 if how == "setuid" else 0o2755)
        needle = "running setuid or setgid"
    pid = targets(h.user)
    try:
        assert_refused(run_idmap(h, h.user, [pid] + full_request(h.user), exe=path), needle)
    finally:
        os.unlink(path)
    assert_untouched(pid)


def test_copes_with_closed_std_fds(h, targets):
    """With fds 0-2 closed no map file may land on them; the request works
    and a refusal still writes nothing."""
    pid = targets(h.user)
    res = run_wrapped(h, h.user, "closed-std", "-", [pid] + full_request(h.user))
    assert res.returncode == 0
    assert (id_map(pid, "uid"), id_map(pid, "gid")) == full_maps(h.user)
    pid2 = targets(h.user)
    res = run_wrapped(h, h.user, "closed-std", "-", [pid2, "--uid", f"0:{OUTSIDE}:1"])
    assert res.returncode == 1
    assert_untouched(pid2)


# --------------------------------------------------------------------------
# Same decisions as shadow's newuidmap/newgidmap

SHADOW_CASES = {
    # name: (program, target kind, args after the pid, valid?)
    "own-uid": ("newuidmap", "fresh", ["0", "{uid}", "1"], True),
    "own-and-subuid": ("newuidmap", "fresh", ["0", "{uid}", "1", "1", str(SUB_START), str(SUB_COUNT)], True),
    "whole-subuid": ("newuidmap", "fresh", ["0", str(SUB_START), str(SUB_COUNT)], True),
    "two-slices": ("newuidmap", "fresh", ["0", str(SUB_START), "10", "10", str(SUB_START + 100), "5"], True),
    "last-subuid": ("newuidmap", "fresh", ["5", str(SUB_START + SUB_COUNT - 1), "1"], True),
    "own-gid": ("newgidmap", "fresh", ["0", "{gid}", "1"], True),
    "own-and-subgid": ("newgidmap", "fresh", ["0", "{gid}", "1", "1", str(SUB_START), str(SUB_COUNT)], True),
    "whole-subgid": ("newgidmap", "fresh", ["0", str(SUB_START), str(SUB_COUNT)], True),
    "outside-subuid": ("newuidmap", "fresh", ["0", str(OUTSIDE), "1"], False),
    "one-past-end": ("newuidmap", "fresh", ["0", str(SUB_START), str(SUB_COUNT + 1)], False),
    "one-before-start": ("newuidmap", "fresh", ["0", str(SUB_START - 1), "2"], False),
    "own-uid-count-2": ("newuidmap", "fresh", ["0", "{uid}", "2"], False),
    "other-users-uid": ("newuidmap", "fresh", ["0", "{other}", "1"], False),
    "other-users-subuid": ("newuidmap", "fresh", ["0", str(OTHER_SUB_START), "1"], False),
    "count-zero": ("newuidmap", "fresh", ["0", str(SUB_START), "0"], False),
    "overlap-inside": ("newuidmap", "fresh", ["0", str(SUB_START), "10", "5", str(SUB_START + 100), "10"], False),
    "overlap-outside": ("newuidmap", "fresh", ["0", str(SUB_START), "10", "100", str(SUB_START + 5), "10"], False),
    "inner-overflow": ("newuidmap", "fresh", ["4294967295", str(SUB_START), "1"], False),
    "too-many-lines": ("newuidmap", "fresh", [a for i in range(341) for a in (str(i), str(SUB_START + i), "1")], False),
    "gid-outside": ("newgidmap", "fresh", ["0", str(OUTSIDE), "1"], False),
    "other-users-gid": ("newgidmap", "fresh", ["0", "{othergid}", "1"], False),
    "missing-count": ("newuidmap", "fresh", ["0", "{uid}"], False),
    "other-users-target": ("newuidmap", "other", ["0", "{uid}", "1"], False),
    "exited-target": ("newuidmap", "gone", ["0", "{uid}", "1"], False),
    "own-namespace": ("newuidmap", "plain", ["0", "{uid}", "1"], False),
    "already-written": ("newuidmap", "written", ["1", str(SUB_START), "1"], False),
}


@pytest.mark.parametrize("case", list(SHADOW_CASES))
def test_same_decision_as_shadow(h, targets, dropin, case):
    program, kind, args, valid = SHADOW_CASES[case]
    shadow = require_tool(program, "uidmap")
    u = h.user
    ids = {"uid": u.uid, "gid": u.gid, "other": h.other.uid, "othergid": h.other.gid}
    args = [a.format(**ids) for a in args]
    outcomes = []
    for exe in [shadow, dropin[program]]:
        if kind == "fresh":
            pid = targets(u)
        elif kind == "other":
            pid = targets(h.other)
        elif kind == "plain":
            pid = targets(u, unshare=False)
        elif kind == "gone":
            pid = gone_pid(u)
        else:
            pid = targets(u)
            assert_ok(run_idmap(h, u, [pid, "--uid", f"0:{u.uid}:1"]))
        res = run_idmap(h, u, [pid] + args, exe=exe)
        maps = None
        if kind in ("fresh", "written"):
            maps = (id_map(pid, "uid"), id_map(pid, "gid"), setgroups(pid))
        outcomes.append((res.returncode == 0, maps, res.stderr.strip()))
    (shadow_ok, shadow_maps, shadow_err), (ours_ok, our_maps, our_err) = outcomes
    assert shadow_ok == valid, f"shadow's {program} decided otherwise than expected: {shadow_err}"
    assert ours_ok == shadow_ok, f"shadow: {shadow_ok} ({shadow_err!r}), kennel-idmap: {ours_ok} ({our_err!r})"
    assert our_maps == shadow_maps
