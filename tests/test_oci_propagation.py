"""Mount propagation as runc gives it: linux.rootfsPropagation and a mount's
propagation option (private, slave, shared, unbindable and their r-forms),
seen from inside (the container's mountinfo, through `kennel-oci exec`)
and from the host. What distrobox needs: a host tree bound `rslave` keeps
receiving what the host mounts in it later (a USB stick under /run/host),
and nothing the container mounts there reaches the host.

Every host directory a test binds is a shared mount point of its own (the
host's / may be private, as on this CI machine), made by root on the host
and detached after."""

import json
import os
import platform
import subprocess

import pytest

from probe import describe, ok, wait_until
from test_mount_api import HIDE_MOUNT_API, PYTHON
from test_oci_lifecycle import Oci, oci  # noqa: F401
from test_podman import IMAGE, podman  # noqa: F401 (a fixture)

DEST = "/run/host-tmp"
# The container mounts a tmpfs in the bound tree, then waits.
INIT = f"mount -t tmpfs inside {DEST}/inside && touch /out/mounted; exec sleep 120"


class WithoutMountApi(Oci):
    """kennel-oci where open_tree, move_mount, fsopen, fsmount and
    mount_setattr answer ENOSYS, as on a kernel before 5.12: mount(2) by
    path (`path_mounts`)."""

    def argv(self, *args, root=True):
        argv = [PYTHON, "-c", HIDE_MOUNT_API, self.binary]
        argv += (["--root", self.root] if root else []) + [str(a) for a in args]
        return self.user.argv(argv) if self.user else argv


@pytest.fixture
def mounts_made():
    """Host mount points to detach after the test, innermost last."""
    made = []
    yield made
    for path in reversed(made):
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)


def make_shared(path, made):
    """Makes `path` a mount point of its own, shared on the host."""
    subprocess.run(["mount", "--bind", path, path], check=True)
    made.append(path)
    subprocess.run(["mount", "--make-shared", path], check=True)


def host_dir(oci, made, subs=("late", "inside")):
    """A shared host directory for the container to bind, with `subs`."""
    d = oci.tempdir(0o755)
    for sub in subs:
        os.mkdir(os.path.join(d, sub))
    if oci.user:
        subprocess.run(["chown", "-R", f"{oci.user.uid}:{oci.user.gid}", d], check=True)
    make_shared(d, made)
    return d


def fields(text):
    """{mount point: optional fields} of a mountinfo (the top mount of a
    point where mounts are stacked)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        out[f[4]] = f[6:f.index("-")]
    return out


def host_fields():
    with open("/proc/self/mountinfo") as f:
        return fields(f.read())


def peer_group(path):
    """The host's peer group id of the shared mount at `path`."""
    tags = [t for t in host_fields()[path] if t.startswith("shared:")]
    assert tags, f"{path} is not shared on the host: {host_fields()[path]}"
    return tags[0].split(":")[1]


def settings(root_propagation=None, options=("rbind",), source=None, extra=None):
    def edit(config):
        if root_propagation:
            config["linux"]["rootfsPropagation"] = root_propagation
        config["mounts"].append({"destination": DEST, "type": "bind", "source": source,
                                 "options": list(options)})
        config["mounts"] += extra or []
        caps = config["process"]["capabilities"]
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = sorted(set(caps.get(kind, [])) | {"CAP_SYS_ADMIN"})
        config["process"]["noNewPrivileges"] = False
    return edit


def start(oci, cid, d, out, **kw):
    """A running container whose init has mounted its tmpfs in `d`."""
    bundle = oci.bundle(["sh", "-c", INIT], out=out, edit=settings(source=d, **kw))
    return start_bundle(oci, cid, bundle, out)


def start_bundle(oci, cid, bundle, out):
    oci.ok("create", "--bundle", bundle, cid)
    oci.ok("start", cid)
    wait_until(lambda: os.path.exists(os.path.join(out, "mounted")), "the container's mount")
    return bundle


def inside(oci, cid):
    """The container's mountinfo, read by a process exec'd in it."""
    return fields(oci.ok("exec", cid, "cat", "/proc/self/mountinfo").stdout)


def late_host_mount(d, made):
    late = os.path.join(d, "late")
    subprocess.run(["mount", "-t", "tmpfs", "late", late], check=True)
    made.append(late)
    return late


def test_rslave_sees_the_hosts_later_mounts_and_sends_none(oci, mounts_made):
    d = host_dir(oci, mounts_made)
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "sub", sub], check=True)
    mounts_made.append(sub)
    out = oci.outdir()
    bundle = oci.bundle(["sh", "-c", INIT], out=out,
                        edit=settings("rslave", ["rbind", "rslave"], source=d))
    # The rootfs a shared mount point too: / inside follows it.
    rootfs = os.path.join(bundle, "rootfs")
    make_shared(rootfs, mounts_made)
    start_bundle(oci, "p1", bundle, out)
    late_host_mount(d, mounts_made)

    seen = inside(oci, "p1")
    assert f"{DEST}/late" in seen, f"the host's later mount did not reach the container: {seen}"
    assert not os.path.ismount(os.path.join(d, "inside")), "the container's mount reached the host"
    # mountinfo names the host's peer groups: each mount is a slave of one.
    assert seen[DEST] == [f"master:{peer_group(d)}"], seen[DEST]
    assert seen[f"{DEST}/sub"] == [f"master:{peer_group(sub)}"], seen
    assert seen["/"] == [f"master:{peer_group(rootfs)}"], seen["/"]
    assert seen[f"{DEST}/inside"] == [], seen
    oci.ok("delete", "--force", "p1")


def test_plain_slave_leaves_the_mounts_below_private(oci, mounts_made):
    d = host_dir(oci, mounts_made)
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "sub", sub], check=True)
    mounts_made.append(sub)
    out = oci.outdir()
    start(oci, "p2", d, out, root_propagation="rslave", options=["rbind", "slave"])
    seen = inside(oci, "p2")
    assert seen[DEST] == [f"master:{peer_group(d)}"], seen[DEST]
    assert seen[f"{DEST}/sub"] == [], seen
    oci.ok("delete", "--force", "p2")


@pytest.mark.parametrize("asked", [None, "rprivate"], ids=["default", "rprivate"])
def test_private_sees_nothing_of_the_host_later(oci, mounts_made, asked):
    d = host_dir(oci, mounts_made)
    out = oci.outdir()
    options = ["rbind"] + ([asked] if asked else [])
    start(oci, "p3", d, out, root_propagation=asked, options=options)
    late_host_mount(d, mounts_made)
    seen = inside(oci, "p3")
    assert f"{DEST}/late" not in seen, seen
    assert seen[DEST] == [] and seen["/"] == [], seen
    assert not os.path.ismount(os.path.join(d, "inside"))
    oci.ok("delete", "--force", "p3")


def test_rshared_goes_both_ways_as_root(oci, mounts_made):
    """As root the bind is a peer of the host's mount: mounts go both ways.
    Rootless, the kernel makes every host mount a slave in the user's
    namespaces: the bind is shared among the container's own mounts and
    still a slave of the host's, which is what runc gives too."""
    d = host_dir(oci, mounts_made)
    mounts_made.append(os.path.join(d, "inside"))
    # A mount below the shared one, which no step of kennel's may unmount
    # on the host (a detached peer carries unmounts to the host's copies).
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "sub", sub], check=True)
    mounts_made.append(sub)
    out = oci.outdir()
    start(oci, "p4", d, out, root_propagation="rshared", options=["rbind", "rshared"])
    assert os.path.ismount(sub), "the host's mount below the bind was unmounted"
    late_host_mount(d, mounts_made)
    seen = inside(oci, "p4")
    assert f"{DEST}/late" in seen, seen
    group = peer_group(d)
    if oci.user:
        assert not os.path.ismount(os.path.join(d, "inside"))
        tags = seen[DEST]
        assert f"master:{group}" in tags and any(t.startswith("shared:") for t in tags), tags
    else:
        assert os.path.ismount(os.path.join(d, "inside")), "the container's mount did not reach the host"
        assert seen[DEST] == [f"shared:{group}"], seen[DEST]
    assert f"{DEST}/sub" in seen, seen
    # rshared on /: the container's root is shared, in a group of its own.
    assert any(t.startswith("shared:") for t in seen["/"]), seen["/"]
    oci.ok("delete", "--force", "p4")
    assert os.path.ismount(sub), "the container's end unmounted the host's mount"


def test_a_new_filesystem_can_be_shared_and_a_bind_unbindable(oci, mounts_made):
    d = host_dir(oci, mounts_made, subs=("late", "inside", "ro"))
    out = oci.outdir()

    def extra(config):
        config["linux"].setdefault("readonlyPaths", []).append(f"{DEST}/ro")

    tmpfs = {"destination": "/shared-tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["rshared", "nosuid"]}
    bundle = oci.bundle(["sh", "-c", INIT], out=out, edit=lambda c: (
        settings(options=["rbind", "runbindable"], source=d, extra=[tmpfs])(c), extra(c)))
    start_bundle(oci, "p5", bundle, out)
    seen = inside(oci, "p5")
    assert seen[DEST] == ["unbindable"], seen[DEST]
    # The read-only copy of a path inside it was made before it became so.
    assert seen[f"{DEST}/ro"] == ["unbindable"], seen
    assert any(t.startswith("shared:") for t in seen["/shared-tmp"]), seen["/shared-tmp"]
    oci.ok("delete", "--force", "p5")


def test_without_the_mount_api_propagation_is_the_same(h, oci_runtime, mounts_made):
    if platform.machine() != "x86_64":
        pytest.skip(f"the filter is written with x86-64 system call numbers; this is {platform.machine()}")
    # Rootless: the filter needs no_new_privs, which a bundle with maps for
    # the user's own id alone can run under.
    oci = WithoutMountApi(h, oci_runtime, "rootless")
    try:
        d = host_dir(oci, mounts_made)
        sub = os.path.join(d, "sub")
        os.mkdir(sub)
        subprocess.run(["mount", "-t", "tmpfs", "sub", sub], check=True)
        mounts_made.append(sub)
        out = oci.outdir()
        tmpfs = {"destination": "/shared-tmp", "type": "tmpfs", "source": "tmpfs",
                 "options": ["shared"]}
        start(oci, "p6", d, out, root_propagation="rslave", options=["rbind", "slave"],
              extra=[tmpfs])
        late_host_mount(d, mounts_made)
        seen = inside(oci, "p6")
        assert f"{DEST}/late" in seen, seen
        assert seen[DEST] == [f"master:{peer_group(d)}"], seen[DEST]
        assert seen[f"{DEST}/sub"] == [], seen
        assert any(t.startswith("shared:") for t in seen["/shared-tmp"]), seen
        assert not os.path.ismount(os.path.join(d, "inside"))
        oci.ok("delete", "--force", "p6")
    finally:
        oci.cleanup()


def test_an_unknown_propagation_is_named(oci, mounts_made):
    d = host_dir(oci, mounts_made)
    bundle = oci.bundle(["true"], edit=settings("rslaved", source=d))
    cp = oci("run", "--bundle", bundle, "p7")
    assert cp.returncode != 0, describe(cp)
    assert "rootfsPropagation" in cp.stderr and "rslaved" in cp.stderr, describe(cp)
    assert "rslave," in cp.stderr, describe(cp)

    bundle = oci.bundle(["true"], edit=settings(options=["rbind", "rslave", "rshared"], source=d))
    cp = oci("run", "--bundle", bundle, "p8")
    assert cp.returncode != 0, describe(cp)
    assert DEST in cp.stderr and "rslave and rshared" in cp.stderr, describe(cp)


def test_distrobox_binds_dev_and_sys_rslave(oci):
    """What `distrobox create` asks of podman: the host's /dev and /sys
    bound rslave, and / with rootfsPropagation rslave."""
    out = oci.outdir()

    def edit(config):
        config["linux"]["rootfsPropagation"] = "rslave"
        config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/dev", "/sys")]
        for path in ("/dev", "/sys"):
            config["mounts"].append({"destination": path, "type": "bind", "source": path,
                                     "options": ["rbind", "rslave"]})
        config["linux"].pop("maskedPaths", None)
        config["linux"].pop("readonlyPaths", None)

    script = "ls /dev/null /sys/kernel >/dev/null && cat /proc/self/mountinfo > /out/mountinfo"
    bundle = oci.bundle(["sh", "-c", script], out=out, edit=edit)
    cp = oci("run", "--bundle", bundle, "p9")
    assert cp.returncode == 0, describe(cp)
    with open(os.path.join(out, "mountinfo")) as f:
        seen = fields(f.read())
    host = host_fields()
    for path in ("/dev", "/sys"):
        assert path in seen, seen
        groups = [t.split(":")[1] for t in host[path] if t.startswith("shared:")]
        expected = [f"master:{g}" for g in groups]
        assert seen[path] == expected, f"{path}: {seen[path]}, host {host[path]}"


@pytest.fixture(scope="module")
def shared_before_podman(h):
    """A shared host directory made before the module's podman starts its
    user namespace, so that namespace has a copy of the mount to follow
    (on a host whose / is shared, as systemd makes it, every directory
    would do)."""
    made = []
    d = h.tempdir(mode=0o755)
    os.mkdir(os.path.join(d, "late"))
    make_shared(d, made)
    yield d
    for path in reversed(made):
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)


def test_distrobox_volumes_under_podman(shared_before_podman, podman, mounts_made):
    """`distrobox create`'s volumes, through rootless podman, which sends
    rootfsPropagation rslave with them: the box starts, and a host mount
    made later in a bound tree shows in it."""
    d = shared_before_podman
    name = "kennel-distrobox"
    volumes = ["-v", "/:/run/host:rslave", "-v", "/dev:/dev:rslave", "-v", "/sys:/sys:rslave",
               "-v", f"{d}:{DEST}:rslave"]
    # distrobox shares the host's network too.
    ok(podman("run", "-d", "--name", name, "--network", "host", *volumes, IMAGE, "sleep", "120"))
    try:
        late_host_mount(d, mounts_made)
        seen = fields(ok(podman("exec", name, "cat", "/proc/self/mountinfo")))
        assert "/run/host" in seen and "/run/host/dev" in seen, seen
        assert f"{DEST}/late" in seen, f"the host's later mount did not reach the box: {seen}"
        assert any(t.startswith("master:") for t in seen[DEST]), seen[DEST]
    finally:
        ok(podman("rm", "--force", "--time", "0", name))
