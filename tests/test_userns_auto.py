"""What `--userns=auto` (and keep-id) give a user when the full map is
not available, and what they say about it: a container with a single id
is announced once on stderr with the way to get more, unless
`--userns=single` asked for exactly that."""

import os
import re

import pytest

import conftest
from probe import describe, id_map, kennel, sh

MAPS = "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map"
# The harness's rootfs belongs to another user: pasta's /etc/resolv.conf
# mount point could not be made in it by this one.
NET = "--net=private"


def _maps(out):
    uid_text, gid_text = out.split("--\n")
    return id_map(uid_text), id_map(gid_text)


def _kennel_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("kennel: ")]


def test_a_user_without_subordinate_ids_is_told_once_how_to_get_them(h):
    u = h.nosub
    cp = sh(h, MAPS, NET, user=u)
    assert cp.returncode == 0, describe(cp)
    assert _maps(cp.stdout) == ([(0, u.uid, 1)], [(0, u.gid, 1)])
    [line] = _kennel_lines(cp.stderr)
    assert cp.stderr == line + "\n", cp.stderr
    assert f"single id ({u.uid} -> 0)" in line, line
    assert "apt-get" in line, line
    # The fix names a free block, the same one `kennel doctor` suggests.
    m = re.search(rf"sudo usermod --add-subuids (\d+-\d+) --add-subgids (\d+-\d+) {u.name}", line)
    assert m, line
    doc = kennel(h, "doctor", user=u, timeout=30)
    assert f"--add-subuids {m.group(1)}" in doc.stdout, doc.stdout


def test_the_host_sandbox_says_it_too(h):
    u = h.nosub
    cp = kennel(h, "run", "--", "id", "-u", user=u)
    assert cp.returncode == 0 and cp.stdout == f"{u.uid}\n", describe(cp)
    [line] = _kennel_lines(cp.stderr)
    assert f"single id ({u.uid} -> {u.uid})" in line, line


def test_asking_for_a_single_id_says_nothing(h):
    u = h.nosub
    cp = sh(h, MAPS, NET, "--userns=single", user=u)
    assert cp.returncode == 0, describe(cp)
    assert _maps(cp.stdout) == ([(0, u.uid, 1)], [(0, u.gid, 1)])
    assert cp.stderr == "", cp.stderr


def test_the_full_map_says_nothing(h):
    cp = sh(h, "true")
    assert cp.returncode == 0 and cp.stderr == "", describe(cp)


@pytest.fixture
def nosuid_kennel(h):
    """kennel and a kennel-idmap with its capabilities, on a tmpfs mounted
    nosuid (the kernel then ignores the capabilities)."""
    names = ["kennel", "kennel-idmap"]
    with conftest.nosuid_copies(h, [os.path.join(h.bindir, n) for n in names],
                                {"kennel-idmap": "cap_setuid,cap_setgid=ep"}) as paths:
        yield paths["kennel"], paths["kennel-idmap"]


def test_a_helper_on_a_nosuid_mount_is_named_and_auto_falls_back(h, nosuid_kennel):
    kennel_bin, helper = nosuid_kennel
    u = h.user
    doc = u.run([kennel_bin, "doctor"], timeout=30)
    line = next(l for l in doc.stdout.splitlines() if "kennel-idmap helper:" in l)
    assert line.startswith("warn") and "mounted nosuid" in line, doc.stdout
    # auto means the best available: one id, said once, with the cause.
    cp = u.run([kennel_bin, "run", "--rootfs", h.rootfs, NET, "--", "sh", "-c", MAPS], timeout=20)
    assert cp.returncode == 0, describe(cp)
    assert _maps(cp.stdout) == ([(0, u.uid, 1)], [(0, u.gid, 1)])
    [warning] = _kennel_lines(cp.stderr)
    assert "single id" in warning and f"{helper} is on a file system mounted nosuid" in warning, warning
    # Asked for explicitly, the full map is an error naming the cause.
    cp = u.run([kennel_bin, "run", "--rootfs", h.rootfs, NET, "--userns=subids", "--", "echo", "RAN"], timeout=20)
    assert cp.returncode == 125 and "RAN" not in cp.stdout, describe(cp)
    assert "mounted nosuid" in cp.stderr and "setcap" not in cp.stderr, cp.stderr
    # The helper, run by hand, says the same instead of "run sudo setcap".
    cp = u.run([helper, "1", "--uid", f"0:{u.uid}:1"], timeout=10)
    assert cp.returncode == 1, describe(cp)
    assert "mounted nosuid" in cp.stderr and "setcap" not in cp.stderr, cp.stderr


def test_no_new_privs_makes_auto_fall_back_with_the_cause(h):
    u = h.user
    cp = u.run([h.kennel, "run", "--rootfs", h.rootfs, NET, "--", "sh", "-c", MAPS], no_new_privs=True, timeout=20)
    assert cp.returncode == 0, describe(cp)
    assert _maps(cp.stdout) == ([(0, u.uid, 1)], [(0, u.gid, 1)])
    [warning] = _kennel_lines(cp.stderr)
    assert "single id" in warning and "no_new_privs" in warning, warning
    cp = u.run([h.kennel, "run", "--rootfs", h.rootfs, NET, "--userns=subids", "--", "true"], no_new_privs=True, timeout=20)
    assert cp.returncode == 125 and "no_new_privs" in cp.stderr, describe(cp)


# A user of this module's own, so the ranges it is given for a test never
# change what the harness's users get in tests running beside it.
RANGES_USER = "kennel-ranges"


def test_auto_maps_every_subordinate_range_uids_and_gids_apart(h):
    pw = conftest._ensure_user(RANGES_USER)
    user = conftest.TestUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, None)
    # Its runtime files go where the harness cleans up.
    runtime = h.tempdir(owner=user, mode=0o700)
    user.runtime_dir = runtime
    for path in ["/etc/subuid", "/etc/subgid"]:
        conftest._drop_subid(path, user.name)
    base = conftest.UNUSED_SUBID_START
    uid_lines = [f"{user.name}:{base}:1000", f"{user.name}:{base + 5000}:2000"]
    gid_lines = [f"{user.name}:{base + 10000}:3000", f"{user.name}:{base + 20000}:500"]
    # Ids from the second range of each are usable inside: the kernel
    # refuses chown to an unmapped id.
    script = MAPS + "; touch /tmp/f && chown 2500:3200 /tmp/f && stat -c %u:%g /tmp/f"
    with conftest.subid_lines_added(uid_lines, files=["/etc/subuid"]), \
            conftest.subid_lines_added(gid_lines, files=["/etc/subgid"]):
        cp = user.run([h.kennel, "run", "--rootfs", h.rootfs, NET, "--", "sh", "-c", script], timeout=20)
    assert cp.returncode == 0, describe(cp)
    maps, owner = cp.stdout.rsplit("\n", 2)[0:2]
    assert _maps(maps + "\n") == (
        [(0, user.uid, 1), (1, base, 1000), (1001, base + 5000, 2000)],
        [(0, user.gid, 1), (1, base + 10000, 3000), (3001, base + 20000, 500)],
    )
    assert owner == "2500:3200"
    assert cp.stderr == "", cp.stderr
