"""Names in a bundle that kennel-oci does not know, handled as runc
handles them: a capability a newer kernel has is skipped with a warning
in the runtime's log, the container running with the rest; a syscall
this libseccomp does not know is skipped, and said where skipping lets
the call through."""

import json
import os


from probe import describe
from test_oci_lifecycle import oci  # noqa: F401

FUTURE = "CAP_FROM_A_NEWER_KERNEL"
REPORT = "grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status"
# CAP_CHOWN (0), CAP_KILL (5), CAP_NET_BIND_SERVICE (10).
KNOWN = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASK = (1 << 0) | (1 << 5) | (1 << 10)


def caps_of(text):
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in text.splitlines() if line.startswith("Cap"))}


def with_caps(config):
    config["process"]["capabilities"] = {
        s: KNOWN + [FUTURE] for s in ("bounding", "effective", "permitted")}
    config["process"]["capabilities"]["inheritable"] = []
    config["process"]["capabilities"]["ambient"] = []


def test_an_unknown_capability_is_skipped_and_logged(oci):
    log = os.path.join(oci.tempdir(0o777), "runtime.log")
    bundle = oci.bundle(["sh", "-c", REPORT], edit=with_caps)
    cp = oci("--log", log, "run", "--bundle", bundle, "future-cap")
    assert cp.returncode == 0, describe(cp)
    assert caps_of(cp.stdout) == {"CapEff": MASK, "CapPrm": MASK, "CapBnd": MASK}, cp.stdout
    with open(log) as f:
        logged = f.read()
    assert "level=warning" in logged and FUTURE in logged, logged
    assert "in bounding, effective, permitted" in logged, logged


def test_exec_process_file_skips_an_unknown_capability(oci):
    bundle = oci.bundle(["sleep", "30"], edit=with_caps)
    oci.ok("run", "--detach", "--bundle", bundle, "future-exec")
    process = {"args": ["sh", "-c", REPORT], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0},
               # As root, the exec makes permitted and effective the bounding set.
               "capabilities": {"bounding": [FUTURE, "CAP_KILL"], "effective": [FUTURE, "CAP_KILL"],
                                "permitted": [FUTURE, "CAP_KILL"]}}
    path = os.path.join(oci.tempdir(), "process.json")
    with open(path, "w") as f:
        json.dump(process, f)
    os.chmod(path, 0o644)
    log = os.path.join(oci.tempdir(0o777), "runtime.log")
    cp = oci("--log", log, "exec", "--process", path, "future-exec")
    assert cp.returncode == 0, describe(cp)
    caps = caps_of(cp.stdout)
    assert caps == {"CapEff": 1 << 5, "CapPrm": 1 << 5, "CapBnd": 1 << 5}, cp.stdout
    with open(log) as f:
        assert FUTURE in f.read()


def test_a_malformed_capability_is_still_an_error(oci):
    """Skipping is for names; a value that is not one is a broken spec."""
    def edit(config):
        config["process"]["capabilities"]["bounding"] = [42]
    bundle = oci.bundle(["true"], edit=edit)
    cp = oci("run", "--bundle", bundle, "bad-cap")
    assert cp.returncode != 0, describe(cp)
    assert "config.json" in cp.stderr, cp.stderr
    assert oci.leftovers() == []


def test_an_unknown_syscall_in_a_deny_list_is_skipped_with_a_warning(oci):
    def edit(config):
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_syscall_kennel", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": 42}]}
    log = os.path.join(oci.tempdir(0o777), "runtime.log")
    bundle = oci.bundle(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"], edit=edit)
    cp = oci("--log", log, "run", "--bundle", bundle, "future-sys")
    assert cp.returncode == 0, describe(cp)
    # errno 42 is ENOMSG: the rest of the rule is in force.
    assert "rc=1" in cp.stdout and "No message of desired type" in cp.stdout, cp.stdout
    with open(log) as f:
        logged = f.read()
    assert "no_such_syscall_kennel is unknown to this libseccomp" in logged, logged
