"""Attacks on `--net bridge` and kennel-net, each asserting that the other
users, root's links and the host are left as they were.

As in test_net_bridge.py, everything happens inside a network namespace
this module makes (`ip netns add`), with the bridge made there by
`kennel-net setup-bridge`; /etc/kennel/net.conf is written for the
module and put back after. The policy lists the harness's user and other
user; its no-subids user is listed nowhere.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import conftest
from conftest import BUILD_DIR
from probe import ok, read_line, wait_until

NS = f"kennel-net-attack-{os.getpid()}"
BRIDGE = "kba0"
SUBNET = "10.250.79.0/24"
GATEWAY = "10.250.79.1"
POLICY = "/etc/kennel/net.conf"
# kennel-net's lock (the namespace's own sysctl), and the file it used to be.
LOCK = "/proc/sys/net/ipv4/route/flush"
OLD_LOCK = "/run/kennel-net/lock"


def in_ns(argv):
    return ["ip", "netns", "exec", NS, *argv]


def as_user(user, argv, timeout=60, **kw):
    return subprocess.run(in_ns(user.argv(argv)), env=user.env(), cwd="/",
                          capture_output=True, text=True, timeout=timeout, **kw)


def as_root(argv, **kw):
    return subprocess.run(in_ns(argv), capture_output=True, text=True, timeout=60, **kw)


def links():
    """{name: link} of every link in the namespace (`ip -d -j link`)."""
    return {link["ifname"]: link for link in json.loads(ok(as_root(["ip", "-d", "-j", "link", "show"])))}


def on_bridge():
    return {n: l for n, l in links().items() if l.get("master") == BRIDGE}


def container_mac(address):
    return "02:6b:" + ":".join(f"{int(b):02x}" for b in address.split("."))


def neighbour(address, dev=BRIDGE):
    """The lladdr of the host's neighbour entry for `address`, or None."""
    out = json.loads(ok(as_root(["ip", "-j", "neigh", "show", address, "dev", dev])) or "[]")
    return out[0].get("lladdr") if out else None


@pytest.fixture(scope="module")
def net(h):
    conftest.require_tool("ip", "iproute2")
    conftest.require_tool("tc", "iproute2")
    built = os.path.join(BUILD_DIR, "kennel-net")
    if not os.path.exists(built):
        pytest.fail(f"{built} is not built: run `make` first (make test does)")
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
            f.write(f"# written by tests/test_attack_net_bridge.py\n"
                    f"bridge {BRIDGE} {SUBNET}\n"
                    f"{h.user.name} veth {BRIDGE} 2\n"
                    f"{h.other.name} veth {BRIDGE} 2\n")
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


@pytest.fixture(scope="module")
def other_rootfs(h):
    """A copy of the busybox rootfs owned by the other user."""
    path = os.path.join(h.tempdir(owner=h.other), "rootfs")
    shutil.copytree(h.rootfs, path, symlinks=True)
    subprocess.run(["chown", "-R", f"{h.other.uid}:{h.other.gid}", path], check=True)
    return path


class Bridged:
    """Named bridged containers of either user, always stopped."""

    def __init__(self, h):
        self.h = h
        self.procs = []

    def start(self, user, rootfs, name, cmd, *flags):
        """Starts the container; returns (Popen, its address) once it has
        printed "ready" (its network is up before it runs anything)."""
        argv = [self.h.kennel, "run", "--rootfs", rootfs, "--name", name, "--net", f"bridge={BRIDGE}",
                *flags, "--", "sh", "-c", f"echo ready; {cmd}"]
        proc = subprocess.Popen(in_ns(user.argv(argv)), env=user.env(), cwd="/", stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append((proc, name, user))
        line = read_line(proc.stdout, 10, f"{name} to start")
        if line.strip() != "ready":
            proc.wait(timeout=5)
            pytest.fail(f"{name} did not start ({proc.returncode}): {line} {proc.stderr.read()}")
        rows = json.loads(ok(as_user(user, [self.h.kennel, "ps", "--format", "json"])))
        return proc, next(r for r in rows if r["name"] == name)["address"]

    def exec(self, user, name, script):
        return as_user(user, [self.h.kennel, "exec", name, "--", "sh", "-c", script])

    def close(self):
        for proc, name, user in self.procs:
            if proc.poll() is None:
                user.run([self.h.kennel, "kill", name, "KILL"])
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.fixture
def bridged(h, net):
    b = Bridged(h)
    yield b
    b.close()
    assert wait_until(lambda: not on_bridge(), "the containers' veths to go", timeout=10), on_bridge()


# Run as the unlisted user: holds an exclusive flock on every lock file it
# can open (the old 0644 lock file, and kennel-net's lock if it could),
# says which it could not open, and keeps `kennel-net gc` running in a
# loop (which took the lock, too, before the policy was read first).
# argv: HELPER LOCK OLD_LOCK
HOG = r"""
import fcntl, os, subprocess, sys, time
helper, paths = sys.argv[1], sys.argv[2:]
held = []
for path in paths:
    for mode in (os.O_RDONLY, os.O_WRONLY):
        try:
            fd = os.open(path, mode)
        except OSError as e:
            print(f"cannot open {path} {mode}: {e.strerror}", flush=True)
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
        print(f"holding {path} {mode}", flush=True)
print("ready", flush=True)
gc = subprocess.run([helper, "gc"], capture_output=True, text=True)
print(f"gc {gc.returncode} {gc.stderr.strip()}", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    subprocess.run([helper, "gc"], capture_output=True)
"""


def test_an_unlisted_user_cannot_hold_the_lock_and_stall_starts(h, net):
    # The old lock file, as earlier installs made it: root's, 0644.
    made_old = not os.path.exists(OLD_LOCK)
    if made_old:
        os.makedirs(os.path.dirname(OLD_LOCK), exist_ok=True)
        with open(OLD_LOCK, "w"):
            pass
        os.chmod(OLD_LOCK, 0o644)
    hog = subprocess.Popen(in_ns(h.nosub.argv(["/usr/bin/python3", "-c", HOG, net, LOCK, OLD_LOCK])),
                           env=h.nosub.env(), cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = []
        while True:
            line = read_line(hog.stdout, 10, "the unlisted user's lock holder").strip()
            if line == "ready":
                break
            said.append(line)
        assert f"cannot open {LOCK} {os.O_RDONLY}: Permission denied" in said, said
        assert f"cannot open {LOCK} {os.O_WRONLY}: Permission denied" in said, said
        gc = read_line(hog.stdout, 10, "the unlisted user's gc").strip()
        assert gc.startswith("gc 1 kennel-net: refused: no line in /etc/kennel/net.conf lets "
                             f"{h.nosub.name} attach veths to any bridge"), gc
        # While it holds all it can and runs gc in a loop, a listed user's
        # starts go through at once (a held lock would make each wait 5 s
        # and fail).
        for _ in range(5):
            start = time.monotonic()
            out = as_user(h.user, [h.kennel, "run", "--rootfs", h.rootfs, "--net", f"bridge={BRIDGE}",
                                   "--", "sh", "-c", "ip -4 -o addr show eth0"])
            took = time.monotonic() - start
            assert out.returncode == 0, out.stderr
            assert "inet 10.250.79." in out.stdout, out.stdout
            assert took < 3, f"a bridged start took {took:.1f} s while the unlisted user hogged the lock"
        assert hog.poll() is None, hog.communicate()
    finally:
        hog.kill()
        hog.communicate()
        if made_old:
            os.unlink(OLD_LOCK)


def test_gc_by_anyone_leaves_roots_links_and_other_users_veths(h, net, bridged, other_rootfs):
    # Root's own links, named as kennel-net names its host ends: a bridge,
    # a veth pair, and a veth with a record-like alias on the wrong link.
    roots = ["kn1a2b3c", "kn4d5e6f", "kn4d5e70", "kn777"]
    for argv in (["ip", "link", "add", "kn1a2b3c", "type", "bridge"],
                 ["ip", "link", "add", "kn4d5e6f", "type", "veth", "peer", "name", "kn4d5e70"],
                 ["ip", "link", "add", "kn777", "type", "veth", "peer", "name", "knpeer777"],
                 ["ip", "link", "set", "kn777", "alias",
                  f"kennel-net uid={h.user.uid} ip=10.250.79.99 netns={0x777} ifindex=1"]):
        ok(as_root(argv))
    # What an interrupted set-up of the other user's looks like: a veth
    # named after its namespace, recorded, on no bridge. Root forges it
    # here, in a namespace of its own.
    pending_ns = f"{NS}-pending"
    subprocess.run(["ip", "netns", "add", pending_ns], check=True)
    try:
        ino = os.stat(f"/run/netns/{pending_ns}").st_ino
        pending = f"kn{ino:x}"
        ok(as_root(["ip", "link", "add", pending, "type", "veth", "peer", "name", "eth0", "netns", pending_ns]))
        index = links()[pending]["ifindex"]
        ok(as_root(["ip", "link", "set", pending, "alias",
                    f"kennel-net uid={h.other.uid} ip=10.250.79.98 netns={ino} ifindex={index}"]))
        # Each user's live container.
        bridged.start(h.user, h.rootfs, "gc-mine", "sleep 30")
        bridged.start(h.other, other_rootfs, "gc-theirs", "sleep 30")
        live = set(on_bridge())
        assert len(live) == 2, live

        out = as_user(h.nosub, [net, "gc"])
        assert out.returncode == 1 and "refused: no line" in out.stderr, out
        out = as_user(h.user, [net, "gc"])
        assert out.returncode == 0 and "removed 0 " in out.stdout, out
        now = links()
        for name in roots + [pending]:
            assert name in now, f"{name} was removed by gc"
        assert set(on_bridge()) == live, "a gc removed a live container's veth"

        # Its owner's gc removes the interrupted one, and only it.
        out = as_user(h.other, [net, "gc"])
        assert out.returncode == 0 and "removed 1 " in out.stdout, out
        now = links()
        assert pending not in now
        for name in roots:
            assert name in now, f"{name} was removed by gc"
        assert set(on_bridge()) == live
        # Root's too: it collects only what kennel-net recorded.
        out = as_root([net, "gc"])
        assert out.returncode == 0 and "removed 0 " in out.stdout, out
        assert all(name in links() for name in roots)
    finally:
        subprocess.run(["ip", "netns", "del", pending_ns], check=False)
        for name in ["kn1a2b3c", "kn4d5e6f", "kn777"]:
            as_root(["ip", "link", "del", name])


# The host reads A's token over TCP, from A's address, `tries` times,
# flushing its neighbour entry for A first each time so that every
# connection starts with an ARP request any container could answer.
# argv: ADDRESS PORT TRIES
READ_TOKEN = r"""
import socket, subprocess, sys, time
address, port, tries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
got = []
for _ in range(tries):
    subprocess.run(["ip", "neigh", "flush", "to", address])
    token = b""
    for _ in range(50):
        try:
            with socket.create_connection((address, port), timeout=2) as c:
                token = c.recv(100)
            break
        except (ConnectionRefusedError, socket.timeout, OSError):
            time.sleep(0.1)
    got.append(token.decode().strip())
print(" ".join(got))
"""

# The attacker's command: waits for /go (made by the test in its rootfs),
# then does everything it can as its root with CAP_NET_ADMIN and
# CAP_NET_RAW: takes A's address and the gateway's, announces them by
# gratuitous ARP and ARP replies, then again from a made-up MAC and from
# A's own MAC (busybox arping sends from eth0's MAC; -U and -A announce),
# and prints what it then holds. On /go2 (the control), it announces A's
# address once more from its own MAC.
ATTACKER = """
while [ ! -e /go ]; do sleep 0.1; done
ip addr add {a}/24 dev eth0
ip addr add {gw}/32 dev eth0
for mac in '' 02:00:00:00:66:66 {a_mac}; do
  echo "announcing from ${{mac:-eth0's own MAC}}"
  [ -n "$mac" ] && {{ ip link set eth0 down; ip link set eth0 address $mac; ip link set eth0 up; }}
  for i in 1 2 3; do
    arping -q -U -c 1 -I eth0 -s {a} {a}
    arping -q -A -c 1 -I eth0 -s {a} {gw}
    arping -q -U -c 1 -I eth0 -s {gw} {gw}
    arping -q -A -c 1 -I eth0 -s {gw} {a}
  done
done
ip -o addr show eth0 | tr '\\n' ' '; ip -o link show eth0
echo attacked
while [ ! -e /go2 ]; do sleep 0.1; done
ip link set eth0 address {b_mac}
for i in 1 2 3; do arping -q -U -c 1 -I eth0 -s {a} {a}; sleep 0.1; done
echo again
sleep 60
"""


def read_until(proc, word, what, timeout=60):
    """The lines `proc` prints before `word`; on a deadline, the lines so
    far and its stderr name where it stood."""
    lines = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = read_line(proc.stdout, max(0, deadline - time.monotonic()), what)
        except BaseException:
            proc.kill()
            proc.wait(timeout=5)
            print(f"{what}: it printed {lines}; stderr: {proc.stderr.read()}")
            raise
        if not line:
            proc.wait(timeout=5)
            pytest.fail(f"{what}: ended ({proc.returncode}) after {lines}: {proc.stderr.read()}")
        if line.strip() == word:
            return lines
        lines.append(line.strip())


def attacker_entries(macs, b):
    """The host's IPv4 neighbour entries naming one of `macs`, other than
    the attacker's own address (`b`)."""
    table = json.loads(ok(as_root(["ip", "-4", "-j", "neigh", "show", "dev", BRIDGE])) or "[]")
    return [e for e in table if e.get("lladdr") in macs and e["dst"] != b]


def test_a_container_with_net_admin_cannot_take_another_ones_address(h, net, bridged, other_rootfs):
    port = 7300
    a_proc, a = bridged.start(h.user, h.rootfs, "arp-victim",
                              f"ip -o link show eth0; while true; do echo TOKEN-A | nc -l -p {port}; done")
    a_mac = container_mac(a)
    # Each container's eth0 has the MAC kennel-net fixed.
    line = read_line(a_proc.stdout, 10, "the victim's eth0")
    assert f"link/ether {a_mac} " in line, line
    for trigger in ("go", "go2"):
        if os.path.exists(os.path.join(other_rootfs, trigger)):
            os.unlink(os.path.join(other_rootfs, trigger))
    # The attacker's script names its own MAC, so its address is foretold:
    # the lowest free one, the next after A's.
    prefix, last = a.rsplit(".", 1)
    b_guess = f"{prefix}.{int(last) + 1}"
    b_mac = container_mac(b_guess)
    script = ATTACKER.format(a=a, gw=GATEWAY, a_mac=a_mac, b_mac=b_mac)
    b_proc, b = bridged.start(h.other, other_rootfs, "arp-attacker", script, "--cap-add", "NET_ADMIN")
    assert b == b_guess, (a, b)
    [b_link] = [n for n, l in on_bridge().items() if f" ip={b} " in l.get("ifalias", "")]
    # Before: the host reaches A, and has A's MAC for A's address.
    assert ok(as_root(["/usr/bin/python3", "-c", READ_TOKEN, a, str(port), "1"])).split() == ["TOKEN-A"]
    assert neighbour(a) == a_mac

    open(os.path.join(other_rootfs, "go"), "w").close()
    held = " ".join(l for l in read_until(b_proc, "attacked", "the attack") if not l.startswith("announcing"))
    # The attacker holds A's and the gateway's addresses and A's MAC now.
    assert f"inet {a}/24" in held and f"inet {GATEWAY}/32" in held and a_mac in held, held

    # After: the host's entry for A still names A, every connection to A's
    # address reaches A, and no entry of the host's names the attacker's
    # MACs for any address but its own.
    assert neighbour(a) == a_mac, neighbour(a)
    tokens = ok(as_root(["/usr/bin/python3", "-c", READ_TOKEN, a, str(port), "5"])).split()
    assert tokens == ["TOKEN-A"] * 5, tokens
    assert neighbour(a) == a_mac
    assert attacker_entries([b_mac, "02:00:00:00:66:66"], b) == []
    # A's view of the gateway is not the attacker's either.
    a_table = ok(as_user(h.user, [h.kennel, "exec", "arp-victim", "--", "sh", "-c",
                                  f"ping -c1 -W2 {GATEWAY} >/dev/null; ip neigh show"]))
    assert b_mac not in a_table and "02:00:00:00:66:66" not in a_table, a_table

    # The control: with the attacker's port filter removed (as root), the
    # same announcement does take A's address over, so the checks above
    # could fail.
    ok(as_root(["tc", "qdisc", "del", "dev", b_link, "clsact"]))
    open(os.path.join(other_rootfs, "go2"), "w").close()
    read_until(b_proc, "again", "the control")
    assert wait_until(lambda: neighbour(a) == b_mac, "the unfiltered announcement to reach the host"), neighbour(a)
