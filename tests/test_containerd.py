"""containerd's runc v2 shim driving the runtime under test.

containerd runs as root, as it does in real life, but as a private
instance: its root, state, sockets, runc state (--runc-root) and ctr's
FIFOs all live in one temporary directory, and it is started once for the
module and stopped by its pid at the end, so a system containerd is never
touched. (The shim still puts its socket under /run/containerd/s, named by
a hash of our socket's address, and tasks get cgroups under /default;
what this module created there it removes if empty.) The image is the harness's busybox rootfs wrapped in an OCI
image layout written here, so these tests do not need podman.
"""

import base64
import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import tempfile

import pytest

from conftest import require_tool
from probe import describe, ok, wait_until

IMAGE = "localhost/kennel-busybox:test"
UNTIL_TERM = "trap 'exit 42' TERM; while :; do sleep 0.1; done"
SHIM_SOCKETS = "/run/containerd"
CGROUP_PARENTS = "/sys/fs/cgroup/*/default"


def write_oci_archive(layer_tar, dest, name):
    """An OCI image layout tarball (what `ctr images import` reads) holding
    one image, `name`, whose only layer is the tarball `layer_tar`."""
    blobs = {}

    def blob(data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    with open(layer_tar, "rb") as f:
        layer = blob(f.read(), "application/vnd.oci.image.layer.v1.tar")
    config = blob(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    }).encode(), "application/vnd.oci.image.manifest.v1+json")
    manifest["annotations"] = {"io.containerd.image.name": name,
                               "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest]}
    with tarfile.open(dest, "w") as tar:
        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return dest


class Containerd:
    def __init__(self, base, runtime):
        self.base = base
        self.runtime = runtime
        self.socket = os.path.join(base, "containerd.sock")
        self.runc_root = os.path.join(base, "runc")
        self.fifo_dir = os.path.join(base, "fifo")
        self.proc = None

    def ctr(self, *args, timeout=60, **kw):
        return subprocess.run(["ctr", "--address", self.socket, *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, **kw)

    def run_flags(self, runtime=None):
        """What every `ctr run` gets: the runtime under test, and runc state
        and FIFOs in the private directory."""
        return ["--runc-binary", runtime or self.runtime, "--runc-root", self.runc_root,
                "--fifo-dir", self.fifo_dir]

    def start(self):
        config = os.path.join(self.base, "config.toml")
        with open(config, "w") as f:
            f.write(f"""version = 2
root = "{self.base}/root"
state = "{self.base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.base}/opt"
""")
        self.log = open(os.path.join(self.base, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", config], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited with {self.proc.returncode}:\n{self.read_log()}")
            return os.path.exists(self.socket) and self.ctr("version", timeout=10).returncode == 0
        wait_until(up, "containerd's socket", timeout=20, interval=0.1)

    def read_log(self):
        with open(os.path.join(self.base, "containerd.log")) as f:
            return f.read()[-4000:]

    def our_shims(self):
        """The pids of shims serving this instance (their argv names our
        socket), nobody else's."""
        pids = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, ValueError):
                continue
            if entry.isdigit() and b"-address" in argv and self.socket.encode() in argv:
                pids.append(int(entry))
        return pids

    def stop(self):
        """Removes every task and container, stops containerd by its pid,
        kills any shim of ours that outlived it, and unmounts what is still
        mounted under the private directory."""
        if self.proc and self.proc.poll() is None:
            for task in self.ctr("task", "ls", "--quiet").stdout.split():
                self.ctr("task", "kill", "--signal", "SIGKILL", task)
                self.ctr("task", "delete", "--force", task)
            for container in self.ctr("containers", "ls", "--quiet").stdout.split():
                self.ctr("containers", "rm", container)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for pid in self.our_shims():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for mountpoint in sorted((m for m in mounts if m.startswith(self.base + "/")), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", mountpoint], check=False)


@pytest.fixture(scope="module")
def containerd(h, oci_runtime, busybox_tar):
    require_tool("containerd", "containerd")
    require_tool("ctr", "containerd")
    require_tool("containerd-shim-runc-v2", "containerd")
    had_shim_dir = os.path.exists(SHIM_SOCKETS)
    # Tasks go in cgroup /default/ID (namespace/ID) in every hierarchy; the
    # runtime removes ID, the /default it leaves is ours to remove.
    had_cgroups = set(glob.glob(CGROUP_PARENTS))
    # Socket paths must fit in sun_path: a short directory of root's own.
    base = tempfile.mkdtemp(prefix="kennel-ctd-", dir=h.scratch)
    c = Containerd(base, oci_runtime)
    try:
        c.start()
        archive = write_oci_archive(busybox_tar, os.path.join(base, "busybox-oci.tar"), IMAGE)
        ok(c.ctr("images", "import", archive))
        assert IMAGE in ok(c.ctr("images", "ls", "--quiet")).split()
        yield c
    finally:
        c.stop()
        for parent in set(glob.glob(CGROUP_PARENTS)) - had_cgroups:
            try:
                os.rmdir(parent)  # only if empty: a cgroup with tasks stays
            except OSError:
                pass
        if not had_shim_dir:
            # Only empty directories go: anything else is someone else's.
            for d in ["s", "fifo", "runc/default", "runc", ""]:
                try:
                    os.rmdir(os.path.join(SHIM_SOCKETS, d))
                except OSError:
                    pass


def test_a_broken_runtime_fails(containerd):
    """The shim really calls the binary --runc-binary names, not a runc of
    its own: with /bin/false, a run fails."""
    cp = containerd.ctr("run", "--rm", *containerd.run_flags(runtime="/bin/false"), IMAGE, "kennel-false", "true")
    assert cp.returncode != 0, describe(cp)
    containerd.ctr("containers", "rm", "kennel-false")


def test_exit_code_propagates(containerd):
    cp = containerd.ctr("run", "--rm", *containerd.run_flags(), IMAGE, "kennel-exit",
                        "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
    assert cp.returncode == 7, describe(cp)
    assert "to-stdout" in cp.stdout, describe(cp)
    assert "to-stderr" in cp.stderr, describe(cp)
    assert "kennel-exit" not in ok(containerd.ctr("containers", "ls", "--quiet")).split()


def test_detached_exec_ps_kill_delete(containerd):
    name = "kennel-detached"
    ok(containerd.ctr("run", "--detach", *containerd.run_flags(), IMAGE, name, "sh", "-c", UNTIL_TERM))
    try:
        # The container records the runtime it was given.
        info = json.loads(ok(containerd.ctr("containers", "info", name)))
        assert info["Runtime"]["Name"] == "io.containerd.runc.v2", info["Runtime"]
        # Options are runc.v1.Options, a protobuf message: binary_name is
        # in there as the bytes of the path.
        options = base64.b64decode(info["Runtime"]["Options"]["value"])
        assert containerd.runtime.encode() in options, info["Runtime"]

        tasks = ok(containerd.ctr("task", "ls")).splitlines()
        row = next((l.split() for l in tasks if l.split()[:1] == [name]), None)
        assert row and row[2] == "RUNNING", tasks
        init_pid = int(row[1])

        cp = containerd.ctr("task", "exec", "--fifo-dir", containerd.fifo_dir, "--exec-id", "kennel-exec",
                            name, "sh", "-c", "echo in-exec; tr '\\0' ' ' < /proc/1/cmdline; exit 5")
        assert cp.returncode == 5, describe(cp)
        assert "in-exec" in cp.stdout, describe(cp)
        assert "while :" in cp.stdout, describe(cp)  # the same container's pid 1

        ps = ok(containerd.ctr("task", "ps", name)).split()
        assert str(init_pid) in ps, ps

        ok(containerd.ctr("task", "kill", name))  # SIGTERM

        def stopped():
            rows = [l.split() for l in ok(containerd.ctr("task", "ls")).splitlines()]
            return any(r[:1] == [name] and r[2] == "STOPPED" for r in rows)
        wait_until(stopped, f"{name} to stop on SIGTERM", timeout=10, interval=0.1)

        cp = containerd.ctr("task", "delete", name)
        assert cp.returncode == 0, describe(cp)
        assert "exit code 42" in cp.stderr, describe(cp)  # the trap ran: SIGTERM arrived
        assert name not in ok(containerd.ctr("task", "ls", "--quiet")).split()
    finally:
        containerd.ctr("task", "delete", "--force", name)
        ok(containerd.ctr("containers", "rm", name))
    assert name not in ok(containerd.ctr("containers", "ls", "--quiet")).split()
