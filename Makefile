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
CARGO      ?= cargo
PYTHON     ?= /usr/bin/python3

export KENNEL_LIBEXECDIR := $(LIBEXECDIR)

.PHONY: all build install uninstall test test-deps lint unit integration bench clean

all: build

build:
	@command -v $(CARGO) >/dev/null || { echo "make: cargo is missing: install Rust (https://rustup.rs) first"; exit 1; }
	$(CARGO) build --release --locked

install: build
	packaging/install-deps.sh runtime
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 target/release/kennel $(DESTDIR)$(BINDIR)/kennel
	install -m 0755 target/release/kennel-idmap $(DESTDIR)$(LIBEXECDIR)/kennel-idmap
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
	$(PYTHON) -m pytest -rs -v tests

test: test-deps lint unit integration

bench: build
	$(PYTHON) bench/start-latency.py

clean:
	$(CARGO) clean
