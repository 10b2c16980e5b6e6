"""`kennel box`, as the test user, from the Debian minbase tarball that
test_distrobox.py builds (it has sudo): create, enter as the same user
with passwordless sudo, the shared home, an isolated home, a share item,
export, a terminal, the user unit of `create --unit` (its commands run on
the host as written; there is no user manager here: vm_cases.py's
box_user_unit runs it under systemd), an OCI image layout, stop and rm
leaving nothing behind, bad input."""

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time

import pytest

from test_distrobox import debian_tar  # noqa: F401  (the shared image fixture)


@pytest.fixture(scope="module")
def kb(h, debian_tar):  # noqa: F811
    home = h.tempdir(owner=h.user)
    data = os.path.join(home, ".local", "share")
    env = {"HOME": home, "XDG_DATA_HOME": data, "USER": h.user.name}

    def run(*argv, extra=None, **kw):
        return h.user.run([h.kennel, "box", *map(str, argv)], env=dict(env, **(extra or {})), cwd=home, **kw)

    run.home, run.env, run.image, run.data = home, env, debian_tar, data
    yield run
    for name in ("main", "iso", "two", "share", "oci", "x"):
        run("rm", "--force", name)


def ok(cp):
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout}\nstderr: {cp.stderr}"
    return cp.stdout


@pytest.fixture(scope="module")
def main_box(kb):
    ok(kb("create", "main", "--image", kb.image, timeout=300))
    return "main"


def test_enter_is_the_same_user_with_sudo(kb, main_box, h):
    out = ok(kb("enter", main_box, "--", "sh", "-c", "id -un; id -u; sudo -n id -u; echo $HOME"))
    assert out.split() == [h.user.name, str(h.user.uid), "0", kb.home], out


def test_files_in_the_shared_home_are_the_users(kb, main_box, h):
    ok(kb("enter", main_box, "--", "sh", "-c", "echo x > ~/from-box"))
    st = os.stat(os.path.join(kb.home, "from-box"))
    assert (st.st_uid, st.st_gid) == (h.user.uid, h.user.gid)


def test_exit_code_and_the_shared_working_directory(kb, main_box):
    cp = kb("enter", main_box, "--", "sh", "-c", "pwd; exit 7")
    assert cp.returncode == 7, cp.stderr
    assert cp.stdout.strip() == kb.home, cp.stdout


def test_enter_on_a_terminal_gets_a_pty_with_term_and_the_exit_code(kb, main_box, h):
    if not shutil.which("script"):
        pytest.skip("script(1) is not installed (bsdutils)")
    # script(1) gives the enter a pty on stdin and returns its exit code.
    cp = h.user.run(["script", "-qec", f"{h.kennel} box enter {main_box}", "/dev/null"],
                    input="tty\necho T=$TERM\nexit 5\n", env=dict(kb.env, TERM="xterm-kennel"), cwd=kb.home,
                    timeout=60)
    # Each answer follows the shell's prompt; the typed lines come back too.
    out = cp.stdout.replace("\r", "")
    assert re.search(r"^(\S*[$#] )?/dev/pts/\d+$", out, re.M), out
    assert re.search(r"^(\S*[$#] )?T=xterm-kennel$", out, re.M), out
    assert cp.returncode == 5, f"exit {cp.returncode}\n{out}\n{cp.stderr}"


def test_enter_without_a_terminal_gets_none(kb, main_box):
    cp = kb("enter", main_box, "--", "sh", "-c", "tty; echo rc=$?", stdin=subprocess.DEVNULL)
    assert cp.stdout.split() == ["not", "a", "tty", "rc=1"], cp.stdout + cp.stderr


def test_two_enters_at_once_share_one_box(kb, main_box, h):
    slow = h.user.popen([h.kennel, "box", "enter", main_box, "--", "sleep", "2"], env=kb.env, cwd=kb.home)
    out = ok(kb("enter", main_box, "--", "sh", "-c", "ps -e -o comm= | sort | tr '\\n' ' '"))
    assert "sleep" in out, out
    assert slow.wait(timeout=30) == 0


def test_isolated_home_hides_the_real_one(kb, h):
    iso = os.path.join(h.tempdir(owner=h.user), "isohome")
    open(os.path.join(kb.home, "real-marker"), "w").close()
    ok(kb("create", "iso", "--image", kb.image, "--home", iso, timeout=300))
    out = ok(kb("enter", "iso", "--", "sh", "-c", "ls -A ~; touch ~/in-iso"))
    assert "real-marker" not in out, out
    assert os.path.exists(os.path.join(iso, "in-iso"))
    # rm asks (no terminal: refuses) before deleting the box's own home.
    cp = kb("rm", "iso")
    assert cp.returncode != 0 and "--force" in cp.stderr, cp.stderr
    ok(kb("rm", "--force", "iso"))
    assert not os.path.exists(iso)


def test_a_share_is_present_and_the_others_absent(kb, h):
    if not shutil.which("ssh-agent"):
        pytest.skip("ssh-agent is not installed (openssh-client)")
    sock = os.path.join(h.tempdir(owner=h.user), "agent.sock")
    agent = h.user.popen(["ssh-agent", "-D", "-a", sock], env=kb.env)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        ok(kb("create", "share", "--image", kb.image, "--share", "ssh-agent", extra={"SSH_AUTH_SOCK": sock},
              timeout=300))
        out = ok(kb("enter", "share", "--", "sh", "-c",
                    "echo $SSH_AUTH_SOCK; test -S \"$SSH_AUTH_SOCK\" && echo SOCK; ls /tmp/.X11-unix /dev/dri 2>&1 || true",
                    extra={"SSH_AUTH_SOCK": sock}))
        assert sock in out and "SOCK" in out, out
        assert "No such file" in out, out
    finally:
        agent.kill()
        agent.wait()


def test_a_missing_share_source_is_an_error(kb):
    cp = kb("create", "nope", "--image", kb.image, "--share", "wayland", extra={"WAYLAND_DISPLAY": "wayland-none"})
    assert cp.returncode == 125 and "wayland" in cp.stderr, cp.stderr
    assert not os.path.exists(os.path.join(kb.data, "kennel", "boxes", "nope"))


def test_export_runs_the_binary_in_the_box(kb, main_box):
    bindir = os.path.join(kb.home, "bin-export")
    ok(kb("export", main_box, "cat", "--dir", bindir))
    launcher = os.path.join(bindir, "cat")
    cp = subprocess.run(["setpriv", f"--reuid={os.stat(kb.home).st_uid}", f"--regid={os.stat(kb.home).st_gid}",
                         "--clear-groups", "--", launcher, "/etc/os-release"],
                        env=dict(kb.env, PATH="/usr/bin:/bin"), capture_output=True, text=True, cwd=kb.home)
    assert cp.returncode == 0 and "bookworm" in cp.stdout, cp.stderr


@pytest.fixture(scope="module")
def unit_box(kb):
    """Box `two`, made with --unit."""
    out = ok(kb("create", "two", "--image", kb.image, "--unit", timeout=300))
    assert "kennel-box-two.service" in out, out
    return "two"


def unit_commands(path):
    """The environment, ExecStart and ExecStop of a unit file, split as
    systemd splits them (the unit's words need no more than shlex)."""
    env, cmds = {}, {}
    for line in open(path):
        key, _, value = line.rstrip("\n").partition("=")
        if key == "Environment":
            for word in shlex.split(value):
                k, _, v = word.partition("=")
                env[k] = v
        elif key in ("ExecStart", "ExecStop"):
            cmds[key] = shlex.split(value)
    return env, cmds


def test_the_unit_starts_and_stops_the_box(kb, unit_box, h):
    path = os.path.join(kb.home, ".config", "systemd", "user", "kennel-box-two.service")
    text = open(path).read()
    assert re.search(r"^Type=notify$", text, re.M), text
    if shutil.which("systemd-analyze"):
        # `verify` loads the unit as the user manager would, command paths included.
        cp = h.user.run(["systemd-analyze", "--user", "verify", path], env=kb.env, cwd=kb.home)
        assert cp.returncode == 0 and "kennel-box-two" not in cp.stderr, cp.stderr
    env, cmds = unit_commands(path)
    assert cmds["ExecStart"][1:] == ["box", "start", "two", "--foreground"], cmds
    # As the user manager would run it: the unit's environment over a login's.
    start = h.user.popen(cmds["ExecStart"], env=dict(kb.env, **env), cwd=kb.home)
    try:
        for _ in range(300):
            if "box.two " in ok(h.user.run([h.kennel, "ps"], env=kb.env)):
                break
            assert start.poll() is None, start.communicate()
            time.sleep(0.1)
        assert ok(kb("enter", unit_box, "--", "cat", "/proc/sys/kernel/hostname")).strip() == unit_box
        assert re.search(r"^two +running ", ok(kb("list")), re.M)
        ok(h.user.run(cmds["ExecStop"], env=dict(kb.env, **env), cwd=kb.home))
        rc = start.wait(timeout=30)
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
    # The unit's SuccessExitStatus covers what the stop made it exit with.
    success = {0} | {int(w) for l in text.splitlines() if l.startswith("SuccessExitStatus=")
                     for w in l.partition("=")[2].split()}
    assert rc in success, (rc, start.stderr.read())
    assert "box.two " not in ok(h.user.run([h.kennel, "ps"], env=kb.env))


def test_two_boxes_then_stop_and_rm_leave_nothing(kb, main_box, unit_box, h):
    ok(kb("enter", "two", "--", "true"))
    ok(kb("enter", main_box, "--", "true"))
    listing = ok(kb("list"))
    rows = {l.split()[0]: l.split()[1] for l in listing.splitlines()[1:]}
    assert rows.get("main") == rows.get("two") == "running", listing
    ps = ok(h.user.run([h.kennel, "ps"], env=kb.env))
    pid = next(l.split()[1] for l in ps.splitlines() if l.startswith("box.two "))
    ok(kb("stop", "two"))
    assert not os.path.exists(f"/proc/{pid}")
    assert "box.two" not in ok(h.user.run([h.kennel, "ps"], env=kb.env))
    out = ok(kb("rm", "two"))
    assert not os.path.exists(os.path.join(kb.data, "kennel", "boxes", "two"))
    # The unit `create --unit` wrote goes with the box.
    assert not os.path.exists(os.path.join(kb.home, ".config", "systemd", "user", "kennel-box-two.service")), out
    with open("/proc/self/mountinfo") as f:
        assert "boxes/two" not in f.read()


def test_bad_input(kb, main_box, h):
    cp = kb("enter", "missing", "--", "true")
    assert cp.returncode == 125 and "no box named" in cp.stderr, cp.stderr
    cp = kb("create", main_box, "--image", kb.image)
    assert cp.returncode == 125 and "exists already" in cp.stderr, cp.stderr
    cp = kb("create", "bad", "--image", "/nonexistent.tar")
    assert cp.returncode == 125 and "cannot read the image" in cp.stderr, cp.stderr
    assert not os.path.exists(os.path.join(kb.data, "kennel", "boxes", "bad"))
    # A unit of the user's own is never overwritten, and the box is not made.
    units = os.path.join(kb.home, ".config", "systemd", "user")
    ok(h.user.run(["mkdir", "-p", units]))
    mine = os.path.join(units, "kennel-box-bad.service")
    ok(h.user.run(["sh", "-c", f"echo mine > {mine}"]))
    cp = kb("create", "bad", "--image", kb.image, "--unit")
    assert cp.returncode == 125 and "exists already" in cp.stderr and mine in cp.stderr, cp.stderr
    assert open(mine).read() == "mine\n"
    assert not os.path.exists(os.path.join(kb.data, "kennel", "boxes", "bad"))


# An OCI image layout: the suite's one image as its base layer (zstd, by
# skopeo), then layers made here: whiteouts and an opaque directory
# (gzip), and an attack (plain tar) through an absolute and a climbing
# symlink, aimed at a host directory; further manifests for the choices.

def add_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layer(entries, compress=None):
    """A tar of (name, kind, data-or-target) entries, owned by root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, value
                t.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                t.addfile(info, io.BytesIO(value))
    data = buf.getvalue()
    if compress == "gzip":
        data = gzip.compress(data)
    return data


def add_manifest(layout, ref, layers, config):
    """layers: [(mediaType, bytes)]; the manifest tagged `ref` in index.json."""
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
                "layers": [dict(add_blob(layout, data), mediaType=mt) for mt, data in layers]}
    desc = add_blob(layout, json.dumps(manifest).encode())
    index_path = os.path.join(layout, "index.json")
    index = json.load(open(index_path))
    index["manifests"].append(dict(desc, mediaType=manifest["mediaType"],
                                   annotations={"org.opencontainers.image.ref.name": ref}))
    with open(index_path, "w") as f:
        json.dump(index, f)


@pytest.fixture(scope="module")
def oci(kb, h):
    require = shutil.which("skopeo")
    if not require:
        pytest.skip("skopeo is not installed (packaging/install-deps.sh test installs it)")
    base = h.tempdir()
    layout = os.path.join(base, "layout")
    cp = subprocess.run(["skopeo", "copy", "--dest-compress-format", "zstd", f"tarball:{kb.image}",
                         f"oci:{layout}:bookworm"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    index = json.load(open(os.path.join(layout, "index.json")))
    blob = lambda d: os.path.join(layout, "blobs", "sha256", d["digest"].split(":")[1])  # noqa: E731
    manifest = json.load(open(blob(index["manifests"][0])))
    base_layers = [(l["mediaType"], open(blob(l), "rb").read()) for l in manifest["layers"]]
    host = h.tempdir(owner=h.user)  # what the attack aims at
    for name in ("victim", "victim2"):
        with open(os.path.join(host, name), "w") as f:
            f.write("host\n")
    inner = host.lstrip("/")
    whiteouts = layer([
        ("usr/share/doc/kept", "file", b"kept\n"),
        ("usr/share/doc/.wh..wh..opq", "file", b""),
        ("etc/.wh.motd", "file", b""),
        # The host directory's path, inside the image too, and two ways
        # a later layer could try to reach the host's through a symlink.
        (inner, "dir", None),
        (f"{inner}/victim", "file", b"image\n"),
        (f"{inner}/victim2", "file", b"image\n"),
        ("abs", "link", host),
        ("up", "link", "../../../../../../../../.."),
    ], "gzip")
    attack = layer([
        ("abs/planted", "file", b"x\n"),
        ("abs/.wh.victim", "file", b""),
        (f"up/{inner}/planted2", "file", b"x\n"),
        (f"up/{inner}/.wh.victim2", "file", b""),
    ])
    gz, tar = "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar"
    # Replaces the index skopeo wrote: every manifest is added here.
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": []}, f)
    add_manifest(layout, "bookworm", base_layers + [(gz, whiteouts), (tar, attack)], manifest["config"])
    add_manifest(layout, "other", [(tar, layer([("x", "file", b"x\n")]))], manifest["config"])
    add_manifest(layout, "weird", [("application/vnd.example.squashfs", b"not a tar")], manifest["config"])
    add_manifest(layout, "climb", [(tar, layer([("../escaped", "file", b"x\n")]))], manifest["config"])
    # A whiteout of `..` would remove the root's parent.
    add_manifest(layout, "whclimb", [(tar, layer([("keep", "file", b"x\n"), (".wh..", "file", b"")]))],
                 manifest["config"])
    subprocess.run(["chmod", "-R", "a+rX", base], check=True)
    ok(kb("create", "oci", "--image", f"{layout}:bookworm", timeout=300))
    return layout, host


def test_an_oci_layout_is_unpacked_with_its_whiteouts(kb, oci, h):
    out = ok(kb("enter", "oci", "--", "sh", "-c",
                "grep -q bookworm /etc/os-release && echo BOOKWORM; sudo -n id -u; ls -A /usr/share/doc; test -e /etc/motd || echo NO-MOTD"))
    assert out.split() == ["BOOKWORM", "0", "kept", "NO-MOTD"], out
    assert "oci" in ok(kb("list"))


def test_an_oci_layer_never_writes_outside_the_root(kb, oci):
    layout, host = oci
    # The host directory is as it was ...
    assert sorted(os.listdir(host)) == ["victim", "victim2"]
    assert all(open(os.path.join(host, n)).read() == "host\n" for n in ("victim", "victim2"))
    # ... and the layers' writes and whiteouts landed in the image's copy.
    inner = os.path.join(kb.data, "kennel", "boxes", "oci", "root", host.lstrip("/"))
    assert sorted(os.listdir(inner)) == ["planted", "planted2"], os.listdir(inner)


def test_oci_layout_choices_and_refusals_change_nothing(kb, oci):
    layout, _ = oci
    boxes = os.path.join(kb.data, "kennel", "boxes")
    before = sorted(os.listdir(boxes))
    cp = kb("create", "x", "--image", layout)
    assert cp.returncode == 125 and all(r in cp.stderr for r in ("bookworm", "other", ":REF")), cp.stderr
    cp = kb("create", "x", "--image", f"{layout}:nope")
    assert cp.returncode == 125 and "tagged \"nope\"" in cp.stderr, cp.stderr
    cp = kb("create", "x", "--image", f"{layout}:weird")
    assert cp.returncode == 125 and "application/vnd.example.squashfs" in cp.stderr, cp.stderr
    cp = kb("create", "x", "--image", f"{layout}:climb", timeout=120)
    assert cp.returncode == 125 and "../escaped" in cp.stderr, cp.stderr
    cp = kb("create", "x", "--image", f"{layout}:whclimb", timeout=120)
    assert cp.returncode == 125 and "names no entry" in cp.stderr, cp.stderr
    assert sorted(os.listdir(boxes)) == before
