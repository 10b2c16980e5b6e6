#!/usr/bin/env python3
"""Container start with a systemd scope and limits, side by side, in the VM.

Inside the test VM (a real systemd, cgroup v2; see tests/vm_machine.py), as
an ordinary user in their user manager, hyperfine times on the same busybox
rootfs, each with a 64M memory limit and a 100-process limit:
  * kennel with a transient scope from systemd (--cgroup-manager systemd),
    with its full subordinate id map through kennel-idmap, and with a single
    id as crun and runc map here,
  * crun with its systemd cgroup manager,
  * runc with its systemd cgroup driver,
  * kennel-oci with --systemd-cgroup,
  * kennel inside a Delegate=yes unit it may write (auto: no D-Bus at all).
crun, runc and kennel-oci `run` one bundle: runc's rootless starter
config (from `kennel-oci spec --rootless`, on the host) with the rootfs,
/bin/true, the limits and the user's single id mapped, each with its own
cgroupsPath (`app.slice:RUNTIME:bench`, which runc's systemd driver wants
and crun and kennel-oci read alike). It is edited as JSON, not with sed:
a second "resources" key next to the spec's own is a duplicate, which
crun's and runc's parsers each resolve in their own way and kennel-oci
refuses. Medians and ratios to crun are printed. The VM runs under TCG
(emulation), so absolute times are many times those on real hardware;
ratios are what carries over.

Run as root: `sudo make bench-vm` (needs `make build` first).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import vm_machine  # noqa: E402

RUNS = int(os.environ.get("RUNS", "30"))

SCRIPT = r'''
R=$HOME/bench-rootfs
rm -rf "$R" "$HOME/b-crun" "$HOME/b-runc" "$HOME/b-kennel-oci"
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/etc"
cp /bin/busybox "$R/bin/"; ln -s busybox "$R/bin/true"; ln -s busybox "$R/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
# OCI bundles: one config.json, written on the host (see bundle_config),
# for crun, runc and kennel-oci; only the systemd scope's name differs.
@@BUNDLES@@
cd "$HOME"
echo "@@CHECK@@"
kennel run --cgroup-manager systemd --rootfs "$R" --memory 64M --pids-limit 100 -- /bin/true && echo kennel-ok
crun --cgroup-manager=systemd run -b "$HOME/b-crun" check-crun && echo crun-ok
runc --systemd-cgroup run -b "$HOME/b-runc" check-runc && echo runc-ok
kennel-oci --systemd-cgroup run -b "$HOME/b-kennel-oci" check-oci && echo kennel-oci-ok
mkdir -p ~/.config/systemd/user
# crun and runc delete their container after `run`, so one id serves every run.
hyperfine -N --warmup 3 --runs RUNS --export-json "$HOME/h.json" --style none \
  -n "kennel (systemd scope + limits)" "kennel run --cgroup-manager systemd --rootfs $R --memory 64M --pids-limit 100 -- /bin/true" \
  -n "kennel --userns=single (one id, as crun and runc here)" "kennel run --userns=single --cgroup-manager systemd --rootfs $R --memory 64M --pids-limit 100 -- /bin/true" \
  -n "crun (systemd cgroup manager)" "crun --cgroup-manager=systemd run -b $HOME/b-crun bench-crun" \
  -n "runc (systemd cgroup driver)" "runc --systemd-cgroup run -b $HOME/b-runc bench-runc" \
  -n "kennel-oci (systemd cgroup driver)" "kennel-oci --systemd-cgroup run -b $HOME/b-kennel-oci bench-oci" >/dev/null
echo "@@JSON@@"; cat "$HOME/h.json" | tr -d '\n'; echo; echo "@@END@@"
# kennel inside a unit with Delegate=yes: no D-Bus call at all.
cat > ~/.config/systemd/user/kb.service <<EOF
[Service]
Type=oneshot
Delegate=yes
ExecStart=/usr/bin/hyperfine -N --warmup 3 --runs RUNS --export-json $HOME/d.json --style none "/usr/local/bin/kennel run --rootfs $R --memory 64M --pids-limit 100 -- /bin/true"
EOF
systemctl --user daemon-reload; systemctl --user start kb
echo "@@DELEGATED@@"; cat "$HOME/d.json" | tr -d '\n'; echo; echo "@@END@@"
'''.replace("RUNS", str(RUNS))


ROOTFS = "/home/kuser/bench-rootfs"  # $HOME/bench-rootfs in SCRIPT


def bundle_config(kennel_oci, runtime):
    """config.json for `runtime`'s bundle in the VM, as a shell command
    writing it to ~/b-RUNTIME."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([kennel_oci, "spec", "--rootless"], cwd=d, check=True)
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
    # Debian 12's crun 1.8 takes only 1.0.x (runc's spec says 1.0.2-dev).
    cfg["ociVersion"] = "1.0.2"
    cfg["root"]["path"] = ROOTFS
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    linux = cfg["linux"]
    # Limits, as kennel gets them.
    linux.setdefault("resources", {}).update({"memory": {"limit": 64 << 20}, "pids": {"limit": 100}})
    linux["cgroupsPath"] = f"app.slice:{runtime}:bench"
    # One id, the VM user's (the spec names whoever ran it).
    uid = vm_machine.USER_UID
    linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    text = json.dumps(cfg, indent=1)
    return f"mkdir -p $HOME/b-{runtime}\ncat > $HOME/b-{runtime}/config.json <<'EOF'\n{text}\nEOF"


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sudo make bench-vm)")
    ok, why = vm_machine.vm_available()
    if not ok:
        raise SystemExit(f"bench: {why}")
    build = os.environ.get("KENNEL_BUILD_DIR", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "release"))
    binaries = {b: os.path.join(build, b) for b in ["kennel", "kennel-idmap", "kennel-oci"]}
    script = SCRIPT.replace("@@BUNDLES@@", "\n".join(bundle_config(binaries["kennel-oci"], rt) for rt in ["crun", "runc", "kennel-oci"]))
    res = vm_machine.run_batch([("bench", "kuser", script, 1500)], binaries)["bench"]
    out = res.output
    check = out.split("@@CHECK@@")[-1].split("@@JSON@@")[0]
    for rt in ["kennel", "crun", "runc", "kennel-oci"]:
        if f"{rt}-ok" not in check:
            print(f"bench: {rt} did not run in the VM:\n{check}")
    m = re.search(r"@@JSON@@\n(.*?)\n@@END@@", out, re.S)
    if not m:
        raise SystemExit(f"bench: no results from the VM:\n{out[-3000:]}")
    medians = {r["command"]: r["median"] * 1000 for r in json.loads(m.group(1))["results"]}
    d = re.search(r"@@DELEGATED@@\n(.*?)\n@@END@@", out, re.S)
    if d and d.group(1).strip():
        medians["kennel (inside a Delegate=yes unit, no D-Bus)"] = json.loads(d.group(1))["results"][0]["median"] * 1000
    crun = medians.get("crun (systemd cgroup manager)")
    print(f"\nStart with a systemd-managed cgroup and limits, in the VM (TCG), {RUNS} runs each:")
    print("| command | median ms | x crun |")
    print("|---|---|---|")
    for k, v in medians.items():
        print(f"| {k} | {v:.1f} | {v / crun:.2f} |" if crun else f"| {k} | {v:.1f} | - |")


if __name__ == "__main__":
    main()
