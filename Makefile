# Makefile for oauth_jwt, a PostgreSQL 18 and 19 OAuth validator module.
#
#   make                      build oauth_jwt.so (the C shim linked with the Go c-archive)
#                             and oauth_jwt_fetch (the key fetch helper it starts)
#   make install              install both into the server's library directory
#   make test                 unit tests once, then integration, end-to-end and hostile suites
#                             against PostgreSQL 18 and 19 (TEST_MAJORS="18 19")
#   make test-containers      the container suite alone (docker/; starts an engine if needed)
#   PG_CONFIG=/path/to/pg_config make ...   pick the server
#
#   make PG_MAJOR=19 ...     the same for PostgreSQL 19 (PG_CONFIG naming a 19 does too)
#
# When PG_CONFIG (default: pg_config on PATH) is not a PostgreSQL $(PG_MAJOR) with server
# headers, scripts/pg.sh finds or builds one in ~/.cache/oauth_jwt and that is used.
# Builds for different majors never share an object: the C parts of the test and
# installable modules live in build/<major>/, the Go archives (which do not depend on
# the major) in build/.

MODULE_big = oauth_jwt
# oauth_jwt_start.o: the constructors and the Go runtime's start (its threads'
# signal mask and CPUs, malloc arenas, the main thread's stack bounds).
OBJS = cshim/oauth_jwt.o cshim/oauth_jwt_start.o
# Linked after the Go archive, so that its constructor runs right after the
# Go runtime's (cshim/oauth_jwt_late.c says why).
LATE_OBJ = cshim/oauth_jwt_late.o
PGFILEDESC = "oauth_jwt - OAuth bearer token validator for PostgreSQL 18 and 19"

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
# memprofilerate=0: no heap-profile sampling (the first allocation otherwise
# takes a sample, stack walk included); decoratemappings=0: no prctl naming
# each anonymous mapping the runtime makes.
GO_LDFLAGS = -X=runtime.godebugDefault=asyncpreemptoff=1,updatemaxprocs=0,memprofilerate=0,decoratemappings=0
GO_SOURCES = $(shell find validator internal cmd/oauth_jwt_fetch -name '*.go' -not -name '*_test.go') go.mod go.sum
FETCH_HELPER = oauth_jwt_fetch

PG_CPPFLAGS = -I$(BUILD) -Ivalidator/capi
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# --wrap: the Go runtime's thread creation and stack-bound query go through
# cshim/oauth_jwt_start.c (references inside this library only).
OJW_WRAP = -Wl,--wrap=pthread_create -Wl,--wrap=pthread_getattr_np
SHLIB_LINK = $(GOARCHIVE) $(LATE_OBJ) -Wl,--version-script=cshim/exports.map -Wl,-z,nodelete $(OJW_WRAP) -lpthread
EXTRA_CLEAN = $(BUILD) $(FETCH_HELPER) $(LATE_OBJ)

# PG_MAJOR picks the server major (18 or 19; default 18). A PG_CONFIG that
# names an 18 or a 19 decides the major by itself (unless PG_MAJOR is given
# too); otherwise scripts/pg.sh $(PG_MAJOR) finds or provisions that major.
PG_CONFIG ?= pg_config
PG_MAJOR ?= 18
SUPPORTED_MAJORS = 18 19
ifeq ($(filter clean distclean demo-stop,$(MAKECMDGOALS)),)
PG_CONFIG_MAJOR := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
ifeq ($(origin PG_MAJOR),file)
ifneq ($(filter $(SUPPORTED_MAJORS),$(PG_CONFIG_MAJOR)),)
override PG_MAJOR := $(PG_CONFIG_MAJOR)
endif
endif
ifeq ($(filter $(SUPPORTED_MAJORS),$(PG_MAJOR)),)
$(error PG_MAJOR=$(PG_MAJOR): oauth_jwt supports PostgreSQL $(SUPPORTED_MAJORS))
endif
ifneq ($(PG_CONFIG_MAJOR),$(PG_MAJOR))
override PG_CONFIG := $(shell PG_CONFIG= scripts/pg.sh $(PG_MAJOR))
$(info oauth_jwt: using $(PG_CONFIG))
endif
endif
PGXS := $(shell $(PG_CONFIG) --pgxs)
# No LLVM bitcode (Debian's 19 packages turn it on; the Go archive has none anyway).
override with_llvm = no
include $(PGXS)

# A server built elsewhere (Debian's 19 packages, built with a newer gcc) may name
# warning options this compiler does not know: leave those out.
ifneq ($(shell echo 'int ojw;' | $(CC) $(CFLAGS) -x c -c -o /dev/null - >/dev/null 2>&1 || echo bad),)
OJW_UNKNOWN_CFLAGS := $(foreach f,$(filter -W%,$(CFLAGS)),$(if $(shell echo 'int ojw;' | $(CC) $(f) -x c -c -o /dev/null - >/dev/null 2>&1 && echo ok),,$(f)))
override CFLAGS := $(filter-out $(OJW_UNKNOWN_CFLAGS),$(CFLAGS))
endif

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

# The top-level object is rebuilt when the server (major) changes.
MAJOR_STAMP = $(BUILD)/pg-major
$(MAJOR_STAMP): FORCE
	@mkdir -p $(BUILD); v='$(PG_CONFIG) $(PG_MAJOR)'; [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" >$@
.PHONY: FORCE
FORCE:

cshim/oauth_jwt.o: $(GOARCHIVE) $(MAJOR_STAMP) cshim/oauth_jwt_start.h
cshim/oauth_jwt_start.o $(LATE_OBJ): $(MAJOR_STAMP) cshim/oauth_jwt_start.h
$(shlib): $(GOARCHIVE) $(LATE_OBJ) cshim/exports.map

# Makefile: GO_LDFLAGS and GOTAGS are part of what an archive is built from.
$(GOARCHIVE): $(GO_SOURCES) Makefile
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS)' -ldflags='$(GO_LDFLAGS)' -o $@ ./validator/capi

# ---------------------------------------------------------------------------
# Test builds: the same shim with Go test triggers compiled in (tag
# ojw_testhooks), and the no-op C validator that is the latency floor, plus
# the installable module built the same way. The C parts depend on the
# server's major and live in build/<major>/ (build/<major>/test/ for the
# test-only ones); the Go archives do not and live in build/go/. Never
# installed.
MAJORDIR = $(BUILD)/$(PG_MAJOR)
TESTDIR = $(MAJORDIR)/test
GOTEST = $(BUILD)/go/testhooks
GONOOP = $(BUILD)/go/gonoop
TEST_CFLAGS = $(CFLAGS) $(CFLAGS_SL) $(CFLAGS_SL_MODULE) $(PG_CFLAGS) $(CPPFLAGS)
OJW_LINK = $(TESTDIR)/oauth_jwt_start.o $(TESTDIR)/oauth_jwt_late.o -Wl,--version-script=cshim/exports.map -Wl,-z,nodelete $(OJW_WRAP) -lpthread

$(GOTEST)/libojw.a: $(GO_SOURCES) Makefile
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS),ojw_testhooks' -ldflags='$(GO_LDFLAGS)' -o $@ ./validator/capi

# The Go floor: the same shim with a Go archive that accepts everything.
$(GONOOP)/libojw.a: test/gonoop/gonoop.go Makefile
	CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" $(GO) build -buildmode=c-archive -trimpath \
		-tags '$(GOTAGS)' -ldflags='$(GO_LDFLAGS)' -o $@ ./test/gonoop

$(TESTDIR)/oauth_jwt_late.o: cshim/oauth_jwt_late.c cshim/oauth_jwt_start.h
	@mkdir -p $(TESTDIR)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(TESTDIR)/oauth_jwt_start.o: cshim/oauth_jwt_start.c cshim/oauth_jwt_start.h
	@mkdir -p $(TESTDIR)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(TESTDIR)/oauth_jwt.so: cshim/oauth_jwt.c cshim/exports.map $(GOTEST)/libojw.a $(TESTDIR)/oauth_jwt_late.o $(TESTDIR)/oauth_jwt_start.o
	@mkdir -p $(TESTDIR)
	$(CC) -I$(GOTEST) $(TEST_CFLAGS) -c cshim/oauth_jwt.c -o $(TESTDIR)/oauth_jwt.o
	$(CC) -shared -o $@ $(TESTDIR)/oauth_jwt.o $(LDFLAGS) $(LDFLAGS_SL) $(GOTEST)/libojw.a $(OJW_LINK)

# A build the server must refuse: the magic block of the next major (a
# build for another server loaded by mistake). LOAD fails before _PG_init.
$(TESTDIR)/oauth_jwt_badmagic.so: cshim/oauth_jwt.c cshim/exports.map $(GOTEST)/libojw.a $(TESTDIR)/oauth_jwt_late.o $(TESTDIR)/oauth_jwt_start.o
	$(CC) -I$(GOTEST) $(TEST_CFLAGS) -DOJW_TEST_WRONG_MAGIC -c cshim/oauth_jwt.c -o $(TESTDIR)/oauth_jwt_badmagic.o
	$(CC) -shared -o $@ $(TESTDIR)/oauth_jwt_badmagic.o $(LDFLAGS) $(LDFLAGS_SL) $(GOTEST)/libojw.a $(OJW_LINK)

$(TESTDIR)/oauth_gonoop.so: cshim/oauth_jwt.c cshim/exports.map $(GONOOP)/libojw.a $(TESTDIR)/oauth_jwt_late.o $(TESTDIR)/oauth_jwt_start.o
	@mkdir -p $(TESTDIR)
	$(CC) -I$(GONOOP) $(TEST_CFLAGS) -c cshim/oauth_jwt.c -o $(TESTDIR)/oauth_gonoop.o
	$(CC) -shared -o $@ $(TESTDIR)/oauth_gonoop.o $(LDFLAGS) $(LDFLAGS_SL) $(GONOOP)/libojw.a $(OJW_LINK)

$(TESTDIR)/oauth_noop.so: test/noop/oauth_noop.c
	@mkdir -p $(TESTDIR)
	$(CC) $(TEST_CFLAGS) -shared -o $@ $< $(LDFLAGS) $(LDFLAGS_SL)

$(TESTDIR)/$(FETCH_HELPER): $(FETCH_HELPER)
	@mkdir -p $(TESTDIR)
	cp $< $@

# The installable module for this major (what `make install` would install),
# for the tests and benchmarks that load the production build.
$(MAJORDIR)/oauth_jwt.so: cshim/oauth_jwt.c cshim/exports.map $(GOARCHIVE) $(TESTDIR)/oauth_jwt_late.o $(TESTDIR)/oauth_jwt_start.o
	@mkdir -p $(MAJORDIR)
	$(CC) -I$(BUILD) $(TEST_CFLAGS) -c cshim/oauth_jwt.c -o $(MAJORDIR)/oauth_jwt.o
	$(CC) -shared -o $@ $(MAJORDIR)/oauth_jwt.o $(LDFLAGS) $(LDFLAGS_SL) $(GOARCHIVE) $(OJW_LINK)

$(MAJORDIR)/$(FETCH_HELPER): $(FETCH_HELPER)
	@mkdir -p $(MAJORDIR)
	cp $< $@

test-modules: all $(MAJORDIR)/oauth_jwt.so $(MAJORDIR)/$(FETCH_HELPER) $(TESTDIR)/oauth_jwt.so \
	$(TESTDIR)/oauth_jwt_badmagic.so $(TESTDIR)/oauth_noop.so $(TESTDIR)/oauth_gonoop.so $(TESTDIR)/$(FETCH_HELPER)

# Bounded fuzzing time for `make test` (CI); raise it locally to dig deeper.
FUZZTIME ?= 30s
TEST_ENV = OJW_PG_CONFIG=$(PG_CONFIG) OJW_BUILD_DIR=$(CURDIR)/$(MAJORDIR)

# `make test`: what does not depend on the server once, then the server suites
# (integration, hostile, faults, load, confidentiality: ./test/... but e2e)
# against every major in TEST_MAJORS, then the end-to-end suite against all of
# them in one run with one Keycloak (its start-up is the slowest part). The
# major of PG_CONFIG uses it; the others come from scripts/pg.sh.
TEST_MAJORS ?= $(SUPPORTED_MAJORS)
test: test-unit
	@pgcs=; dirs=; for m in $(TEST_MAJORS); do \
		if [ "$$m" = "$(PG_MAJOR)" ]; then pgc='$(PG_CONFIG)'; else pgc=$$(PG_CONFIG= scripts/pg.sh $$m) || exit 1; fi; \
		echo "=== PostgreSQL $$m: $$pgc"; \
		$(MAKE) --no-print-directory test-major PG_MAJOR=$$m PG_CONFIG="$$pgc" || exit 1; \
		pgcs="$$pgcs $$pgc"; dirs="$$dirs $(CURDIR)/$(BUILD)/$$m"; \
	done; \
	echo "=== end to end against PostgreSQL $(TEST_MAJORS), one Keycloak"; \
	OJW_PG_CONFIGS="$$pgcs" OJW_BUILD_DIRS="$$dirs" bash -o pipefail -c '$(GO) test -p 1 -count=1 -timeout 45m -v ./test/e2e/ 2>&1 | tee $(BUILD)/test-e2e.log | grep -E "^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic|e2e:)|\s+[a-z_]+_test.go:[0-9]+:"'
	$(MAKE) --no-print-directory test-containers

test-unit:
	scripts/keycloak.sh fetch >/dev/null
	$(GO) vet ./...
	$(GO) vet -tags docker ./docker/...
	$(GO) vet -tags keycloak ./cmd/...
	$(GO) test -race -count=1 ./validator/... ./internal/... ./cmd/...
	$(GO) test -count=1 ./scripts/...   # the report's plot program (make report)
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./validator/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResult$$' -fuzztime 10s ./internal/fetchwire/
	@mkdir -p $(BUILD)
	$(GO) test -tags keycloak -count=1 -run TestKeycloak ./cmd/oauth_jwt_check/

# Tools the server suites run besides PostgreSQL: strace (TestRuntimeStartReadsNoProcFiles).
# Installed from Debian's packages when missing and this is root; otherwise the test says how.
test-tools:
	@command -v strace >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		{ echo "installing strace (apt-get)"; { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null; }; }; }

# The server suites but e2e against one major (PG_MAJOR / PG_CONFIG); log in
# build/<major>/test.log. `make test-e2e` runs the end-to-end suite against one major.
test-major: test-modules test-tools
	rm -rf $(MAJORDIR)/destdir && $(MAKE) -s install DESTDIR=$(CURDIR)/$(MAJORDIR)/destdir >/dev/null
	test -x "$(MAJORDIR)/destdir$$($(PG_CONFIG) --pkglibdir)/oauth_jwt.so"   # make install puts it in pkglibdir
	test -x "$(MAJORDIR)/destdir$$($(PG_CONFIG) --pkglibdir)/$(FETCH_HELPER)"   # with the fetch helper beside it
	$(TEST_ENV) bash -o pipefail -c '$(GO) test -p 1 -count=1 -timeout 45m -v $$($(GO) list ./test/... | grep -v /test/e2e$$) 2>&1 | tee $(MAJORDIR)/test.log | grep -E "^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic)|\s+[a-z_]+_test.go:[0-9]+:"'

test-e2e: test-modules
	$(TEST_ENV) $(GO) test -p 1 -count=1 -timeout 45m -v ./test/e2e/

# The container suite (docker/): the module image, Keycloak, the CloudNativePG layout and
# the compose demo, through testcontainers-go. scripts/docker.sh uses the engine there is
# or, as root, starts a private one (installing docker.io when missing) and stops it
# again afterwards; scripts/images.sh builds stand-ins for images no registry serves.
# Cold on our machines about 25 minutes, warm about 10 (README "Containers").
test-containers:
	@mkdir -p $(BUILD)
	@ours=; scripts/docker.sh env >/dev/null 2>&1 || ours=1; \
	host=$$(scripts/docker.sh start) || exit 1; \
	DOCKER_HOST=$$host $(TEST_ENV) bash -o pipefail -c '$(GO) test -tags docker -count=1 -timeout 40m -v ./docker/... 2>&1 | tee $(BUILD)/test-containers.log | grep -E "^(=== RUN|--- |\s+--- |PASS|FAIL|ok|panic|timing:|container suite:)|\s+[a-z_]+_test.go:[0-9]+:"'; \
	rc=$$?; [ -z "$$ours" ] || scripts/docker.sh stop; exit $$rc

# Connection latency, throughput with 16 clients and memory per login kind (docs/benchmarks.md)
# against every major in TEST_MAJORS (about 2 minutes per major on 2 cores; sizes from
# OJW_BENCH_CONNECTIONS and OJW_BENCH_THROUGHPUT_LOGINS, see test/integration/bench_test.go),
# and Go validation benchmarks (once: they do not involve the server).
OJW_BENCH_CONNECTIONS ?= 300
bench:
	@for m in $(TEST_MAJORS); do \
		if [ "$$m" = "$(PG_MAJOR)" ]; then pgc='$(PG_CONFIG)'; else pgc=$$(PG_CONFIG= scripts/pg.sh $$m) || exit 1; fi; \
		echo "=== PostgreSQL $$m: $$pgc"; \
		$(MAKE) --no-print-directory bench-major PG_MAJOR=$$m PG_CONFIG="$$pgc" || exit 1; \
	done
	$(GO) test -run '^$$' -bench 'Validate|Reject' -benchmem ./validator/

bench-major: test-modules
	$(TEST_ENV) OJW_BENCH_CONNECTIONS=$(OJW_BENCH_CONNECTIONS) $(GO) test -count=1 -run '^$$' -bench ConnectionLatency -benchtime 1x -v ./test/integration/

# The benchmark and load report against every major in TEST_MAJORS: docs/report.md and
# docs/latency-<major>.png (about 8 minutes per major).
report:
	@for m in $(TEST_MAJORS); do \
		if [ "$$m" = "$(PG_MAJOR)" ]; then pgc='$(PG_CONFIG)'; else pgc=$$(PG_CONFIG= scripts/pg.sh $$m) || exit 1; fi; \
		$(MAKE) --no-print-directory test-modules PG_MAJOR=$$m PG_CONFIG="$$pgc" || exit 1; \
	done
	PG_CONFIG=$(PG_CONFIG) TEST_MAJORS="$(TEST_MAJORS)" scripts/report.sh

# PostgreSQL 18 + oauth_jwt + Keycloak on this machine and a psql SSO login: interactive on a
# terminal, self-approving otherwise (or with DEMO_ARGS=--auto).
demo:
	PG_CONFIG=$(PG_CONFIG) PG_MAJOR=$(PG_MAJOR) scripts/demo.sh $(DEMO_ARGS)

demo-stop:
	scripts/demo.sh stop

.PHONY: test test-unit test-tools test-major test-e2e test-containers test-modules bench-major bench report demo demo-stop install-fetch-helper uninstall-fetch-helper
