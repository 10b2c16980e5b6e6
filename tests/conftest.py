"""Shared harness for kennel's integration tests.

The suite runs as root (CI does), but every container is started by an
ordinary user, as it is in real life. The harness therefore:
  * creates the test users (with and without /etc/subuid and /etc/subgid
    entries) and their runtime directories,
  * copies the freshly built binaries into a world-readable directory and
    gives kennel-idmap its file capabilities there,
  * builds a busybox root filesystem owned by the test user.
A precondition that cannot be met is a printed skip, never a silent pass.
"""

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.environ.get("KENNEL_BUILD_DIR", os.path.join(REPO, "target", "release"))

# Users the harness manages.
USER = "kennel-test"
OTHER_USER = "kennel-test2"
NOSUB_USER = "kennel-nosub"
SUBID_COUNT = 65536
# Where useradd starts giving out subordinate ids (SUB_UID_MIN).
SUBID_MIN = 100000


def parse_subids(text):
    """(owner, start, count) of each line of a subordinate id file that
    names a range, read as leniently as kennel does when it looks for free
    ids: spaces or a sign around the numbers, extra fields."""
    entries = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if line.strip().startswith("#") or len(fields) < 3:
            continue
        nums = [re.fullmatch(r"\s*\+?([0-9]+)\s*", f) for f in fields[1:3]]
        if all(nums) and int(nums[1].group(1)) > 0:
            entries.append((fields[0], int(nums[0].group(1)), int(nums[1].group(1))))
    return entries


def read_subids(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_subids(f.read())
    except FileNotFoundError:
        return []


def overlaps(a_start, a_count, b_start, b_count):
    return a_start < b_start + b_count and b_start < a_start + a_count


def first_free_block(taken):
    """The lowest SUBID_COUNT-aligned block of SUBID_COUNT ids at or above
    SUBID_MIN that overlaps none of `taken` ((start, count) pairs), by
    brute force; None if there is none below id 4294967295."""
    start = -(-SUBID_MIN // SUBID_COUNT) * SUBID_COUNT
    while start + SUBID_COUNT <= 4294967295:
        if not any(overlaps(start, SUBID_COUNT, s, c) for s, c in taken):
            return start
        start += SUBID_COUNT
    return None


def plan_subid_blocks(subuid, subgid):
    """The block (start) of USER and of OTHER_USER in both files, and one
    block no entry uses, given the files' entries. A user keeps the single
    block an earlier run gave it (the same in both files) while nobody
    else's entry overlaps it; otherwise it gets the first free block, so on
    a machine with more users the harness takes nobody's ids."""
    managed = {USER, OTHER_USER, NOSUB_USER}
    taken = [(s, c) for owner, s, c in subuid + subgid if owner not in managed]
    plan = {}
    for name in (USER, OTHER_USER):
        mine = {(s, c) for owner, s, c in subuid if owner == name}
        if len(mine) == 1 and mine == {(s, c) for owner, s, c in subgid if owner == name}:
            start, count = mine.pop()
            if count == SUBID_COUNT and not any(overlaps(start, count, s, c) for s, c in taken):
                plan[name] = start
                taken.append((start, count))
    for name in (USER, OTHER_USER, None):
        if name not in plan:
            start = first_free_block(taken)
            if start is None:
                raise RuntimeError("no free block of subordinate ids is left in /etc/subuid and /etc/subgid")
            plan[name] = start
            taken.append((start, SUBID_COUNT))
    return plan[USER], plan[OTHER_USER], plan[None]


# Chosen when this module is imported, before any test module is: tests use
# the numbers in their parameters. The `h` fixture writes them.
USER_SUBID_START, OTHER_SUBID_START, UNUSED_SUBID_START = plan_subid_blocks(
    read_subids("/etc/subuid"), read_subids("/etc/subgid"))


def _ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
        return pwd.getpwnam(name)


def _write_lines(path, lines):
    """Replaces `path` with `lines` in one rename: kennel-idmap, run at the
    same moment by another test session, must never read a half-written
    (or truncated, empty) /etc/subuid, which would refuse its maps."""
    tmp = f"{path}.kennel-tests.{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(lines)
    try:
        st = os.stat(path)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
    except FileNotFoundError:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _ensure_subid(path, name, start, count):
    line = f"{name}:{start}:{count}\n"
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        lines = []
    kept = [l for l in lines if not l.startswith(name + ":")]
    if kept + [line] != lines:
        _write_lines(path, kept + [line])


def _drop_subid(path, name):
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return
    kept = [l for l in lines if not l.startswith(name + ":")]
    if kept != lines:
        _write_lines(path, kept)


@contextlib.contextmanager
def subid_lines_added(lines, files=("/etc/subuid", "/etc/subgid")):
    """Appends `lines` to each of `files` for the duration, then removes
    exactly those lines again, so a change someone else makes meanwhile
    survives."""
    added = [line.rstrip("\n") + "\n" for line in lines]
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        with open(path, "a") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + "".join(added))
    try:
        yield
    finally:
        for path in files:
            with open(path) as f:
                kept = f.readlines()
            for line in added:
                # The last copy is ours: an identical older line stays.
                hits = [i for i, l in enumerate(kept) if l == line]
                if hits:
                    del kept[hits[-1]]
            _write_lines(path, kept)


def _runtime_dir(pw):
    path = f"/run/user/{pw.pw_uid}"
    os.makedirs(path, exist_ok=True)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o700)
    return path


@dataclass
class TestUser:
    name: str
    uid: int
    gid: int
    home: str
    # None: XDG_RUNTIME_DIR is left unset, as after `su -` or in cron.
    runtime_dir: str | None
    subid_start: int | None = None

    def env(self, extra=None):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "LANG": "C.UTF-8",
        }
        if self.runtime_dir is not None:
            env["XDG_RUNTIME_DIR"] = self.runtime_dir
        if extra:
            env.update(extra)
        return env

    def argv(self, argv, no_new_privs=False):
        prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        if no_new_privs:
            prefix.append("--no-new-privs")
        return prefix + ["--"] + list(argv)

    def run(self, argv, *, env=None, timeout=60, input=None, no_new_privs=False, cwd=None, **kw):
        """Run argv as this user and return the CompletedProcess (text mode)."""
        return subprocess.run(
            self.argv(argv, no_new_privs),
            env=self.env(env),
            timeout=timeout,
            input=input,
            capture_output=True,
            text=True,
            cwd=cwd or "/",
            **kw,
        )

    def popen(self, argv, *, env=None, no_new_privs=False, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        kw.setdefault("cwd", "/")
        return subprocess.Popen(self.argv(argv, no_new_privs), env=self.env(env), **kw)


# What the harness changed on this machine for the session, printed with
# pytest's summary.
SESSION_NOTES = []


def note(config, text):
    """Says `text` at once, past pytest's capture, and again in the summary
    (on stderr when `config` is None: the benchmarks)."""
    if config is None:
        print(f"kennel: {text}", file=sys.stderr)
        return
    SESSION_NOTES.append(text)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"kennel tests: {text}")


def pytest_terminal_summary(terminalreporter):
    if SESSION_NOTES:
        terminalreporter.section("what the kennel test harness changed")
        for text in SESSION_NOTES:
            terminalreporter.write_line(text)


TUN = "/dev/net/tun"


def can_open_tun(user, wrap=lambda argv: argv):
    """(whether `user` can open /dev/net/tun read-write, as pasta must; the
    error if not). `wrap` puts the command in another setting (a private
    mount namespace)."""
    probe = f"import os; os.close(os.open({TUN!r}, os.O_RDWR | os.O_CLOEXEC))"
    cp = subprocess.run(wrap(user.argv([sys.executable, "-c", probe])), env=user.env(),
                        capture_output=True, text=True, timeout=30)
    return cp.returncode == 0, (cp.stderr.strip().splitlines() or [""])[-1]


@contextlib.contextmanager
def _tun_sessions():
    """The record, shared by the test sessions running on this machine, of
    which of them need /dev/net/tun widened and what its mode was:
    {"mode": ..., "pids": [...]}, live pids only. Held under a lock taken
    on the node itself, which every session sees; kept per node (device
    and inode), as a session in a private mount namespace may see
    another."""
    with open(TUN, "rb", buffering=0) as node:
        fcntl.flock(node, fcntl.LOCK_EX)
        st = os.fstat(node.fileno())
        path = f"/run/kennel-tests-tun.{st.st_dev}.{st.st_ino}.json"
        try:
            with open(path) as f:
                record = json.load(f)
        except (FileNotFoundError, ValueError):
            record = {}
        record["pids"] = [p for p in record.get("pids", []) if os.path.exists(f"/proc/{p}")]
        record.setdefault("mode", st.st_mode & 0o7777)
        yield record
        if record["pids"]:
            with open(path, "w") as f:
                json.dump(record, f)
        elif os.path.exists(path):
            os.unlink(path)


@contextlib.contextmanager
def tun_open_to_test_users(user, config):
    """Makes /dev/net/tun 0666 for the session when `user` cannot open it
    (Debian without udev's rules: containers, minimal VMs): every rootless
    `kennel run --rootfs` uses pasta, which opens it as the user. Its mode
    is put back after. A session that finds it widened by another one
    still running counts itself in (see `_tun_sessions`), so the last of
    them to end restores it."""
    if not os.path.exists(TUN):
        yield
        return
    with _tun_sessions() as record:
        widened_by_others = bool(record["pids"])
        opened, why = can_open_tun(user)
        mine = widened_by_others or not opened
        if mine:
            if not widened_by_others:
                record["mode"] = os.stat(TUN).st_mode & 0o7777
                os.chmod(TUN, 0o666)
                note(config, f"{user.name} cannot open {TUN} (mode {record['mode']:04o}: {why}); made it 0666 "
                             "for this session, so pasta's tests run; its mode is put back at the end")
            else:
                note(config, f"{TUN} is 0666 for another test session still running (pids {record['pids']}); "
                             "the last of them to end puts its mode back")
            record["pids"].append(os.getpid())
    if mine and not can_open_tun(user)[0]:
        note(config, f"{user.name} cannot open {TUN} even at 0666 (a device cgroup?): tests through pasta fail")
    try:
        yield
    finally:
        if mine:
            with _tun_sessions() as record:
                record["pids"] = [p for p in record["pids"] if p != os.getpid()]
                # Not when someone has set another mode meanwhile.
                if not record["pids"] and os.stat(TUN).st_mode & 0o7777 == 0o666:
                    os.chmod(TUN, record["mode"])
                    note(config, f"{TUN} is mode {record['mode']:04o} again")


@dataclass
class Harness:
    bindir: str
    kennel: str
    idmap: str
    rootfs: str
    user: TestUser
    other: TestUser
    nosub: TestUser
    scratch: str
    notes: list = field(default_factory=list)

    def tempdir(self, owner=None, mode=0o755):
        path = tempfile.mkdtemp(dir=self.scratch)
        os.chmod(path, mode)
        owner = owner or self.user
        os.chown(path, owner.uid, owner.gid)
        return path


def _build_rootfs(dest, owner):
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed (make test-deps installs it)")
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "home/user", "usr/bin", "var"]:
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    for applet in out.split():
        link = os.path.join(dest, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n")
    # Helpers the tests run inside the container.
    with open(os.path.join(dest, "bin", "not-executable"), "w") as f:
        f.write("#!/bin/sh\necho never\n")
    os.chmod(os.path.join(dest, "bin", "not-executable"), 0o644)
    subprocess.run(["chown", "-R", f"{owner.uid}:{owner.gid}", dest], check=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)


@pytest.fixture(scope="session")
def h(tmp_path_factory, request):
    if os.geteuid() != 0:
        pytest.skip("integration tests run as root: they create test users and set file capabilities")
    for tool in ["setpriv", "setcap", "useradd"]:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing (make test-deps installs it)")
    kennel_built = os.path.join(BUILD_DIR, "kennel")
    idmap_built = os.path.join(BUILD_DIR, "kennel-idmap")
    for b in [kennel_built, idmap_built]:
        if not os.path.exists(b):
            pytest.fail(f"{b} is not built: run `make` first (make test does)")

    users = {}
    for name, start in [(USER, USER_SUBID_START), (OTHER_USER, OTHER_SUBID_START), (NOSUB_USER, None)]:
        pw = _ensure_user(name)
        if start is None:
            _drop_subid("/etc/subuid", name)
            _drop_subid("/etc/subgid", name)
        else:
            _ensure_subid("/etc/subuid", name, start, SUBID_COUNT)
            _ensure_subid("/etc/subgid", name, start, SUBID_COUNT)
        users[name] = TestUser(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, _runtime_dir(pw), start)

    # Everything the test users touch lives under one world-traversable dir.
    scratch = tempfile.mkdtemp(prefix="kennel-tests-")
    os.chmod(scratch, 0o755)
    bindir = os.path.join(scratch, "bin")
    os.mkdir(bindir, 0o755)
    kennel = os.path.join(bindir, "kennel")
    idmap = os.path.join(bindir, "kennel-idmap")
    shutil.copy2(kennel_built, kennel)
    shutil.copy2(idmap_built, idmap)
    os.chmod(kennel, 0o755)
    os.chmod(idmap, 0o755)
    subprocess.run(["setcap", "cap_setuid,cap_setgid=ep", idmap], check=True)

    rootfs = os.path.join(scratch, "rootfs")
    _build_rootfs(rootfs, users[USER])

    harness = Harness(bindir, kennel, idmap, rootfs, users[USER], users[OTHER_USER], users[NOSUB_USER], scratch)
    with tun_open_to_test_users(users[USER], request.config):
        yield harness
    subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


@contextlib.contextmanager
def nosuid_copies(h, sources, caps):
    """Copies of the files `sources` on a tmpfs mounted nosuid, where the
    kernel ignores file capabilities; `caps` maps a base name to the file
    capabilities its copy gets (`cap_net_admin=ep`). Yields {base name:
    path} and unmounts after. Skips, saying why, where a tmpfs cannot be
    mounted or hold file capabilities."""
    mnt = h.tempdir()
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,mode=0755", "tmpfs", mnt],
                        capture_output=True, text=True)
    if cp.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {cp.stderr.strip()}")
    try:
        paths = {}
        for source in sources:
            name = os.path.basename(source)
            paths[name] = os.path.join(mnt, name)
            shutil.copy2(source, paths[name])
            if name in caps:
                setcap = subprocess.run(["setcap", caps[name], paths[name]], capture_output=True, text=True)
                if setcap.returncode != 0:
                    pytest.skip(f"tmpfs here holds no file capabilities: {setcap.stderr.strip()}")
        yield paths
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def require_tool(name, package):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (Debian package {package}; make test-deps installs it)")
    return path


# The OCI runtime the client tests (test_podman, test_containerd) hand to
# podman and containerd: kennel-oci from the build directory, or whatever
# KENNEL_OCI_RUNTIME names (KENNEL_OCI_RUNTIME=/usr/sbin/runc proves the
# harness against runc).
OCI_RUNTIME_ENV = "KENNEL_OCI_RUNTIME"


@pytest.fixture(scope="session")
def oci_runtime(h):
    """The path of the runtime under test, one the test user can run."""
    chosen = os.environ.get(OCI_RUNTIME_ENV)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            pytest.fail(f"{OCI_RUNTIME_ENV}={chosen} is not an executable file")
        return os.path.abspath(chosen)
    built = os.path.join(BUILD_DIR, "kennel-oci")
    if not os.path.exists(built):
        pytest.skip(f"{built} is not built (or set {OCI_RUNTIME_ENV}=/usr/sbin/runc to test the harness against runc)")
    copied = os.path.join(h.bindir, "kennel-oci")
    if not os.path.exists(copied):
        shutil.copy2(built, copied)
        os.chmod(copied, 0o755)
    return copied


def write_rootfs_tar(rootfs, dest):
    """A tarball of `rootfs` at `dest` with everything owned by root and a
    fixed mtime: an image layer for the clients, whoever owns the tree."""
    def as_root(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        return info

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, entry), arcname=entry, filter=as_root)
    return dest


@pytest.fixture(scope="session")
def busybox_tar(h):
    """The harness's busybox rootfs as one image layer (a plain tarball)."""
    return write_rootfs_tar(h.rootfs, os.path.join(h.scratch, "busybox-rootfs.tar"))
