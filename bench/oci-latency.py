#!/usr/bin/env python3
"""kennel-oci next to runc, alone and under podman, side by side, as ratios.

1. The OCI lifecycle, as an ordinary user on the host: `create`, `start`,
   wait for the container's process to exit, `delete`, of /bin/true on
   one busybox bundle, timed as a whole per iteration, for kennel-oci and
   for rootless runc (`--root DIR`, its own state directory each). The
   bundle is `kennel-oci spec --rootless` (runc's rootless starter config:
   one id mapped, new user, mount, pid, ipc, uts and network namespaces,
   no cgroup resources) with the busybox rootfs, process.terminal false
   and args ["/bin/true"]; both runtimes read this same config.json. The
   script prints where `runc spec --rootless`, edited alike, differs (with
   Debian's runc 1.1: the hostname, ociVersion, and three ambient
   capabilities kennel-oci's leaves out, as newer runc does). On this hybrid-cgroup host rootless runc places the
   container in no cgroup, and with no resources asked for kennel-oci
   does not either.

   What is fair: both runtimes do the same work, the way conmon and
   containerd's shim drive them. This script makes itself a child
   subreaper, runs `create --pid-file`, `start`, then waits (waitpid) for
   the container's process, which was reparented to it when `create`
   exited, and only then runs `delete` (no --force: the container has
   stopped, so neither runtime kills anything). `delete --force` right
   after `start` would race the process (killed before or after it ran
   /bin/true) and time a kill instead; polling `state` would add the
   runtimes' `state` and a polling interval to the figures. Each phase's
   median is printed too.

   Alongside, `run` (foreground: create, start, wait and delete in one
   runtime process) of the same bundle for both.

2. `podman run --rm IMAGE true`, and `podman exec NAME true` into a
   running container, as the same user, rootless, on one
   private store (tests/test_podman.py's set-up: cgroupfs, file events,
   overlay through fuse-overlayfs, podman's default seccomp profile),
   with `--runtime` kennel-oci and `--runtime` runc on the same image.

Commands are interleaved run by run (each meets the machine in the same
states) and medians compared; with --hyperfine the single-command rows
(`run`, podman) are also timed by hyperfine in short rounds.

Run as root (`sudo make bench-oci`): it creates the benchmark user, copies
the binaries and builds the rootfs the way the test harness does, imports
the image, then drops to that user.
  --runs N          lifecycle runs per runtime (default 300)
  --podman-runs M   podman runs per runtime (default 20; 0 skips podman)
  --hyperfine       also time the single-command rows with hyperfine
  --json FILE       write the figures as JSON too
"""

import argparse
import ctypes
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import setup_as_root, time_interleaved  # bench/benchlib.py, next to this script

IMAGE = "localhost/kennel-busybox:bench"
PR_SET_CHILD_SUBREAPER = 36


def make_bundle(kennel_oci, runc, rootfs, dest):
    """The shared bundle (a directory with config.json) from `kennel-oci
    spec --rootless`; says whether runc's own rootless spec differs."""
    def spec(runtime, where):
        os.makedirs(where, exist_ok=True)
        subprocess.run([runtime, "spec", "--rootless"], cwd=where, check=True)
        with open(os.path.join(where, "config.json")) as f:
            cfg = json.load(f)
        cfg["root"]["path"] = rootfs
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["/bin/true"]
        return cfg

    ours = spec(kennel_oci, dest)
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(ours, f, indent=2)
    theirs = spec(runc, dest + ".runc-spec")
    shutil.rmtree(dest + ".runc-spec")
    diff = differences(ours, theirs)
    if diff:
        print(f"bench: note: `runc spec --rootless` differs from kennel-oci's in {', '.join(diff)}; both run kennel-oci's")
    return dest


def differences(a, b, path=""):
    """The paths (a.b.c) at which two JSON documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)]
    return [] if a == b else [path]


def spawn_wait(argv, file_actions):
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=file_actions)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"bench: {shlex.join(argv)} failed ({status:#x})")


def lifecycle_once(rt, root, bundle, cid, pid_file, quiet):
    """create, start, wait, delete: the four phases' durations in ms."""
    t0 = time.perf_counter_ns()
    spawn_wait([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pid_file, cid], quiet)
    t1 = time.perf_counter_ns()
    spawn_wait([rt, "--root", root, "start", cid], quiet)
    t2 = time.perf_counter_ns()
    with open(pid_file) as f:
        pid = int(f.read())
    # Ours since `create` exited (we are its subreaper).
    _, status = os.waitpid(pid, 0)
    t3 = time.perf_counter_ns()
    if status != 0:
        raise SystemExit(f"bench: the container of {rt} exited with {status:#x}")
    spawn_wait([rt, "--root", root, "delete", cid], quiet)
    t4 = time.perf_counter_ns()
    return [(b - a) / 1e6 for a, b in [(t0, t4), (t0, t1), (t1, t2), (t2, t3), (t3, t4)]]


PHASES = ["total", "create", "start", "wait", "delete"]


def time_lifecycle(runtimes, bundle, work, runs, warmup=10):
    """The lifecycle of each runtime in turn, `runs` times: medians of the
    total and of each phase, in ms. `bundle` is one bundle for all, or
    {name: bundle}."""
    devnull = os.open(os.devnull, os.O_RDWR)
    quiet = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    times = {name: [[] for _ in PHASES] for name in runtimes}
    for i in range(warmup + runs):
        for name, rt in runtimes.items():
            root = os.path.join(work, f"root-{name}")
            b = bundle[name] if isinstance(bundle, dict) else bundle
            phases = lifecycle_once(rt, root, b, f"bench-{i}", os.path.join(work, f"pid-{name}"), quiet)
            if i >= warmup:
                for t, v in zip(times[name], phases):
                    t.append(v)
    os.close(devnull)
    return {name: dict(zip(PHASES, map(statistics.median, t))) for name, t in times.items()}


def time_hyperfine(commands, runs, rounds, env=None):
    """hyperfine, each command's runs back to back in `rounds` rounds."""
    json_path = os.path.join(tempfile.mkdtemp(), "hyperfine.json")
    per_round = max(1, runs // rounds)
    times = {name: [] for name in commands}
    for _ in range(rounds):
        argv = ["hyperfine", "-N", "--warmup", "1", "--runs", str(per_round), "--export-json", json_path, "--style", "basic"]
        for name, cmd in commands.items():
            argv += ["--command-name", name, shlex.join(cmd)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        with open(json_path) as f:
            for r in json.load(f)["results"]:
                times[r["command"]].extend(r["times"])
    return {k: statistics.median(t) * 1000 for k, t in times.items()}


def table(title, medians, base):
    print(f"\n{title}, median (ms), ratio to {base}:")
    print(f"| command | median ms | x {base} |")
    print("|---|---|---|")
    for k, m in medians.items():
        print(f"| {k} | {m:.2f} | {m / medians[base]:.2f} |")
    return {"medians_ms": medians, "ratio_to": base, "ratios": {k: m / medians[base] for k, m in medians.items()}}


def time_podman_exec(p, runtimes, runs, env):
    """`podman exec NAME true` into a container of each runtime, left
    running meanwhile (podman execs through the runtime the container was
    made with): medians in ms. Run as the benchmark user."""
    def podman(*args, runtime=None):
        return subprocess.run(p.argv(*args, runtime=runtime), env=env, capture_output=True, text=True, cwd="/")

    names = {}
    try:
        for name, rt in runtimes.items():
            cname = f"bench-exec-{name}"
            podman("rm", "-f", cname)
            cp = podman("run", "-d", "--name", cname, IMAGE, "sleep", "100000", runtime=rt)
            if cp.returncode != 0:
                raise SystemExit(f"bench: podman run -d with {name} failed:\n{cp.stderr}")
            names[name] = cname
        cmds = {f"podman exec ({name})": p.argv("exec", cname, "true") for name, cname in names.items()}
        return time_interleaved(cmds, runs, 2, env)
    finally:
        for cname in names.values():
            podman("rm", "-f", "-t", "0", cname)


def measure(args):
    bindir, rootfs, work = args.as_user
    kennel_oci = os.path.join(bindir, "kennel-oci")
    runc = shutil.which("runc") or "/usr/sbin/runc"
    # Containers whose runtime exits before they do come to us, as they
    # come to conmon.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("bench: cannot become a child subreaper")
    bundle = make_bundle(kennel_oci, runc, rootfs, os.path.join(work, "bundle"))
    runtimes = {"kennel-oci": kennel_oci, "runc": runc}
    report = {}

    lc = time_lifecycle(runtimes, bundle, work, args.runs)
    print(f"\nOCI lifecycle of /bin/true (create, start, wait, delete), interleaved, {args.runs} runs each, median ms per phase:")
    print("| runtime | total | create | start | wait | delete | total x runc |")
    print("|---|---|---|---|---|---|---|")
    for name, m in lc.items():
        print(f"| {name} | " + " | ".join(f"{m[p]:.2f}" for p in PHASES) + f" | {m['total'] / lc['runc']['total']:.2f} |")
    report["lifecycle"] = {"runs": args.runs, "medians_ms": lc,
                           "ratio_to_runc": lc["kennel-oci"]["total"] / lc["runc"]["total"]}

    run_cmds = {f"{name} run": [rt, "--root", os.path.join(work, f"root-{name}"), "run", "--bundle", bundle, f"bench-run-{name}"]
                for name, rt in runtimes.items()}
    report["run"] = table(f"`run` of /bin/true (one runtime process), interleaved, {args.runs} runs each",
                          time_interleaved(run_cmds, args.runs, 10), "runc run")
    if args.hyperfine:
        report["run (hyperfine)"] = table(f"`run` of /bin/true, hyperfine in {args.rounds} rounds",
                                          time_hyperfine(run_cmds, args.runs, args.rounds), "runc run")

    # podman's conmon and pause process daemonize: they are init's to reap,
    # not ours.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

    if args.podman_runs:
        import conftest  # tests/, on the path through benchlib
        from test_podman import Podman

        user = conftest.TestUser(os.environ["USER"], os.getuid(), os.getgid(), os.environ["HOME"], os.environ["XDG_RUNTIME_DIR"])
        p = Podman(user, kennel_oci, os.path.join(work, "podman"))
        env = user.env(p.env)
        cmds = {f"podman --runtime {name}": p.argv("run", "--rm", IMAGE, "true", runtime=rt) for name, rt in runtimes.items()}
        for argv in cmds.values():
            cp = subprocess.run(argv, env=env, capture_output=True, text=True, cwd="/")
            if cp.returncode != 0:
                raise SystemExit(f"bench: {shlex.join(argv)} failed ({cp.returncode}):\n{cp.stderr}")
        report["podman"] = table(f"`podman run --rm IMAGE true`, interleaved, {args.podman_runs} runs each",
                                 time_interleaved(cmds, args.podman_runs, 2, env), "podman --runtime runc")
        report["podman exec"] = table(f"`podman exec` of true into a running container, interleaved, {args.podman_runs} runs each",
                                      time_podman_exec(p, runtimes, args.podman_runs, env), "podman exec (runc)")
        if args.hyperfine:
            report["podman (hyperfine)"] = table(
                f"`podman run --rm IMAGE true`, hyperfine in {min(args.rounds, args.podman_runs)} rounds",
                time_hyperfine(cmds, args.podman_runs, min(args.rounds, args.podman_runs), env), "podman --runtime runc")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


def measure_exe_guard(kennel_oci, rootfs, scratch, runs, report):
    """3. What the CVE-2019-5736 guard costs, as root without a user
    namespace (the only case where it can copy): the lifecycle and `exec`
    with podman's default capabilities (no copy, no check past the spec),
    with CAP_SYS_PTRACE and the binary on a read-only mount (the checks,
    no copy), and with CAP_SYS_PTRACE and the binary writable (a sealed
    copy per start and per exec)."""
    work = os.path.join(scratch, "guard")
    places = {"default caps": "rw", "ptrace, read-only binary": "ro", "ptrace, writable binary": "rw"}
    binaries = {}
    for kind in ("rw", "ro"):
        d = os.path.join(work, kind)
        os.makedirs(d)
        binaries[kind] = shutil.copy2(kennel_oci, os.path.join(d, "kennel-oci"))
    ro_dir = os.path.dirname(binaries["ro"])
    subprocess.run(["mount", "--bind", ro_dir, ro_dir], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", ro_dir, ro_dir], check=True)
    runtimes, bundles, execs = {}, {}, {}
    try:
        for name, kind in places.items():
            d = os.path.join(work, name.replace(" ", "-").replace(",", ""))
            subprocess.run([kennel_oci, "spec"], cwd=os.makedirs(d) or d, check=True)
            path = os.path.join(d, "config.json")
            with open(path) as f:
                cfg = json.load(f)
            cfg["root"]["path"] = rootfs
            cfg["process"]["terminal"] = False
            cfg["process"]["args"] = ["/bin/true"]
            if "ptrace" in name:
                for caps in cfg["process"]["capabilities"].values():
                    caps.append("CAP_SYS_PTRACE")
            with open(path, "w") as f:
                json.dump(cfg, f)
            runtimes[name], bundles[name] = binaries[kind], d
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise SystemExit("bench: cannot become a child subreaper")
        lc = time_lifecycle(runtimes, bundles, work, runs)
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        base = lc["default caps"]["total"]
        print(f"\nThe CVE-2019-5736 guard, root without a user namespace: lifecycle of /bin/true, interleaved, {runs} runs each:")
        print("| case | total ms | create ms | x default caps | cost per start ms |")
        print("|---|---|---|---|---|")
        for name, m in lc.items():
            print(f"| {name} | {m['total']:.2f} | {m['create']:.2f} | {m['total'] / base:.2f} | {m['total'] - base:+.2f} |")
        report["exe_guard_lifecycle"] = {"runs": runs, "medians_ms": lc}
        sleeper = exec_bundle(bundles["default caps"])
        for name, kind in (("exec, read-only binary", "ro"), ("exec, writable binary", "rw")):
            rt = [binaries[kind], "--root", os.path.join(work, f"exec-root-{kind}")]
            subprocess.run(rt + ["run", "-d", "--bundle", sleeper, "guard-exec"], check=True, stdout=subprocess.DEVNULL)
            execs[name] = rt + ["exec", "guard-exec", "/bin/true"]
        report["exe_guard_exec"] = table(f"`exec` of /bin/true into a running root container, interleaved, {runs} runs each",
                                         time_interleaved(execs, runs, 10), "exec, read-only binary")
    finally:
        for argv in execs.values():
            subprocess.run(argv[:3] + ["delete", "--force", "guard-exec"], check=False)
        subprocess.run(["umount", ro_dir], check=False)


def exec_bundle(bundle):
    """A copy of `bundle` whose process sleeps, for `exec` to enter."""
    dest = bundle + "-sleep"
    shutil.copytree(bundle, dest)
    path = os.path.join(dest, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/sleep", "3600"]
    with open(path, "w") as f:
        json.dump(cfg, f)
    return dest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--podman-runs", type=int, default=20)
    ap.add_argument("--hyperfine", action="store_true")
    ap.add_argument("--rounds", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--json")
    ap.add_argument("--as-user", nargs=3, metavar=("BINDIR", "ROOTFS", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    tools = [("runc", "runc"), ("setpriv", "util-linux")]
    if args.podman_runs:
        tools += [("podman", "podman"), ("conmon", "conmon"), ("fuse-overlayfs", "fuse-overlayfs"),
                  ("slirp4netns", "slirp4netns"), ("newuidmap", "uidmap")]
    if args.hyperfine:
        tools.append(("hyperfine", "hyperfine"))
    for tool, pkg in tools:
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            raise SystemExit(f"bench: {tool} is missing (Debian package {pkg}; packaging/install-deps.sh bench-oci)")
    if args.as_user:
        measure(args)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sudo make bench-oci): it sets up a test user and rootfs, then drops to that user")
    user, bindir, rootfs, scratch = setup_as_root(("kennel", "kennel-idmap", "kennel-oci"))
    podman = None
    try:
        guard = {}
        measure_exe_guard(os.path.join(bindir, "kennel-oci"), rootfs, scratch, args.runs // 3, guard)
        work = os.path.join(scratch, "work")
        os.mkdir(work, 0o755)
        os.chown(work, user.uid, user.gid)
        if args.podman_runs:
            import conftest
            from test_podman import private_podman

            base = os.path.join(work, "podman")
            os.mkdir(base, 0o755)
            os.chown(base, user.uid, user.gid)
            podman = private_podman(user, os.path.join(bindir, "kennel-oci"), base)
            tar = conftest.write_rootfs_tar(rootfs, os.path.join(scratch, "busybox-rootfs.tar"))
            os.chmod(tar, 0o644)
            cp = podman("import", tar, IMAGE)
            if cp.returncode != 0:
                raise SystemExit(f"bench: podman import failed:\n{cp.stderr}")
        out_json = os.path.abspath(args.json) if args.json else None
        if out_json:
            open(out_json, "w").close()
            os.chown(out_json, user.uid, user.gid)
        argv = [sys.executable, os.path.abspath(__file__), "--runs", str(args.runs), "--podman-runs", str(args.podman_runs),
                "--rounds", str(args.rounds), "--as-user", bindir, rootfs, work]
        argv += (["--json", out_json] if out_json else []) + (["--hyperfine"] if args.hyperfine else [])
        # podman's slirp4netns opens /dev/net/tun as the user, as pasta does.
        import conftest
        with conftest.tun_open_to_test_users(user, None):
            subprocess.run(user.argv(argv), env=user.env(), check=True, cwd="/")
        if out_json:
            with open(out_json) as f:
                report = json.load(f)
            report.update(guard)
            with open(out_json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        if podman:
            podman("rm", "--all", "--force", "--time", "0")
            podman.kill_leftovers()
        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


if __name__ == "__main__":
    main()
