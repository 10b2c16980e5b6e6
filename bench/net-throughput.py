#!/usr/bin/env python3
"""Container networking side by side: TCP throughput container -> host with
iperf3, and what each mode adds to a container's start.

Everything runs inside a network namespace this script makes (`ip netns
add`), so the machine's own network carries nothing: there the bridge
kbench0 (10.250.99.1/24) is made with `kennel-net setup-bridge`, loopback
is brought up, and a veth pair inside it (kbout0, 10.250.98.1/24) with
a default route via 10.250.98.254 gives pasta an interface and a gateway to copy
(no packet is ever sent to it: pasta maps the gateway to loopback).
The bridge's MTU is set to 65520, the MTU podman gives slirp4netns, and
kennel-net gives the veth its bridge's MTU, so both carry the same
frames. The iperf3 server runs in that
namespace as root ("the host"); the benchmark user's containers (the
host sandbox, which has the host's /usr and so its iperf3) are its
clients, 10 s each:

- `--net bridge=kbench0`: a veth from kennel-net; the client connects to
  the bridge's address.
- `--net pasta`: the client connects to the gateway's address, which
  pasta maps to the namespace's loopback, where the server listens too.
- slirp4netns run the way podman does (`slirp4netns --configure
  --mtu=65520 --disable-host-loopback --enable-sandbox --enable-seccomp
  PID tap0`, with `--userns-path`
  since it is started from outside the container's user namespace) for a
  `--net private` container; the client connects to the bridge's address
  through slirp's user-mode stack.

Start latency: `kennel run --rootfs R --net MODE -- /bin/true` (busybox
rootfs) for private, bridge and pasta, interleaved run by run, medians;
each mode's cost is its median less private's.

Run as root (`sudo make bench-net`). /etc/kennel/net.conf is written for
the run and put back after.
  --seconds S   iperf3 duration per mode (default 10)
  --runs N      start-latency runs per mode (default 40)
  --starts-only measure start latency only (no iperf3)
  --json FILE   write the figures as JSON too
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

from benchlib import paired_cost, setup_as_root, time_interleaved  # bench/benchlib.py, next to this script

NS = f"kennel-net-bench-{os.getpid()}"
BRIDGE = "kbench0"
SUBNET = "10.250.99.0/24"
HOST = "10.250.99.1"
PASTA_GATEWAY = "10.250.98.254"
POLICY = "/etc/kennel/net.conf"
MTU = 65520


def in_ns(argv):
    return ["ip", "netns", "exec", NS, *argv]


def as_user(user, argv):
    return in_ns(user.argv(argv))


def iperf(user, kennel, net_flags, target, port, seconds, extra=()):
    """Starts a one-shot server in the namespace, runs the client in a
    container, returns the receiver's Gbit/s."""
    server = subprocess.Popen(in_ns(["iperf3", "-s", "-1", "-p", str(port)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        argv = [kennel, "run", "--no-home", *net_flags, *extra, "--",
                "iperf3", "-c", target, "-p", str(port), "-t", str(seconds), "-J"]
        out = subprocess.run(as_user(user, argv), env=user.env(), capture_output=True, text=True,
                             timeout=seconds + 60)
        if out.returncode != 0:
            raise SystemExit(f"bench: iperf3 over {net_flags} failed: {out.stderr}{out.stdout[-500:]}")
        return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.kill()
        server.wait()


def iperf_slirp(user, kennel, port, seconds):
    """A --net private container waits for slirp4netns's tap0 and then
    runs the client; slirp4netns is attached to it from outside."""
    server = subprocess.Popen(in_ns(["iperf3", "-s", "-1", "-p", str(port)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    name = f"slirp-bench-{os.getpid()}"
    script = ("i=0; until ip route | grep -q default; do i=$((i+1)); [ $i -gt 500 ] && exit 9; sleep 0.01; done; "
              f"exec iperf3 -c {HOST} -p {port} -t {seconds} -J")
    container = subprocess.Popen(as_user(user, [kennel, "run", "--no-home", "--name", name, "--net", "private",
                                                "--", "sh", "-c", script]),
                                 env=user.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    slirp = None
    try:
        pid = None
        for _ in range(500):
            ps = subprocess.run(as_user(user, [kennel, "ps", "--format", "json"]), env=user.env(),
                                capture_output=True, text=True)
            rows = [r for r in json.loads(ps.stdout or "[]") if r["name"] == name]
            if rows:
                pid = rows[0]["pid"]
                break
            time.sleep(0.01)
        if pid is None:
            raise SystemExit("bench: the slirp4netns container did not start")
        slirp = subprocess.Popen(as_user(user, ["slirp4netns", "--configure",
                                                f"--mtu={MTU}", "--disable-host-loopback", "--enable-sandbox",
                                                "--enable-seccomp", f"--userns-path=/proc/{pid}/ns/user",
                                                str(pid), "tap0"]),
                                 env=user.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out, err = container.communicate(timeout=seconds + 60)
        if container.returncode != 0:
            raise SystemExit(f"bench: iperf3 over slirp4netns failed: {err}{out[-500:]}")
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        for p in (slirp, server, container):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--starts-only", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sudo make bench-net)")
    for tool in ["ip", "iperf3", "slirp4netns", "pasta"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing (packaging/install-deps.sh bench-net installs it)")
    user, bindir, rootfs, scratch = setup_as_root(("kennel", "kennel-idmap", "kennel-net"))
    helper = os.path.join(bindir, "kennel-net")
    subprocess.run(["setcap", "cap_net_admin=ep", helper], check=True)
    kennel = os.path.join(bindir, "kennel")
    saved = open(POLICY).read() if os.path.exists(POLICY) else None
    made_etc = not os.path.isdir("/etc/kennel")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    # pasta and slirp4netns open /dev/net/tun as the user.
    import conftest  # tests/, on the path through benchlib

    tun = contextlib.ExitStack()
    tun.enter_context(conftest.tun_open_to_test_users(user, None))
    try:
        subprocess.run(in_ns([helper, "setup-bridge", BRIDGE, SUBNET]), check=True, stdout=subprocess.DEVNULL)
        subprocess.run(in_ns(["ip", "link", "set", "lo", "up"]), check=True)
        # The MTU slirp4netns is given (as podman does): kennel-net gives
        # the veth its bridge's.
        subprocess.run(in_ns(["ip", "link", "set", BRIDGE, "mtu", str(MTU)]), check=True)
        # pasta copies an interface with carrier and a default route: a
        # veth pair with both ends in the namespace (the bridge has no
        # carrier until a container's veth joins it).
        for cmd in (["ip", "link", "add", "kbout0", "type", "veth", "peer", "name", "kbout1"],
                    ["ip", "addr", "add", "10.250.98.1/24", "dev", "kbout0"],
                    ["ip", "link", "set", "kbout1", "up"],
                    ["ip", "link", "set", "kbout0", "up"],
                    ["ip", "route", "add", "default", "via", PASTA_GATEWAY, "dev", "kbout0"]):
            subprocess.run(in_ns(cmd), check=True)
        os.makedirs("/etc/kennel", exist_ok=True)
        with open(POLICY, "w") as f:
            f.write(f"bridge {BRIDGE} {SUBNET}\n{user.name} veth {BRIDGE} 8\n")
        os.chmod(POLICY, 0o644)

        gbits = {}
        if not args.starts_only:
            gbits = {
                "bridge (veth)": iperf(user, kennel, ["--net", f"bridge={BRIDGE}"], HOST, 5301, args.seconds),
                "pasta": iperf(user, kennel, ["--net", "pasta"], PASTA_GATEWAY, 5302, args.seconds),
                "slirp4netns": iperf_slirp(user, kennel, 5303, args.seconds),
            }
            print(f"TCP container -> host, iperf3 {args.seconds} s each (Gbit/s, ratio to slirp4netns):")
            for mode, g in gbits.items():
                print(f"  {mode:14} {g:8.2f}  {g / gbits['slirp4netns']:6.1f}x")

        starts = {mode: as_user(user, [kennel, "run", "--rootfs", rootfs, "--net", net, "--", "/bin/true"])
                  for mode, net in [("private", "private"), ("bridge", f"bridge={BRIDGE}"), ("pasta", "pasta")]}
        raw = {}
        medians = time_interleaved(starts, args.runs, warmup=5, env=user.env(), raw=raw)
        print(f"start latency, kennel run --rootfs busybox -- /bin/true (median of {args.runs}, ms;")
        print("  added: the median of per-round differences to private, with its 95% interval):")
        added_ms = {}
        for mode, m in medians.items():
            added = ""
            if mode != "private":
                cost, low, high = paired_cost(raw[mode], raw["private"])
                added_ms[mode] = {"median": cost, "low": low, "high": high}
                added = f"  (+{cost:.2f} ms over private, 95% {low:.2f} to {high:.2f})"
            print(f"  {mode:8} {m:7.1f}{added}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"gbits": gbits, "start_ms": medians, "added_ms": added_ms}, f, indent=2)
    finally:
        tun.close()
        subprocess.run(["ip", "netns", "del", NS], check=False)
        if saved is not None:
            with open(POLICY, "w") as f:
                f.write(saved)
        elif os.path.exists(POLICY):
            os.unlink(POLICY)
            if made_etc:
                os.rmdir("/etc/kennel")
        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


if __name__ == "__main__":
    sys.exit(main())
