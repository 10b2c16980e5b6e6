"""`kennel doctor` on a healthy setup and on each kind of broken one.

Each broken case must print FAIL (or warn) with the cause and the exact fix
command, and a failing check must make doctor exit non-zero."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, SUBID_COUNT, _drop_subid, first_free_block, overlaps, read_subids, subid_lines_added


def doctor(user, kennel, **kw):
    return user.run([kennel, "doctor"], **kw)


def check_line(out, name):
    for line in out.splitlines():
        if line.split()[1:2] and line.split(None, 1)[1].startswith(name + ":"):
            return line
    raise AssertionError(f"no check named {name!r} in:\n{out}")


def test_healthy_setup_passes_every_check(h):
    r = doctor(h.user, h.kennel)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout
    assert check_line(r.stdout, "user namespace").startswith("ok")
    first = h.user.subid_start
    assert f"{first}..{first + 65535} (65536 ids)" in check_line(r.stdout, "subordinate uids")
    assert "cap_setuid,cap_setgid=ep" in check_line(r.stdout, "kennel-idmap helper")
    warnings = sum(1 for line in r.stdout.splitlines() if line.startswith("warn "))
    last = r.stdout.rstrip().splitlines()[-1]
    if warnings:
        assert last == f"no check failed: containers can start ({warnings} warning(s) above: what is limited here, " \
            "and the fix)", r.stdout
    else:
        assert last == "all checks passed", r.stdout


def test_helper_without_capabilities_fails_with_setcap_fix(h):
    d = h.tempdir(owner=h.user)
    os.chmod(d, 0o755)
    kennel = os.path.join(d, "kennel")
    helper = os.path.join(d, "kennel-idmap")
    shutil.copy(h.kennel, kennel)
    shutil.copy(h.idmap, helper)  # shutil.copy does not carry file capabilities
    os.chmod(kennel, 0o755)
    os.chmod(helper, 0o755)
    r = doctor(h.user, kennel)
    assert r.returncode == 1, r.stdout
    line_at = r.stdout.index("FAIL  kennel-idmap helper")
    block = r.stdout[line_at:]
    assert f"fix: sudo setcap cap_setuid,cap_setgid=ep {helper}" in block


def test_setuid_helper_fails_with_chmod_fix(h):
    d = h.tempdir(owner=h.user)
    kennel = os.path.join(d, "kennel")
    helper = os.path.join(d, "kennel-idmap")
    shutil.copy(h.kennel, kennel)
    shutil.copy(h.idmap, helper)
    os.chown(helper, 0, 0)
    os.chmod(helper, 0o4755)
    os.chmod(kennel, 0o755)
    r = doctor(h.user, kennel)
    assert r.returncode == 1
    assert f"fix: sudo chmod u-s {helper}" in r.stdout


def suggested_blocks(text, user):
    """Every usermod fix in `text`, as ((uid first, last), (gid first, last))."""
    fix = re.compile(r"sudo usermod --add-subuids (\d+)-(\d+) --add-subgids (\d+)-(\d+) (\S+)")
    found = []
    for m in fix.finditer(text):
        assert m.group(5) == user, m.group(0)
        n = [int(g) for g in m.groups()[:4]]
        found.append(((n[0], n[1]), (n[2], n[3])))
    assert found, f"no usermod fix in:\n{text}"
    return found


def assert_free_in_both_files(block):
    """`block` ((first, last)) overlaps no entry of /etc/subuid or /etc/subgid."""
    first, last = block
    assert last - first + 1 == SUBID_COUNT, block
    for path in ["/etc/subuid", "/etc/subgid"]:
        for owner, start, count in read_subids(path):
            assert not overlaps(first, SUBID_COUNT, start, count), \
                f"suggested {first}-{last} overlaps {owner}:{start}:{count} in {path}"


@pytest.fixture
def crowded_subids(h):
    """Other users' entries the old fixed advice (100000-165535) collided
    with: Debian's useradd gives its first user exactly 100000:65536. And
    one just above the first free block, so that block is a gap below
    someone's range, not the space above every range. Yields that block
    as (first, last); the lines are removed afterwards."""
    debian_first = "kennel-test-first:100000:65536"
    taken = [(s, c) for path in ["/etc/subuid", "/etc/subgid"] for _, s, c in read_subids(path)]
    free = first_free_block(taken + [(100000, 65536)])
    if free is None:
        pytest.skip("no free block of subordinate ids is left on this machine")
    with subid_lines_added([debian_first, f"kennel-test-later:{free + SUBID_COUNT}:{SUBID_COUNT}"]):
        yield (free, free + SUBID_COUNT - 1)


def test_user_without_subordinate_ids_gets_usermod_fix(h, crowded_subids):
    r = doctor(h.nosub, h.kennel)
    line = check_line(r.stdout, "subordinate ids")
    assert line.startswith("warn") and "/etc/subuid nor in /etc/subgid" in line, r.stdout
    # One usermod for both files, printed once.
    assert r.stdout.count("usermod") == 1, r.stdout
    [(uids, gids)] = suggested_blocks(r.stdout, h.nosub.name)
    # One block for both files, used by nobody, the lowest such.
    assert uids == gids
    assert_free_in_both_files(uids)
    assert uids == crowded_subids


def test_subids_error_suggests_a_free_block(h, crowded_subids):
    r = h.nosub.run([h.kennel, "run", "--userns=subids", "--rootfs", h.rootfs, "--", "true"])
    assert r.returncode == 125, r.stderr
    assert "has no entry in /etc/subuid" in r.stderr
    [(uids, gids)] = suggested_blocks(r.stderr, h.nosub.name)
    assert uids == gids
    assert_free_in_both_files(uids)
    assert uids == crowded_subids


def test_make_install_gives_the_block_doctor_suggests(h, crowded_subids):
    """packaging/ensure-subids.sh, which `make install` runs for the user,
    adds the very block doctor suggested, in both files; doctor is then
    content."""
    script = os.path.join(REPO, "packaging", "ensure-subids.sh")
    try:
        r = subprocess.run(["sh", script, h.nosub.name], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        first, last = crowded_subids
        for path in ["/etc/subuid", "/etc/subgid"]:
            assert [(s, c) for o, s, c in read_subids(path) if o == h.nosub.name] == [(first, SUBID_COUNT)]
            assert f"added {h.nosub.name}:{first}:{SUBID_COUNT} to {path}" in r.stdout
        after = doctor(h.nosub, h.kennel)
        assert check_line(after.stdout, "subordinate uids").startswith("ok"), after.stdout
        assert f"{first}..{last}" in check_line(after.stdout, "subordinate gids")
        # Run again, it leaves the entries alone.
        again = subprocess.run(["sh", script, h.nosub.name], capture_output=True, text=True, timeout=30)
        assert again.returncode == 0 and again.stdout == "", again.stdout + again.stderr
        assert [o for o, _, _ in read_subids("/etc/subuid")].count(h.nosub.name) == 1
    finally:
        for path in ["/etc/subuid", "/etc/subgid"]:
            _drop_subid(path, h.nosub.name)


def test_no_new_privs_is_reported(h):
    r = h.user.run([h.kennel, "doctor"], no_new_privs=True)
    assert r.returncode == 1
    assert check_line(r.stdout, "no_new_privs").startswith("FAIL")
    assert "file capabilities" in r.stdout


def test_an_unwritable_runtime_dir_is_a_warning_with_a_fix(h):
    """Only --name, ps and exec need it: a warning, not a failure."""
    missing = os.path.join(h.tempdir(), "gone")
    r = doctor(h.user, h.kennel, env={"XDG_RUNTIME_DIR": missing})
    line = check_line(r.stdout, "runtime directory")
    assert line.startswith("warn") and "--name, ps and exec" in line, r.stdout
    assert f"unset XDG_RUNTIME_DIR (kennel then uses /tmp/kennel-run-{h.user.uid})" in r.stdout
    assert "will not start" not in r.stdout


def test_user_namespaces_disabled_by_sysctl(h):
    path = "/proc/sys/user/max_user_namespaces"
    try:
        with open(path) as f:
            old = f.read().strip()
        with open(path, "w") as f:
            f.write("0")
    except OSError as e:
        pytest.skip(f"cannot change {path} here: {e}")
    try:
        r = doctor(h.user, h.kennel)
        run = h.user.run([h.kennel, "run", "--rootfs", h.rootfs, "--", "true"])
    finally:
        with open(path, "w") as f:
            f.write(old)
    assert r.returncode == 1
    assert check_line(r.stdout, "user.max_user_namespaces").startswith("FAIL")
    assert "sudo sysctl -w user.max_user_namespaces=" in r.stdout
    assert check_line(r.stdout, "user namespace").startswith("FAIL")
    # And kennel run itself says what to do.
    assert run.returncode == 125
    assert "kennel doctor" in run.stderr


def test_no_systemd_hint_on_a_host_without_systemd(h):
    """Hints naming systemd's boot options cannot help where systemd is
    not init: neither doctor nor a limit that needs cgroup v2 gives one."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd is this host's init: its hints apply here")
    if _is_cgroup2("/sys/fs/cgroup"):
        pytest.skip("cgroup v2 is mounted at /sys/fs/cgroup: no hint about getting it")
    r = doctor(h.user, h.kennel)
    line = check_line(r.stdout, "cgroup v2")
    block = r.stdout[r.stdout.index(line):].split("\n")[1]
    assert "systemd" not in line + block and "mount cgroup2" in block, r.stdout
    run = h.user.run([h.kennel, "run", "--memory", "64M", "--rootfs", h.rootfs, "--net=private", "--", "true"])
    assert run.returncode == 125, run.stderr
    assert "systemd" not in run.stderr and "mount cgroup2 at /sys/fs/cgroup" in run.stderr, run.stderr


def _is_cgroup2(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == path and " - cgroup2 " in l for l in f)
