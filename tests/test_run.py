"""`kennel run`, observed from inside the container (ids, maps, mounts,
environment, capabilities, fds, terminal) and from the host (files written
through volumes, the rootfs left untouched).

Every container is started by the ordinary test user, as in real life.
"""

import fcntl
import os
import pty
import shutil
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest

from probe import (CAP_SYS_ADMIN, DEFAULT_CAPS, caps, containers, copy_rootfs, describe, id_map,  # noqa: F401
                   kennel, ok, run, sh)

SUBID_COUNT = 65536


# --------------------------------------------------------------------------
# Identity and id maps


def maps_inside(h, *flags, user=None):
    out = ok(sh(h, "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map", *flags, user=user))
    uid_text, gid_text = out.split("--\n")
    return id_map(uid_text), id_map(gid_text)


def test_auto_is_root_inside_with_full_subordinate_maps(h):
    u = h.user
    out = ok(sh(h, "id -u; id -g"))
    assert out.split() == ["0", "0"]
    uid_map, gid_map = maps_inside(h)
    full = [(0, u.uid, 1), (1, u.subid_start, SUBID_COUNT)]
    assert uid_map == full
    assert gid_map == [(0, u.gid, 1), (1, u.subid_start, SUBID_COUNT)]


def test_subids_gives_the_full_range(h):
    u = h.user
    uid_map, gid_map = maps_inside(h, "--userns", "subids")
    assert uid_map == [(0, u.uid, 1), (1, u.subid_start, SUBID_COUNT)]
    assert gid_map == [(0, u.gid, 1), (1, u.subid_start, SUBID_COUNT)]


def test_single_maps_only_the_caller_to_root(h):
    u = h.user
    assert ok(sh(h, "id -u; id -g", "--userns", "single")).split() == ["0", "0"]
    uid_map, gid_map = maps_inside(h, "--userns", "single")
    assert uid_map == [(0, u.uid, 1)]
    assert gid_map == [(0, u.gid, 1)]


def _check_keep_id_map(m, own, sub_start):
    """Own id maps to itself; the rest of 0..65535 maps into the subordinate range."""
    assert (own, own, 1) in m, m
    covered = []
    for inner, outer, count in m:
        covered += range(inner, inner + count)
        if (inner, outer, count) != (own, own, 1):
            assert sub_start <= outer and outer + count <= sub_start + SUBID_COUNT, m
    assert sorted(covered) == list(range(SUBID_COUNT)), m


def test_keep_id_keeps_the_callers_ids(h):
    u = h.user
    assert ok(sh(h, "id -u; id -g", "--userns", "keep-id")).split() == [str(u.uid), str(u.gid)]
    uid_map, gid_map = maps_inside(h, "--userns", "keep-id")
    _check_keep_id_map(uid_map, u.uid, u.subid_start)
    _check_keep_id_map(gid_map, u.gid, u.subid_start)


def test_subids_without_an_entry_names_etc_subuid(h):
    cp = sh(h, "echo started", "--userns", "subids", user=h.nosub)
    assert cp.returncode == 125, describe(cp)
    assert "started" not in cp.stdout
    assert "/etc/subuid" in cp.stderr, cp.stderr
    assert cp.stderr.startswith("kennel: "), cp.stderr


# The shared rootfs is another user's to h.nosub: pasta's resolv.conf
# (the default network) would need an /etc/resolv.conf it lacks, which
# nosub may not make there (docs/run.md, "A root filesystem"); these tests are
# about the id map, so they run without it.
NOT_OUR_TREE = ("--net", "private")


def test_auto_without_subordinate_ids_maps_only_the_caller(h):
    uid_map, gid_map = maps_inside(h, *NOT_OUR_TREE, user=h.nosub)
    assert uid_map == [(0, h.nosub.uid, 1)]
    assert gid_map == [(0, h.nosub.gid, 1)]


def test_auto_without_the_helper_maps_only_the_caller(h):
    for d in ["/usr/local/libexec/kennel", "/usr/libexec/kennel", *h.user.env()["PATH"].split(":")]:
        if os.path.exists(os.path.join(d, "kennel-idmap")):
            pytest.skip(f"a kennel-idmap is installed in {d}: kennel would find it there")
    lonely = h.tempdir()
    kennel_copy = os.path.join(lonely, "kennel")
    shutil.copy2(h.kennel, kennel_copy)
    os.chmod(kennel_copy, 0o755)
    cp = h.user.run([kennel_copy, "run", "--rootfs", h.rootfs, "--", "sh", "-c",
                     "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map"], timeout=20)
    uid_text, gid_text = ok(cp).split("--\n")
    assert id_map(uid_text) == [(0, h.user.uid, 1)]
    assert id_map(gid_text) == [(0, h.user.gid, 1)]


def test_kennel_libexecdir_is_the_only_place_the_helper_is_looked_for(h):
    # The harness's kennel-idmap sits next to kennel, where kennel looks
    # first without the variable: with it, only the directory it names.
    empty = h.tempdir()
    cp = h.user.run([h.kennel, "run", "--userns", "subids", "--rootfs", h.rootfs, "--", "echo", "started"],
                    env={"KENNEL_LIBEXECDIR": empty}, timeout=20)
    assert cp.returncode == 125 and "started" not in cp.stdout, describe(cp)
    assert f"{empty} (from KENNEL_LIBEXECDIR)" in cp.stderr, cp.stderr
    cp = h.user.run([h.kennel, "run", "--userns", "subids", "--rootfs", h.rootfs, "--", "cat", "/proc/self/uid_map"],
                    env={"KENNEL_LIBEXECDIR": os.path.dirname(h.kennel)}, timeout=20)
    uid_map = id_map(ok(cp))
    assert uid_map == [(0, h.user.uid, 1), (1, h.user.subid_start, SUBID_COUNT)], uid_map


def test_verbose_says_which_mapping_was_chosen(h):
    cp = kennel(h, "--verbose", "run", "--rootfs", h.rootfs, "--", "true")
    assert cp.returncode == 0, describe(cp)
    assert "kennel-idmap" in cp.stderr and "auto" in cp.stderr, cp.stderr
    cp = kennel(h, "--verbose", "run", *NOT_OUR_TREE, "--rootfs", h.rootfs, "--", "true", user=h.nosub)
    assert cp.returncode == 0, describe(cp)
    assert "/etc/subuid" in cp.stderr, cp.stderr


def test_real_root_gets_the_identity_mapping(h):
    cp = subprocess.run([h.kennel, "run", "--rootfs", h.rootfs, "--", "sh", "-c",
                         "id -u; cat /proc/self/uid_map; echo --; cat /proc/self/gid_map"],
                        capture_output=True, text=True, timeout=20, cwd="/",
                        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    head, gid_text = ok(cp).split("--\n")
    uid, uid_text = head.split("\n", 1)
    assert uid == "0"
    assert id_map(uid_text) == [(0, 0, 4294967295)]
    assert id_map(gid_text) == [(0, 0, 4294967295)]


MAPS_INSIDE = "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map"


@pytest.mark.parametrize("how", [["-r"], ["--map-root-user", "--map-auto"]], ids=["one-id", "subids"])
def test_root_of_a_namespace_kennel_did_not_make(h, how):
    """`unshare -r kennel run` (and podman unshare, and rootless podman's
    runtime calls) run kennel as uid 0 of a user namespace it did not make:
    the container gets the ids that namespace has, mapped onto themselves,
    never the identity map of every id, which the kernel refuses there."""
    script = 'cat /proc/self/uid_map; echo --; exec "$@"'
    cp = h.user.run(["unshare", *how, "sh", "-c", script, "sh", h.kennel, "--verbose", "run",
                     "--rootfs", h.rootfs, "--", "sh", "-c", MAPS_INSIDE], timeout=20)
    outer_text, inside = ok(cp).split("--\n", 1)
    uid_text, gid_text = inside.split("--\n")
    outer = id_map(outer_text)
    assert outer[0] == (0, h.user.uid, 1)
    assert len(outer) == len(how)  # --map-auto adds the subordinate range
    assert id_map(uid_text) == [(inner, inner, count) for inner, _, count in outer]
    assert id_map(gid_text)[0] == (0, 0, 1)
    assert "root of a user namespace kennel did not make" in cp.stderr, cp.stderr
    cp = h.user.run(["unshare", *how, h.kennel, "doctor"], timeout=20)
    assert "root of a user namespace kennel did not make" in cp.stdout, describe(cp)


# --------------------------------------------------------------------------
# Namespaces: pid, uts, mount, net


def test_command_is_pid_1_in_a_fresh_pid_namespace(h):
    out = ok(sh(h, "echo $$; ls /proc"))
    lines = out.split()
    assert lines[0] == "1"
    pids = sorted(int(p) for p in lines[1:] if p.isdigit())
    # Only the shell (1) and perhaps the ls it started (busybox may exec it
    # in place): none of the host's processes.
    assert pids[0] == 1 and len(pids) <= 2 and pids[-1] < 10, pids


def test_default_hostname_is_kennel_and_host_is_untouched(h):
    before = socket.gethostname()
    assert ok(run(h, cmd=["hostname"])).strip() == "kennel"
    # Changing it needs CAP_SYS_ADMIN (not in Docker's default set).
    out = ok(sh(h, "hostname changed-inside && hostname", "--cap-add", "SYS_ADMIN"))
    assert out.strip() == "changed-inside"
    assert socket.gethostname() == before


def test_hostname_flag(h):
    assert ok(run(h, "--hostname", "box1", cmd=["hostname"])).strip() == "box1"


def test_name_sets_the_hostname(h):
    assert ok(run(h, "--name", "named-host", cmd=["hostname"])).strip() == "named-host"


def test_host_files_and_mounts_are_absent(h):
    marker_dir = h.tempdir()
    marker = os.path.join(marker_dir, "host-only-marker")
    with open(marker, "w") as f:
        f.write("host\n")
    os.chmod(marker, 0o644)
    out = ok(sh(h, f"test -e {marker} && echo VISIBLE; cat /etc/passwd; echo --; cat /proc/self/mountinfo"))
    assert "VISIBLE" not in out
    passwd, mountinfo = out.split("--\n")
    # The container's /etc is the rootfs's, not the host's.
    assert "user:x:1000:1000" in passwd
    assert h.user.name not in passwd
    allowed = ("/proc", "/dev", "/sys", "/tmp", "/run")
    points = [line.split()[4] for line in mountinfo.splitlines()]
    # pasta's resolv.conf (the default network where pasta is installed)
    # is kennel's own file, read-only, not one of the host's.
    resolv = [line for line in mountinfo.splitlines() if line.split()[4] == "/etc/resolv.conf"]
    if resolv:
        assert "/kennel-pasta." in resolv[0].split()[3], resolv
        assert resolv[0].split()[5].startswith("ro"), resolv
        points.remove("/etc/resolv.conf")
    assert "/" in points and "/proc" in points
    stray = [p for p in points if p != "/" and not any(p == a or p.startswith(a + "/") for a in allowed)]
    assert stray == [], f"host mounts visible inside: {stray}\n{mountinfo}"
    # Exactly one root mount, and none of the host's own mount points.
    assert points.count("/") == 1, mountinfo


# One id: a process beside the child makes the network namespace; with the
# helper, the child makes it while it waits for the maps.
@pytest.mark.parametrize("userns", ["single", "subids"])
def test_private_network_has_only_loopback_and_it_is_up(h, userns):
    # Changing lo takes CAP_NET_ADMIN over the namespace's owner: the
    # container's own user namespace, whoever made it.
    script = "cat /proc/net/dev; echo --; ip link set lo mtu 1280 && ip link show lo"
    out = ok(sh(h, script, f"--userns={userns}", "--net", "private", "--cap-add", "NET_ADMIN"))
    netdev, link = out.split("--\n")
    ifaces = [line.split(":")[0].strip() for line in netdev.splitlines()[2:]]
    assert ifaces == ["lo"]
    assert "UP" in link.split(">")[0], link
    assert "mtu 1280" in link, link


def test_host_network_shows_the_hosts_interfaces(h):
    with open("/proc/net/dev") as f:
        host_ifaces = sorted(line.split(":")[0].strip() for line in f.read().splitlines()[2:])
    if host_ifaces == ["lo"]:
        pytest.skip("the host itself has only lo: --net host cannot be told from private")
    out = ok(run(h, "--net", "host", cmd=["cat", "/proc/net/dev"]))
    inside = sorted(line.split(":")[0].strip() for line in out.splitlines()[2:])
    assert inside == host_ifaces


# Older kernels, and container runtimes whose seccomp profile predates it,
# answer clone3 with ENOSYS: kennel then creates its processes with clone.
# The wrapper installs such a filter (no_new_privs, so one id: kennel-idmap's
# file capabilities would not apply) and proves it bites before exec'ing.
NO_CLONE3 = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def insn(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
LOAD, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, ERRNO, ENOSYS, CLONE3, X86_64 = 0x7FFF0000, 0x00050000, 38, 435, 0xC000003E
prog = b"".join([
    insn(LOAD, 4), insn(JEQ, X86_64, 1, 0), insn(RET, ALLOW),
    insn(LOAD, 0), insn(JEQ, CLONE3, 0, 1), insn(RET, ERRNO | ENOSYS), insn(RET, ALLOW),
])
code = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(code))
assert libc.prctl(38, 1, 0, 0, 0) == 0                       # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0     # PR_SET_SECCOMP, FILTER
assert libc.syscall(CLONE3, None, 0) == -1 and ctypes.get_errno() == ENOSYS
print("clone3: ENOSYS", flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.parametrize("init", [[], ["--init"]])
def test_runs_where_clone3_is_unavailable(h, init):
    script = "echo pid=$$; cat /proc/self/uid_map; ls /sys/class/net"
    argv = [sys.executable, "-c", NO_CLONE3, h.kennel, "run", "--userns=single", "--net=private", *init,
            "--rootfs", h.rootfs, "--", "sh", "-c", script]
    lines = ok(h.user.run(argv)).splitlines()
    assert lines[0] == "clone3: ENOSYS", lines
    # With --init, kennel's reaper is pid 1 and the command comes later.
    assert (lines[1] == "pid=1") == (not init), lines
    assert id_map(lines[2]) == [(0, h.user.uid, 1)], lines
    assert lines[3:] == ["lo"], lines


# --------------------------------------------------------------------------
# Process: environment, cwd, user, limits


def env_inside(out):
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_default_environment_is_clean(h):
    cp = kennel(h, "run", "--rootfs", h.rootfs, "--", "env", env={"LEAKME": "yes"})
    env = env_inside(ok(cp))
    assert "LEAKME" not in env and "XDG_RUNTIME_DIR" not in env and "USER" not in env
    assert env["container"] == "kennel"
    assert env["HOSTNAME"] == "kennel"
    assert env["HOME"] == "/root"
    assert "TERM" in env
    assert "/bin" in env["PATH"].split(":") and "/usr/bin" in env["PATH"].split(":")


def test_env_flags_and_env_file(h):
    d = h.tempdir()
    env_file = os.path.join(d, "vars")
    with open(env_file, "w") as f:
        f.write("# a comment\nFROMFILE=file value\nBOTH=from-file\n")
    os.chmod(env_file, 0o644)
    cp = kennel(h, "run", "--rootfs", h.rootfs, "-e", "FOO=bar baz", "-e", "COPIED",
                "--env-file", env_file, "-e", "BOTH=from-flag", "--", "env", env={"COPIED": "from-host"})
    env = env_inside(ok(cp))
    assert env["FOO"] == "bar baz"
    assert env["COPIED"] == "from-host"
    assert env["FROMFILE"] == "file value"
    assert "# a comment" not in cp.stdout
    assert env["BOTH"] == "from-flag"


def test_workdir(h):
    assert ok(run(h, "-w", "/etc", cmd=["pwd"])).strip() == "/etc"
    assert ok(run(h, cmd=["pwd"])).strip() == "/"


def test_user_by_number(h):
    out = ok(sh(h, "id -u; id -g; echo $HOME", "-u", "1000:1000"))
    assert out.split() == ["1000", "1000", "/home/user"]


def test_user_by_name(h):
    out = ok(sh(h, "id -u; id -g; echo $HOME", "-u", "user"))
    assert out.split() == ["1000", "1000", "/home/user"]
    assert ok(sh(h, "id -u; id -g", "-u", "nobody")).split() == ["65534", "65534"]


def test_ulimit_nofile(h):
    out = ok(sh(h, "ulimit -Sn; ulimit -Hn", "--ulimit", "nofile=100:200"))
    assert out.split() == ["100", "200"]


# --------------------------------------------------------------------------
# Capabilities and no_new_privs


def status(h, *flags):
    return caps(ok(run(h, *flags, cmd=["cat", "/proc/self/status"])))


def test_default_capabilities_and_no_new_privs(h):
    s = status(h)
    assert s["CapBnd"] == DEFAULT_CAPS
    assert s["CapPrm"] == DEFAULT_CAPS
    assert s["CapEff"] == DEFAULT_CAPS
    assert s["CapInh"] == 0
    assert s["CapAmb"] == 0
    assert s["NoNewPrivs"] == 1


def test_cap_add(h):
    s = status(h, "--cap-add", "SYS_ADMIN")
    for k in ["CapBnd", "CapPrm", "CapEff"]:
        assert s[k] == DEFAULT_CAPS | CAP_SYS_ADMIN, k
    assert s["CapInh"] == 0 and s["CapAmb"] == 0


def test_cap_drop(h):
    s = status(h, "--cap-drop", "NET_RAW")
    for k in ["CapBnd", "CapPrm", "CapEff"]:
        assert s[k] == DEFAULT_CAPS & ~(1 << 13), k


def test_cap_drop_all(h):
    s = status(h, "--cap-drop", "ALL")
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
        assert s[k] == 0, k
    assert s["NoNewPrivs"] == 1


def test_allow_new_privs(h):
    s = status(h, "--allow-new-privs")
    assert s["NoNewPrivs"] == 0
    assert s["CapEff"] == DEFAULT_CAPS


def test_non_root_user_has_no_effective_capabilities(h):
    s = status(h, "-u", "1000:1000")
    assert s["CapEff"] == 0 and s["CapPrm"] == 0
    assert s["CapInh"] == 0 and s["CapAmb"] == 0
    assert s["CapBnd"] == DEFAULT_CAPS
    assert s["NoNewPrivs"] == 1


# --------------------------------------------------------------------------
# File descriptors


def _with_fds(h, data_file, kennel_args):
    """Runs kennel as the user with fd 3 and fd 7 open on data_file."""
    script = 'exec 3<"$0" 7<"$0"; exec "$@"'
    return h.user.run(["sh", "-c", script, data_file, h.kennel, *kennel_args], timeout=20)


def _data_file(h):
    d = h.tempdir()
    path = os.path.join(d, "data")
    with open(path, "w") as f:
        f.write("secret-fd-content\n")
    os.chmod(path, 0o644)
    return path


def test_only_stdio_reaches_the_command(h):
    path = _data_file(h)
    cp = _with_fds(h, path, ["run", "--rootfs", h.rootfs, "--", "ls", "/proc/self/fd"])
    # 3 is the directory ls itself opened to list /proc/self/fd.
    assert sorted(ok(cp).split()) == ["0", "1", "2", "3"]
    cp = _with_fds(h, path, ["run", "--rootfs", h.rootfs, "--", "sh", "-c", "cat <&3; cat <&7"])
    assert "secret-fd-content" not in cp.stdout


def test_preserve_fds_passes_fd_3(h):
    path = _data_file(h)
    cp = _with_fds(h, path, ["run", "--rootfs", h.rootfs, "--preserve-fds", "1", "--", "ls", "/proc/self/fd"])
    assert sorted(ok(cp).split()) == ["0", "1", "2", "3", "4"]
    cp = _with_fds(h, path, ["run", "--rootfs", h.rootfs, "--preserve-fds", "1", "--", "sh", "-c", "cat <&3"])
    assert ok(cp) == "secret-fd-content\n"


# --------------------------------------------------------------------------
# Filesystem: volumes, read-only rootfs, tmpfs


def test_rw_volume_writes_reach_the_host(h):
    src = h.tempdir()
    with open(os.path.join(src, "from-host"), "w") as f:
        f.write("hello from host\n")
    out = ok(sh(h, "cat /data/from-host; echo written > /data/from-container", "-v", f"{src}:/data"))
    assert out == "hello from host\n"
    path = os.path.join(src, "from-container")
    with open(path) as f:
        assert f.read() == "written\n"
    # Container root is the caller on the host.
    assert os.stat(path).st_uid == h.user.uid


def test_ro_volume_refuses_writes(h):
    src = h.tempdir()
    with open(os.path.join(src, "from-host"), "w") as f:
        f.write("hello\n")
    cp = sh(h, "cat /data/from-host; echo x > /data/new && echo WROTE; rm /data/from-host && echo REMOVED; "
            "grep ' /data ' /proc/self/mountinfo", "-v", f"{src}:/data:ro")
    assert "hello" in cp.stdout
    assert "WROTE" not in cp.stdout and "REMOVED" not in cp.stdout
    assert " ro," in cp.stdout.splitlines()[-1] or " ro " in cp.stdout.splitlines()[-1], cp.stdout
    assert sorted(os.listdir(src)) == ["from-host"]


def test_volume_source_that_is_an_absolute_symlink_follows_the_host(h):
    # /etc/localtime is such a link, and distrobox binds it: an absolute
    # link must resolve as on the host, not in kennel's staging root.
    src = h.tempdir()
    real = os.path.join(src, "real")
    os.makedirs(os.path.join(real, "dir"))
    with open(os.path.join(real, "file"), "w") as f:
        f.write("the file\n")
    with open(os.path.join(real, "dir", "inside"), "w") as f:
        f.write("the dir\n")
    os.symlink(os.path.join(real, "file"), os.path.join(src, "file-link"))
    os.symlink(os.path.join(real, "dir"), os.path.join(src, "dir-link"))
    # A link whose target is absolute and then relative again.
    os.symlink("file-link", os.path.join(src, "link-to-link"))
    out = ok(sh(h, "cat /f /d/inside /g", "-v", f"{src}/file-link:/f:ro",
                "-v", f"{src}/dir-link:/d", "-v", f"{src}/link-to-link:/g"))
    assert out == "the file\nthe dir\nthe file\n"


def test_volume_source_that_is_a_dangling_symlink_names_it(h):
    src = h.tempdir()
    os.symlink("/nonexistent-kennel-target", os.path.join(src, "dangling"))
    cp = sh(h, "true", "-v", f"{src}/dangling:/d")
    assert cp.returncode != 0, describe(cp)
    assert "dangling" in cp.stderr or "nonexistent" in cp.stderr, describe(cp)


def test_volume_can_create_its_mount_point(h):
    rootfs = copy_rootfs(h)
    src = h.tempdir()
    out = ok(sh(h, "echo ok > /new/dir/file && cat /new/dir/file", "-v", f"{src}:/new/dir", rootfs=rootfs))
    assert out == "ok\n"
    assert os.path.exists(os.path.join(src, "file"))


def test_read_only_rootfs(h):
    rootfs = copy_rootfs(h)
    before = sorted(os.listdir(rootfs))
    cp = sh(h, "touch /new-file && echo ROOT-WRITABLE; touch /etc/new && echo ETC-WRITABLE; "
            "touch /tmp/ok && echo TMP-OK; touch /run/ok && echo RUN-OK", "--read-only", rootfs=rootfs)
    assert "ROOT-WRITABLE" not in cp.stdout and "ETC-WRITABLE" not in cp.stdout, describe(cp)
    assert "TMP-OK" in cp.stdout and "RUN-OK" in cp.stdout, describe(cp)
    assert sorted(os.listdir(rootfs)) == before
    assert not os.path.exists(os.path.join(rootfs, "etc", "new"))


def test_tmpfs_flag(h):
    rootfs = copy_rootfs(h)
    out = ok(sh(h, "echo scratch > /var/f; cat /var/f; grep ' /var ' /proc/self/mountinfo",
                "--tmpfs", "/var", rootfs=rootfs))
    lines = out.splitlines()
    assert lines[0] == "scratch"
    assert "tmpfs" in lines[1].split(" - ")[1]
    assert os.listdir(os.path.join(rootfs, "var")) == []


def test_rootfs_tmp_is_fresh_and_not_written_through(h):
    rootfs = copy_rootfs(h)
    ok(sh(h, "echo x > /tmp/inside", rootfs=rootfs))
    assert os.listdir(os.path.join(rootfs, "tmp")) == []


def test_dev_has_the_standard_nodes(h):
    out = ok(sh(h, "for d in null zero full random urandom tty ptmx shm mqueue pts; do test -e /dev/$d && echo $d; done; "
                "echo hi > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1"))
    for d in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "shm", "mqueue", "pts", "null-ok"]:
        assert d in out.split(), out
    assert "00 00 00 00" in out


def _mounts(mountinfo):
    """mount point -> (mount options, fs type, super options)."""
    out = {}
    for line in mountinfo.splitlines():
        left, right = line.split(" - ")
        f = left.split()
        out[f[4]] = (f[5].split(","), right.split()[0], right.split()[2].split(","))
    return out


def test_dev_pts_is_a_new_instance_and_sys_is_read_only(h):
    out = ok(sh(h, "readlink /dev/ptmx; cat /proc/self/mountinfo"))
    link, mountinfo = out.split("\n", 1)
    m = _mounts(mountinfo)
    assert link in ("pts/ptmx", "/dev/pts/ptmx"), link
    assert m["/dev/pts"][1] == "devpts"
    assert "ptmxmode=666" in m["/dev/pts"][2]
    assert m["/sys"][1] == "sysfs" and "ro" in m["/sys"][0]
    assert m["/dev/mqueue"][1] == "mqueue"
    assert m["/dev/shm"][1] == "tmpfs"
    assert m["/proc"][1] == "proc"


# --------------------------------------------------------------------------
# The embedded default: a sandbox built from the host


def _sandbox(h, *flags, cmd, cwd=None, **kw):
    return h.user.run([h.kennel, "run", *flags, "--", *cmd], cwd=cwd, timeout=20, **kw)


def test_default_sandbox_sees_host_usr_read_only(h):
    if not os.path.isdir(h.user.home):
        pytest.skip(f"{h.user.name} has no home directory")
    out = ok(_sandbox(h, cmd=["sh", "-c", "id -u; id -g; ls /usr/bin; echo --; cat /proc/self/mountinfo"]))
    head, mountinfo = out.split("--\n")
    lines = head.split()
    assert lines[:2] == [str(h.user.uid), str(h.user.gid)]
    assert set(os.listdir("/usr/bin")) <= set(lines[2:]) | {"kennel"}
    m = _mounts(mountinfo)
    for d in ["/usr", "/etc"]:
        assert d in m, mountinfo
        assert "ro" in m[d][0], (d, m[d])
    assert m["/tmp"][1] == "tmpfs"


def test_default_sandbox_binds_home_rw_and_keeps_cwd(h):
    home = h.user.home
    if not os.path.isdir(home):
        pytest.skip(f"{h.user.name} has no home directory")
    sub = os.path.join(home, "kennel-test-cwd")
    os.makedirs(sub, exist_ok=True)
    os.chown(sub, h.user.uid, h.user.gid)
    try:
        out = ok(_sandbox(h, cmd=["sh", "-c", "pwd; echo from-sandbox > written; echo $HOME"], cwd=sub))
        assert out.split() == [sub, home]
        with open(os.path.join(sub, "written")) as f:
            assert f.read() == "from-sandbox\n"
    finally:
        shutil.rmtree(sub)


def test_default_sandbox_no_home_hides_it(h):
    home = h.user.home
    if not os.path.isdir(home):
        pytest.skip(f"{h.user.name} has no home directory")
    marker = os.path.join(home, "kennel-home-marker")
    with open(marker, "w") as f:
        f.write("m\n")
    os.chown(marker, h.user.uid, h.user.gid)
    try:
        assert ok(_sandbox(h, cmd=["cat", marker])) == "m\n"
        cp = _sandbox(h, "--no-home", cmd=["sh", "-c", f"cat {marker} || echo HIDDEN"])
        assert "HIDDEN" in cp.stdout and "m\n" not in cp.stdout, describe(cp)
    finally:
        os.unlink(marker)


def test_default_sandbox_has_a_fresh_tmp(h):
    marker = os.path.join("/tmp", f"kennel-host-tmp-{os.getpid()}")
    with open(marker, "w") as f:
        f.write("x")
    os.chmod(marker, 0o644)
    try:
        cp = _sandbox(h, cmd=["sh", "-c", f"test -e {marker} && echo VISIBLE; echo ran"])
        assert ok(cp).split() == ["ran"]
    finally:
        os.unlink(marker)


# --------------------------------------------------------------------------
# Terminal


def _set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd, proc, needle, timeout=10):
    """Reads the pty master until needle appears or the process ends."""
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        elif proc.poll() is not None:
            # Drain what is left.
            try:
                while True:
                    r, _, _ = select.select([fd], [], [], 0.1)
                    if not r:
                        break
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break
                    buf += chunk
            except OSError:
                pass
            break
    return buf


def _spawn_on_pty(h, kennel_args, rows=33, cols=111):
    master, slave = os.openpty()
    _set_winsize(slave, rows, cols)

    def make_ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = h.user.popen([h.kennel, *kennel_args], stdin=slave, stdout=slave, stderr=slave,
                        start_new_session=True, preexec_fn=make_ctty, text=False)
    return proc, master, slave


def _run_on_pty(h, kennel_args, until):
    """Runs kennel on a fresh pty until `until` shows and kennel exits:
    (exit code, output lines, whether the pty's settings are as before)."""
    proc, master, slave = _spawn_on_pty(h, kennel_args)
    before = termios.tcgetattr(slave)
    try:
        out = _read_until(master, proc, until)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    restored = termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)
    return proc.returncode, [l.strip() for l in out.decode(errors="replace").splitlines()], restored


def test_tty_gives_a_pts_with_the_callers_window_size(h):
    code, lines, restored = _run_on_pty(
        h, ["run", "--rootfs", h.rootfs, "-t", "--", "sh", "-c", "tty; stty size; echo DONE"], b"DONE\r\n")
    assert code == 0, lines
    assert any(l.startswith("/dev/pts/") for l in lines), lines
    assert "33 111" in lines, lines
    # The runner's terminal is restored when it exits.
    assert restored


def test_exec_tty_gives_a_pts_in_the_running_container(h, containers):
    containers.start("extty")
    code, lines, restored = _run_on_pty(
        h, ["exec", "-t", "extty", "--", "sh", "-c",
            "tty; stty size; tr '\\0' ' ' < /proc/1/cmdline; echo; echo DONE"], b"DONE\r\n")
    assert code == 0, lines
    assert any(l.startswith("/dev/pts/") for l in lines), lines
    assert "33 111" in lines, lines
    assert "sleep 30" in lines, lines  # the container's own PID 1: same pid namespace
    assert restored


def test_tty_forwards_window_size_changes(h):
    proc, master, slave = _spawn_on_pty(h, ["run", "--rootfs", h.rootfs, "-t", "--", "sh", "-c",
                                            "stty size; echo READY; read line; stty size; echo DONE"])
    try:
        out = _read_until(master, proc, b"READY")
        assert b"33 111" in out, out
        _set_winsize(master, 44, 99)
        # The kernel sends SIGWINCH to the foreground group; send it too in
        # case the runner is not in it. Give the relay a moment to copy it.
        os.kill(proc.pid, 28)
        time.sleep(0.3)
        os.write(master, b"go\r")
        out = _read_until(master, proc, b"DONE")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"44 99" in out, out
    os.close(master)
    os.close(slave)


def test_tty_terminal_is_restored_when_the_command_cannot_start(h):
    code, _, restored = _run_on_pty(h, ["run", "--rootfs", h.rootfs, "-t", "--", "no-such-command"], b"\0never")
    assert code == 127
    assert restored


def test_without_tty_stdio_is_passed_through(h):
    cp = run(h, cmd=["sh", "-c", "cat; tty; echo err >&2"], input="piped input\n")
    assert cp.stdout.splitlines()[0] == "piped input"
    assert "not a tty" in cp.stdout
    assert cp.stderr == "err\n"
