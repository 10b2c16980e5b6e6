"""`kennel run --net pasta`: user-mode networking with published ports.

Traffic goes only between this machine's own namespaces and its own
addresses: the container reaches a server the test runs on the host's
loopback through pasta's gateway mapping, and the host reaches the
container through ports pasta publishes.
"""

import contextlib
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from probe import containers, copy_rootfs, describe, ok, tree, wait_until  # noqa: F401

pytestmark = pytest.mark.skipif(
    shutil.which("pasta") is None,
    reason="pasta is not installed (make test-deps installs Debian's passt)",
)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def default_route():
    """(interface, gateway) of the host's default IPv4 route, or skip."""
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                gw = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
                return fields[0], gw
    pytest.skip("the host has no default IPv4 route: pasta has nothing to copy the container's address from")


def host_address(iface):
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", iface],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[3].split("/")[0]


def run(h, *flags, cmd, **kw):
    argv = [h.kennel, "run", "--rootfs", h.rootfs, *flags, "--", *cmd]
    return h.user.run(argv, **kw)


def pastas_with(marker):
    """pids of pasta processes whose argv holds `marker` (a port only this
    test uses), so other sessions' pastas are never counted."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) in (b"pasta", b"passt", b"passt.avx2", b"pasta.avx2") \
                and any(marker.encode() in a for a in argv):
            found.append(int(pid))
    return found


@contextlib.contextmanager
def killed_if_left(proc):
    """Runs the block; a container process still running after it
    (an assertion failed midway) is killed and reaped."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rootfs_without_resolv_conf(h):
    """A private copy of the rootfs without /etc/resolv.conf: (its path,
    that file's path, the tree as it is, `kennel run --rootfs` on it up to
    `--`)."""
    rootfs = copy_rootfs(h)
    point = os.path.join(rootfs, "etc", "resolv.conf")
    if os.path.lexists(point):
        os.unlink(point)
    return rootfs, point, tree(rootfs), [h.kennel, "run", "--rootfs", rootfs, "--"]


class Recorder(http.server.BaseHTTPRequestHandler):
    peers = []

    def do_GET(self):
        Recorder.peers.append(self.client_address[0])
        body = b"hello-from-host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_default_is_pasta_and_private_stays_loopback_only(h):
    out = run(h, "--verbose", cmd=["cat", "/proc/net/dev"])
    assert out.returncode == 0, out.stderr
    assert "network: Pasta" in out.stderr, out.stderr
    ifaces = [line.split(":")[0].strip() for line in out.stdout.splitlines()[2:]]
    assert len(ifaces) == 2 and "lo" in ifaces, ifaces
    private = ok(run(h, "--net", "private", cmd=["cat", "/proc/net/dev"]))
    assert [line.split(":")[0].strip() for line in private.splitlines()[2:]] == ["lo"]


def test_container_reaches_a_host_server_with_a_route_from_its_first_connect(h):
    iface, gateway = default_route()
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.peers.clear()
    try:
        # The very first connect: no retry inside, so a race with pasta's
        # set-up would fail it.
        # (busybox-static's wget crashes without NSS; nc speaks plainly.)
        script = (f"ip route | grep -q '^default via' && "
                  f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 3 nc {gateway} {port}")
        out = run(h, "--net", "pasta", cmd=["sh", "-c", script])
    finally:
        server.shutdown()
    # (busybox nc is ended by timeout with Debian 12's pasta: see
    # KNOWN_HALF_CLOSE_BUG.)
    lines = out.stdout.splitlines()
    assert lines[0] == "HTTP/1.0 200 OK" and lines[-1] == "hello-from-host", (out.stdout, out.stderr)
    # pasta connects for the container from the host's loopback (its
    # gateway address is mapped to the host): that is the source the
    # host's server sees.
    assert Recorder.peers == ["127.0.0.1"], Recorder.peers


def passt_git_date():
    """The git date in Debian's passt version (0.0~gitYYYYMMDD...), or None."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "passt"], capture_output=True, text=True)
    if out.returncode != 0 or "~git" not in out.stdout:
        return None
    return int(out.stdout.split("~git")[1][:8])


# Debian 12's passt (0.0~git20230309) does not pass the host's close of a
# connection the container half-closed (shutdown of its write side, as nc
# does at the end of its input) through the gateway: the client never
# sees the end and may read the reply again. Debian 13's passt
# (0.0~git20250503), put in its place on the same machine, passes it
# through kennel with kennel's options; Debian 12's fails the same way
# started by hand with its defaults.
KNOWN_HALF_CLOSE_BUG = (passt_git_date() or 99999999) <= 20230309


@pytest.mark.xfail(KNOWN_HALF_CLOSE_BUG, strict=True,
                   reason="Debian 12's passt loses the end of a half-closed connection through the gateway")
def test_a_half_closed_connection_to_the_host_ends_after_one_reply(h):
    _, gateway = default_route()
    body = b"reply-" + b"x" * 4000 + b"-end\n"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            while not conn.recv(4096).endswith(b"\r\n\r\n"):
                pass
            conn.sendall(body)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        # busybox nc shuts its write side down at the end of its input,
        # then reads until the server's close; 124 is timeout's.
        script = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc {gateway} {port} > /tmp/got; "
                  "echo nc=$?; wc -c < /tmp/got; grep -c reply- /tmp/got")
        out = run(h, "--net", "pasta", cmd=["sh", "-c", script])
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    # The reply once, in full, and nc ended by the server's close.
    assert out.stdout.split() == ["nc=0", str(len(body)), "1"], out.stdout


def test_published_tcp_port_answers_on_loopback_and_the_host_address(h, containers):
    iface, _ = default_route()
    port = free_port()
    script = "mkdir -p /tmp/www && echo served-by-container > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www"
    if True:
        containers.start("pasta-tcp", "--net", "pasta", "-p", f"{port}:80", cmd=["sh", "-c", script])

        def get(addr):
            try:
                with socket.create_connection((addr, port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    return s.makefile("rb").read().decode(errors="replace")
            except OSError:
                return ""
        for addr in ["127.0.0.1", host_address(iface)]:
            wait_until(lambda: "served-by-container" in get(addr), f"the container's server at {addr}")
        rows = json.loads(ok(h.user.run([h.kennel, "ps", "--format", "json"])))
        row = next(r for r in rows if r["name"] == "pasta-tcp")
        assert row["network"] == "pasta"
        assert row["ports"] == [f"{port}:80/tcp"]
        assert row["address"] == host_address(iface)
        table = ok(h.user.run([h.kennel, "ps"]))
        assert f"{port}:80/tcp" in table and host_address(iface) in table


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
print("listening", flush=True)
data, peer = s.recvfrom(100)
print(data.decode().strip(), flush=True)
"""


def test_published_udp_port_delivers_datagrams(h):
    # busybox has no UDP listener: the host sandbox (the host's /usr,
    # --net pasta asked for explicitly) runs the host's python3.
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("/usr/bin/python3 is missing: nothing to listen for UDP in the container")
    port = free_port(socket.SOCK_DGRAM)
    proc = h.user.popen([h.kennel, "run", "--no-home", "--net", "pasta",
                         "-p", f"127.0.0.1:{port}:5353/udp", "--",
                         "timeout", "10", "/usr/bin/python3", "-c", UDP_ECHO],
                        stdin=subprocess.DEVNULL)
    with killed_if_left(proc):
        assert proc.stdout.readline() == "listening\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"udp-probe\n", ("127.0.0.1", port))
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        out, err = proc.communicate(timeout=20)
    assert out == "udp-probe\n", (out, err)


def test_dns_resolves_through_pasta_to_the_hosts_resolver(h):
    """The host's resolver is a server the test runs on the host's loopback
    (named in a private /etc/resolv.conf for kennel and pasta only)."""
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dns.bind(("127.0.0.1", 53))
    except OSError as e:
        dns.close()
        pytest.skip(f"cannot run a test resolver on 127.0.0.1:53 ({e})")
    dns.settimeout(10)
    asked = []

    def answer():
        try:
            while True:
                q, peer = dns.recvfrom(512)
                end = 12
                while q[end] != 0:
                    end += 1 + q[end]
                qtype = struct.unpack(">H", q[end + 1:end + 3])[0]
                asked.append(qtype)
                question = q[12:end + 5]
                rr = b""
                if qtype == 1:
                    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("10.9.8.7")
                flags_counts = b"\x81\x80" + struct.pack(">HHHH", 1, 1 if rr else 0, 0, 0)
                dns.sendto(q[:2] + flags_counts + question + rr, peer)
        except OSError:
            pass
    threading.Thread(target=answer, daemon=True).start()
    resolv = os.path.join(h.tempdir(), "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    inner = h.user.argv([h.kennel, "run", "--rootfs", h.rootfs, "--net", "pasta", "--",
                         "nslookup", "kennel-probe.test"])
    try:
        out = subprocess.run(["unshare", "-m", "sh", "-c",
                              f'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv, *inner],
                             env=h.user.env(), capture_output=True, text=True, timeout=30)
    finally:
        dns.close()
    assert "10.9.8.7" in out.stdout, (out.stdout, out.stderr)
    assert 1 in asked


def test_pasta_is_gone_after_exit_and_after_sigkill_of_the_runner(h):
    port = free_port()
    marker = f"{port}:80"
    # With a published port, kennel returns only once pasta is gone and
    # the port free for the next container.
    ok(run(h, "--net", "pasta", "-p", marker, cmd=["true"]))
    assert pastas_with(marker) == []
    assert port_free(port), f"host port {port} still bound when kennel returned"

    # Without one, kennel returns once pasta is killed; it ends, and its
    # directory goes, a moment later.
    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--net", "pasta", "--", "true"],
                        stdin=subprocess.DEVNULL)
    assert proc.wait(timeout=30) == 0
    mine = f"kennel-pasta.{proc.pid}."
    wait_until(lambda: not pastas_with(mine), "pasta to end after its container")
    wait_until(lambda: not [d for d in os.listdir(h.user.runtime_dir) if d.startswith(mine)],
               "pasta's directory to go")

    proc = h.user.popen([h.kennel, "run", "--rootfs", h.rootfs, "--net", "pasta", "-p", marker,
                         "--", "sleep", "30"], stdin=subprocess.DEVNULL)
    with killed_if_left(proc):
        wait_until(lambda: pastas_with(marker), "pasta to start")
        proc.kill()
        proc.wait()
        wait_until(lambda: not pastas_with(marker), "pasta to end with its runner")
        # Its directory (pid file, log, resolv.conf) went with it.
        left = lambda: [d for d in os.listdir(h.user.runtime_dir)
                        if d.startswith(f"kennel-pasta.{proc.pid}.")]
        wait_until(lambda: not left(), "pasta's directory to go")
    wait_until(lambda: port_free(port), f"host port {port} to be free after the runner's SIGKILL")


def test_a_rootfs_failing_while_pasta_starts_is_the_error_and_leaves_nothing(h):
    """The rootfs is built while pasta starts: a mount that fails there is
    what kennel reports (not pasta's end), and neither pasta nor its
    directory outlives the refusal."""
    port = free_port()
    marker = f"{port}:80"
    out = run(h, "--net", "pasta", "-p", marker, "-v", "/etc/hostname:/bin/sh/inside",
              cmd=["echo", "ran"])
    assert out.returncode == 125, describe(out)
    assert "ran" not in out.stdout
    assert "/bin/sh/inside" in out.stderr and "pasta" not in out.stderr, out.stderr
    wait_until(lambda: not pastas_with(marker), "pasta to end after the refusal")
    assert port_free(port), f"host port {port} still bound after the refusal"
    wait_until(lambda: not [d for d in os.listdir(h.user.runtime_dir) if d.startswith("kennel-pasta.")],
               "pasta's directory to go")


def test_a_rootfs_without_resolv_conf_is_left_as_it_was(h):
    """The default network mounts pasta's resolv.conf onto /etc/resolv.conf;
    a writable tree without one is, after the container ends (normally,
    with a failing command, or with its runner killed), exactly as it was:
    no mount point left in it, /etc's mtime included."""
    rootfs, _, before, base = rootfs_without_resolv_conf(h)
    cp = h.user.run(base + ["cat", "/etc/resolv.conf"])
    assert cp.returncode == 0 and "nameserver 169.254.1.1" in cp.stdout, describe(cp)
    assert tree(rootfs) == before, "a container's normal exit left the tree changed"
    cp = h.user.run(base + ["sh", "-c", "exit 3"])
    assert cp.returncode == 3, describe(cp)
    assert tree(rootfs) == before, "a failing command left the tree changed"

    proc = h.user.popen(base + ["sh", "-c", "grep -q 169.254.1.1 /etc/resolv.conf && echo up; exec sleep 30"],
                        stdin=subprocess.DEVNULL)
    with killed_if_left(proc):
        assert proc.stdout.readline() == "up\n", proc.stderr.read()
        proc.kill()
        proc.wait()
        wait_until(lambda: tree(rootfs) == before, "the tree to be as it was after the runner's SIGKILL")


def test_a_container_ending_keeps_the_mount_point_another_one_uses(h):
    """Two containers on one tree without /etc/resolv.conf: the first to
    end leaves the mount point the other still stands on (removing it
    would take that container's resolv.conf away); the last one removes it."""
    rootfs, point, before, base = rootfs_without_resolv_conf(h)
    longer = h.user.popen(base + ["sh", "-c", "echo up; read go; cat /etc/resolv.conf"], stdin=subprocess.PIPE)
    with killed_if_left(longer):
        assert longer.stdout.readline() == "up\n", longer.stderr.read()
        cp = h.user.run(base + ["true"])
        assert cp.returncode == 0, describe(cp)
        assert os.path.isfile(point), "removed while another container used it"
        out, err = longer.communicate("go\n", timeout=20)
        assert longer.returncode == 0 and "nameserver 169.254.1.1" in out, (out, err)
        wait_until(lambda: tree(rootfs) == before, "the tree to be as it was after the last container")


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("spec, says", [
    ("abc", "both ports"),
    ("70000:80", "not a port number"),
    ("80:80/sctp", "unknown protocol"),
])
def test_malformed_publish_is_refused(h, spec, says):
    out = run(h, "--net", "pasta", "-p", spec, cmd=["echo", "ran"])
    assert out.returncode == 125, out
    assert "ran" not in out.stdout
    assert says in out.stderr and spec in out.stderr, out.stderr


def test_a_host_port_in_use_is_refused_and_nothing_is_left(h):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run(h, "--net", "pasta", "-p", f"{port}:80", cmd=["echo", "ran"])
    assert out.returncode == 125, out
    assert "ran" not in out.stdout
    assert f"host port {port}/tcp is already in use" in out.stderr, out.stderr
    assert pastas_with(f"{port}:80") == []


def test_a_privileged_host_port_is_refused(h):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        start = int(f.read())
    if start <= 80:
        pytest.skip(f"net.ipv4.ip_unprivileged_port_start is {start}: port 80 is not privileged here")
    out = run(h, "--net", "pasta", "-p", "80:80", cmd=["echo", "ran"])
    assert out.returncode == 125, out
    assert "ran" not in out.stdout
    assert "ip_unprivileged_port_start" in out.stderr, out.stderr
    assert pastas_with("80:80") == []


def test_publish_needs_pasta(h):
    for net in ["private", "bridge"]:
        out = run(h, "--net", net, "-p", "18080:80", cmd=["echo", "ran"])
        assert out.returncode != 0 and "--net pasta" in out.stderr, out.stderr
        assert "ran" not in out.stdout


def path_without_pasta(h):
    """A PATH with setpriv (to become the test user) and nothing else."""
    d = h.tempdir()
    os.symlink(shutil.which("setpriv"), os.path.join(d, "setpriv"))
    return {"PATH": d}


def test_missing_pasta_is_named_with_its_package(h):
    env = path_without_pasta(h)
    out = run(h, "--net", "pasta", cmd=["echo", "ran"], env=env)
    assert out.returncode == 125 and "ran" not in out.stdout, out
    assert "pasta is not installed" in out.stderr and "apt install passt" in out.stderr, out.stderr
    # Without --net, the default falls back to a loopback-only network.
    out = run(h, "--verbose", cmd=["cat", "/proc/net/dev"], env=env)
    assert out.returncode == 0, out.stderr
    assert "pasta is not installed" in out.stderr, out.stderr
    assert [line.split(":")[0].strip() for line in out.stdout.splitlines()[2:]] == ["lo"]
    doctor = h.user.run([h.kennel, "doctor"], env=env)
    assert "warn  pasta" in doctor.stdout and "fix: apt install passt" in doctor.stdout, doctor.stdout


def test_doctor_reports_pasta_and_the_default(h):
    out = h.user.run([h.kennel, "doctor"])
    lines = out.stdout.splitlines()
    at = next((i for i, l in enumerate(lines) if "pasta" in l), None)
    assert at is not None, out.stdout
    line = lines[at]
    assert "default network for a rootless --rootfs" in line, line
    if KNOWN_HALF_CLOSE_BUG:
        # The reproducer's xfail and doctor agree on which passt is broken.
        assert line.startswith("warn  pasta") and "half-closes" in line, line
        assert any("a newer passt fixes it" in l for l in lines[at:at + 3]), out.stdout
    else:
        assert line.startswith("ok    pasta"), out.stdout


def test_pasta_as_real_root(h):
    """As root, pasta would switch to nobody, who cannot open the
    container's namespaces: kennel keeps it as the caller."""
    out = subprocess.run([h.kennel, "run", "--net", "pasta", "--rootfs", h.rootfs, "--", "ip", "route"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("default via"), out.stdout


def test_oci_bundle_annotation_gets_pasta_until_the_container_ends(h, oci_runtime):
    """kennel-oci: the runner leaves after `create`; pasta stays with the
    container and goes when it is killed."""
    bundle = h.tempdir()
    port = free_port()
    ok(h.user.run([oci_runtime, "spec", "--rootless"], cwd=bundle))
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["root"] = {"path": h.rootfs, "readonly": False}
    config["process"].update(args=["sleep", "30"], terminal=False)
    config["linux"]["namespaces"].append({"type": "network"})
    config.setdefault("annotations", {}).update({
        "run.kennel.net": "pasta", "run.kennel.publish": f"{port}:80"})
    with open(path, "w") as f:
        json.dump(config, f)
    name = f"pasta-oci-{port}"
    env = {"XDG_RUNTIME_DIR": h.user.runtime_dir}
    try:
        # The container keeps the stdio it is created with: not our pipes.
        created = subprocess.run(h.user.argv([oci_runtime, "create", "--bundle", bundle, name]),
                                 cwd=bundle, env=h.user.env(env), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        assert created.returncode == 0
        assert len(pastas_with(f"{port}:80")) == 1
        ok(h.user.run([oci_runtime, "start", name], env=env))
        route = ok(h.user.run([oci_runtime, "exec", name, "ip", "route"], env=env))
        assert route.startswith("default via"), route
        ok(h.user.run([oci_runtime, "kill", name, "KILL"], env=env))
        wait_until(lambda: not pastas_with(f"{port}:80"), "pasta to end with the OCI container")
    finally:
        h.user.run([oci_runtime, "delete", "--force", name], env=env)
