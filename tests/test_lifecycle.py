"""The container's life: exit codes, signals, --init, dying with the runner,
and named containers (exec, ps, kill, stale records).

Processes are watched from the host through /proc (the runner is the
Popen's pid, since setpriv execs it; the container's PID 1 is its child).
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from probe import (DEFAULT_CAPS, caps, children, containers, descendants, describe,  # noqa: F401
                   kennel, ok, ps_json, ps_names, read_line, run, sh, stat_fields, state_dir,
                   wait_until)

# --------------------------------------------------------------------------
# Exit codes


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_code_passes_through(h, code, init):
    flags = ["--init"] if init else []
    cp = sh(h, f"echo out; exit {code}", *flags)
    assert cp.returncode == code, describe(cp)
    assert cp.stdout == "out\n"


def test_command_killing_itself_with_sigkill_gives_137(h):
    # Without --init the command is PID 1, which the kernel protects from
    # its own namespace's signals; under --init it is an ordinary process.
    cp = sh(h, "echo before; kill -KILL $$; echo after", "--init")
    assert cp.returncode == 137, describe(cp)
    assert cp.stdout == "before\n"


def test_command_killed_by_sigterm_gives_143(h):
    cp = sh(h, "kill -TERM $$; sleep 5", "--init", timeout=10)
    assert cp.returncode == 143, describe(cp)


def _pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _container_pid(proc):
    """The host pid of the container's PID 1: the runner's child in a pid
    namespace of its own (kennel-idmap and the network namespace's maker,
    also children for a moment, are not)."""
    def found():
        kids = [k for k in children(proc.pid) if _pid_ns(k) not in (None, _pid_ns(proc.pid))]
        if proc.poll() is not None:
            pytest.fail(f"kennel exited early: {proc.returncode} {proc.communicate()}")
        return kids[0] if len(kids) == 1 else None
    return wait_until(found, "the container's PID 1 to appear")


def _wait_for_comm(pid, comm):
    def ready():
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip() == comm
        except FileNotFoundError:
            return False
    wait_until(ready, f"pid {pid} to exec {comm}")


def test_pid_1_killed_from_the_host_gives_137(h):
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        pid1 = _container_pid(proc)
        _wait_for_comm(pid1, "sleep")
        os.kill(pid1, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 137


@pytest.mark.parametrize("userns", ["single", "subids"])
def test_once_the_command_runs_the_container_is_the_runners_only_child(h, userns):
    """The processes that help start a container (the network namespace's
    maker, kennel-idmap) are gone and reaped, not left as zombies."""
    proc = h.user.popen([h.kennel, "run", f"--userns={userns}", "--rootfs", h.rootfs, "--", "sleep", "30"],
                        stdin=subprocess.DEVNULL)
    try:
        pid1 = _container_pid(proc)
        _wait_for_comm(pid1, "sleep")
        wait_until(lambda: children(proc.pid) == [pid1], "the runner's only child to be the container")
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------
# Signals


FORWARDED = ["INT", "TERM", "HUP", "QUIT", "USR1", "USR2"]


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
@pytest.mark.parametrize("sig", FORWARDED)
def test_signal_sent_to_the_runner_reaches_the_command(h, sig, init):
    script = f'trap "echo got {sig}; exit 3" {sig}; echo ready; while :; do sleep 0.05; done'
    flags = ["--init"] if init else []
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, *flags, "--", "sh", "-c", script],
                        stdin=subprocess.DEVNULL)
    try:
        assert read_line(proc.stdout, 10, "the container to start") == "ready\n"
        proc.send_signal(getattr(signal, "SIG" + sig))
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out == f"got {sig}\n", err
    assert proc.returncode == 3, err


def _dead(pid):
    st = stat_fields(pid)
    return st is None or st[0] in ("Z", "X")


def test_container_dies_with_the_runner(h):
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        pid1 = _container_pid(proc)
        _wait_for_comm(pid1, "sleep")
        proc.kill()
        proc.wait(timeout=5)
        wait_until(lambda: _dead(pid1), "the container to die with its runner")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------
# --init


ORPHAN_MAKER = "(sleep 0.1 &); exec sleep 3"


def _zombies(pids):
    return [p for p in pids if (stat_fields(p) or ("X",))[0] == "Z"]


def test_without_init_orphans_stay_zombies(h):
    """The control for the next test: PID 1 that never waits leaves zombies."""
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--", "sh", "-c", ORPHAN_MAKER],
                        stdin=subprocess.DEVNULL)
    try:
        pid1 = _container_pid(proc)
        wait_until(lambda: _zombies(descendants(pid1)), "the orphan to exit and stay a zombie", timeout=2.5)
    finally:
        proc.kill()
        proc.communicate()


def test_init_reaps_orphans(h):
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--init", "--", "sh", "-c", ORPHAN_MAKER],
                        stdin=subprocess.DEVNULL)
    try:
        init = _container_pid(proc)
        # The command is not PID 1: kennel's init is, with the command as its child.
        command = wait_until(lambda: children(init), "the init to start the command")[0]
        _wait_for_comm(command, "sleep")
        # The orphan is re-parented to the init, exits after 0.1s and must be
        # reaped: only the init and the command remain, and no zombie.
        wait_until(lambda: descendants(init) == [command], "the orphan to be reaped", timeout=2)
        assert _zombies([init, command]) == []
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_init_is_pid_1_and_the_command_is_not(h):
    out = ok(sh(h, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '", "--init"))
    pid, cmdline = out.split("\n", 1)
    assert pid != "1"
    assert not cmdline.startswith("sh "), cmdline


# --------------------------------------------------------------------------
# Named containers: exec


def test_exec_joins_the_running_container(h, containers):
    containers.start("ex1", cmd=["sh", "-c", "echo from-container > /tmp/marker; exec sleep 30"])
    cp = kennel(h, "exec", "ex1", "--", "sh", "-c",
                "cat /tmp/marker; tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$; hostname; id -u")
    lines = ok(cp).splitlines()
    assert lines[0] == "from-container"           # same mount namespace
    assert lines[1].strip() == "sleep 30"         # same pid namespace: PID 1 is the container's
    assert lines[2] != "1"
    assert lines[3] == "ex1"                      # same uts namespace
    assert lines[4] == "0"


def test_exec_sees_the_same_network_namespace(h, containers):
    containers.start("ex-net", "--net", "private")
    out = ok(kennel(h, "exec", "ex-net", "--", "cat", "/proc/net/dev"))
    ifaces = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    assert ifaces == ["lo"]


def test_exec_env_workdir_user(h, containers):
    containers.start("ex2")
    cp = kennel(h, "exec", "ex2", "-e", "FOO=bar", "-w", "/etc", "-u", "1000:1000", "--",
                "sh", "-c", "echo $FOO; pwd; id -u; id -g; echo $container")
    assert ok(cp).split() == ["bar", "/etc", "1000", "1000", "kennel"]
    assert ok(kennel(h, "exec", "ex2", "-u", "user", "--", "id", "-un")).strip() == "user"


def test_exec_has_the_containers_capabilities(h, containers):
    containers.start("ex3")
    s = caps(ok(kennel(h, "exec", "ex3", "--", "cat", "/proc/self/status")))
    assert s["CapEff"] == DEFAULT_CAPS and s["CapBnd"] == DEFAULT_CAPS
    assert s["CapInh"] == 0 and s["CapAmb"] == 0
    assert s["NoNewPrivs"] == 1
    s = caps(ok(kennel(h, "exec", "ex3", "-u", "1000", "--", "cat", "/proc/self/status")))
    assert s["CapEff"] == 0 and s["NoNewPrivs"] == 1


def test_exec_exit_codes(h, containers):
    containers.start("ex4")
    assert kennel(h, "exec", "ex4", "--", "sh", "-c", "exit 7").returncode == 7
    cp = kennel(h, "exec", "ex4", "--", "no-such-command")
    assert cp.returncode == 127, describe(cp)
    assert "no-such-command" in cp.stderr


def test_exec_into_a_missing_container(h):
    cp = kennel(h, "exec", "no-such-container", "--", "true")
    assert cp.returncode == 125, describe(cp)
    assert "no-such-container" in cp.stderr


def test_exec_of_another_user_is_refused(h, containers):
    containers.start("ex-mine")
    # Another user's runtime dir holds no such container.
    cp = kennel(h, "exec", "ex-mine", "--", "true", user=h.other)
    assert cp.returncode == 125, describe(cp)


def test_short_lived_named_containers_keep_their_exit_code(h):
    """A named command that exits at once must still be recorded and give its
    own exit code (not a 125 for a container that was gone too soon). Runs
    in parallel, so the runner is often scheduled after its command exits."""
    script = ('for i in $(seq 25); do "$0" run --rootfs "$1" --name "$2" -- sh -c "exit 42"; '
              'echo $?; done')
    procs = [h.user.popen(["sh", "-c", script, h.kennel, h.rootfs, f"brief-{j}"], stdin=subprocess.DEVNULL)
             for j in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    codes = [c for out, _ in results for c in out.split()]
    errors = sorted({e for _, err in results for e in err.splitlines()})
    assert len(codes) == 200
    assert set(codes) == {"42"}, f"{sorted(set(codes))}: {errors}"
    assert errors == []


# --------------------------------------------------------------------------
# ps and kill


def test_ps_lists_running_containers_and_forgets_them(h, containers):
    proc = containers.start("ps1", cmd=["sleep", "30"])
    table = ok(kennel(h, "ps"))
    rows = [l.split() for l in table.splitlines()[1:]]
    assert any(r[0] == "ps1" for r in rows), table
    row = next(r for r in rows if r[0] == "ps1")
    pid1 = _container_pid(proc)
    assert row[1] == str(pid1)
    entries = [c for c in ps_json(h) if c["name"] == "ps1"]
    assert len(entries) == 1
    assert entries[0]["pid"] == pid1
    assert entries[0]["command"] == ["sleep", "30"]
    # Other users do not see it.
    assert "ps1" not in ps_names(h, user=h.other)

    assert kennel(h, "kill", "ps1").returncode == 0
    proc.communicate(timeout=10)
    assert "ps1" not in ps_names(h)
    assert "ps1" not in ok(kennel(h, "ps"))
    assert not os.path.exists(state_dir(h.user, "ps1"))


def test_ps_columns_line_up_under_their_labels(h, containers):
    """A rootfs path wider than any fixed column must not push the others
    out of line; every column has a label."""
    rootfs = os.path.join(h.tempdir(), "a-root-filesystem-with-a-name-wider-than-a-column")
    subprocess.run(["cp", "-a", h.rootfs, rootfs], check=True)
    containers.start("ps-wide", "--net=private", rootfs=rootfs, cmd=["sleep", "30"])
    lines = ok(kennel(h, "ps")).splitlines()
    header = lines[0]
    labels = header.split()
    assert labels == ["NAME", "PID", "UP", "ROOTFS", "CGROUP", "SECCOMP", "ADDRESS", "PORTS", "COMMAND"], header
    row = next(l for l in lines[1:] if l.split()[0] == "ps-wide")
    starts = [header.index(label) for label in labels]
    for label, at in zip(labels, starts):
        assert row[at] != " " and (at == 0 or row[at - 1] == " "), f"{label} at {at}:\n{header}\n{row}"
    assert row[header.index("ROOTFS"):].startswith(rootfs + " "), f"{header}\n{row}"
    assert row[header.index("COMMAND"):] == "sleep 30", f"{header}\n{row}"


def test_container_gone_after_a_normal_exit(h):
    cp = sh(h, "exit 0", "--name", "brief")
    assert cp.returncode == 0, describe(cp)
    assert "brief" not in ps_names(h)
    assert not os.path.exists(state_dir(h.user, "brief"))


def test_kill_default_is_sigkill(h, containers):
    proc = containers.start("k1")
    cp = kennel(h, "kill", "k1")
    assert cp.returncode == 0, describe(cp)
    proc.communicate(timeout=10)
    assert proc.returncode == 137


def test_kill_with_kill_signal(h, containers):
    proc = containers.start("k2")
    assert kennel(h, "kill", "k2", "KILL").returncode == 0
    proc.communicate(timeout=10)
    assert proc.returncode == 137


def test_kill_term_reaches_the_command(h, containers):
    proc = containers.start("k3", cmd=["sh", "-c", 'trap "echo got TERM; exit 5" TERM; while :; do sleep 0.05; done'])
    assert kennel(h, "kill", "k3", "TERM").returncode == 0
    out, _ = proc.communicate(timeout=10)
    assert out == "got TERM\n"
    assert proc.returncode == 5


def test_kill_term_under_init_stops_the_command(h, containers):
    proc = containers.start("k4", "--init", cmd=["sleep", "30"])
    assert kennel(h, "kill", "k4", "SIGTERM").returncode == 0
    proc.communicate(timeout=10)
    assert proc.returncode == 143


def test_kill_term_on_a_pid_1_without_a_handler_says_so(h, containers):
    """`sleep` as PID 1 has no TERM handler, so the kernel drops TERM: kennel
    says so and how to stop it, and the container is still running."""
    proc = containers.start("k-nohandler", cmd=["sleep", "30"])
    cp = kennel(h, "kill", "k-nohandler", "TERM")
    assert cp.returncode == 125, describe(cp)
    [line] = cp.stderr.splitlines()
    assert "SIGTERM had no effect" in line and "(sleep) has no handler" in line, line
    assert "kennel kill k-nohandler KILL" in line and "--init" in line, line
    time.sleep(0.2)
    assert proc.poll() is None and "k-nohandler" in ps_names(h)


def test_kill_missing_container(h):
    cp = kennel(h, "kill", "no-such-container")
    assert cp.returncode == 125, describe(cp)
    assert "no-such-container" in cp.stderr


def test_kill_bad_signal_leaves_the_container_running(h, containers):
    proc = containers.start("k5")
    cp = kennel(h, "kill", "k5", "NOTASIGNAL")
    assert cp.returncode == 125, describe(cp)
    assert "NOTASIGNAL" in cp.stderr
    time.sleep(0.1)
    assert proc.poll() is None
    assert "k5" in ps_names(h)


# --------------------------------------------------------------------------
# Stale records


def test_state_left_by_a_killed_runner_is_cleaned(h, containers):
    proc = containers.start("stale1")
    pid1 = _container_pid(proc)
    proc.kill()  # the runner cannot clean up; its container dies with it
    proc.wait()
    wait_until(lambda: _dead(pid1), "the container to die with its runner")
    assert os.path.exists(os.path.join(state_dir(h.user, "stale1"), "state.json")), \
        "precondition: a SIGKILLed runner leaves its record behind"
    assert "stale1" not in ps_names(h)
    assert not os.path.exists(state_dir(h.user, "stale1"))
    # The name is free again.
    assert ok(sh(h, "hostname", "--name", "stale1")).strip() == "stale1"


def _write_state(h, name, pid, start_time=1):
    d = state_dir(h.user, name)
    os.makedirs(d)
    state = {"name": name, "pid": pid, "start_time": start_time, "rootfs": h.rootfs,
             "command": ["sleep", "30"], "created": int(time.time()),
             "process": {"args": ["sleep", "30"], "cwd": "/"}}
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(state, f)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", os.path.dirname(d)], check=True)
    return d


def test_fake_state_with_a_dead_pid_is_cleaned(h):
    dead = subprocess.Popen(["true"])
    dead.wait()
    d = _write_state(h, "stale2", dead.pid)
    assert "stale2" not in ps_names(h)
    assert not os.path.exists(d)
    _write_state(h, "stale2", dead.pid)
    assert ok(sh(h, "hostname", "--name", "stale2")).strip() == "stale2"
    assert not os.path.exists(d)


def test_state_pointing_at_a_recycled_pid_is_not_trusted(h):
    """A record whose pid now belongs to an unrelated process of the user
    (the start time differs) must neither be listed nor signalled."""
    bystander = h.user.popen(["sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        _wait_for_comm(bystander.pid, "sleep")
        d = _write_state(h, "stale3", bystander.pid, start_time=1)
        cp = kennel(h, "kill", "stale3", "KILL")
        assert cp.returncode == 125, describe(cp)
        time.sleep(0.1)
        assert bystander.poll() is None, "kennel kill signalled an unrelated process"
        assert "stale3" not in ps_names(h)
        assert not os.path.exists(d)
    finally:
        bystander.kill()
        bystander.wait()
