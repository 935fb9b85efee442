# Makefile for oauth_jwt, a PostgreSQL 18 OAuth validator module.
#
#   make                      build oauth_jwt.so (the C shim linked with the Go c-archive)
#                             and oauth_jwt_fetch (the key fetch helper it starts)
#   make install              install both into the server's library directory
#   make test                 unit, integration (and end-to-end) tests against a real server
#   PG_CONFIG=/path/to/pg_config make ...   pick the server
#
# When PG_CONFIG (default: pg_config on PATH) is not a PostgreSQL 18 with server
# headers, scripts/pg18.sh finds or builds one in ~/.cache/oauth_jwt and that is used.

MODULE_big = oauth_jwt
OBJS = cshim/oauth_jwt.o
# Linked after the Go archive, so that its constructor runs right after the
# Go runtime's (cshim/oauth_jwt_late.c says why).
LATE_OBJ = cshim/oauth_jwt_late.o
PGFILEDESC = "oauth_jwt - OAuth bearer token validator for PostgreSQL 18"

GO ?= go
BUILD = build
GOARCHIVE = $(BUILD)/libojw.a
# Pure-Go DNS and user lookups (no libc NSS inside a backend); async
# preemption off so the runtime lets its threads keep SIGURG blocked;
# updatemaxprocs off so GOMAXPROCS stays what the runtime started with for
# the life of the session (Go 1.25+ would otherwise raise it once the shim
# gives the runtime's threads their CPUs back);
# ojw_backend leaves the HTTP client (net/http, crypto/tls, jwx) out of the
# archive: fetches run in oauth_jwt_fetch (docs/benchmarks.md says why).
GOTAGS = netgo,osusergo,ojw_backend
GO_LDFLAGS = -X=runtime.godebugDefault=asyncpreemptoff=1,updatemaxprocs=0
GO_SOURCES = $(shell find validator internal cmd/oauth_jwt_fetch -name '*.go' -not -name '*_test.go') go.mod go.sum
FETCH_HELPER = oauth_jwt_fetch

PG_CPPFLAGS = -I$(BUILD) -Ivalidator/capi
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = $(GOARCHIVE) $(LATE_OBJ) -Wl,--version-script=cshim/exports.map -Wl,-z,nodelete -lpthread
EXTRA_CLEAN = $(BUILD) $(FETCH_HELPER) $(LATE_OBJ)

PG_CONFIG ?= pg_config
ifeq ($(filter clean distclean demo-stop,$(MAKECMDGOALS)),)
ifneq ($(shell $(PG_CONFIG) --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'),18)
override PG_CONFIG := $(shell PG_CONFIG= scripts/pg18.sh)
$(info oauth_jwt: using $(PG_CONFIG))
endif
endif
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(FETCH_HELPER)

install: install-fetch-helper
install-fetch-helper: $(FETCH_HELPER) installdirs
	$(INSTALL_PROGRAM) $(FETCH_HELPER) '$(DESTDIR)$(pkglibdir)/$(FETCH_HELPER)'

uninstall: uninstall-fetch-helper
uninstall-fetch-helper:
	rm -f '$(DESTDIR)$(pkglibdir)/$(FETCH_HELPER)'

# The key fetch helper: a static Go program (no cgo), started by a backend
# only when the key cache needs a fetch.
$(FETCH_HELPER): $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -tags netgo,osusergo -o $@ ./cmd/oauth_jwt_fetch

cshim/oauth_jwt.o: $(GOARCHIVE)
$(shlib): $(GOARCHIVE) $(LATE_OBJ) cshim/exports.map

$(GOARCHIVE): $(GO_SOURCES)
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS)' -ldflags='$(GO_LDFLAGS)' -o $@ ./validator/capi

# ---------------------------------------------------------------------------
# Test builds: the same shim with Go test triggers compiled in (tag
# ojw_testhooks), and the no-op C validator that is the latency floor.
# They live in build/test/ and are never installed.
TESTDIR = $(BUILD)/test
TEST_CFLAGS = $(CFLAGS) $(CFLAGS_SL) $(CFLAGS_SL_MODULE) $(PG_CFLAGS) $(CPPFLAGS)

$(TESTDIR)/libojw.a: $(GO_SOURCES)
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS),ojw_testhooks' -ldflags='$(GO_LDFLAGS)' -o $@ ./validator/capi

$(TESTDIR)/oauth_jwt_late.o: cshim/oauth_jwt_late.c
	@mkdir -p $(TESTDIR)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(TESTDIR)/oauth_jwt.so: cshim/oauth_jwt.c cshim/exports.map $(TESTDIR)/libojw.a $(TESTDIR)/oauth_jwt_late.o
	$(CC) -I$(TESTDIR) $(TEST_CFLAGS) -c cshim/oauth_jwt.c -o $(TESTDIR)/oauth_jwt.o
	$(CC) -shared -o $@ $(TESTDIR)/oauth_jwt.o $(LDFLAGS) $(LDFLAGS_SL) $(TESTDIR)/libojw.a $(TESTDIR)/oauth_jwt_late.o \
		-Wl,--version-script=cshim/exports.map -Wl,-z,nodelete -lpthread

# A build the server must refuse: the magic block of the next major (a
# build for another server loaded by mistake). LOAD fails before _PG_init.
$(TESTDIR)/oauth_jwt_badmagic.so: cshim/oauth_jwt.c cshim/exports.map $(TESTDIR)/libojw.a $(TESTDIR)/oauth_jwt_late.o
	$(CC) -I$(TESTDIR) $(TEST_CFLAGS) -DOJW_TEST_WRONG_MAGIC -c cshim/oauth_jwt.c -o $(TESTDIR)/oauth_jwt_badmagic.o
	$(CC) -shared -o $@ $(TESTDIR)/oauth_jwt_badmagic.o $(LDFLAGS) $(LDFLAGS_SL) $(TESTDIR)/libojw.a $(TESTDIR)/oauth_jwt_late.o \
		-Wl,--version-script=cshim/exports.map -Wl,-z,nodelete -lpthread

# The Go floor: the same shim with a Go archive that accepts everything.
$(TESTDIR)/gonoop/libojw.a: test/gonoop/gonoop.go
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS)' -ldflags='$(GO_LDFLAGS)' -o $@ ./test/gonoop

$(TESTDIR)/oauth_gonoop.so: cshim/oauth_jwt.c cshim/exports.map $(TESTDIR)/gonoop/libojw.a $(TESTDIR)/oauth_jwt_late.o
	$(CC) -I$(TESTDIR)/gonoop $(TEST_CFLAGS) -c cshim/oauth_jwt.c -o $(TESTDIR)/gonoop/oauth_jwt.o
	$(CC) -shared -o $@ $(TESTDIR)/gonoop/oauth_jwt.o $(LDFLAGS) $(LDFLAGS_SL) $(TESTDIR)/gonoop/libojw.a $(TESTDIR)/oauth_jwt_late.o \
		-Wl,--version-script=cshim/exports.map -Wl,-z,nodelete -lpthread

$(TESTDIR)/oauth_noop.so: test/noop/oauth_noop.c
	@mkdir -p $(TESTDIR)
	$(CC) $(TEST_CFLAGS) -shared -o $@ $< $(LDFLAGS) $(LDFLAGS_SL)

$(TESTDIR)/$(FETCH_HELPER): $(FETCH_HELPER)
	@mkdir -p $(TESTDIR)
	cp $< $@

test-modules: all $(TESTDIR)/oauth_jwt.so $(TESTDIR)/oauth_jwt_badmagic.so $(TESTDIR)/oauth_noop.so $(TESTDIR)/oauth_gonoop.so $(TESTDIR)/$(FETCH_HELPER)

# Bounded fuzzing time for `make test` (CI); raise it locally to dig deeper.
FUZZTIME ?= 30s
TEST_ENV = OJW_PG_CONFIG=$(PG_CONFIG) OJW_BUILD_DIR=$(CURDIR)/$(BUILD)

test: test-modules
	rm -rf $(BUILD)/destdir && $(MAKE) -s install DESTDIR=$(CURDIR)/$(BUILD)/destdir >/dev/null
	test -x "$(BUILD)/destdir$$($(PG_CONFIG) --pkglibdir)/oauth_jwt.so"   # make install puts it in pkglibdir
	test -x "$(BUILD)/destdir$$($(PG_CONFIG) --pkglibdir)/$(FETCH_HELPER)"   # with the fetch helper beside it
	scripts/keycloak.sh fetch >/dev/null
	$(GO) vet ./...
	$(GO) vet -tags docker ./docker/...
	$(GO) vet -tags keycloak ./cmd/...
	$(GO) test -race -count=1 ./validator/... ./internal/... ./cmd/...
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./validator/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResult$$' -fuzztime 10s ./internal/fetchwire/
	@mkdir -p $(BUILD)
	$(GO) test -tags docker -count=1 -timeout 30m ./docker/...   # skips without a Docker engine
	$(GO) test -tags keycloak -count=1 -run TestKeycloak ./cmd/oauth_jwt_check/
	$(TEST_ENV) bash -o pipefail -c '$(GO) test -p 1 -count=1 -timeout 45m -v ./test/... 2>&1 | tee $(BUILD)/test.log | grep -E "^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic)|\s+[a-z_]+_test.go:[0-9]+:"'

# Connection latency and memory per login kind (docs/benchmarks.md), and Go validation benchmarks.
bench: test-modules
	$(TEST_ENV) OJW_BENCH_CONNECTIONS=300 $(GO) test -count=1 -run '^$$' -bench ConnectionLatency -benchtime 1x -v ./test/integration/
	$(GO) test -run '^$$' -bench 'Validate|Reject' -benchmem ./validator/

# The benchmark and load report: docs/report.md and docs/latency.png (about 8 minutes).
report: test-modules
	PG_CONFIG=$(PG_CONFIG) scripts/report.sh

# PostgreSQL 18 + oauth_jwt + Keycloak on this machine and a psql SSO login: interactive on a
# terminal, self-approving otherwise (or with DEMO_ARGS=--auto).
demo:
	PG_CONFIG=$(PG_CONFIG) scripts/demo.sh $(DEMO_ARGS)

demo-stop:
	scripts/demo.sh stop

.PHONY: test test-modules bench report demo demo-stop install-fetch-helper uninstall-fetch-helper
