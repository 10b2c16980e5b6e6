"""seccomp: kennel's default profile, `--security-opt seccomp=`, and OCI
profiles in bundles, written as the attacks a profile is there to stop.

A small probe (tests/probe/seccomp_probe.c, built static here) makes one
system call inside the container and prints what the kernel answered.
Each attack is tried under the default profile and, to show that the
profile is what stops it, under `seccomp=unconfined` where that lets it
through on this kernel.
"""

import errno
import json
import os
import shutil
import subprocess

import pytest

from probe import containers, kennel, run  # noqa: F401
from test_bundle import base_config, write_bundle

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def probe_dir(h):
    """A directory with the probe, bound read-only at /probe."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: the seccomp probe cannot be built")
    d = h.tempdir()
    out = os.path.join(d, "seccomp_probe")
    subprocess.run(["gcc", "-static", "-O1", "-o", out, os.path.join(HERE, "probe", "seccomp_probe.c")], check=True)
    os.chmod(out, 0o755)
    return d


def attempt(h, probe_dir, attack, *flags):
    r = run(h, "-v", f"{probe_dir}:/probe:ro", *flags, cmd=["/probe/seccomp_probe", attack])
    assert r.returncode in (0, 1), f"{attack}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout.split("\n")[0]


def refused(errno_value):
    return f"refused {errno_value}"


# What the default profile answers, for a container with Docker's default
# capabilities (no CAP_SYS_ADMIN, no CAP_SYS_PTRACE).
DEFAULT_ANSWERS = {
    "keyctl": refused(errno.ENOSYS),
    "add_key": refused(errno.ENOSYS),
    "bpf": refused(errno.EPERM),
    "perf_event_open": refused(errno.EPERM),
    "userfaultfd": refused(errno.EPERM),
    "unshare_user": refused(errno.EPERM),
    "clone_user": refused(errno.ENOSYS),
    "mount_proc": refused(errno.EPERM),
    "ptrace": refused(errno.EPERM),
    "personality": refused(errno.ENOSYS),
}


@pytest.mark.parametrize("attack", sorted(DEFAULT_ANSWERS))
def test_the_default_profile_refuses(h, probe_dir, attack):
    assert attempt(h, probe_dir, attack) == DEFAULT_ANSWERS[attack]


@pytest.mark.parametrize("attack", ["unshare_user", "clone_user", "ptrace", "personality"])
def test_unconfined_lets_through_what_the_profile_stops(h, probe_dir, attack):
    """Shows the refusals above are the profile's, not the kernel's."""
    assert attempt(h, probe_dir, attack, "--security-opt", "seccomp=unconfined") == "allowed"


def test_a_refused_personality_leaves_it_unchanged(h, probe_dir):
    r = run(h, "-v", f"{probe_dir}:/probe:ro", cmd=["/probe/seccomp_probe", "personality"])
    assert r.stdout.split("\n")[1] == "now 0", r.stdout


def test_the_i386_entry_point_is_filtered_too(h, probe_dir):
    if attempt(h, probe_dir, "i386_getpid") != "allowed":
        pytest.skip("this kernel has no i386 emulation: int 0x80 cannot be tried")
    assert attempt(h, probe_dir, "i386_keyctl") == refused(errno.ENOSYS)
    assert attempt(h, probe_dir, "i386_unshare_user") == refused(errno.EPERM)
    assert attempt(h, probe_dir, "i386_unshare_user", "--security-opt", "seccomp=unconfined") == "allowed"


def test_the_x32_bit_is_filtered_too(h, probe_dir):
    if attempt(h, probe_dir, "x32_getpid", "--security-opt", "seccomp=unconfined") != "allowed":
        pytest.skip("this kernel has no x32 ABI (CONFIG_X86_X32_ABI): syscall | 0x40000000 cannot be tried")
    assert attempt(h, probe_dir, "x32_getpid") == "allowed"
    assert attempt(h, probe_dir, "x32_keyctl") == refused(errno.ENOSYS)
    assert attempt(h, probe_dir, "x32_unshare_user") == refused(errno.EPERM)
    assert attempt(h, probe_dir, "x32_unshare_user", "--security-opt", "seccomp=unconfined") == "allowed"


def test_cap_sys_admin_opens_the_namespace_calls(h, probe_dir):
    assert attempt(h, probe_dir, "unshare_user", "--cap-add", "SYS_ADMIN") == "allowed"


def test_seccomp_is_in_force_with_one_filter(h):
    """The profile's program includes kennel's own filter for keyrings
    and terminal injection (each filter costs the start and every call):
    one filter, whose answers test_the_default_profile_refuses and
    test_attack_terminal.py check."""
    r = run(h, cmd=["grep", "^Seccomp", "/proc/self/status"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Seccomp:", "2", "Seccomp_filters:", "1"]
    r = run(h, "--security-opt", "seccomp=unconfined", cmd=["grep", "^Seccomp", "/proc/self/status"])
    # kennel's own filter for keyrings and terminal injection stays.
    assert r.stdout.split() == ["Seccomp:", "2", "Seccomp_filters:", "1"]


def test_ordinary_programs_run_under_the_default_profile(h):
    r = run(h, cmd=["sh", "-c", "mkdir /tmp/d && echo x > /tmp/d/f && cat /tmp/d/f && ls / >/dev/null && sleep 0.01 & wait; echo done"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["x", "done"]


def test_verbose_and_ps_say_which_profile(h, containers):
    r = run(h, "--verbose", cmd=["true"])
    assert "seccomp: kennel's default profile" in r.stderr, r.stderr
    r = run(h, "--verbose", "--security-opt", "seccomp=unconfined", cmd=["true"])
    assert "seccomp: unconfined" in r.stderr, r.stderr
    name = f"seccomp-ps-{os.getpid()}"
    containers.start(name, "--security-opt", "seccomp=unconfined")
    ps = kennel(h, "ps")
    line = next(line for line in ps.stdout.splitlines() if name in line)
    assert "unconfined" in line, ps.stdout


def profile_file(h, profile):
    d = h.tempdir()
    path = os.path.join(d, "profile.json")
    with open(path, "w") as f:
        json.dump(profile, f)
    os.chmod(path, 0o644)
    return path


def test_security_opt_takes_a_docker_style_profile(h, probe_dir):
    """includes/excludes by capability, as podman's and Docker's files."""
    path = profile_file(h, {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    })
    assert attempt(h, probe_dir, "mkdir", "--security-opt", f"seccomp={path}") == refused(42)
    assert attempt(h, probe_dir, "mkdir", "--security-opt", f"seccomp={path}", "--cap-add", "SYS_ADMIN") == "allowed"


def test_a_bad_profile_is_a_clear_error(h):
    path = profile_file(h, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]})
    r = run(h, "--security-opt", f"seccomp={path}", cmd=["echo", "RAN"])
    assert r.returncode == 125 and "RAN" not in r.stdout
    assert path in r.stderr and "SCMP_ACT_EXPLODE" in r.stderr, r.stderr
    r = run(h, "--security-opt", "seccomp=/nonexistent/profile.json", cmd=["echo", "RAN"])
    assert r.returncode == 125 and "cannot read /nonexistent/profile.json" in r.stderr
    r = run(h, "--security-opt", "label=disable", cmd=["echo", "RAN"])
    assert r.returncode == 125 and "label=disable" in r.stderr


# --------------------------------------------------------------------------
# Bundles: linux.seccomp exactly as declared


def seccomp_bundle(h, probe_dir, attack, seccomp):
    config = base_config(["/probe/seccomp_probe", attack])
    config["mounts"].append({"destination": "/probe", "type": "bind", "source": probe_dir, "options": ["rbind", "ro"]})
    config["linux"]["seccomp"] = seccomp
    return write_bundle(h, config)


CUSTOM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
        # Only PER_LINUX32 exactly; other values pass.
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        # Two conditions on one argument are alternatives, as in runc.
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14,
         "args": [{"index": 0, "value": 0x40008, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
    ],
}


def run_bundle(h, bundle):
    return h.user.run([h.kennel, "run", "--bundle", bundle])


def test_a_bundle_profile_returns_its_errno(h, probe_dir):
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "mkdir", CUSTOM))
    assert r.stdout.strip() == refused(42), r.stderr


def test_a_bundle_profile_compares_arguments(h, probe_dir):
    # PER_LINUX32 | ADDR_NO_RANDOMIZE is 0x40008: the second rule.
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "personality", CUSTOM))
    assert r.stdout.split("\n")[0] == refused(14), r.stdout + r.stderr
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "personality_query", CUSTOM))
    assert r.stdout.strip() == "allowed", r.stderr


def test_a_start_hook_is_kept_from_the_keyrings_too(h, probe_dir):
    """A startContainer hook runs in the container before the profile is
    installed: kennel's keys filter must already be there (the profile's
    program includes it, but comes later)."""
    config = json.load(open(os.path.join(seccomp_bundle(h, probe_dir, "mkdir", CUSTOM), "config.json")))
    config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "/probe/seccomp_probe keyctl >&2; true"]}]}
    r = run_bundle(h, write_bundle(h, config))
    assert r.stdout.strip() == refused(42), (r.stdout, r.stderr)
    assert r.stderr.split("\n")[0] == refused(errno.ENOSYS), r.stderr


def test_a_bundle_profile_kills_the_process(h, probe_dir):
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "getpid", CUSTOM))
    assert r.returncode == 128 + 31, (r.returncode, r.stdout, r.stderr)  # SIGSYS
    # The probe ran, and died at the call (not kennel before the exec).
    assert r.stdout == "calling\n", (r.stdout, r.stderr)


def test_a_bundle_profile_leaves_the_rest_alone(h, probe_dir):
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "unshare_user", CUSTOM))
    assert r.stdout.strip() == "allowed", r.stderr


def test_an_allow_list_skips_names_libseccomp_does_not_know(h, probe_dir):
    """As runc and crun do: a profile lists syscalls newer than libseccomp;
    where the default refuses, skipping such a name only refuses more."""
    allow_all = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["no_such_syscall_kennel"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getpid", "mkdir", "mkdirat", "write", "exit_group", "exit", "execve", "execveat", "brk", "arch_prctl",
                   "rt_sigprocmask", "rt_sigaction", "close", "close_range",
                   "set_tid_address", "set_robust_list", "rseq", "prlimit64", "mprotect", "readlink",
                   "getrandom", "mmap", "munmap", "newfstatat", "fstat", "ioctl", "uname"],
         "action": "SCMP_ACT_ALLOW"},
    ]}
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "mkdir", allow_all))
    assert r.stdout.strip() == "allowed", (r.returncode, r.stdout, r.stderr)


def test_a_deny_list_skips_an_unknown_name_and_says_so(h, probe_dir):
    """As runc: the name libseccomp does not know is skipped, the rest of
    its rule still applies; since the default lets what no rule names
    through, kennel warns that this name is not refused."""
    deny = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall_kennel", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "mkdir", deny))
    assert r.stdout.strip() == refused(42), (r.stdout, r.stderr)
    assert "no_such_syscall_kennel is unknown to this libseccomp" in r.stderr, r.stderr
    assert "lets no_such_syscall_kennel through" in r.stderr, r.stderr


@pytest.mark.parametrize("seccomp,needle", [
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, "SCMP_ACT_NOTIFY"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}, "linux.seccomp.listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "SCMP_ARCH_VAX"),
    ({"defaultAction": "SCMP_ACT_SOMETIMES"}, "SCMP_ACT_SOMETIMES"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "argument index 9"),
])
def test_a_bundle_profile_kennel_cannot_apply_is_refused(h, probe_dir, seccomp, needle):
    r = run_bundle(h, seccomp_bundle(h, probe_dir, "getpid", seccomp))
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert "allowed" not in r.stdout
    assert needle in r.stderr, r.stderr
