#!/usr/bin/env python3
"""Container start latency, side by side, as ratios.

Times `kennel run --rootfs R -- /bin/true` (busybox rootfs) with
--userns=single and with the full subordinate mapping through kennel-idmap,
and with --userns=single without the default seccomp profile (its cost),
next to `bwrap --unshare-all` on the same rootfs and `unshare -Urmpf
--mount-proc true` (many runs, medians, ratios to bwrap), and measures the
runner's peak RSS. Everything runs as an ordinary user.

Two timings, both printed: the commands interleaved run by run (each
command meets the machine in the same states), and hyperfine with each
command's runs back to back in short rounds. On a quiet machine they agree;
on a busy one, where the kernel is still tearing down the last container's
network namespace when the next one starts, they differ by a few percent.

Run as root (`sudo make bench`): it creates the benchmark user and rootfs
the same way the test harness does, then drops to that user.
  --runs N     runs per command (default 500)
  --rounds K   hyperfine's runs in K rounds of all commands (default 50)
  --json FILE  write the figures as JSON too
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import paired_cost, setup_as_root, time_interleaved  # bench/benchlib.py, next to this script


def peak_rss_kib(argv):
    """The runner's own high-water RSS (VmHWM), read while its container
    sleeps. (wait4's ru_maxrss would not do: it counts the forked Python
    this script is, from before the exec.)"""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.01)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv} failed")
    if peak == 0:
        raise SystemExit("bench: could not read the runner's VmHWM")
    return peak


def measure(bindir, rootfs, runs, rounds, out_json):
    kennel = os.path.join(bindir, "kennel")
    commands = {
        "kennel (userns=single)": f"{kennel} run --net private --userns=single --rootfs {rootfs} -- /bin/true",
        "kennel (subids via kennel-idmap)": f"{kennel} run --net private --userns=subids --rootfs {rootfs} -- /bin/true",
        # The default seccomp profile's cost: the same start without it.
        "kennel (userns=single, seccomp=unconfined)":
            f"{kennel} run --net private --userns=single --security-opt seccomp=unconfined --rootfs {rootfs} -- /bin/true",
        "bwrap --unshare-all": f"bwrap --unshare-all --bind {rootfs} / --proc /proc --dev /dev /bin/true",
        "unshare -Urmpf --mount-proc": "unshare -Urmpf --mount-proc true",
    }
    if shutil.which("newuidmap"):
        # util-linux's unshare maps subordinate ids through shadow's two
        # setuid helpers: the difference to --map-root-user is their cost.
        commands["unshare -U --map-root-user"] = "unshare -U --map-root-user true"
        commands["unshare -U --map-auto (newuidmap+newgidmap)"] = "unshare -U --map-auto --map-root-user true"
    raw = {}
    interleaved = time_interleaved({n: shlex.split(c) for n, c in commands.items()}, runs, raw=raw)
    blocks = time_hyperfine_blocks(commands, runs, rounds)
    rss = peak_rss_kib([kennel, "run", "--net", "private", "--userns=subids", "--rootfs", rootfs, "--", "sleep", "0.3"])
    report = {}
    for title, medians in [
        (f"interleaved, each run of each command in turn, {runs} runs each", interleaved),
        (f"hyperfine in {rounds} rounds of {runs // rounds} runs per command, {runs // rounds * rounds} runs each", blocks),
    ]:
        bwrap = medians["bwrap --unshare-all"]
        print(f"\nStart latency ({title}), median (ms), ratio to bwrap:")
        print("| command | median ms | x bwrap |")
        print("|---|---|---|")
        for k, m in medians.items():
            print(f"| {k} | {m:.2f} | {m / bwrap:.2f} |")
        helper = medians["kennel (subids via kennel-idmap)"] - medians["kennel (userns=single)"]
        print(f"kennel-idmap cost (subids - single): {helper:.2f} ms")
        profile = medians["kennel (userns=single)"] - medians["kennel (userns=single, seccomp=unconfined)"]
        print(f"default seccomp profile cost (single - unconfined): {profile:.3f} ms")
        if "unshare -U --map-root-user" in medians:
            shadow = medians["unshare -U --map-auto (newuidmap+newgidmap)"] - medians["unshare -U --map-root-user"]
            print(f"shadow newuidmap+newgidmap cost (map-auto - map-root-user): {shadow:.2f} ms")
        report[title] = {"medians_ms": medians, "ratio_to_bwrap": {k: m / bwrap for k, m in medians.items()}}
    cost, low, high = paired_cost(raw["kennel (userns=single)"], raw["kennel (userns=single, seccomp=unconfined)"])
    print(f"\ndefault seccomp profile cost, paired by round (interleaved): median {cost:.3f} ms, "
          f"95% CI {low:.3f} to {high:.3f} ms")
    report["seccomp_profile_cost_paired_ms"] = {"median": cost, "ci95": [low, high]}
    print(f"\nkennel runner peak RSS (VmHWM, while its container runs): {rss} KiB")
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"methods": report, "peak_rss_kib": rss}, f, indent=2)


def time_hyperfine_blocks(commands, runs, rounds):
    """hyperfine, all runs of one command back to back within a round; the
    runs are split into rounds so a slow spell lands on every command."""
    json_path = os.path.join(tempfile.mkdtemp(), "hyperfine.json")
    per_round = max(1, runs // rounds)
    times = {name: [] for name in commands}
    for _ in range(rounds):
        argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(per_round), "--export-json", json_path, "--style", "basic"]
        for name, cmd in commands.items():
            argv += ["--command-name", name, cmd]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        with open(json_path) as f:
            for r in json.load(f)["results"]:
                times[r["command"]].extend(r["times"])
    return {k: statistics.median(t) * 1000 for k, t in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--json")
    ap.add_argument("--as-user", nargs=2, metavar=("BINDIR", "ROOTFS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    for tool in ["hyperfine", "bwrap", "unshare"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing (Debian packages hyperfine, bubblewrap, util-linux)")
    if args.as_user:
        measure(args.as_user[0], args.as_user[1], args.runs, args.rounds, args.json)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sudo make bench): it sets up a test user and rootfs, then drops to that user")
    user, bindir, rootfs, scratch = setup_as_root()
    try:
        out_json = os.path.abspath(args.json) if args.json else None
        if out_json:
            open(out_json, "w").close()
            os.chown(out_json, user.uid, user.gid)
        cmd = user.argv([sys.executable, os.path.abspath(__file__), "--runs", str(args.runs), "--rounds", str(args.rounds), "--as-user", bindir, rootfs]
                        + (["--json", out_json] if out_json else []))
        subprocess.run(cmd, env=user.env(), check=True, cwd="/")
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


if __name__ == "__main__":
    main()
