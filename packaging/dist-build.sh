#!/bin/sh
# The distribution build, shared by debian/rules and the rpm spec so both
# packages come from one compile: binaries linked dynamically against the
# system's C library and libseccomp, the helper's directory compiled in,
# every crate from vendor/ (--offline --locked), then the man pages and
# completions. Run at the top of the tree packaging/dist-source.sh made.
#   LIBEXECDIR   where kennel looks for kennel-idmap (default /usr/libexec/kennel)
#   BINDIR       where the generator's units find kennel (default /usr/bin)
#   CARGO        the cargo to run (default: cargo on PATH)
#   CARGO_TARGET_DIR  where the compile goes (default target/)
set -eu
KENNEL_LIBEXECDIR=${LIBEXECDIR:-/usr/libexec/kennel}
# No .git in a source package: the commit comes from the export.
if [ -z "${KENNEL_GIT_COMMIT:-}" ]; then
  KENNEL_GIT_COMMIT=$(cat .kennel-commit 2>/dev/null || echo unknown)
fi
LIBSECCOMP_LINK_TYPE=dylib
# The units kennel-generator writes run $KENNEL_BINDIR/kennel.
KENNEL_BINDIR=${BINDIR:-/usr/bin}
export KENNEL_LIBEXECDIR KENNEL_GIT_COMMIT LIBSECCOMP_LINK_TYPE KENNEL_BINDIR
if ! command -v "${CARGO:-cargo}" >/dev/null 2>&1; then
  echo "dist-build.sh: no cargo on PATH: install Rust 1.85 or newer (rustup.rs), or name it with CARGO=/path/to/cargo" >&2
  exit 1
fi
"${CARGO:-cargo}" build --offline --locked --profile dist --bins
out=${CARGO_TARGET_DIR:-target}/dist
"$out/kennel-docgen" "$out/docs"
