"""A user without XDG_RUNTIME_DIR (after `su -`, in cron, over some ssh
set-ups) and without a login manager's /run/user/UID: kennel falls back,
as podman does, to a private /tmp/kennel-run-UID, and refuses one that
someone else made or left open."""

import os
import shutil
import stat
import subprocess

import pytest

import conftest
from probe import describe, wait_until

# A user of this module's own: the harness's users have /run/user/UID.
NOXDG_USER = "kennel-noxdg"


@pytest.fixture(scope="module")
def noxdg(h):
    pw = conftest._ensure_user(NOXDG_USER)
    if os.path.exists(f"/run/user/{pw.pw_uid}"):
        pytest.skip(f"/run/user/{pw.pw_uid} exists, so the /tmp fallback is not what kennel would use")
    user = conftest.TestUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, None)
    fallback = f"/tmp/kennel-run-{user.uid}"
    shutil.rmtree(fallback, ignore_errors=True)
    yield user, fallback
    shutil.rmtree(fallback, ignore_errors=True)


def test_named_containers_ps_and_exec_work_without_xdg_runtime_dir(h, noxdg):
    user, fallback = noxdg
    name = f"noxdg-{os.getpid()}"
    proc = user.popen([h.kennel, "run", "--name", name, "--", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        def listed():
            if proc.poll() is not None:
                pytest.fail(f"the container exited early: {describe_proc(proc)}")
            ps = user.run([h.kennel, "ps"], timeout=20)
            return ps.returncode == 0 and name in ps.stdout
        wait_until(listed, f"`kennel ps` to list {name}", timeout=10)
        ex = user.run([h.kennel, "exec", name, "--", "echo", "inside"], timeout=20)
        assert ex.returncode == 0 and ex.stdout == "inside\n", describe(ex)
        st = os.lstat(fallback)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == user.uid, st
        assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
        assert os.path.isdir(os.path.join(fallback, "kennel", name))
    finally:
        user.run([h.kennel, "kill", name, "KILL"], timeout=20)
        proc.communicate(timeout=10)


def describe_proc(proc):
    out, err = proc.communicate()
    return f"exit {proc.returncode}: {out} {err}"


def test_doctor_names_the_fallback_and_no_missing_directory(h, noxdg):
    user, fallback = noxdg
    r = user.run([h.kennel, "doctor"], timeout=30)
    line = next((l for l in r.stdout.splitlines() if "runtime directory:" in l), None)
    assert line and line.startswith("ok") and fallback in line, r.stdout
    assert f"/run/user/{user.uid}" not in r.stdout
    assert "XDG_RUNTIME_DIR" in line


@pytest.mark.parametrize("whose", ["missing", "another-users"])
def test_an_unwritable_xdg_runtime_dir_names_the_way_out(h, noxdg, whose):
    """XDG_RUNTIME_DIR naming a directory nobody made (a login without
    logind) or another user's (`su` without `-`): --name fails saying so,
    and the way it names works."""
    user, fallback = noxdg
    xdg = f"/run/user/{user.uid}" if whose == "missing" else f"/run/user/{h.user.uid}"
    if whose == "another-users" and not os.path.isdir(xdg):
        pytest.skip(f"{xdg} does not exist here")
    name = f"xdg-{whose}-{os.getpid()}"
    cp = user.run([h.kennel, "run", "--name", name, "--", "echo", "RAN"], env={"XDG_RUNTIME_DIR": xdg}, timeout=20)
    assert cp.returncode == 125 and "RAN" not in cp.stdout, describe(cp)
    [line] = cp.stderr.splitlines()
    assert line.startswith(f"kennel: cannot create {xdg}/kennel: Permission denied"), line
    assert f"unset XDG_RUNTIME_DIR (kennel then uses {fallback})" in line, line
    assert whose != "missing" or not os.path.exists(xdg)
    # The way out: without it, the same run works.
    cp = user.run([h.kennel, "run", "--name", name, "--", "echo", "RAN"], timeout=20)
    assert cp.returncode == 0 and cp.stdout == "RAN\n", describe(cp)


@pytest.mark.parametrize("how", ["other-owner", "open-mode"])
def test_a_planted_fallback_is_refused_and_left_alone(h, noxdg, how):
    """Another user makes /tmp/kennel-run-UID first (or leaves it open):
    kennel must not record containers there, and says why and what to do."""
    user, fallback = noxdg
    shutil.rmtree(fallback, ignore_errors=True)
    os.mkdir(fallback)
    try:
        if how == "other-owner":
            os.chown(fallback, h.other.uid, h.other.gid)
            os.chmod(fallback, 0o777)
            why = f"is owned by uid {h.other.uid}, not by you ({user.uid})"
        else:
            os.chown(fallback, user.uid, user.gid)
            os.chmod(fallback, 0o755)
            why = "has mode 0755; it must be 0700"
        cp = user.run([h.kennel, "run", "--name", f"planted-{os.getpid()}", "--", "echo", "RAN"], timeout=20)
        assert cp.returncode == 125, describe(cp)
        assert "RAN" not in cp.stdout
        assert f"fallback {fallback} {why}" in cp.stderr, cp.stderr
        assert f"sudo rm -r {fallback}" in cp.stderr, cp.stderr
        assert os.listdir(fallback) == []
        doc = user.run([h.kennel, "doctor"], timeout=30)
        line = next(l for l in doc.stdout.splitlines() if "runtime directory:" in l)
        assert line.startswith("warn") and why in line, doc.stdout
    finally:
        shutil.rmtree(fallback, ignore_errors=True)
