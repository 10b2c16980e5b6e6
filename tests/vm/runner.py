"""Boot the test VM once and run a batch of shell cases in it.

    results = run_batch([("name", "kuser", "script text", 60), ...],
                        {"kennel": "/path/kennel", "kennel-idmap": "/path/kennel-idmap"})
    results["name"].rc, results["name"].output

See README.md beside this file. The VM is the cached base image from
image.py (booted with snapshot=on, so it is never changed) plus a small
read-only payload disk made for this batch: the binaries, one script per
case and run.sh, which a boot-time unit in the image runs. Case output comes
back framed on the VM's second serial port (results.log); the first one is
the kernel's and systemd's console (console.log), shown when a case did not
finish. Nothing runs on the host but mkfs.ext4 and qemu.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from . import image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALL_DEPS = os.path.join(REPO, "packaging", "install-vm-deps.sh")

USERS = ("root", image.USER)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Power-on to the payload's first line is about 15 s under TCG on an idle
# 2-core machine; a loaded CI machine may be several times slower.
BOOT_TIMEOUT = int(os.environ.get("KENNEL_VM_BOOT_TIMEOUT", "240"))
MEMORY_MB = 1536
CPUS = 2

# run.sh: installs the binaries, waits for kuser's user manager, runs each
# case with its timeout and frames its output. Generated per batch, so
# changing it never rebuilds the base image.
RUN_SH = r"""#!/bin/sh
# Written by tests/vm/runner.py for one batch.
P=/payload
U=@USER@
note() { echo "@@KENNEL-VM-NOTE $*@@"; }
# Runs "$@" as $U, a client of $U's user manager: just the uid, gid and the
# two variables that find the bus (systemd-run -M $U@.host --user does the
# same through a PAM session and a bridge process, and costs about 0.8 s more
# per call under emulation).
# (A word list, not a function, so that `timeout` can run it.)
AS_USER="setpriv --reuid=@UID@ --regid=$(id -g "$U") --init-groups env -i HOME=/home/$U USER=$U LOGNAME=$U
  PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR=/run/user/@UID@ DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/@UID@/bus"

for f in "$P"/bin/*; do
  [ -f "$f" ] || continue
  n=${f##*/}
  case "$n" in
    kennel-idmap)
      install -D -m 0755 "$f" "/usr/local/libexec/kennel/$n" \
        && setcap cap_setuid,cap_setgid=ep "/usr/local/libexec/kennel/$n" \
        || note "cannot install $n" ;;
    *) install -m 0755 "$f" "/usr/local/bin/$n" || note "cannot install $n" ;;
  esac
done

# kennel-vm-run.service is ordered after user@UID.service, whose start job
# ends when the user manager is up; its bus socket comes with it.
i=0
while [ ! -S /run/user/@UID@/bus ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
[ -S /run/user/@UID@/bus ] || note "no user bus /run/user/@UID@/bus after 60 s: $(systemctl is-active user@@UID@.service)"
echo "@@KENNEL-VM-READY $(cut -d' ' -f1 /proc/uptime)@@"

run_case() {
  name=$1 user=$2 t=$3
  echo "@@KENNEL-CASE-BEGIN $name@@"
  start=$(cut -d' ' -f1 /proc/uptime)
  if [ "$user" = root ]; then
    (cd /root && exec timeout -k 5 "$t" /bin/sh "$P/cases/$name.sh") </dev/null 2>&1
    rc=$?
  else
    # A transient service of kuser's user manager: the case runs in
    # user@UID.service/app.slice/vmcase-NAME.service with the manager's
    # environment (XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS, HOME, PATH), as
    # a login session's commands would. --pipe hands it this output.
    set --
    if [ -f "$P/cases/$name.props" ]; then
      while IFS= read -r prop; do set -- "$@" -p "$prop"; done <"$P/cases/$name.props"
    fi
    timeout -k 5 "$t" $AS_USER systemd-run --user --wait --pipe --quiet --collect \
      --unit="vmcase-$name" -p WorkingDirectory=~ "$@" -- /bin/sh "$P/cases/$name.sh" </dev/null 2>&1
    rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
      $AS_USER systemctl --user kill --signal=KILL "vmcase-$name.service" 2>/dev/null
      $AS_USER systemctl --user stop "vmcase-$name.service" 2>/dev/null
      $AS_USER systemctl --user reset-failed "vmcase-$name.service" 2>/dev/null
    fi
  fi
  [ $rc = 124 ] || [ $rc = 137 ] && echo "@@KENNEL-CASE-TIMEOUT $name@@"
  end=$(cut -d' ' -f1 /proc/uptime)
  printf '\n@@KENNEL-CASE-END %s rc=%s@@\n' "$name" "$rc"
  echo "@@KENNEL-CASE-TIME $name $start $end@@"
}

"""


@dataclass
class CaseResult:
    """What one case did. `rc` is the script's exit status (124 or 137 when
    it timed out, -1 when it never finished: the VM died or the batch ran out
    of time); `output` is its stdout and stderr interleaved, or, when it
    did not finish, what it printed followed by the tail of the VM's
    console."""

    name: str
    rc: int
    output: str
    finished: bool = True
    timed_out: bool = False
    seconds: Optional[float] = None

    @property
    def ok(self):
        return self.finished and self.rc == 0

    def __str__(self):
        state = f"rc={self.rc}" if self.finished else "did not finish"
        if self.timed_out:
            state += " (timed out)"
        return f"case {self.name}: {state}\n--- output ---\n{self.output}\n--- end ---"


class BatchResults(dict):
    """{name: CaseResult}, with the batch's timings (seconds since qemu
    started): `ready_s` when the VM was ready to run cases, `total_s` when
    the results were in."""

    ready_s: Optional[float] = None
    total_s: Optional[float] = None


def _tool(name):
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _missing():
    """What the VM tests lack on this host, as reasons (empty when none)."""
    why = []
    for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"),
                      ("mkfs.ext4", "e2fsprogs")]:
        if not _tool(tool):
            why.append(f"{tool} is missing (Debian package {pkg})")
    if not image.kernel()[0]:
        why.append("no /boot/vmlinuz-* with its modules in /lib/modules (Debian package linux-image-amd64)")
    return why


def vm_available(install=False):
    """(True, "") when the VM can be built and booted here, else (False, why).
    With install=True, as root, first runs packaging/install-vm-deps.sh for
    whatever is missing, so the answer is "no" only where it cannot be
    installed."""
    if os.geteuid() != 0:
        return False, "the VM tests run as root (debootstrap, chroot and the image cache need it)"
    why = _missing()
    if why and install and os.path.exists(INSTALL_DEPS):
        p = subprocess.run([INSTALL_DEPS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        why = _missing()
        if why:
            why.append(f"{INSTALL_DEPS} said: {p.stdout.strip()[-500:]}")
    if why:
        return False, "; ".join(why) + " (packaging/install-vm-deps.sh installs them)"
    return True, ""


WORKDIR_PREFIX = "kennel-vmbatch-"


def _remove_stale_workdirs():
    """Removes the temporary directories of batches whose test process was
    killed (and so could not clean up)."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), WORKDIR_PREFIX + "*")):
        try:
            pid = int(open(os.path.join(d, "owner.pid")).read())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _write(path, text, mode):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _check_cases(cases):
    seen = set()
    for case in cases:
        if len(case) not in (4, 5):
            raise ValueError(f"vm: a case is (name, user, script, timeout_s[, properties]), not {case!r}")
        name, user, script, timeout = case[:4]
        props = case[4] if len(case) == 5 else []
        if not NAME_RE.match(name):
            raise ValueError(f"vm: case name {name!r}: use letters, digits, _ . - (at most 64)")
        if name in seen:
            raise ValueError(f"vm: case name {name!r} twice in one batch")
        seen.add(name)
        if user not in USERS:
            raise ValueError(f"vm: case {name}: user must be one of {USERS}, not {user!r}")
        if not isinstance(script, str):
            raise ValueError(f"vm: case {name}: the script is a str")
        if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
            raise ValueError(f"vm: case {name}: timeout_s must be a number of seconds in (0, 3600]")
        if props and user == "root":
            raise ValueError(f"vm: case {name}: unit properties are for kuser cases (root cases run in sh)")
        if not isinstance(props, (list, tuple)) or any(
                not isinstance(p, str) or "=" not in p or "\n" in p for p in props):
            raise ValueError(f"vm: case {name}: properties are a list of 'Key=Value' strings")


def _payload(work, cases, binaries):
    """The payload disk image for this batch."""
    root = os.path.join(work, "payload")
    for d in ["", "bin", "cases"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
        os.chmod(os.path.join(root, d), 0o755)
    size = 0
    for name, src in binaries.items():
        if not NAME_RE.match(name):
            raise ValueError(f"vm: binary name {name!r}: use letters, digits, _ . -")
        if not os.path.isfile(src):
            raise FileNotFoundError(f"vm: binary {name}: {src} does not exist")
        dst = os.path.join(root, "bin", name)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        size += os.path.getsize(dst)
    run = RUN_SH.replace("@USER@", image.USER).replace("@UID@", str(image.USER_UID))
    for case in cases:
        name, user, script, timeout = case[:4]
        _write(os.path.join(root, "cases", f"{name}.sh"), script, 0o755)
        if len(case) == 5 and case[4]:
            _write(os.path.join(root, "cases", f"{name}.props"), "".join(p + "\n" for p in case[4]), 0o644)
        size += len(script.encode())
        run += f"run_case {name} {user} {int(timeout + 0.999)}\n"
    # Printed here, not after run.sh ends: a case may leave a process behind
    # that holds the output pipe open.
    run += 'echo "@@KENNEL-VM-DONE@@"\n'
    _write(os.path.join(root, "run.sh"), run, 0o755)
    mb = 16 + (size * 5 // 4) // (1 << 20)
    img = os.path.join(work, "payload.img")
    p = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "payload", "-E", "root_owner=0:0", "-d", root, img, f"{mb}M"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"vm: mkfs.ext4 for the payload disk failed: {p.stdout}")
    return img


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


def parse_results(text, names, console=""):
    """{name: CaseResult} from the framed results text; a case without its
    END marker did not finish, and shows what it printed plus the console's
    tail."""
    results = BatchResults()
    notes = re.findall(r"@@KENNEL-VM-(?:NOTE|ERROR) (.*?)@@", text)
    for name in names:
        q = re.escape(name)
        begin = re.search(rf"@@KENNEL-CASE-BEGIN {q}@@\n", text)
        end = re.search(rf"\n@@KENNEL-CASE-END {q} rc=(-?\d+)@@\n", text)
        timed = re.search(rf"@@KENNEL-CASE-TIMEOUT {q}@@", text) is not None
        if begin and end and end.start() >= begin.end() - 1:
            out = text[begin.end():end.start()]
            out = out.replace(f"@@KENNEL-CASE-TIMEOUT {name}@@\n", "")
            t = re.search(rf"@@KENNEL-CASE-TIME {q} ([\d.]+) ([\d.]+)@@", text)
            secs = float(t.group(2)) - float(t.group(1)) if t else None
            if timed:
                out += "\n[vm: the case timed out and was killed]"
            results[name] = CaseResult(name, int(end.group(1)), out, True, timed, secs)
            continue
        if begin:
            partial = text[begin.end():]
            partial = re.split(r"@@KENNEL-CASE-BEGIN ", partial)[0]
            why = "it started but did not finish"
        else:
            partial = ""
            why = "it never started"
        extra = "".join(f"\nvm note: {n}" for n in notes)
        out = (f"[vm: case {name} did not finish: {why}]{extra}\n{partial}\n"
               f"--- VM console (tail) ---\n{_tail(console)}\n--- results port (tail) ---\n{_tail(text, 20)}")
        results[name] = CaseResult(name, -1, out, False, False, None)
    return results


def run_batch(cases, binaries, progress=None, boot_timeout=BOOT_TIMEOUT):
    """Boots the VM once, runs `cases` in order and returns BatchResults
    {name: CaseResult}.

    cases: [(name, user, script_text, timeout_s)], user "root" or "kuser";
    a kuser case may have a fifth element, a list of "Key=Value" unit
    properties for its transient service (systemd-run -p), e.g.
    ["Delegate=yes"];
    binaries: {file name: host path}, installed before the first case
    (kennel-idmap into /usr/local/libexec/kennel with its capabilities,
    everything else into /usr/local/bin)."""
    progress = progress or image.log
    cases = list(cases)
    _check_cases(cases)
    ok, why = vm_available()
    if not ok:
        raise RuntimeError(f"vm: cannot run: {why}")
    kpath, _, _ = image.kernel()
    base = image.base_image(progress)
    initrd = image.initrd_path(base)

    _remove_stale_workdirs()
    work = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
    keep = os.environ.get("KENNEL_VM_KEEP") == "1"
    try:
        _write(os.path.join(work, "owner.pid"), str(os.getpid()), 0o644)
        payload = _payload(work, cases, binaries)
        console = os.path.join(work, "console.log")
        results_log = os.path.join(work, "results.log")
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", str(MEMORY_MB), "-smp", str(CPUS),
            "-kernel", kpath, "-initrd", initrd,
            "-append", "console=ttyS0 root=/dev/vda rw quiet panic=-1",
            "-drive", f"file={base},format=raw,if=virtio,snapshot=on",
            "-drive", f"file={payload},format=raw,if=virtio,readonly=on",
            "-display", "none", "-vga", "none", "-nic", "none", "-no-reboot", "-monitor", "none",
            "-serial", f"file:{console}", "-serial", f"file:{results_log}",
        ]
        budget = boot_timeout + sum(c[3] + 15 for c in cases)
        progress(f"vm: booting for {len(cases)} case(s) (qemu TCG; about 15 s to boot)...")
        started = time.monotonic()
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=image.die_with_parent)
        ready = None
        reported = set()
        why_stopped = None
        seen_size = -1
        text = ""
        try:
            while True:
                time.sleep(0.2)
                now = time.monotonic() - started
                size = os.path.getsize(results_log) if os.path.exists(results_log) else 0
                if size != seen_size:
                    seen_size = size
                    text = _read(results_log)
                for m in re.finditer(r"@@KENNEL-VM-(?:NOTE|ERROR) (.*?)@@", text):
                    if m.group(0) not in reported:
                        reported.add(m.group(0))
                        progress(f"vm: {m.group(1)}")
                if ready is None and "@@KENNEL-VM-READY" in text:
                    ready = now
                    progress(f"vm: ready after {ready:.1f}s")
                for m in re.finditer(r"@@KENNEL-CASE-END (\S+) rc=(-?\d+)@@", text):
                    if m.group(0) not in reported:
                        reported.add(m.group(0))
                        progress(f"vm: case {m.group(1)}: rc={m.group(2)} ({now:.0f}s)")
                if "@@KENNEL-VM-DONE" in text or "@@KENNEL-VM-ERROR" in text:
                    break  # no need to wait for the power-off: nothing is written back
                if qemu.poll() is not None:
                    text = _read(results_log)
                    if "@@KENNEL-VM-DONE" not in text:
                        out = qemu.stdout.read().decode("utf-8", "replace").strip()
                        why_stopped = f"qemu exited with status {qemu.returncode} before the batch was done: {out[-2000:]}"
                    break
                if ready is None and now > boot_timeout:
                    why_stopped = f"the VM was not ready within {boot_timeout}s"
                    break
                if now > budget:
                    why_stopped = f"the batch did not finish within {budget}s"
                    break
        finally:
            if qemu.poll() is None:
                qemu.terminate()
                try:
                    qemu.wait(10)
                except subprocess.TimeoutExpired:
                    qemu.kill()
                    qemu.wait()
        total = time.monotonic() - started
        text = _read(results_log)
        console_text = _read(console)
        if why_stopped:
            progress(f"vm: {why_stopped}")
            console_text = f"[vm: {why_stopped}]\n" + console_text
        results = parse_results(text, [c[0] for c in cases], console_text)
        results.ready_s = ready
        results.total_s = total
        progress(f"vm: {sum(r.finished for r in results.values())}/{len(cases)} case(s) finished; "
                 f"{total:.1f}s from power-on")
        return results
    finally:
        if keep:
            progress(f"vm: KENNEL_VM_KEEP=1: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    # A quick manual check: python3 -m vm.runner 'script' [user]
    script = sys.argv[1] if len(sys.argv) > 1 else "id; cat /proc/self/cgroup"
    user = sys.argv[2] if len(sys.argv) > 2 else "root"
    r = run_batch([("manual", user, script, 60)], {})
    print(r["manual"])
