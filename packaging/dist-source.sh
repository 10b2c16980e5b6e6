#!/bin/sh
# Lays out the distribution source tree that `make deb` and `make rpm`
# build: the checkout's files without the static build's regex shim and
# [patch] section, with packaging/dist/Cargo.lock as its lock file and every
# crate vendored (`cargo vendor`), so the build runs offline and --locked.
#   dist-source.sh OUTDIR           writes OUTDIR/kennel-VERSION/
#   dist-source.sh --update-lock    rewrites packaging/dist/Cargo.lock after
#                                   a dependency change (needs crates.io)
# Why a second lock file: the static build's Cargo.lock resolves `regex` to
# the shim; without the [patch] it resolves to the real crate, and
# `--locked` must hold for both builds.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cargo=${CARGO:-cargo}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/Cargo.toml" | head -n1)

# Copies the tracked (and modified) files, not target/ or stray output.
copy_tree() {
  mkdir -p "$1"
  if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
    # A file deleted but not yet committed is listed too: skip it.
    (cd "$top" && git ls-files -z --cached --others --exclude-standard \
      | xargs -0 sh -c 'for f; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\0" "$f"; fi; done' sh \
      | xargs -0 cp --parents -P -t "$1")
    git -C "$top" rev-parse --short HEAD >"$1/.kennel-commit"
  else
    (cd "$top" && tar --exclude=./target --exclude=./.git -cf - .) | tar -C "$1" -xf -
  fi
}

# The distribution's manifest: no shim member, no [patch].
unpatch() {
  sed -i -e 's/, "shims\/regex"\]/]/' \
         -e '/^# kennel-static-only: begin/,/^# kennel-static-only: end/d' "$1/Cargo.toml"
  rm -rf "$1/shims"
  if grep -q '^\[patch' "$1/Cargo.toml"; then
    echo "dist-source.sh: $1/Cargo.toml still has a [patch] section" >&2
    exit 1
  fi
}

if [ "${1:-}" = --update-lock ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  copy_tree "$tmp/src"
  unpatch "$tmp/src"
  cp "$top/Cargo.lock" "$tmp/src/Cargo.lock"
  (cd "$tmp/src" && "$cargo" metadata --format-version 1 >/dev/null)
  cp "$tmp/src/Cargo.lock" "$top/packaging/dist/Cargo.lock"
  echo "dist-source.sh: wrote packaging/dist/Cargo.lock"
  exit 0
fi

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR | --update-lock" >&2; exit 2; }
out="$1/kennel-$version"
rm -rf "$out"
copy_tree "$out"
unpatch "$out"
cp "$top/packaging/dist/Cargo.lock" "$out/Cargo.lock"
# dpkg-buildpackage wants debian/ at the top of the source tree.
cp -r "$top/packaging/debian" "$out/debian"
mkdir -p "$out/.cargo"
if ! (cd "$out" && "$cargo" vendor --locked --versioned-dirs vendor >"$out/.cargo/config.toml"); then
  echo "dist-source.sh: packaging/dist/Cargo.lock is out of step with Cargo.toml; run packaging/dist-source.sh --update-lock" >&2
  exit 1
fi
echo "$out"
