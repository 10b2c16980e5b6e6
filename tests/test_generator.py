"""kennel-generator on the host, run as systemd runs it for a user manager:
units for the user's .container files, a message and no unit for a bad
one, units systemd itself accepts, and shipped example units that order
only on what a user manager can see. (Starting the units is tested in the
VM: tests/vm_cases.py, container_file_units.)"""

import glob
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, REPO

GOOD = """[Unit]
Description=web with a quoted argument
[Container]
Memory=64M
Environment=GREETING="hello $USER, 100%"
Exec=sh -c 'echo "$GREETING"' x 'a b'
[Service]
Restart=on-failure
[Install]
WantedBy=default.target
"""

BAD = "[Container]\nExec=true\nPids=many\n"


@pytest.fixture
def generator(h):
    built = os.path.join(BUILD_DIR, "kennel-generator")
    if not os.path.exists(built):
        pytest.fail(f"{built} is not built: run `make` first (make test does)")
    bindir = h.tempdir()
    path = os.path.join(bindir, "kennel-generator")
    shutil.copy(built, path)
    os.chmod(path, 0o755)
    return path


def run_generator(h, generator, files, extra_env=None):
    """Runs the generator as the test user over `files` in its
    ~/.config/kennel equivalent; returns (result, output dir, config dir)."""
    config = h.tempdir()
    out = h.tempdir()
    os.makedirs(os.path.join(config, "kennel"))
    for name, text in files.items():
        with open(os.path.join(config, "kennel", name), "w") as f:
            f.write(text)
    subprocess.run(["chown", "-R", f"{h.user.uid}:{h.user.gid}", config], check=True)
    env = {"SYSTEMD_SCOPE": "user", "XDG_CONFIG_HOME": config}
    env.update(extra_env or {})
    r = h.user.run([generator, out, out + "/early", out + "/late"], env=env)
    return r, out, config


def test_units_for_good_files_and_a_message_for_a_bad_one(h, generator):
    r, out, config = run_generator(h, generator, {"web.container": GOOD, "broken.container": BAD})
    # One bad file never fails the reload.
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["default.target.wants", "web.service"]
    assert os.readlink(os.path.join(out, "default.target.wants", "web.service")) == "../web.service"
    assert r.stderr == (
        f"kennel-generator: {config}/kennel/broken.container:3: Pids: \"many\" is not a positive "
        "number of processes; no unit written for broken.service\n")
    unit = open(os.path.join(out, "web.service")).read()
    for line in ["Type=notify", "Delegate=yes", "KillMode=mixed", "Restart=on-failure",
                 "Description=web with a quoted argument", f"SourcePath={config}/kennel/web.container",
                 'ExecStart=/usr/local/bin/kennel run --name web --init --env "GREETING=hello $$USER, 100%%" '
                 '--memory 64M -- sh -c "echo \\"$$GREETING\\"" x "a b"']:
        assert line in unit.splitlines(), unit


def test_without_home_it_says_so_and_writes_nothing(h, generator):
    out = h.tempdir()
    r = subprocess.run(h.user.argv([generator, out]), env={"SYSTEMD_SCOPE": "user"},
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "HOME is not set" in r.stderr
    assert os.listdir(out) == []


def test_systemd_accepts_the_generated_units(h, generator):
    """systemd-analyze verify loads each unit as the manager would (it also
    wants ExecStart's binary to exist: the harness's kennel stands in for
    /usr/local/bin/kennel)."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is missing (Debian package systemd)")
    example = open(os.path.join(REPO, "packaging", "systemd", "kennel-web.container")).read()
    r, out, _ = run_generator(h, generator, {"web.container": GOOD, "kennel-web.container": example},
                              extra_env={"HOME": "/home/someone"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    for name in ["web.service", "kennel-web.service"]:
        path = os.path.join(out, name)
        text = open(path).read().replace("ExecStart=/usr/local/bin/kennel ", f"ExecStart={h.kennel} ")
        with open(path, "w") as f:
            f.write(text)
        v = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True, text=True)
        assert v.returncode == 0 and v.stderr == "", f"{name}:\n{v.stderr}\n{text}"
    assert "--rootfs /home/someone/images/alpine" in open(os.path.join(out, "kennel-web.service")).read()


# Units a user manager never has: ordering on them orders on nothing.
SYSTEM_ONLY = {"network-online.target", "network.target", "nss-lookup.target", "remote-fs.target",
               "multi-user.target", "time-sync.target", "sysinit.target"}


def test_shipped_user_units_order_only_on_what_a_user_manager_sees():
    """`After=network-online.target` in a user unit is silently void (and
    systemd-analyze verify does not say so); people copy the examples."""
    files = glob.glob(os.path.join(REPO, "packaging", "systemd", "*.service")) + \
        glob.glob(os.path.join(REPO, "packaging", "systemd", "*.container"))
    assert files, "no example units under packaging/systemd"
    for path in files:
        text = open(path).read()
        if not re.search(r"^WantedBy=.*default\.target", text, re.M):
            continue
        for key, value in re.findall(r"^(After|Before|Wants|Requires|BindsTo|PartOf|Requisite)=(.*)$", text, re.M):
            bad = SYSTEM_ONLY & set(value.split())
            assert not bad, f"{path}: {key}={value}: a user manager has no {', '.join(sorted(bad))}"
