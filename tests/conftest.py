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

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.environ.get("KENNEL_BUILD_DIR", os.path.join(REPO, "target", "release"))

# Users the harness manages. Their subordinate ranges do not overlap.
USER = "kennel-test"
USER_SUBID_START = 300000
OTHER_USER = "kennel-test2"
OTHER_SUBID_START = 500000
NOSUB_USER = "kennel-nosub"
SUBID_COUNT = 65536


def _ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
        return pwd.getpwnam(name)


def _ensure_subid(path, name, start, count):
    line = f"{name}:{start}:{count}\n"
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        lines = []
    kept = [l for l in lines if not l.startswith(name + ":")]
    if kept + [line] != lines:
        with open(path, "w") as f:
            f.writelines(kept + [line])


def _drop_subid(path, name):
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return
    kept = [l for l in lines if not l.startswith(name + ":")]
    if kept != lines:
        with open(path, "w") as f:
            f.writelines(kept)


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
    runtime_dir: str
    subid_start: int | None = None

    def env(self, extra=None):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "LANG": "C.UTF-8",
        }
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
def h(tmp_path_factory):
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
    yield harness
    subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


def require_tool(name, package):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (Debian package {package}; make test-deps installs it)")
    return path
