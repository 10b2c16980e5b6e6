# kennel: build, install and test.
#   make                  release binaries in target/<host triple>/release
#   sudo make install     installs kennel, kennel-oci, kennel-idmap and kennel-net (file capabilities, never setuid)
#                         and kennel-generator (.container files -> systemd units);
#                         KENNEL_BRIDGE=kennel0 KENNEL_BRIDGE_SUBNET=10.88.0.0/24 also creates that bridge
#   make test             every test: format, lints, unit tests, integration tests as an ordinary user
#   sudo make bench       start latency next to bwrap and unshare (installs what it needs)
#   sudo make bench-oci   kennel-oci next to runc, alone and under rootless podman
#   make deb, make rpm    distribution packages (dynamic, vendored, offline) in target/package
#   sudo make bench-box   kennel box enter next to podman exec, first enter, the idle box's RSS
#   sudo make bench-net   iperf3 throughput and start latency: --net bridge, pasta, slirp4netns
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec/kennel
# systemd 252 runs generators from /usr/lib/systemd and /usr/local/lib/systemd
# (user-generators/ for user managers, system-generators/ for the system).
SYSTEMDDIR ?= $(PREFIX)/lib/systemd
DESTDIR    ?=
# zsh's directory for completions differs between distributions; this is
# in the fpath of Debian's and Fedora's zsh.
ZSHDIR     ?= $(PREFIX)/share/zsh/site-functions
# Set SHADOW_LINKS=1 to also install newuidmap/newgidmap links to kennel-idmap.
SHADOW_LINKS ?= 0
# Set both to have make install create a bridge for --net bridge and
# write its lines in /etc/kennel/net.conf; without them install changes
# nothing network-related.
KENNEL_BRIDGE        ?=
KENNEL_BRIDGE_SUBNET ?=
# Who builds. Under sudo (root, SUDO_USER someone else) the invoking user
# does, with their own toolchain, as themselves, so target/ stays theirs.
# sudo's reset environment has root's HOME and a secure_path without
# ~/.cargo/bin; runuser gives the build the user's HOME, USER and LOGNAME,
# which is where rustup's cargo proxy finds ~/.rustup and cargo ~/.cargo.
# RUSTUP_HOME and CARGO_HOME pass through when set (sudo -E, or given on
# make's command line).
ifeq ($(shell id -u),0)
BUILD_USER := $(filter-out root,$(SUDO_USER))
endif
ifneq ($(BUILD_USER),)
BUILD_HOME := $(shell getent passwd '$(BUILD_USER)' | cut -d: -f6)
BUILD_AS   := runuser -u $(BUILD_USER) --
else
BUILD_HOME := $(HOME)
BUILD_AS   :=
endif
# Which cargo, unless CARGO=... is given: under sudo, the user's own (in
# $CARGO_HOME/bin or ~/.cargo/bin, where rustup puts it), then one on PATH;
# otherwise the one on PATH, then ~/.cargo/bin's.
ifeq ($(origin CARGO),undefined)
ifneq ($(BUILD_USER),)
CARGO := $(firstword $(wildcard $(if $(CARGO_HOME),$(CARGO_HOME)/bin/cargo) $(BUILD_HOME)/.cargo/bin/cargo) $(shell command -v cargo 2>/dev/null))
else
CARGO := $(firstword $(shell command -v cargo 2>/dev/null) $(wildcard $(BUILD_HOME)/.cargo/bin/cargo))
endif
endif
CARGO_AS   := $(BUILD_AS) $(CARGO)
NO_CARGO   := { echo "make: no cargo$(if $(BUILD_USER), for $(BUILD_USER) (not in $(BUILD_HOME)/.cargo/bin nor on PATH)): install Rust (rustup.rs)$(if $(BUILD_USER), as $(BUILD_USER),), or name it: CARGO=/path/to/cargo" >&2; exit 1; }
# Release binaries are static (static-pie, so still randomised): no dynamic
# loader work at each start, which is a tenth of a container start here
# (see bench/). Building for the explicit host triple keeps the flag off
# build scripts and proc macros. The triple comes from the rustc next to
# cargo, asked as the builder (a rustup proxy run as root would look in
# root's home).
HOST_RUSTC := $(or $(if $(CARGO),$(wildcard $(dir $(CARGO))rustc)),$(shell command -v rustc 2>/dev/null),rustc)
TRIPLE     := $(shell $(BUILD_AS) $(HOST_RUSTC) -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE    := target/$(TRIPLE)/release
PYTHON     ?= /usr/bin/python3
# libseccomp's archive, found where the C compiler finds libraries (the
# static link must name it: a shared libseccomp cannot go in a static
# binary).
SECCOMP_LIBDIR = $(dir $(shell gcc -print-file-name=libseccomp.a 2>/dev/null))

export KENNEL_LIBEXECDIR := $(LIBEXECDIR)
# kennel-generator writes ExecStart=$(BINDIR)/kennel.
export KENNEL_BINDIR := $(BINDIR)

.PHONY: all build install uninstall test test-deps lint unit integration bench bench-oci bench-net bench-box bench-vm clean deb rpm

all: build

build:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	@[ -n "$(TRIPLE)" ] || { echo "make: cannot learn the host triple from \`$(HOST_RUSTC) -vV\`$(if $(BUILD_USER), run as $(BUILD_USER)):" >&2; $(BUILD_AS) $(HOST_RUSTC) -vV; exit 1; }
	packaging/install-deps.sh build
	$(BUILD_AS) env RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$(SECCOMP_LIBDIR)" $(CARGO) build --release --locked --target $(TRIPLE)
	$(BUILD_AS) $(RELEASE)/kennel-docgen $(RELEASE)/docs

install: build
	packaging/install-deps.sh runtime
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(RELEASE)/kennel $(DESTDIR)$(BINDIR)/kennel
	install -m 0755 $(RELEASE)/kennel-oci $(DESTDIR)$(BINDIR)/kennel-oci
	install -m 0755 $(RELEASE)/kennel-idmap $(DESTDIR)$(LIBEXECDIR)/kennel-idmap
	setcap cap_setuid,cap_setgid=ep $(DESTDIR)$(LIBEXECDIR)/kennel-idmap
	install -m 0755 $(RELEASE)/kennel-generator $(DESTDIR)$(LIBEXECDIR)/kennel-generator
	install -d $(DESTDIR)$(SYSTEMDDIR)/user-generators $(DESTDIR)$(SYSTEMDDIR)/system-generators
	ln -sf $(LIBEXECDIR)/kennel-generator $(DESTDIR)$(SYSTEMDDIR)/user-generators/kennel-generator
	ln -sf $(LIBEXECDIR)/kennel-generator $(DESTDIR)$(SYSTEMDDIR)/system-generators/kennel-generator
	packaging/install-files.sh --docs-only --build $(RELEASE) --destdir "$(DESTDIR)" \
	  --prefix $(PREFIX) --libexecdir $(LIBEXECDIR) --zsh-dir $(ZSHDIR)
	if [ "$(SHADOW_LINKS)" = 1 ]; then \
	  ln -sf kennel-idmap $(DESTDIR)$(LIBEXECDIR)/newuidmap; \
	  ln -sf kennel-idmap $(DESTDIR)$(LIBEXECDIR)/newgidmap; \
	  echo "make: newuidmap and newgidmap are in $(LIBEXECDIR), off PATH; podman and rootlesskit look them up on PATH only (containers.conf's helper_binaries_dir does not cover them): put $(LIBEXECDIR) first on their PATH, or link them into a directory on it (ln -s $(LIBEXECDIR)/kennel-idmap /usr/local/bin/newuidmap, and newgidmap; this shadows uidmap's)"; \
	fi
	install -m 0755 $(RELEASE)/kennel-net $(DESTDIR)$(LIBEXECDIR)/kennel-net
	setcap cap_net_admin=ep $(DESTDIR)$(LIBEXECDIR)/kennel-net
	packaging/ensure-subids.sh "$(BUILD_USER)"
	if [ -n "$(KENNEL_BRIDGE)$(KENNEL_BRIDGE_SUBNET)" ]; then \
	  packaging/setup-bridge.sh "$(DESTDIR)$(LIBEXECDIR)/kennel-net" "$(KENNEL_BRIDGE)" "$(KENNEL_BRIDGE_SUBNET)" "$(BUILD_USER)" "$(DESTDIR)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kennel $(DESTDIR)$(BINDIR)/kennel-oci
	rm -f $(DESTDIR)$(SYSTEMDDIR)/user-generators/kennel-generator $(DESTDIR)$(SYSTEMDDIR)/system-generators/kennel-generator
	rm -rf $(DESTDIR)$(LIBEXECDIR)
	rm -f $(DESTDIR)$(PREFIX)/share/man/man1/kennel.1 $(DESTDIR)$(PREFIX)/share/man/man1/kennel-*.1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5/kennel.container.5 \
	  $(DESTDIR)$(PREFIX)/share/man/man8/kennel-*.8 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kennel* \
	  $(DESTDIR)$(ZSHDIR)/_kennel* $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kennel*.fish
	# An older install's entry for kennel-net's old lock file.
	rm -f $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/kennel-net.conf

test-deps:
	packaging/install-deps.sh test

lint:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	$(CARGO_AS) fmt --all -- --check
	$(CARGO_AS) clippy --all-targets --locked -- -D warnings

unit:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	$(CARGO_AS) test --workspace --locked

integration: build
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) -m pytest -rs -v tests

test: test-deps lint unit integration

# The bench sets up its user and rootfs with the test harness (which imports
# pytest) and compares with bwrap, unshare and hyperfine: install-deps.sh
# bench installs those; bench-vm needs qemu, debootstrap and a kernel.
bench: build
	packaging/install-deps.sh bench
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/start-latency.py

# kennel-oci's create/start/delete and `podman run` next to runc's; not
# part of `make test`. install-deps.sh bench-oci adds runc and podman.
bench-oci: build
	packaging/install-deps.sh bench-oci
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/oci-latency.py

# iperf3 between host and container over a veth (--net bridge, inside a
# network namespace the script makes), pasta and slirp4netns; and what
# each adds to a start. Not part of `make test`.
bench-net: build
	packaging/install-deps.sh bench-net
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/net-throughput.py

# kennel box enter next to podman exec (podman with runc, private store).
bench-box: build
	packaging/install-deps.sh bench-oci
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/box-enter.py

bench-vm: build
	packaging/install-deps.sh vm
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/vm-start.py

# Distribution packages: packaging/dist-source.sh lays out the source
# (no regex shim, vendored crates) in PKG_DIR, both packages build there
# with packaging/dist-build.sh, and PKG_TARGET keeps the compile across
# exports, so `make deb rpm` compiles once.
VERSION    := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
PKG_DIR    ?= $(CURDIR)/target/package
PKG_TARGET ?= $(CURDIR)/target/package-build
PKG_TREE   := $(PKG_DIR)/kennel-$(VERSION)
PKG_ENV    := env CARGO="$(CARGO)" CARGO_TARGET_DIR="$(PKG_TARGET)"

deb:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	packaging/install-deps.sh package
	$(BUILD_AS) $(PKG_ENV) packaging/dist-source.sh $(PKG_DIR)
	cd $(PKG_TREE) && $(BUILD_AS) $(PKG_ENV) dpkg-buildpackage -us -uc -b
	@echo "make: built $(PKG_DIR)/kennel_$(VERSION)_amd64.deb"

# Debian's rpm has no database of the system's packages, so BuildRequires
# cannot be checked (--nodeps); install-deps.sh installed libseccomp-dev.
rpm:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	packaging/install-deps.sh package
	[ -d $(PKG_TREE)/vendor ] || $(BUILD_AS) $(PKG_ENV) packaging/dist-source.sh $(PKG_DIR)
	cd $(PKG_TREE) && $(BUILD_AS) $(PKG_ENV) rpmbuild -bb --nodeps --build-in-place \
	  --define "_topdir $(PKG_DIR)/rpm" packaging/rpm/kennel.spec
	@echo "make: built $$(ls $(PKG_DIR)/rpm/RPMS/*/kennel-$(VERSION)-*.rpm)"

clean:
	@[ -n "$(CARGO)" ] || $(NO_CARGO)
	$(CARGO_AS) clean
