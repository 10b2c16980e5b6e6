"""Typing into the caller's terminal from inside, beyond what
test_attacks.py covers: TIOCLINUX (its paste subcode injects the console
selection as input), plain and with the upper 32 bits set, with and
without -t, and plain TIOCSTI under -t. Every request must be refused
(kennel's seccomp filter answers EPERM) and nothing may be waiting on the
caller's terminal afterwards."""

import pytest

from test_attacks import PYTHON, _on_a_terminal

# ioctl(fd, REQUEST, ARG) on each of stdin, stdout, stderr and /dev/tty
# when it opens. Prints one line per attempt; exit 0 only if all refused
# with EPERM.
INJECT = r'''
import fcntl, os, sys, termios
kind, wide = sys.argv[1], sys.argv[2] == "wide"
request = (termios.TIOCSTI if kind == "TIOCSTI" else 0x541C) | (1 << 32 if wide else 0)
# TIOCSTI types one byte; TIOCLINUX subcode 3 pastes the selection.
args = [bytes([c]) for c in b"echo INJECTED\n"] if kind == "TIOCSTI" else [bytes([3])]
fds = [0, 1, 2]
try:
    fds.append(os.open("/dev/tty", os.O_RDWR))
except OSError as e:
    print("no /dev/tty:", e.strerror)
bad = 0
for fd in fds:
    for arg in args:
        try:
            fcntl.ioctl(fd, request, arg)
            print("ACCEPTED on fd", fd, flush=True)
            bad = 1
            break
        except OSError as e:
            if e.errno != 1:
                print("refused but not by the filter on fd", fd, e.strerror, flush=True)
                bad = 1
                break
print("all refused" if not bad else "not all refused", flush=True)
sys.exit(bad)
'''

CASES = [("TIOCLINUX", "plain", False), ("TIOCLINUX", "wide", False),
         ("TIOCLINUX", "plain", True), ("TIOCLINUX", "wide", True),
         ("TIOCSTI", "plain", True)]


@pytest.mark.parametrize("kind,variant,tty", CASES,
                         ids=[f"{k}-{v}-{'t' if t else 'no-t'}" for k, v, t in CASES])
def test_no_terminal_injection_from_inside(h, kind, variant, tty):
    code, out, pending = _on_a_terminal(h, [h.kennel, "run", *(["-t"] if tty else []), "--",
                                            PYTHON, "-c", INJECT, kind, variant])
    assert pending == b"", pending
    assert "INJECTED" not in out
    assert code == 0 and "all refused" in out, out
