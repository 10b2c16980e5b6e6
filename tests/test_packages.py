"""The distribution packages, built and installed the way a packager and a
user would.

The .deb is built with `dpkg-buildpackage -us -uc -b` from the tree
packaging/dist-source.sh lays out (vendored crates, no regex shim, offline
and --locked), then the .rpm with `rpmbuild -bb` from the same tree, reusing
that compile. The compile's target directory, the exported tree and a
debootstrap of bookworm are kept under /var/cache/kennel-pkg (a lock keeps
two runs apart), so a later run compiles only kennel's own crates.

The .deb is installed with apt into a fresh copy of that debootstrap, entered
with pivot_root in new mount and pid namespaces rather than chroot: the
kernel refuses user namespaces to a chrooted process, and bwrap would mount
the tree nosuid, which voids file capabilities. There an ordinary user runs
a container with the full subordinate map through the packaged helper, `man`
renders the pages, bash loads the completions, and `apt-get purge` must
leave the tree as it was. Before that, a second user without subordinate
ids follows the README's first hour: `kennel run -- id`, `kennel doctor`,
a root filesystem and a container on it. This costs a directory copy and no VM boot, which
the systemd-less checks here do not need.
"""

import fcntl
import glob
import hashlib
import io
import os
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import types

import pytest

import conftest
import vm_machine

CACHE = "/var/cache/kennel-pkg"
BUILD_TIMEOUT = 3600
# What the fresh system has besides minbase: setcap for postinst (the
# package's Depends), and man to read the pages.
ROOT_PACKAGES = ["libcap2-bin", "man-db", "libseccomp2"]
ROOT_VERSION = "1"
PKG_USER = "kuser"
PKG_UID = 1000
# A user with no subordinate ids, as a new user on a machine may be.
NOSUB_USER = "knosub"
NOSUB_UID = 1001
SUBID_START = 100000
HELPER = "/usr/libexec/kennel/kennel-idmap"
NET_HELPER = "/usr/libexec/kennel/kennel-net"
LINTIAN_OVERRIDES = os.path.join(conftest.REPO, "packaging/debian/kennel.lintian-overrides")


def _version():
    with open(os.path.join(conftest.REPO, "Cargo.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def _run(argv, timeout=600, **kw):
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert cp.returncode == 0, f"{argv} exited {cp.returncode}:\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}"
    return cp


def _cargo():
    found = shutil.which("cargo") or next(iter(glob.glob(os.path.expanduser("~/.cargo/bin/cargo"))), None)
    if not found:
        pytest.skip("no cargo on root's PATH or in ~/.cargo/bin: cannot build the packages")
    return found


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(.deb, .rpm, .changes) built from this checkout, copied out of the cache."""
    for tool, pkg in [("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"), ("rpmbuild", "rpm"), ("lintian", "lintian")]:
        conftest.require_tool(tool, pkg)
    cargo = _cargo()
    version = _version()
    os.makedirs(CACHE, mode=0o700, exist_ok=True)
    out = tmp_path_factory.mktemp("packages")
    env = dict(os.environ, CARGO=cargo, CARGO_TARGET_DIR=f"{CACHE}/target")
    env["PATH"] = os.path.dirname(cargo) + ":" + env["PATH"]
    with open(f"{CACHE}/lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        src = f"{CACHE}/src"
        for old in glob.glob(f"{src}/kennel_*") + glob.glob(f"{src}/rpm"):
            shutil.rmtree(old) if os.path.isdir(old) else os.unlink(old)
        tree = _run([f"{conftest.REPO}/packaging/dist-source.sh", src], env=env).stdout.split()[-1]
        _run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, env=env, timeout=BUILD_TIMEOUT)
        rpm = _run(["rpmbuild", "-bb", "--nodeps", "--build-in-place", "--define", f"_topdir {src}/rpm",
                    "packaging/rpm/kennel.spec"], cwd=tree, env=env, timeout=BUILD_TIMEOUT)
        # One compile for both: the rpm build must find it done.
        assert "Compiling kennel" not in rpm.stdout + rpm.stderr, "the rpm build compiled kennel again"
        deb = shutil.copy(f"{src}/kennel_{version}_amd64.deb", out)
        changes = shutil.copy(f"{src}/kennel_{version}_amd64.changes", out)
        rpms = glob.glob(f"{src}/rpm/RPMS/*/kennel-{version}-*.rpm")
        assert len(rpms) == 1, rpms
        rpm_file = shutil.copy(rpms[0], out)
    return deb, rpm_file, changes


def _override_entries():
    """{(tag, what follows it)} of the overrides file, each checked to have a
    comment justifying it in the paragraph above."""
    entries = set()
    paragraph_has_comment = False
    with open(LINTIAN_OVERRIDES) as f:
        for line in f:
            line = line.strip()
            if not line:
                paragraph_has_comment = False
            elif line.startswith("#"):
                paragraph_has_comment = True
            else:
                assert paragraph_has_comment, f"lintian override without a comment saying why: {line}"
                m = re.fullmatch(r"kennel: (\S+)(.*)", line)
                assert m, f"unexpected override line: {line}"
                entries.add((m.group(1), m.group(2).strip()))
    return entries


def test_lintian_reports_only_the_justified_overrides(packages):
    deb, _, _ = packages
    cp = subprocess.run(["lintian", "--display-info", "--display-experimental", "--pedantic", "--show-overrides", deb],
                        capture_output=True, text=True, timeout=600)
    tags = [l for l in cp.stdout.splitlines() if re.match(r"^[EWIPXO]: ", l)]
    unjustified = [l for l in tags if not l.startswith("O: ")]
    assert not unjustified, "lintian tags without a justified override:\n" + "\n".join(unjustified)
    used = set()
    for line in tags:
        m = re.fullmatch(r"O: kennel(?: \S+)?: (\S+)(.*)", line)
        assert m, line
        used.add((m.group(1), m.group(2).strip()))
    assert used == _override_entries(), f"overrides lintian no longer needs: {_override_entries() - used}"


def _deb_files(deb):
    """{path: mode string} of the files in a .deb."""
    listing = _run(["dpkg-deb", "--contents", deb]).stdout
    files = {}
    for line in listing.splitlines():
        fields = line.split()
        files[fields[5].lstrip(".")] = fields[0]
    return files


def test_deb_carries_no_setuid_file_and_everything_it_promises(packages):
    deb, _, _ = packages
    files = _deb_files(deb)
    for path, mode in files.items():
        assert mode[3] not in "sS" and mode[6] not in "sS", f"{path} is setuid or setgid: {mode}"
    pages = ["kennel", "kennel-run", "kennel-exec", "kennel-ps", "kennel-kill", "kennel-stats", "kennel-doctor",
             "kennel-rootfs", "kennel-rootfs-import"]
    expected = [
        "/usr/bin/kennel", "/usr/bin/kennel-oci", HELPER, NET_HELPER,
        *[f"/usr/share/man/man1/{p}.1.gz" for p in pages],
        "/usr/share/man/man8/kennel-oci.8.gz", "/usr/share/man/man8/kennel-idmap.8.gz",
        "/usr/share/man/man5/kennel.container.5.gz", "/usr/libexec/kennel/kennel-generator",
        "/usr/lib/systemd/user-generators/kennel-generator", "/usr/lib/systemd/system-generators/kennel-generator",
        "/usr/share/doc/kennel/examples/kennel-web.container",
        "/usr/share/bash-completion/completions/kennel", "/usr/share/zsh/vendor-completions/_kennel",
        "/usr/share/fish/vendor_completions.d/kennel.fish",
        "/usr/share/containers/containers.conf.d/50-kennel.conf",
        "/usr/share/doc/kennel/examples/kennel-web.service",
    ]
    missing = [p for p in expected if p not in files]
    assert not missing, f"missing from the .deb: {missing}"
    depends = _run(["dpkg-deb", "--field", deb, "Depends"]).stdout
    assert "libseccomp2" in depends and "libcap2-bin" in depends, depends


def test_rpm_gives_the_helper_exactly_its_two_capabilities(packages):
    _, rpm_file, _ = packages
    listing = _run(["rpm", "-qp", "--filecaps", rpm_file]).stdout
    caps = {}
    for line in listing.splitlines():
        path, _, cap = line.partition("\t")
        if cap.strip():
            caps[path.strip()] = cap.strip()
    assert caps == {HELPER: "cap_setgid,cap_setuid=ep", NET_HELPER: "cap_net_admin=ep"}, listing
    modes = _run(["rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm_file]).stdout
    setid = [l for l in modes.splitlines() if l[3] in "sS" or l[6] in "sS"]
    assert not setid, setid


def _fresh_root():
    """A cached debootstrap of bookworm (minbase and ROOT_PACKAGES) with an
    ordinary user who has a subordinate range."""
    key = hashlib.sha256((ROOT_VERSION + " ".join(ROOT_PACKAGES)).encode()).hexdigest()[:12]
    root = f"{CACHE}/root-{key}"
    os.makedirs(CACHE, mode=0o700, exist_ok=True)
    with open(f"{CACHE}/root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(root):
            _debootstrap(root)
    return root


def _debootstrap(root):
    conftest.require_tool("debootstrap", "debootstrap")
    work = tempfile.mkdtemp(dir=CACHE, prefix="debootstrap-")
    try:
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(ROOT_PACKAGES), "bookworm",
              work, vm_machine._mirror()], timeout=1200)
        _run(["chroot", work, "useradd", "-m", "-u", str(PKG_UID), "-s", "/bin/bash", PKG_USER])
        for f in ["etc/subuid", "etc/subgid"]:
            with open(f"{work}/{f}", "w") as out:
                out.write(f"{PKG_USER}:{SUBID_START}:65536\n")
        os.chmod(work, 0o755)
        os.rename(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


# Entered as root with pivot_root, not chroot: a chrooted caller may not
# create user namespaces. /sys and /dev come from the host; /proc is the new
# pid namespace's.
ENTER = r"""
set -e
t=$1; shift
mount --bind "$t" "$t"
mount --rbind /sys "$t/sys"
mount --rbind /dev "$t/dev"
mount -t proc proc "$t/proc"
mount -t tmpfs tmpfs "$t/tmp"
mount -t tmpfs tmpfs "$t/run"
cd "$t"
mkdir -p .host
pivot_root . .host
exec /bin/sh -c 'umount -l /.host && rmdir /.host && exec "$@"' sh "$@"
"""


def _in_root(tree, script, timeout=300):
    """Runs a shell script as root inside the tree; returns the result."""
    argv = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
            "sh", "-c", ENTER, "enter", tree, "/bin/sh", "-c", script]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _tree_files(tree):
    """Every path in the tree but the bookkeeping of dpkg, apt, man-db and
    logs, which installing and purging update by design."""
    skip = ("proc", "sys", "dev", "tmp", "run", "var/lib/dpkg", "var/lib/apt", "var/cache", "var/log", "root/.cache")
    found = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = os.path.relpath(dirpath, tree)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel, d)) not in skip]
        for name in dirnames + filenames:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


class Installed:
    """A fresh copy of the debootstrap with the .deb installed by apt; `before`
    is its file list before the install, for the purge to be checked against."""

    def __init__(self, tree, before, in_tree):
        self.tree, self.before, self.in_tree = tree, before, in_tree


@pytest.fixture(scope="module")
def installed(packages, tmp_path_factory):
    """Installed once for the module's tests; the purge test, last in the
    file, takes it away again."""
    deb, _, _ = packages
    base = _fresh_root()
    tree = str(tmp_path_factory.mktemp("installed") / "root")
    _run(["cp", "-a", "--reflink=auto", base, tree])
    os.chmod(tree, 0o755)  # the system's /, which mkdtemp made 0700
    # A second user as an administrator leaves one who predates /etc/subuid:
    # Debian's useradd gives a range, so it is taken away again.
    user = _in_root(tree, f"useradd -m -u {NOSUB_UID} -s /bin/bash {NOSUB_USER} && "
                          f"sed -i '/^{NOSUB_USER}:/d' /etc/subuid /etc/subgid")
    assert user.returncode == 0, user.stdout + user.stderr
    before = _tree_files(tree)
    # apt wants the package's own file name, and a path that is absolute.
    in_tree = f"/root/{os.path.basename(deb)}"
    shutil.copy(deb, tree + in_tree)

    install = _in_root(tree, f"DEBIAN_FRONTEND=noninteractive apt-get install -y {in_tree} 2>&1",
                       timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "could not give" not in install.stdout, install.stdout
    yield Installed(tree, before, in_tree)
    shutil.rmtree(tree, ignore_errors=True)


def _image_tarball(dest):
    """A small image tarball, as `podman export` would give: the harness's
    busybox tree owned by root, plus a file of uid 100's."""
    rootfs = tempfile.mkdtemp(prefix="kennel-pkg-image-")
    try:
        conftest._build_rootfs(rootfs, types.SimpleNamespace(uid=0, gid=0))
        conftest.write_rootfs_tar(rootfs, dest)
    finally:
        shutil.rmtree(rootfs)
    with tarfile.open(dest, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("var/owned-by-100")
        info.uid = info.gid = 100
        tar.addfile(info, io.BytesIO(b""))
    os.chown(dest, NOSUB_UID, NOSUB_UID)


def test_a_new_user_without_subordinate_ids_follows_the_readme(installed):
    """The README's first hour after `apt install`, for a user the
    administrator never gave subordinate ids, logged in with `su -` (no
    XDG_RUNTIME_DIR) on a machine without systemd or logind."""
    tree = installed.tree
    home = f"/home/{NOSUB_USER}"
    images = f"{home}/images"
    os.makedirs(tree + images)
    os.chown(tree + images, NOSUB_UID, NOSUB_UID)
    _image_tarball(f"{tree}{images}/image.tar")
    as_user = (f"cd {home} && setpriv --reuid={NOSUB_UID} --regid={NOSUB_UID} --init-groups "
               f"env -i PATH=/usr/bin:/bin HOME={home} USER={NOSUB_USER} LOGNAME={NOSUB_USER} ")
    try:
        # `kennel run -- id`: it runs, with one id, and says once how to get more.
        run = _in_root(tree, as_user + "kennel run -- id -u")
        assert run.returncode == 0 and run.stdout == f"{NOSUB_UID}\n", run.stdout + run.stderr
        [notice] = run.stderr.splitlines()
        assert notice.startswith("kennel: the container has a single id") and \
            f"{NOSUB_USER} has no subordinate ids" in notice and \
            re.search(rf"usermod --add-subuids \d+-\d+ --add-subgids \d+-\d+ {NOSUB_USER}\b", notice), notice

        # `kennel doctor`: true for this machine. Containers start; the
        # missing range is named with its fix; nothing about systemd or
        # logind, which this machine does not have.
        doctor = _in_root(tree, as_user + "kennel doctor")
        out = doctor.stdout
        assert doctor.returncode == 0 and doctor.stderr == "", out + doctor.stderr
        assert f"warn  subordinate ids: {NOSUB_USER} has no entry in /etc/subuid nor in /etc/subgid" in out, out
        assert re.search(rf"fix: .*usermod --add-subuids \d+-\d+ .*{NOSUB_USER}", out), out
        assert f"ok    kennel-idmap helper: {HELPER} has cap_setuid,cap_setgid=ep" in out, out
        assert f"ok    runtime directory: /tmp/kennel-run-{NOSUB_UID}" in out, out
        assert "will not start" not in out and "FAIL" not in out, out
        assert out.rstrip().splitlines()[-1].startswith("no check failed: containers can start"), out
        for hint in ["systemctl", "loginctl", "linger", "systemd.unified_cgroup_hierarchy", "/run/user", "/../",
                     "make install"]:
            assert hint not in out, f"doctor says {hint!r}, which does not apply here:\n{out}"

        # A root filesystem the README's way: `kennel rootfs import` stops
        # without subordinate ids and names the one-id unpack, which works.
        dest = f"{images}/alpine"
        refused = _in_root(tree, as_user + f"kennel rootfs import {images}/image.tar {dest}")
        assert refused.returncode == 125 and "no subordinate ids" in refused.stderr, refused.stderr
        assert not os.path.lexists(tree + dest), "the refused import made its directory"
        m = re.search(r"unpack it as yourself: (mkdir .*)$", refused.stderr.strip())
        assert m and "tar -xf" in m.group(1), refused.stderr
        unpack = _in_root(tree, as_user + f"sh -c {shlex.quote(m.group(1))}")
        assert unpack.returncode == 0 and unpack.stderr == "", unpack.stderr

        probe = "id -u; stat -c %u /var/owned-by-100; cat /images/note; touch /x 2>/dev/null || echo read-only"
        with open(f"{tree}{home}/note", "w") as f:
            f.write("from the host\n")
        run = _in_root(tree, as_user + f"kennel run --rootfs {dest} --read-only -v {home}/note:/images/note:ro "
                                       f"-- sh -c {shlex.quote(probe)}")
        assert run.returncode == 0, run.stdout + run.stderr
        # Every file is the user's, root inside: the one owner a one-id
        # container can show.
        assert run.stdout.split() == ["0", "0", "from", "the", "host", "read-only"], run.stdout + run.stderr
    finally:
        shutil.rmtree(tree + images, ignore_errors=True)
        if os.path.exists(f"{tree}{home}/note"):
            os.unlink(f"{tree}{home}/note")


def test_installed_deb_runs_a_full_map_container_and_purges_clean(installed):
    tree, before, in_tree = installed.tree, installed.before, installed.in_tree
    caps = _in_root(tree, f"getcap {HELPER}")
    assert caps.stdout.split()[1:] == ["cap_setgid,cap_setuid=ep"], caps.stdout + caps.stderr
    net_caps = _in_root(tree, f"getcap {NET_HELPER}")
    assert net_caps.stdout.split()[1:] == ["cap_net_admin=ep"], net_caps.stdout + net_caps.stderr
    setid = _in_root(tree, "dpkg -L kennel | while read -r f; do [ -u \"$f\" ] || [ -g \"$f\" ] && echo \"$f\"; done; true")
    assert setid.returncode == 0 and setid.stdout == "", setid.stdout + setid.stderr

    # As the ordinary user: the full subordinate map, written by the
    # packaged helper from /usr/libexec/kennel (compiled in, not found
    # next to kennel).
    as_user = f"setpriv --reuid={PKG_UID} --regid={PKG_UID} --init-groups env HOME=/home/{PKG_USER} USER={PKG_USER} "
    run = _in_root(tree, as_user + "kennel run --userns=subids --no-home -- cat /proc/self/uid_map /proc/self/gid_map")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [l.split() for l in run.stdout.splitlines()]
    assert ["1", str(SUBID_START), "65536"] in lines or any(l[1] == str(SUBID_START) and l[2] == "65535" for l in lines), \
        f"no subordinate range in the container's maps:\n{run.stdout}"
    assert len(lines) >= 4, run.stdout
    version = _in_root(tree, "kennel --version")
    assert "binary: dynamic" in version.stdout and "helper directory: /usr/libexec/kennel" in version.stdout \
        and "regex: regex\n" in version.stdout, version.stdout

    man = _in_root(tree, "MANWIDTH=80 man kennel-run | cat")
    assert man.returncode == 0 and man.stderr == "", man.stderr
    assert "kennel-run - Run a command in a new container" in man.stdout and "--rootfs" in man.stdout, man.stdout[:2000]
    idmap_man = _in_root(tree, "MANWIDTH=80 man 8 kennel-idmap | cat")
    assert idmap_man.returncode == 0 and idmap_man.stderr == "" and "cap_setuid,cap_setgid=ep" in idmap_man.stdout, \
        idmap_man.stdout[:2000] + idmap_man.stderr

    complete = _in_root(tree, """bash -c '
        source /usr/share/bash-completion/completions/kennel
        COMP_WORDS=(kennel ru); COMP_CWORD=1; _kennel kennel ru kennel; echo "${COMPREPLY[*]}"
        COMP_WORDS=(kennel run --roo); COMP_CWORD=2; _kennel kennel --roo run; echo "${COMPREPLY[*]}"
        COMP_WORDS=(kennel box ""); COMP_CWORD=2; _kennel kennel "" box; echo "${COMPREPLY[*]}"
        source /usr/share/bash-completion/completions/kennel-oci'""")
    assert complete.returncode == 0 and complete.stderr == "", complete.stderr
    lines = complete.stdout.splitlines()
    assert lines[:2] == ["run", "--rootfs"], complete.stdout
    # `box` offers its commands, not kennel's own plumbing.
    box_words = lines[2].split()
    assert "create" in box_words and "enter" in box_words, complete.stdout
    assert "unpack-layers" not in box_words, complete.stdout

    purge = _in_root(tree, "DEBIAN_FRONTEND=noninteractive apt-get purge -y kennel 2>&1")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    os.unlink(tree + in_tree)
    after = _tree_files(tree)
    assert after == before, f"left behind: {sorted(after - before)}; removed: {sorted(before - after)}"
