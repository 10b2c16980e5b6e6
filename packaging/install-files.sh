#!/bin/sh
# Installs what a build produced: the binaries, the helpers, man pages and
# completions, and with --package also the generator's links, the podman
# drop-in and the example units. Used by `make install` (docs only: it installs and setcaps the
# binaries itself), debian/rules and the rpm spec. File capabilities are
# not set here: each package format has its own way (postinst, %caps).
#   install-files.sh --build DIR [--docs-only] [--package]
#       --destdir D --prefix P --libexecdir L --zsh-dir Z
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# The programs on PATH, and the helpers in LIBEXECDIR (the privileged
# ones get their capabilities from the package format). A new helper is
# one more word in `helpers`.
bins="kennel kennel-oci"
helpers="kennel-idmap kennel-net kennel-generator"
build= destdir= prefix=/usr/local libexecdir= zshdir= docs_only=0 package=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --libexecdir) libexecdir=$2; shift 2 ;;
    --zsh-dir) zshdir=$2; shift 2 ;;
    --docs-only) docs_only=1; shift ;;
    --package) package=1; shift ;;
    *) echo "install-files.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$build" ] || { echo "install-files.sh: --build DIR is required" >&2; exit 2; }
libexecdir=${libexecdir:-$prefix/libexec/kennel}
zshdir=${zshdir:-$prefix/share/zsh/site-functions}
docs=$build/docs
[ -d "$docs/man" ] || { echo "install-files.sh: no $docs/man: run kennel-docgen $docs first" >&2; exit 1; }
d=$destdir

if [ "$docs_only" = 0 ]; then
  install -d "$d$prefix/bin" "$d$libexecdir"
  for b in $bins; do install -m 0755 "$build/$b" "$d$prefix/bin/$b"; done
  for h in $helpers; do install -m 0755 "$build/$h" "$d$libexecdir/$h"; done
fi

# Man pages: generated ones, and those written by hand (kennel-idmap's,
# the .container format's).
install -d "$d$prefix/share/man/man1" "$d$prefix/share/man/man5" "$d$prefix/share/man/man8"
install -m 0644 "$docs"/man/man1/*.1 "$d$prefix/share/man/man1/"
install -m 0644 "$top"/packaging/man/*.5 "$d$prefix/share/man/man5/"
install -m 0644 "$docs"/man/man8/*.8 "$top"/packaging/man/*.8 "$d$prefix/share/man/man8/"

# Completions, where each shell looks (bash-completion and fish search
# share/ under every XDG_DATA_DIRS entry; zsh its fpath, which differs
# between distributions: hence --zsh-dir).
install -d "$d$prefix/share/bash-completion/completions" "$d$zshdir" \
  "$d$prefix/share/fish/vendor_completions.d"
for b in $bins; do
  install -m 0644 "$docs/completions/bash/$b" "$d$prefix/share/bash-completion/completions/$b"
  install -m 0644 "$docs/completions/zsh/_$b" "$d$zshdir/_$b"
  install -m 0644 "$docs/completions/fish/$b.fish" "$d$prefix/share/fish/vendor_completions.d/$b.fish"
done

if [ "$package" = 1 ]; then
  # systemd runs generators from lib/systemd/{user,system}-generators.
  for kind in user system; do
    install -d "$d$prefix/lib/systemd/$kind-generators"
    ln -sf "$libexecdir/kennel-generator" "$d$prefix/lib/systemd/$kind-generators/kennel-generator"
  done
  # podman reads drop-ins from share/containers/containers.conf.d.
  install -d "$d$prefix/share/containers/containers.conf.d"
  sed "s|@BINDIR@|$prefix/bin|" "$top/packaging/containers/kennel.conf.in" \
    >"$d$prefix/share/containers/containers.conf.d/50-kennel.conf"
  chmod 0644 "$d$prefix/share/containers/containers.conf.d/50-kennel.conf"
  install -d "$d$prefix/share/doc/kennel/examples"
  for unit in "$top"/packaging/systemd/*.service "$top"/packaging/systemd/*.container; do
    sed "s|/usr/local/bin/|$prefix/bin/|g" "$unit" >"$d$prefix/share/doc/kennel/examples/${unit##*/}"
    chmod 0644 "$d$prefix/share/doc/kennel/examples/${unit##*/}"
  done
fi
