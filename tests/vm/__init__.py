"""A small Debian VM with a real systemd and cgroup v2, booted under qemu TCG,
for the tests that need systemd or cgroup v2 controllers (see README.md)."""
