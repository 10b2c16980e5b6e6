"""Bad input: Docker's exit codes (125 kennel's own failure, 126 cannot
execute, 127 not found), one clear `kennel: ...` line naming what is wrong,
and nothing left behind: the rootfs copy is byte-for-byte as it was, no
named-container record remains, the command never ran.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import SUBID_COUNT
from probe import containers, copy_rootfs, describe, kennel, ps_json, ps_names, run, sh, state_dir, tree  # noqa: F401

RAN = "COMMAND-RAN"


@pytest.fixture
def rootfs(h):
    """A private rootfs copy, checked unchanged after the test, and the
    user's record directory, checked to gain no entry."""
    path = copy_rootfs(h)
    before = tree(path)
    records = os.path.join(h.user.runtime_dir, "kennel")
    records_before = sorted(os.listdir(records)) if os.path.isdir(records) else []
    yield path
    after = tree(path)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert changed == [], f"the failed run changed the rootfs: {changed}"
    records_after = sorted(os.listdir(records)) if os.path.isdir(records) else []
    assert records_after == records_before, "a failed run left a container record behind"


def one_kennel_line(cp):
    """The error output: exactly one line, starting with `kennel: `."""
    lines = cp.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kennel: "), f"not one `kennel:` line:\n{cp.stderr}"
    return lines[0]


def fails(cp, code):
    assert cp.returncode == code, describe(cp)
    assert RAN not in cp.stdout, "the command ran despite the error"
    return one_kennel_line(cp)


def attempt(h, rootfs, *flags, cmd=("sh", "-c", f"echo {RAN}"), **kw):
    return run(h, *flags, cmd=list(cmd), rootfs=rootfs, **kw)


# --------------------------------------------------------------------------
# 125: kennel's own failures


def test_rootfs_that_does_not_exist(h, rootfs):
    missing = os.path.join(h.tempdir(), "no-such-rootfs")
    line = fails(attempt(h, missing, "--name", "bad-rootfs"), 125)
    assert missing in line
    assert not os.path.lexists(missing), "kennel created the missing rootfs"
    assert not os.path.exists(state_dir(h.user, "bad-rootfs"))


def test_a_missing_mount_point_in_a_foreign_rootfs_names_the_users_path(h):
    """A root-owned rootfs (a debootstrap run with sudo) without /run: the
    error names ROOTFS/run, not kennel's staging path, and what to do."""
    foreign = copy_rootfs(h)
    shutil.rmtree(os.path.join(foreign, "run"))
    subprocess.run(["chown", "-R", "0:0", foreign], check=True)
    before = tree(foreign)
    line = fails(attempt(h, foreign, "--net=private"), 125)
    theirs = os.path.join(foreign, "run")
    assert line.startswith(f"kennel: mount /run failed: Permission denied ({theirs} does not exist"), line
    assert f"mkdir -p {theirs}" in line and "docs/run.md" in line, line
    assert "newroot" not in line
    assert tree(foreign) == before


# Sets a namespace limit to 0 in a user namespace of its own (its owner may),
# then execs kennel there: creating that namespace fails in the container.
NAMESPACE_LIMIT = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
uid, gid = os.getuid(), os.getgid()
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
open("/proc/self/setgroups", "w").write("deny")
open("/proc/self/uid_map", "w").write(f"{uid} {uid} 1")
open("/proc/self/gid_map", "w").write(f"{gid} {gid} 1")
open(f"/proc/sys/user/max_{sys.argv[1]}_namespaces", "w").write("0")
os.execv(sys.argv[2], sys.argv[2:])
'''


@pytest.mark.parametrize("ns", ["ipc", "net", "mnt"])
def test_namespace_limit_reached(h, rootfs, ns):
    """The child fails to create a namespace before its maps are written:
    the error names the namespace and the limit, not the maps."""
    argv = [sys.executable, "-c", NAMESPACE_LIMIT, ns, h.kennel, "run", "--userns=single",
            "--rootfs", rootfs, "--", "sh", "-c", f"echo {RAN}"]
    line = fails(h.user.run(argv, timeout=20), 125)
    assert f"creating the container's {ns} namespace failed" in line
    assert f"user.max_{ns}_namespaces" in line and "No space left on device" in line


def test_rootfs_that_is_a_file(h, rootfs):
    path = os.path.join(h.tempdir(), "a-file")
    with open(path, "w") as f:
        f.write("not a directory\n")
    line = fails(attempt(h, path), 125)
    assert path in line


@pytest.mark.parametrize("target", ["host-dir", "relative"])
def test_proc_in_the_rootfs_is_a_symlink(h, target):
    path = copy_rootfs(h)
    decoy = h.tempdir()
    os.rmdir(os.path.join(path, "proc"))
    link = decoy if target == "host-dir" else "tmp"
    os.symlink(link, os.path.join(path, "proc"))
    os.lchown(os.path.join(path, "proc"), h.user.uid, h.user.gid)
    before = tree(path)
    line = fails(attempt(h, path, "--name", "bad-proc"), 125)
    assert "/proc" in line or "proc" in line.split(), line
    assert "symlink" in line or "symbolic link" in line, line
    assert tree(path) == before
    assert os.listdir(decoy) == []
    assert not os.path.exists(state_dir(h.user, "bad-proc"))


def test_unknown_user(h, rootfs):
    line = fails(attempt(h, rootfs, "-u", "no-such-user", "--name", "bad-user"), 125)
    assert "no-such-user" in line
    assert not os.path.exists(state_dir(h.user, "bad-user"))


def test_unknown_group(h, rootfs):
    line = fails(attempt(h, rootfs, "-u", "1000:no-such-group"), 125)
    assert "no-such-group" in line


def test_uid_not_mapped(h, rootfs):
    line = fails(attempt(h, rootfs, "-u", "5000", "--userns", "single"), 125)
    assert "5000" in line
    assert "not mapped" in line


def bundle_with_maps(h, rootfs):
    """An OCI bundle whose own maps need kennel-idmap: the caller as 0 and
    their subordinate range above it."""
    u = h.user

    def maps(own):
        return [{"containerID": 0, "hostID": own, "size": 1},
                {"containerID": 1, "hostID": u.subid_start, "size": SUBID_COUNT}]

    config = {
        "ociVersion": "1.0.2",
        "root": {"path": rootfs},
        "process": {"args": ["sh", "-c", f"echo {RAN}"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "namespaces": [{"type": t} for t in ["user", "mount", "pid"]],
            "uidMappings": maps(u.uid),
            "gidMappings": maps(u.gid),
        },
    }
    bundle = h.tempdir()
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


@pytest.mark.parametrize("source", ["--userns=subids", "bundle"])
def test_helper_without_capabilities_is_named_in_a_sentence(h, rootfs, source):
    """Both callers of the helper check, the --userns plan and a bundle's
    own maps, get a grammatical line (it once read "these id maps needs")
    that names the helper and the setcap fix."""
    d = h.tempdir()
    kennel_copy, helper = os.path.join(d, "kennel"), os.path.join(d, "kennel-idmap")
    shutil.copy(h.kennel, kennel_copy)
    shutil.copy(h.idmap, helper)  # without its file capabilities
    os.chmod(kennel_copy, 0o755)
    os.chmod(helper, 0o755)
    if source == "bundle":
        argv = [kennel_copy, "run", "--bundle", bundle_with_maps(h, rootfs)]
        what = "these id maps"
    else:
        argv = [kennel_copy, "run", "--userns=subids", "--rootfs", rootfs, "--", "sh", "-c", f"echo {RAN}"]
        what = "--userns=subids"
    line = fails(h.user.run(argv, timeout=20), 125)
    assert f"kennel-idmap's file capabilities are needed for {what}, but {helper} has none" in line
    assert f"sudo setcap cap_setuid,cap_setgid=ep {helper}" in line


def test_volume_source_that_does_not_exist(h, rootfs):
    missing = os.path.join(h.tempdir(), "no-such-source")
    line = fails(attempt(h, rootfs, "-v", f"{missing}:/data", "--name", "bad-vol"), 125)
    assert missing in line
    assert not os.path.lexists(missing), "kennel created the missing volume source"
    assert not os.path.exists(state_dir(h.user, "bad-vol"))


def test_env_file_that_does_not_exist(h, rootfs):
    missing = os.path.join(h.tempdir(), "no-such-env-file")
    line = fails(attempt(h, rootfs, "--env-file", missing), 125)
    assert missing in line


def test_preserve_fds_that_are_not_open(h, rootfs):
    line = fails(attempt(h, rootfs, "--preserve-fds", "2"), 125)
    assert "--preserve-fds" in line


def test_relative_workdir(h, rootfs):
    line = fails(attempt(h, rootfs, "-w", "relative/dir"), 125)
    assert "relative/dir" in line


def test_no_command(h, rootfs):
    cp = kennel(h, "run", "--rootfs", rootfs)
    fails(cp, 125)


def test_duplicate_name(h, containers):
    proc = containers.start("dup1")
    with open(os.path.join(state_dir(h.user, "dup1"), "state.json")) as f:
        record = f.read()
    cp = sh(h, f"echo {RAN}", "--name", "dup1")
    line = fails(cp, 125)
    assert "dup1" in line
    # The first container is untouched: still running, still recorded once.
    assert proc.poll() is None
    assert ps_names(h).count("dup1") == 1
    with open(os.path.join(state_dir(h.user, "dup1"), "state.json")) as f:
        assert f.read() == record


def test_name_that_is_not_a_name(h, rootfs):
    line = fails(attempt(h, rootfs, "--name", "../escape"), 125)
    assert "../escape" in line
    assert not os.path.exists(os.path.join(h.user.runtime_dir, "escape"))


MALFORMED = [
    (["--ulimit", "bogus"], "bogus"),
    (["--ulimit", "nofile=abc"], "nofile=abc"),
    (["--ulimit", "nosuchlimit=1:2"], "nosuchlimit"),
    (["-v", "nocolon"], "nocolon"),
    (["-v", "/tmp:relative"], "relative"),
    (["--cap-add", "NOTACAP"], "NOTACAP"),
    (["--cap-drop", "NOTACAP"], "NOTACAP"),
    (["--userns", "bogus"], "bogus"),
    (["--net", "bogus"], "bogus"),
    (["--preserve-fds", "many"], "many"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("flag", ["--cap-add", "--cap-drop"])
def test_an_unknown_capability_is_named_with_where_to_look(h, rootfs, flag):
    line = fails(attempt(h, rootfs, flag, "BOGUS"), 125)
    assert line.startswith(f"kennel: {flag} BOGUS: unknown capability CAP_BOGUS; see capabilities(7)"), line
    assert "variant" not in line and "converted" not in line, line


@pytest.mark.parametrize("flags,bad", MALFORMED, ids=[" ".join(f) for f, _ in MALFORMED])
def test_malformed_flag_exits_125_naming_it(h, rootfs, flags, bad):
    cp = attempt(h, rootfs, *flags)
    assert cp.returncode == 125, describe(cp)
    assert RAN not in cp.stdout
    assert bad in cp.stderr, cp.stderr


@pytest.mark.parametrize("flags,bad", MALFORMED, ids=[" ".join(f) for f, _ in MALFORMED])
def test_malformed_flag_error_is_one_kennel_line(h, rootfs, flags, bad):
    line = fails(attempt(h, rootfs, *flags), 125)
    assert bad in line


def test_unknown_subcommand(h):
    cp = kennel(h, "no-such-subcommand")
    assert cp.returncode == 125, describe(cp)
    assert "no-such-subcommand" in cp.stderr


# --------------------------------------------------------------------------
# 127 and 126: the command


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
def test_command_not_found(h, rootfs, init):
    flags = ["--init"] if init else []
    line = fails(attempt(h, rootfs, *flags, "--name", "bad-cmd", cmd=["no-such-command", "arg"]), 127)
    assert "no-such-command" in line
    assert not os.path.exists(state_dir(h.user, "bad-cmd"))


def test_command_path_not_found(h, rootfs):
    line = fails(attempt(h, rootfs, cmd=["/no/such/command"]), 127)
    assert "/no/such/command" in line


def test_a_command_on_path_that_is_a_symlink_loop_is_named_not_called_missing(h):
    """A busybox tree whose program was linked over itself: the name is on
    PATH but cannot be reached, which is what the message says."""
    looped = copy_rootfs(h)
    os.symlink("looped", os.path.join(looped, "bin", "looped"))
    line = fails(attempt(h, looped, cmd=["looped"]), 126)
    assert '"/bin/looped"' in line and "symbolic links" in line, line
    assert "not found" not in line, line


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
def test_command_not_executable(h, rootfs, init):
    flags = ["--init"] if init else []
    line = fails(attempt(h, rootfs, *flags, cmd=["/bin/not-executable"]), 126)
    assert "/bin/not-executable" in line


def test_command_is_a_directory(h, rootfs):
    line = fails(attempt(h, rootfs, cmd=["/etc"]), 126)
    assert "/etc" in line


def test_commands_own_126_and_127_are_its_own(h, rootfs):
    # The same codes from the command itself come through unchanged and
    # without a kennel message.
    for code in [125, 126, 127]:
        cp = attempt(h, rootfs, cmd=["sh", "-c", f"exit {code}"])
        assert cp.returncode == code, describe(cp)
        assert "kennel:" not in cp.stderr
