"""A bundle's seccomp profile constrains only the container's command, as
runc's does: kennel-oci puts it on as the last step before the exec,
with no_new_privs or without it (podman's default), so a profile that
refuses what the runtime calls to set a process up (openat2 for the
working directory, close_range, fchdir, the user switch) still runs.
Older profiles in the wild do not list openat2 at all."""

import json
import os

import pytest

from probe import describe
from test_oci_lifecycle import oci  # noqa: F401

# What kennel calls between the rootfs and the exec and a shell does not.
SETUP_ONLY = ["openat2", "close_range", "fchdir", "setresuid", "setresgid", "setgroups",
              "landlock_create_ruleset", "landlock_restrict_self"]
REPORT = "grep -E '^(Cap(Eff|Prm|Bnd)|Seccomp|NoNewPrivs):' /proc/self/status; pwd"


def profile():
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": SETUP_ONLY, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}


def status(text):
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@pytest.mark.parametrize("nnp", [False, True], ids=["nnp-off", "nnp-on"])
def test_a_profile_refusing_the_runtimes_setup_calls_still_runs(oci, nnp):
    def edit(seccomp):
        def change(config):
            config["process"]["noNewPrivileges"] = nnp
            config["process"]["cwd"] = "/tmp"
            if oci.user is None:
                config["process"]["user"] = {"uid": 1000, "gid": 1000}
            if seccomp:
                config["linux"]["seccomp"] = profile()
        return change

    results = {}
    for seccomp in (False, True):
        bundle = oci.bundle(["sh", "-c", REPORT], edit=edit(seccomp))
        cp = oci("run", "--bundle", bundle, f"order-{seccomp}-{nnp}")
        assert cp.returncode == 0, describe(cp)
        results[seccomp] = cp.stdout
    plain, filtered = status(results[False]), status(results[True])
    assert results[True].strip().endswith("/tmp"), results[True]
    assert filtered["Seccomp"].strip() == "2", results[True]
    # The CAP_SYS_ADMIN kept for the filter without no_new_privs is gone.
    for field in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"):
        assert filtered[field] == plain[field], f"{field}: {results[True]} vs {results[False]}"


def test_the_profile_is_in_force_for_the_command(oci):
    """The same rule set, seen from the command: its own openat2 is refused."""
    probe = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
             "how = (ctypes.c_uint64 * 3)(0, 0, 0); "
             "r = libc.syscall(437, -100, b'/', how, 24); "
             "print('openat2', r, os.strerror(ctypes.get_errno()) if r < 0 else 'ok')")
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("python3 is not installed on the host: no probe for openat2 inside")

    def edit(config):
        config["process"]["noNewPrivileges"] = False
        config["linux"]["seccomp"] = profile()
        for src in ("/usr", "/lib", "/lib64"):
            if os.path.exists(src):
                config["mounts"].append({"destination": src, "type": "bind", "source": src,
                                         "options": ["rbind", "ro"]})

    bundle = oci.bundle([python, "-c", probe], edit=edit)
    cp = oci("run", "--bundle", bundle, "order-probe")
    assert cp.returncode == 0, describe(cp)
    assert "openat2 -1 Operation not permitted" in cp.stdout, describe(cp)
