# syncpipe: plain GNU make.  See README.md.
PREFIX	?= /usr/local
DESTDIR	?=
BINDIR	 = $(PREFIX)/bin
SBINDIR	 = $(PREFIX)/sbin
MANDIR	 = $(PREFIX)/share/man

CC	?= cc
PKGS	 = zlib openssl libbsd-overlay sqlite3 libsasl2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN	 = -Wall -Wextra -Wno-unused-parameter -Wshadow -Wformat=2
CFLAGS	?= -O2 -g
CFLAGS	+= -std=gnu11 -D_GNU_SOURCE $(WARN) -Ilib $(PKG_CFLAGS)
LDLIBS	+= $(PKG_LIBS)
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC	 = $(sort $(wildcard lib/*.c))
LIB_HDR	 = $(wildcard lib/*.h)
LIB_OBJ	 = $(LIB_SRC:.c=.o)
LIB	 = lib/libsyncpipe.a

# Plumbing tools go to bin/ (section 1), the daemons to sbin/ (section 8).
BIN_TOOLS  = synclog-tail sync-plan sync-send sync-store
SBIN_TOOLS = sync_server
C_TOOLS	 = $(foreach t,$(BIN_TOOLS) $(SBIN_TOOLS),$(if $(wildcard cmd/$(t)/*.c),$(t)))
PROGS	 = $(foreach t,$(C_TOOLS),cmd/$(t)/$(t))

UNIT_SRC = $(sort $(wildcard test/unit/test_*.c))
UNIT_BIN = $(patsubst test/unit/%.c,build/asan/%,$(UNIT_SRC))
ASAN_LIB_OBJ = $(patsubst lib/%.c,build/asan/lib/%.o,$(LIB_SRC))
ASAN_PROGS = $(foreach t,$(C_TOOLS),build/asan/bin/$(t))

FUZZ_SRC = $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN = $(patsubst test/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB_OBJ = $(patsubst lib/%.c,build/fuzz/lib/%.o,$(LIB_SRC))
FUZZ_SECONDS ?= 600

MAN_SRC	 = $(wildcard man/*.[158])

# Helper programs the bats tests run; never installed.
TEST_PROGS = build/test/synclog-writer

# SANITIZE=1 builds the tools themselves (cmd/<tool>/<tool>) with ASan +
# UBSan, from the objects of build/asan/lib, so that every test runs them
# sanitized; scripts/run-tests then turns any sanitizer report into a
# failure.  The flavour stamp makes a switch either way relink the tools.
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
FLAVOUR	 = sanitize
TOOL_SAN = $(SAN)
TOOL_LIB = $(ASAN_LIB_OBJ)
else
FLAVOUR	 = plain
TOOL_SAN =
TOOL_LIB = $(LIB)
endif
FLAVOUR_STAMP = build/flavour-$(FLAVOUR)

.PHONY: all deps check test unit bats lint fuzz fuzz-short demo bench torture install clean asan leakcheck
all: $(PROGS) $(TEST_PROGS)

$(FLAVOUR_STAMP):
	@mkdir -p build && rm -f build/flavour-* && touch $@

deps:
	@scripts/install-deps

$(LIB_OBJ): lib/%.o: lib/%.c $(LIB_HDR)
	$(CC) $(CFLAGS) -c -o $@ $<
$(LIB): $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $(LIB_OBJ)

# One rule per tool: every .c in cmd/<tool>/ linked with the library.
define TOOL_RULE
cmd/$(1)/$(1): $(wildcard cmd/$(1)/*.c) $(wildcard cmd/$(1)/*.h) $$(TOOL_LIB) $$(FLAVOUR_STAMP)
	$$(CC) $$(CFLAGS) $$(TOOL_SAN) -Icmd/$(1) -o $$@ $(wildcard cmd/$(1)/*.c) $$(TOOL_LIB) $$(LDLIBS)
build/asan/bin/$(1): $(wildcard cmd/$(1)/*.c) $(wildcard cmd/$(1)/*.h) $(ASAN_LIB_OBJ)
	@mkdir -p build/asan/bin
	$$(CC) $$(CFLAGS) $$(SAN) -Icmd/$(1) -o $$@ $(wildcard cmd/$(1)/*.c) $(ASAN_LIB_OBJ) $$(LDLIBS)
endef
$(foreach t,$(C_TOOLS),$(eval $(call TOOL_RULE,$(t))))

build/test/%: test/%.c $(LIB)
	@mkdir -p build/test
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# Sanitizer builds: the library and unit tests under ASan + UBSan.
build/asan/lib/%.o: lib/%.c $(LIB_HDR)
	@mkdir -p build/asan/lib
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<
build/asan/%: test/unit/%.c test/unit/tap.h $(ASAN_LIB_OBJ)
	@mkdir -p build/asan
	$(CC) $(CFLAGS) $(SAN) -Itest/unit -o $@ $< $(ASAN_LIB_OBJ) $(LDLIBS)
asan: $(UNIT_BIN) $(ASAN_PROGS)

# libFuzzer targets (clang).
build/fuzz/lib/%.o: lib/%.c $(LIB_HDR)
	@mkdir -p build/fuzz/lib
	clang $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
build/fuzz/%: test/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p build/fuzz
	clang $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

# fuzz_server also needs sync_server's command handlers (not its session,
# which has main()); this explicit rule takes precedence over the above.
FUZZ_SERVER_SRC = cmd/sync_server/get.c cmd/sync_server/apply.c
build/fuzz/fuzz_server: test/fuzz/fuzz_server.c $(FUZZ_SERVER_SRC) \
    cmd/sync_server/server.h $(FUZZ_LIB_OBJ)
	@mkdir -p build/fuzz
	clang $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined \
	    -Icmd/sync_server -o $@ test/fuzz/fuzz_server.c $(FUZZ_SERVER_SRC) \
	    $(FUZZ_LIB_OBJ) $(LDLIBS)

# fuzz_session runs sync_server's whole session: sync_server.c built with
# SYNCPIPE_FUZZ (its entry points for the target, no syslog) and main()
# renamed, and the handlers.
FUZZ_SESSION_SRC = cmd/sync_server/sync_server.c $(FUZZ_SERVER_SRC)
build/fuzz/fuzz_session: test/fuzz/fuzz_session.c $(FUZZ_SESSION_SRC) \
    cmd/sync_server/server.h $(FUZZ_LIB_OBJ)
	@mkdir -p build/fuzz
	clang $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined \
	    -DSYNCPIPE_FUZZ -Dmain=sync_server_main -Icmd/sync_server \
	    -o $@ test/fuzz/fuzz_session.c $(FUZZ_SESSION_SRC) \
	    $(FUZZ_LIB_OBJ) $(LDLIBS)

# The whole suite: installs what is missing, builds, runs every test and
# ends with one "N passed, N failed" line.
check: deps
	@$(MAKE) --no-print-directory all asan $(FUZZ_BIN)
	@SANITIZE=$(SANITIZE) scripts/run-tests

# Unit + bats only (no dependency install), for quick iterations.
test: all asan
	@SANITIZE=$(SANITIZE) scripts/run-tests --no-fuzz

lint:
	@scripts/run-tests --only lint

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@scripts/fuzz $(FUZZ_SECONDS)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo

bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench

# A full replication with every tool under valgrind; fails on a memory
# error or a definite leak (scripts/leakcheck).  Plain build only.
leakcheck:
	@$(MAKE) --no-print-directory all SANITIZE=0
	@scripts/leakcheck

torture: deps
	@$(MAKE) --no-print-directory all asan
	@scripts/torture

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	for t in $(BIN_TOOLS); do \
	    if [ -x cmd/$$t/$$t ]; then install -m 755 cmd/$$t/$$t $(DESTDIR)$(BINDIR)/; fi; done
	for t in $(SBIN_TOOLS); do \
	    if [ -x cmd/$$t/$$t ]; then install -m 755 cmd/$$t/$$t $(DESTDIR)$(SBINDIR)/; fi; done
	install -m 755 cmd/sync_client/sync_client $(DESTDIR)$(SBINDIR)/
	for m in $(MAN_SRC); do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

clean:
	rm -rf build $(LIB) $(LIB_OBJ) $(PROGS)
