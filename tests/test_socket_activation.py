"""Socket activation: the sockets systemd passes to `kennel run`
(LISTEN_FDS, LISTEN_PID) reach the container's command with the same fd
numbers and variables, as with runc, so a socket-activated unit can run a
containerised server; nothing else of the caller's goes with them.

systemd-socket-activate (Debian's systemd) plays systemd: it listens on a
loopback port and execs kennel on the first connection, which the
container's server then accepts on fd 3, in a network namespace of its
own.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from probe import copy_rootfs

ACTIVATE = shutil.which("systemd-socket-activate")

pytestmark = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate (package systemd) is not installed")

# Prints its LISTEN_* variables, pid and open fds, then serves one
# connection on fd 3.
SERVER = r"""
import os, socket
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
print(os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDNAMES"),
      os.getpid(), ",".join(map(str, fds)), flush=True)
listener = socket.socket(fileno=3)
conn, _ = listener.accept()
conn.sendall(b"served-by-the-container\n")
conn.close()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_rootfs(h):
    """The busybox rootfs with the host's python bound in read-only."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("/usr/bin/python3 is missing: no server to run in the container")
    rootfs = copy_rootfs(h)
    with open(os.path.join(rootfs, "server.py"), "w") as f:
        f.write(SERVER)
    binds = []
    for d in ("/usr", "/lib", "/lib64"):
        if os.path.exists(d):
            binds += ["-v", f"{os.path.realpath(d)}:{d}:ro"]
    return rootfs, binds


def activated(h, *flags, env=None):
    """Runs the server under systemd-socket-activate; returns (what the
    host's client read, the server's line, kennel's result)."""
    rootfs, binds = python_rootfs(h)
    port = free_port()
    argv = [ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname", "web",
            h.kennel, "run", "--rootfs", rootfs, "--net", "private", *binds, *flags,
            "--", "/usr/bin/python3", "/server.py"]
    proc = subprocess.Popen(h.user.argv(argv), env=h.user.env(env), cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = b""
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                    got = c.recv(100)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return got.decode(), out.strip(), (proc.returncode, err)


def test_the_units_socket_is_served_from_the_container(h):
    got, line, (code, err) = activated(h)
    assert code == 0, err
    assert got == "served-by-the-container\n", (got, err)
    # The command is pid 1: LISTEN_PID names it, so sd_listen_fds accepts
    # the socket; fd 3 is the socket and fd 4 only the listing's own.
    assert line.split() == ["1", "1", "web", "1", "0,1,2,3,4"], line


def test_under_init_listen_pid_names_the_command(h):
    got, line, (code, err) = activated(h, "--init")
    assert code == 0, err
    assert got == "served-by-the-container\n", (got, err)
    fds, pid, names, own_pid, _ = line.split()
    assert (fds, names) == ("1", "web") and pid == own_pid != "1", line


def test_preserved_fds_follow_the_units_sockets(h):
    # As systemd hands them over: fd 3 the unit's socket, LISTEN_PID the
    # pid that execs kennel. fd 4, the caller's own file, is passed with
    # --preserve-fds 1 after it, as runc numbers them; fd 5 is not passed.
    rootfs = copy_rootfs(h)
    script = 'echo "$LISTEN_FDS $(readlink /proc/self/fd/3) $(readlink /proc/self/fd/4)"; ls /proc/self/fd/5 2>/dev/null || echo no-fd-5'
    shell = (f"exec 3</etc/hostname 4</etc/passwd 5</etc/group; LISTEN_FDS=1 LISTEN_PID=$$ exec {h.kennel} run "
             f"--rootfs {rootfs} --net private --preserve-fds 1 -- sh -c '{script}'")
    out = h.user.run(["sh", "-c", shell])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "/etc/hostname", "/etc/passwd", "no-fd-5"], out.stdout


def test_a_missing_preserved_fd_after_the_sockets_is_named(h):
    rootfs = copy_rootfs(h)
    shell = (f"exec 3</etc/hostname 4<&-; LISTEN_FDS=1 LISTEN_PID=$$ exec {h.kennel} run "
             f"--rootfs {rootfs} --net private --preserve-fds 1 -- true")
    out = h.user.run(["sh", "-c", shell])
    assert out.returncode != 0
    assert "--preserve-fds 1: fd 4 is not open" in out.stderr, out.stderr


def test_sockets_meant_for_another_process_are_not_passed(h):
    # LISTEN_PID names some other process (the caller's own unit, say):
    # kennel takes nothing, and the command sees neither fd 3 nor the
    # variables.
    rootfs = copy_rootfs(h)
    shell = (f"exec 3</etc/hostname; LISTEN_FDS=1 LISTEN_PID=1 exec {h.kennel} run --rootfs {rootfs} --net private "
             "-- sh -c 'echo \"[$LISTEN_FDS][$LISTEN_PID]\"; ls /proc/self/fd/3 2>/dev/null || echo no-fd-3'")
    out = h.user.run(["sh", "-c", shell])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[][]", "no-fd-3"], out.stdout


def test_a_socket_count_naming_closed_fds_is_refused(h):
    rootfs = copy_rootfs(h)
    shell = f"exec 3<&- 4<&-; LISTEN_FDS=2 LISTEN_PID=$$ exec {h.kennel} run --rootfs {rootfs} --net private -- true"
    out = h.user.run(["sh", "-c", shell])
    assert out.returncode != 0
    assert "LISTEN_FDS=2 names fd 3, which is not open" in out.stderr, out.stderr
