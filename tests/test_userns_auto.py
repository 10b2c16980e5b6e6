"""What `--userns=auto` (and keep-id) give a user when the full map is
not available, and what they say about it: a container with a single id
is announced once on stderr with the way to get more, unless
`--userns=single` asked for exactly that."""

import re

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
