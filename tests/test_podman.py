"""Rootless podman, as the test user, driving the runtime under test.

podman (through conmon) is the client most people will put kennel-oci
under, so these tests run it the way a user on this kind of host would:
rootless, cgroupfs (no systemd), file events, fuse-overlayfs storage, with
`--runtime` naming the runtime under test (the `oci_runtime` fixture:
kennel-oci, or KENNEL_OCI_RUNTIME). Everything podman keeps lives in one
private directory per module (storage, run root, XDG_RUNTIME_DIR, config),
so no test touches the user's own podman, and one busybox image is
imported once for all the tests.
"""

import json
import os
import shlex
import signal
import socket
import time
import urllib.request

import pytest

from conftest import require_tool
from probe import describe, ok, wait_until

IMAGE = "localhost/kennel-busybox:test"
# A container that runs until SIGTERM and then exits 42: podman stop and
# the exit status together show the signal went through the runtime.
UNTIL_TERM = "trap 'exit 42' TERM; while :; do sleep 0.1; done"


class Podman:
    """`podman` as the test user, on the module's private store."""

    def __init__(self, user, runtime, base):
        self.user = user
        self.runtime = runtime
        self.base = base
        self.run_dir = os.path.join(base, "run")
        self.env = {
            "XDG_RUNTIME_DIR": self.run_dir,
            "XDG_CONFIG_HOME": os.path.join(base, "config"),
            "XDG_DATA_HOME": os.path.join(base, "data"),
            "XDG_CACHE_HOME": os.path.join(base, "cache"),
        }
        self.flags = [
            "--root", os.path.join(base, "storage"),
            "--runroot", os.path.join(base, "runroot"),
            "--storage-driver", "overlay",
            "--storage-opt", "overlay.mount_program=" + require_tool("fuse-overlayfs", "fuse-overlayfs"),
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime", runtime,
        ]

    def argv(self, *args, runtime=None):
        flags = self.flags if runtime is None else self.flags[:-1] + [runtime]
        return ["podman", *flags, *map(str, args)]

    def __call__(self, *args, runtime=None, timeout=60, **kw):
        return self.user.run(self.argv(*args, runtime=runtime), env=self.env, timeout=timeout, **kw)

    def pause_pid(self):
        """The pause process that holds this store's user namespace."""
        try:
            with open(os.path.join(self.run_dir, "libpod", "tmp", "pause.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def processes(self):
        """The pids of the test user's processes in this store's user
        namespace (the one the pause process holds), nobody else's."""
        pause = self.pause_pid()
        try:
            userns = os.readlink(f"/proc/{pause}/ns/user") if pause else None
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            try:
                if (entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == self.user.uid
                        and os.readlink(f"/proc/{entry}/ns/user") == userns):
                    pids.append(int(entry))
            except OSError:
                pass
        return pids

    def kill_leftovers(self):
        """Gives the conmons, slirp4netns and fuse-overlayfs of removed
        containers a moment to finish their cleanup, then SIGKILLs, by
        pid, whatever is left in this store's user namespace, the pause
        process included."""
        pause = self.pause_pid()
        deadline = time.monotonic() + 5
        while set(self.processes()) - {pause} and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def private_podman(user, runtime, base):
    """A Podman for `user` whose store, run root and configuration all live
    in `base` (an existing directory `user` owns). Run as root; also used
    by bench/oci-latency.py."""
    require_tool("podman", "podman")
    require_tool("conmon", "conmon")
    require_tool("slirp4netns", "slirp4netns")
    require_tool("newuidmap", "uidmap")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: rootless podman's fuse-overlayfs storage needs it")
    p = Podman(user, runtime, base)
    os.mkdir(p.run_dir, 0o700)
    os.chown(p.run_dir, user.uid, user.gid)
    # podman's own configuration, empty: its default seccomp profile and
    # everything else as a user gets them.
    config = os.path.join(base, "config")
    os.mkdir(config, 0o700)
    os.chown(config, user.uid, user.gid)
    return p


@pytest.fixture(scope="module")
def podman(h, oci_runtime, busybox_tar):
    p = private_podman(h.user, oci_runtime, h.tempdir())
    try:
        ok(p("import", busybox_tar, IMAGE))
        yield p
    finally:
        p("rm", "--all", "--force", "--time", "0")
        p.kill_leftovers()


def test_uses_the_runtime_under_test(podman, h):
    """podman reports the runtime it was given, and really calls it: with
    /bin/false as the runtime, a run fails."""
    info = json.loads(ok(podman("info", "--format", "json")))
    assert info["host"]["ociRuntime"]["path"] == podman.runtime, info["host"]["ociRuntime"]
    assert info["host"]["security"]["rootless"] is True
    cp = podman("run", "--rm", IMAGE, "true", runtime="/bin/false")
    assert cp.returncode != 0, describe(cp)


def test_exit_code_propagates(podman):
    cp = podman("run", "--rm", IMAGE, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert cp.returncode == 3, describe(cp)
    assert "to-stdout" in cp.stdout, describe(cp)
    assert "to-stderr" in cp.stderr, describe(cp)


def test_interactive_tty(podman, h):
    """`podman run -it` under script(1): the container gets a terminal,
    reads what is typed and its exit status comes back."""
    require_tool("script", "bsdutils")
    inner = podman.argv("run", "--rm", "-it", IMAGE, "sh", "-c", 'read line; echo "got:$line"; tty; exit 4')
    cp = h.user.run(["script", "-qec", shlex.join(inner), "/dev/null"], env=podman.env, input="hello\n", timeout=60)
    assert cp.returncode == 4, describe(cp)
    assert "got:hello" in cp.stdout, describe(cp)
    assert "/dev/pts/" in cp.stdout, describe(cp)


def test_detached_exec_stop_rm(podman):
    name = "kennel-detached"
    cid = ok(podman("run", "-d", "--name", name, IMAGE, "sh", "-c", UNTIL_TERM)).strip()
    try:
        # conmon, which drives the runtime for the container's whole life,
        # was given the runtime under test.
        conmon = int(ok(podman("inspect", "--format", "{{.State.ConmonPid}}", name)).strip())
        with open(f"/proc/{conmon}/cmdline") as f:
            argv = f.read().split("\0")
        assert "-r" in argv and argv[argv.index("-r") + 1] == podman.runtime, argv

        listed = ok(podman("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"))
        assert any(l.split()[:2] == [cid[:12], name] and " Up " in f" {l} " for l in listed.splitlines()), listed

        cp = podman("exec", name, "sh", "-c", "echo in-exec; tr '\\0' ' ' < /proc/1/cmdline; exit 5")
        assert cp.returncode == 5, describe(cp)
        assert "in-exec" in cp.stdout, describe(cp)
        assert "while :" in cp.stdout, describe(cp)  # the same container's pid 1

        start = time.monotonic()
        ok(podman("stop", "--time", "20", name))
        # SIGTERM did it, not the SIGKILL after the timeout.
        assert time.monotonic() - start < 15
        state = ok(podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)).split()
        assert state == ["exited", "42"], state
    finally:
        ok(podman("rm", "--force", "--time", "0", name))
    assert name not in ok(podman("ps", "--all", "--format", "{{.Names}}")).split()


def test_userns_keep_id(podman, h):
    out = ok(podman("run", "--rm", "--userns=keep-id", IMAGE, "sh", "-c", "id -u; id -g"))
    assert out.split() == [str(h.user.uid), str(h.user.gid)], out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_port(podman):
    """A port published on the host's loopback reaches busybox httpd
    inside the container's own network namespace (slirp4netns)."""
    port = free_port()
    name = "kennel-port"
    serve = "mkdir /www && echo kennel-port-ok > /www/index.html && exec httpd -f -p 8080 -h /www"
    ok(podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", IMAGE, "sh", "-c", serve))
    try:
        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None
        body = wait_until(fetch, f"httpd on 127.0.0.1:{port}", timeout=20, interval=0.2)
        assert body.strip() == "kennel-port-ok"
    finally:
        ok(podman("rm", "--force", "--time", "0", name))


def test_read_only_rootfs(podman):
    """--read-only: / cannot be written; podman's tmpfs on /tmp can."""
    script = "if touch /probe; then exit 1; fi; touch /tmp/probe && echo tmp-writable"
    cp = podman("run", "--rm", "--read-only", IMAGE, "sh", "-c", script)
    assert cp.returncode == 0, describe(cp)
    assert "Read-only file system" in cp.stderr, describe(cp)
    assert "tmp-writable" in cp.stdout, describe(cp)
