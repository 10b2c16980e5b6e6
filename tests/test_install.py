"""`sudo make install` the way the README says to run it.

An ordinary user who installed Rust with rustup (cargo in ~/.cargo/bin, the
toolchain in ~/.rustup), in a checkout they own, runs `sudo make install`
through sudo with Debian's default secure_path, which has no ~/.cargo/bin
and gives root's HOME. The install must build with the user's own cargo, as
the user, and leave a kennel that runs containers with the full subordinate
id range through a kennel-idmap that has its file capabilities.

What the test user gets, since rustup itself cannot be downloaded here:
  * ~/.rustup/toolchains/NAME: a hard-link copy (`cp -al`, under a second;
    a real copy if hard links are refused) of the toolchain root's own
    rustc runs from, and ~/.rustup/settings.toml naming it the default;
  * ~/.cargo/bin/rustup: a copy of root's rustup binary, with cargo and
    rustc symlinks to it, as rustup installs its proxies. So the user's
    cargo is a real rustup proxy that finds its toolchain through HOME,
    which is what breaks under sudo;
  * ~/.cargo/registry: a copy of root's crate registry (index cache and
    crates), if root has one, so the locked build fetches nothing;
  * ~/kennel: a copy of this checkout without target/ and .git, theirs;
  * PATH with ~/.cargo/bin first, as rustup's ~/.cargo/env sets it;
  * a sudoers drop-in: NOPASSWD for them, and Debian's secure_path spelled
    out, whatever the host's /etc/sudoers says (removed afterwards).
Their make and sudo run where root has no Rust, as on the machines the
README speaks to (CI's root has cargo on PATH, which hid the bug): /root is
an empty tmpfs in a private mount namespace, so nothing run as root, or
with root's HOME, can fall back on root's cargo or ~/.rustup.
Each install goes to a temporary DESTDIR, so /usr/local is untouched; the
subordinate ids that `make install` adds go to the host's /etc/subuid and
/etc/subgid, and are removed afterwards.

The first test builds from scratch: a full release build, 1.5 to 4 minutes
on a 2-core machine depending on what else runs. The others reuse its
target/ (their build is a no-op cargo run, still through the user's rustup
proxy) and take under a second each; setting up takes about 5 seconds.
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

import conftest

INSTALL_USER = "kennel-inst"
DEBIAN_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUDOERS_DROP_IN = "/etc/sudoers.d/kennel-install-test"  # no dot: sudo skips names with one
BUILD_TIMEOUT = 1800


def _root_toolchain():
    """(rustup binary, toolchain directory, root's settings.toml) of the
    toolchain root builds with, or a skip saying what is missing."""
    rustc = shutil.which("rustc")
    if not rustc:
        pytest.skip("no rustc on root's PATH: no toolchain to give the test user")
    sysroot = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True,
                             cwd=conftest.REPO).stdout.strip()
    if os.path.basename(os.path.dirname(sysroot)) != "toolchains":
        pytest.skip(f"root's rustc is not a rustup toolchain (sysroot {sysroot!r}): "
                    "no rustup toolchain to give the test user")
    rustup_home = os.path.dirname(os.path.dirname(sysroot))
    rustup = shutil.which("rustup") or os.path.join(os.path.dirname(rustc), "rustup")
    if not os.access(rustup, os.X_OK):
        pytest.skip("no rustup binary next to root's rustc: cannot give the test user a rustup proxy")
    return rustup, os.path.realpath(sysroot), os.path.join(rustup_home, "settings.toml")


def _settings_toml(root_settings, toolchain):
    version = "12"
    try:
        m = re.search(r'^version\s*=\s*"([^"]+)"', open(root_settings).read(), re.M)
        if m:
            version = m.group(1)
    except OSError:
        pass
    return f'version = "{version}"\ndefault_toolchain = "{toolchain}"\nprofile = "default"\n'


def _chown_tree(path, user):
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", path], check=True)


def _give_rustup(user, toolchain):
    rustup, toolchain_dir, root_settings = toolchain
    home = user.home
    name = os.path.basename(toolchain_dir)
    rustup_home = os.path.join(home, ".rustup")
    cargo_bin = os.path.join(home, ".cargo", "bin")
    os.makedirs(os.path.join(rustup_home, "toolchains"))
    os.makedirs(cargo_bin)
    with open(os.path.join(rustup_home, "settings.toml"), "w") as f:
        f.write(_settings_toml(root_settings, name))
    shutil.copy2(rustup, os.path.join(cargo_bin, "rustup"))
    for proxy in ["cargo", "rustc"]:
        os.symlink("rustup", os.path.join(cargo_bin, proxy))
    # Everything but the toolchain is the user's. The toolchain's files stay
    # root's, read-only to the user (chown would change root's own files
    # through the hard links); rustup and cargo never write there.
    _chown_tree(rustup_home, user)
    _chown_tree(os.path.join(home, ".cargo"), user)
    dest = os.path.join(rustup_home, "toolchains", name)
    if subprocess.run(["cp", "-al", toolchain_dir, dest], capture_output=True).returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-a", toolchain_dir, dest], check=True)
    root_registry = os.path.join(os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo"), "registry")
    if os.path.isdir(root_registry):
        registry = os.path.join(home, ".cargo", "registry")
        subprocess.run(["cp", "-a", root_registry, registry], check=True)
        _chown_tree(registry, user)


def _copy_checkout(dest, user):
    def skip_top_level(directory, names):
        if os.path.realpath(directory) != os.path.realpath(conftest.REPO):
            return {"__pycache__"} & set(names)
        return {"target", ".git", ".cache", ".pytest_cache", "__pycache__"} & set(names)

    shutil.copytree(conftest.REPO, dest, symlinks=True, ignore=skip_top_level)
    _chown_tree(dest, user)


def _sudoers_drop_in(name):
    text = (
        "# kennel tests/test_install.py: removed when the test ends.\n"
        f'Defaults:{name} secure_path="{DEBIAN_SECURE_PATH}"\n'
        f"{name} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    )
    tmp = SUDOERS_DROP_IN + ".new"  # sudo ignores names with a dot
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o440)
    check = subprocess.run(["visudo", "-c", "-f", tmp], capture_output=True, text=True)
    if check.returncode != 0:
        os.unlink(tmp)
        pytest.fail(f"the test's sudoers drop-in does not parse: {check.stdout}{check.stderr}")
    os.rename(tmp, SUDOERS_DROP_IN)


def _subid_lines(name):
    lines = {}
    for path in ["/etc/subuid", "/etc/subgid"]:
        try:
            lines[path] = [l.strip() for l in open(path) if l.startswith(name + ":")]
        except FileNotFoundError:
            lines[path] = []
    return lines


class Installer:
    """The rustup user, their checkout, and how they run commands."""

    def __init__(self, user, checkout, scratch):
        self.user = user
        self.checkout = checkout
        self.scratch = scratch
        self.cargo = os.path.join(user.home, ".cargo", "bin", "cargo")

    def run(self, argv, timeout=BUILD_TIMEOUT):
        """argv as the user in their checkout, on a machine where root has
        no Rust: root's home is an empty tmpfs in a private mount namespace
        (the toolchain the user got from it is hard-linked, not mounted)."""
        path = f"{self.user.home}/.cargo/bin:/usr/local/bin:/usr/bin:/bin"
        hide_root = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                     'mount -t tmpfs -o mode=0700 tmpfs /root && exec "$@"', "sh"]
        return subprocess.run(hide_root + self.user.argv(argv), env=self.user.env({"PATH": path}),
                              cwd=self.checkout, timeout=timeout, capture_output=True, text=True)

    def destdir(self):
        path = tempfile.mkdtemp(prefix="destdir-", dir=self.scratch)
        os.chmod(path, 0o755)
        return path


@pytest.fixture(scope="module")
def installer():
    if os.geteuid() != 0:
        pytest.skip("the install test runs as root: it creates a user, a sudoers drop-in and file capabilities")
    conftest.require_tool("sudo", "sudo")
    conftest.require_tool("visudo", "sudo")
    conftest.require_tool("getcap", "libcap2-bin")
    for tool in ["setpriv", "useradd", "runuser", "getent"]:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing (make test-deps installs it)")
    toolchain = _root_toolchain()  # skips before anything is set up

    pw = conftest._ensure_user(INSTALL_USER)
    user = conftest.TestUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, conftest._runtime_dir(pw))

    def clean_up():
        if os.path.exists(SUDOERS_DROP_IN):
            os.unlink(SUDOERS_DROP_IN)
        # Also the range Debian's useradd gives a new user: make install
        # is to add one.
        for path in ["/etc/subuid", "/etc/subgid"]:
            conftest._drop_subid(path, user.name)
        for d in [".cargo", ".rustup", "kennel"]:
            subprocess.run(["rm", "-rf", "--one-file-system", os.path.join(user.home, d)], check=False)

    clean_up()  # what an interrupted run left
    scratch = tempfile.mkdtemp(prefix="kennel-install-test-")
    os.chmod(scratch, 0o755)
    try:
        _give_rustup(user, toolchain)
        checkout = os.path.join(user.home, "kennel")
        _copy_checkout(checkout, user)
        _sudoers_drop_in(user.name)
        yield Installer(user, checkout, scratch)
    finally:
        clean_up()
        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


def assert_installed(inst, destdir, rootfs):
    """What the user cares about after an install: the binaries in place,
    the helpers with exactly their capabilities and no setuid bit, and the
    installed kennel running a container with the full subordinate map."""
    kennel = os.path.join(destdir, "usr/local/bin/kennel")
    helper = os.path.join(destdir, "usr/local/libexec/kennel/kennel-idmap")
    oci = os.path.join(destdir, "usr/local/bin/kennel-oci")
    generator = os.path.join(destdir, "usr/local/libexec/kennel/kennel-generator")
    net_helper = os.path.join(destdir, "usr/local/libexec/kennel/kennel-net")
    for path in [kennel, oci, helper, generator, net_helper]:
        st = os.stat(path)
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o755, f"{path}: mode {st.st_mode:o}"
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f"{path} is setuid or setgid"
    caps = subprocess.run(["getcap", helper], capture_output=True, text=True)
    assert caps.stdout.split()[1:] == ["cap_setgid,cap_setuid=ep"], caps.stdout + caps.stderr
    caps = subprocess.run(["getcap", net_helper], capture_output=True, text=True)
    assert caps.stdout.split()[1:] == ["cap_net_admin=ep"], caps.stdout + caps.stderr

    # The man pages and completions, where man and each shell look.
    for page in ["share/man/man1/kennel.1", "share/man/man1/kennel-run.1", "share/man/man8/kennel-oci.8",
                 "share/man/man8/kennel-idmap.8", "share/bash-completion/completions/kennel",
                 "share/zsh/site-functions/_kennel", "share/fish/vendor_completions.d/kennel.fish"]:
        assert os.path.isfile(os.path.join(destdir, "usr/local", page)), f"make install left out {page}"

    r = inst.user.run([kennel, "--version"])
    assert r.returncode == 0 and r.stdout.startswith("kennel "), r.stdout + r.stderr
    # make install's build is the static one, with libseccomp's archive.
    for line in ["binary: static", "regex: regex-lite shim"]:
        assert line in r.stdout.splitlines(), r.stdout
    assert "linked static" in r.stdout, r.stdout
    r = inst.user.run([oci, "--version"])
    assert r.returncode == 0 and r.stdout.startswith("kennel-oci version "), r.stdout + r.stderr

    # Linked where systemd 252 runs generators under /usr/local, and
    # writing units that run this install's kennel.
    for scope in ("user", "system"):
        link = os.path.join(destdir, f"usr/local/lib/systemd/{scope}-generators/kennel-generator")
        assert os.readlink(link) == "/usr/local/libexec/kennel/kennel-generator", link
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(f"{tmp}/kennel")
        with open(f"{tmp}/kennel/web.container", "w") as f:
            f.write("[Container]\nExec=true\n")
        r = subprocess.run([generator, tmp], env={"SYSTEMD_SCOPE": "user", "HOME": tmp, "XDG_CONFIG_HOME": tmp},
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        with open(f"{tmp}/web.service") as f:
            assert "\nExecStart=/usr/local/bin/kennel run --name web --init -- true\n" in f.read()

    subuid = _subid_lines(inst.user.name)["/etc/subuid"]
    assert len(subuid) == 1, f"make install left {inst.user.name} with subordinate uids {subuid}"
    start = int(subuid[0].split(":")[1])
    # subids: the full map through this install's kennel-idmap (found next
    # to kennel, ../libexec/kennel), or an error naming what is missing.
    r = inst.user.run([kennel, "run", "--userns=subids", "--rootfs", rootfs, "--", "cat", "/proc/self/uid_map"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert [l.split() for l in r.stdout.splitlines()] == [
        ["0", str(inst.user.uid), "1"], ["1", str(start), "65536"]], r.stdout


@pytest.fixture(scope="module")
def rootfs(installer):
    path = os.path.join(installer.scratch, "rootfs")
    conftest._build_rootfs(path, installer.user)
    return path


def test_sudo_make_install_as_a_rustup_user(installer, rootfs):
    """The README's set-up on a fresh checkout: `sudo make install`."""
    assert _subid_lines(installer.user.name) == {"/etc/subuid": [], "/etc/subgid": []}
    destdir = installer.destdir()
    r = installer.run(["sudo", "make", "install", f"DESTDIR={destdir}"])
    assert r.returncode == 0, f"sudo make install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    # Built with the user's own rustup cargo, as the user: target/ stays theirs.
    assert f"runuser -u {installer.user.name} -- " in r.stdout and f"{installer.cargo} build" in r.stdout, r.stdout
    target = os.path.join(installer.checkout, "target")
    assert os.path.isdir(target)
    not_theirs = [os.path.join(d, n) for d, dirs, files in os.walk(target) for n in dirs + files
                  if os.lstat(os.path.join(d, n)).st_uid != installer.user.uid]
    assert not not_theirs, f"files in target/ not owned by {installer.user.name}: {not_theirs[:5]}"
    # It gave the user a subordinate range in both files.
    lines = _subid_lines(installer.user.name)
    assert len(lines["/etc/subuid"]) == 1 and len(lines["/etc/subgid"]) == 1, lines
    assert_installed(installer, destdir, rootfs)


def test_make_then_sudo_make_install(installer, rootfs):
    """Building first as the user, then installing with sudo."""
    r = installer.run(["make"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    destdir = installer.destdir()
    r = installer.run(["sudo", "make", "install", f"DESTDIR={destdir}"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_installed(installer, destdir, rootfs)


def test_sudo_E_make_install(installer, rootfs):
    """sudo -E keeps the user's environment (HOME, not PATH: secure_path
    still applies)."""
    destdir = installer.destdir()
    r = installer.run(["sudo", "-E", "make", "install", f"DESTDIR={destdir}"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_installed(installer, destdir, rootfs)
