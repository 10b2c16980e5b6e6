"""kennel-oci's OCI lifecycle, observed from outside: create, start, state,
kill, delete and exec as runc's callers drive them, with bundles written by
`kennel-oci spec --rootless` (run by the test user: a user namespace with
the user's own id mapped to root) and by `kennel-oci spec` (run by real
root: no user namespace). Every test has a private --root.

Processes are found from the host through /proc: every container process
carries a marker in its environment (the creating kennel-oci's, which the
waiting child shares until it execs, then config.json's), so a leftover
is seen whoever its parent is, without counting other tests' processes.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from probe import describe, stat_fields, wait_until

MODES = ["rootless", "root"]


def pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def alive(pid):
    """Whether pid is a process that has not exited (a zombie is gone)."""
    f = stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def marked(token):
    """Host pids of live processes whose environment holds `token`."""
    needle = token.encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env and alive(int(entry)):
            out.append(int(entry))
    return out


def in_pid_ns(ns):
    """Host pids of live processes in pid namespace `ns` (a readlink)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and pid_ns(e) == ns and alive(int(e))]


def wait_gone(what, pred, timeout=3.0):
    """Waits until pred() is empty/false; fails naming what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = pred()
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} still there after {timeout}s: {left}")
        time.sleep(0.02)


class Oci:
    """kennel-oci with a private --root, run as the test user (rootless
    mode) or as real root, with a marker in its environment."""

    def __init__(self, h, binary, mode):
        self.h, self.binary, self.mode = h, binary, mode
        self.user = h.user if mode == "rootless" else None
        self.token = f"KENNEL_OCI_TEST={uuid.uuid4().hex}"
        base = self.tempdir(0o700)
        self.root = os.path.join(base, "state")

    def tempdir(self, mode=0o755):
        if self.user:
            return self.h.tempdir(owner=self.user, mode=mode)
        path = self.h.tempdir(owner=self.h.user, mode=mode)
        os.chown(path, 0, 0)
        return path

    def env(self):
        key, value = self.token.split("=", 1)
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", key: value}
        if self.user:
            return self.user.env(base)
        return base

    def argv(self, *args, root=True):
        argv = [self.binary] + (["--root", self.root] if root else []) + [str(a) for a in args]
        return self.user.argv(argv) if self.user else argv

    def __call__(self, *args, timeout=30, root=True):
        """Runs kennel-oci and returns a CompletedProcess. Output goes to
        files, not pipes: a created container keeps the stdio it was given
        (as runc's does), and a pipe would not end while it lives."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cp = subprocess.run(self.argv(*args, root=root), env=self.env(), timeout=timeout,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd="/")
            out.seek(0)
            err.seek(0)
            cp.stdout = out.read().decode(errors="replace")
            cp.stderr = err.read().decode(errors="replace")
            return cp

    def popen(self, *args, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(*args), env=self.env(), cwd="/", **kw)

    def ok(self, *args, **kw):
        cp = self(*args, **kw)
        assert cp.returncode == 0, f"kennel-oci {' '.join(map(str, args))}: " + describe(cp)
        return cp

    def state(self, cid):
        cp = self.ok("state", cid)
        return json.loads(cp.stdout)

    def wait_status(self, cid, status, timeout=5.0):
        return wait_until(lambda: (s := self.state(cid))["status"] == status and s,
                          f"container {cid} to be {status}", timeout=timeout)

    def bundle(self, args, out=None, edit=None):
        """A bundle from `kennel-oci spec [--rootless]` with process.args
        `args`, no terminal, the marker in its env, a copy of the busybox
        rootfs, and `out` (a host directory) bound at /out."""
        bundle = self.tempdir()
        flags = ["--rootless"] if self.user else []
        self.ok("spec", *flags, "--bundle", bundle, root=False)
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["process"]["args"] = list(args)
        config["process"]["terminal"] = False
        config["process"]["env"].append(self.token)
        if out:
            config["mounts"].append({"destination": "/out", "type": "bind", "source": out,
                                     "options": ["rbind", "rw"]})
        if edit:
            edit(config)
        with open(path, "w") as f:
            json.dump(config, f)
        rootfs = os.path.join(bundle, "rootfs")
        subprocess.run(["cp", "-a", self.h.rootfs, rootfs], check=True)
        os.mkdir(os.path.join(rootfs, "out"))
        owner = f"{self.user.uid}:{self.user.gid}" if self.user else "0:0"
        subprocess.run(["chown", "-R", owner, bundle], check=True)
        return bundle

    def outdir(self):
        return self.tempdir(0o777)

    def record(self, cid):
        return os.path.join(self.root, cid)

    def leftovers(self):
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []

    def cleanup(self):
        for cid in self.leftovers():
            if not cid.startswith("."):
                self("delete", "--force", cid)
        for pid in marked(self.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(params=MODES)
def oci(request, h, oci_runtime):
    o = Oci(h, oci_runtime, request.param)
    yield o
    o.cleanup()


@pytest.fixture
def rootless(h, oci_runtime):
    o = Oci(h, oci_runtime, "rootless")
    yield o
    o.cleanup()


def read_pidfile(path):
    with open(path) as f:
        text = f.read()
    assert text.isdigit(), f"pid file holds {text!r}, not just a pid"
    return int(text)


def one_error_line(cp):
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line: {describe(cp)}"
    return lines[0]


# --------------------------------------------------------------------------
# 1-3: the lifecycle


def test_create_start_kill_delete(oci):
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", "echo $$ > /out/started; exec sleep 60"], out=out)
    pidfile = os.path.join(oci.tempdir(), "pid")
    create = oci.popen("create", "--bundle", bundle, "--pid-file", pidfile, "c1")
    assert create.wait(timeout=30) == 0
    pid = read_pidfile(pidfile)
    st = oci.state("c1")
    assert (st["status"], st["pid"], st["id"]) == ("created", pid, "c1"), st
    assert st["bundle"] == bundle
    assert alive(pid)
    # The creator is gone: its child, now the container, is somebody else's.
    assert stat_fields(pid)[1] != create.pid
    assert pid_ns(pid) != pid_ns(os.getpid())
    assert os.path.exists(os.path.join(oci.record("c1"), "exec.fifo"))
    time.sleep(0.3)
    assert not os.path.exists(os.path.join(out, "started")), "the command ran before start"

    oci.ok("start", "c1")
    wait_until(lambda: os.path.exists(os.path.join(out, "started")), "the command to run after start")
    cp = oci("start", "c1")
    assert cp.returncode != 0 and "running" in one_error_line(cp), describe(cp)
    st = oci.state("c1")
    assert (st["status"], st["pid"]) == ("running", pid), st
    assert alive(pid)
    with open(os.path.join(out, "started")) as f:
        assert f.read().strip() == "1", "the command is not the container's PID 1"
    ns = pid_ns(pid)

    oci.ok("kill", "c1", "KILL")
    st = oci.wait_status("c1", "stopped")
    assert st["pid"] == 0, st
    oci.ok("delete", "c1")
    assert not os.path.exists(oci.record("c1"))
    assert oci.leftovers() == []
    wait_gone("container processes", lambda: in_pid_ns(ns) + marked(oci.token))
    cp = oci("state", "c1")
    assert cp.returncode != 0


def test_create_then_delete_without_start(oci):
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", "touch /out/ran"], out=out)
    pidfile = os.path.join(oci.tempdir(), "pid")
    oci.ok("create", "--bundle", bundle, "--pid-file", pidfile, "c2")
    pid = read_pidfile(pidfile)
    ns = pid_ns(pid)
    assert alive(pid) and oci.state("c2")["status"] == "created"
    fifo = os.path.join(oci.record("c2"), "exec.fifo")
    assert os.path.exists(fifo)
    oci.ok("delete", "c2")
    assert not alive(pid)
    assert not os.path.exists(fifo) and not os.path.exists(oci.record("c2"))
    assert oci.leftovers() == []
    wait_gone("container processes", lambda: in_pid_ns(ns) + marked(oci.token))
    time.sleep(0.1)
    assert not os.path.exists(os.path.join(out, "ran")), "delete let the command run"


def test_kill_of_a_created_container(oci):
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", "touch /out/ran"], out=out)
    oci.ok("create", "--bundle", bundle, "c3")
    pid = oci.state("c3")["pid"]
    ns = pid_ns(pid)
    oci.ok("kill", "c3", "KILL")
    st = oci.wait_status("c3", "stopped")
    assert st["pid"] == 0
    assert not alive(pid)
    # A stopped container cannot be started.
    cp = oci("start", "c3")
    assert cp.returncode != 0, describe(cp)
    oci.ok("delete", "c3")
    assert oci.leftovers() == []
    wait_gone("container processes", lambda: in_pid_ns(ns) + marked(oci.token))
    assert not os.path.exists(os.path.join(out, "ran"))


# --------------------------------------------------------------------------
# 4: the creator killed at random moments


@pytest.mark.parametrize("mode", MODES)
def test_creator_killed_during_create_leaves_nothing_after_delete(h, oci_runtime, mode):
    """kennel-oci create SIGKILLed 0-20 ms in, 50 times: `delete --force`
    must then remove whatever it left (processes, the record, the claim
    on the name), and the name must be usable again. Violations of the
    record part are collected over all runs, so one failure shows how
    often and what is left."""
    oci = Oci(h, oci_runtime, mode)
    try:
        bundle = oci.bundle(["sleep", "60"])
        rng = random.Random(4)
        outcomes, left_behind = {}, {}
        cid = "k4"
        for i in range(50):
            proc = oci.popen("create", "--bundle", bundle, cid)
            time.sleep(rng.uniform(0, 0.020))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            outcomes[proc.returncode] = outcomes.get(proc.returncode, 0) + 1
            cp = oci("delete", "--force", cid)
            assert cp.returncode == 0, f"run {i}: " + describe(cp)
            wait_gone(f"run {i}: processes of the killed create", lambda: marked(oci.token))
            for left in oci.leftovers():
                where = os.path.join(oci.root, left)
                left_behind.setdefault(f"{left.replace(str(proc.pid), 'PID')}: {sorted(os.listdir(where))}", []).append(i)
            # The name is free again, whatever was left.
            oci.ok("create", "--bundle", bundle, cid)
            assert oci.state(cid)["status"] == "created"
            oci.ok("delete", cid)
            assert not os.path.exists(oci.record(cid))
            wait_gone(f"run {i}: processes", lambda: marked(oci.token))
            for left in oci.leftovers():
                shutil.rmtree(os.path.join(oci.root, left))
        print(f"create's exit statuses: {outcomes}")
        assert not left_behind, f"delete --force left these in --root (entry: contents -> runs): {left_behind}"
    finally:
        oci.cleanup()


# --------------------------------------------------------------------------
# 5-6: records whose process is gone


def test_state_of_a_container_whose_process_died(oci):
    bundle = oci.bundle(["sleep", "60"])
    oci.ok("create", "--bundle", bundle, "c5")
    oci.ok("start", "c5")
    pid = oci.state("c5")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the container's process to die")
    cp = oci("state", "c5")
    assert cp.returncode == 0, describe(cp)
    assert cp.stderr == ""
    st = json.loads(cp.stdout)
    assert st["status"] == "stopped" and st["id"] == "c5", st
    oci.ok("delete", "c5")
    assert oci.leftovers() == []


def test_recycled_pid_is_never_signalled(rootless, h):
    oci = rootless
    bundle = oci.bundle(["sleep", "60"])
    oci.ok("create", "--bundle", bundle, "c6")
    oci.ok("start", "c6")
    pid = oci.state("c6")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the container's process to die")
    bystander = h.user.popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = os.path.join(oci.record("c6"), "state.json")
        with open(path) as f:
            record = json.load(f)
        record["pid"] = bystander.pid
        with open(path, "w") as f:  # in place: owner and mode stay
            json.dump(record, f)
        st = oci.state("c6")
        assert st["status"] == "stopped", st
        oci("kill", "c6", "KILL")
        oci("kill", "--all", "c6", "KILL")
        assert oci("exec", "c6", "true").returncode != 0, "exec entered a recycled pid's namespaces"
        assert json.loads(oci.ok("ps", "--format", "json", "c6").stdout) == []
        time.sleep(0.1)
        assert bystander.poll() is None, "kill signalled a process that only reuses the recorded pid"
        oci.ok("delete", "--force", "c6")
        time.sleep(0.1)
        assert bystander.poll() is None, "delete --force killed a process that only reuses the recorded pid"
        assert oci.leftovers() == []
    finally:
        bystander.kill()
        bystander.wait()


# --------------------------------------------------------------------------
# 7: one ID, two creates


def test_second_create_with_the_same_id_fails_and_leaves_the_first(oci):
    out = oci.outdir()
    first = oci.bundle(["sh", "-c", "touch /out/first; exec sleep 60"], out=out)
    second = oci.bundle(["sh", "-c", "touch /out/second; exec sleep 60"], out=out)
    oci.ok("create", "--bundle", first, "c7")
    before = oci.state("c7")
    with open(os.path.join(oci.record("c7"), "state.json")) as f:
        record = f.read()
    pidfile = os.path.join(oci.tempdir(), "pid")
    cp = oci("create", "--bundle", second, "--pid-file", pidfile, "c7")
    assert cp.returncode != 0, describe(cp)
    line = one_error_line(cp)
    assert "c7" in line and "exists" in line, line
    assert not os.path.exists(pidfile)
    with open(os.path.join(oci.record("c7"), "state.json")) as f:
        assert f.read() == record
    assert oci.state("c7") == before
    assert os.path.exists(os.path.join(oci.record("c7"), "exec.fifo"))
    assert sorted(os.listdir(oci.root)) == ["c7"]
    oci.ok("start", "c7")
    wait_until(lambda: os.path.exists(os.path.join(out, "first")), "the first container to run")
    assert oci.state("c7")["status"] == "running"
    assert not os.path.exists(os.path.join(out, "second"))
    oci.ok("delete", "--force", "c7")
    assert oci.leftovers() == []


def test_racing_creates_of_one_id_make_one_container(rootless):
    oci = rootless
    bundle = oci.bundle(["sleep", "60"])
    for i in range(10):
        procs = [oci.popen("create", "--bundle", bundle, "c7r") for _ in range(3)]
        codes = sorted(p.wait(timeout=30) for p in procs)
        assert codes[0] == 0 and all(c != 0 for c in codes[1:]), f"round {i}: create statuses {codes}"
        st = oci.state("c7r")
        assert st["status"] == "created"
        wait_gone(f"round {i}: processes of the losing creates",
                  lambda: [p for p in marked(oci.token) if p != st["pid"]])
        assert oci.leftovers() == ["c7r"]
        oci.ok("delete", "c7r")
        assert oci.leftovers() == []


# --------------------------------------------------------------------------
# 8: many short lives


def test_hundred_create_start_delete_cycles_leave_nothing(rootless):
    oci = rootless
    bundle = oci.bundle(["true"])
    rootfs = os.path.join(bundle, "rootfs")
    t0 = time.monotonic()
    for i in range(100):
        cid = f"c8-{i}"
        oci.ok("create", "--bundle", bundle, cid)
        oci.ok("start", cid)
        oci.wait_status(cid, "stopped")
        oci.ok("delete", cid)
    elapsed = time.monotonic() - t0
    print(f"100 cycles in {elapsed:.1f}s")
    assert oci.leftovers() == []
    wait_gone("container processes", lambda: marked(oci.token))
    with open("/proc/self/mountinfo") as f:
        mounts = [l for l in f if bundle in l or rootfs in l]
    assert mounts == []


# --------------------------------------------------------------------------
# 9: the command line's contract


def test_delete_force_of_a_missing_id_succeeds(rootless):
    cp = rootless("delete", "--force", "nosuch")
    assert cp.returncode == 0, describe(cp)
    cp = rootless("delete", "nosuch")
    assert cp.returncode != 0, describe(cp)
    assert "nosuch" in one_error_line(cp)


def test_delete_of_a_running_container_needs_force(oci):
    bundle = oci.bundle(["sleep", "60"])
    oci.ok("create", "--bundle", bundle, "c9")
    oci.ok("start", "c9")
    pid = oci.state("c9")["pid"]
    cp = oci("delete", "c9")
    assert cp.returncode != 0, describe(cp)
    assert "force" in one_error_line(cp)
    st = oci.state("c9")
    assert (st["status"], st["pid"]) == ("running", pid)
    assert alive(pid)
    oci.ok("delete", "--force", "c9")
    assert not alive(pid) and oci.leftovers() == []


def test_checkpoint_is_not_supported(rootless):
    cp = rootless("checkpoint", "c9")
    assert cp.returncode != 0
    assert "not supported" in cp.stderr, describe(cp)


def test_version_layout(rootless):
    cp = rootless.ok("--version", root=False)
    lines = cp.stdout.splitlines()
    assert lines[0].startswith("kennel-oci version ") and len(lines[0].split()) == 3, lines
    assert lines[1].startswith("commit: ") and len(lines[1]) > len("commit: "), lines
    assert lines[2].startswith("spec: 1.2"), lines


def test_features_lists_versions_and_the_hooks_it_runs(rootless):
    f = json.loads(rootless.ok("features", root=False).stdout)
    assert f["ociVersionMin"].startswith("1.") and f["ociVersionMax"].startswith("1.2"), f
    assert sorted(f["hooks"]) == sorted(["prestart", "createRuntime", "createContainer",
                                         "startContainer", "poststart", "poststop"]), f
    assert f["linux"]["seccomp"]["enabled"] is True, f
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"], f
    assert "SCMP_ACT_NOTIFY" not in f["linux"]["seccomp"]["actions"], f


def test_json_log_of_a_failure_is_one_json_line(rootless):
    log = os.path.join(rootless.tempdir(), "log.json")
    cp = rootless("--log", log, "--log-format", "json", "state", "nosuch")
    assert cp.returncode == 1, describe(cp)
    with open(log) as f:
        text = f.read()
    lines = text.splitlines()
    assert len(lines) == 1 and text.endswith("\n"), text
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "nosuch" in entry["msg"] and entry["time"], entry
    # A usage error goes there too.
    cp = rootless("--log", log, "--log-format", "json", "start")
    assert cp.returncode == 1, describe(cp)
    with open(log) as f:
        lines = f.read().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["level"] == "error", lines


def test_state_of_a_missing_id_is_a_clear_error(rootless):
    cp = rootless("state", "nosuch")
    assert cp.returncode != 0 and cp.stdout == ""
    line = one_error_line(cp)
    assert "nosuch" in line and "does not exist" in line, line


# --------------------------------------------------------------------------
# 10: exec


def test_exec_exit_status_detach_and_process_file(oci):
    out = oci.outdir()
    bundle = oci.bundle(["sleep", "60"], out=out)
    oci.ok("create", "--bundle", bundle, "c10")
    oci.ok("start", "c10")
    init = oci.state("c10")["pid"]

    cp = oci("exec", "c10", "sh", "-c", "echo hi; exit 5")
    assert cp.returncode == 5, describe(cp)
    assert cp.stdout == "hi\n"

    pidfile = os.path.join(oci.tempdir(), "exec.pid")
    t0 = time.monotonic()
    oci.ok("exec", "--detach", "--pid-file", pidfile, "c10", "sleep", "5", timeout=10)
    assert time.monotonic() - t0 < 4, "exec --detach waited for its process"
    pid = read_pidfile(pidfile)
    assert alive(pid)
    assert pid_ns(pid) == pid_ns(init)
    assert pid in json.loads(oci.ok("ps", "--format", "json", "c10").stdout)

    process = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo \"$GREETING\" > /out/exec; pwd >> /out/exec"],
        "env": ["PATH=/bin", "GREETING=from-process-json"],
        "cwd": "/tmp",
    }
    pfile = os.path.join(oci.tempdir(), "process.json")
    with open(pfile, "w") as f:
        json.dump(process, f)
    os.chmod(pfile, 0o644)
    oci.ok("exec", "--process", pfile, "c10")
    with open(os.path.join(out, "exec")) as f:
        assert f.read().split() == ["from-process-json", "/tmp"]
    oci.ok("delete", "--force", "c10")
    wait_gone("exec'd processes", lambda: [p for p in [pid] if alive(p)])


# --------------------------------------------------------------------------
# 11: bad input changes nothing


@pytest.mark.parametrize("field,value", [
    # A seccomp agent: kennel compiles profiles but runs no agent.
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/seccomp-agent.sock"}),
    ("linux.intelRdt", {"closID": "kennel"}),
])
def test_unsupported_field_is_refused_by_name_and_leaves_no_record(rootless, field, value):
    oci = rootless
    out = oci.outdir()

    def edit(config):
        node = config
        *parents, last = field.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    bundle = oci.bundle(["sh", "-c", "touch /out/ran"], out=out, edit=edit)
    pidfile = os.path.join(oci.tempdir(), "pid")
    cp = oci("create", "--bundle", bundle, "--pid-file", pidfile, "c11")
    assert cp.returncode != 0, describe(cp)
    assert field in one_error_line(cp), describe(cp)
    assert oci.leftovers() == []
    assert not os.path.exists(pidfile)
    assert oci("state", "c11").returncode != 0
    assert marked(oci.token) == []
    assert not os.path.exists(os.path.join(out, "ran"))


def test_create_failing_after_the_container_exists_leaves_nothing(rootless, h):
    """create exits non-zero, so its caller forgets the ID: a terminal
    with no --console-socket, a socket with no terminal, or a pid file
    that cannot be written must leave no container waiting."""
    oci = rootless

    def terminal(config):
        config["process"]["terminal"] = True

    listener, sockpath = console_listener(oci)
    not_mine = h.tempdir(owner=h.user)
    os.chown(not_mine, 0, 0)
    plain = oci.bundle(["sleep", "60"])
    cases = {
        "f1": (oci.bundle(["sleep", "60"], edit=terminal), []),
        "f2": (plain, ["--console-socket", sockpath]),
        "f3": (plain, ["--pid-file", os.path.join(not_mine, "pid")]),
    }
    try:
        for cid, (bundle, flags) in cases.items():
            cp = oci("create", "--bundle", bundle, *flags, cid)
            assert cp.returncode != 0, describe(cp)
            one_error_line(cp)
            state = oci("state", cid)
            assert state.returncode != 0, f"{cid} {flags}: create failed ({cp.stderr.strip()}) " \
                f"but left a container: {state.stdout}"
        assert oci.leftovers() == []
        wait_gone("processes of failed creates", lambda: marked(oci.token), timeout=1)
    finally:
        listener.close()


def test_delete_force_of_an_unreadable_record_kills_and_removes(rootless):
    """A record that no longer parses (truncated by a full disk, say) is
    still a container: delete --force must not report success and leave
    its process and directory."""
    oci = rootless
    bundle = oci.bundle(["sleep", "60"])
    oci.ok("create", "--bundle", bundle, "c12")
    pid = oci.state("c12")["pid"]
    with open(os.path.join(oci.record("c12"), "state.json"), "w") as f:
        f.write('{"ociVersion": "1.2.0", "id": "c1')
    cp = oci("delete", "--force", "c12")
    if cp.returncode == 0:
        assert not os.path.exists(oci.record("c12")), "delete --force succeeded but left the record"
        wait_gone("the container's process", lambda: [pid] if alive(pid) else [])
    else:
        assert "c12" in one_error_line(cp)


def console_listener(oci):
    """A listening unix socket for --console-socket, and its path."""
    path = os.path.join(oci.tempdir(0o777), "console.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    os.chmod(path, 0o777)
    return listener, path


def test_exec_detach_failing_leaves_no_process(rootless, h):
    """exec --detach that fails (a console socket without --tty, a pid
    file it cannot write) must not leave the process running: its caller
    never learns its pid."""
    oci = rootless
    bundle = oci.bundle(["sleep", "60"])
    oci.ok("create", "--bundle", bundle, "c13")
    oci.ok("start", "c13")
    init = oci.state("c13")["pid"]
    listener, sockpath = console_listener(oci)
    not_mine = h.tempdir(owner=h.user)
    os.chown(not_mine, 0, 0)
    try:
        for flags in (["--console-socket", sockpath], ["--tty"],
                      ["--pid-file", os.path.join(not_mine, "pid")]):
            cp = oci("exec", "--detach", *flags, "c13", "sleep", "57")
            assert cp.returncode != 0, describe(cp)
            wait_gone(f"exec --detach {' '.join(flags)} failed ({cp.stderr.strip()}) but its process",
                      lambda: [p for p in json.loads(oci.ok("ps", "--format", "json", "c13").stdout) if p != init],
                      timeout=1)
    finally:
        listener.close()


def test_exec_without_tty_has_no_terminal_in_a_terminal_container(rootless):
    """As runc: exec's --tty alone decides, not the container's
    process.terminal."""
    oci = rootless

    def terminal(config):
        config["process"]["terminal"] = True

    bundle = oci.bundle(["sleep", "60"], edit=terminal)
    listener, sockpath = console_listener(oci)
    try:
        create = oci.popen("create", "--bundle", bundle, "--console-socket", sockpath, "c14")
        listener.settimeout(20)
        conn, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(conn, 16, 1)
        assert create.wait(timeout=30) == 0 and len(fds) == 1
        oci.ok("start", "c14")
        cp = oci("exec", "c14", "sh", "-c", "tty; echo done")
        assert cp.returncode == 0 and cp.stdout == "not a tty\ndone\n", describe(cp)
        for fd in fds:
            os.close(fd)
        conn.close()
    finally:
        listener.close()


def test_pidfd_socket_receives_the_containers_process(oci):
    """--pidfd-socket (containerd's shim passes it): a pidfd of exactly the
    process the pid file names arrives, with one message."""
    import array
    import socket

    sock_dir = oci.tempdir()
    path = os.path.join(sock_dir, "pidfd.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(1)
    try:
        bundle = oci.bundle(["sleep", "60"])
        pidfile = os.path.join(oci.tempdir(), "pid")
        create = oci.popen("create", "--bundle", bundle, "--pid-file", pidfile, "--pidfd-socket", path, "c20")
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(16, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
        assert create.wait(timeout=30) == 0
        assert msg and len(fds) == 1, (msg, anc)
        with open(f"/proc/self/fdinfo/{fds[0]}") as f:
            fdinfo = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        assert int(fdinfo["Pid"].strip()) == read_pidfile(pidfile), fdinfo
        os.close(fds[0])
        conn.close()
    finally:
        srv.close()
        oci("delete", "--force", "c20")


def test_exec_refuses_a_confinement_it_cannot_apply(rootless):
    """--apparmor or --process-label asks for a confinement kennel does not
    apply: refused, and nothing runs."""
    oci = rootless
    out = oci.outdir()
    bundle = oci.bundle(["sleep", "60"], out=out)
    oci.ok("create", "--bundle", bundle, "c21")
    try:
        oci.ok("start", "c21")
        for flag in (["--apparmor", "unconfined"], ["--process-label", "system_u:system_r:container_t:s0"]):
            cp = oci("exec", *flag, "c21", "sh", "-c", "touch /out/ran")
            assert cp.returncode != 0 and flag[0] in one_error_line(cp), describe(cp)
        assert not os.path.exists(os.path.join(out, "ran"))
    finally:
        oci("delete", "--force", "c21")
