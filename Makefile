# Builds, installs and packages ShmTransport's tools for a cluster.
#
#   make                                  # release tools (Swift runtime linked in), SPANK plugin,
#                                         # man pages and shell completions, under build/
#   make install [PREFIX=/usr/local] [DESTDIR=]   # copy what make built into place (docs/install.md)
#   make uninstall [PREFIX=...] [DESTDIR=]        # remove every file install put there
#   make deb                              # build/shmtransport_<version>_<arch>.deb (dpkg-deb)
#
# The tools need only glibc, libstdc++ and libzmq on a node: no Swift toolchain.

PREFIX  ?= /usr/local
DESTDIR ?=
bindir  := $(PREFIX)/bin
libdir  := $(PREFIX)/lib
datadir := $(PREFIX)/share
mandir  := $(datadir)/man
pkgdata := $(datadir)/shmtransport
cmakedir := $(libdir)/cmake/ShmTransportFixtures
bashcompdir := $(datadir)/bash-completion/completions
zshcompdir  := $(datadir)/zsh/vendor-completions
fishcompdir := $(datadir)/fish/vendor_completions.d

VERSION := $(shell sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/ShmCleanup/Version.swift)
BUILD   := build
# Its own build folder: the release flags differ from `swift build -c release`'s.
SWIFT_SCRATCH ?= .build-install
SWIFT_BUILD := swift build -c release --static-swift-stdlib --scratch-path $(SWIFT_SCRATCH)
SWIFT_BIN    = $(SWIFT_SCRATCH)/release

# Executables users run; every one has --version, --help and completions.
TOOLS := shmmonitor shm-keepalive shm-bsampler shm-sink shm-processor shmbench
SCRIPTS := shm-launch shm-job.sh
SCRIPT_LIBS := lib/common.sh lib/launch.sh
CMAKE_FILES := ShmTransportFixtures.cmake ShmTransportFixturesConfig.cmake ShmTransportFixturesConfigVersion.cmake
SLURM_EXAMPLES := plugstack.conf.example examples/shmtransport-epilog.sh examples/clonens-epilog.sh \
	examples/two-node-topology.sbatch examples/two-node-topology.json
SLURM_EXAMPLE_NAMES := $(notdir $(SLURM_EXAMPLES))

# Every file install writes, relative to $(DESTDIR): uninstall removes exactly these.
INSTALLED := $(TOOLS:%=$(bindir)/%) $(bindir)/shm-launch \
	$(libdir)/slurm/shmtransport_spank.so \
	$(SCRIPTS:%=$(pkgdata)/%) $(SCRIPT_LIBS:%=$(pkgdata)/%) $(pkgdata)/lib/version \
	$(CMAKE_FILES:%=$(cmakedir)/%) \
	$(SLURM_EXAMPLE_NAMES:%=$(pkgdata)/slurm/%) \
	$(pkgdata)/slurm/README.md $(pkgdata)/ctest/README.md \
	$(TOOLS:%=$(mandir)/man1/%.1) \
	$(TOOLS:%=$(bashcompdir)/%) $(TOOLS:%=$(zshcompdir)/_%) $(TOOLS:%=$(fishcompdir)/%.fish)
# Directories that belong to this package alone (removed by uninstall once empty).
OWN_DIRS := $(pkgdata)/lib $(pkgdata)/slurm $(pkgdata)/ctest $(pkgdata) $(cmakedir)

.PHONY: all tools plugin docs install uninstall deb clean print-installed
.DELETE_ON_ERROR:

all: tools plugin docs

tools:
	$(SWIFT_BUILD)

plugin:
	$(MAKE) -C slurm BUILD_DIR=$(CURDIR)/$(BUILD)/slurm all check-symbols

# Man pages and completions come from the argument parsers of the built tools (man pages by
# swift-argument-parser's generate-manual, completions by each tool's own generator).
docs: tools
	$(SWIFT_BUILD) --product generate-manual
	rm -rf $(BUILD)/man $(BUILD)/completions
	mkdir -p $(BUILD)/man $(BUILD)/completions/bash $(BUILD)/completions/zsh $(BUILD)/completions/fish
	for tool in $(TOOLS); do \
		$(SWIFT_BIN)/$$tool --generate-completion-script bash >$(BUILD)/completions/bash/$$tool && \
		$(SWIFT_BIN)/$$tool --generate-completion-script zsh >$(BUILD)/completions/zsh/_$$tool && \
		$(SWIFT_BIN)/$$tool --generate-completion-script fish >$(BUILD)/completions/fish/$$tool.fish && \
		$(SWIFT_BIN)/generate-manual $(SWIFT_BIN)/$$tool --output-directory $(BUILD)/man || exit 1; \
	done

# Installs what `make` built; it builds nothing itself, so `sudo make install` needs no toolchain
# on root's PATH.
install:
	@for f in $(TOOLS:%=$(SWIFT_BIN)/%) $(BUILD)/slurm/shmtransport_spank.so $(TOOLS:%=$(BUILD)/man/%.1) \
		$(TOOLS:%=$(BUILD)/completions/bash/%); do \
		[ -f "$$f" ] || { echo "make install: $$f is missing; run make first" >&2; exit 1; }; \
	done
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir)/slurm $(DESTDIR)$(pkgdata)/lib \
		$(DESTDIR)$(pkgdata)/slurm $(DESTDIR)$(pkgdata)/ctest $(DESTDIR)$(cmakedir) \
		$(DESTDIR)$(mandir)/man1 $(DESTDIR)$(bashcompdir) $(DESTDIR)$(zshcompdir) $(DESTDIR)$(fishcompdir)
	install -m 0755 --strip $(TOOLS:%=$(SWIFT_BIN)/%) $(DESTDIR)$(bindir)/
	install -m 0755 $(BUILD)/slurm/shmtransport_spank.so $(DESTDIR)$(libdir)/slurm/
	install -m 0755 scripts/shm-launch $(DESTDIR)$(pkgdata)/
	install -m 0644 scripts/shm-job.sh $(DESTDIR)$(pkgdata)/
	install -m 0644 $(SCRIPT_LIBS:%=scripts/%) $(DESTDIR)$(pkgdata)/lib/
	echo $(VERSION) >$(DESTDIR)$(pkgdata)/lib/version
	chmod 0644 $(DESTDIR)$(pkgdata)/lib/version
	ln -sfn ../share/shmtransport/shm-launch $(DESTDIR)$(bindir)/shm-launch
	install -m 0644 $(CMAKE_FILES:%=ctest/%) $(DESTDIR)$(cmakedir)/
	install -m 0644 $(SLURM_EXAMPLES:%=slurm/%) slurm/README.md $(DESTDIR)$(pkgdata)/slurm/
	chmod 0755 $(DESTDIR)$(pkgdata)/slurm/*.sh
	install -m 0644 ctest/README.md $(DESTDIR)$(pkgdata)/ctest/
	install -m 0644 $(TOOLS:%=$(BUILD)/man/%.1) $(DESTDIR)$(mandir)/man1/
	install -m 0644 $(TOOLS:%=$(BUILD)/completions/bash/%) $(DESTDIR)$(bashcompdir)/
	install -m 0644 $(TOOLS:%=$(BUILD)/completions/zsh/_%) $(DESTDIR)$(zshcompdir)/
	install -m 0644 $(TOOLS:%=$(BUILD)/completions/fish/%.fish) $(DESTDIR)$(fishcompdir)/

uninstall:
	rm -f $(INSTALLED:%=$(DESTDIR)%)
	for dir in $(OWN_DIRS:%=$(DESTDIR)%); do [ ! -d "$$dir" ] || rmdir --ignore-fail-on-non-empty "$$dir"; done

# A Debian package of the install tree under /usr; Depends from dpkg-shlibdeps.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB := $(BUILD)/shmtransport_$(VERSION)_$(DEB_ARCH).deb
deb: all
	rm -rf $(BUILD)/deb
	$(MAKE) --no-print-directory install PREFIX=/usr DESTDIR=$(CURDIR)/$(BUILD)/deb/root
	scripts/lib/debian-control --root $(BUILD)/deb/root --version $(VERSION) --arch $(DEB_ARCH) \
		>$(BUILD)/deb/control
	install -d $(BUILD)/deb/root/DEBIAN
	install -m 0644 $(BUILD)/deb/control $(BUILD)/deb/root/DEBIAN/control
	dpkg-deb --root-owner-group -Zzstd --build $(BUILD)/deb/root $(DEB)
	@echo "built $(DEB)"

# The files install writes (without DESTDIR), for the install test.
print-installed:
	@echo $(INSTALLED)

clean:
	rm -rf $(BUILD) $(SWIFT_SCRATCH)
	$(MAKE) -C slurm clean
