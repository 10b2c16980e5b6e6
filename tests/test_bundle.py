"""`kennel run --bundle DIR`: an OCI bundle's config.json runs as it is,
through the same engine as the flags."""

import json
import os
import shutil
import stat
import subprocess

import pytest


def write_bundle(h, config):
    bundle = h.tempdir(owner=h.user)
    rootfs = os.path.join(bundle, "rootfs")
    subprocess.run(["cp", "-a", h.rootfs, rootfs], check=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", bundle], check=True)
    return bundle


def base_config(args):
    return {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "from-bundle",
        "process": {
            "args": args,
            "cwd": "/",
            "env": ["PATH=/bin", "FROM_BUNDLE=yes"],
            "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": True,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ["user", "mount", "pid", "ipc", "uts", "network"]],
        },
    }


def test_bundle_config_is_run_as_written(h):
    script = "hostname; echo $FROM_BUNDLE; grep -E '^Cap(Eff|Bnd)' /proc/self/status; cat /proc/self/uid_map; touch /x 2>/dev/null || echo ro-root; exit 7"
    bundle = write_bundle(h, base_config(["/bin/sh", "-c", script]))
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 7, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "from-bundle"
    assert lines[1] == "yes"
    assert "CapEff:\t0000000000000020" in r.stdout  # CAP_KILL only
    assert "CapBnd:\t0000000000000020" in r.stdout
    # No maps in the bundle: the --userns plan (auto, with the helper) fills them.
    assert f"0 {h.user.uid} 1" in " ".join(r.stdout.split())
    assert "ro-root" in r.stdout


def test_bundle_without_config_is_a_clear_error(h):
    bundle = h.tempdir(owner=h.user)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "config.json" in r.stderr and r.stderr.startswith("kennel: ")


def test_bundle_must_ask_for_user_namespace(h):
    """Only root may run a container with no user namespace of its own."""
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    config["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "RAN" not in r.stdout
    assert "no user namespace, which only root may run" in r.stderr, r.stderr
    assert '{"type": "user"}' in r.stderr


def test_sysctls_of_the_containers_own_namespaces_are_set(h):
    """linux.sysctl: set inside the container's own uts, ipc and network
    namespaces; the host's values stay as they were."""
    config = base_config(["/bin/sh", "-c",
                          "cat /proc/sys/kernel/domainname /proc/sys/net/ipv4/ping_group_range /proc/sys/kernel/shmmni"])
    config["linux"]["sysctl"] = {
        "kernel.domainname": "kennel.test",
        "net.ipv4.ping_group_range": "0 0",
        "kernel.shmmni": "1234",
    }
    before = {k: open(f"/proc/sys/{k}").read() for k in
              ["kernel/domainname", "net/ipv4/ping_group_range", "kernel/shmmni"]}
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["kennel.test", "0\t0", "1234"], r.stdout
    after = {k: open(f"/proc/sys/{k}").read() for k in before}
    assert after == before


@pytest.mark.parametrize("key,why", [
    ("vm.swappiness", "is not namespaced"),
    ("kernel.domainname", "shares with the host"),
])
def test_a_sysctl_that_would_change_the_host_is_refused(h, key, why):
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    if why == "shares with the host":
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "uts"]
    config["linux"]["sysctl"] = {key: "1"}
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125 and "RAN" not in r.stdout
    assert key in r.stderr and why in r.stderr, r.stderr


def test_hooks_run_where_the_spec_says(h):
    """Each hook runs once, at its point, with the state on stdin:
    createRuntime outside the container, createContainer in its mount
    namespace, startContainer in its root before the command, poststart
    and poststop after. A failing createRuntime hook stops the start."""
    log_dir = h.tempdir(owner=h.user)
    log = os.path.join(log_dir, "hooks.log")
    hook = os.path.join(log_dir, "hook.sh")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\necho \"$1 $(readlink /proc/self/ns/mnt) $(cat)\" >> {log}\n")
    os.chmod(hook, 0o755)
    config = base_config(["/bin/sh", "-c", "echo command >&2"])
    config["process"]["capabilities"] = None
    config["hooks"] = {p: [{"path": hook, "args": ["hook.sh", p]}]
                       for p in ["createRuntime", "createContainer", "poststart", "poststop"]}
    config["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "ls / >&2; echo start >&2"]}]
    bundle = write_bundle(h, config)
    open(os.path.join(bundle, "rootfs", "only-in-the-image"), "w").close()
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 0, r.stderr
    # startContainer ran in the container's root, before the command.
    assert "only-in-the-image" in r.stderr.split(), r.stderr
    assert r.stderr.index("start") < r.stderr.index("command"), r.stderr
    lines = open(log).read().splitlines()
    assert [l.split()[0] for l in lines] == ["createRuntime", "createContainer", "poststart", "poststop"], lines
    mnts = {l.split()[0]: l.split()[1] for l in lines}
    assert mnts["createContainer"] != mnts["createRuntime"]
    states = {l.split()[0]: json.loads(l.split(" ", 2)[2]) for l in lines}
    assert states["createRuntime"]["status"] == "creating" and states["poststop"]["status"] == "stopped"
    assert states["createRuntime"]["pid"] > 0

    config["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125 and "command" not in r.stderr
    assert "createRuntime hook /bin/sh" in r.stderr and "exit status: 3" in r.stderr, r.stderr


def test_bundle_with_missing_rootfs(h):
    bundle = write_bundle(h, base_config(["/bin/true"]))
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125
    assert "rootfs" in r.stderr


def _set(config, dotted, value):
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


@pytest.mark.parametrize("field,value", [
    # A seccomp agent: kennel compiles profiles but runs no agent.
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/seccomp-agent.sock"}),
    ("linux.intelRdt", {"closID": "kennel"}),
    ("linux.resources.cpu.realtimeRuntime", 1000),
    ("process.apparmorProfile", "kennel-test"),
    ("linux.resources.blockIO", {"weight": 100}),
])
def test_a_spec_field_kennel_cannot_apply_is_refused_by_name(h, field, value):
    """A bundle that asks for a seccomp agent, an RDT class ... must never
    run without them: nothing runs, and the error names the field."""
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    _set(config, field, value)
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125, r.stderr
    assert "RAN" not in r.stdout
    assert r.stderr.startswith("kennel: unsupported in config.json: ") and field in r.stderr, r.stderr


def test_bundle_umask_and_oom_score_adj_are_applied(h):
    config = base_config(["/bin/sh", "-c", "umask; cat /proc/self/oom_score_adj"])
    config["process"]["user"]["umask"] = 0o027
    config["process"]["oomScoreAdj"] = 500
    config["linux"]["rootfsPropagation"] = "rprivate"
    r = h.user.run([h.kennel, "run", "--bundle", write_bundle(h, config)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0027", "500"]
    # Lowering it below kennel's own needs privilege: refused, never ignored.
    config["process"]["oomScoreAdj"] = -500
    r = h.user.run([h.kennel, "run", "--bundle", write_bundle(h, config)])
    assert r.returncode == 125, r.stderr
    assert "process.oomScoreAdj -500" in r.stderr, r.stderr


def test_a_runc_spec_rootless_bundle_runs_unchanged(h):
    """`runc spec --rootless` writes a `cgroup` mount (v1's type, which a
    user namespace cannot mount) and ambient capabilities without
    inheritable ones; only process.args is changed here."""
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("runc is not installed (Debian package runc; make test-deps installs it)")
    bundle = h.tempdir(owner=h.user)
    r = h.user.run([runc, "spec", "--rootless"], cwd=bundle)
    assert r.returncode == 0, r.stderr
    subprocess.run(["cp", "-a", h.rootfs, os.path.join(bundle, "rootfs")], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    assert any(m["type"] == "cgroup" for m in config["mounts"])
    assert config["process"]["capabilities"]["ambient"] and "inheritable" not in config["process"]["capabilities"]
    config["process"]["args"] = ["sh", "-c", "grep ^CapAmb /proc/self/status; touch /sys/fs/cgroup/x || echo CGROUP-RO; id -u"]
    with open(path, "w") as f:
        json.dump(config, f)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", bundle], check=True)
    r = h.user.run([h.kennel, "run", "--bundle", bundle], stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\r", "").split("\n")
    assert lines[0] == "CapAmb:\t0000000020000420", lines  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert "CGROUP-RO" in lines and lines[-2] == "0", lines


def _tree(top):
    """Everything below `top` (type, mode, owner, mtime, content or link
    target), to show that a run left it alone."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = f.read()
            else:
                what = None
            out[os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, what)
    return out


def _seed(h, rootfs):
    """/tmp/seed in the rootfs: a file, a symlink to it, a subdirectory with
    a file, a fifo; and /run/marker."""
    seed = os.path.join(rootfs, "tmp", "seed")
    os.makedirs(os.path.join(seed, "sub"))
    with open(os.path.join(seed, "file"), "w") as f:
        f.write("original\n")
    os.chmod(os.path.join(seed, "file"), 0o640)
    os.utime(os.path.join(seed, "file"), (1_000_000_000, 1_000_000_000))
    os.symlink("file", os.path.join(seed, "link"))
    with open(os.path.join(seed, "sub", "inner"), "w") as f:
        f.write("inner\n")
    os.mkfifo(os.path.join(seed, "fifo"), 0o600)
    with open(os.path.join(rootfs, "run", "marker"), "w") as f:
        f.write("run-marker\n")
    subprocess.run(["chown", "-hR", f"{h.user.uid}:{h.user.gid}",
                    os.path.join(rootfs, "tmp"), os.path.join(rootfs, "run")], check=True)


def test_tmpcopyup_fills_the_tmpfs_with_what_it_covers(h):
    """podman --read-only's tmpfs mounts: a read-only root, /tmp a tmpfs
    that starts with the image's /tmp and is writable; the rootfs itself
    stays as it was."""
    script = "; ".join([
        "cat /tmp/seed/file /tmp/seed/link /tmp/seed/sub/inner /run/marker",
        "readlink /tmp/seed/link",
        "stat -c '%a %u %Y' /tmp/seed/file",
        "test -p /tmp/seed/fifo && echo fifo",
        "echo changed > /tmp/seed/file && echo new > /tmp/created && echo tmp-writable",
        "cat /tmp/seed/file",
        "touch /x 2>/dev/null || echo root-ro",
        "touch /run/x 2>/dev/null || echo run-ro",
    ])
    config = base_config(["/bin/sh", "-c", script])
    config["mounts"][2]["options"] = ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
    config["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                             "options": ["ro", "nosuid", "nodev", "tmpcopyup"]})
    bundle = write_bundle(h, config)
    rootfs = os.path.join(bundle, "rootfs")
    _seed(h, rootfs)
    before = (_tree(os.path.join(rootfs, "tmp")), _tree(os.path.join(rootfs, "run")))

    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == [
        "original", "original", "inner", "run-marker",
        "file",
        "640 0 1000000000",
        "fifo",
        "tmp-writable",
        "changed",
        "root-ro",
        "run-ro",
        "",
    ], r.stdout + r.stderr
    after = (_tree(os.path.join(rootfs, "tmp")), _tree(os.path.join(rootfs, "run")))
    assert after == before


def test_tmpcopyup_names_a_device_node_it_cannot_make(h):
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    config["mounts"][2]["options"] = ["nosuid", "nodev", "tmpcopyup"]
    bundle = write_bundle(h, config)
    node = os.path.join(bundle, "rootfs", "tmp", "null")
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make a device node in the scratch directory")
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode != 0 and "RAN" not in r.stdout
    assert "/tmp/null" in r.stderr and "device node" in r.stderr, r.stderr


def test_tmpcopyup_on_a_bind_mount_is_refused(h):
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    source = h.tempdir(owner=h.user)
    config["mounts"].append({"destination": "/mnt", "type": "bind", "source": source,
                             "options": ["rbind", "tmpcopyup"]})
    r = h.user.run([h.kennel, "run", "--bundle", write_bundle(h, config)])
    assert r.returncode == 125, r.stderr
    assert "RAN" not in r.stdout
    assert "/mnt" in r.stderr and "tmpcopyup" in r.stderr and "only a tmpfs" in r.stderr, r.stderr


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_a_mount_option_kennel_cannot_honour_is_refused(h, option):
    """An idmapped mount would otherwise be made as a plain one: refused,
    naming the mount and option."""
    config = base_config(["/bin/sh", "-c", "echo RAN"])
    config["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/tmp",
                             "options": ["rbind", option]})
    bundle = write_bundle(h, config)
    r = h.user.run([h.kennel, "run", "--bundle", bundle])
    assert r.returncode == 125 and "RAN" not in r.stdout
    assert "/mnt" in r.stderr and option in r.stderr, r.stderr


def test_verbose_reports_the_maps_that_run(h):
    """A bundle with maps of its own runs them: --verbose says those, not
    the --userns plan it did not use; a bundle without gets the plan."""
    u = h.user
    config = base_config(["/bin/sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map"])
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": u.uid, "size": 1}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": u.gid, "size": 1}]
    own = write_bundle(h, config)
    r = h.user.run([h.kennel, "--verbose", "run", "--bundle", own])
    assert r.returncode == 0, r.stderr
    assert [l.split() for l in r.stdout.splitlines()] == [["0", str(u.uid), "1"], ["0", str(u.gid), "1"]]
    assert f"id maps: the bundle's own (uid_map: 0 {u.uid} 1; gid_map: 0 {u.gid} 1)" in r.stderr, r.stderr
    assert "userns=auto" not in r.stderr, r.stderr
    # Asking for a plan the bundle overrides is an error, not ignored.
    r = h.user.run([h.kennel, "run", "--userns=keep-id", "--bundle", own])
    assert r.returncode == 125 and r.stdout == "", r.stderr
    assert "--userns=keep-id does not apply" in r.stderr and "uidMappings" in r.stderr, r.stderr
    planned = write_bundle(h, base_config(["true"]))
    r = h.user.run([h.kennel, "--verbose", "run", "--bundle", planned])
    assert r.returncode == 0 and "userns=auto" in r.stderr and "bundle's own" not in r.stderr, r.stderr
