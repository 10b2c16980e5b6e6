"""Every kennel command the README and docs/ show names a subcommand and
flags the binaries have: a renamed or removed flag fails here, not in a
reader's shell. (The README's quick start is also run as written, in
test_readme.py; the other pages' commands need images, sockets or root a
test machine may not have, so they are checked against each binary's
`--help` rather than run.)

A command is a line of a ```sh (or unlabelled) block that starts with
one of the front ends, `sudo ` and a `$ ` prompt allowed, with
backslash continuations joined."""

import glob
import os
import re
import shlex
import subprocess

import pytest

from conftest import BUILD_DIR, REPO

FRONT_ENDS = ("kennel", "kennel-oci")
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def documented_commands():
    for page in PAGES:
        fenced, lang, pending = False, None, ""
        with open(page) as f:
            lines = f.read().splitlines()
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                fenced, lang = not fenced, line[3:].strip()
                continue
            if not fenced or lang not in ("sh", "shell", "bash", "console", ""):
                continue
            line = pending + line.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            line = re.sub(r"^\$ ", "", line)
            line = re.sub(r"^sudo ", "", line)
            if line.split(" ", 1)[0] in FRONT_ENDS:
                yield pytest.param(line, id=f"{os.path.basename(page)}:{number}")


def words(line):
    """The command's words, up to a comment, a pipe, `&`, or `--` (after
    which the container's command begins)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out = []
    for word in lexer:
        if word in ("|", "&", "&&", ";", "--"):
            break
        out.append(word)
    return out


def help_of(path):
    cp = subprocess.run([os.path.join(BUILD_DIR, path[0]), *path[1:], "--help"],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"{' '.join(path)} --help failed:\n{cp.stderr}"
    return cp.stdout


def subcommands(help_text):
    names, inside = set(), False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            if not line.startswith("  "):
                break
            names.add(line.split()[0])
    return names


def flags(help_text):
    """Long and short options the help lists (`-t, --tty`, `--image <X>`)."""
    found = set()
    for line in help_text.splitlines():
        m = re.match(r"^\s+(-\w)?(?:, )?(--[\w-]+)?", line)
        if m:
            found.update(x for x in m.groups() if x)
    return found


@pytest.mark.parametrize("line", list(documented_commands()))
def test_a_documented_command_has_the_flags_it_uses(line):
    argv = words(line)
    path = [argv.pop(0)]
    text = help_of(path)
    while argv and argv[0] in subcommands(text):
        path.append(argv.pop(0))
        text = help_of(path)
    known = flags(text)
    for word in argv:
        if not word.startswith("-") or word == "-":
            continue
        if word.startswith("--"):
            wanted = [word.split("=", 1)[0]]
        else:
            wanted = [word[:2]]
        for flag in wanted:
            assert flag in known, (f"`{line}` uses {flag}, which `{' '.join(path)} --help` does not "
                                   f"list; it lists: {' '.join(sorted(known))}")


def test_the_pages_show_commands_to_check():
    # A parser that found nothing would pass every page vacuously.
    assert len(list(documented_commands())) >= 20
