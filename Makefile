# kennel: build, install and test.
#   make                  release binaries in target/release
#   sudo make install     installs kennel and kennel-idmap (file capabilities, never setuid)
#   make test             every test: format, lints, unit tests, integration tests as an ordinary user
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec/kennel
DESTDIR    ?=
# Set SHADOW_LINKS=1 to also install newuidmap/newgidmap links to kennel-idmap.
SHADOW_LINKS ?= 0
# Under `sudo make install` root often has no cargo: build with the invoking
# user's toolchain, as that user, so target/ stays theirs.
ifeq ($(origin CARGO),undefined)
CARGO := $(shell command -v cargo 2>/dev/null || { [ -n "$$SUDO_USER" ] && [ -x ~$$SUDO_USER/.cargo/bin/cargo ] && eval echo ~$$SUDO_USER/.cargo/bin/cargo; })
endif
BUILD_AS := $(if $(and $(SUDO_USER),$(filter 0,$(shell id -u))),runuser -u $(SUDO_USER) --,)
# Release binaries are static (static-pie, so still randomised): no dynamic
# loader work at each start, which is a tenth of a container start here
# (see bench/). Building for the explicit host triple keeps the flag off
# build scripts and proc macros.
RUSTC      := $(shell command -v rustc 2>/dev/null || echo $(dir $(CARGO))rustc)
TRIPLE     := $(shell $(RUSTC) -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE    := target/$(TRIPLE)/release
PYTHON     ?= /usr/bin/python3

export KENNEL_LIBEXECDIR := $(LIBEXECDIR)

.PHONY: all build install uninstall test test-deps lint unit integration bench bench-vm clean

all: build

build:
	@[ -n "$(CARGO)" ] || { echo "make: cargo is missing: install Rust (rustup.rs) first, then run make again"; exit 1; }
	$(BUILD_AS) env RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(TRIPLE)

install: build
	packaging/install-deps.sh runtime
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(RELEASE)/kennel $(DESTDIR)$(BINDIR)/kennel
	install -m 0755 $(RELEASE)/kennel-idmap $(DESTDIR)$(LIBEXECDIR)/kennel-idmap
	setcap cap_setuid,cap_setgid=ep $(DESTDIR)$(LIBEXECDIR)/kennel-idmap
	if [ "$(SHADOW_LINKS)" = 1 ]; then \
	  ln -sf kennel-idmap $(DESTDIR)$(LIBEXECDIR)/newuidmap; \
	  ln -sf kennel-idmap $(DESTDIR)$(LIBEXECDIR)/newgidmap; \
	fi
	packaging/ensure-subids.sh "$(SUDO_USER)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kennel
	rm -rf $(DESTDIR)$(LIBEXECDIR)

test-deps:
	packaging/install-deps.sh test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

integration: build
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) -m pytest -rs -v tests

test: test-deps lint unit integration

bench: build
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/start-latency.py

bench-vm: build
	KENNEL_BUILD_DIR=$(CURDIR)/$(RELEASE) $(PYTHON) bench/vm-start.py

clean:
	$(CARGO) clean
