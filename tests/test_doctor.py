"""`kennel doctor` on a healthy setup and on each kind of broken one.

Each broken case must print FAIL (or warn) with the cause and the exact fix
command, and a failing check must make doctor exit non-zero."""

import os
import shutil

import pytest


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
    assert r.stdout.rstrip().endswith("all checks passed")


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


def test_user_without_subordinate_ids_gets_usermod_fix(h):
    r = doctor(h.nosub, h.kennel)
    line = check_line(r.stdout, "subordinate uids")
    assert line.startswith("warn"), r.stdout
    assert f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {h.nosub.name}" in r.stdout


def test_no_new_privs_is_reported(h):
    r = h.user.run([h.kennel, "doctor"], no_new_privs=True)
    assert r.returncode == 1
    assert check_line(r.stdout, "no_new_privs").startswith("FAIL")
    assert "file capabilities" in r.stdout


def test_missing_runtime_dir_is_reported(h):
    env = h.user.env()
    env.pop("XDG_RUNTIME_DIR")
    import subprocess

    r = subprocess.run(h.user.argv([h.kennel, "doctor"]), env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert check_line(r.stdout, "XDG_RUNTIME_DIR").startswith("FAIL")
    assert f"export XDG_RUNTIME_DIR=/run/user/{h.user.uid}" in r.stdout


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
