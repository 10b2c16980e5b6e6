"""cgroups, systemd delegation and sd_notify, against a real systemd.

All cases run in one boot of the test VM (see vm_machine.py); each test
asserts on what its case printed from inside the container or from the
VM's systemd. Without qemu or a kernel to boot, every test here is skipped
with the reason."""

import json
import os
import re

import pytest

import vm_cases
import vm_machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.environ.get("KENNEL_BUILD_DIR", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "release"))


@pytest.fixture(scope="session")
def vm():
    if os.geteuid() != 0:
        pytest.skip("the VM tests run as root (they build a disk image and boot qemu)")
    ok, why = vm_machine.vm_available()
    if not ok:
        pytest.skip(why)
    binaries = {b: os.path.join(BUILD_DIR, b) for b in ["kennel", "kennel-oci", "kennel-idmap", "kennel-generator"]}
    for path in binaries.values():
        if not os.path.exists(path):
            pytest.fail(f"{path} is not built: run `make build` (make test does)")
    cases = [(name, user, script, timeout) for name, (user, script, timeout) in vm_cases.CASES.items()]
    return vm_machine.run_batch(cases, binaries)


def field(out, key):
    m = re.search(rf"^{re.escape(key)}: ?(.*)$", out, re.M)
    assert m, f"no {key} line in:\n{out}"
    return m.group(1).strip()


def no_leftovers(out):
    assert field(out, "LEFT-UNITS") == "0", out
    assert field(out, "LEFT-CGROUPS") == "0", out


def case(vm, name):
    r = vm[name]
    assert r.rc != -1, r.output
    return r.output


def test_auto_uses_the_writable_unit_it_runs_in_without_dbus(vm):
    out = case(vm, "stats_of_named_container")
    # The case runs as a user-manager service, which is kuser's to write.
    assert re.search(r"statme\s.*/run-u\d+\.service/kennel-statme\s", out), out


def test_auto_asks_systemd_when_its_unit_lacks_a_controller(vm):
    out = case(vm, "auto_scope_for_missing_controller")
    assert "cpu" not in field(out, "UNIT-CONTROLLERS").split(), out
    assert field(out, "RC") == "0", out
    assert field(out, "CPU-MAX") == "50000 100000"
    assert re.search(r"kennel: cgroup \S+/kennel-\d+\.scope/kennel-\d+ \(SystemdScope", out), out
    # pids is there: the unit itself is used, no D-Bus.
    assert field(out, "RC2") == "0", out
    assert field(out, "PIDS-MAX") == "30"
    assert re.search(r"kennel: cgroup \S+/run-u\d+\.service/kennel-\d+ \(DelegatedUnit\)", out), out
    no_leftovers(out)


def test_rootless_run_gets_a_delegated_scope_with_its_limits(vm):
    out = case(vm, "rootless_scope_limits")
    assert field(out, "RC") == "0", out
    # kennel asked the user manager for a scope and made the leaf below it.
    m = re.search(r"kennel: cgroup (/sys/fs/cgroup/user\.slice/user-1000\.slice/user@1000\.service/\S+/kennel-\d+\.scope/kennel-\d+) \(SystemdScope", out)
    assert m, out
    # Inside: its own cgroup namespace rooted at the leaf, and the limits.
    assert field(out, "INSIDE-CGROUP") == "0::/"
    assert field(out, "MEMORY-MAX") == str(64 << 20)
    assert field(out, "SWAP-MAX") == "0"
    assert field(out, "PIDS-MAX") == "50"
    assert field(out, "CPU-MAX") == "50000 100000"
    assert field(out, "CPU-WEIGHT") == "200"
    assert field(out, "IO-WEIGHT") == "default 300"
    assert set(field(out, "CONTROLLERS").split()) >= {"cpu", "io", "memory", "pids"}
    assert "CGROUP-READONLY" in out
    no_leftovers(out)


def test_oom_kill_is_reported_with_exit_137(vm):
    out = case(vm, "oom_kill_reported")
    assert field(out, "RC") == "137", out
    assert "kennel: container killed by the OOM killer (memory.max=32M)" in out
    assert "survived" not in out
    no_leftovers(out)


def test_pids_limit_stops_a_fork_bomb(vm):
    out = case(vm, "pids_limit_stops_fork_bomb")
    assert field(out, "RC") == "0", out
    assert int(field(out, "PIDS-CURRENT")) <= 20
    m = re.search(r"max (\d+)", field(out, "PIDS-EVENTS"))
    assert m and int(m.group(1)) > 0, out
    # --pids-limit 1: the container's one process is enough (its network
    # namespace is made outside its cgroup), and lo is up.
    assert field(out, "RC-ONE") == "0", out
    assert field(out, "ONE-PID") == "max=1 lo=0x9", out
    no_leftovers(out)


def test_stats_reads_the_containers_cgroup(vm):
    out = case(vm, "stats_of_named_container")
    stats = json.loads(re.search(r"^\{.*\"name\":\"statme\".*\}$", out, re.M).group(0))
    assert stats["memory_current"] > 0
    assert stats["memory_max"] == str(64 << 20)
    assert stats["pids_current"] >= 1
    assert stats["cpu_usage_usec"] is not None
    assert "/kennel-statme" in stats["cgroup"]
    # ps shows the cgroup path too.
    assert re.search(r"^statme\s.*/kennel-statme\s", out, re.M), out
    no_leftovers(out)


def test_no_bus_is_a_clear_error_and_disabled_still_runs(vm):
    out = case(vm, "no_bus_is_a_clear_error")
    assert field(out, "RC-SYSTEMD") == "125"
    assert "cannot reach the user bus at unix:path=/nonexistent/bus" in out
    assert field(out, "RC-SYSTEMD-LIMIT") == "125"
    assert field(out, "RC-DISABLED") == "0"
    assert field(out, "RC-DISABLED-LIMIT") == "125"
    assert "resource limits need a cgroup, but --cgroup-manager=disabled" in out
    no_leftovers(out)


def test_limit_on_a_controller_not_delegated_is_an_error(vm):
    out = case(vm, "controller_not_delegated")
    assert field(out, "RC") == "125", out
    assert "the memory controller is not delegated to" in out
    assert "Delegate=cpu cpuset io memory pids" in out
    # Nothing was created under the parent.
    assert out.rstrip().endswith("0"), out


def test_no_leftovers_after_failed_starts_and_a_killed_runner(vm):
    out = case(vm, "no_leftovers_after_failures")
    assert field(out, "RC-NOTFOUND") == "127"
    assert field(out, "RC-BADLIMIT") == "125"
    assert "cpu-weight 20000 is out of range" in out
    assert field(out, "SLEEPERS") == "0", out
    no_leftovers(out)


def test_killed_at_any_sync_point_leaves_no_scope_cgroup_or_record(vm):
    out = case(vm, "kill_matrix_cgroup")
    for bad in ("NOT-STOPPED", "NO-VICTIM", "RUNNER-HUNG"):
        assert bad not in out, out
    lines = re.findall(r"^KM (\S+) (\S+): (.*)$", out, re.M)
    assert len(lines) == 10, out
    for point, victim, left in lines:
        assert left.startswith("procs=0 stopped=0 cgroup=0 unit=inactive listed=0"), f"{point} {victim}: {left}\n{out}"
    assert field(out, "REUSE-RC") == "0", out
    no_leftovers(out)


def test_without_clone3_the_child_is_moved_into_its_cgroup_before_it_starts(vm):
    out = case(vm, "clone3_unavailable")
    assert field(out, "RC") == "0", out
    assert "clone3 into the cgroup failed (Function not implemented)" in out, out
    # In its leaf, with the limit, and its cgroup namespace rooted there.
    assert field(out, "PIDS-MAX") == "20", out
    assert field(out, "INSIDE-CGROUP") == "0::/", out
    no_leftovers(out)


def test_notify_unit_with_delegate_keeps_the_container_in_the_unit(vm):
    out = case(vm, "notify_unit_delegated")
    assert field(out, "ACTIVE") == "active", out
    unit_cg = field(out, "UNIT-CGROUP")
    assert unit_cg.endswith("/kt.service"), out
    ps = json.loads(re.search(r"^\[.*\]$", out, re.M).group(0))
    assert ps[0]["name"] == "kt"
    assert ps[0]["cgroup"] == f"/sys/fs/cgroup{unit_cg}/kennel-kt"
    # Placed inside the delegated unit: no D-Bus scope.
    assert "(DelegatedUnit)" in field(out, "KENNEL-LOG")
    assert field(out, "AFTER-STOP") in ("inactive", "failed"), out
    no_leftovers(out)


def test_container_mode_readiness_comes_from_the_container(vm):
    out = case(vm, "notify_container_mode")
    assert field(out, "EARLY") == "activating", out
    assert field(out, "LATER") == "active", out
    assert field(out, "STATUS") == "warm"
    assert field(out, "MAINPID-IS-KENNEL") == "kennel"


def test_root_uses_the_system_manager(vm):
    out = case(vm, "root_system_scope")
    assert field(out, "RC") == "0", out
    assert re.search(r"kennel: cgroup /sys/fs/cgroup/system\.slice/kennel-\d+\.scope/kennel-\d+ \(SystemdScope", out), out
    assert field(out, "MEMORY-MAX") == str(48 << 20)
    assert field(out, "LEFT-SYSTEM-UNITS") == "0"
    assert field(out, "LEFT-CGROUPS") == "0"


def test_root_device_rules_are_an_ebpf_program_on_the_cgroup(vm):
    out = case(vm, "oci_root_device_rules")
    # Denied by the cgroup's program, though the node is there and 0666.
    assert "can't create /dev/mykmsg: Operation not permitted" in out, out
    assert "KMSG-WRITTEN" not in out.split("ALLOWED:")[0], out
    assert re.search(r"^NULL-WRITTEN$", out, re.M), out
    # The same write, allowed by a rule.
    assert "ALLOWED: KMSG-WRITTEN" in out, out
    assert "ALLOWED: NULL-WRITTEN" in out, out
    assert field(out, "LEFT-CGROUPS") == "0", out


def test_root_cgroupfs_with_a_writable_cgroup_mount(vm):
    out = case(vm, "root_cgroupfs_rw")
    assert field(out, "RC") == "0", out
    assert re.search(r"kennel: cgroup /sys/fs/cgroup/kennel/kennel-\d+ \(Cgroupfs\)", out), out
    assert field(out, "PIDS-MAX") == "40"
    assert "CGROUP-WRITABLE" in out
    assert field(out, "LEFT-CGROUPS") == "0", out


def test_doctor_sees_cgroups_bus_linger_and_delegation(vm):
    out = case(vm, "doctor_on_systemd")
    assert field(out, "RC") == "0", out
    for check in ["cgroup v2", "user bus", "lingering", "delegated controllers"]:
        assert re.search(rf"^ok\s+{check}:", out, re.M), out
    assert "cpu" in re.search(r"^ok\s+delegated controllers: (.*)$", out, re.M).group(1)


def test_watchdog_is_pinged_and_ignore_says_nothing(vm):
    out = case(vm, "watchdog_and_ignore")
    # WatchdogSec=2 and still running after 6 s: kennel pinged it.
    assert field(out, "WATCHDOG-ACTIVE") == "active", out
    assert field(out, "WATCHDOG-RESULT") == "success", out
    # --sdnotify=ignore never says READY=1: the start times out.
    assert field(out, "IGNORE-START-RC") != "0", out
    assert field(out, "IGNORE-RESULT") == "timeout", out


def test_the_cgroup_leaf_fd_never_leads_out_of_the_container(vm):
    """The CVE-2024-21626 class: the runner holds the leaf's directory fd;
    the container must find it neither in PID 1's fds nor as a working
    directory, and nothing may be written through it."""
    out = case(vm, "cgroup_fd_escape")
    assert field(out, "RC") == "0", out
    assert "WROTE" not in out, out
    # PID 1 is not dumpable, so the container may not even list its fds;
    # whatever it can see is stdio.
    assert set(field(out, "INIT-FDS").split()) <= {"0", "1", "2"}, out
    assert field(out, "WORKDIR-REFUSED") == "13", out
    assert field(out, "ESCAPED-FILES") == "0 0", out
    no_leftovers(out)


def test_oci_lifecycle_uses_the_cgroup_the_user_manager_gives(vm):
    """kennel-oci as a user: config.json's limits in a systemd scope, pause
    and resume through the freezer, update, and delete (refused while it
    runs, then --force) leaving no cgroup and no unit."""
    out = case(vm, "oci_lifecycle_with_cgroup")
    assert field(out, "CREATE-RC") == "0", out
    assert field(out, "STATE-CREATED") == '"status": "created"', out
    assert field(out, "START-RC") == "0", out
    assert field(out, "CGROUP").startswith("/sys/fs/cgroup/"), out
    assert field(out, "MEMORY-MAX") == "67108864", out
    assert field(out, "PIDS-MAX") == "50", out
    assert field(out, "PID-IN-CGROUP") == "1", out
    assert field(out, "PAUSE-RC") == "0" and field(out, "FROZEN") == "frozen 1", out
    assert field(out, "STATE-PAUSED") == '"status": "paused"', out
    assert field(out, "RESUME-RC") == "0", out
    assert field(out, "STATE-RESUMED") == '"status": "running"', out
    assert field(out, "UPDATE-RC") == "0" and field(out, "MEMORY-MAX-UPDATED") == "100663296", out
    assert field(out, "DELETE-RUNNING-RC") != "0", out
    assert field(out, "DELETE-RC") == "0" and field(out, "CGROUP-GONE") == "yes", out
    no_leftovers(out)


def test_rootless_podman_with_systemd_cgroups_drives_kennel_oci(vm):
    """podman (systemd cgroup manager) with --runtime kennel-oci: its
    --memory and --pids-limit are in force inside, the exit code comes
    back, and no container or cgroup is left."""
    out = case(vm, "podman_systemd_kennel_oci")
    assert field(out, "IMPORT-RC") == "0", out
    assert field(out, "RUNTIME") == "/usr/local/bin/kennel-oci", out
    assert field(out, "RUN-RC") == "0", out
    assert field(out, "MEMORY-MAX") == "67108864", out
    assert field(out, "PIDS-MAX") == "50", out
    assert field(out, "EXIT-CODE") == "3", out
    assert field(out, "LEFT-CONTAINERS") == "0", out
    assert field(out, "LEFT-LIBPOD-CGROUPS") == "0", out


def test_podman_sdnotify_container_unit_is_ready_when_the_container_says(vm):
    """A Type=notify user unit running `podman run --sdnotify=container`
    with kennel-oci: active once the container sends READY=1, and a
    container that never does leaves the unit failing its start."""
    out = case(vm, "podman_sdnotify_container_unit")
    assert field(out, "IMPORT-RC") == "0", out
    assert field(out, "READY-RC") == "0", out
    assert field(out, "ACTIVE") == "active", out
    assert field(out, "NOT-READY-RC") != "0", out
    assert field(out, "LEFT-CONTAINERS") == "0", out
    no_leftovers(out)


def test_container_file_becomes_a_user_unit_ready_when_the_container_says(vm):
    """kennel-generator at daemon-reload: ~/.config/kennel/NAME.container
    is NAME.service, activating until the container itself says READY=1,
    its limits in the container's leaf, every argument and environment
    value arriving as written, and nothing left once it is stopped."""
    out = case(vm, "container_file_units")
    assert field(out, "LOADSTATE") == "loaded loaded not-found", out
    assert field(out, "SOURCEPATH") == "/home/kuser/.config/kennel/kg-ready.container", out
    assert field(out, "EARLY") == "activating", out
    assert field(out, "LATER") == "active", out
    assert field(out, "LEAF-MEMORY-MAX") == str(48 << 20), out
    assert field(out, "LEAF-PIDS-MAX") == "40", out
    assert field(out, "SLEEPER-IN-LEAF") == "1", out
    args = re.findall(r"^ARG: (.*)$", out, re.M)
    assert args == ["<a b>", "<100%>", "<$HOME>", '<"q">', "<it's>", r"<back\slash>", "<;>", "<>",
                    "<hello $USER, 100%>"], out
    # Ended by the stop's SIGTERM, not by TimeoutStopSec='s SIGKILL: sleep
    # as PID 1 ignores SIGTERM, the generated unit's --init passes it on.
    assert field(out, "STOPPED") == "inactive", out
    assert field(out, "STOP-RESULT").split()[0] == "success", out
    assert field(out, "STOP-PROCS") == "0", out
    assert field(out, "STOP-CGROUP") == "gone", out
    assert field(out, "STOP-LISTED") == "0", out
    no_leftovers(out)


def test_container_file_unit_restarts_on_failure(vm):
    """[Service] Restart=on-failure passes through: a container that fails
    once comes back; [Install] WantedBy= becomes the generator's link."""
    out = case(vm, "container_file_units")
    assert field(out, "WANTS-LINK") == "../kg-restart.service", out
    assert field(out, "RESTARTS") == "1", out
    assert field(out, "RESTARTED-ACTIVE") == "active", out
    assert field(out, "RAN-ONCE") == "once", out
    assert field(out, "SECOND-RUN") == "1", out
    assert field(out, "RESTART-STOPPED") == "inactive", out
    assert field(out, "RESTART-STOP-PROCS") == "0", out


def test_bad_container_file_gets_a_message_and_no_unit(vm):
    out = case(vm, "container_file_units")
    assert field(out, "LOADSTATE").endswith("not-found"), out
    assert field(out, "BAD-JOURNAL") == (
        "kennel-generator: /home/kuser/.config/kennel/kg-bad.container:3: Memory: "
        '"lots" is not a size such as 512k, 64M or 1G; no unit written for kg-bad.service'), out


def test_box_unit_is_started_and_stopped_by_the_user_manager(vm):
    """`kennel box create --unit`'s unit, started by systemd, is active once
    the box runs (READY=1), the box `enter` joins (in its cgroup, where
    cgroup2 is mounted with nsdelegate, as systemd mounts it); its stop leaves no
    container, and `box rm` removes the unit file."""
    out = case(vm, "box_user_unit")
    for key in ("CREATE-RC", "VERIFY-RC", "START-RC", "RM-RC"):
        assert field(out, key) == "0", out
    assert field(out, "ACTIVE") == "active", out
    assert field(out, "ENTER") == "vb", out
    # The entered command is in the box's cgroup: the root of the box's
    # cgroup namespace, with nothing said about running outside its limits.
    assert field(out, "ENTER-WARNED") == "0", out
    assert field(out, "ENTER-CGROUP") == "0::/", out
    assert field(out, "LISTED") == "running", out
    assert field(out, "STOPPED") == "inactive", out
    assert field(out, "STOP-RESULT") == "success", out
    assert field(out, "STOP-PS") == "0", out
    assert field(out, "UNIT-FILE") == "gone", out
    no_leftovers(out)


def test_container_file_in_etc_becomes_a_system_unit(vm):
    out = case(vm, "container_file_system_unit")
    assert field(out, "SYS-START-RC") == "0", out
    assert field(out, "SYS-ACTIVE") == "active", out
    assert field(out, "SYS-PIDS-MAX") == "30", out
    assert field(out, "SYS-STOPPED") == "inactive", out
    assert field(out, "SYS-STOP-RESULT").split()[0] == "success", out
    assert field(out, "SYS-STOP-PROCS") == "0", out
    assert field(out, "SYS-STOP-CGROUP") == "gone", out
