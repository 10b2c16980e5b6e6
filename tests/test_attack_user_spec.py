"""User specs that could wrap around to root: `-u` for kennel run and
kennel exec, and a bundle's process.user. Each is either refused with a
clear error before anything runs, or runs with exactly the ids asked
for. 4294967295 is (uid_t)-1, which setresuid(2) reads as "leave
unchanged": honoured, it would leave the command root."""

import json

import pytest

from probe import containers  # noqa: F401 (a fixture)
from probe import describe, kennel, run
from test_bundle import base_config, write_bundle

# What the process sees: its ids, then its uid_map.
SHOW = ["sh", "-c", "echo IDS $(id -u) $(id -g); cat /proc/self/uid_map"]

# (spec, the ids it must run with, or None: it must be refused). The map
# is 0 -> the user, 1..65536 -> the subordinate range. A uid busybox's
# passwd lacks runs with gid 0 (as Docker does) or is refused.
SPECS = [
    ("1", "1:0"),
    ("0:0", (0, 0)),
    ("1000:1000", (1000, 1000)),
    ("65536:65536", (65536, 65536)),
    ("65537", None),
    ("0:65537", None),
    ("4294967295", None),
    ("4294967295:0", None),
    ("0:4294967295", None),
    ("4294967296", None),
    ("1:4294967296", None),
    ("18446744073709551616", None),
    ("-1", None),
    ("0:-1", None),
    ("-0", None),
    ("+1", "1:0"),
    (" 1", "1:0"),
    ("1:", None),
    (":1", None),
    (":", None),
    ("", None),
    ("0x10", None),
]


def _check(cp, want):
    if isinstance(want, str):
        # Read leniently or refused; either way never another id.
        if cp.returncode == 0:
            assert cp.stdout.splitlines()[0] in (f"IDS {want.replace(':', ' ')}", "IDS 1 1"), cp.stdout
            return
        want = None
    if want is None:
        assert cp.returncode == 125, describe(cp)
        assert "IDS" not in cp.stdout, describe(cp)
        assert cp.stderr.startswith("kennel: ") and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    else:
        assert cp.returncode == 0, describe(cp)
        assert cp.stdout.splitlines()[0] == f"IDS {want[0]} {want[1]}", cp.stdout


@pytest.mark.parametrize("spec,want", SPECS, ids=[repr(s) for s, _ in SPECS])
def test_run_user_spec(h, spec, want):
    _check(run(h, "--userns=auto", "-u", spec, cmd=SHOW), want)


@pytest.mark.parametrize("spec,want", SPECS, ids=[repr(s) for s, _ in SPECS])
def test_exec_user_spec(h, containers, spec, want):
    name = "atk-user-exec"
    containers.start(name, "--userns=auto")
    _check(kennel(h, "exec", "-u", spec, name, "--", *SHOW), want)


BUNDLE_USERS = [
    ({"uid": 1000, "gid": 1000}, (1000, 1000)),
    ({"uid": 4294967295, "gid": 0}, None),
    ({"uid": 0, "gid": 4294967295}, None),
    ({"uid": 4294967296, "gid": 0}, None),
    ({"uid": -1, "gid": 0}, None),
    ({"uid": 0, "gid": 0, "additionalGids": [4294967295]}, None),
    ({"uid": "0", "gid": 0}, None),
    ({"uid": 1.5, "gid": 0}, None),
]


@pytest.mark.parametrize("user,want", BUNDLE_USERS, ids=[json.dumps(u) for u, _ in BUNDLE_USERS])
def test_bundle_process_user(h, user, want):
    config = base_config(SHOW)
    config["process"]["user"] = user
    # The full subordinate range, as kennel run's --userns=auto maps it.
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": h.user.uid, "size": 1},
                                      {"containerID": 1, "hostID": h.user.subid_start, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": h.user.gid, "size": 1},
                                      {"containerID": 1, "hostID": h.user.subid_start, "size": 65536}]
    bundle = write_bundle(h, config)
    cp = h.user.run([h.kennel, "run", "--bundle", bundle], timeout=20)
    _check(cp, want)
