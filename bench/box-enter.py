#!/usr/bin/env python3
"""`kennel box enter NAME -- true` next to `podman exec NAME true`, on the
same image (the harness's busybox rootfs as a tarball), side by side with
hyperfine, as ratios; the first enter (box stopped) next to `podman start`
plus exec; and the RSS of an idle box's init.

Run as root (`sudo make bench-box`): it sets up the benchmark user as the
test harness does, then drops to that user. podman runs rootless on a
private store with runc (Debian's crun refuses hybrid cgroups).
  --runs N   hyperfine runs per command (default 200)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import setup_as_root  # bench/benchlib.py, next to this script


def hyperfine(user, env, commands, runs, prepare=None):
    out = tempfile.mktemp(suffix=".json")
    argv = ["hyperfine", "-N", "-w", "5", "-r", str(runs), "--export-json", out]
    for name, cmd in commands.items():
        if prepare:
            argv += ["-p", prepare[name]]
        argv += ["-n", name, cmd]
    cp = user.run(argv, env=env, timeout=1800)
    if cp.returncode != 0:
        raise SystemExit(f"bench: hyperfine failed:\n{cp.stderr}")
    with open(out) as f:
        results = json.load(f)["results"]
    os.unlink(out)
    return {r["command"]: r["median"] * 1000 for r in results}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    user, bindir, rootfs, scratch = setup_as_root()
    kennel = os.path.join(bindir, "kennel")
    image = os.path.join(scratch, "image.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", image, "."], check=True)
    os.chmod(image, 0o644)
    home = os.path.join(scratch, "home")
    os.mkdir(home)
    os.chown(home, user.uid, user.gid)
    env = {"HOME": home, "XDG_DATA_HOME": os.path.join(home, "data")}
    k = lambda *a: user.run([kennel, "box", *a], env=env, cwd=home)  # noqa: E731
    podman = None
    try:
        cp = k("create", "bench", "--image", image)
        if cp.returncode != 0:
            raise SystemExit(f"bench: box create failed:\n{cp.stderr}")
        k("enter", "bench", "--", "true")
        enter = f"{kennel} box enter bench -- true"
        times = hyperfine(user, env, {"kennel box enter": enter}, args.runs)
        first = hyperfine(user, env, {"kennel box enter (stopped)": enter}, max(10, args.runs // 10),
                          {"kennel box enter (stopped)": f"{kennel} box stop bench"})
        k("enter", "bench", "--", "true")
        ps = user.run([kennel, "ps"], env=env).stdout
        pid = next(l.split()[1] for l in ps.splitlines() if l.startswith("box.bench "))
        with open(f"/proc/{pid}/status") as f:
            rss = {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("VmRSS", "RssAnon", "RssFile"))}
        report = {"enter": times, "first enter": first, "init rss kib": rss}
        if shutil.which("podman") and shutil.which("runc"):
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
            from test_podman import Podman
            p = podman = Podman(user, shutil.which("runc"), os.path.join(scratch, "podman"))
            os.makedirs(p.run_dir, mode=0o700, exist_ok=True)
            for d in (p.base, p.run_dir):
                os.chown(d, user.uid, user.gid)
            penv = dict(env, **p.env)
            user.run(p.argv("import", image, "localhost/bench-box:latest"), env=penv, timeout=300)
            cp = user.run(p.argv("run", "-d", "--name", "pb", "localhost/bench-box:latest", "sleep", "100000"),
                          env=penv, timeout=120)
            if cp.returncode != 0:
                raise SystemExit(f"bench: podman run -d failed:\n{cp.stderr}")
            pex = " ".join(p.argv("exec", "pb", "true"))
            times.update(hyperfine(user, penv, {"podman exec": pex}, max(20, args.runs // 10)))
            pstart = " ".join(p.argv("start", "pb")) + " && " + pex
            first.update(hyperfine(user, penv, {"podman start + exec": f"sh -c '{pstart}'"}, 10,
                                   {"podman start + exec": "sh -c '" + " ".join(p.argv("stop", "-t", "0", "pb")) + "'"}))
            user.run(p.argv("rm", "-f", "-t", "0", "pb"), env=penv, timeout=120)
            report["ratio enter/podman exec"] = times["kennel box enter"] / times["podman exec"]
            report["ratio first enter/podman start+exec"] = (first["kennel box enter (stopped)"]
                                                            / first["podman start + exec"])
        print(json.dumps(report, indent=2))
    finally:
        k("rm", "--force", "bench")
        if podman is not None:
            # Its pause process would outlive the bench, and the suite's
            # leftover checks count every process of the user.
            podman.kill_leftovers()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
