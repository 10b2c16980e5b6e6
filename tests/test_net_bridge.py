"""`kennel run --net bridge`: a veth pair from kennel-net, the
cap_net_admin helper, on a bridge.

Everything happens inside a network namespace this module makes (`ip
netns add`): the bridge is created there with `kennel-net setup-bridge`,
and the ordinary user's `kennel run` runs there through `ip netns exec`,
so the host's own network is never touched and traffic flows only
between that namespace and the containers' namespaces. The policy file,
/etc/kennel/net.conf, is written for the module and put back after.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import conftest
from conftest import BUILD_DIR
from probe import Containers, ok, read_line, wait_until

NS = f"kennel-net-test-{os.getpid()}"
BRIDGE = "kbt0"
SUBNET = "10.250.77.0/24"
GATEWAY = "10.250.77.1"
# In the policy, with a grant, but never created: a bridge that does not exist.
GONE = "kbtgone"
POLICY = "/etc/kennel/net.conf"
# kennel-net's lock: the namespace's own route/flush sysctl.
LOCK = "/proc/sys/net/ipv4/route/flush"


def in_ns(argv):
    return ["ip", "netns", "exec", NS, *argv]


def as_user(user, argv, *, no_new_privs=False, timeout=60, **kw):
    return subprocess.run(in_ns(user.argv(argv, no_new_privs)), env=user.env(), cwd="/",
                          capture_output=True, text=True, timeout=timeout, **kw)


def as_root(argv, **kw):
    return subprocess.run(in_ns(argv), capture_output=True, text=True, timeout=60, **kw)


def bridge_links(bridge=BRIDGE):
    """{name: alias} of the links attached to `bridge` in the namespace."""
    out = as_root(["ip", "-j", "-d", "link", "show", "master", bridge])
    if out.returncode != 0 or not out.stdout.strip():
        return {}
    return {link["ifname"]: link.get("ifalias", "") for link in json.loads(out.stdout)}


def kennel_links():
    """kennel-net's host ends anywhere in the namespace."""
    out = as_root(["ip", "-j", "link", "show"])
    return [link["ifname"] for link in json.loads(out.stdout) if link["ifname"].startswith("kn")]


@pytest.fixture(scope="module")
def net(h):
    conftest.require_tool("ip", "iproute2")
    built = os.path.join(BUILD_DIR, "kennel-net")
    if not os.path.exists(built):
        pytest.fail(f"{built} is not built: run `make` first (make test does)")
    # Next to kennel, where the runner looks first.
    helper = os.path.join(h.bindir, "kennel-net")
    shutil.copy2(built, helper)
    os.chmod(helper, 0o755)
    subprocess.run(["setcap", "cap_net_admin=ep", helper], check=True)
    saved = None
    if os.path.exists(POLICY):
        with open(POLICY) as f:
            saved = f.read()
    made_etc = not os.path.isdir("/etc/kennel")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        setup = as_root([helper, "setup-bridge", BRIDGE, SUBNET])
        assert setup.returncode == 0, setup.stderr
        os.makedirs("/etc/kennel", exist_ok=True)
        with open(POLICY, "w") as f:
            f.write(f"# written by tests/test_net_bridge.py\n"
                    f"bridge {BRIDGE} {SUBNET}\n"
                    f"bridge {GONE} 10.250.78.0/24\n"
                    f"{h.user.name} veth {BRIDGE} 2\n"
                    f"{h.user.name} veth {GONE} 1\n")
        os.chmod(POLICY, 0o644)
        yield helper
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)
        if saved is not None:
            with open(POLICY, "w") as f:
                f.write(saved)
        else:
            os.unlink(POLICY)
            if made_etc:
                os.rmdir("/etc/kennel")


def run_bridged(h, *flags, cmd, user=None, bridge=BRIDGE, **kw):
    user = user or h.user
    return as_user(user, [h.kennel, "run", "--rootfs", h.rootfs, "--net", f"bridge={bridge}",
                          *flags, "--", *cmd], **kw)



def listener(port):
    """A container command printing what one TCP connection to `port`
    sends. busybox nc, its stdin at EOF (/dev/null), may close the
    connection before reading it; an open pipe keeps it reading."""
    return f"sleep 30 | nc -l -p {port}"


class Bridged(Containers):
    """Named bridged containers started in the background, always stopped."""

    def start(self, name, cmd):
        """Starts the container; returns (Popen, its address) once it has
        printed "ready" (its network is up before it runs anything)."""
        argv = [self.h.kennel, "run", "--rootfs", self.h.rootfs, "--name", name,
                "--net", f"bridge={BRIDGE}", "--", "sh", "-c", f"echo ready; {cmd}"]
        proc = subprocess.Popen(in_ns(self.h.user.argv(argv)), env=self.h.user.env(), cwd="/",
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append((proc, name, self.h.user))
        line = read_line(proc.stdout, 10, f"{name} to start")
        if line.strip() != "ready":
            proc.wait(timeout=5)
            pytest.fail(f"{name} did not start ({proc.returncode}): {line} {proc.stderr.read()}")
        return proc, self.address(name)

    def address(self, name):
        rows = json.loads(ok(as_user(self.h.user, [self.h.kennel, "ps", "--format", "json"])))
        row = next(r for r in rows if r["name"] == name)
        assert row["network"] == f"bridge={BRIDGE}", row
        table = ok(as_user(self.h.user, [self.h.kennel, "ps"]))
        line = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert f" {row['address']} " in line, line
        return row["address"]


@pytest.fixture
def bridged(h, net):
    b = Bridged(h)
    yield b
    b.close()
    assert wait_until(lambda: not bridge_links(), "the containers' veths to go"), bridge_links()


def test_container_gets_eth0_with_an_address_and_a_route(h, net):
    out = run_bridged(h, cmd=["sh", "-c", "ip -4 -o addr show eth0; ip route"])
    assert out.returncode == 0, out.stderr
    assert "inet 10.250.77." in out.stdout and "/24" in out.stdout, out.stdout
    assert f"default via {GATEWAY} dev eth0" in out.stdout, out.stdout


def test_verbose_names_the_address_and_the_host_end(h, net):
    out = as_user(h.user, [h.kennel, "--verbose", "run", "--rootfs", h.rootfs,
                           "--net", f"bridge={BRIDGE}", "--", "ip", "-4", "-o", "addr", "show", "eth0"])
    assert out.returncode == 0, out.stderr
    address = out.stdout.split()[3]
    assert f"kennel: network: eth0 {address} via {GATEWAY} on bridge {BRIDGE} (host end " in out.stderr, \
        out.stderr


def test_host_and_container_talk_over_the_veth(h, net, bridged):
    # Container -> host: the bridge's address answers ping, and a TCP
    # server the test runs on it receives what the container sends.
    server = subprocess.Popen(in_ns(["/usr/bin/python3", "-c", f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{GATEWAY}", 7100)); s.listen(1); s.settimeout(60)
print("listening", flush=True)
c, peer = s.accept()
print(peer[0], c.recv(100).decode().strip(), flush=True)
"""]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(server.stdout, 10, "the host's server").strip() == "listening"
        # nc's -w bounds its connect, so a lost connection is a failure
        # with the container's stderr rather than the harness's timeout.
        out = run_bridged(h, cmd=["sh", "-c", f"ping -c1 -W2 {GATEWAY} >/dev/null && echo pinged; "
                                              f"echo from-container | nc -w 20 {GATEWAY} 7100"])
        if out.returncode != 0:
            server.kill()
            pytest.fail(f"the container's nc failed: {out}; the host's server said: {server.communicate()}")
        assert "pinged" in out.stdout, out
        peer, said = read_line(server.stdout, 10, "the container's message").split()
        assert said == "from-container"
        assert peer.startswith("10.250.77.") and peer != GATEWAY
    finally:
        server.kill()
        server.communicate()

    # Host -> container: its address (from `kennel ps`) answers ping, and
    # a server inside receives what the host sends.
    proc, address = bridged.start("nbr-listen", listener(7101))
    assert address.startswith("10.250.77."), address
    ping = as_root(["busybox", "ping", "-c1", "-W2", address])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    sent = as_root(["/usr/bin/python3", "-c", f"""
import socket, time
for _ in range(50):
    try:
        c = socket.create_connection(("{address}", 7101), timeout=2)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
c.sendall(b"from-host\\n"); c.close()
"""])
    assert sent.returncode == 0, sent.stderr
    assert read_line(proc.stdout, 10, "the container's server").strip() == "from-host"


def test_two_containers_on_one_bridge_reach_each_other(h, net, bridged):
    proc, a = bridged.start("nbr-a", listener(7102))
    out = run_bridged(h, cmd=["sh", "-c", f"ip -4 -o addr show eth0; echo from-b | nc {a} 7102"])
    assert out.returncode == 0, out.stderr
    assert f"inet {a}/" not in out.stdout, "both containers got the same address"
    got = read_line(proc.stdout, 10, "container a's server").strip()
    if got != "from-b":
        proc.wait(timeout=5)
        pytest.fail(f"a got {got!r}; b said {out.stdout!r} {out.stderr!r}; "
                    f"a exited {proc.returncode}: {proc.stderr.read()!r}")


def test_quota_of_two_refuses_the_third_and_leaves_nothing(h, net, bridged):
    bridged.start("nbr-q1", "sleep 30")
    bridged.start("nbr-q2", "sleep 30")
    assert len(bridge_links()) == 2
    out = run_bridged(h, cmd=["echo", "ran"])
    assert out.returncode != 0 and "ran" not in out.stdout
    assert "already has 2 veth(s) on bridge kbt0" in out.stderr, out.stderr
    assert POLICY in out.stderr
    assert len(bridge_links()) == 2


def test_user_without_a_policy_line_is_refused(h, net):
    out = run_bridged(h, user=h.other, cmd=["echo", "ran"])
    assert out.returncode != 0 and "ran" not in out.stdout
    assert f"no line in {POLICY} lets {h.other.name} attach veths to bridge {BRIDGE}" in out.stderr, out.stderr
    assert f"{h.other.name} veth {BRIDGE}" in out.stderr
    assert kennel_links() == []


def test_refusals_do_not_tell_which_bridges_exist(h, net):
    # Not granted: the same words whether the bridge exists or not.
    said = []
    for bridge in [BRIDGE, "nosuchbr0"]:
        out = run_bridged(h, user=h.other, bridge=bridge, cmd=["true"])
        assert out.returncode != 0
        said.append(out.stderr.replace(bridge, "BRIDGE"))
    assert said[0] == said[1], said


def test_a_granted_bridge_that_does_not_exist_names_the_fix(h, net):
    out = run_bridged(h, bridge=GONE, cmd=["echo", "ran"])
    assert out.returncode != 0 and "ran" not in out.stdout
    assert f"bridge {GONE}" in out.stderr and "does not exist" in out.stderr, out.stderr
    assert f"kennel-net setup-bridge {GONE} 10.250.78.0/24" in out.stderr
    assert kennel_links() == []


# Runs as root in the test's namespace: starts a process holding a network
# namespace, opens it, and hands the fd (and a netlink socket) to the test
# user's kennel-net. argv: HELPER USER_ARGV_JSON TARGET_ARGV_JSON
HAND_OVER = r"""
import json, os, socket, subprocess, sys, time
helper, user_argv, target_argv = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
target = subprocess.Popen(target_argv)
time.sleep(0.3)
ns = os.open(f"/proc/{target.pid}/ns/net", os.O_RDONLY)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
r = subprocess.run(user_argv + [helper, "attach", "kbt0", f"fd:{ns}", f"fd:{nl.fileno()}"],
                   pass_fds=[ns, nl.fileno()], capture_output=True, text=True)
links = subprocess.run(["nsenter", "-t", str(target.pid), "-n", "ip", "-o", "link"],
                       capture_output=True, text=True).stdout
target.kill(); target.wait()
print(json.dumps({"rc": r.returncode, "err": r.stderr, "links": links}))
"""


def test_another_users_namespace_is_refused(h, net):
    targets = {
        "root's": ["unshare", "-n", "sleep", "30"],
        "another user's": h.other.argv(["unshare", "-Urn", "sleep", "30"]),
    }
    said = []
    for who, target in targets.items():
        out = as_root(["/usr/bin/python3", "-c", HAND_OVER, net,
                       json.dumps(h.user.argv([])), json.dumps(target)])
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout)
        assert r["rc"] == 1, (who, r)
        assert "is not one of yours" in r["err"], (who, r)
        assert "eth0" not in r["links"], (who, r)
        said.append(r["err"])
    assert said[0] == said[1], "the refusal tells root's namespace from another user's"
    assert kennel_links() == []


# Runs as the test user in the test's namespace. A process in a new
# network namespace sends a netlink socket made there; the script opens
# its namespace, lets it die and reaps it, starts another such process
# (what a recycled pid would name), then asks kennel-net. argv: HELPER MODE
DEAD_PROCESS = r"""
import json, os, socket, subprocess, sys, time
helper, mode = sys.argv[1], sys.argv[2]
INSIDE = ("import socket, sys, time; s = socket.socket(fileno=int(sys.argv[1])); "
          "n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); "
          "socket.send_fds(s, [b'x'], [n.fileno()]); time.sleep(30)")
def holder():
    a, b = socket.socketpair()
    p = subprocess.Popen(["unshare", "-Urn", "/usr/bin/python3", "-c", INSIDE, str(b.fileno())],
                         pass_fds=[b.fileno()])
    b.close()
    _, fds, _, _ = socket.recv_fds(a, 1, 1)
    return p, fds[0]
first, nl = holder()
ns = os.pidfd_open(first.pid) if mode == "pidfd" else os.open(f"/proc/{first.pid}/ns/net", os.O_RDONLY)
first.kill(); first.wait()
second, _ = holder()
r = subprocess.run([helper, "attach", "kbt0", f"fd:{ns}", f"fd:{nl}"], pass_fds=[ns, nl],
                   capture_output=True, text=True)
second_links = subprocess.run(["nsenter", "-t", str(second.pid), "-U", "-n", "--preserve-credentials",
                               "ip", "-o", "link"], capture_output=True, text=True).stdout
bridge = subprocess.run(["ip", "-j", "-d", "link", "show", "master", "kbt0"], capture_output=True, text=True).stdout
second.kill(); second.wait()
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr, "second": second_links,
                  "bridge": json.loads(bridge or "[]"), "ino": os.fstat(ns).st_ino}))
"""


def test_a_dead_process_never_lends_its_pid_to_a_veth(h, net):
    # A pidfd of a process that is gone is not a namespace: refused.
    out = as_user(h.user, ["/usr/bin/python3", "-c", DEAD_PROCESS, net, "pidfd"])
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["rc"] == 1 and "is not a network namespace" in r["err"], r
    assert "eth0" not in r["second"] and r["bridge"] == [], r
    # The namespace fd of a process that is gone names that namespace
    # still: the veth goes there, recorded with its inode, never to the
    # process that came after, and goes away with the last fd.
    out = as_user(h.user, ["/usr/bin/python3", "-c", DEAD_PROCESS, net, "netns"])
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["rc"] == 0, r
    assert "eth0" not in r["second"], r
    [link] = r["bridge"]
    assert f" netns={r['ino']} ifindex={link['ifindex']}" in link["ifalias"], link
    assert wait_until(lambda: not bridge_links(), "the veth to go with its namespace")


def test_a_hundred_runs_leave_no_veth_record_or_lock(h, net):
    script = ("i=0; while [ $i -lt 100 ]; do "
              f"{h.kennel} run --rootfs {h.rootfs} --net bridge={BRIDGE} -- true || exit 1; "
              "i=$((i+1)); done")
    start = time.monotonic()
    out = as_user(h.user, ["sh", "-c", script], timeout=120)
    took = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    print(f"100 bridged runs took {took:.1f} s")
    assert wait_until(lambda: kennel_links() == [], "the veths to go"), kennel_links()
    ino = int(ok(as_root(["stat", "-c", "%i", LOCK])).strip())
    with open("/proc/locks") as f:
        held = [line for line in f if line.split()[5].endswith(f":{ino}")]
    assert held == [], held


def test_no_new_privs_fails_fast_naming_the_cause(h, net):
    # The runner checks before it makes anything.
    out = run_bridged(h, "--userns", "single", cmd=["echo", "ran"], no_new_privs=True)
    assert out.returncode != 0 and "ran" not in out.stdout
    assert "no_new_privs" in out.stderr and "kennel-net" in out.stderr, out.stderr
    # The helper itself, run directly, says so too.
    start = time.monotonic()
    out = as_user(h.user, [net, "attach", BRIDGE, "fd:3", "fd:4"], no_new_privs=True)
    assert time.monotonic() - start < 5
    assert out.returncode == 1
    assert out.stderr.startswith("kennel-net: no_new_privs is set"), out.stderr
    assert kennel_links() == []


def test_helper_on_a_nosuid_mount_names_the_mount_not_setcap(h, net):
    # As kennel-idmap does: setcap cannot help there, so it is not the advice.
    with conftest.nosuid_copies(h, [net], {"kennel-net": "cap_net_admin=ep"}) as paths:
        helper = paths["kennel-net"]
        start = time.monotonic()
        out = as_user(h.user, [helper, "attach", BRIDGE, "fd:3", "fd:4"])
        assert time.monotonic() - start < 5
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(
        f"kennel-net: {helper} is on a file system mounted nosuid, where the kernel ignores "
        "file capabilities, so cap_net_admin is missing;"), out.stderr
    assert "setcap" not in out.stderr, out.stderr
    assert kennel_links() == []


def test_helper_with_stray_privilege_refuses(h, net):
    wide = os.path.join(h.tempdir(), "kennel-net")
    shutil.copy2(net, wide)
    os.chmod(wide, 0o755)
    subprocess.run(["setcap", "cap_net_admin,cap_sys_admin=ep", wide], check=True)
    out = as_user(h.user, [wide, "gc"])
    assert out.returncode == 1
    assert "refused: holding capabilities beyond cap_net_admin (cap_sys_admin)" in out.stderr, out.stderr


def test_doctor_names_the_policy_line_and_each_bridge(h, net):
    out = as_user(h.user, [h.kennel, "doctor"])
    assert f"ok    kennel-net helper (--net bridge): {net} has cap_net_admin=ep" in out.stdout, out.stdout
    assert f"kennel-net policy: {h.user.name} may attach 2 veth(s) to {BRIDGE} ({SUBNET})" in out.stdout
    assert f"ok    bridge: {BRIDGE} exists" in out.stdout
    assert f"warn  bridge: {GONE} is not a bridge in this network namespace" in out.stdout
    assert f"fix: sudo kennel-net setup-bridge {GONE} 10.250.78.0/24" in out.stdout
    out = as_user(h.other, [h.kennel, "doctor"])
    assert f"no line in {POLICY} lets {h.other.name} attach veths" in out.stdout, out.stdout
