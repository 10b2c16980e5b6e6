"""The README as a newcomer uses it: its quick start runs, its links lead
somewhere, and it stays short.

The quick start is every ```sh block under the README's "## Quick start"
heading, one command a line, run in order as the ordinary test user with
the binaries under test. Each command must exit 0 and show what the
README's comment beside it says; EXPECTED below holds that, one check per
command, so a command added to the README without a check here fails
until someone writes what it should show.

What the harness gives differently from a fresh machine after
`sudo make install`, substituted explicitly before a command runs:
  * `kennel` is the harness's copy (h.kennel), found by putting its
    directory (h.bindir, where kennel-idmap with its file capabilities sits
    next to it) first on PATH, not /usr/local/bin;
  * `alpine.tar` is the harness's busybox rootfs as a plain tarball
    (the busybox_tar fixture): the README leaves fetching an image to the
    reader, and the tests have no network;
  * `~/images` is a fresh directory of the test user's, so the test user's
    real home is left alone and runs do not see each other's trees.
"""

import os
import re

import pytest

from probe import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
MAX_README_LINES = 150
SUBID_COUNT = 65536


def read(path):
    with open(path) as f:
        return f.read()


def section(text, heading):
    """The lines of the `## heading` section, up to the next `## ` one
    (headings inside fenced blocks do not count)."""
    out, inside, fenced = [], False, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            if inside:
                break
            inside = line[3:].strip() == heading
            continue
        if inside:
            out.append(line)
    assert inside or out, f"README.md has no '## {heading}' section"
    return out


def sh_commands(lines):
    """The commands of the ```sh blocks in `lines`, each without the
    comment beside it (two spaces or more, then #)."""
    commands, in_sh = [], False
    for line in lines:
        if line.startswith("```"):
            in_sh = line.strip() == "```sh" and not in_sh
            continue
        if in_sh and line.strip() and not line.lstrip().startswith("#"):
            commands.append(re.split(r"\s{2,}#", line, maxsplit=1)[0].strip())
    return commands


def quick_start():
    return sh_commands(section(read(README), "Quick start"))


def uid_map(text):
    return [tuple(int(n) for n in line.split()) for line in text.splitlines() if line.strip()]


def full_map(user):
    return [(0, user.uid, 1), (1, user.subid_start, SUBID_COUNT)]


# What each quick-start command must show, as the README's comment says.
# Each check gets the harness, the completed process and the images
# directory substituted for ~/images.
EXPECTED = {
    "kennel doctor":
        lambda h, cp, images: "containers can start" in cp.stdout.splitlines()[-1],
    "kennel run -- id":
        lambda h, cp, images: cp.stdout.startswith(f"uid={h.user.uid}(") and f" gid={h.user.gid}(" in cp.stdout,
    """kennel run -- sh -c 'echo "pid $$"'""":
        lambda h, cp, images: cp.stdout == "pid 1\n",
    "kennel run --userns=auto -- cat /proc/self/uid_map":
        lambda h, cp, images: uid_map(cp.stdout) == full_map(h.user),
    "mkdir -p ~/images":
        lambda h, cp, images: os.path.isdir(images),
    "kennel rootfs import alpine.tar ~/images/alpine":
        lambda h, cp, images: os.lstat(os.path.join(images, "alpine", "bin", "busybox")).st_uid == h.user.uid,
    "kennel run --rootfs ~/images/alpine -- sh -c 'id; cat /proc/self/uid_map'":
        lambda h, cp, images: (cp.stdout.startswith("uid=0(root) gid=0(root)")
                               and uid_map(cp.stdout.split("\n", 1)[1]) == full_map(h.user)),
}


def test_the_quick_start_has_the_commands_this_test_checks():
    commands = quick_start()
    assert commands, "no ```sh block under '## Quick start' in README.md"
    unknown = [c for c in commands if c not in EXPECTED]
    assert not unknown, f"quick-start commands without a check in EXPECTED: {unknown}"
    stale = [c for c in EXPECTED if c not in commands]
    assert not stale, f"checks for commands the README no longer has: {stale}"


def test_the_quick_start_runs_as_an_ordinary_user(h, busybox_tar):
    # A parent of the user's own, so `mkdir -p ~/images` makes the
    # directory as the README's reader would.
    parent = h.tempdir(owner=h.user)
    images = os.path.join(parent, "images")
    env = {"PATH": f"{h.bindir}:{h.user.env()['PATH']}"}
    for command in quick_start():
        script = command.replace("~/images", images).replace("alpine.tar", busybox_tar)
        cp = h.user.run(["sh", "-c", script], env=env, timeout=60)
        assert cp.returncode == 0, f"{command}\n{describe(cp)}"
        assert EXPECTED[command](h, cp, images), f"{command} does not show what the README says\n{describe(cp)}"


def test_the_test_command_ci_runs_is_the_readmes():
    """.ci/run runs the README's test command; both must say the same."""
    ci = [line.strip() for line in read(os.path.join(ROOT, ".ci", "run")).splitlines()
          if line.strip() and not line.lstrip().startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == ["make test"], ci
    assert sh_commands(section(read(README), "Tests")) == ["make test"]


def test_the_readme_is_short():
    lines = read(README).count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move reference text to docs/"


def markdown_files():
    return [README] + sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    found, fenced = set(), False
    for line in read(path).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_leads_to_a_file(path):
    """Links outside the repository (http, https, mailto) are not followed;
    an anchor into a Markdown file must name one of its headings."""
    broken = []
    for target in LINK.findall(read(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(dest):
            broken.append(f"{target}: no {os.path.relpath(dest, ROOT)}")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
    assert not broken, broken
