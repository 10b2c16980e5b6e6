"""distrobox and toolbox, as the test user, through rootless podman
configured (containers.conf, as a user would) to run kennel-oci.

Both tools call `podman` from PATH, so the private store's configuration
lives in files: `$XDG_CONFIG_HOME/containers/containers.conf` names the
runtime `kennel` and `storage.conf` the store. The image is a Debian
bookworm minbase made once per session with mmdebstrap from the Debian
mirror, with everything distrobox-init would otherwise download at the
first enter, and imported with toolbox's label.

Each of what distrobox needs is also tried alone with podman: a box
shares the host's pid namespace (`--pid host`), its init holds
CAP_SYS_ADMIN and mounts, and it binds the host's /etc/localtime, an
absolute symlink.
"""

import os
import pwd
import shlex
import shutil
import subprocess

import pytest

from conftest import require_tool
from probe import describe, ok, wait_until
from test_podman import private_podman

IMAGE = "localhost/kennel-test-debian:latest"
BOX = "kennel-dbox"
# Everything distrobox-init 1.4.2.1 checks for before it would run
# apt-get (find mount passwd sudo useradd diff pinentry wget curl less bc
# time lsof and $SHELL's package), so the first enter downloads nothing.
PACKAGES = ["sudo", "bash", "passwd", "findutils", "diffutils", "util-linux", "mount", "pinentry-curses",
            "wget", "curl", "less", "bc", "time", "lsof", "procps", "libcap2-bin"]
MIRROR = "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def debian_tar(h):
    """A Debian bookworm minbase rootfs tarball with distrobox-init's
    dependencies, built once per session under the harness's scratch."""
    require_tool("mmdebstrap", "mmdebstrap")
    dest = os.path.join(h.scratch, "debian-distrobox.tar")
    # mmdebstrap writes a tarball for a name ending in .tar.
    part = os.path.join(h.scratch, "debian-distrobox.part.tar")
    if not os.path.exists(dest):
        cp = subprocess.run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                             "bookworm", part, MIRROR], capture_output=True, text=True, timeout=600)
        if cp.returncode != 0:
            pytest.skip(f"mmdebstrap could not build the image from {MIRROR}: "
                        f"{(cp.stderr.strip().splitlines() or [''])[-1]}")
        os.chmod(part, 0o644)
        os.rename(part, dest)
    return dest


class Tools:
    """distrobox, toolbox and plain `podman`, as the test user, with only
    the environment (config files, HOME) choosing store and runtime."""

    def __init__(self, h, p):
        self.user = h.user
        self.podman_flagged = p
        self.home = os.path.join(p.base, "home")
        # SHELL as a login sets it: toolbox create reads the user's shell
        # from it, and distrobox passes it into the box.
        self.env = dict(p.env, HOME=self.home, SHELL=pwd.getpwuid(h.user.uid).pw_shell or "/bin/sh")

    def __call__(self, *argv, timeout=120, **kw):
        return self.user.run(list(map(str, argv)), env=self.env, timeout=timeout, cwd=self.home, **kw)

    def podman(self, *args, **kw):
        return self("podman", *args, **kw)


def write_config(p, runtime, uid, gid):
    containers = os.path.join(p.base, "config", "containers")
    os.makedirs(containers, exist_ok=True)
    with open(os.path.join(containers, "containers.conf"), "w") as f:
        f.write('[engine]\nruntime = "kennel"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n\n'
                f'[engine.runtimes]\nkennel = ["{runtime}"]\n')
    with open(os.path.join(containers, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{p.base}/storage"\nrunroot = "{p.base}/runroot"\n\n'
                f'[storage.options.overlay]\nmount_program = "{shutil.which("fuse-overlayfs")}"\n')
    home = os.path.join(p.base, "home")
    os.makedirs(home, exist_ok=True)
    for d in (containers, os.path.dirname(containers), home):
        os.chown(d, uid, gid)
    for name in ("containers.conf", "storage.conf"):
        os.chown(os.path.join(containers, name), uid, gid)


@pytest.fixture(scope="module")
def tools(h, oci_runtime, debian_tar):
    require_tool("distrobox", "distrobox")
    p = private_podman(h.user, oci_runtime, h.tempdir())
    write_config(p, oci_runtime, h.user.uid, h.user.gid)
    t = Tools(h, p)
    try:
        ok(t.podman("import", "--change", "LABEL=com.github.containers.toolbox=true", debian_tar, IMAGE,
                    timeout=300))
        yield t
    finally:
        t.podman("rm", "--all", "--force", "--time", "0")
        p.kill_leftovers()


@pytest.fixture(scope="module")
def box(tools):
    """A distrobox created (not yet started) from the local image."""
    ok(tools("distrobox", "create", "--image", IMAGE, "--name", BOX, "--yes", "--no-entry"))
    yield BOX
    tools("distrobox", "rm", BOX, "--force")


def test_podman_takes_kennel_oci_from_containers_conf(tools, oci_runtime):
    """Plain `podman`, as distrobox calls it, runs kennel-oci: the
    runtime named in containers.conf, nothing on the command line."""
    out = ok(tools.podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}"))
    assert out.split() == ["kennel", oci_runtime], out


def test_create_makes_a_box_for_kennel_oci(tools, box):
    """distrobox create, offline from a local image, makes a container
    labelled as a distrobox that podman will run with kennel-oci."""
    out = ok(tools.podman("inspect", "--type", "container", "--format",
                          "{{.OCIRuntime}} {{index .Config.Labels \"manager\"}}", box))
    assert out.split() == ["kennel", "distrobox"], out


def test_enter_runs_as_the_same_user(h, tools, box):
    """distrobox enter starts the box (distrobox-init sets the user up)
    and runs the command as the same user: uid, name, $HOME visible,
    passwordless sudo; the box runs under kennel-oci (conmon's -r)."""
    probe = os.path.join(tools.home, "visible-from-the-box")
    with open(probe, "w") as f:
        f.write("here\n")
    # distrobox-enter evals its command line, so the script is a file.
    script = os.path.join(tools.home, "who.sh")
    with open(script, "w") as f:
        f.write('id -u; id -un; echo "$HOME"; cat "$HOME/visible-from-the-box"; sudo -n true && echo sudo-ok\n')
    cp = tools("distrobox", "enter", box, "--", "sh", script)
    assert cp.returncode == 0, describe(cp)
    assert cp.stdout.split()[-5:] == [str(h.user.uid), h.user.name, tools.home, "here", "sudo-ok"], describe(cp)
    conmon = int(ok(tools.podman("inspect", "--format", "{{.State.ConmonPid}}", box)).strip())
    with open(f"/proc/{conmon}/cmdline") as f:
        argv = f.read().split("\0")
    assert argv[argv.index("-r") + 1] == tools.podman_flagged.runtime, argv


def test_enter_with_a_terminal(tools, box):
    """distrobox enter with no command, under script(1): the user's login
    shell on a terminal reads what is typed, and its status comes back."""
    require_tool("script", "bsdutils")
    cp = tools("script", "-qec", shlex.join(["distrobox", "enter", box]), "/dev/null",
               input='tty; echo "who:$(id -un)"; exit 7\n')
    assert cp.returncode == 7, describe(cp)
    assert "/dev/pts/" in cp.stdout and f"who:{tools.user.name}" in cp.stdout, describe(cp)


def test_exported_binary_runs_in_the_box(tools, box):
    """distrobox-export --bin writes a launcher on the host; run there,
    it runs the box's bc (which the host lacks or not, the box has)."""
    export = os.path.join(tools.home, "exported")
    os.makedirs(export, exist_ok=True)
    os.chown(export, tools.user.uid, tools.user.gid)
    ok(tools("distrobox", "enter", box, "--", "distrobox-export", "--bin", "/usr/bin/bc", "--export-path", export))
    launcher = os.path.join(export, "bc")
    with open(launcher) as f:
        assert f"-n {box}" in f.read()
    cp = tools(launcher, "-q", input="6*7\n")
    assert cp.returncode == 0 and cp.stdout.split()[-1:] == ["42"], describe(cp)


def test_rm_leaves_no_container(tools):
    """distrobox rm --force removes the box: podman lists no container
    of that name afterwards."""
    name = BOX + "-rm"
    ok(tools("distrobox", "create", "--image", IMAGE, "--name", name, "--yes", "--no-entry"))
    assert name in ok(tools.podman("ps", "--all", "--format", "{{.Names}}")).split()
    ok(tools("distrobox", "rm", name, "--force"))
    assert name not in ok(tools.podman("ps", "--all", "--format", "{{.Names}}")).split()


# What distrobox needs, one thing at a time, with podman alone.

def test_host_pid_namespace(tools):
    """`podman run --pid host`, as every distrobox and toolbox runs."""
    cp = tools.podman("run", "--rm", "--pid", "host", IMAGE, "true")
    assert cp.returncode == 0, describe(cp)


def test_a_privileged_container_can_mount(tools):
    """`podman run --privileged` can mount a tmpfs and bind a directory,
    as distrobox-init does for /run/host's paths (runc allows both)."""
    cp = tools.podman("run", "--rm", "--privileged", IMAGE, "sh", "-c",
                      "mount -t tmpfs none /mnt && mount --bind /etc /media && echo mounted")
    assert cp.returncode == 0 and "mounted" in cp.stdout, describe(cp)


def test_bind_of_the_hosts_localtime(tools):
    """`-v /etc/localtime:/etc/localtime:ro`, which distrobox passes: the
    host's file (a symlink into /usr/share/zoneinfo on Debian) is bound."""
    if not os.path.islink("/etc/localtime") or not os.readlink("/etc/localtime").startswith("/"):
        pytest.skip("the host's /etc/localtime is not an absolute symlink, the case this test is about")
    cp = tools.podman("run", "--rm", "-v", "/etc/localtime:/etc/localtime:ro", IMAGE, "cat", "/etc/localtime")
    assert cp.returncode == 0 and cp.stdout.startswith("TZif"), describe(cp)


SYSTEM_BUS = "/run/dbus/system_bus_socket"


@pytest.fixture(scope="module")
def system_bus():
    """The D-Bus system bus, which toolbox create asks for (it resolves the
    socket's path to bind it into the toolbox): the machine's when it
    runs, else a system dbus-daemon started for these tests and stopped
    after them (a machine without systemd starts none itself)."""
    if os.path.exists(SYSTEM_BUS):
        yield SYSTEM_BUS
        return
    require_tool("dbus-daemon", "dbus-daemon")
    os.makedirs("/run/dbus", exist_ok=True)
    daemon = subprocess.Popen(["dbus-daemon", "--system", "--nofork", "--nopidfile"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: os.path.exists(SYSTEM_BUS) or daemon.poll() is not None,
                   "the system bus to listen", timeout=10)
        if daemon.poll() is not None:
            pytest.fail(f"dbus-daemon --system exited: {daemon.stderr.read().decode()}")
        yield SYSTEM_BUS
    finally:
        daemon.terminate()
        daemon.wait()
        if os.path.exists(SYSTEM_BUS):
            os.unlink(SYSTEM_BUS)


def test_toolbox_create_and_run(tools, system_bus):
    """toolbox create from the labelled local image, then toolbox run: the
    command runs as the same user in the toolbox, with $HOME and sudo,
    and the toolbox runs under kennel-oci."""
    require_tool("toolbox", "podman-toolbox")
    name = "kennel-toolbox"
    try:
        ok(tools("toolbox", "create", "--image", IMAGE, name))
        cp = tools("toolbox", "run", "--container", name, "sh", "-c",
                   'id -un; echo "$HOME"; sudo -S true </dev/null && echo sudo-ok')
        assert cp.returncode == 0, describe(cp)
        # toolbox takes the home from the user's passwd entry, and gives the
        # user an empty password in the sudo group: sudo with no password.
        home = pwd.getpwuid(tools.user.uid).pw_dir
        assert cp.stdout.split()[-3:] == [tools.user.name, home, "sudo-ok"], describe(cp)
        out = ok(tools.podman("inspect", "--type", "container", "--format",
                              "{{.OCIRuntime}} {{.State.ConmonPid}}", name))
        runtime, conmon = out.split()
        assert runtime == "kennel", out
        with open(f"/proc/{conmon}/cmdline") as f:
            argv = f.read().split("\0")
        assert argv[argv.index("-r") + 1] == tools.podman_flagged.runtime, argv
    finally:
        tools.podman("rm", "--force", "--time", "0", name)
